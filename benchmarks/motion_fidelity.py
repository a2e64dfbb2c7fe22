#!/usr/bin/env python
"""How closely the deformation generator follows its teacher, on its training faces and on faces it never saw.

Motion pretraining (:func:`defgan_hf.objective.motion_pretraining_objective`) teaches the deformation generator the
motion model's per-AU fields on each training face. The fields are drawn through the face's landmarks, so the
teacher is as good on a new face as the landmarker is; whether the network is too is what this measures. For
each AU ``k`` the deformer's fields ``P_k`` (:meth:`~defgan_hf.models.deformer.DeformationGenerator.au_fields`)
are compared with the teacher's ``B_k`` (:meth:`~defgan_hf.motion.MotionModel.au_fields`) on two sets of faces:

- **training faces**: ``--faces`` crops drawn at random (fixed seed) from ``--data``, the annotated folder the
  model was trained on (crops and ``landmarks.csv``, read as training reads them);
- **held-out faces**: the faces of :data:`benchmarks.real_photos.EVALUATION_PHOTOS`, people in none of the
  training sources, detected and aligned by the pipeline.

Two numbers per AU and set: the **relative field error** ``Σ ‖P_k − B_k‖² / Σ ‖B_k‖²`` over faces and pixels
(the pretraining loss's term; 0 is perfect, 1 is no better than no motion), and the **motion ratio**, the
deformer's mean motion over the teacher's at the landmarks the teacher moves (more than 30% of its largest motion
on that face set): below 1 the deformer moves the part less than it was taught. A network that learned its training
faces by heart is close on the first set and far on the second.

Prints a Markdown table and writes ``benchmarks/results/motion_fidelity.json`` (``--output``).

    python -m benchmarks.motion_fidelity --data runs/default_model/real_faces [--model REPO_ID_OR_FOLDER ...]
        [--faces N] [--output PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from benchmarks.real_photos import ROOT, detect_all, held_out_faces, load_pipeline, write_results
from defgan_hf import AU_FACS_NAMES, AU_NAMES
from defgan_hf.data import IMAGE_FOLDER
from defgan_hf.face_regions import NUM_MESH_LANDMARKS
from defgan_hf.images import image_to_tensor, read_face_crop
from defgan_hf.motion import read_motion_data
from defgan_hf.pipeline import DEFAULT_MODEL, DefGANPipeline

RESULTS = ROOT / "benchmarks" / "results" / "motion_fidelity.json"
MOVING: float = 0.3
"""A landmark counts as moved by an AU where the teacher moves it by more than this fraction of its largest motion."""


def fidelity(pipeline: DefGANPipeline, images: torch.Tensor,
             landmarks: torch.Tensor) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per AU that the motion model moves: relative field error and motion ratio (module docstring).

    Args:
        pipeline: a DefGAN pipeline with a change-conditioned deformation generator and a motion model.
        images: ``(N, 3, S, S)`` face crops in ``[-1, 1]``.
        landmarks: ``(N, 478, 2)`` their landmarks in pixels of the crop.
    """
    with torch.inference_mode():
        teacher = pipeline.motion_model.au_fields(landmarks)
        fields = pipeline.deformer.au_fields(images, landmarks)
    points = landmarks[:, :NUM_MESH_LANDMARKS].round().long().clamp(0, images.shape[-1] - 1)
    faces = torch.arange(images.shape[0])[:, None]

    def at_landmarks(field: torch.Tensor) -> torch.Tensor:  # (N, K, 2, S, S) → (N, K, 468) motion in pixels
        return field[faces, :, :, points[..., 1], points[..., 0]].norm(dim=-1).permute(0, 2, 1)

    taught, learned = at_landmarks(teacher), at_landmarks(fields)
    results = {}
    for k, name in enumerate(AU_NAMES):
        motion = teacher[:, k].pow(2).sum()
        if motion == 0:
            continue
        moved = taught[:, k] > MOVING * taught[:, k].max()
        results[name] = {"relative_error": float((fields[:, k] - teacher[:, k]).pow(2).sum() / motion),
                         "motion_ratio": float(learned[:, k][moved].mean() / taught[:, k][moved].mean()),
                         "taught_px": float(taught[:, k][moved].mean())}  # fmt: skip
    return results


def training_faces(data_dir: Path, count: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` crops of an annotated folder drawn with a fixed seed: images and landmarks at ``image_size``."""
    data = read_motion_data(data_dir)
    rows = np.sort(np.random.default_rng(0).choice(len(data.files), min(count, len(data.files)), replace=False))
    data = data.select(rows).at_size(image_size)
    images = torch.stack([read_face_crop(data_dir / IMAGE_FOLDER / file, image_size) for file in data.files])
    return images, torch.from_numpy(data.landmarks).float()


def held_out_crops(pipeline: DefGANPipeline, photos_dir: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out faces (:func:`~benchmarks.real_photos.held_out_faces`) aligned at the pipeline's resolution:
    images and landmarks."""
    _, faces, _ = held_out_faces(photos_dir)
    detected = detect_all(pipeline, faces)
    return (torch.cat([image_to_tensor(face.aligned.image) for face in detected]),
            torch.stack([face.landmarks for face in detected]))  # fmt: skip


def markdown(results: dict) -> str:
    """One row per AU; per model and face set the relative field error and the motion ratio."""
    columns = [(label, face_set) for label, sets in results["models"].items() for face_set in sets]
    header = "| AU | " + " | ".join(f"{label}, {face_set}: error / ratio" for label, face_set in columns) + " |"
    lines = ["Relative field error (0 is the teacher's fields) / motion ratio at the landmarks the teacher moves "
             "(1 is the teacher's motion).", "", header, "|---|" + "---:|" * len(columns)]
    for name in AU_NAMES:
        cells = [results["models"][label][face_set].get(name) for label, face_set in columns]
        if all(cell is None for cell in cells):
            continue
        lines.append(f"| {name} {AU_FACS_NAMES[name]} | " + " | ".join(
            "–" if cell is None else f"{cell['relative_error']:.2f} / {cell['motion_ratio']:.2f}" for cell in cells
        ) + " |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, metavar="[LABEL=]REPO_ID_OR_FOLDER",
                        help="a DefGAN model with a motion model, repeatable (default: the default model)")
    parser.add_argument("--data", type=Path, required=True, help="the annotated folder the models were trained on "
                        "(e.g. runs/default_model/real_faces): crops and landmarks.csv.")  # fmt: skip
    parser.add_argument("--faces", type=int, default=64, help="training faces drawn (default: 64).")
    parser.add_argument("--photos_dir", type=Path, default=None, help="where the evaluation photos are extracted "
                        "(default: <asset cache>/evaluation_photos).")  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    models = dict(spec.split("=", 1) if "=" in spec else (spec, spec) for spec in args.model or [])
    models = models or {"default model": str(DEFAULT_MODEL)}
    face_sets: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    results: dict = {"config": {"models": models, "data": str(args.data), "faces": args.faces, "moving": MOVING,
                                "torch_version": torch.__version__}, "models": {}}  # fmt: skip
    for label, name in models.items():
        pipeline = load_pipeline(name, "cpu")
        if pipeline.deformer is None or pipeline.motion_model is None or pipeline.deformer.conditioning != "change":
            parser.error(f"{name} needs a change-conditioned deformation generator and a motion model.")
        # Both face sets depend only on the crop size: read once for all models of one size.
        if pipeline.image_size not in face_sets:
            face_sets[pipeline.image_size] = {
                "training faces": training_faces(args.data, args.faces, pipeline.image_size),
                "held-out faces": held_out_crops(pipeline, args.photos_dir),
            }
        results["models"][label] = {f"{face_set} ({len(images)})": fidelity(pipeline, images, landmarks)
                                    for face_set, (images, landmarks) in face_sets[pipeline.image_size].items()}
    write_results(results, markdown(results), args.output)


if __name__ == "__main__":
    main()
