#!/usr/bin/env python
"""Training throughput at the paper's sizes: images/s of critic and generator steps, DefGAN vs texture-only.

Runs the training script's own :class:`Trainer` steps on random 128 px batches (data loading excluded):
fp32 on the CPU, and fp32, bf16 and fp16 on a GPU when one is present. Prints a table and writes
``benchmarks/results/train_throughput.json``, where rows of other ``--label`` values are kept: run it on two
versions of the training script, one after the other on the same machine, to compare them.

    python -m benchmarks.train_throughput [--batch_size 4] [--steps 3] [--identity_model sface] [--label NAME]

(from the repository root, which makes ``train_accelerate`` importable).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from accelerate import Accelerator

from defgan_hf.objective import EditBatch
from train_accelerate import Trainer, parse_args

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"


def time_steps(trainer: Trainer, batch_size: int, steps: int, resolution: int) -> dict[str, float]:
    """Seconds per critic step and per generator step, after one untimed warm-up of each."""
    device = trainer.accelerator.device
    generator = torch.Generator().manual_seed(0)
    faces = (torch.rand(batch_size, 3, resolution, resolution, generator=generator) * 2 - 1).to(device)
    source, target = torch.rand(2, batch_size, 17, generator=generator).to(device)
    batches = [EditBatch(faces, source, target)]
    seconds = {}
    for name, step in (("critic", trainer.critic_step), ("generator", trainer.generator_step)):
        step(batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step(batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds[name] = (time.perf_counter() - start) / steps
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=None, help="Default: 4 on CPU, 25 (the paper's) on GPU.")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps of each kind per configuration.")
    parser.add_argument("--identity_model", default="sface", choices=["sface", "none"])
    parser.add_argument("--critic_steps", type=int, default=10, help="Schedule used for the combined rate.")
    parser.add_argument("--label", default="", help="Name of this version of the training step, e.g. 'before'.")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file (default: %(default)s).")
    options = parser.parse_args()

    on_gpu = torch.cuda.is_available()
    precisions = ["no", "bf16", "fp16"] if on_gpu else ["no"]
    batch_size = options.batch_size or (25 if on_gpu else 4)
    torch.backends.cudnn.benchmark = True
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in ("defgan", "texture_only"):
            for precision in precisions:
                argv = ["--data_dir", scratch, "--output_dir", scratch, "--identity_model", options.identity_model]
                if variant == "texture_only":
                    argv.append("--texture_only")
                args = parse_args(argv)
                accelerator = Accelerator(mixed_precision=precision, cpu=not on_gpu)
                trainer = Trainer.create(args, accelerator)
                seconds = time_steps(trainer, batch_size, options.steps, args.resolution)
                # One generator step per `critic_steps` critic steps, each critic step on a new batch.
                cycle = options.critic_steps * seconds["critic"] + seconds["generator"]
                rows.append({
                    "label": options.label,
                    "variant": variant,
                    "precision": "fp32" if precision == "no" else precision,
                    "device": torch.cuda.get_device_name() if on_gpu else f"CPU ({torch.get_num_threads()} threads)",
                    "batch_size": batch_size,
                    "critic_step_s": seconds["critic"],
                    "generator_step_s": seconds["generator"],
                    "critic_images_per_s": batch_size / seconds["critic"],
                    "generator_images_per_s": batch_size / seconds["generator"],
                    "training_images_per_s": options.critic_steps * batch_size / cycle,
                })  # fmt: skip
                del trainer, accelerator
                if on_gpu:
                    torch.cuda.empty_cache()

    # Rows of other labels (another version of the training step, measured before) stay beside these.
    kept = json.loads(options.output.read_text())["rows"] if options.output.is_file() else []
    rows = [row for row in kept if row.get("label", "") != options.label] + rows
    columns = ["version", "variant", "precision", "device", "batch", "critic step (s)", "generator step (s)",
               "critic img/s", "generator img/s", f"training img/s ({options.critic_steps}:1)"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print(f"| {r.get('label', '')} | {r['variant']} | {r['precision']} | {r['device']} | {r['batch_size']} | "
              f"{r['critic_step_s']:.3f} | {r['generator_step_s']:.3f} | {r['critic_images_per_s']:.2f} | "
              f"{r['generator_images_per_s']:.2f} | {r['training_images_per_s']:.2f} |")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    results = {"rows": rows, "config": {"resolution": 128, "steps": options.steps, "identity_model": options.identity_model,
                                        "critic_steps": options.critic_steps, "torch": torch.__version__,
                                        "python": platform.python_version(), "machine": platform.machine()}}
    options.output.write_text(json.dumps(results, indent=2))
    print(f"wrote {options.output}")

if __name__ == "__main__":
    main()
