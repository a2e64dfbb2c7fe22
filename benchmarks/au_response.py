#!/usr/bin/env python
"""What the annotator reads when one AU is edited: every AU's response to single-AU edits, on held-out photos.

``benchmarks/real_photos.py`` scores whole presets: how much of the AU gap an edit closes, as the annotator of
the training labels reads it. This asks one AU at a time which of those readings a model's motion can move
at all, and what else it moves. For each AU ``k`` and each held-out face (:data:`real_photos.EVALUATION_PHOTOS`)
whose AU ``k`` is at most ``1 − STEP``, the face is edited with AU ``k`` raised by :data:`STEP`, the others kept
(``aus={k: STEP}, relative=True``), by the model (its deformation generator and texture, as the app edits) and
by its motion model alone. The annotator (:func:`real_photos.read_aus`) reads the input crop and the edited crop;
the response ``R[j, k]`` is the mean change of AU ``j`` read per unit of AU ``k`` asked. A perfect single-AU edit
gives the identity matrix.

- The **diagonal** is how much of an asked AU the annotator reads back: a preset's gap closes only through the AUs
  whose diagonal is large (or through what other AUs' edits read as).
- The largest **off-diagonal** entry of each column is what else the edit reads as: an AU read from the same
  landmarks (lips part raises the reading of the upper lip's lift), or motion that leaks out of the AU's region.

Prints a Markdown table and writes the matrices, ``benchmarks/results/au_response.json`` (``--output``).

    python -m benchmarks.au_response [--model REPO_ID_OR_FOLDER] [--photos_dir DIR] [--max_faces N] [--output PATH]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.real_photos import (MOTION_MODEL_LABEL, ROOT, add_single_model_arguments, detect_all, held_out_faces,
                                    load_pipeline, model_config, read_aus, write_results)  # fmt: skip
from defgan_hf import AU_FACS_NAMES, AU_NAMES
from defgan_hf.pipeline import DEFAULT_MODEL, DefGANPipeline, DetectedFace

RESULTS = ROOT / "benchmarks" / "results" / "au_response.json"
STEP = 0.5
"""How far each edit raises its AU, on the 0–1 scale: half the scale, the size of a preset's typical change."""
MOTIONS = {"DefGAN": False, MOTION_MODEL_LABEL: True}
"""Row label → ``motion_model_only`` of :meth:`DefGANPipeline.edit_face`."""


def response_matrix(changes: dict[int, list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean response per AU asked.

    Args:
        changes: AU index ``k`` → one ``(17,)`` array per face: the change the annotator read, divided by the
            change of AU ``k`` asked.

    Returns:
        ``R`` ``(17, 17)`` with ``R[j, k]`` the mean read change of AU ``j`` per unit of AU ``k`` asked (NaN in the
        columns of AUs no face could be edited for), and the number of faces per column ``(17,)``.
    """
    response = np.full((len(AU_NAMES), len(AU_NAMES)), np.nan)
    counts = np.zeros(len(AU_NAMES), dtype=int)
    for k, values in changes.items():
        if values:
            response[:, k] = np.mean(values, axis=0)
            counts[k] = len(values)
    return response, counts


def measure(pipeline: DefGANPipeline, detected: list[DetectedFace]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Label of :data:`MOTIONS` → :func:`response_matrix` of single-AU edits of every face by that motion."""
    changes = {label: {k: [] for k in range(len(AU_NAMES))} for label in MOTIONS}
    for face in tqdm(detected, desc="single-AU edits", unit="face"):
        before = read_aus(face.aligned.image)
        if before is None:
            continue
        for k, name in enumerate(AU_NAMES):
            if face.source_aus[k] > 1.0 - STEP:
                continue
            for label, motion_model_only in MOTIONS.items():
                output = pipeline.edit_face(face, aus={name: STEP}, relative=True,
                                            motion_model_only=motion_model_only)  # fmt: skip
                after = read_aus(output.edited_crop)
                if after is not None:
                    changes[label][k].append((after - before) / STEP)
    return {label: response_matrix(per_au) for label, per_au in changes.items()}


def markdown(results: dict) -> str:
    """One row per AU asked: faces, then per motion its own reading and its strongest other reading."""
    labels = list(results["response"])
    matrices = {label: np.asarray(results["response"][label]["matrix"], dtype=float) for label in labels}  # None → NaN
    header = "| AU asked | faces | " + " | ".join(f"{label}: read as itself | {label}: strongest other reading"
                                               for label in labels) + " |"  # fmt: skip
    lines = [f"Each held-out face edited with one AU raised by {results['config']['step']} (faces whose AU was at "
             f"most {1 - results['config']['step']}); the annotator's change of every AU per unit asked. "
             "Read as itself: the diagonal (1 is a perfect edit); strongest other reading: the largest change of "
             "another AU.", "", header, "|---|---:|" + "---:|---|" * len(labels)]
    for k, name in enumerate(AU_NAMES):
        cells = []
        for label in labels:
            column = matrices[label][:, k]
            if np.isnan(column[k]):  # no face could be edited for this AU: the whole column is empty
                cells += ["–", "–"]
                continue
            others = np.abs(column)
            others[k] = -np.inf
            j = int(np.argmax(others))
            cells += [f"{column[k]:.2f}", f"{AU_NAMES[j]} {column[j]:+.2f}"]
        faces = results["response"][labels[0]]["faces"][k]
        lines.append(f"| {name} {AU_FACS_NAMES[name]} | {faces} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_single_model_arguments(parser, RESULTS)
    args = parser.parse_args()
    name = DEFAULT_MODEL if args.model is None else args.model
    pipeline = load_pipeline(name, "cpu")
    if pipeline.deformer is None or pipeline.motion_model is None:
        parser.error(f"{name} needs a deformation generator and a motion model (a DefGAN model folder with motion/).")
    _, faces, _ = held_out_faces(args.photos_dir, args.max_faces)
    with torch.inference_mode():
        measured = measure(pipeline, detect_all(pipeline, faces))
    response = {label: {"matrix": [[None if np.isnan(v) else float(v) for v in row] for row in matrix],
                        "faces": counts.tolist()} for label, (matrix, counts) in measured.items()}  # fmt: skip
    results = {
        "config": {"model": model_config(name, "DefGAN", pipeline), "faces": [ref.name for ref in faces],
                   "step": STEP, "au_order": list(AU_NAMES), "torch_version": torch.__version__},
        "response": response,
    }
    write_results(results, markdown(results), args.output)


if __name__ == "__main__":
    main()
