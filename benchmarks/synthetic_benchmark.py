#!/usr/bin/env python
"""Does motion + texture beat texture only? A paired benchmark on procedural faces with exact ground truth.

1. Render a training set of synthetic faces (``defgan_hf.synthetic``) for the training identities.
2. Train DefGAN and the ``--texture_only`` ablation with ``train_accelerate.py``: same data, flags and
   number of steps.
3. Train an AU regressor on renderer ground truth (the training identities), to score expressions.
4. On held-out identities, edit rendered faces from AUs ``x`` to random AUs ``y`` and compare with the
   rendering of ``y``:
   - ``l1_to_target`` and ``psnr``: the edit against the exact target image (lower / higher is better);
   - ``au_error``: mean absolute error of the regressor's AUs on the edit against ``y``;
   - ``l1_outside_regions``: change outside the regions the changed AUs act on (identity preservation);
   - ``concentration``: share of the edit's squared difference that falls inside those regions.

Writes ``benchmarks/results/synthetic.json`` (``{"defgan": …, "texture_only": …, "config": …}``),
``synthetic.md`` (the table) and ``synthetic.png`` (input | target | DefGAN | texture-only | both
differences).

    python benchmarks/synthetic_benchmark.py --config cpu     # 64 px, reduced widths: about an hour on 2 cores
    python benchmarks/synthetic_benchmark.py --config gpu     # 128 px, the paper's sizes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from defgan_hf import AU_NAMES, DefGAN, Discriminator
from defgan_hf.data import FaceAUDataset
from defgan_hf.synthetic import au_regions, render_face, sample_aus, sample_identity, write_dataset
from defgan_hf.visualize import difference_heatmap, to_pil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CONFIGS = {
    "cpu": dict(size=64, train_identities=300, per_identity=12, generator_width=16, generator_res_blocks=3,
                discriminator_width=16, discriminator_layers=4, batch=16, steps=2500, critic_steps=5,
                regressor_steps=800),
    "gpu": dict(size=128, train_identities=2000, per_identity=20, generator_width=64, generator_res_blocks=6,
                discriminator_width=64, discriminator_layers=6, batch=25, steps=30000, critic_steps=10,
                regressor_steps=5000),
}  # fmt: skip
VARIANTS = ("defgan", "texture_only")
CHANGED = 0.05  # an AU whose target differs by more than this counts as edited


def train_editor(variant: str, config: dict, data_dir: Path, out_dir: Path, seed: int) -> Path:
    """Train one variant with the project's training script; returns its model folder."""
    command = [
        sys.executable, str(ROOT / "train_accelerate.py"), "--data_dir", str(data_dir), "--output_dir", str(out_dir),
        "--resolution", str(config["size"]), "--generator_width", str(config["generator_width"]),
        "--generator_res_blocks", str(config["generator_res_blocks"]),
        "--discriminator_width", str(config["discriminator_width"]),
        "--discriminator_layers", str(config["discriminator_layers"]),
        "--train_batch_size", str(config["batch"]), "--max_train_steps", str(config["steps"]),
        "--critic_steps", str(config["critic_steps"]), "--lr_decay_epochs", "0",
        # SFace embeds photographs; on drawn faces its similarity is not evidence of identity.
        "--identity_model", "none", "--logger", "none", "--seed", str(seed),
        "--checkpointing_steps", str(max(1, config["steps"] // 4)), "--checkpoints_total_limit", "1",
        "--sample_steps", str(max(1, config["steps"] // 4)), "--dataloader_num_workers", "1",
        "--resume_from_checkpoint", "latest",
    ]  # fmt: skip
    if variant == "texture_only":
        command.append("--texture_only")
    print(f"training {variant}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, env={**os.environ, "ACCELERATE_USE_CPU": os.environ.get(
        "ACCELERATE_USE_CPU", "false" if torch.cuda.is_available() else "true")})
    return out_dir / "model"


def train_au_regressor(config: dict, data_dir: Path, device: torch.device, seed: int) -> Discriminator:
    """The discriminator architecture's AU head, trained by regression alone on rendered faces."""
    torch.manual_seed(seed)
    regressor = Discriminator(image_size=config["size"], width=config["discriminator_width"],
                              num_layers=config["discriminator_layers"]).to(device)
    optimizer = torch.optim.Adam(regressor.parameters(), lr=2e-4)
    loader = DataLoader(FaceAUDataset.from_data_dir(data_dir, resolution=config["size"], flip=True),
                        batch_size=32, shuffle=True, drop_last=True, num_workers=1)
    step = 0
    while step < config["regressor_steps"]:
        for images, aus, *_ in loader:
            loss = torch.nn.functional.mse_loss(regressor(images.to(device)).aus, aus.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= config["regressor_steps"]:
                break
    return regressor.eval()


def evaluation_pairs(config: dict, num_identities: int, pairs_per_identity: int, seed: int) -> list[dict]:
    """Held-out identities (indices after the training ones), each rendered at two random expressions."""
    rng = np.random.default_rng([seed, 1])
    pairs = []
    for index in range(config["train_identities"], config["train_identities"] + num_identities):
        identity = sample_identity(seed, index)
        for _ in range(pairs_per_identity):
            source, target = sample_aus(rng), sample_aus(rng)
            changed = [name for name, a, b in zip(AU_NAMES, source, target) if abs(a - b) > CHANGED]
            if not changed:
                continue
            source_regions, target_regions = (au_regions(identity, aus, config["size"]) for aus in (source, target))
            region = np.zeros((config["size"], config["size"]), dtype=bool)
            for name in changed:
                region |= source_regions[name] | target_regions[name]
            pairs.append({
                "source_image": render_face(identity, source, config["size"]).to_tensor(),
                "target_image": render_face(identity, target, config["size"]).to_tensor(),
                "source_aus": torch.from_numpy(source).float(), "target_aus": torch.from_numpy(target).float(),
                "region": torch.from_numpy(region),
            })  # fmt: skip
    return pairs


def measure(edits: torch.Tensor, pairs: list[dict], regressor: Discriminator, device: torch.device) -> dict:
    """The four measures, averaged over pairs; images in [-1, 1] are compared on the [0, 1] scale."""
    source = torch.stack([p["source_image"] for p in pairs])
    target = torch.stack([p["target_image"] for p in pairs])
    target_aus = torch.stack([p["target_aus"] for p in pairs])
    region = torch.stack([p["region"] for p in pairs])[:, None].float()
    error = (edits - target).abs() / 2
    mse = ((edits - target) / 2).pow(2).flatten(1).mean(1)
    change = ((edits - source) / 2).pow(2).sum(1, keepdim=True)
    outside = 1 - region
    with torch.no_grad():
        predicted = torch.cat([regressor(chunk.to(device)).aus.cpu() for chunk in edits.split(64)]).clamp(0, 1)
    return {
        "l1_to_target": error.mean().item(),
        "psnr": (10 * torch.log10(1 / mse.clamp_min(1e-10))).mean().item(),
        "au_error": (predicted - target_aus).abs().mean().item(),
        "l1_outside_regions": ((edits - source).abs() / 2 * outside).sum().item() / (outside.sum().item() * 3),
        "concentration": ((change * region).flatten(1).sum(1) / change.flatten(1).sum(1).clamp_min(1e-12)).mean().item(),
    }


def edit_all(model_dir: Path, pairs: list[dict], device: torch.device) -> torch.Tensor:
    model = DefGAN.from_pretrained(model_dir, map_location=device)
    edits = []
    with torch.no_grad():
        for start in range(0, len(pairs), 64):
            chunk = pairs[start:start + 64]
            edits.append(model(torch.stack([p["source_image"] for p in chunk]).to(device),
                               torch.stack([p["source_aus"] for p in chunk]).to(device),
                               torch.stack([p["target_aus"] for p in chunk]).to(device)).image.cpu())
    return torch.cat(edits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="Override the configuration's training steps.")
    parser.add_argument("--work_dir", default=str(ROOT / "outputs" / "synthetic_benchmark"),
                        help="Generated data and training runs (not committed).")
    parser.add_argument("--test_identities", type=int, default=50)
    parser.add_argument("--pairs_per_identity", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    config = dict(CONFIGS[options.config])
    if options.steps is not None:
        config["steps"] = options.steps
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(options.work_dir)
    started = time.perf_counter()

    data_dir = work / "train"
    if not (data_dir / "aus.csv").exists():
        write_dataset(data_dir, config["train_identities"], config["per_identity"], size=config["size"],
                      seed=options.seed)
    minutes = {}
    models = {}
    for variant in VARIANTS:
        begin = time.perf_counter()
        models[variant] = train_editor(variant, config, data_dir, work / variant, options.seed)
        minutes[variant] = (time.perf_counter() - begin) / 60
    regressor = train_au_regressor(config, data_dir, device, options.seed)
    pairs = evaluation_pairs(config, options.test_identities, options.pairs_per_identity, options.seed)

    results: dict = {}
    edits = {variant: edit_all(models[variant], pairs, device) for variant in VARIANTS}
    for variant in VARIANTS:
        results[variant] = measure(edits[variant], pairs, regressor, device)
        results[variant]["training_minutes"] = minutes[variant]
    # References: no edit at all, and the exact target image (the regressor's own error floor).
    results["reference_no_edit"] = measure(torch.stack([p["source_image"] for p in pairs]), pairs, regressor, device)
    results["reference_ground_truth"] = measure(torch.stack([p["target_image"] for p in pairs]), pairs, regressor,
                                                device)
    results["config"] = {**config, "config": options.config, "seed": options.seed, "pairs": len(pairs),
                         "test_identities": options.test_identities, "device": str(device),
                         "total_minutes": (time.perf_counter() - started) / 60,
                         "command": "python benchmarks/synthetic_benchmark.py " + " ".join(sys.argv[1:])}

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "synthetic.json").write_text(json.dumps(results, indent=2))
    rows = [("DefGAN (motion + texture)", "defgan"), ("texture only (GANimation)", "texture_only"),
            ("reference: no edit", "reference_no_edit"), ("reference: exact target", "reference_ground_truth")]
    table = ["| model | l1_to_target ↓ | PSNR ↑ | AU error ↓ | l1 outside regions ↓ | concentration ↑ |",
             "|---|---|---|---|---|---|"]
    for label, key in rows:
        r = results[key]
        table.append(f"| {label} | {r['l1_to_target']:.4f} | {r['psnr']:.2f} | {r['au_error']:.4f} | "
                     f"{r['l1_outside_regions']:.4f} | {r['concentration']:.3f} |")
    (RESULTS / "synthetic.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))

    shown = list(range(0, len(pairs), max(1, len(pairs) // 6)))[:6]
    source = torch.stack([pairs[i]["source_image"] for i in shown])
    target = torch.stack([pairs[i]["target_image"] for i in shown])
    panels = [source, target, edits["defgan"][shown], edits["texture_only"][shown],
              difference_heatmap(source, edits["defgan"][shown]), difference_heatmap(source, edits["texture_only"][shown])]
    to_pil(torch.stack(panels, dim=1).flatten(0, 1), columns=len(panels)).save(RESULTS / "synthetic.png")
    print(f"wrote {RESULTS / 'synthetic.json'}, synthetic.md, synthetic.png in {results['config']['total_minutes']:.1f} min")


if __name__ == "__main__":
    main()
