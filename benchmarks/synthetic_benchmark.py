#!/usr/bin/env python
"""Does motion + texture beat texture only? A paired benchmark on procedural faces with exact ground truth.

1. Render a training set of synthetic faces (``defgan_hf.synthetic``) for the training identities.
2. Train DefGAN and the ``--texture_only`` ablation with ``train_accelerate.py``: same data, flags and
   number of steps, twice: with the paper's objective, and with the default model's v2 recipe (AU-change
   conditioning, AU-modulated norms, texture confined to the changed AUs' regions, one-AU targets, and
   for DefGAN a motion teacher: the motion model fitted on the drawn faces' meshes, which the renderer
   places exactly, :func:`defgan_hf.synthetic.face_mesh`). Training stops ``--curve_points`` times on
   the way, and every stop is measured: the learning curves.
3. Train an AU regressor on renderer ground truth (the training identities), to score expressions.
4. On held-out identities, edit rendered faces from AUs ``x`` to random AUs ``y`` and compare with the
   rendering of ``y``:
   - ``l1_to_target`` and ``psnr``: the edit against the exact target image (lower / higher is better);
   - ``au_error``: mean absolute error of the regressor's AUs on the edit against ``y``;
   - ``l1_outside_regions``: change outside the regions the changed AUs act on (identity preservation);
   - ``concentration``: share of the edit's squared difference that falls inside those regions.

   Beside the models: no edit, the exact target (the regressor's own error floor), and the source warped by
   the v2 teacher (the motion model fitted on the drawn faces' meshes), motion without texture.

Writes ``benchmarks/results/synthetic.json`` (``{"defgan": …, "texture_only": …, "defgan_v2": …,
"texture_only_v2": …, "curves": …, "config": …}``), ``synthetic.md`` (the tables) and ``synthetic.png``
(input | target | the four models' edits | the v2 models' differences from the input).

    python benchmarks/synthetic_benchmark.py --config cpu     # 64 px, reduced widths: under an hour on 2 cores
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
from defgan_hf.motion import fit_motion_data, read_motion_data
from defgan_hf.synthetic import au_regions, face_mesh, render_face, sample_aus, sample_identity, write_dataset
from defgan_hf.visualize import difference_heatmap, to_pil
from defgan_hf.warp import warp

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
V2_RECIPE = ("--conditioning", "change", "--au_modulation", "--mask_regions", "--texture_upsampling", "bilinear",
             "--single_au_targets", "0.5")  # fmt: skip
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "defgan": ("DefGAN (motion + texture), the paper's objective", ()),
    "texture_only": ("texture only (GANimation), the paper's objective", ("--texture_only",)),
    "defgan_v2": ("DefGAN, v2 recipe with the motion teacher",
                  (*V2_RECIPE, "--motion_pretraining_steps", "{pretraining}", "--lambda_motion_teacher", "10")),
    "texture_only_v2": ("texture only, v2 recipe", (*V2_RECIPE, "--texture_only", "--motion_model", "none")),
}
"""Variant → its label and the training flags beside the shared ones (``{pretraining}``: a tenth of the steps)."""
CHANGED = 0.05  # an AU whose target differs by more than this counts as edited


def train_editor(variant: str, config: dict, data_dir: Path, out_dir: Path, seed: int, steps: int) -> Path:
    """Train one variant with the project's training script to ``steps`` (resuming the run in ``out_dir`` if
    there is one: the learning rate is constant, so stopping on the way changes nothing); returns its model
    folder."""
    command = [
        sys.executable, str(ROOT / "train_accelerate.py"), "--data_dir", str(data_dir), "--output_dir", str(out_dir),
        "--resolution", str(config["size"]), "--generator_width", str(config["generator_width"]),
        "--generator_res_blocks", str(config["generator_res_blocks"]),
        "--discriminator_width", str(config["discriminator_width"]),
        "--discriminator_layers", str(config["discriminator_layers"]),
        "--train_batch_size", str(config["batch"]), "--max_train_steps", str(steps),
        "--critic_steps", str(config["critic_steps"]), "--lr_decay_epochs", "0",
        # SFace embeds photographs; on drawn faces its similarity is not evidence of identity.
        "--identity_model", "none", "--logger", "none", "--seed", str(seed),
        "--checkpointing_steps", str(max(1, config["steps"] // 4)), "--checkpoints_total_limit", "1",
        "--sample_steps", str(max(1, config["steps"] // 4)), "--dataloader_num_workers", "1",
        "--resume_from_checkpoint", "latest",
    ]  # fmt: skip
    command += [flag.format(pretraining=config["steps"] // 10) for flag in VARIANTS[variant][1]]
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
                "landmarks": torch.from_numpy(face_mesh(identity, source, config["size"])).float(),
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
                               torch.stack([p["target_aus"] for p in chunk]).to(device),
                               torch.stack([p["landmarks"] for p in chunk]).to(device)).image.cpu())
    return torch.cat(edits)


def motion_model_edits(data_dir: Path, config: dict, pairs: list[dict]) -> torch.Tensor:
    """The pairs' sources warped by the motion model fitted on the training faces' meshes (no texture)."""
    motion_model = fit_motion_data(read_motion_data(data_dir), image_size=config["size"])
    edits = []
    with torch.no_grad():
        for start in range(0, len(pairs), 64):
            chunk = pairs[start:start + 64]
            grid = motion_model.grid(*(torch.stack([p[key] for p in chunk])
                                       for key in ("landmarks", "source_aus", "target_aus")))  # fmt: skip
            edits.append(warp(torch.stack([p["source_image"] for p in chunk]), grid))
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
    parser.add_argument("--curve_points", type=int, default=5,
                        help="Measure every model this many times, at equal steps (the last at the end).")
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
    regressor = train_au_regressor(config, data_dir, device, options.seed)
    pairs = evaluation_pairs(config, options.test_identities, options.pairs_per_identity, options.seed)
    results: dict = {"reference_no_edit": measure(torch.stack([p["source_image"] for p in pairs]), pairs, regressor,
                                                  device),
                     # The exact target image: the regressor's own error floor.
                     "reference_ground_truth": measure(torch.stack([p["target_image"] for p in pairs]), pairs,
                                                       regressor, device),
                     # Motion alone, as the v2 recipe's teacher moves the face: what a perfect deformer would do.
                     "reference_motion_model": measure(motion_model_edits(data_dir, config, pairs), pairs, regressor,
                                                       device),
                     "curves": {}}  # fmt: skip
    stops = [round(config["steps"] * point / options.curve_points) for point in range(1, options.curve_points + 1)]
    edits = {}
    for variant in VARIANTS:
        begin, curve = time.perf_counter(), []
        for steps in stops:
            edits[variant] = edit_all(train_editor(variant, config, data_dir, work / variant, options.seed, steps),
                                      pairs, device)
            curve.append({"steps": steps, **measure(edits[variant], pairs, regressor, device)})
            print(f"{variant} at {steps} steps: l1_to_target {curve[-1]['l1_to_target']:.4f}", flush=True)
        results[variant] = {**curve[-1], "training_minutes": (time.perf_counter() - begin) / 60}
        results["curves"][variant] = curve
    results["config"] = {**config, "config": options.config, "seed": options.seed, "pairs": len(pairs),
                         "test_identities": options.test_identities, "device": str(device),
                         "total_minutes": (time.perf_counter() - started) / 60,
                         "command": "python benchmarks/synthetic_benchmark.py " + " ".join(sys.argv[1:])}

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "synthetic.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / "synthetic.md").write_text(table)
    print(table)

    shown = list(range(0, len(pairs), max(1, len(pairs) // 6)))[:6]
    source = torch.stack([pairs[i]["source_image"] for i in shown])
    target = torch.stack([pairs[i]["target_image"] for i in shown])
    panels = [source, target, *(edits[variant][shown] for variant in VARIANTS),
              *(difference_heatmap(source, edits[variant][shown]) for variant in ("defgan_v2", "texture_only_v2"))]
    to_pil(torch.stack(panels, dim=1).flatten(0, 1), columns=len(panels)).save(RESULTS / "synthetic.png")
    print(f"wrote {RESULTS / 'synthetic.json'}, synthetic.md, synthetic.png in {results['config']['total_minutes']:.1f} min")


def claim(results: dict, defgan: str, texture_only: str) -> str:
    """Whether one run shows the paper's claim: DefGAN's L1 to the target ≤ 0.8× texture-only's, both below no
    edit, and DefGAN's AU error below no edit's."""
    no_edit = results["reference_no_edit"]
    ratio = results[defgan]["l1_to_target"] / results[texture_only]["l1_to_target"]
    checks = {f"DefGAN's L1 = {ratio:.2f}× texture-only's (≤ 0.8)": ratio <= 0.8,
              "both L1 below no edit": max(results[defgan]["l1_to_target"],
                                           results[texture_only]["l1_to_target"]) < no_edit["l1_to_target"],
              "DefGAN's AU error below no edit": results[defgan]["au_error"] < no_edit["au_error"]}  # fmt: skip
    return "; ".join(f"{check}: {'yes' if passed else 'no'}" for check, passed in checks.items())


def markdown(results: dict) -> str:
    """The results table, the claim per recipe, and the learning curves."""
    rows = [(label, key) for key, (label, _) in VARIANTS.items()]
    rows += [("reference: no edit", "reference_no_edit"), ("reference: the motion model's warp alone",
                                                             "reference_motion_model"),
             ("reference: exact target", "reference_ground_truth")]  # fmt: skip
    lines = ["| model | l1_to_target ↓ | PSNR ↑ | AU error ↓ | l1 outside regions ↓ | concentration ↑ |",
             "|---|---|---|---|---|---|"]
    for label, key in rows:
        r = results[key]
        lines.append(f"| {label} | {r['l1_to_target']:.4f} | {r['psnr']:.2f} | {r['au_error']:.4f} | "
                     f"{r['l1_outside_regions']:.4f} | {r['concentration']:.3f} |")
    lines += ["", f"- The paper's objective: {claim(results, 'defgan', 'texture_only')}.",
              f"- The v2 recipe: {claim(results, 'defgan_v2', 'texture_only_v2')}.", "",
              "Learning curves, L1 to the exact target (AU error) against training steps "
              f"(no edit: {results['reference_no_edit']['l1_to_target']:.4f} "
              f"({results['reference_no_edit']['au_error']:.4f})):", "",
              "| steps | " + " | ".join(label for label, _ in VARIANTS.values()) + " |",
              "|---:|" + "---:|" * len(VARIANTS)]  # fmt: skip
    curves = results["curves"]
    for point, entry in enumerate(curves["defgan"]):
        cells = [f"{curves[variant][point]['l1_to_target']:.4f} ({curves[variant][point]['au_error']:.4f})"
                 for variant in VARIANTS]  # fmt: skip
        lines.append(f"| {entry['steps']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
