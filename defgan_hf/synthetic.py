"""Procedural 2-D faces with exact Action Units: ground truth for motion + texture editing.

No real dataset shows the same face before and after an exact AU edit. These faces do: a face is
an :class:`Identity` (shape, colours, eye spacing, nose, brows, hair, background, glasses, beard) plus
an AU vector, and :func:`render_face` draws it deterministically, anti-aliased, at any size from
``MIN_SIZE`` to ``MAX_SIZE`` pixels (64 and 128 are the sizes the project uses). Rendering the same
identity with AUs ``x`` and ``y`` gives a source image and its exact edit.

Each AU acts as FACS describes it. Most AUs only *move* features, by at most about 5 pixels at
128 px (the deformation generator's bound, :data:`MAX_MOTION`), so a bounded warp of the neutral face
can reproduce them. Four AUs (:data:`defgan_hf.aus.TEXTURE_AUS`) also *create texture* no warp of the neutral
face contains: teeth and the mouth's interior (AU25, AU26), the closed eyelid (AU45), nose wrinkles
(AU09). That split is what the motion + texture vs texture-only benchmark measures.

==== ============================================================================================
AU   How it is rendered
==== ============================================================================================
AU01 inner brow ends rise (brows turn oblique)
AU02 outer brow ends rise
AU04 brows lower and draw together
AU05 upper lids rise, showing sclera above the iris
AU06 cheeks rise and push the lower lids up
AU07 lower lids rise (lid tightener)
AU09 nose wings and upper lip rise, inner brows lower; wrinkles appear across the nose (texture)
AU10 upper lip rises (thicker upper red), nose wings rise slightly
AU12 lip corners pulled up and out (smile)
AU14 lip corners pulled slightly out and up, lips tighten at the corners
AU15 lip corners pulled down
AU17 chin boss pushes the lower lip and the chin crease up (mouth line bows upward)
AU20 lip corners stretched sideways, lips flatten
AU23 lips thin and the mouth narrows
AU25 lips part, showing the mouth's interior and teeth (texture)
AU26 jaw drops: chin, lower lip and lower face outline move down; the mouth opens (texture)
AU45 upper lids close over the eyes, revealing the eyelid and a lash line (texture)
==== ============================================================================================

Coordinates are normalised image coordinates as in :mod:`defgan_hf.warp`: ``x`` right, ``y`` down,
``-1`` and ``+1`` the centres of the first and last pixels, so one pixel is ``2 / (size − 1)``. Faces
are left-right symmetric; an ``x`` in a geometry is a distance from the face's midline.

Dataset mode writes a folder that :meth:`defgan_hf.data.FaceAUDataset.from_data_dir` and
``train_accelerate.py --data_dir`` read unchanged::

    python -m defgan_hf.synthetic --out DIR --num_identities 500 --per_identity 20 --size 64 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .aus import AU_NAMES, EXPRESSIONS, NUM_AUS, TEXTURE_AUS, au_vector
from .data import IMAGE_FOLDER, LANDMARKS_FILE, TABLE_FILE, au_table_header, au_table_row, landmark_table_header
from .images import image_to_tensor
from .models import MOTION_FOLDER
from .motion import MotionModel, thin_plate_spline

RGB = tuple[float, float, float]
"""A colour: red, green, blue in ``[0, 1]``."""

AUInput = Mapping[str, float] | Sequence[float] | np.ndarray | torch.Tensor
"""AUs as accepted by :func:`render_face`: names → intensities, or a ``(17,)`` vector, all in ``[0, 1]``."""

MIN_SIZE, MAX_SIZE = 32, 512
"""Image sides :func:`render_face` draws: below 32 px the eyes and lips are a pixel or two."""

MAX_MOTION: float = 5.0 * 2.0 / 127.0
"""The farthest any AU but the blink moves a landmark, normalised: 5 px at 128 px, the paper's maximum offset."""

MOTION_AUS: frozenset[str] = frozenset(AU_NAMES) - TEXTURE_AUS
"""AUs that only move features: a warp bounded by :data:`MAX_MOTION` can reproduce them, up to the
anti-aliasing of the moved edges."""

IDENTITIES_FILE = "identities.csv"
"""In a generated folder: one row per identity with its index and every :class:`Identity` field."""

_SCLERA: RGB = (0.93, 0.92, 0.89)
_TEETH: RGB = (0.97, 0.95, 0.86)
_MOUTH_INTERIOR: RGB = (0.30, 0.06, 0.08)
_PUPIL: RGB = (0.03, 0.03, 0.04)
_LASHES: RGB = (0.07, 0.05, 0.05)
_LENS_TINT: RGB = (0.75, 0.85, 0.95)


# ---------------------------------------------------------------------------------------------------
# Identity


@dataclass(frozen=True)
class Identity:
    """Everything about a synthetic face except its expression.

    Lengths are normalised (the image spans ``[-1, 1]``); ``y`` grows downward. The ranges are those
    :meth:`random` samples; other values render too, but features may then overlap or leave the image.
    The ranges frame faces as the project's aligned crop does (:func:`defgan_hf.face.crop_template`):
    eyes near ``(±0.25, −0.06)``, mouth corners near ``(±0.2, 0.5)``.
    """

    face_width: float
    """Half-width of the face at the cheekbones, 0.56–0.70."""
    jaw_taper: float
    """How much narrower the face is at the chin than at the cheekbones, 0 (square) – 0.3 (pointed)."""
    forehead: float
    """Height of the forehead above the eyes, 0.50–0.62."""
    chin_length: float
    """From the mouth to the chin, 0.28–0.34."""
    eye_y: float
    """Height of the eye centres, −0.10 … −0.03."""
    eye_spacing: float
    """Distance of each eye centre from the midline, 0.22–0.29."""
    eye_size: float
    """Half-width of an eye, 0.09–0.115."""
    eye_upper: float
    """Opening of the relaxed eye above its centre line, 0.040–0.055."""
    eye_lower: float
    """Opening of the relaxed eye below its centre line, 0.028–0.040."""
    brow_height: float
    """Height of the brows above the eye centres, 0.12–0.16."""
    brow_thickness: float
    """0.025–0.045."""
    brow_arch: float
    """How far the middle of a brow rises above the line between its ends, 0.01–0.035."""
    nose_length: float
    """From the eye centres to the nostrils, 0.32–0.40."""
    nose_width: float
    """Distance of each nose wing from the midline, 0.07–0.10."""
    philtrum: float
    """From the nostrils to the mouth, 0.14–0.19."""
    mouth_width: float
    """Half-width of the relaxed mouth, 0.17–0.23."""
    upper_lip: float
    """Thickness of the upper lip's red at its centre, 0.028–0.045."""
    lower_lip: float
    """Thickness of the lower lip's red at its centre, 0.038–0.060."""
    skin: RGB
    lips: RGB
    eyelid: RGB
    """The upper eyelid, hidden in its fold while the eye is open: skin with a tint of its own (thin skin,
    veins or make-up), so that a closed eye shows a colour the open face does not."""
    iris: RGB
    hair: RGB
    """Hair, brows and beard."""
    hair_length: float
    """0 (cropped to the skull) – 1 (down to the shoulders)."""
    fringe: float
    """How far the hairline comes down the forehead, 0 (high) – 1 (a fringe just above the brows)."""
    hair_part: float
    """Tilt of the hairline, −1 … 1 (a side parting)."""
    bald: bool
    beard: bool
    glasses: RGB | None
    """Frame colour, or None for no glasses."""
    glasses_roundness: float
    """0 (rectangular lenses) – 1 (round)."""
    clothing: RGB
    background_top: RGB
    background_bottom: RGB

    @property
    def nostril_y(self) -> float:
        """Height of the nostrils."""
        return self.eye_y + self.nose_length

    @property
    def mouth_y(self) -> float:
        """Height of the relaxed mouth's line."""
        return self.nostril_y + self.philtrum

    @property
    def chin_y(self) -> float:
        """Height of the chin with the jaw closed."""
        return self.mouth_y + self.chin_length

    @classmethod
    def random(cls, rng: np.random.Generator) -> Identity:
        """Draw an identity: independent shapes, skin tones from light to dark, hair, glasses, beard."""

        def uniform(low: float, high: float) -> float:
            return float(rng.uniform(low, high))

        def colour(base: Sequence[float], jitter: float) -> RGB:
            return _rgb(np.asarray(base) + rng.normal(0.0, jitter, 3))

        skin = colour(np.array((0.98, 0.84, 0.74)) + rng.uniform() * np.array((-0.62, -0.61, -0.58)), 0.025)
        lipstick = rng.uniform() < 0.1
        lips = colour((0.72, 0.12, 0.18) if lipstick else np.array(skin) * (0.82, 0.56, 0.58), 0.03)
        hair_colours = (
            (0.07, 0.06, 0.06),
            (0.22, 0.14, 0.09),
            (0.42, 0.27, 0.15),
            (0.55, 0.24, 0.12),
            (0.86, 0.72, 0.45),
            (0.62, 0.62, 0.62),
            (0.90, 0.90, 0.88),
        )
        iris_colours = (
            (0.35, 0.20, 0.10),
            (0.15, 0.10, 0.07),
            (0.30, 0.50, 0.75),
            (0.35, 0.50, 0.30),
            (0.50, 0.55, 0.60),
        )
        # Pinks and purples: no iris has them, so no blend of the open eye's colours gives the lid's.
        lid_tints = ((0.60, 0.20, 0.55), (0.85, 0.30, 0.40), (0.50, 0.25, 0.75), (0.75, 0.25, 0.60))
        frame_colours = ((0.05, 0.05, 0.05), (0.35, 0.20, 0.10), (0.70, 0.70, 0.72), tuple(rng.uniform(0, 1, 3)))
        has_glasses = rng.uniform() < 0.25
        return cls(
            face_width=uniform(0.56, 0.70),
            jaw_taper=uniform(0.0, 0.3),
            forehead=uniform(0.50, 0.62),
            chin_length=uniform(0.28, 0.34),
            eye_y=uniform(-0.10, -0.03),
            eye_spacing=uniform(0.22, 0.29),
            eye_size=uniform(0.09, 0.115),
            eye_upper=uniform(0.040, 0.055),
            eye_lower=uniform(0.028, 0.040),
            brow_height=uniform(0.12, 0.16),
            brow_thickness=uniform(0.025, 0.045),
            brow_arch=uniform(0.01, 0.035),
            nose_length=uniform(0.32, 0.40),
            nose_width=uniform(0.07, 0.10),
            philtrum=uniform(0.14, 0.19),
            mouth_width=uniform(0.17, 0.23),
            upper_lip=uniform(0.028, 0.045),
            lower_lip=uniform(0.038, 0.060),
            skin=skin,
            lips=lips,
            eyelid=colour(0.5 * np.array(skin) + 0.5 * np.array(lid_tints[rng.integers(len(lid_tints))]), 0.03),
            iris=colour(iris_colours[rng.integers(len(iris_colours))], 0.04),
            hair=colour(hair_colours[rng.integers(len(hair_colours))], 0.04),
            hair_length=uniform(0.0, 1.0),
            fringe=uniform(0.0, 1.0),
            hair_part=uniform(-1.0, 1.0),
            bald=bool(rng.uniform() < 0.1),
            beard=bool(rng.uniform() < 0.2),
            glasses=colour(frame_colours[rng.integers(len(frame_colours))], 0.03) if has_glasses else None,
            glasses_roundness=uniform(0.0, 1.0),
            clothing=colour(rng.uniform(0.05, 0.95, 3), 0.0),
            background_top=colour(rng.uniform(0.05, 0.95, 3), 0.0),
            background_bottom=colour(rng.uniform(0.05, 0.95, 3), 0.0),
        )


def sample_identity(seed: int, index: int = 0) -> Identity:
    """The ``index``-th identity of the stream seeded by ``seed``; the same arguments give the same face.

    :func:`write_dataset` draws identity ``i`` of a folder as ``sample_identity(seed, i)``, so a
    benchmark can re-render any face of a folder, or held-out faces (indices it does not contain).
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}.")
    return Identity.random(np.random.default_rng([seed, index, 0]))


def _rgb(values: Sequence[float] | np.ndarray) -> RGB:
    red, green, blue = (float(v) for v in np.clip(values, 0.0, 1.0))
    return red, green, blue


# ---------------------------------------------------------------------------------------------------
# Geometry: where every feature is for an identity and an AU vector


Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in normalised coordinates, signed ``x``."""

# Sizes of drawn details that every AU leaves alone, shared by the drawing and the regions.
_LID_CREASE_GAP = 0.035  # the eyelid crease above the fold or the raised lid margin
_WING_RADII = (0.045, 0.04)
_WRINKLE_HALF_LENGTH, _WRINKLE_SPACING, _WRINKLE_BULGE = 0.06, 0.032, 0.012
_CUPIDS_BOW = 0.25  # how far the top of the upper lip dips at its centre, as a fraction of its thickness
_CHIN_CREASE_HALF_LENGTH, _CHIN_CREASE_CURVE = 0.09, 0.02


def _mirrored(x_inner: float, y0: float, x_outer: float, y1: float) -> list[Box]:
    """Boxes of a feature on both sides of the midline, given by its distances from the midline."""
    return [(x_inner, y0, x_outer, y1), (-x_outer, y0, -x_inner, y1)]


@dataclass(frozen=True)
class BrowGeometry:
    """A brow, from its inner to its outer end (``x`` from the midline)."""

    inner: tuple[float, float]
    outer: tuple[float, float]
    arch: float
    thickness: float

    def boxes(self) -> list[Box]:
        top = min(self.inner[1], self.outer[1]) - self.arch - self.thickness
        bottom = max(self.inner[1], self.outer[1]) + self.thickness
        return _mirrored(self.inner[0], top, self.outer[0], bottom)


@dataclass(frozen=True)
class EyeGeometry:
    """An eye: across it, ``t ∈ [−1, 1]``, the lid margins are ``centre_y − upper · p(t)`` and
    ``centre_y + lower · p(t)`` with ``p(t) = (1 − t²)^0.7``, which meet at the corners.

    ``upper`` is the upper margin's height above the centre line; it is negative when the lid has come
    down past that line, and ``−lower`` when the eye is shut. ``fold`` is the relaxed ``upper``: the open
    eyelid is hidden in its fold above that height, and shows between the fold and the margin only
    while the eye closes.
    """

    centre: tuple[float, float]
    half_width: float
    upper: float
    lower: float
    fold: float
    iris_radius: float

    @property
    def opening(self) -> float:
        """Height of the visible eyeball at the eye's centre, ``≥ 0``."""
        return self.upper + self.lower

    def boxes(self) -> list[Box]:
        x, y = self.centre
        # The lid crease sits a little above the higher of the fold and the raised margin.
        top = y - max(self.upper, self.fold) - _LID_CREASE_GAP
        return _mirrored(x - self.half_width, top, x + self.half_width, y + self.lower)


@dataclass(frozen=True)
class CheekGeometry:
    """The rounded, slightly flushed cheek under each eye; a bump of compact support."""

    centre: tuple[float, float]
    radii: tuple[float, float]

    def boxes(self) -> list[Box]:
        (x, y), (rx, ry) = self.centre, self.radii
        return _mirrored(x - rx, y - ry, x + rx, y + ry)


@dataclass(frozen=True)
class NoseGeometry:
    """Nose wings (alae) and nostrils, and the wrinkles across the bridge (AU09's texture)."""

    wing: tuple[float, float]
    wrinkles: float
    """Wrinkle strength in ``[0, 1]``."""
    wrinkle_y: float
    """Height of the highest of the three wrinkles."""

    def boxes(self) -> list[Box]:
        (x, y), top = self.wing, self.wrinkle_y - _WRINKLE_BULGE
        return [
            (-x - _WING_RADII[0], y - _WING_RADII[1], x + _WING_RADII[0], y + _WING_RADII[1]),
            (-_WRINKLE_HALF_LENGTH, top, _WRINKLE_HALF_LENGTH, self.wrinkle_y + 2 * _WRINKLE_SPACING),
        ]


@dataclass(frozen=True)
class MouthGeometry:
    """Lips, their opening, and the chin crease under the lower lip.

    Across the mouth, ``t = x / corner_x ∈ [−1, 1]``; the line where the lips meet runs from the
    corners through ``contact_y`` at the centre as a parabola; the opening bulges around it as
    ``√(1 − t²)``, 30 % above and 70 % below (the jaw moves, the upper lip barely does).
    """

    corner: tuple[float, float]
    contact_y: float
    opening: float
    """Gap between the lips at the centre, ``≥ 0``."""
    upper_lip: float
    """Thickness of the upper lip at the centre (before the Cupid's bow)."""
    lower_lip: float
    crease_gap: float
    """From the bottom of the lower lip down to the chin crease at the centre."""

    @property
    def upper_inner_y(self) -> float:
        return self.contact_y - 0.3 * self.opening

    @property
    def lower_inner_y(self) -> float:
        return self.contact_y + 0.7 * self.opening

    @property
    def upper_top_y(self) -> float:
        """Top of the upper lip at the centre (at the dip of the Cupid's bow)."""
        return self.upper_inner_y - self.upper_lip * (1.0 - _CUPIDS_BOW)

    @property
    def lower_bottom_y(self) -> float:
        return self.lower_inner_y + self.lower_lip

    @property
    def crease_y(self) -> float:
        """The chin crease at the centre: it hangs under the lower lip and follows it."""
        return self.lower_bottom_y + self.crease_gap

    def boxes(self) -> list[Box]:
        x, y = self.corner
        top = min(y, self.upper_inner_y - self.upper_lip)
        bottom = max(y, self.crease_y + _CHIN_CREASE_CURVE)
        return [(-max(x, _CHIN_CREASE_HALF_LENGTH), top, max(x, _CHIN_CREASE_HALF_LENGTH), bottom)]


@dataclass(frozen=True)
class JawGeometry:
    """The face outline: an ellipse above ``centre_y``, a tapered half-ellipse below it down to ``chin_y``."""

    top_y: float
    centre_y: float
    chin_y: float
    half_width: float
    taper: float

    def boxes(self) -> list[Box]:
        # Only the lower outline depends on AUs (the jaw drops).
        return [(-self.half_width, self.centre_y, self.half_width, self.chin_y)]


Part = BrowGeometry | EyeGeometry | CheekGeometry | NoseGeometry | MouthGeometry | JawGeometry
"""The geometry of one AU-dependent feature."""


@dataclass(frozen=True)
class FaceGeometry:
    """Where every AU-dependent feature is: measurable landmarks for tests and per-AU regions."""

    brow: BrowGeometry
    eye: EyeGeometry
    cheek: CheekGeometry
    nose: NoseGeometry
    mouth: MouthGeometry
    jaw: JawGeometry

    def parts(self) -> dict[str, Part]:
        """Feature name → its geometry, e.g. ``"mouth"`` → :class:`MouthGeometry`."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def face_geometry(identity: Identity, aus: AUInput) -> FaceGeometry:
    """Place every AU-dependent feature of ``identity`` for the AU vector ``aus``.

    Displacements add up over AUs. Each AU but the blink moves every landmark by at most
    :data:`MAX_MOTION`; the blink moves the upper lid the whole height of the open eye.

    Args:
        identity: the face.
        aus: AU intensities in ``[0, 1]`` (see :func:`render_face`).

    Returns:
        The geometry, in normalised coordinates.
    """
    au = dict(zip(AU_NAMES, _au_array(aus).tolist()))
    i = identity
    nostril_y, mouth_y = i.nostril_y, i.mouth_y

    brow_y = i.eye_y - i.brow_height
    inner_x = i.eye_spacing - i.eye_size
    brow = BrowGeometry(
        inner=(inner_x - 0.035 * au["AU04"], brow_y - 0.07 * au["AU01"] + 0.045 * au["AU04"] + 0.02 * au["AU09"]),
        outer=(i.eye_spacing + 1.2 * i.eye_size, brow_y - 0.07 * au["AU02"] - 0.015 * au["AU01"] + 0.03 * au["AU04"]),
        arch=i.brow_arch,
        thickness=i.brow_thickness,
    )

    # Cheek raiser and lid tightener both push the lower lid up: by the push at first, then ever less, so
    # that it never comes within 20 % of shutting. The blink brings the upper lid down to meet it,
    # whatever the upper lid raiser did.
    upper = i.eye_upper + 0.03 * au["AU05"]
    push, travel = 0.02 * au["AU06"] + 0.03 * au["AU07"], 0.8 * i.eye_lower
    lower = i.eye_lower - travel * (1.0 - math.exp(-push / travel))
    eye = EyeGeometry(
        centre=(i.eye_spacing, i.eye_y),
        half_width=i.eye_size,
        upper=upper * (1.0 - au["AU45"]) - lower * au["AU45"],
        lower=lower,
        fold=i.eye_upper,
        iris_radius=0.55 * i.eye_size,
    )
    cheek = CheekGeometry(centre=(i.eye_spacing + 0.02, i.eye_y + 0.22 - 0.05 * au["AU06"]), radii=(0.13, 0.09))
    nose = NoseGeometry(
        wing=(i.nose_width, nostril_y - 0.01 - 0.035 * au["AU09"] - 0.012 * au["AU10"]),
        wrinkles=au["AU09"],
        wrinkle_y=i.eye_y + 0.03,
    )

    jaw_drop = 0.075 * au["AU26"]
    thinning = (1.0 - 0.55 * au["AU23"]) * (1.0 - 0.3 * au["AU20"]) * (1.0 - 0.35 * au["AU14"])
    mouth = MouthGeometry(
        corner=(
            i.mouth_width
            + 0.045 * au["AU12"]
            + 0.03 * au["AU14"]
            + 0.01 * au["AU15"]
            + 0.07 * au["AU20"]
            - 0.025 * au["AU23"]
            - 0.01 * au["AU26"],
            mouth_y
            - 0.06 * au["AU12"]
            - 0.015 * au["AU14"]
            + 0.055 * au["AU15"]
            + 0.012 * au["AU20"]
            + 0.012 * au["AU26"],
        ),
        contact_y=mouth_y - 0.015 * au["AU10"] - 0.015 * au["AU09"] - 0.02 * au["AU17"],
        opening=0.04 * au["AU25"] + 0.065 * au["AU26"],
        upper_lip=(i.upper_lip + 0.035 * au["AU10"]) * thinning,
        lower_lip=i.lower_lip * thinning,
        crease_gap=0.07 - 0.045 * au["AU17"],
    )

    centre_y = i.eye_y + 0.18  # the cheekbones, where the face is widest
    jaw = JawGeometry(
        top_y=i.eye_y - i.forehead,
        centre_y=centre_y,
        chin_y=i.chin_y + jaw_drop,
        half_width=i.face_width,
        taper=i.jaw_taper,
    )
    return FaceGeometry(brow=brow, eye=eye, cheek=cheek, nose=nose, mouth=mouth, jaw=jaw)


# ---------------------------------------------------------------------------------------------------
# The face mesh

# Face-mesh landmarks the geometry places exactly: (index on the image's left, on its right) → the point on
# the face's right half (x from the midline). On the midline one index serves both sides.
_MESH_KEYPOINTS: tuple[tuple[int, int, Callable[[FaceGeometry], tuple[float, float]]], ...] = (
    (55, 285, lambda g: g.brow.inner),
    (46, 276, lambda g: g.brow.outer),
    (105, 334, lambda g: ((g.brow.inner[0] + g.brow.outer[0]) / 2,
                          (g.brow.inner[1] + g.brow.outer[1]) / 2 - g.brow.arch)),
    (33, 263, lambda g: (g.eye.centre[0] + g.eye.half_width, g.eye.centre[1])),
    (133, 362, lambda g: (g.eye.centre[0] - g.eye.half_width, g.eye.centre[1])),
    (159, 386, lambda g: (g.eye.centre[0], g.eye.centre[1] - g.eye.upper)),
    (145, 374, lambda g: (g.eye.centre[0], g.eye.centre[1] + g.eye.lower)),
    (205, 425, lambda g: g.cheek.centre),
    (98, 327, lambda g: g.nose.wing),
    (61, 291, lambda g: g.mouth.corner),
    (234, 454, lambda g: (g.jaw.half_width, g.jaw.centre_y)),
    (0, 0, lambda g: (0.0, g.mouth.upper_top_y)),
    (13, 13, lambda g: (0.0, g.mouth.upper_inner_y)),
    (14, 14, lambda g: (0.0, g.mouth.lower_inner_y)),
    (17, 17, lambda g: (0.0, g.mouth.lower_bottom_y)),
    (152, 152, lambda g: (0.0, g.jaw.chin_y)),
    (10, 10, lambda g: (0.0, g.jaw.top_y)),
)  # fmt: skip


@functools.cache
def _mesh_template() -> torch.Tensor:
    """``(468, 2)`` the default model's mean face (its motion model's), normalised: the mesh every drawn face bends."""
    from .pipeline import DEFAULT_MODEL  # here: the pipeline brings the face toolkit, which drawing faces does not need

    motion = MotionModel.from_pretrained(DEFAULT_MODEL, subfolder=MOTION_FOLDER)
    return motion.mean_landmarks.double() * (2.0 / (motion.image_size - 1)) - 1.0


def face_mesh(identity: Identity, aus: AUInput, size: int = 64) -> np.ndarray:
    """MediaPipe's 478 face-mesh landmarks of a drawn face, in pixels of its ``size``-pixel image.

    The geometry gives the landmarks of :data:`_MESH_KEYPOINTS` exactly (brow ends and middles, eye
    corners and lid middles, cheeks, nose wings, lip corners, the lips' and the chin's midline, the face's
    sides and top); the other landmarks of a mean face (the default model's) follow them by a thin-plate
    spline, and the irises are placed in the eyes. Every tool that reads annotated faces (the motion
    model, the texture mask's regions) then reads drawn faces in the one layout the project uses.

    Args:
        identity: the face.
        aus: its AUs, as :func:`render_face` takes them.
        size: side of the image in pixels.

    Returns:
        ``(478, 2)`` float64 ``(x, y)`` pixel positions.
    """
    geometry = face_geometry(identity, _au_array(aus))
    indices, points = [], []
    for left, right, place in _MESH_KEYPOINTS:
        x, y = place(geometry)
        indices += [left, right] if left != right else [left]
        points += [(-x, y), (x, y)] if left != right else [(x, y)]
    template = _mesh_template()
    keys = torch.tensor(points, dtype=torch.float64)
    template_keys = template[indices]
    mesh = template + thin_plate_spline(template_keys[None], (keys - template_keys)[None], template, 0.0)[0]
    mesh[indices] = keys  # exactly where the geometry puts them
    eye = geometry.eye
    rim = np.array([(0.0, 0.0), (1.0, 0.0), (0.0, -1.0), (-1.0, 0.0), (0.0, 1.0)]) * eye.iris_radius
    irises = [np.array([side * eye.centre[0], eye.centre[1]]) + rim for side in (-1.0, 1.0)]
    # MediaPipe's points 468–472 are the iris on the image's left, 473–477 the other: centre, then the rim.
    normalised = np.concatenate([mesh.numpy(), *irises])
    return (normalised + 1.0) * (size - 1) / 2.0


# ---------------------------------------------------------------------------------------------------
# Drawing


class _Canvas:
    """An image being painted back to front, with the pixel grid in normalised coordinates."""

    def __init__(self, size: int) -> None:
        coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        self.x, self.y = np.meshgrid(coords, coords)
        self.side = np.abs(self.x)  # symmetric features are drawn on both sides at once
        self.pixel = 2.0 / (size - 1)
        self.image = np.empty((size, size, 3), dtype=np.float32)

    def coverage(self, inside: np.ndarray, edge: float = 1.0) -> np.ndarray:
        """Anti-aliased coverage ``(H, W)`` in ``[0, 1]`` of the region where the implicit function is negative.

        Dividing by the gradient turns any smooth implicit function into a signed distance in pixels
        near its zero set; a ramp ``edge`` pixels wide across the outline then approximates the share of
        each pixel inside (1 pixel: a crisp anti-aliased edge; wider: a soft one).
        """
        gradient_y, gradient_x = np.gradient(inside)
        distance = inside / np.maximum(np.hypot(gradient_x, gradient_y), 1e-6)
        return np.clip(0.5 - distance / edge, 0.0, 1.0)

    def stroke_width(self, width: float | np.ndarray) -> float | np.ndarray:
        """Lines at least 1.2 px wide: thinner ones would flicker between pixels."""
        return np.maximum(width, 1.2 * self.pixel)

    def paint(self, alpha: np.ndarray, colour: RGB | np.ndarray) -> None:
        """Blend ``colour`` (RGB or ``(H, W, 3)``) over the image with opacity ``alpha`` ``(H, W)``."""
        self.image += alpha[..., None] * (np.asarray(colour, dtype=np.float32) - self.image)


def _ellipse(x: np.ndarray, y: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    """Implicit function of an ellipse: negative inside, 0 on the outline."""
    return np.hypot((x - centre[0]) / radii[0], (y - centre[1]) / radii[1]) - 1.0


def _rounded_box(
    x: np.ndarray, y: np.ndarray, centre: tuple[float, float], half: tuple[float, float], radius: float
) -> np.ndarray:
    """Signed distance to a box with rounded corners."""
    qx = np.abs(x - centre[0]) - half[0] + radius
    qy = np.abs(y - centre[1]) - half[1] + radius
    return np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0)) + np.minimum(np.maximum(qx, qy), 0.0) - radius


def _smoothstep(low: float, high: float, value: np.ndarray) -> np.ndarray:
    t = np.clip((value - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _shade(colour: RGB, factors: float | tuple[float, float, float]) -> RGB:
    return _rgb(np.asarray(colour) * np.asarray(factors))


def _draw_background(canvas: _Canvas, identity: Identity) -> None:
    top, bottom = np.asarray(identity.background_top), np.asarray(identity.background_bottom)
    t = ((canvas.y[:, :1] + 1.0) / 2.0)[..., None]
    canvas.image[:] = (1.0 - t) * top + t * bottom


def _draw_head(canvas: _Canvas, identity: Identity, jaw: JawGeometry) -> np.ndarray:
    """Hair behind the head, clothes, neck, ears and the face; returns the face's implicit function."""
    c, i = canvas, identity
    x, y, side = c.x, c.y, c.side
    rest_chin = i.chin_y  # the neck and clothes stay when the jaw drops
    if not i.bald:
        top = jaw.top_y - 0.07
        bottom = jaw.centre_y + i.hair_length * (rest_chin - jaw.centre_y + 0.3)
        half_width = i.face_width + 0.06 + 0.06 * i.hair_length
        c.paint(
            c.coverage(_rounded_box(x, y, (0.0, (top + bottom) / 2), (half_width, (bottom - top) / 2), half_width)),
            _shade(i.hair, 0.8),
        )
    c.paint(c.coverage(_rounded_box(x, y, (0.0, rest_chin + 0.75), (i.face_width + 0.4, 0.55), 0.3)), i.clothing)
    c.paint(c.coverage(_rounded_box(x, y, (0.0, rest_chin), (0.5 * i.face_width, 0.35), 0.05)), _shade(i.skin, 0.78))
    c.paint(c.coverage(_ellipse(side, y, (0.97 * i.face_width, i.eye_y + 0.1), (0.075, 0.13))), _shade(i.skin, 0.9))

    below = y > jaw.centre_y
    half_height = np.where(below, jaw.chin_y - jaw.centre_y, jaw.centre_y - jaw.top_y)
    depth = np.where(below, (y - jaw.centre_y) / half_height, 0.0)
    half_width = jaw.half_width * (1.0 - jaw.taper * depth * depth)
    face = np.hypot(x / half_width, (y - jaw.centre_y) / half_height) - 1.0
    # Skin darkens toward the outline: the face reads as round, and the jaw's edge moves visibly.
    rim = _smoothstep(-0.18, 0.0, face)[..., None]
    c.paint(c.coverage(face), np.asarray(i.skin, dtype=np.float32) * (1.0 - 0.12 * rim))
    return face


def _draw_cheeks(canvas: _Canvas, identity: Identity, cheek: CheekGeometry) -> None:
    c = canvas
    radius = np.hypot((c.side - cheek.centre[0]) / cheek.radii[0], (c.y - cheek.centre[1]) / cheek.radii[1])
    bump = np.clip(1.0 - radius * radius, 0.0, 1.0) ** 2
    c.paint(0.45 * bump, _shade(identity.skin, (1.02, 0.80, 0.80)))


def _mouth_curves(canvas: _Canvas, mouth: MouthGeometry) -> dict[str, np.ndarray]:
    """The mouth's curves as ``y`` per pixel, ``t`` and the opening's profile, and the implicit function of
    the mouth's width (``span``)."""
    corner_x, corner_y = mouth.corner
    t = np.clip(canvas.side / corner_x, 0.0, 1.0)
    bulge = np.sqrt(1.0 - t * t)
    contact = corner_y + (mouth.contact_y - corner_y) * (1.0 - t * t)
    upper_inner = contact - 0.3 * mouth.opening * bulge
    lower_inner = contact + 0.7 * mouth.opening * bulge
    cupids_bow = 1.0 - _CUPIDS_BOW * np.exp(-((t / 0.2) ** 2))
    return {
        "t": t,
        "bulge": bulge,
        "span": canvas.side - corner_x,
        "upper_inner": upper_inner,
        "lower_inner": lower_inner,
        "upper_top": upper_inner - mouth.upper_lip * bulge * cupids_bow,
        "lower_bottom": lower_inner + mouth.lower_lip * bulge,
    }


def _draw_chin_crease(canvas: _Canvas, identity: Identity, mouth: MouthGeometry) -> None:
    c = canvas
    along = np.clip(c.x / _CHIN_CREASE_HALF_LENGTH, -1.0, 1.0)
    line = np.abs(c.y - (mouth.crease_y + _CHIN_CREASE_CURVE * along * along)) - c.stroke_width(0.014) / 2
    inside = np.maximum(line, np.abs(c.x) - _CHIN_CREASE_HALF_LENGTH)
    c.paint(0.35 * (1.0 - along * along) * c.coverage(inside), _shade(identity.skin, 0.75))


def _draw_beard(canvas: _Canvas, identity: Identity, face: np.ndarray) -> None:
    c, i = canvas, identity
    # A full beard: a moustache under the nose, everything below the mouth's level, and sideburns
    # along the outline up to the ears. Implicit functions: union = minimum, intersection = maximum.
    moustache_top = i.nostril_y + 0.035
    moustache = _rounded_box(c.side, c.y, (0.0, i.mouth_y), (i.mouth_width + 0.05, i.mouth_y - moustache_top), 0.05)
    chin = i.mouth_y - 0.02 - c.y
    sideburns = np.maximum(-0.15 - face, i.eye_y + 0.12 - c.y)
    inside = np.maximum(face + 0.01, np.minimum(np.minimum(moustache, chin), sideburns))
    # A soft edge: stubble thins out rather than ending on a line.
    c.paint(0.95 * c.coverage(inside, edge=2.0), i.hair)


def _draw_nose(canvas: _Canvas, identity: Identity, nose: NoseGeometry) -> None:
    c, i = canvas, identity
    # The bridge's sides: two faint lines from between the eyes to above the wings.
    bridge_top, bridge_bottom = i.eye_y + 0.02, i.nostril_y - 0.08
    along = np.clip((c.y - bridge_top) / (bridge_bottom - bridge_top), 0.0, 1.0)
    line_x = 0.04 + (0.7 * i.nose_width - 0.04) * along
    line = np.maximum(
        np.abs(c.side - line_x) - c.stroke_width(0.012) / 2,
        np.abs(c.y - (bridge_top + bridge_bottom) / 2) - (bridge_bottom - bridge_top) / 2,
    )
    c.paint(0.25 * c.coverage(line), _shade(i.skin, 0.8))
    wing_x, wing_y = nose.wing
    c.paint(c.coverage(_ellipse(c.side, c.y, (wing_x, wing_y), _WING_RADII)), _shade(i.skin, 0.9))
    c.paint(c.coverage(_ellipse(c.side, c.y, (wing_x - 0.035, wing_y + 0.018), (0.028, 0.014))), _shade(i.skin, 0.35))
    if nose.wrinkles > 0.0:
        along = np.clip(c.x / _WRINKLE_HALF_LENGTH, -1.0, 1.0)
        fade = nose.wrinkles * np.sqrt(1.0 - along * along)
        for k in range(3):
            centre = nose.wrinkle_y + k * _WRINKLE_SPACING - _WRINKLE_BULGE * (1.0 - along * along)
            line = np.maximum(np.abs(c.y - centre) - c.stroke_width(0.014) / 2, np.abs(c.x) - _WRINKLE_HALF_LENGTH)
            c.paint(fade * c.coverage(line), _shade(i.skin, (0.62, 0.42, 0.42)))


def _draw_mouth(canvas: _Canvas, identity: Identity, mouth: MouthGeometry) -> None:
    c, i = canvas, identity
    curves = _mouth_curves(c, mouth)
    t, bulge, span = curves["t"], curves["bulge"], curves["span"]
    upper_inner, lower_inner = curves["upper_inner"], curves["lower_inner"]
    # The interior, widened by a line's width: closed, it is the dark line where the lips meet, and it
    # grows continuously from that line as the lips part.
    middle, half = (upper_inner + lower_inner) / 2, (lower_inner - upper_inner) / 2 + c.stroke_width(0.012) / 2
    c.paint(c.coverage(np.maximum(np.abs(c.y - middle) - half, span)), _MOUTH_INTERIOR)
    if mouth.opening > 0.0:
        open_inside = c.coverage(np.maximum(np.maximum(upper_inner - c.y, c.y - lower_inner), span))
        # Teeth show once the gap is wider than a pixel; shaded toward the corners, where they recede.
        visible = open_inside * min(1.0, mouth.opening / c.pixel)
        teeth = np.asarray(_TEETH, dtype=np.float32) * (1.0 - 0.35 * t * t)[..., None]
        upper_teeth = np.maximum(upper_inner - c.y, c.y - (upper_inner + 0.045 * bulge))
        lower_teeth = np.maximum(lower_inner - 0.03 * bulge - c.y, c.y - lower_inner)
        c.paint(visible * c.coverage(upper_teeth), teeth)
        c.paint(visible * c.coverage(lower_teeth), teeth * 0.9)
    c.paint(c.coverage(np.maximum(np.maximum(curves["upper_top"] - c.y, c.y - upper_inner), span)), i.lips)
    c.paint(
        c.coverage(np.maximum(np.maximum(lower_inner - c.y, c.y - curves["lower_bottom"]), span)), _shade(i.lips, 1.08)
    )


def _draw_eyes(canvas: _Canvas, identity: Identity, eye: EyeGeometry) -> None:
    c, i = canvas, identity
    (centre_x, centre_y), width = eye.centre, eye.half_width
    t = np.clip((c.side - centre_x) / width, -1.0, 1.0)
    profile = (1.0 - t * t) ** 0.7
    span = np.abs(c.side - centre_x) - width
    upper_margin = centre_y - eye.upper * profile
    lower_margin = centre_y + eye.lower * profile
    fold = centre_y - eye.fold * profile

    # The eyeball fades out as the lids meet, so a shut eye leaves no half-covered line of sclera.
    ball = c.coverage(np.maximum(np.maximum(upper_margin - c.y, c.y - lower_margin), span))
    ball *= min(1.0, eye.opening / c.pixel)
    c.paint(ball, _SCLERA)
    iris = c.coverage(_ellipse(c.side, c.y, (centre_x, centre_y), (eye.iris_radius, eye.iris_radius)))
    c.paint(ball * iris, i.iris)
    pupil = c.coverage(_ellipse(c.side, c.y, (centre_x, centre_y), (0.45 * eye.iris_radius,) * 2))
    c.paint(ball * pupil, _PUPIL)

    lid_height = eye.fold - eye.upper
    if lid_height > 0.0:
        lid = c.coverage(np.maximum(np.maximum(fold - c.y, c.y - upper_margin), span))
        c.paint(lid * min(1.0, lid_height / c.pixel), i.eyelid)
    crease = centre_y - (max(eye.fold, eye.upper) + _LID_CREASE_GAP) * profile
    crease_line = np.maximum(np.abs(c.y - crease) - c.stroke_width(0.01) / 2, span + 0.1 * width)
    c.paint(0.35 * c.coverage(crease_line), _shade(i.skin, 0.78))
    lower_line = np.maximum(np.abs(c.y - lower_margin) - c.stroke_width(0.01) / 2, span)
    c.paint(0.5 * c.coverage(lower_line), _shade(i.skin, 0.75))
    lashes = np.maximum(np.abs(c.y - upper_margin) - c.stroke_width(0.016) / 2, span)
    c.paint(c.coverage(lashes), _LASHES)


def _draw_brows(canvas: _Canvas, identity: Identity, brow: BrowGeometry) -> None:
    c = canvas
    (inner_x, inner_y), (outer_x, outer_y) = brow.inner, brow.outer
    u = np.clip((c.side - inner_x) / (outer_x - inner_x), 0.0, 1.0)
    centre = inner_y + (outer_y - inner_y) * u - brow.arch * 4.0 * u * (1.0 - u)
    half = c.stroke_width(brow.thickness * (1.0 - 0.45 * u)) / 2  # thick at the inner end, tapering outward
    inside = np.maximum(np.abs(c.y - centre) - half, np.abs(c.side - (inner_x + outer_x) / 2) - (outer_x - inner_x) / 2)
    c.paint(c.coverage(inside), _shade(identity.hair, 0.85))


def _draw_hair(canvas: _Canvas, identity: Identity, jaw: JawGeometry) -> None:
    c, i = canvas, identity
    if i.bald:
        return
    # The hairline stays above the highest the brows can go (AU01 + AU02), so brows never vanish under it.
    highest_hairline = i.eye_y - i.brow_height - 0.14
    hairline = jaw.top_y + 0.06 + i.fringe * (highest_hairline - jaw.top_y - 0.06)
    edge = (
        hairline
        + 0.04 * i.hair_part * c.x
        + (i.eye_y + 0.02 - hairline) * _smoothstep(0.75, 0.98, c.side / i.face_width)
    )
    cap = _ellipse(c.x, c.y, (0.0, jaw.centre_y - 0.02), (i.face_width + 0.05, jaw.centre_y - jaw.top_y + 0.06))
    c.paint(c.coverage(np.maximum(cap, c.y - edge)), i.hair)


def _draw_glasses(canvas: _Canvas, identity: Identity) -> None:
    c, i = canvas, identity
    if i.glasses is None:
        return
    centre = (i.eye_spacing, i.eye_y)
    half = (i.eye_size + 0.045, 0.08)
    lens = _rounded_box(c.side, c.y, centre, half, 0.02 + i.glasses_roundness * (min(half) - 0.02))
    c.paint(0.15 * c.coverage(lens), _LENS_TINT)
    frame_width = c.stroke_width(0.018)
    frame = np.abs(lens) - frame_width / 2
    inner_edge = i.eye_spacing - half[0]
    bridge = np.maximum(np.abs(c.y - (i.eye_y - 0.03)) - frame_width / 2, c.side - inner_edge)
    temples = np.maximum(
        np.abs(c.y - (i.eye_y - 0.04)) - frame_width / 2,
        np.maximum(i.eye_spacing + half[0] - c.side, c.side - i.face_width),
    )
    c.paint(c.coverage(np.minimum(np.minimum(frame, bridge), temples)), i.glasses)


def _paint(identity: Identity, geometry: FaceGeometry, size: int) -> np.ndarray:
    canvas = _Canvas(size)
    _draw_background(canvas, identity)
    face = _draw_head(canvas, identity, geometry.jaw)
    _draw_cheeks(canvas, identity, geometry.cheek)
    _draw_chin_crease(canvas, identity, geometry.mouth)
    if identity.beard:
        _draw_beard(canvas, identity, face)
    _draw_nose(canvas, identity, geometry.nose)
    _draw_mouth(canvas, identity, geometry.mouth)
    _draw_eyes(canvas, identity, geometry.eye)
    _draw_brows(canvas, identity, geometry.brow)
    _draw_hair(canvas, identity, geometry.jaw)
    _draw_glasses(canvas, identity)
    return np.clip(canvas.image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Public rendering API


def _au_array(aus: AUInput) -> np.ndarray:
    """``aus`` as a ``(17,)`` float64 array in ``[0, 1]``, checked.

    Intensities are taken at float32 precision, that of the AU tensors the networks see, so that a
    mapping, a list and a tensor with the same values draw the same pixels.
    """
    if isinstance(aus, Mapping):
        return au_vector(aus).numpy().astype(np.float64)
    values = aus.detach().cpu().double().numpy() if isinstance(aus, torch.Tensor) else np.asarray(aus, dtype=np.float64)
    if values.shape != (NUM_AUS,):
        raise ValueError(
            f"aus must be a mapping of AU names to intensities or a vector of {NUM_AUS} intensities in the order "
            f"{', '.join(AU_NAMES)}; got shape {values.shape}."
        )
    if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(
            f"AU intensities must be finite and in [0, 1] (OpenFace's 0–5 scale divided by 5); got {values.tolist()}."
        )
    return values.astype(np.float32).astype(np.float64)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer number of pixels from {MIN_SIZE} to {MAX_SIZE}, got {size!r}.")


@dataclass(frozen=True)
class RenderedFace:
    """A rendered face, its geometry, and (computed on first use) the regions each AU acts on."""

    identity: Identity
    aus: np.ndarray
    """``(17,)`` float64 in ``[0, 1]``, in the order of ``AU_NAMES``."""
    image: np.ndarray
    """``(size, size, 3)`` uint8 RGB."""
    geometry: FaceGeometry

    @property
    def size(self) -> int:
        return self.image.shape[0]

    @cached_property
    def regions(self) -> dict[str, np.ndarray]:
        """AU name → ``(size, size)`` bool mask of the pixels that AU can change on this face.

        See :func:`au_regions`.
        """
        return au_regions(self.identity, self.aus, self.size)

    def to_tensor(self) -> torch.Tensor:
        """The image as the networks take it: ``(3, size, size)`` float32 in ``[-1, 1]``.

        The same values :func:`defgan_hf.images.read_face_crop` reads from the image saved as PNG at this size.
        """
        return image_to_tensor(Image.fromarray(self.image))[0].contiguous()


def render_face(identity: Identity, aus: AUInput, size: int = 64) -> RenderedFace:
    """Draw ``identity`` with the expression ``aus``. Deterministic: same arguments, same pixels.

    Args:
        identity: the face, e.g. :func:`sample_identity`.
        aus: AU name → intensity (other AUs 0), or a ``(17,)`` vector (numpy, list or tensor) in the
            order of ``AU_NAMES``; intensities in ``[0, 1]`` (OpenFace's 0–5 scale divided by 5).
        size: side of the square image in pixels, ``MIN_SIZE`` to ``MAX_SIZE``.

    Returns:
        The image ``(size, size, 3)`` uint8, its :class:`FaceGeometry`, and per-AU regions on demand.

    Raises:
        ValueError: on an unknown AU name, a vector of the wrong length, an intensity outside
            ``[0, 1]``, or an unsupported size.
    """
    _check_size(size)
    values = _au_array(aus)
    geometry = face_geometry(identity, values)
    return RenderedFace(identity=identity, aus=values, image=_paint(identity, geometry, size), geometry=geometry)


def render_batch(identities: Sequence[Identity], aus: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Render one face per identity, as a batch the networks take: exact targets for AU edits.

    Args:
        identities: ``N`` faces.
        aus: ``(N, 17)`` AU vectors in ``[0, 1]``.
        size: side in pixels.

    Returns:
        ``(N, 3, size, size)`` float32 in ``[-1, 1]``.
    """
    if aus.ndim != 2 or aus.shape != (len(identities), NUM_AUS):
        raise ValueError(
            f"aus must have shape ({len(identities)}, {NUM_AUS}), one row per identity; got {tuple(aus.shape)}."
        )
    return torch.stack([render_face(identity, row, size).to_tensor() for identity, row in zip(identities, aus)])


def au_regions(identity: Identity, aus: AUInput, size: int = 64) -> dict[str, np.ndarray]:
    """Where each AU acts on this face: the pixels that change when that AU goes from 0 to 1.

    For each AU, the face is placed (not drawn) with that AU at 0 and at 1, the others as in ``aus``; the
    region is the bounding boxes, in both placements, of every feature (brows, eyes, cheeks, nose,
    mouth, jaw) that moved or changed, widened by 2.5 px for anti-aliasing.

    Returns:
        AU name → ``(size, size)`` bool mask, for all 17 AUs in the order of ``AU_NAMES``.
    """
    _check_size(size)
    values = _au_array(aus)
    coords = np.linspace(-1.0, 1.0, size)
    pad = 2.5 * 2.0 / (size - 1)
    regions = {}
    for index, name in enumerate(AU_NAMES):
        off, on = values.copy(), values.copy()
        off[index], on[index] = 0.0, 1.0
        parts_off, parts_on = face_geometry(identity, off).parts(), face_geometry(identity, on).parts()
        mask = np.zeros((size, size), dtype=bool)
        for part, placed in parts_off.items():
            if placed == parts_on[part]:
                continue
            for x0, y0, x1, y1 in placed.boxes() + parts_on[part].boxes():
                rows = (coords >= y0 - pad) & (coords <= y1 + pad)
                columns = (coords >= x0 - pad) & (coords <= x1 + pad)
                mask |= rows[:, None] & columns[None, :]
        regions[name] = mask
    return regions


# ---------------------------------------------------------------------------------------------------
# Dataset mode


def sample_aus(rng: np.random.Generator) -> np.ndarray:
    """Draw an expression for a training image: presets, sparse AU mixes and neutral faces.

    - 10 % neutral (all zeros);
    - 45 % an expression preset of :data:`~defgan_hf.aus.EXPRESSIONS` at a random intensity
      ``α ~ U(0.3, 1)``, each of its AUs further scaled by ``U(0.7, 1.3)``, plus, one time in three,
      one other AU at ``U(0, 0.5)``;
    - 45 % one to three AUs chosen uniformly among the 17 at ``U(0.15, 1)`` each,

    so that every AU occurs alone and in its usual company. Returns ``(17,)`` float64 in ``[0, 1]``.
    """
    aus = np.zeros(NUM_AUS)
    draw = rng.uniform()
    if draw < 0.1:
        return aus
    if draw < 0.55:
        presets = [vector for name, vector in EXPRESSIONS.items() if name != "neutral"]
        aus = presets[rng.integers(len(presets))].double().numpy() * rng.uniform(0.3, 1.0)
        aus = aus * rng.uniform(0.7, 1.3, NUM_AUS)
        if rng.uniform() < 1 / 3:
            extra = rng.integers(NUM_AUS)
            aus[extra] = max(aus[extra], rng.uniform(0.0, 0.5))
    else:
        chosen = rng.choice(NUM_AUS, size=rng.integers(1, 4), replace=False)
        aus[chosen] = rng.uniform(0.15, 1.0, len(chosen))
    return np.clip(aus, 0.0, 1.0)


def write_dataset(
    out_dir: str | Path,
    num_identities: int,
    per_identity: int,
    size: int = 64,
    seed: int = 0,
    first_identity: int = 0,
    progress: bool = True,
) -> int:
    """Write a training folder of synthetic faces that :mod:`defgan_hf.data` reads.

    Identity ``i`` (``first_identity ≤ i < first_identity + num_identities``) is
    ``sample_identity(seed, i)``; its ``per_identity`` expressions are drawn by :func:`sample_aus`
    from a stream seeded by ``(seed, i)``, so any image can be re-rendered exactly. For held-out
    identities, write a second folder with the same seed and a ``first_identity`` past the first
    folder's identities: ``train_accelerate.py`` trains on every image of its ``--data_dir``.

    Writes:
        - ``out_dir/imgs/id{i:05d}/{k:03d}.png``: the faces, ``size × size`` RGB, a folder per identity (one
          person, as ``defgan-annotate`` lays out a video's frames);
        - ``out_dir/aus.csv``: ``file`` (path under ``imgs/``), ``AU01_r … AU45_r`` on OpenFace's 0–5
          scale, ``identity`` (the index ``i``);
        - ``out_dir/landmarks.csv``: each face's mesh (:func:`face_mesh`) and a frontal pose, as
          ``defgan-annotate`` writes them for photos (the motion model and the texture mask's regions read it);
        - ``out_dir/identities.csv``: ``identity``, ``seed`` and every :class:`Identity` field.

    Returns:
        The number of images written.

    Raises:
        ValueError: on a non-positive count, an unsupported size, a negative ``seed`` or ``first_identity``,
            or an ``out_dir`` that already holds ``aus.csv``.
    """
    _check_size(size)
    for name, value in (("num_identities", num_identities), ("per_identity", per_identity)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    for name, value in (("seed", seed), ("first_identity", first_identity)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    out_dir = Path(out_dir)
    if (out_dir / TABLE_FILE).exists():
        raise ValueError(f"{out_dir / TABLE_FILE} already exists: choose another output folder, or remove it first.")
    (out_dir / IMAGE_FOLDER).mkdir(parents=True, exist_ok=True)

    identity_fields = [field.name for field in dataclasses.fields(Identity)]
    indices = range(first_identity, first_identity + num_identities)
    with (
        open(out_dir / TABLE_FILE, "w", newline="", encoding="utf-8") as table_file,
        open(out_dir / IDENTITIES_FILE, "w", newline="", encoding="utf-8") as identities_file,
        open(out_dir / LANDMARKS_FILE, "w", newline="", encoding="utf-8") as landmark_file,
    ):
        table, identities, landmarks = csv.writer(table_file), csv.writer(identities_file), csv.writer(landmark_file)
        table.writerow(au_table_header("identity"))
        landmarks.writerow(landmark_table_header())
        identities.writerow(["identity", "seed", *identity_fields])
        for index in tqdm(indices, unit="identity", desc="rendering", disable=not progress):
            identity = sample_identity(seed, index)
            identities.writerow([index, seed, *(getattr(identity, name) for name in identity_fields)])
            rng = np.random.default_rng([seed, index, 1])
            for k in range(per_identity):
                aus = sample_aus(rng)
                file = f"id{index:05d}/{k:03d}.png"
                (out_dir / IMAGE_FOLDER / file).parent.mkdir(exist_ok=True)
                Image.fromarray(render_face(identity, aus, size).image).save(out_dir / IMAGE_FOLDER / file)
                table.writerow(au_table_row(file, aus, index, digits=5))
                landmarks.writerow([file, 0, 0, 0, *(f"{value:.3f}" for value in face_mesh(identity, aus, size).ravel())])
    return num_identities * per_identity


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m defgan_hf.synthetic --out DIR --num_identities N --per_identity K …``."""
    parser = argparse.ArgumentParser(
        prog="python -m defgan_hf.synthetic",
        description="Render synthetic faces with exact Action Units into OUT/imgs/ and OUT/aus.csv (OpenFace's "
        "AUxx_r columns, 0–5), with OUT/identities.csv, for train_accelerate.py --data_dir OUT.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not hold an aus.csv yet)")
    parser.add_argument("--num_identities", type=int, required=True, help="how many different faces")
    parser.add_argument("--per_identity", type=int, required=True, help="expressions rendered per face")
    parser.add_argument(
        "--size", type=int, default=64, help=f"image side in pixels, {MIN_SIZE}–{MAX_SIZE} (default: 64)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the identities and expressions (default: 0)")
    parser.add_argument(
        "--first_identity",
        type=int,
        default=0,
        help="index of the first identity; a held-out folder starts past the training folder's last (default: 0)",
    )
    args = parser.parse_args(argv)
    try:
        count = write_dataset(
            args.out, args.num_identities, args.per_identity, args.size, args.seed, args.first_identity
        )
    except ValueError as error:
        parser.error(str(error))
    print(
        f"{count} faces of {args.num_identities} identities written to {args.out / IMAGE_FOLDER}, labels in "
        f"{args.out / TABLE_FILE}.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
