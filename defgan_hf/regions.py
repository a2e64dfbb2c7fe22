"""Where an edit's motion goes: how far the deformation grid moves each face region (brows, mouth).

An AU acts on one region of the face (AU01, AU02, AU04 on the brows; AU12, AU25, AU26 on the mouth), so a
deformation generator that has learned the AUs as motion moves that region more than the others when one
AU changes. The measure: the grid of the edit minus the grid of an edit toward the face's own AUs (so that
motion the deformer adds whatever the target is cancels), its length in pixels of the crop, averaged over
the crop pixels near the region's landmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .aus import edit_target
from .models.deformer import fields_grid
from .pipeline import DefGANPipeline, DetectedFace
from .warp import grid_offsets_px

REGION_LANDMARKS: dict[str, tuple[int, ...]] = {
    "brows": (70, 63, 105, 66, 107, 336, 296, 334, 293, 300),
    "mouth": (61, 291, 0, 17, 39, 269, 181, 405, 13, 14),
}
"""MediaPipe face-mesh indices around each region the AUs act on."""
REGION_RADIUS = 0.06
"""Crop pixels within this fraction of the crop side from a region's landmarks belong to the region."""

REGION_EDITS: dict[str, dict[str, dict[str, float]]] = {
    "brows": {"inner and outer brow raiser": {"AU01": 0.8, "AU02": 0.8}, "brow lowerer": {"AU04": 0.8}},
    "mouth": {"lip corner puller": {"AU12": 0.8}, "lips part and jaw drop": {"AU25": 0.8, "AU26": 0.8}},
}
"""Region → relative edits (+0.8 on top of the face's own AUs) of AUs that act on that region only."""

RESTING_SAMPLE_PHOTOS: dict[str, tuple[str, ...]] = {
    "brows": ("single_face.jpg", "0-f15-hao-ph.jpg", "45-m7-di-ph.jpg"),
    "mouth": ("45-m7-di-ph.jpg", "15-f13-anc-ph.jpg"),
}
"""Region → sample photos (:data:`defgan_hf.assets.SAMPLE_MEDIA`) whose face has that region at rest, so
that its edits have room to move it: brow AUs (AU01, AU02, AU04) < 0.2, or mouth AUs (AU12, AU25, AU26) < 0.2,
as the annotator reads them. (Three of the sample faces smile with parted lips: AU12 + 0.8 would ask them
for less than 0.2 more.)"""


@dataclass
class MeasuredFace:
    """A face, and what every edit of it is measured against."""

    face: DetectedFace
    regions: dict[str, np.ndarray]
    """Region name → boolean ``(S, S)`` mask of the crop pixels near its landmarks."""
    no_edit_offsets: torch.Tensor
    """``(1, S, S, 2)`` displacement in pixels of the grid of an edit toward the face's own AUs."""


def region_masks(face: DetectedFace, size: int) -> dict[str, np.ndarray]:
    """Boolean ``(size, size)`` masks of the crop pixels near each region's landmarks."""
    points = face.aligned.crop_landmarks
    rows, columns = np.mgrid[0:size, 0:size]
    masks = {}
    for region, indices in REGION_LANDMARKS.items():
        distance = np.min([np.hypot(columns - x, rows - y) for x, y in points[list(indices)]], axis=0)
        masks[region] = distance < REGION_RADIUS * size
    return masks


MOTIONS: tuple[str, ...] = ("deformer", "motion model", "motion model's fields")
"""What a measure reads: the deformation generator's grid; the motion model's grid (a spline through where its
landmarks arrive); or the sum of the motion model's per-AU fields, linearised at the face's own landmarks, each
offset where its landmark rests and the sum bounded by ``tanh`` (:func:`~defgan_hf.models.deformer.fields_grid`'s
defaults): what motion pretraining teaches the deformer, field by field, summed as the deformer summed them before
``arrival_steps``."""


def edit_grid(pipeline: DefGANPipeline, face: DetectedFace, motion: str = "deformer", **edit) -> torch.Tensor:
    """The ``(1, S, S, 2)`` grid of an edit as ``motion`` (:data:`MOTIONS`) moves the face.

    Args:
        **edit: the edit, as :meth:`DefGANPipeline.edit_face` takes it (``expression``, ``intensity``,
            ``aus``, ``relative``).

    Raises:
        ValueError: on an unknown ``motion``, a texture-only model measured as a deformer, or a motion
            measured on a model folder without a motion model.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}; got {motion!r}.")
    if pipeline.deformer is None and motion == "deformer":
        raise ValueError("A texture-only model has no deformation grid to measure; load a DefGAN model.")
    if motion != "motion model's fields":
        return pipeline.edit_face(face, motion_model_only=motion == "motion model", **edit).grid
    pipeline._require_motion_model()  # the pipeline's own error, which says how to fit one
    motion_model = pipeline.motion_model
    landmarks = face.landmarks[None].to(motion_model.displacements)
    fields = motion_model.au_fields(landmarks)
    return fields_grid(fields, face.source_aus[None].to(fields), edit_target(face.source_aus, **edit)[None].to(fields),
                       motion_model.max_offset, landmarks if motion_model.inner_brow_combination else None)


def measure_face(pipeline: DefGANPipeline, face: DetectedFace, motion: str = "deformer") -> MeasuredFace:
    """Read a detected face's region masks and no-edit grid once, for any number of edits.

    Args:
        motion: what to measure (:data:`MOTIONS`).

    Raises:
        ValueError: as :func:`edit_grid`.
    """
    no_edit_offsets = grid_offsets_px(edit_grid(pipeline, face, motion))
    return MeasuredFace(face, region_masks(face, pipeline.image_size), no_edit_offsets)


def region_motion(pipeline: DefGANPipeline, faces: Sequence[MeasuredFace], motion: str = "deformer",
                  **edit) -> dict[str, float]:  # fmt: skip
    """Mean motion of each region because of the edit, in pixels of the crop, averaged over ``faces``.

    Args:
        pipeline: a DefGAN pipeline.
        faces: faces read by :func:`measure_face` with the same pipeline and ``motion``.
        motion: what to measure (:data:`MOTIONS`).
        **edit: the edit, as :meth:`DefGANPipeline.edit_face` takes it (``expression``, ``intensity``,
            ``aus``, ``relative``).
    """
    totals = dict.fromkeys(REGION_LANDMARKS, 0.0)
    for measured in faces:
        offsets = grid_offsets_px(edit_grid(pipeline, measured.face, motion, **edit))
        motion_px = (offsets - measured.no_edit_offsets)[0].norm(dim=-1).numpy()
        for region, mask in measured.regions.items():
            totals[region] += float(motion_px[mask].mean()) / len(faces)
    return totals


def per_au_edit_motion(pipeline: DefGANPipeline, faces: Mapping[str, Sequence[MeasuredFace]],
                       motion: str = "deformer") -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """Every edit of :data:`REGION_EDITS`, applied relatively to each group of faces.

    Args:
        pipeline: a DefGAN pipeline.
        faces: region at rest → faces read by :func:`measure_face` with ``pipeline`` (and ``motion``).
        motion: what to measure (:data:`MOTIONS`).

    Returns:
        Region at rest → edit name → region → mean motion in pixels (:func:`region_motion`).
    """
    return {resting: {name: region_motion(pipeline, group, motion, aus=aus, relative=True)
                      for edits in REGION_EDITS.values() for name, aus in edits.items()}
            for resting, group in faces.items()}  # fmt: skip
