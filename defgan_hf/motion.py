"""The motion model: what each Action Unit does to the face's geometry, learned from landmarks.

For every AU ``k`` and every face-mesh landmark ``i`` the model holds a displacement ``D[k, i]``, in
pixels of the aligned crop per unit of the AU. An edit from source AUs ``x`` to target AUs ``y`` moves
landmark ``i`` by

    d_i = Σ_k (y_k − x_k) · D[k, i]

linear over the whole 0–1 scale of each AU, past the range the data showed too (an AU seen up to 0.5 moves
twice as far at 1), except the AUs of :data:`SATURATING_AUS`, held to that range (a shut lid closes no
further). With ``inner_brow_combination`` the brow lowerer lowers the inner brows only beyond the inner brow
raiser, as in FACS's 1+4 (:data:`~defgan_hf.aus.INNER_BROW_COMBINATION`). :meth:`MotionModel.grid` interpolates
those displacements, at the face's own landmarks, into a dense deformation grid in the convention of
:mod:`defgan_hf.warp`: a thin-plate spline, bounded by ``max_offset`` like the deformation generator's grid, and
zero at the crop's border.

Fitting (:func:`regress_motion`, :func:`fit_motion_data`) is a linear regression of landmark positions on the AUs, with:

- one mean face per source (a person, or a video of one person): identity is not expression;
- the head pose (yaw, pitch, roll and their squares) regressed out beside the AUs, so that a head that
  turns while it smiles does not teach the smile to turn the head;
- each AU confined to the landmarks of the face region FACS says it moves (:data:`AU_REGIONS`):
  the other landmarks' motion is explained by the other AUs and the pose, never by this AU;
- AUs whose range in the data is too small to estimate (:data:`MIN_AU_RANGE`), or whose range of their own
  (what the other AUs do not explain) is, not fitted to noise: they move as FACS describes them
  (:data:`FACS_PRIOR`), if it is there, and are reported as such. Jaw drop (AU26) is such an AU wherever lips
  part (AU25) is read from the gap between the lips: the jaw opens the gap, so the two move together.

It is a model of a few thousand numbers, fitted in seconds: data-efficient where a network would learn a
small dataset by heart, and it reads geometry directly, where a critic's AU head reads texture too. It
serves as a teacher of the deformation generator and, on its own, as a motion-only editor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .aus import (AU_NAMES, AU_REGIONS, INNER_BROW_COMBINATION, NUM_AUS,
                  inner_brow_combination_change)
from .face_regions import (EYES, LIP_CORNERS, NUM_MESH_LANDMARKS, eye_distance, inner_brow_lowering,
                           region_landmarks)
from .models import MOTION_FOLDER
from .models.hub import HubModel
from .warp import offset_grid

MIN_AU_RANGE: float = 0.2
"""An AU whose values in the data span less than this (1st to 99th percentile, on the 0–1 scale) is not
fitted: its motion would be noise divided by a small number. Nor is one whose own values span less: the
residuals of its regression on the other fitted AUs (each source centred), for an AU that the data show only
together with another (in the motion model's videos jaw drop, 0.175, beside lips part) would split their shared
motion between them at random."""

SATURATING_AUS: tuple[str, ...] = ("AU45",)
"""AUs whose motion stops at the strongest the data showed (its 99th percentile): the lids of the data's
most closed eyes are shut, and a lid moved further would fold over the lower one."""

FACS_PRIOR: dict[str, tuple[str, tuple[float, float]]] = {
    "AU05": ("upper lids", (0.0, -0.07)),  # the upper lid rises, baring the white above the iris
    "AU14": ("lip corners", (0.05, -0.03)),  # the corners tighten, drawn back and a little up
    "AU15": ("lip corners", (0.02, 0.10)),  # the corners are pulled down
    "AU20": ("lip corners", (0.12, 0.03)),  # the lips stretch sideways, the corners a little down
    "AU26": ("jaw", (0.0, 0.14)),  # the jaw drops, carrying the lower lip and the chin down
}
"""What FACS says an AU does at full intensity, for the AUs a data set may hold too little of to fit
(expressions that posed and everyday faces rarely show, or show only with another AU): the part it moves and
``(outward, down)``, in eye distances. The part moves by that much, and the landmarks of the AU's region near
it by less (:func:`facs_prior_displacements`). The jaw's 0.14 is how far the chin drops per unit of jaw drop in
the motion model's videos when lips part is kept off the chin."""

RIDGE: float = 1.0
"""Ridge penalty of the regression (AU units, summed over faces): a guard for nearly collinear AUs."""

_POSE_FEATURES = 5  # yaw, pitch, roll, yaw², pitch²


def _pose_features(pose: np.ndarray) -> np.ndarray:
    radians = np.radians(np.asarray(pose, dtype=np.float64))
    return np.concatenate([radians, radians[:, :2] ** 2], axis=1)


def _centred_per_source(values: np.ndarray, sources: np.ndarray) -> np.ndarray:
    centred = np.empty_like(values, dtype=np.float64)
    for source in np.unique(sources):
        rows = sources == source
        centred[rows] = values[rows] - values[rows].mean(axis=0)
    return centred


@dataclass(frozen=True)
class MotionFit:
    """The result of a regression of landmarks on AUs (before it becomes a :class:`MotionModel`).

    Attributes:
        displacements: ``(17, 468, 2)`` pixels per unit AU; zero outside each AU's region and for AUs
            left out.
        pose_coefficients: ``(5, 468, 2)`` pixels per unit of yaw, pitch, roll (radians) and their squares.
        mean_landmarks: ``(468, 2)`` the mean over sources of each source's mean face.
        au_low, au_high: ``(17,)`` the 1st and 99th percentiles of each AU in the data.
        supported: ``(17,)`` bool, the AUs that were fitted.
        prior: ``(17,)`` bool, the AUs not fitted whose displacements are FACS's (:data:`FACS_PRIOR`).
    """

    displacements: np.ndarray
    pose_coefficients: np.ndarray
    mean_landmarks: np.ndarray
    au_low: np.ndarray
    au_high: np.ndarray
    supported: np.ndarray
    prior: np.ndarray

    def predict(self, aus: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """The AUs' and the pose's contribution to landmark positions: ``(N, 468, 2)`` pixels.

        Differences between faces of one source are the model's motion; the constant part is that
        source's mean face.

        Args:
            aus: ``(N, 17)`` in ``[0, 1]`` (those of :data:`SATURATING_AUS` held to the data's range, as the
                model does).
            pose: ``(N, 3)`` yaw, pitch, roll in degrees.
        """
        low, high = _au_bounds(self.au_low, self.au_high)
        clamped = np.clip(aus, low, high)
        return (np.einsum("nk,kld->nld", clamped, self.displacements)
                + np.einsum("nk,kld->nld", _pose_features(pose), self.pose_coefficients))  # fmt: skip


def regress_motion(landmarks: np.ndarray, aus: np.ndarray, pose: np.ndarray, sources: Sequence[str],
                   ridge: float = RIDGE, min_au_range: float = MIN_AU_RANGE,
                   left_out: Sequence[str] = (), facs_prior: bool = True) -> MotionFit:  # fmt: skip
    """Fit per-AU landmark displacements (the module docstring says how).

    Args:
        landmarks: ``(N, ≥468, 2)`` landmark positions in crop pixels (irises, if present, are dropped).
        aus: ``(N, 17)`` AU intensities in ``[0, 1]``.
        pose: ``(N, 3)`` head yaw, pitch, roll in degrees.
        sources: ``N`` source names (a person or a video); each gets its own mean face.
        ridge: ridge penalty.
        min_au_range: see :data:`MIN_AU_RANGE`.
        left_out: AUs not fitted whatever their range, nor given FACS's motion (to measure what each AU explains).
        facs_prior: give the AUs that are not fitted for too little variation, or too little of their own, FACS's
            motion (:data:`FACS_PRIOR`), and fit the others on what that motion leaves.

    Raises:
        ValueError: on mismatched lengths, or fewer faces than unknowns.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)[:, :NUM_MESH_LANDMARKS]
    aus, pose, sources = np.asarray(aus, dtype=np.float64), np.asarray(pose, dtype=np.float64), np.asarray(sources)
    count = len(landmarks)
    if not (len(aus) == len(pose) == len(sources) == count):
        raise ValueError(f"landmarks, aus, pose and sources must have one row per face, got {count}, {len(aus)}, "
                         f"{len(pose)}, {len(sources)}.")  # fmt: skip
    if count < 4 * (NUM_AUS + _POSE_FEATURES):
        raise ValueError(f"{count} faces are too few to fit the motion model; annotate at least "
                         f"{4 * (NUM_AUS + _POSE_FEATURES)} (every frame of a few videos is best).")  # fmt: skip
    au_low, au_high = np.percentile(aus, 1, axis=0), np.percentile(aus, 99, axis=0)
    supported = ((au_high - au_low) >= min_au_range) & ~np.isin(AU_NAMES, list(left_out))
    mean_landmarks = np.mean([landmarks[sources == s].mean(axis=0) for s in np.unique(sources)], axis=0)
    regions = region_landmarks(mean_landmarks)

    centred_landmarks = _centred_per_source(landmarks.reshape(count, -1), sources).reshape(landmarks.shape)
    centred_aus = _centred_per_source(aus, sources)
    supported = _with_range_of_their_own(centred_aus, supported, min_au_range)
    centred_pose = _centred_per_source(_pose_features(pose), sources)
    # The AUs not fitted move as FACS says; the motion that says they did in the data is not fitted again
    # (otherwise lips part, read from the same gap as jaw drop, would carry the jaw's drop once more).
    prior = ~supported & ~np.isin(AU_NAMES, list(left_out)) & np.isin(AU_NAMES, list(FACS_PRIOR)) & facs_prior
    prior_displacements = facs_prior_displacements(mean_landmarks, np.asarray(AU_NAMES)[prior])
    centred_landmarks = centred_landmarks - np.einsum("nk,kld->nld", centred_aus[:, prior], prior_displacements[prior])
    # Which (supported) AUs may move each landmark; landmarks with the same set share one design matrix.
    acting = np.zeros((NUM_AUS, NUM_MESH_LANDMARKS), dtype=bool)
    for region, names in AU_REGIONS.items():
        for name in names:
            acting[AU_NAMES.index(name)] |= regions[region]
    acting &= supported[:, None]
    displacements = np.zeros((NUM_AUS, NUM_MESH_LANDMARKS, 2))
    pose_coefficients = np.zeros((_POSE_FEATURES, NUM_MESH_LANDMARKS, 2))
    groups: dict[tuple[int, ...], list[int]] = {}
    for landmark in range(NUM_MESH_LANDMARKS):
        groups.setdefault(tuple(np.flatnonzero(acting[:, landmark])), []).append(landmark)
    for au_indices, members in groups.items():
        design = np.concatenate([centred_aus[:, list(au_indices)], centred_pose], axis=1)
        targets = centred_landmarks[:, members].reshape(count, -1)
        gram = design.T @ design + ridge * np.eye(design.shape[1])
        coefficients = np.linalg.solve(gram, design.T @ targets).reshape(design.shape[1], len(members), 2)
        for row, au in enumerate(au_indices):
            displacements[au, members] = coefficients[row]
        pose_coefficients[:, members] = coefficients[len(au_indices):]
    displacements[prior] = prior_displacements[prior]
    return MotionFit(displacements, pose_coefficients, mean_landmarks, au_low, au_high, supported, prior)


def _with_range_of_their_own(centred_aus: np.ndarray, supported: np.ndarray, min_au_range: float) -> np.ndarray:
    """The AUs of ``supported`` whose own range is at least ``min_au_range``: the 1st-to-99th-percentile span of their
    residual on the other AUs kept. The AU with the least of its own goes first, then the others are measured again
    without it (two AUs the data show together each have little of their own; the one with more keeps it).

    Args:
        centred_aus: ``(N, 17)`` AUs, each source's mean removed.
        supported: ``(17,)`` bool, the AUs to consider.

    Returns:
        ``(17,)`` bool.
    """
    kept = supported.copy()
    while kept.any():
        ranges = np.full(len(kept), np.inf)
        for k in np.flatnonzero(kept):
            others = centred_aus[:, kept & (np.arange(len(kept)) != k)]
            residual = centred_aus[:, k] - others @ np.linalg.lstsq(others, centred_aus[:, k], rcond=None)[0]
            ranges[k] = np.percentile(residual, 99) - np.percentile(residual, 1)
        weakest = int(np.argmin(ranges))
        if ranges[weakest] >= min_au_range:
            break
        kept[weakest] = False
    return kept


def facs_prior_displacements(landmarks: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """FACS's motion (:data:`FACS_PRIOR`) of the AUs ``names`` on a face, in the form of fitted displacements.

    The part moves by the prior's ``(outward, down)`` times the eye distance: the lip corners, each
    outward from the mouth's middle, the other landmarks of the AU's region by a Gaussian weight of their
    distance to the nearer corner (width a quarter of the mouth's); the upper lids' edge, the middle of the
    lid fully and less toward the eye's corners (a parabola, 0 at the corners); the jaw, every landmark of the
    AU's region below the line between the lips' corners (the lower lip, the chin), fully from a twentieth of an
    eye distance below it and on the face's middle, less toward the jaw's angles (a Gaussian of the distance from
    the middle, width the mouth's), which are nearer the hinge.

    Args:
        landmarks: ``(≥468, 2)`` a face's landmarks in crop pixels (the mean face of a fit).
        names: AUs of :data:`FACS_PRIOR`.

    Returns:
        ``(17, 468, 2)`` pixels per unit AU, zero for the other AUs and outside each AU's regions.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:NUM_MESH_LANDMARKS]
    unit = eye_distance(points)
    regions = region_landmarks(points)
    displacements = np.zeros((NUM_AUS, NUM_MESH_LANDMARKS, 2))
    for name in names:
        part, (outward, down) = FACS_PRIOR[name]
        motion = np.zeros((NUM_MESH_LANDMARKS, 2))
        if part == "lip corners":
            corners = points[list(LIP_CORNERS)]
            distance = np.linalg.norm(points[:, None] - corners[None], axis=-1)
            side = np.sign(corners[distance.argmin(axis=1), 0] - corners[:, 0].mean())
            weight = np.exp(-((distance.min(axis=1) / (0.25 * np.linalg.norm(corners[1] - corners[0]))) ** 2))
            motion = np.stack([side * outward, np.full(len(points), down)], axis=1) * (unit * weight[:, None])
        elif part == "upper lids":
            middle = np.mean([points[list(eye["corners"])][:, 0].mean() for eye in EYES])
            for eye in EYES:
                corners, lid = points[list(eye["corners"])], list(eye["upper lid"])
                centre, half_width = corners[:, 0].mean(), abs(corners[1, 0] - corners[0, 0]) / 2
                weight = np.clip(1.0 - ((points[lid, 0] - centre) / half_width) ** 2, 0.0, 1.0)
                motion[lid] = np.array([np.sign(centre - middle) * outward, down]) * (unit * weight[:, None])
        elif part == "jaw":
            corners = points[list(LIP_CORNERS)]
            slope = (corners[1, 1] - corners[0, 1]) / (corners[1, 0] - corners[0, 0])
            below = points[:, 1] - (corners[0, 1] + slope * (points[:, 0] - corners[0, 0]))
            width = np.linalg.norm(corners[1] - corners[0])
            weight = (np.clip(below / (0.05 * unit), 0.0, 1.0)
                      * np.exp(-(((points[:, 0] - corners[:, 0].mean()) / width) ** 2)))  # fmt: skip
            motion = np.stack([np.zeros(len(points)), np.full(len(points), down)], axis=1) * (unit * weight[:, None])
        else:
            raise ValueError(f"FACS_PRIOR names an unknown part {part!r} for {name}.")
        inside = np.any([regions[region] for region, acting in AU_REGIONS.items() if name in acting], axis=0)
        displacements[AU_NAMES.index(name)] = motion * inside[:, None]
    return displacements


def _au_bounds(au_low: np.ndarray | torch.Tensor, au_high: np.ndarray | torch.Tensor) -> tuple:
    """The range each AU's value is held to: the data's for :data:`SATURATING_AUS`, ``[0, 1]`` for the others.

    Args:
        au_low, au_high: ``(17,)`` the data's range (numpy arrays or tensors, returned in kind).
    """
    saturating = [name in SATURATING_AUS for name in AU_NAMES]
    if isinstance(au_low, torch.Tensor):
        mask = torch.tensor(saturating, device=au_low.device)
        return torch.where(mask, au_low, 0.0), torch.where(mask, au_high, 1.0)
    return np.where(saturating, au_low, 0.0), np.where(saturating, au_high, 1.0)


class MotionModel(nn.Module, HubModel):
    """Per-AU landmark displacements and the dense grid they imply (see the module docstring).

    The learned quantities are buffers (saved in ``model.safetensors``), the sizes are the config.

    Args:
        image_size: side of the crops whose pixels the displacements and landmarks are in.
        num_aus: length of the AU vectors.
        num_landmarks: face-mesh landmarks the model moves (468: MediaPipe's mesh without irises).
        max_offset: largest displacement of the grid, in pixels: each axis of the spline's offset is clamped to
            ``±max_offset`` (below it the grid moves the landmarks by exactly their displacement; a bound of the
            ``tanh`` form would shorten every motion, a 4-pixel one by 8% at 8 pixels).
        smoothing: regularisation of the thin-plate spline (0 interpolates the landmarks exactly; more
            averages neighbouring landmarks that move differently, as the lids do when they close). With a lattice
            point every two pixels, 1e-3 let the spline overshoot between the landmarks of parting lips and fold
            the grid along them; 2e-3 does not, and moves the landmarks as far, to within 2% of their displacement.
        spline_resolution: side of the lattice the spline is evaluated on before it is upsampled bilinearly to the
            crop. 32, what models saved before this option hold; :meth:`from_fit` draws every two pixels (64 on
            128-pixel crops). A coarser lattice flattens the field between landmarks that move differently (lips,
            lids): at 32 the grid moved the lip corners of a smile by 0.76 of their displacement
            (``BENCHMARKS.md``, "The motion model's grid, drawn finer"); a finer one is slower and, at every pixel,
            folds over parting lips, where the spline overshoots between their landmarks.
        border: the grid fades to zero over this many pixels at the crop's edge.
        field_step: the change of one AU whose grid :meth:`au_fields` divides by it; 0 for the tangent at no change.
        inner_brow_combination: move the brows as FACS's 1+4 does (:data:`~defgan_hf.aus.INNER_BROW_COMBINATION`):
            the brow lowerer lowers the inner brows only by as much as it exceeds the inner brow raiser. Without
            it the two motions add up and cancel there. The data cannot teach this: MediaPipe's blendshapes never
            read the two AUs together.
    """

    def __init__(self, image_size: int = 128, num_aus: int = NUM_AUS, num_landmarks: int = NUM_MESH_LANDMARKS,
                 max_offset: float = 8.0, smoothing: float = 2e-3, border: float = 6.0,
                 field_step: float = 0.0, inner_brow_combination: bool = False,
                 spline_resolution: int = 32) -> None:  # fmt: skip
        super().__init__()
        if max_offset <= 0:
            raise ValueError(f"max_offset must be positive (pixels), got {max_offset}.")
        if spline_resolution < 2:
            raise ValueError(f"spline_resolution must be at least 2 (a lattice's side), got {spline_resolution}.")
        if not 0.0 <= field_step <= 1.0:
            raise ValueError(f"field_step must be in [0, 1] (AU units), got {field_step}.")
        self.image_size, self.num_aus, self.num_landmarks = image_size, num_aus, num_landmarks
        self.max_offset, self.smoothing, self.border = max_offset, smoothing, border
        self.field_step, self.spline_resolution = field_step, spline_resolution
        self.inner_brow_combination = inner_brow_combination
        self.register_buffer("displacements", torch.zeros(num_aus, num_landmarks, 2))
        self.register_buffer("mean_landmarks", torch.zeros(num_landmarks, 2))
        self.register_buffer("au_low", torch.zeros(num_aus))
        self.register_buffer("au_high", torch.ones(num_aus))
        self.register_buffer("supported", torch.zeros(num_aus))

    @classmethod
    def from_fit(cls, fit: MotionFit, image_size: int = 128, **config: float | bool) -> MotionModel:
        """The model of a :func:`regress_motion` result (``config``: ``max_offset``, ``smoothing``, ``border``,
        ``field_step``, ``inner_brow_combination``, ``spline_resolution``: a lattice point every two pixels unless
        given)."""
        config = {"spline_resolution": image_size // 2, **config}
        model = cls(image_size=image_size, num_aus=len(fit.supported), num_landmarks=fit.mean_landmarks.shape[0],
                    **config)  # fmt: skip
        for name in ("displacements", "mean_landmarks", "au_low", "au_high", "supported"):
            getattr(model, name).copy_(torch.as_tensor(np.asarray(getattr(fit, name), dtype=np.float32)))
        return model

    @property
    def supported_aus(self) -> list[str]:
        """The AUs the data let the model fit."""
        return [name for name, ok in zip(AU_NAMES, self.supported.tolist()) if ok]

    @property
    def prior_aus(self) -> list[str]:
        """The AUs not fitted that move as FACS describes them (:data:`FACS_PRIOR`); the others not fitted move nothing."""
        moving = self.displacements.flatten(1).any(dim=1).tolist()
        return [name for name, fitted, moves in zip(AU_NAMES, self.supported.tolist(), moving) if moves and not fitted]

    def why_not_fitted(self, name: str) -> str:
        """Why AU ``name`` was not fitted, in words; ``""`` if it was."""
        index = AU_NAMES.index(name)
        if self.supported[index]:
            return ""
        if float(self.au_high[index] - self.au_low[index]) >= MIN_AU_RANGE:
            return "too little variation of its own (the data show it with other AUs)"
        return "too little variation"

    def au_motion(self, name: str) -> torch.Tensor:
        """``(num_landmarks, 2)`` pixels: every landmark's motion in an edit of AU ``name`` from 0 to 1, the others kept."""
        target = torch.zeros(1, self.num_aus, device=self.displacements.device)
        target[0, AU_NAMES.index(name)] = 1.0
        return self.landmark_motion(torch.zeros_like(target), target)[0]

    def landmark_motion(self, source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
        """Displacement of every landmark for an edit, before the grid's bound: ``Σ_k Δ_k D_k``, less the inner
        brows' lowering of FACS's 1+4 with ``inner_brow_combination``.

        Args:
            source_aus, target_aus: ``(N, 17)`` in ``[0, 1]``.

        Returns:
            ``(N, num_landmarks, 2)`` in pixels of the crop, ``(x, y)``; exactly 0 where ``target = source``.
        """
        low, high = _au_bounds(self.au_low.to(source_aus), self.au_high.to(source_aus))
        change = (torch.minimum(torch.maximum(target_aus, low), high)
                  - torch.minimum(torch.maximum(source_aus, low), high))  # fmt: skip
        displacements = self.displacements.to(source_aus)
        motion = torch.einsum("nk,kld->nld", change, displacements)
        if not self.inner_brow_combination:
            return motion
        # The inner brows are found on the mean face: a landmark's index says which point of the brow it is.
        mean_face = self.mean_landmarks.to(source_aus)[None]
        lowering = inner_brow_lowering(displacements[AU_NAMES.index(INNER_BROW_COMBINATION[1])][None], mean_face,
                                       mean_face)  # fmt: skip
        return motion - inner_brow_combination_change(source_aus, target_aus)[:, None, None] * lowering

    def grid(self, landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
             mirrored: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The deformation grid of an edit, at the face's own landmarks.

        A landmark at ``l`` that the edit moves by ``d`` is seen at ``l + d`` in the edited crop, which
        reads the input at ``l``: the backward offset ``−d`` at ``l + d``. A thin-plate spline through
        these offsets and through zero offsets on the crop's border is evaluated on a lattice (``spline_resolution``)
        and upsampled, then bounded and faded to zero at the border.

        Args:
            landmarks: ``(N, ≥num_landmarks, 2)`` the face's landmarks in pixels of the crop.
            source_aus, target_aus: ``(N, 17)`` in ``[0, 1]``.
            mirrored: ``(N,)`` bool, faces flipped left-right with their landmarks (each index then names the
                point of the other side, whose motion is the mirror image); None for none.

        Returns:
            ``(N, S, S, 2)`` grid in the convention of :mod:`defgan_hf.warp`; the identity grid, exactly,
            where ``target = source``.
        """
        points = landmarks[:, : self.num_landmarks].to(self.displacements)
        return self.landmark_grid(points, self.edit_motion(source_aus.to(points), target_aus.to(points), mirrored))

    def edit_motion(self, source_aus: torch.Tensor, target_aus: torch.Tensor,
                    mirrored: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """:meth:`landmark_motion` on faces that may be flipped left-right (``mirrored`` as :meth:`grid` takes it).

        Returns:
            ``(N, num_landmarks, 2)`` pixels of the crop, ``(x, y)``.
        """
        return _mirror(self.landmark_motion(source_aus, target_aus), mirrored)

    def landmark_grid(self, landmarks: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """The grid that moves each landmark by ``motion``, drawn as :meth:`grid` draws an edit's: the backward
        offset ``−d`` at ``l + d``, a thin-plate spline through them and zero on the border, bounded and faded.

        :meth:`grid` passes the motion of an AU change; texture pretraining
        (:func:`defgan_hf.objective.texture_pretraining_objective`) the motion between two frames of a video.

        Args:
            landmarks: ``(N, ≥num_landmarks, 2)`` the face's landmarks in pixels of the crop.
            motion: ``(N, ≥num_landmarks, 2)`` each landmark's displacement in pixels, ``(x, y)``.

        Returns:
            ``(N, S, S, 2)`` grid in the convention of :mod:`defgan_hf.warp`; the identity grid where ``motion`` is 0.
        """
        points = landmarks[:, : self.num_landmarks].to(self.displacements)
        motion = motion[:, : self.num_landmarks].to(points)
        to_unit = 2.0 / (self.image_size - 1)
        destinations = points * to_unit - 1.0 + motion * to_unit
        offsets = self._spline(destinations, -motion).clamp(-self.max_offset, self.max_offset)
        return offset_grid(offsets.permute(0, 2, 3, 1))

    def au_fields(self, landmarks: torch.Tensor, mirrored: torch.Tensor | None = None) -> torch.Tensor:
        """Each AU's motion on this face, the teacher of :meth:`DeformationGenerator.au_fields`: the field ``B_k``
        with ``grid ≈ Id + Σ_k Δ_k B_k`` (no bound, no clamp to the AU's range).

        With ``field_step = 0``, the grid of :meth:`grid` linearised at no change: one spline for all AUs, its
        centres at the landmarks themselves, right for small changes. With ``field_step = h > 0``, the grid of a
        change of ``h`` of one AU divided by ``h``: one spline per AU, its centres where the landmarks arrive, as
        in :meth:`grid`. The tangent places each offset where the landmark rests, so a lip that moves about its
        own thickness reads the pixels of the other lip, and closed lips asked to part thicken instead; the
        secant parts them (``BENCHMARKS.md``, "Texture pretraining from pairs of video frames").

        Args:
            landmarks: ``(N, ≥num_landmarks, 2)`` the face's landmarks in pixels of the crop.
            mirrored: ``(N,)`` bool, faces flipped left-right with their landmarks, as in :meth:`grid`.

        Returns:
            ``(N, num_aus, 2, S, S)`` ``(x, y)`` offsets in pixels per unit change; 0 for AUs that move nothing.
        """
        points = landmarks[:, : self.num_landmarks].to(self.displacements)
        count, size = points.shape[0], self.image_size
        motion = _mirror(self.displacements.expand(count, -1, -1, -1), mirrored)  # (N, K, L, 2) per unit change
        to_unit = 2.0 / (size - 1)
        if self.field_step == 0.0:
            values = -motion.permute(0, 2, 1, 3).reshape(count, self.num_landmarks, 2 * self.num_aus)
            return self._spline(points * to_unit - 1.0, values).unflatten(1, (self.num_aus, 2))
        moving = self.displacements.flatten(1).any(dim=1).nonzero().flatten().tolist()
        centres = (points[:, None] + self.field_step * motion[:, moving]) * to_unit - 1.0  # (N, k, L, 2)
        fields = points.new_zeros(count, self.num_aus, 2, size, size)
        fields[:, moving] = self._spline(centres.flatten(0, 1), -motion[:, moving].flatten(0, 1)).unflatten(
            0, (count, len(moving)))
        return fields

    def _spline(self, centres: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The thin-plate spline through ``values`` ``(N, K, C)`` pixels at ``centres`` ``(N, K, 2)`` (normalised
        coordinates) as ``(N, C, S, S)`` offsets of the crop, faded to zero at its edge."""
        size = self.image_size
        resolution = self.spline_resolution
        # In float64: the spline's linear system mixes r² log r over the crop with the smoothing term.
        offsets = _spline_lattice(centres.double(), values.double(), resolution, self.smoothing).to(values.dtype)
        if resolution != size:
            offsets = F.interpolate(offsets, size=(size, size), mode="bilinear", align_corners=True)
        distance_to_edge = torch.minimum(torch.arange(size), torch.arange(size).flip(0)).to(offsets)
        ramp = (distance_to_edge / self.border).clamp(0.0, 1.0)
        return offsets * (ramp[:, None] * ramp[None, :])

    def usage_example(self) -> str:
        return (
            "from defgan_hf.motion import MotionModel\n\n"
            'motion = MotionModel.from_pretrained("REPO_ID_OR_FOLDER", subfolder="motion")\n'
            "grid = motion.grid(landmarks, source_aus, target_aus)  # (N, 478, 2) crop pixels, (N, 17) AUs"
        )


def _mirror(motion: torch.Tensor, mirrored: torch.Tensor | None) -> torch.Tensor:
    """``motion`` ``(N, …, 2)`` with ``x`` negated on the faces flipped left-right (``mirrored`` ``(N,)`` bool, or None)."""
    if mirrored is None:
        return motion
    flipped = mirrored.to(motion.device).reshape(-1, *(1,) * (motion.ndim - 1))
    return torch.where(flipped, motion * motion.new_tensor([-1.0, 1.0]), motion)


_BORDER_POINTS = 8  # per side of the crop


def thin_plate_spline(centres: torch.Tensor, values: torch.Tensor, points: torch.Tensor,
                      smoothing: float) -> torch.Tensor:  # fmt: skip
    """Evaluate a smoothing thin-plate spline through ``values`` at ``centres``, and 0 on the unit square's border.

    Args:
        centres: ``(N, K, 2)`` in ``[-1, 1]``-ish normalised coordinates.
        values: ``(N, K, C)``, ``C`` functions through the same centres (one solve serves them all).
        points: ``(P, 2)`` or ``(N, P, 2)`` where to evaluate the spline, normalised like ``centres``.
        smoothing: added to the kernel's diagonal (0 interpolates).

    Returns:
        ``(N, P, C)`` the spline at ``points``.
    """
    batch_size = centres.shape[0]
    line = torch.linspace(-1.0, 1.0, _BORDER_POINTS + 1, dtype=centres.dtype, device=centres.device)[:-1]
    ones = torch.ones_like(line)
    border = torch.cat([torch.stack(side, dim=1) for side in
                        ((line, -ones), (ones, line), (-line, ones), (-ones, -line))])  # fmt: skip
    centres = torch.cat([centres, border.expand(batch_size, -1, -1)], dim=1)
    channels = values.shape[-1]
    values = torch.cat([values, values.new_zeros(batch_size, border.shape[0], channels)], dim=1)
    count = centres.shape[1]

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        squared = torch.cdist(a, b).pow(2)
        return 0.5 * squared * torch.log(squared.clamp_min(1e-12))  # r² log r

    affine = torch.cat([centres.new_ones(batch_size, count, 1), centres], dim=2)
    system = centres.new_zeros(batch_size, count + 3, count + 3)
    system[:, :count, :count] = kernel(centres, centres) + smoothing * torch.eye(count, dtype=centres.dtype,
                                                                                   device=centres.device)  # fmt: skip
    system[:, :count, count:] = affine
    system[:, count:, :count] = affine.transpose(1, 2)
    right = torch.cat([values, values.new_zeros(batch_size, 3, channels)], dim=1)
    weights = torch.linalg.solve(system, right)
    points = points.to(centres).expand(batch_size, -1, -1)
    points_affine = torch.cat([points.new_ones(batch_size, points.shape[1], 1), points], dim=2)
    return kernel(points, centres) @ weights[:, :count] + points_affine @ weights[:, count:]


def _spline_lattice(centres: torch.Tensor, values: torch.Tensor, resolution: int, smoothing: float) -> torch.Tensor:
    """:func:`thin_plate_spline` on the ``resolution²`` lattice of ``[-1, 1]²`` (``align_corners`` style):
    ``(N, C, resolution, resolution)``."""
    ys, xs = torch.meshgrid(*(torch.linspace(-1.0, 1.0, resolution, dtype=centres.dtype, device=centres.device),) * 2,
                            indexing="ij")  # fmt: skip
    field = thin_plate_spline(centres, values, torch.stack([xs.flatten(), ys.flatten()], dim=1), smoothing)
    return field.transpose(1, 2).reshape(centres.shape[0], values.shape[-1], resolution, resolution)


def crop_sources(files: Sequence[str]) -> list[str]:
    """The source of each crop for :func:`regress_motion`: its folder under ``imgs/``.

    ``defgan-annotate`` puts a video's frames in a folder of their own and the photos of one input
    folder together, so a folder is one person (one video, or a folder of one person's photos).
    """
    return [file.rsplit("/", 1)[0] if "/" in file else "" for file in files]


@dataclass(frozen=True)
class MotionData:
    """The faces a motion model is fitted on: ``landmarks (N, 478, 2)`` in pixels of ``crop_size``-pixel
    crops, ``aus (N, 17)`` in ``[0, 1]``, ``pose (N, 3)`` degrees, ``sources`` (:func:`crop_sources`),
    ``files`` (crop keys)."""

    landmarks: np.ndarray
    aus: np.ndarray
    pose: np.ndarray
    sources: np.ndarray
    files: list[str]
    crop_size: int

    def at_size(self, image_size: int) -> MotionData:
        """The same faces with their landmarks in pixels of ``image_size``-pixel crops."""
        factor = image_size / self.crop_size
        landmarks = (self.landmarks + 0.5) * factor - 0.5  # pixel centres stay in place
        return MotionData(landmarks, self.aus, self.pose, self.sources, self.files, image_size)

    def select(self, rows: np.ndarray) -> MotionData:
        """The faces at ``rows`` (a boolean mask or indices)."""
        return MotionData(self.landmarks[rows], self.aus[rows], self.pose[rows], self.sources[rows],
                          [self.files[i] for i in np.arange(len(self.files))[rows]], self.crop_size)  # fmt: skip


def read_motion_data(data_dir: str | Path) -> MotionData:
    """The annotated faces of a ``defgan-annotate`` folder that have landmarks (``aus.csv`` + ``landmarks.csv``).

    Raises:
        FileNotFoundError: if the folder has no ``landmarks.csv`` (annotated by an older version, or
            not by ``defgan-annotate``): annotate the photos again into a new folder.
    """
    from .data import IMAGE_FOLDER, LANDMARKS_FILE, TABLE_FILE, _normalise_key, read_au_labels, read_landmarks

    data_dir = Path(data_dir)
    if not (data_dir / LANDMARKS_FILE).is_file():
        raise FileNotFoundError(
            f"{data_dir} has no {LANDMARKS_FILE}: the motion model is fitted on face landmarks, which "
            f"defgan-annotate writes beside {TABLE_FILE}. Annotate the photos and videos again into a new folder."
        )
    geometry = read_landmarks(data_dir / LANDMARKS_FILE)
    labels = read_au_labels(data_dir / TABLE_FILE)
    rows = [row for row, file in enumerate(geometry.files) if _normalise_key(file) in labels]
    files = [geometry.files[row] for row in rows]
    if not files:
        raise ValueError(f"No face in {data_dir / LANDMARKS_FILE} has AU labels in {data_dir / TABLE_FILE}.")
    aus = np.stack([labels[_normalise_key(file)] for file in files])
    with Image.open(data_dir / IMAGE_FOLDER / files[0]) as crop:
        crop_size = crop.width
    return MotionData(geometry.landmarks[rows], aus.astype(np.float32), geometry.pose[rows],
                      np.array(crop_sources(files)), files, crop_size)  # fmt: skip


def fit_motion_data(data: MotionData, image_size: int = 128, **config: float | bool) -> MotionModel:
    """Fit a :class:`MotionModel` on :func:`read_motion_data`'s faces (``config`` as :meth:`MotionModel.from_fit`).

    Landmarks annotated at another crop size are rescaled to ``image_size``.
    """
    data = data.at_size(image_size)
    fit = regress_motion(data.landmarks, data.aus, data.pose, data.sources)
    return MotionModel.from_fit(fit, image_size=image_size, **config)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``defgan-fit-motion DATA_DIR --out MODEL_FOLDER [--image_size 128] [--max_offset 8]``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="defgan-fit-motion",
        description="Fit the motion model (per-AU landmark displacements) on a defgan-annotate folder "
        "(aus.csv + landmarks.csv) and save it as MODEL_FOLDER/motion/ (a DefGAN model folder, or a new one).",
    )
    parser.add_argument("data_dir", metavar="DATA_DIR", type=Path, help="output folder of defgan-annotate")
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL_FOLDER",
                        help=f"folder to write {MOTION_FOLDER}/ into")  # fmt: skip
    parser.add_argument("--image_size", type=int, default=128, help="crop size of the model it serves (default: 128)")
    parser.add_argument("--max_offset", type=float, default=8.0, help="bound of the grid in pixels (default: 8)")
    parser.add_argument("--inner_brow_combination", action="store_true",
                        help="move the brows as FACS's 1+4 does (MotionModel's inner_brow_combination)")
    args = parser.parse_args(argv)
    try:
        data = read_motion_data(args.data_dir)
        model = fit_motion_data(data, image_size=args.image_size, max_offset=args.max_offset,
                                inner_brow_combination=args.inner_brow_combination)  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    model.save_pretrained(args.out, subfolder=MOTION_FOLDER)
    not_fitted = {name: f"{name} (range {low:.2f}–{high:.2f}: {model.why_not_fitted(name)})" for name, low, high, ok in
                  zip(AU_NAMES, model.au_low.tolist(), model.au_high.tolist(), model.supported.tolist()) if not ok}  # fmt: skip
    prior = model.prior_aus
    still = [text for name, text in not_fitted.items() if name not in prior]
    print(f"Fitted on {len(data.files)} faces from {len(set(data.sources.tolist()))} sources; wrote "
          f"{args.out / MOTION_FOLDER}. AUs fitted: {', '.join(model.supported_aus)}. Not fitted, moved as FACS "
          f"describes them: {', '.join(not_fitted[name] for name in prior) or 'none'}; "
          f"moving nothing: {', '.join(still) or 'none'}.", file=sys.stderr)  # fmt: skip
    return 0
