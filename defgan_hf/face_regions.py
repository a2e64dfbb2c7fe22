"""The face regions the AUs act on, on MediaPipe's face mesh: which landmarks belong to each, and where in a crop
the AUs that an edit changes may add texture.

Regions are those of :data:`defgan_hf.aus.AU_REGIONS` (brows, lids, cheeks, nose and upper lip, mouth and
chin). Each is given by seed landmarks (mostly MediaPipe's contour connection sets): the motion model grows
a region over the landmarks of a mean face near its seeds (:func:`region_landmarks`); the texture generator's
attention mask is confined to discs around the seeds of the regions whose AUs change
(:func:`changed_region_mask`), so that an edit that changes no AU adds no texture anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .aus import AU_NAMES, AU_REGIONS
from .warp import grid_offsets_px

NUM_MESH_LANDMARKS = 468
"""Face-mesh points of the face surface; MediaPipe's points 468–477 are the irises, which no AU moves
and which the lids cover when they close, so they take no part in the motion model's grid."""

# Seed landmarks of each face region (MediaPipe face-mesh indices, mostly from its contour connection
# sets); a region is its seeds and every landmark of the mean face within the growth radius of them.
_BROWS = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 8, 9)
_EYES = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,
         249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)  # fmt: skip
_CHEEKS = (50, 280, 117, 346, 118, 347, 101, 330, 36, 266, 205, 425, 123, 352)
_NOSE = (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)
# The outer upper lip and the philtrum: the inner lips (and the corners) touch the lower lip at rest,
# and a region grown from them would take the lower lip in.
_UPPER_LIP = (0, 37, 39, 40, 185, 267, 269, 270, 409, 164, 167, 393)
_LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
         267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)  # fmt: skip
_CHIN = (152, 175, 199, 200, 18, 148, 377, 176, 400, 171, 396, 208, 428, 32, 262, 140, 369)

LIP_CORNERS: tuple[int, int] = (61, 291)
"""The outer corners of the lips (left and right as seen in the image)."""
EYES: tuple[dict[str, tuple[int, ...]], ...] = (
    {"corners": (33, 133), "upper lid": (246, 161, 160, 159, 158, 157, 173)},
    {"corners": (263, 362), "upper lid": (466, 388, 387, 386, 385, 384, 398)},
)
"""Each eye's corners and the landmarks along its upper lid's edge (left eye as seen in the image first)."""

REGION_SEEDS: dict[str, tuple[tuple[int, ...], float]] = {
    "brows": (_BROWS, 0.12),
    "lids": (_EYES, 0.08),
    "cheeks": (_CHEEKS, 0.08),
    "nose and upper lip": (_NOSE + _UPPER_LIP, 0.08),
    "mouth and chin": (_LIPS + _CHIN, 0.12),
}
"""Region of :data:`~defgan_hf.aus.AU_REGIONS` → (seed landmarks, growth radius in eye distances)."""


def region_landmarks(mean_landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean ``(468,)`` membership of each region, grown from :data:`REGION_SEEDS` on a mean face.

    Args:
        mean_landmarks: ``(≥468, 2)`` landmark positions of a face (any scale).
    """
    points = np.asarray(mean_landmarks, dtype=np.float64)[:NUM_MESH_LANDMARKS]
    regions = {}
    for region, (seeds, radius) in REGION_SEEDS.items():
        distance = np.linalg.norm(points[:, None] - points[list(seeds)][None], axis=-1).min(axis=1)
        regions[region] = distance <= radius * eye_distance(points)
    return regions


def eye_distance(landmarks: np.ndarray) -> float:
    """The distance between the eyes' centres (each the midpoint of its corners) of ``(≥468, 2 or 3)`` landmarks."""
    centres = [np.asarray(landmarks, dtype=np.float64)[list(eye["corners"])].mean(axis=0) for eye in EYES]
    return float(np.linalg.norm(centres[1] - centres[0]))


INNER_BROW_HEADS: tuple[int, int] = (107, 336)
"""The brows' inner heads, on their upper edge (left as seen in the image first)."""
BROW_TAILS: tuple[int, int] = (70, 300)
"""The brows' outer tails, on their upper edge."""


def inner_brow_lowering(motion: torch.Tensor, points: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """The part of a brow lowerer's motion that lowers the inner brows (what FACS's 1+4 leaves out:
    :data:`~defgan_hf.aus.INNER_BROW_COMBINATION`).

    It is the motion's component along the face's downward axis (perpendicular to the line through the eyes'
    centres), weighted by ``w(p)``: 1 from the face's middle out to the brows' inner heads, falling linearly
    to 0 at their tails (distances from the middle along the eyes' line), so that the brows turn oblique. The
    lowerer's pull toward the middle is kept.

    Args:
        motion: ``(N, P, 2)`` the brow lowerer's motion at ``points``, ``(x, y)`` in pixels.
        points: ``(N, P, 2)`` where it acts: crop pixels, or the landmarks themselves.
        landmarks: ``(N, ≥468, 2)`` the face's landmarks, in the same pixels.

    Returns:
        ``(N, P, 2)`` in pixels.
    """
    centres = torch.stack([landmarks[:, list(eye["corners"])].mean(dim=1) for eye in EYES], dim=1)  # (N, 2, 2)
    axis = F.normalize(centres[:, 1] - centres[:, 0], dim=-1)
    down = torch.stack([-axis[:, 1], axis[:, 0]], dim=-1)  # the eyes' line turned a quarter toward the chin
    middle = centres.mean(dim=1, keepdim=True)

    def from_middle(where: torch.Tensor) -> torch.Tensor:
        return ((where - middle) * axis[:, None]).sum(dim=-1).abs()

    head = from_middle(landmarks[:, list(INNER_BROW_HEADS)]).mean(dim=1, keepdim=True)
    tail = from_middle(landmarks[:, list(BROW_TAILS)]).mean(dim=1, keepdim=True)
    weight = ((tail - from_middle(points)) / (tail - head)).clamp(0.0, 1.0)
    return (weight * (motion * down[:, None]).sum(dim=-1))[..., None] * down[:, None]


def inner_brow_lowering_field(field: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """:func:`inner_brow_lowering` of a dense field: ``(N, 2, S, S)`` pixels at every pixel of the ``S``-pixel crop."""
    count, _, size, _ = field.shape
    motion = field.flatten(2).transpose(1, 2)  # (N, S², 2), pixels in row-major order
    lowering = inner_brow_lowering(motion, _pixel_positions(count, size, field), landmarks.to(field))
    return lowering.transpose(1, 2).reshape(field.shape)


TEXTURE_RADIUS: float = 0.08
"""Texture may appear within this fraction of the crop's side of a changed region's seed landmarks (10 px at
128 px: the lids, the lips and the mouth's interior, the skin of the nose and brows that wrinkles)."""
FULL_CHANGE: float = 0.1
"""A region is fully open to texture once its AUs change by this much in total (0–1 scale); below, its
mask is scaled down in proportion, to exactly 0 when none of them changes."""


def _pixel_positions(count: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """``(count, size², 2)`` the ``(x, y)`` position of every pixel of a ``size``-pixel crop, in row-major order
    (dtype and device of ``like``)."""
    coordinates = torch.arange(size, dtype=like.dtype, device=like.device)
    rows, columns = torch.meshgrid(coordinates, coordinates, indexing="ij")
    return torch.stack([columns.flatten(), rows.flatten()], dim=1).expand(count, -1, -1)


def _distance_to_seeds(landmarks: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Region of :data:`REGION_SEEDS` → ``(N, size²)``: each crop pixel's distance to the region's nearest seed
    landmark, in pixels (pixels in row-major order; NaN for a face with NaN landmarks)."""
    pixels = _pixel_positions(landmarks.shape[0], size, landmarks)
    return {region: torch.cdist(pixels, landmarks[:, list(seeds)]).min(dim=2).values
            for region, (seeds, _) in REGION_SEEDS.items()}  # fmt: skip


def changed_region_mask(landmarks: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
                        size: int) -> torch.Tensor:  # fmt: skip
    """Where an edit may add texture: the regions whose AUs change, around the face's own landmarks.

    ``R(p) = max over regions r of min(1, Σ_{k ∈ AUs(r)} |y_k − x_k| / FULL_CHANGE) · disc_r(p)``, with
    ``disc_r`` 1 within :data:`TEXTURE_RADIUS` of one of the region's seed landmarks, falling to 0 over
    two pixels.

    Args:
        landmarks: ``(N, ≥468, 2)`` face-mesh landmarks in pixels of the ``size``-pixel crop.
        source_aus, target_aus: ``(N, 17)`` in ``[0, 1]``.
        size: crop side.

    Returns:
        ``(N, 1, size, size)`` in ``[0, 1]``; exactly 0 everywhere where ``target = source``.
    """
    change = (target_aus - source_aus).abs().to(landmarks.dtype)
    distances = _distance_to_seeds(landmarks, size)
    radius = TEXTURE_RADIUS * size
    mask = landmarks.new_zeros(landmarks.shape[0], size * size)
    for region, names in AU_REGIONS.items():
        disc = ((radius - distances[region]) / 2.0 + 0.5).clamp(0.0, 1.0)
        opening = (change[:, [AU_NAMES.index(name) for name in names]].sum(dim=1) / FULL_CHANGE).clamp(max=1.0)
        mask = torch.maximum(mask, opening[:, None] * disc)
    return mask.reshape(-1, 1, size, size)


INNER_LIPS: tuple[int, ...] = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
"""The inner edge of the lips, once around the mouth's opening: the upper lip from its left corner to its right,
then the lower lip back (face-mesh indices, left as seen in the image)."""


def _inside(points: torch.Tensor, polygon: torch.Tensor) -> torch.Tensor:
    """Whether each point lies inside the polygon (even-odd rule).

    Args:
        points: ``(N, P, 2)``.
        polygon: ``(N, V, 2)`` vertices in order.

    Returns:
        ``(N, P)`` bool.
    """
    start, end = polygon[:, None], polygon.roll(-1, dims=1)[:, None]  # (N, 1, V, 2)
    x, y = points[..., 0:1], points[..., 1:2]  # (N, P, 1)
    straddles = (start[..., 1] > y) != (end[..., 1] > y)
    height = torch.where(end[..., 1] == start[..., 1], torch.ones_like(end[..., 1]), end[..., 1] - start[..., 1])
    crossing = start[..., 0] + (y - start[..., 1]) * (end[..., 0] - start[..., 0]) / height
    return ((straddles & (x < crossing)).sum(dim=-1) % 2) == 1


def opened_mouth_mask(landmarks: torch.Tensor, moved_landmarks: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Where an edit opens the mouth: pixels of the edited crop inside the lips' inner edge as the edit moves it,
    that the warp fills from outside that edge in the input (from the lips, not from a mouth already open).

    A warp can only stretch the lips over such pixels; the inside of a mouth is dark (the teacher of the texture
    generator, :func:`defgan_hf.objective.motion_pretraining_objective`).

    Args:
        landmarks: ``(N, ≥468, 2)`` the face's landmarks in pixels of the crop.
        moved_landmarks: ``(N, ≥468, 2)`` where the edit takes them.
        grid: ``(N, S, S, 2)`` the edit's warp (:mod:`defgan_hf.warp`'s convention): where each pixel reads the input.

    Returns:
        ``(N, 1, S, S)`` in ``{0, 1}``; 0 everywhere where the landmarks do not move, and where the opening is less
        than 3 px wide.
    """
    count, size = grid.shape[0], grid.shape[1]
    pixels = _pixel_positions(count, size, grid)
    sources = pixels + grid_offsets_px(grid).reshape(count, -1, 2)  # where each pixel reads the input
    opened = _inside(pixels, moved_landmarks[:, list(INNER_LIPS)].to(grid)) & ~_inside(
        sources, landmarks[:, list(INNER_LIPS)].to(grid))
    # Slivers under 3 px wide are where the warp and the moved edge disagree by a pixel along a mouth already
    # open (its teeth, its lips), not an opening: a morphological opening drops them.
    opened = opened.reshape(count, 1, size, size).to(grid.dtype)
    return F.max_pool2d(-F.max_pool2d(-opened, 3, stride=1, padding=1), 3, stride=1, padding=1)


LANDMARK_SIGMA: float = 0.02
"""Width (standard deviation) of each landmark's spot in :func:`landmark_heatmaps`, as a fraction of the crop's
side: 2.6 px at 128 px, about a brow's thickness."""


def landmark_heatmaps(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """The face's geometry as images a network can read beside the photo: one channel per face region.

    Channel ``r`` (in the order of :data:`REGION_SEEDS`) is ``max_i exp(−‖p − l_i‖² / 2σ²)`` over the region's
    seed landmarks ``l_i``, σ = :data:`LANDMARK_SIGMA` · ``size``: where the brows, lids, cheeks, nose and upper
    lip, mouth and chin are on this face. A network reading them finds each part where the landmarker found it, on
    any face, instead of learning to find it on the few faces of its training set. Every region's seeds hold
    both sides of the face, so the maps of a face flipped with its landmarks are the flipped maps.

    Args:
        landmarks: ``(N, ≥468, 2)`` face-mesh landmarks in pixels of the ``size``-pixel crop; a face with NaN
            landmarks (none in its data) gets empty maps.
        size: crop side.

    Returns:
        ``(N, len(REGION_SEEDS), size, size)`` in ``[0, 1]``.
    """
    sigma = LANDMARK_SIGMA * size
    maps = torch.stack([torch.exp(-0.5 * (distance / sigma) ** 2)
                        for distance in _distance_to_seeds(landmarks, size).values()], dim=1)  # fmt: skip
    return torch.nan_to_num(maps, nan=0.0).reshape(-1, len(REGION_SEEDS), size, size)
