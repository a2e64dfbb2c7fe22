"""The deformation generator G_Def: an AU-conditioned, bounded deformation grid (the motion edit)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..aus import AU_NAMES, INNER_BROW_COMBINATION, NUM_AUS, inner_brow_combination_change
from ..face_regions import REGION_SEEDS, inner_brow_lowering_field, landmark_heatmaps
from ..warp import bounded_offset_grid, offset_grid
from .blocks import AUSequential, Encoder, check_aus, check_image, conv_norm_relu, tile_aus
from .hub import HubModel


BOUNDS: tuple[str, ...] = ("tanh", "clamp")
"""How a grid is held within ``max_offset``: ``max_offset · tanh(o / max_offset)`` (the paper's generator, whose raw
outputs are unbounded) or ``o`` clamped to ``±max_offset`` (as the motion model bounds its grid: a motion of half
the bound is given whole, where tanh gives 92% of it)."""

FIELD_COMPOSITION: tuple[str, ...] = ("inner_brow_combination", "arrival_steps", "bound")
""":class:`DeformationGenerator`'s settings that say how its per-AU fields become a grid: they change no weight, so a
trained generator can be given others (:func:`~defgan_hf.models.defgan.with_field_composition`)."""


def check_bound(bound: str) -> None:
    """Raise ``ValueError`` unless ``bound`` is one of :data:`BOUNDS`."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {', '.join(BOUNDS)}; got {bound!r}.")


def fields_grid(fields: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor, max_offset: float,
                landmarks: torch.Tensor | None = None, arrival_steps: int = 0,
                bound: str = "tanh") -> torch.Tensor:  # fmt: skip
    """The grid of an edit from per-AU fields: the offset ``o = Σ_k Δ_k P_k``, bounded (``bound``).

    With ``landmarks``, FACS's 1+4 (:data:`~defgan_hf.aus.INNER_BROW_COMBINATION`): the brow lowerer's field
    lowers the inner brows only by the lowerer's excess over the inner brow raiser, so the sum is less
    ``c · L(P_04)`` (``c``: :func:`~defgan_hf.aus.inner_brow_combination_change`, ``L``:
    :func:`~defgan_hf.face_regions.inner_brow_lowering_field`).

    Args:
        fields: ``(N, num_aus, 2, S, S)`` in pixels per unit change (:meth:`DeformationGenerator.au_fields`, or the
            motion model's :meth:`~defgan_hf.motion.MotionModel.au_fields`, which teach them).
        source_aus, target_aus: ``(N, num_aus)`` in ``[0, 1]``; the AU change is ``Δ = y − x``.
        max_offset: the bound, in pixels.
        landmarks: ``(N, ≥468, 2)`` the face's landmarks in pixels of the crop, for the 1+4 rule; None for none.
        arrival_steps: steps of :func:`arrival_offsets` (0: the offsets stay where the landmarks rest).
        bound: one of :data:`BOUNDS`.

    Returns:
        Grid ``(N, S, S, 2)``, the identity grid exactly where ``Δ = 0``.
    """
    check_bound(bound)
    offsets = torch.einsum("nk,nkchw->nchw", (target_aus - source_aus).to(fields.dtype), fields)
    if landmarks is not None:
        lowerer = fields[:, AU_NAMES.index(INNER_BROW_COMBINATION[1])]
        combination = inner_brow_combination_change(source_aus, target_aus).to(fields.dtype)
        offsets = offsets - combination[:, None, None, None] * inner_brow_lowering_field(lowerer, landmarks)
    if arrival_steps:
        offsets = arrival_offsets(offsets, arrival_steps)
    if bound == "clamp":
        return offset_grid(offsets.clamp(-max_offset, max_offset).permute(0, 2, 3, 1))
    return bounded_offset_grid(offsets / max_offset, max_offset)


ARRIVAL_DAMPING: float = 0.5
"""How far each step of :func:`arrival_offsets` goes from the offsets it has toward those it reads. Plain steps
(1) leave an error times the field's slope ``s'`` along the motion; where the warp stretches the face to twice its
size (``s' = −1``: a lip or a brow moved away from a feature that stays) they swing between the offset and 0 for ever,
and drew rings around parting lips. Half steps leave ``(1 + s') / 2`` of it: none at a stretch of 2, a half where the
face is not stretched, and they settle wherever it is stretched less than fourfold."""


def arrival_offsets(offsets: torch.Tensor, steps: int) -> torch.Tensor:
    """Backward offsets drawn where the landmarks rest, moved to where they arrive.

    A per-AU field gives each point's offset ``s(l) = −d`` at the point ``l`` itself, the tangent of the edit at no
    change: the warp then shows at ``l`` what lay at ``l − d``, which is the point moved by ``d`` only where the
    motion hardly varies over ``d``. Across a lip corner or a lid it does, and the feature moves by a fraction of
    ``d``: on held-out faces, the default model's fields summed so move the 40 landmarks a preset moves most
    0.38–0.66 of their way, moved to the arrivals 0.55–0.89, and the motion model's grid 0.69–0.90
    (``python -m benchmarks.grid_fidelity``). The grid that moves the point to ``l + d`` has ``o(l + d) = −d``, i.e.
    ``o(q) = s(q + o(q))`` everywhere, which fixed-point steps ``o ← o + α (s(q + o) − o)`` from ``o = s`` solve
    (``α``: :data:`ARRIVAL_DAMPING`). The motion model's grid does the same by
    drawing its spline through the arrivals (:meth:`~defgan_hf.motion.MotionModel.grid`), which a network's fields,
    linear in the AU change, cannot.

    Args:
        offsets: ``(N, 2, S, S)`` ``(x, y)`` backward offsets in pixels, drawn at the points' rest positions.
        steps: fixed-point steps.

    Returns:
        ``(N, 2, S, S)`` the offsets at the points' arrivals; 0 where ``offsets`` is 0 everywhere.
    """
    rest = offsets
    for _ in range(steps):
        arrived = F.grid_sample(rest, offset_grid(offsets.permute(0, 2, 3, 1)), mode="bilinear",
                                padding_mode="border", align_corners=True)
        offsets = torch.lerp(offsets, arrived, ARRIVAL_DAMPING)
    return offsets


class DeformationGenerator(nn.Module, HubModel):
    """``G = G_Def(I_x, x, y)``: where each pixel of the edited face is read from in the input.

    The texture generator's encoder on the image with source and target AUs tiled over it; its
    transposed convolutions replaced by bilinear upsampling + 3×3 convolutions (smooth fields without
    checkerboard artefacts); a 7×7 head giving a two-channel offset field, bounded to ``max_offset``
    pixels by :func:`~defgan_hf.warp.bounded_offset_grid` whatever the weights are.

    With ``conditioning="change"`` (not in the paper) the network sees the face alone and its head gives
    one field per AU, ``P_k`` (:meth:`au_fields`: the AU's motion on this face, in pixels per unit change);
    the edit's offset is ``Σ_k Δ_k P_k`` for the AU change ``Δ = y − x``, then bounded. The AU change enters
    after the last layer, where no normalisation removes it; an edit is linear in the change near zero,
    each AU has a motion of its own (what the motion model of :mod:`defgan_hf.motion` teaches, field by
    field), one pass gives every AU's field, and an edit that changes no AU gives the identity grid exactly.

    Args:
        image_size: side of the square face crops; ``max_offset`` is in pixels of this size.
        num_aus: length of the AU vectors.
        width: channels after the first convolution; doubled by each downsampling.
        num_downsamples: stride-2 convolutions (and matching upsampling stages).
        num_res_blocks: residual blocks at the bottleneck.
        max_offset: largest displacement of any pixel, in pixels (the paper: 5 at 128×128).
        au_modulation: also modulate the normalisations after the bottleneck by ``(x, y)``
            (:class:`~defgan_hf.models.blocks.AUModulatedNorm`); False is the paper's layout. Only with
            ``conditioning="paper"``: the other has no AU input to modulate.
        conditioning: ``"paper"`` (``x`` and ``y`` tiled, one field) or ``"change"`` (the face alone, a field per AU).
        landmark_input: also read the face's geometry, :func:`~defgan_hf.face_regions.landmark_heatmaps` of its
            landmarks, beside the image (not in the paper). Motion is a matter of where the features are; a
            network that must find them in the pixels learns to find them on its training faces only (on new
            faces the first v2 release moved the brows 20–50% less than on its training faces), while the
            landmarker finds them on any face. The forward pass then needs the landmarks.
        inner_brow_combination: compose the fields as FACS's 1+4 moves the brows (:func:`fields_grid`; not in
            the paper). Needs ``conditioning="change"`` and ``landmark_input``. It changes no weight: a network
            trained without it composes its fields this way once it is set.
        arrival_steps: with ``conditioning="change"``, move the summed fields' offsets from where the landmarks rest
            to where they arrive in this many fixed-point steps (:func:`arrival_offsets`; 0, the tangent, as trained
            before). Like ``inner_brow_combination`` it changes no weight.
        bound: how the grid is held within ``max_offset`` (:data:`BOUNDS`); ``"clamp"`` needs ``conditioning="change"``,
            whose fields are offsets in pixels, where the paper's raw outputs need tanh to be bounded at all.
    """

    def __init__(self, image_size: int = 128, num_aus: int = NUM_AUS, width: int = 64, num_downsamples: int = 2,
                 num_res_blocks: int = 6, max_offset: float = 5.0, au_modulation: bool = False,
                 conditioning: str = "paper", landmark_input: bool = False, inner_brow_combination: bool = False,
                 arrival_steps: int = 0, bound: str = "tanh") -> None:  # fmt: skip
        super().__init__()
        if image_size % 2**num_downsamples:
            raise ValueError(f"image_size {image_size} must be divisible by 2**num_downsamples = {2**num_downsamples}.")
        if max_offset <= 0:
            raise ValueError(f"max_offset must be positive (pixels), got {max_offset}.")
        self.image_size = image_size
        self.num_aus = num_aus
        self.max_offset = max_offset
        self.au_modulation = au_modulation
        if conditioning not in ("paper", "change"):
            raise ValueError(f"conditioning must be 'paper' or 'change', got {conditioning!r}.")
        if au_modulation and conditioning == "change":
            raise ValueError("au_modulation needs conditioning='paper': with 'change' the network sees no AUs (the "
                             "change weights its per-AU fields after the last layer).")  # fmt: skip
        if inner_brow_combination and (conditioning != "change" or not landmark_input):
            raise ValueError("inner_brow_combination composes per-AU fields on the face's landmarks: it needs "
                             "conditioning='change' and landmark_input=True.")  # fmt: skip
        check_bound(bound)
        if conditioning != "change" and (arrival_steps or bound != "tanh"):
            raise ValueError("arrival_steps and bound='clamp' act on per-AU fields in pixels: they need "
                             "conditioning='change'.")  # fmt: skip
        if arrival_steps < 0:
            raise ValueError(f"arrival_steps must be 0 or more, got {arrival_steps}.")
        self.arrival_steps = arrival_steps
        self.bound = bound
        self.conditioning = conditioning
        self.landmark_input = landmark_input
        self.inner_brow_combination = inner_brow_combination
        conditioning_aus = 2 * num_aus if conditioning == "paper" else 0
        modulating_aus = conditioning_aus if au_modulation else 0
        landmark_channels = len(REGION_SEEDS) if landmark_input else 0
        self.encoder = Encoder(3 + landmark_channels + conditioning_aus, width, num_downsamples, num_res_blocks,
                               modulating_aus)
        layers: list[nn.Module] = []
        channels = self.encoder.out_channels
        for _ in range(num_downsamples):
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       conv_norm_relu(channels, channels // 2, 3, modulating_aus=modulating_aus)]
            channels //= 2
        self.decoder = AUSequential(*layers)
        fields = 2 if conditioning == "paper" else 2 * num_aus
        self.offset_head = nn.Conv2d(channels, fields, 7, padding=3, bias=False)
        # Start close to the identity warp (offsets of a fraction of a pixel) so early training is not
        # dominated by random motion, while keeping gradients flowing to every layer.
        nn.init.normal_(self.offset_head.weight, std=1e-3)

    def forward(self, image: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
                landmarks: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """
        Args:
            image: ``(N, 3, S, S)`` in ``[-1, 1]``, ``S = image_size``.
            source_aus: ``(N, num_aus)`` in ``[0, 1]``, the expression ``x`` of ``image``.
            target_aus: ``(N, num_aus)`` in ``[0, 1]``, the wanted expression ``y``.
            landmarks: ``(N, ≥468, 2)`` the face-mesh landmarks in pixels of the crop; needed with ``landmark_input``.

        Returns:
            Grid ``(N, S, S, 2)`` in normalised ``(x, y)`` coordinates (``align_corners=True``), at most
            ``max_offset`` pixels from the identity grid in each axis.
        """
        check_aus(source_aus, image.shape[0], self.num_aus, "source_aus")
        check_aus(target_aus, image.shape[0], self.num_aus, "target_aus")
        if self.conditioning == "change":
            return self.fields_grid(self.au_fields(image, landmarks), source_aus, target_aus, landmarks)
        s = self.image_size
        aus = torch.cat((source_aus, target_aus), dim=1).to(image.dtype)
        inputs = torch.cat((self._inputs(image, landmarks), tile_aus(aus, s, s)), dim=1)
        features = self.decoder(self.encoder(inputs, aus), aus)
        return bounded_offset_grid(self.offset_head(features), self.max_offset)

    def au_fields(self, image: torch.Tensor, landmarks: torch.Tensor | None = None) -> torch.Tensor:
        """Each AU's motion on this face (``conditioning="change"``).

        Args:
            image: ``(N, 3, S, S)`` in ``[-1, 1]``.
            landmarks: ``(N, ≥468, 2)`` the face-mesh landmarks in pixels of the crop; needed with ``landmark_input``.

        Returns:
            ``(N, num_aus, 2, S, S)`` ``(x, y)`` displacements in pixels per unit AU change (the offset an
            edit reads the input from, before the bound: :meth:`fields_grid`).

        Raises:
            ValueError: for a ``conditioning="paper"`` network, which has one field for the whole edit.
        """
        if self.conditioning != "change":
            raise ValueError("Only a conditioning='change' deformation generator has per-AU fields.")
        raw = self.offset_head(self.decoder(self.encoder(self._inputs(image, landmarks))))
        return raw.unflatten(1, (self.num_aus, 2)) * self.max_offset

    def _inputs(self, image: torch.Tensor, landmarks: torch.Tensor | None) -> torch.Tensor:
        """The image, and with ``landmark_input`` the landmarks' maps after it: ``(N, 3 [+ 5], S, S)``."""
        check_image(image, self.image_size, type(self).__name__)
        if not self.landmark_input:
            return image
        if landmarks is None or landmarks.ndim != 3 or landmarks.shape[0] != image.shape[0]:
            raise ValueError("This deformation generator reads the face's geometry: pass its landmarks, (N, 478, 2) "
                             "in pixels of the crop (DetectedFace.landmarks, or landmarks.csv in training), got "
                             f"{None if landmarks is None else tuple(landmarks.shape)}.")  # fmt: skip
        return torch.cat((image, landmark_heatmaps(landmarks.to(image), self.image_size)), dim=1)

    def fields_grid(self, fields: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
                    landmarks: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The grid of an edit from :meth:`au_fields`: :func:`fields_grid` with this network's ``max_offset``,
        ``arrival_steps`` and ``bound``, and with FACS's 1+4 if the network has ``inner_brow_combination``
        (``landmarks`` are then needed)."""
        if self.inner_brow_combination and landmarks is None:
            raise ValueError("This deformation generator composes the brows' fields on the face's landmarks: pass "
                             "them, (N, 478, 2) in pixels of the crop.")  # fmt: skip
        return fields_grid(fields, source_aus, target_aus, self.max_offset,
                           landmarks if self.inner_brow_combination else None, self.arrival_steps, self.bound)

    def usage_example(self) -> str:
        s = self.image_size
        return (
            "import torch\nfrom defgan_hf import DeformationGenerator, EXPRESSIONS\nfrom defgan_hf.warp import warp\n\n"
            'deformer = DeformationGenerator.from_pretrained("REPO_ID_OR_FOLDER", subfolder="deformer")\n'
            f"face = torch.rand(1, 3, {s}, {s}) * 2 - 1  # an aligned face crop in [-1, 1]\n"
            + (f"landmarks = torch.rand(1, 478, 2) * {s}  # its face-mesh landmarks in crop pixels\n"
               'grid = deformer(face, EXPRESSIONS["neutral"][None], EXPRESSIONS["happy"][None], landmarks)\n'
               if self.landmark_input else
               'grid = deformer(face, EXPRESSIONS["neutral"][None], EXPRESSIONS["happy"][None])\n')
            + "deformed = warp(face, grid)"
        )  # fmt: skip
