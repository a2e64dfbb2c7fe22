#!/usr/bin/env python
"""How far the motion model's grid moves the landmarks it is drawn through, and what the landmarker then sees.

The motion model says how far each landmark moves (``MotionModel.landmark_motion``); its grid is a thin-plate
spline through those motions, evaluated on a lattice and upsampled (``spline_resolution``), then bounded. For each
AU and each held-out face (:data:`real_photos.EVALUATION_PHOTOS`) the face is edited with that AU raised by
:data:`STEP` from 0, its other AUs at 0, by the motion model's grid alone, once per lattice side in
``--spline_resolutions``. Over the :data:`MOVING` landmarks the AU moves most:

- **grid**: the displacement the grid gives them (where a landmark arrives, the grid reads the input where it
  was), as a fraction of their displacement: 1 is a grid that moves them exactly;
- **landmarker**: MediaPipe's landmarks detected again on the warped crop, their motion as a fraction of the same
  displacement (what the annotator's blendshapes are computed from);
- **read back**: the annotator's change of the AU per unit asked (``benchmarks/au_response.py``'s diagonal).

For a DefGAN model whose deformation generator has per-AU fields, a second table takes each preset at intensity 1
from each face's own AUs and gives, over the :data:`PRESET_MOVING` landmarks the motion model moves most, the
fraction of their displacement that three grids give them: the motion model's; the deformation generator's sum of
fields with each offset where its landmark rests, bounded by ``tanh`` (as the generator was composed before
``arrival_steps``); and the deformation generator as the model composes it.

Prints Markdown tables and writes ``benchmarks/results/grid_fidelity.json`` (``--output``).

    python -m benchmarks.grid_fidelity [--model REPO_ID_OR_FOLDER] [--spline_resolutions 32 64] [--output PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from benchmarks.real_photos import (ROOT, add_single_model_arguments, detect_all, held_out_faces, load_pipeline,
                                    model_config, read_aus, write_results)  # fmt: skip
from defgan_hf import AU_FACS_NAMES, AU_NAMES, EXPRESSIONS, DefGANPipeline
from defgan_hf.aus import edit_target
from defgan_hf.face import NoFaceError, detect_face
from defgan_hf.images import image_to_tensor, tensor_to_image
from defgan_hf.models.deformer import fields_grid
from defgan_hf.motion import MotionModel
from defgan_hf.pipeline import DEFAULT_MODEL
from defgan_hf.warp import grid_offsets_px, warp

RESULTS = ROOT / "benchmarks" / "results" / "grid_fidelity.json"
STEP = 0.5
"""How far each edit raises its AU from 0, on the 0–1 scale."""
MOVING = 20
"""The landmarks an AU moves most, over which the fractions are taken."""
PRESET_MOVING = 40
"""The landmarks a preset moves most, over which its fractions are taken."""
PRESET_GRIDS: tuple[str, ...] = ("motion model", "deformer, offsets at rest", "deformer")


def realised_fraction(grid: torch.Tensor, landmarks: torch.Tensor, displacement: torch.Tensor) -> float:
    """How far a grid moves landmarks, as a fraction of their displacement (projected on it, over all of them).

    A landmark at ``l`` moved by ``d`` is shown at ``l + d`` when the grid there reads the input at ``l``, i.e.
    when its backward offset at ``l + d`` is ``−d``.

    Args:
        grid: ``(1, S, S, 2)`` in the convention of :mod:`defgan_hf.warp`.
        landmarks, displacement: ``(L, 2)`` pixels of the ``S``-pixel crop.
    """
    size = grid.shape[1]
    at = ((landmarks + displacement) * 2 / (size - 1) - 1)[None, None].to(grid)
    offsets = grid_offsets_px(grid).permute(0, 3, 1, 2)
    shown = -F.grid_sample(offsets, at, align_corners=True)[0, :, 0].T
    return projected_fraction(shown, displacement)


def projected_fraction(moved: torch.Tensor, displacement: torch.Tensor) -> float:
    """``moved`` ``(L, 2)`` projected on ``displacement`` ``(L, 2)``, over all the landmarks: 1 is all of the way."""
    return float((moved * displacement).sum() / displacement.pow(2).sum())


def measure(motion_model: MotionModel, crops: list, landmarks: list[torch.Tensor]) -> dict[str, dict[str, float]]:
    """AU → ``grid``, ``landmarker`` and ``read_back`` means over the faces (the module docstring says what)."""
    # The inputs are detected and read once; a face the landmarker or the annotator misses is left out of those means.
    detected, read = [], []
    for crop in crops:
        try:
            detected.append(detect_face(crop))
        except NoFaceError:
            detected.append(None)
        read.append(read_aus(crop))
    results = {}
    for k, name in enumerate(tqdm(AU_NAMES, desc=f"lattice {motion_model.spline_resolution}", unit="AU")):
        source = torch.zeros(1, len(AU_NAMES))
        target = source.clone()
        target[0, k] = STEP
        displacement = motion_model.landmark_motion(source, target)[0]
        if not displacement.any():
            continue
        rows = displacement.norm(dim=1).argsort()[-MOVING:]
        grid_parts, landmarker_parts, read_back = [], [], []
        for crop, points, before, read_before in zip(crops, landmarks, detected, read):
            grid = motion_model.grid(points[None], source, target)
            grid_parts.append(realised_fraction(grid, points[rows], displacement[rows]))
            if before is None:
                continue
            edited = tensor_to_image(warp(image_to_tensor(crop), grid))
            try:
                after = detect_face(edited)
            except NoFaceError:
                continue
            seen = torch.from_numpy(after.landmarks[:, :2] - before.landmarks[:, :2]).float()[rows]
            landmarker_parts.append(projected_fraction(seen, displacement[rows]))
            read_after = read_aus(edited)
            if read_before is not None and read_after is not None:
                read_back.append((read_after[k] - read_before[k]) / STEP)
        results[name] = {"grid": float(np.mean(grid_parts)), "landmarker": float(np.mean(landmarker_parts)),
                         "read_back": float(np.mean(read_back)), "faces": len(grid_parts)}  # fmt: skip
    return results


def measure_presets(pipeline: DefGANPipeline, detected: list) -> dict[str, dict[str, float]]:
    """Preset → :data:`PRESET_GRIDS` → mean fraction over the faces (the module docstring says what)."""
    motion_model, deformer = pipeline.motion_model, pipeline.deformer
    results = {}
    for name in EXPRESSIONS:
        parts: dict[str, list[float]] = {grid: [] for grid in PRESET_GRIDS}
        for face in detected:
            landmarks = face.landmarks[None].to(motion_model.displacements)
            source = face.source_aus[None].to(landmarks)
            target = edit_target(face.source_aus, expression=name)[None].to(landmarks)
            displacement = motion_model.landmark_motion(source, target)[0]
            if not displacement.any():
                continue
            rows = displacement.norm(dim=1).argsort()[-PRESET_MOVING:]
            points = landmarks[0, rows]
            fields = deformer.au_fields(image_to_tensor(face.aligned.image), landmarks)
            at_rest = fields_grid(fields, source, target, deformer.max_offset,
                                  landmarks if deformer.inner_brow_combination else None)  # fmt: skip
            grids = (motion_model.grid(landmarks, source, target), at_rest,
                     deformer.fields_grid(fields, source, target, landmarks))  # fmt: skip
            for label, grid in zip(PRESET_GRIDS, grids):
                parts[label].append(realised_fraction(grid, points, displacement[rows]))
        results[name] = {label: float(np.mean(values)) for label, values in parts.items()}
        results[name]["faces"] = len(parts[PRESET_GRIDS[0]])
    return results


def markdown(results: dict) -> str:
    """One row per AU: per lattice side, the grid's and the landmarker's fraction and the reading per unit."""
    sides = list(results["lattices"])
    step = results["config"]["step"]
    moving = results["config"]["moving"]
    lines = [f"Each held-out face warped by the motion model's grid for one AU raised from 0 to {step}; over the "
             f"{moving} landmarks it moves most, the fraction of their displacement the grid gives them and the "
             "landmarker then detects, and the annotator's reading of the AU per unit asked.", "",
             "| AU | " + " | ".join(f"lattice {side}: grid | lattice {side}: landmarker | lattice {side}: read back"
                                   for side in sides) + " |",  # fmt: skip
             "|---|" + "---:|---:|---:|" * len(sides)]
    for name in AU_NAMES:
        if name not in results["lattices"][sides[0]]:
            continue
        cells = [f"{row['grid']:.2f} | {row['landmarker']:.2f} | {row['read_back']:.3f}"
                 for row in (results["lattices"][side][name] for side in sides)]  # fmt: skip
        lines.append(f"| {name} {AU_FACS_NAMES[name]} | " + " | ".join(cells) + " |")
    if results.get("presets"):
        lines += ["", f"Each preset at intensity 1 from each held-out face's own AUs: over the {PRESET_MOVING} "
                  "landmarks it moves most, the fraction of their displacement each grid gives them.", "",
                  "| preset | faces | " + " | ".join(PRESET_GRIDS) + " |", "|---|---:|" + "---:|" * len(PRESET_GRIDS)]
        for name, row in results["presets"].items():
            lines.append(f"| {name} | {row['faces']} | " + " | ".join(f"{row[grid]:.2f}" for grid in PRESET_GRIDS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spline_resolutions", type=int, nargs="+", default=[32, 64],
                        help="lattice sides to draw the grid on (default: 32 64)")
    add_single_model_arguments(parser, RESULTS)
    args = parser.parse_args()
    name = DEFAULT_MODEL if args.model is None else args.model
    pipeline = load_pipeline(name, "cpu")
    if pipeline.motion_model is None:
        parser.error(f"{name} has no motion model (a DefGAN model folder with motion/).")
    _, faces, _ = held_out_faces(args.photos_dir, args.max_faces)
    detected = detect_all(pipeline, faces)
    crops, landmarks = [face.aligned.image for face in detected], [face.landmarks for face in detected]
    motion_model = pipeline.motion_model
    lattices = {}
    with torch.inference_mode():
        drawn = motion_model.spline_resolution
        for side in args.spline_resolutions:
            motion_model.spline_resolution = side
            lattices[str(side)] = measure(motion_model, crops, landmarks)
        motion_model.spline_resolution = drawn
        has_fields = pipeline.deformer is not None and pipeline.deformer.conditioning == "change"
        presets = measure_presets(pipeline, detected) if has_fields else {}
    results = {
        "config": {"model": model_config(name, "DefGAN", pipeline), "faces": [ref.name for ref in faces],
                   "step": STEP, "moving": MOVING, "smoothing": motion_model.smoothing,
                   "torch_version": torch.__version__},
        "lattices": lattices,
        "presets": presets,
    }
    write_results(results, markdown(results), args.output)


if __name__ == "__main__":
    main()
