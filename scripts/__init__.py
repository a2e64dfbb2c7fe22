"""Command-line scripts of defgan-hf: the default model's data, training and shipping."""
