"""Action Unit vocabulary: the 17 AUs DefGAN is conditioned on, their FACS names, expression presets.

This is the one place these facts live. An AU vector is a float tensor of shape ``(..., 17)`` with
values in ``[0, 1]``, in the order of :data:`AU_NAMES`; ``1`` is FACS intensity E, i.e. OpenFace's
``AUxx_r`` value (0–5) divided by 5.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip
"""The 17 intensity AUs OpenFace estimates, in the order every AU vector uses."""

NUM_AUS: int = len(AU_NAMES)

AU_SCALE: float = 5.0
"""OpenFace's maximum AU intensity (FACS intensity E): files hold ``AUxx_r`` on ``[0, AU_SCALE]``, vectors ``[0, 1]``."""

TEXTURE_AUS: frozenset[str] = frozenset({"AU09", "AU25", "AU26", "AU45"})
"""AUs that create appearance absent from the face at rest (nose wrinkles, the mouth's interior and teeth, the
closed eyelid): a warp alone cannot make them."""

AU_FACS_NAMES: dict[str, str] = {
    "AU01": "Inner Brow Raiser",
    "AU02": "Outer Brow Raiser",
    "AU04": "Brow Lowerer",
    "AU05": "Upper Lid Raiser",
    "AU06": "Cheek Raiser",
    "AU07": "Lid Tightener",
    "AU09": "Nose Wrinkler",
    "AU10": "Upper Lip Raiser",
    "AU12": "Lip Corner Puller",
    "AU14": "Dimpler",
    "AU15": "Lip Corner Depressor",
    "AU17": "Chin Raiser",
    "AU20": "Lip Stretcher",
    "AU23": "Lip Tightener",
    "AU25": "Lips Part",
    "AU26": "Jaw Drop",
    "AU45": "Blink",
}

# Prototypes from FACS/EMFACS. AU25 (lips part) accompanies AU26 (jaw drop) because a dropped jaw
# with closed lips is rare and OpenFace codes both on such faces; contempt is one-sided in FACS and
# symmetric here because the vector has no side. Intensities are on the [0, 1] scale.
_EXPRESSION_PROTOTYPES: dict[str, dict[str, float]] = {
    "happy": {"AU06": 0.6, "AU12": 0.8},
    "sad": {"AU01": 0.6, "AU04": 0.6, "AU15": 0.6},
    "angry": {"AU04": 0.8, "AU05": 0.4, "AU07": 0.6, "AU23": 0.6},
    "fear": {
        "AU01": 0.6, "AU02": 0.6, "AU04": 0.4, "AU05": 0.6,
        "AU07": 0.4, "AU20": 0.6, "AU25": 0.4, "AU26": 0.4,
    },  # fmt: skip
    "surprise": {"AU01": 0.8, "AU02": 0.8, "AU05": 0.6, "AU25": 0.6, "AU26": 0.6},
    "disgust": {"AU09": 0.8, "AU10": 0.6, "AU15": 0.4, "AU17": 0.4},
    "contempt": {"AU12": 0.4, "AU14": 0.6},
    "neutral": {},
}

AU_REGIONS: dict[str, tuple[str, ...]] = {
    "brows": ("AU01", "AU02", "AU04"),
    "lids": ("AU05", "AU07", "AU45"),
    "cheeks": ("AU06",),
    "nose and upper lip": ("AU09", "AU10"),
    "mouth and chin": ("AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"),
}
"""Face region → the AUs that move it, as FACS describes them (an AU may act on more than one region)."""

INNER_BROW_COMBINATION: tuple[str, str] = ("AU01", "AU04")
"""FACS's 1+4: the inner brow raiser with the brow lowerer. Their motions do not add up on the inner brows:
there the raiser's lift prevails and the lowerer only draws the brows together, so the brows turn oblique
(sadness, fear). A sum of the two motions would cancel on the inner brows instead
(:func:`inner_brow_combination_change`)."""


def inner_brow_combination_change(source_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
    """How much more of FACS's 1+4 the target holds than the source: ``min(y₀₁, y₀₄) − min(x₀₁, x₀₄)``.

    The brow lowerer lowers the inner brows only by as much as it exceeds the inner brow raiser; an edit's
    lowering of the inner brows is therefore its brow lowerer's change less this change of the two together
    (:func:`defgan_hf.face_regions.inner_brow_lowering` says where the inner brows are).

    Args:
        source_aus, target_aus: ``(..., 17)`` in ``[0, 1]``.

    Returns:
        ``(...)`` in ``[-1, 1]``; exactly 0 where ``target = source``.
    """
    raiser, lowerer = (AU_NAMES.index(name) for name in INNER_BROW_COMBINATION)
    return (torch.minimum(target_aus[..., raiser], target_aus[..., lowerer])
            - torch.minimum(source_aus[..., raiser], source_aus[..., lowerer]))  # fmt: skip


_AU_PATTERN = re.compile(r"^\s*au\s*0*(\d{1,2})\s*(?:_r)?\s*$", re.IGNORECASE)


def canonical_au_name(name: str) -> str:
    """Return the canonical spelling of an AU name: ``"au12"``, ``"AU1"``, ``"AU12_r"`` → ``"AU12"``.

    Raises:
        ValueError: if ``name`` is not one of the 17 AUs, listing the valid names.
    """
    match = _AU_PATTERN.match(name)
    canonical = f"AU{int(match.group(1)):02d}" if match else name
    if canonical not in AU_NAMES:
        raise ValueError(f"Unknown Action Unit {name!r}; valid AUs are {', '.join(AU_NAMES)}.")
    return canonical


def au_vector(aus: Mapping[str, float], base: torch.Tensor | None = None) -> torch.Tensor:
    """Build an AU vector from named intensities, e.g. ``au_vector({"AU12": 0.8})``.

    Args:
        aus: AU name → intensity in ``[0, 1]``. Names as accepted by :func:`canonical_au_name`.
        base: optional ``(17,)`` or ``(N, 17)`` vector whose other entries are kept; zeros if None.

    Returns:
        ``(17,)`` (or the shape of ``base``) float tensor in ``[0, 1]``.

    Raises:
        ValueError: on an unknown AU name or an intensity outside ``[0, 1]``.
    """
    vector = torch.zeros(NUM_AUS) if base is None else base.detach().clone().float()
    if vector.shape[-1] != NUM_AUS:
        raise ValueError(f"base must have {NUM_AUS} AUs in its last dimension, got shape {tuple(vector.shape)}.")
    for name, value in aus.items():
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"{name} = {value} is outside [0, 1]; AU intensities here are OpenFace's 0–5 scale divided by 5."
            )
        vector[..., AU_NAMES.index(canonical_au_name(name))] = value
    return vector


EXPRESSIONS: dict[str, torch.Tensor] = {name: au_vector(aus) for name, aus in _EXPRESSION_PROTOTYPES.items()}
"""Expression name → ``(17,)`` AU vector in ``[0, 1]`` (EMFACS prototypes)."""


def expression_vector(expression: str) -> torch.Tensor:
    """Return a copy of the preset AU vector ``(17,)`` for ``expression`` (case-insensitive).

    Raises:
        ValueError: on an unknown expression, listing the valid ones.
    """
    key = expression.strip().lower()
    if key not in EXPRESSIONS:
        raise ValueError(f"Unknown expression {expression!r}; valid expressions are {', '.join(EXPRESSIONS)}.")
    return EXPRESSIONS[key].clone()


def interpolate_expression(source_aus: torch.Tensor, expression: str, intensity: float = 1.0) -> torch.Tensor:
    """Move from a source expression toward a preset: ``y = (1 − α) x + α p``.

    Args:
        source_aus: ``(17,)`` or ``(N, 17)`` source AU vector ``x`` in ``[0, 1]``.
        expression: preset name, see :data:`EXPRESSIONS`.
        intensity: ``α`` in ``[0, 1]``; 0 keeps the source expression, 1 reaches the preset.

    Returns:
        Target AU vector ``y``, same shape, dtype and device as ``source_aus``, in ``[0, 1]``.

    Raises:
        ValueError: on an unknown expression or ``intensity`` outside ``[0, 1]``.
    """
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity}.")
    if source_aus.shape[-1] != NUM_AUS:
        raise ValueError(f"source_aus must have {NUM_AUS} AUs in its last dimension, got {tuple(source_aus.shape)}.")
    preset = expression_vector(expression).to(source_aus)
    return (1.0 - intensity) * source_aus + intensity * preset


def edit_target(source_aus: torch.Tensor, expression: str | None = None, intensity: float = 1.0,
                aus: Mapping[str, float] | None = None, relative: bool = False) -> torch.Tensor:
    """The expression an edit asks for, from the source AUs and the user's request.

    ``expression`` moves from the source toward a preset by ``intensity`` (:func:`interpolate_expression`);
    ``aus`` then sets named AUs to values (``relative=False``) or adds values to them (``relative=True``,
    clipped to ``[0, 1]``). With neither, the target is the source (no edit).

    Args:
        source_aus: ``(17,)`` in ``[0, 1]``.
        expression: a preset name of :data:`EXPRESSIONS`, or None.
        intensity: in ``[0, 1]``.
        aus: AU name → value; absolute values in ``[0, 1]``, relative ones in ``[-1, 1]``.
        relative: how ``aus`` is applied.

    Returns:
        ``(17,)`` in ``[0, 1]``.

    Raises:
        ValueError: on an unknown expression or AU name, or a value outside its range.
    """
    target = source_aus.clone() if expression is None else interpolate_expression(source_aus, expression, intensity)
    if not aus:
        return target
    if not relative:
        return au_vector(aus, base=target)
    for name, delta in aus.items():
        if not -1.0 <= float(delta) <= 1.0:
            raise ValueError(f"A relative change of {name} must be in [-1, 1], got {delta}.")
        index = AU_NAMES.index(canonical_au_name(name))
        target[index] = (target[index] + float(delta)).clamp(0.0, 1.0)
    return target
