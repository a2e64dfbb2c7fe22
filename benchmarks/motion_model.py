#!/usr/bin/env python
"""How well the motion model (:mod:`defgan_hf.motion`) predicts face geometry from AUs, on people it never saw.

Leave one source out: for each source (one person's video or photos) the model is fitted on all the others
and predicts the held-out source's landmarks from its AUs and head pose, relative to that source's mean
face. R² is ``1 − Σ (actual − predicted)² / Σ actual²`` over the landmarks of a face region (displacements
from the source's mean face, in crop pixels), pooled over every held-out face. Per AU, ΔR² is how much the
R² of the AU's regions drops when that AU alone is left out of the model: the motion only it explains.

    python benchmarks/motion_model.py --data runs/motion_faces     # scripts/real_faces.py --every_frame

Writes ``benchmarks/results/motion_model.json`` and the figure of the motion learned on all the data,
``benchmarks/results/motion_model.png`` (arrows per AU on the mean face).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from defgan_hf.aus import AU_NAMES, AU_REGIONS
from defgan_hf.face_regions import region_landmarks
from defgan_hf.motion import MotionData, fit_motion_data, read_motion_data, regress_motion
from defgan_hf.visualize import motion_figure

RESULTS = Path(__file__).resolve().parent / "results"


def held_out_errors(data: MotionData, left_out: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-source-out residuals and held-out displacements: two ``(N, 468, 2)`` arrays (crop pixels)."""
    residuals = np.zeros((len(data.files), 468, 2))
    actual = np.zeros_like(residuals)
    for source in np.unique(data.sources):
        held = data.sources == source
        train = data.select(~held)
        fit = regress_motion(train.landmarks, train.aus, train.pose, train.sources, left_out=left_out)
        test = data.select(held)
        displacement = test.landmarks[:, :468] - test.landmarks[:, :468].mean(axis=0)
        predicted = fit.predict(test.aus, test.pose)
        residuals[held] = displacement - (predicted - predicted.mean(axis=0))
        actual[held] = displacement
    return residuals, actual


def r_squared(residuals: np.ndarray, actual: np.ndarray, landmarks: np.ndarray, rows: np.ndarray | None = None) -> float:
    rows = np.ones(len(actual), dtype=bool) if rows is None else rows
    return float(1.0 - (residuals[rows][:, landmarks] ** 2).sum() / (actual[rows][:, landmarks] ** 2).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a defgan-annotate folder with landmarks.csv")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    start = time.perf_counter()
    data = read_motion_data(args.data).at_size(128)
    model = fit_motion_data(data)
    regions = region_landmarks(model.mean_landmarks.numpy())
    residuals, actual = held_out_errors(data)

    sources, counts = np.unique(data.sources, return_counts=True)
    by_region = {region: {"all": r_squared(residuals, actual, mask)} for region, mask in regions.items()}
    for region, mask in regions.items():
        for source in sources:
            by_region[region][source] = r_squared(residuals, actual, mask, data.sources == source)

    by_au = {}
    for index, name in enumerate(AU_NAMES):
        au_regions = [region for region, names in AU_REGIONS.items() if name in names]
        mask = np.any([regions[region] for region in au_regions], axis=0)
        entry = {"regions": au_regions, "supported": bool(model.supported[index]),
                 "fitted": "yes" if model.supported[index] else f"no: {model.why_not_fitted(name)}, " + (
                     "moves as FACS describes it" if name in model.prior_aus else "moves nothing"),
                 "data_range": [float(model.au_low[index]), float(model.au_high[index])],
                 "r2_regions": r_squared(residuals, actual, mask)}  # fmt: skip
        if entry["supported"]:
            without, _ = held_out_errors(data, left_out=(name,))
            entry["delta_r2"] = entry["r2_regions"] - r_squared(without, actual, mask)
        # Largest motion of an edit from 0 to 1, in crop pixels (where the figure's arrows are longest).
        entry["max_motion_px"] = float(model.au_motion(name).norm(dim=-1).max())
        by_au[name] = entry

    args.out.mkdir(parents=True, exist_ok=True)
    results = {"data": str(args.data), "faces": len(data.files), "sources": dict(zip(sources.tolist(), counts.tolist())),
               "supported_aus": model.supported_aus, "r2_by_region": by_region, "by_au": by_au,
               "seconds": time.perf_counter() - start}  # fmt: skip
    (args.out / "motion_model.json").write_text(json.dumps(results, indent=2))
    motion_figure(model).save(args.out / "motion_model.png")

    print(f"{len(data.files)} faces from {len(sources)} sources; leave-one-source-out R² of landmark motion.\n")
    print("| held-out source | faces | " + " | ".join(regions) + " |")
    print("|---|---:|" + "---:|" * len(regions))
    for source, count in zip(sources, counts):
        print(f"| {source} | {count} | " + " | ".join(f"{by_region[r][source]:.2f}" for r in regions) + " |")
    print(f"| **all** | {len(data.files)} | " + " | ".join(f"**{by_region[r]['all']:.2f}**" for r in regions) + " |")
    print("\n| AU | regions | data range | fitted | R² of its regions | ΔR² (its own share) | largest motion, 0 → 1 (px) |")
    print("|---|---|---|---|---:|---:|---:|")
    for name, entry in by_au.items():
        low, high = entry["data_range"]
        own = f"{entry['delta_r2']:.3f}" if entry["supported"] else "–"
        print(f"| {name} | {', '.join(entry['regions'])} | {low:.2f}–{high:.2f} | {entry['fitted']} | "
              f"{entry['r2_regions']:.2f} | {own} | {entry['max_motion_px']:.1f} |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
