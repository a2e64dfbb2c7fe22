"""Benchmarks of defgan-hf: run each from the repository root, e.g. ``python -m benchmarks.train_throughput``."""
