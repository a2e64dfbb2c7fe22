#!/usr/bin/env python
"""Where each model's motion goes: how far per-AU edits move the brows and the mouth (``defgan_hf.regions``).

The measure of ``tests/test_default_model.py``, for any number of models, so a candidate default model can be
checked before it is shipped. For each model and region (brows, mouth), the sample faces with that region at
rest (:data:`~defgan_hf.regions.RESTING_SAMPLE_PHOTOS`) are edited with every per-AU edit of
:data:`~defgan_hf.regions.REGION_EDITS` (+0.8 on top of the face's own AUs), and the mean motion of both regions
is reported in pixels of the 128 px crop. A model has learned a region's AUs as motion when, on the faces at
rest there, that region's edits move it more than they move the other region, and more than the other
region's edits move it; the last columns say whether both hold. A model folder with a motion model gets two
more rows, measured the same way: its motion model's grid, and the sum of its per-AU fields linearised at the
face's landmarks, which is what motion pretraining teaches the deformer (the two differ where a feature moves
far: the grid places each landmark's offset where it arrives).

Prints a Markdown table and writes ``benchmarks/results/region_motion.json`` (``--output``).

    python benchmarks/region_motion.py [--model LABEL=REPO_ID_OR_FOLDER ...] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defgan_hf import DEFAULT_MODEL, DefGANPipeline
from defgan_hf.assets import fetch
from defgan_hf.regions import REGION_EDITS, RESTING_SAMPLE_PHOTOS, measure_face, per_au_edit_motion

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results" / "region_motion.json"


def measure(pipeline: DefGANPipeline, motion: str = "deformer") -> dict[str, dict[str, dict[str, float]]]:
    """Region at rest → edit name → region → mean motion in pixels, of ``motion`` (:data:`~defgan_hf.regions.MOTIONS`)."""
    faces = {region: [measure_face(pipeline, pipeline.detect(fetch(name)), motion) for name in photos]
             for region, photos in RESTING_SAMPLE_PHOTOS.items()}  # fmt: skip
    return per_au_edit_motion(pipeline, faces, motion)


def learned(results: dict[str, dict[str, dict[str, float]]], region: str) -> bool:
    """On the faces at rest in ``region``, its edits move it more than the other region, and more than the
    other region's edits move it."""
    (other,) = set(REGION_EDITS) - {region}
    motion = results[region]
    own = [motion[name] for name in REGION_EDITS[region]]
    return (all(m[region] > m[other] for m in own)
            and min(m[region] for m in own) > max(motion[name][region] for name in REGION_EDITS[other]))


def markdown(all_results: dict[str, dict]) -> str:
    """One row per model and region at rest; each edit's cell is ``brows px / mouth px``."""
    edits = [name for region_edits in REGION_EDITS.values() for name in region_edits]
    lines = ["| model | faces at rest in | " + " | ".join(f"{name} (brows / mouth px)" for name in edits)
             + " | region learned as motion |",
             "|---|---|" + "---:|" * len(edits) + "---|"]
    for label, results in all_results.items():
        for region, motions in results.items():
            cells = " | ".join(f"{motions[name]['brows']:.2f} / {motions[name]['mouth']:.2f}" for name in edits)
            lines.append(f"| {label} | {region} | {cells} | {'yes' if learned(results, region) else 'no'} |")
    return "\n".join(lines)


def shown(model: str) -> str:
    """A model as the results name it: folders inside the repository relative to it, others as given."""
    path = Path(model).absolute()
    return str(path.relative_to(ROOT)) if path.is_dir() and path.is_relative_to(ROOT) else model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, metavar="LABEL=REPO_ID_OR_FOLDER",
                        help="a DefGAN model to measure, repeatable (default: the default model)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    models = dict(spec.split("=", 1) if "=" in spec else (spec, spec) for spec in args.model or [])
    models = models or {"default model": str(DEFAULT_MODEL)}
    all_results = {}
    for label, model in models.items():
        pipeline = DefGANPipeline.from_pretrained(model)
        all_results[label] = measure(pipeline)
        if pipeline.motion_model is not None:
            all_results[f"{label}: its motion model"] = measure(pipeline, "motion model")
            all_results[f"{label}: its motion model's per-AU fields"] = measure(pipeline, "motion model's fields")
    print(markdown(all_results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"models": {label: shown(model) for label, model in models.items()},
                                       "results": all_results}, indent=1) + "\n")
    print(f"\nWrote {args.output}")


if __name__ == "__main__":
    main()
