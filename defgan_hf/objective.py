"""The weighted objective of DefGAN training: the paper's terms (:mod:`defgan_hf.losses`) and their weights.

:class:`LossWeights` holds every λ (the paper's appendix D.2 by default, with the expression weights divided
by GANimation's batch of 25, see :mod:`defgan_hf.losses`); :func:`critic_objective` and
:func:`generator_objective` compute one micro-batch's loss and its named terms, as the training script logs
them. Beside the paper's terms, the generator objective can add the motion teacher (``motion_teacher``): the
deformation generator's grid against the grid the motion model (:mod:`defgan_hf.motion`) draws through the
face's landmarks for the same edit; :func:`motion_pretraining_objective`, the objective of the steps before
the adversarial ones, teaches the motion model's per-AU fields alone, and :func:`texture_pretraining_objective`,
of the steps after those, teaches the texture generator from pairs of video frames what a warp leaves undone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .losses import (
    composition_loss,
    critic_loss,
    cycle_loss,
    expression_loss,
    generator_critic_loss,
    gradient_penalty,
    grid_regularizer,
    identity_loss,
    mask_regularizer,
    motion_teacher_loss,
)
from .data import FramePair
from .face_regions import changed_region_mask, opened_mouth_mask
from .models import DefGANOutput, Discriminator
from .motion import MotionModel


@dataclass(frozen=True)
class LossWeights:
    """Every λ of the objective; the defaults are the paper's (expression weights ÷ 25)."""

    gp: float = 10.0
    critic: float = 1.0
    expression_deformed: float = 1000.0 / 25
    expression: float = 4000.0 / 25
    expression_real: float = 4000.0 / 25
    cycle: float = 100.0
    identity: float = 1.0
    composition: float = 10.0
    grid_eye: float = 0.1
    grid_tv: float = 1e-5
    mask_eye: float = 0.1
    mask_tv: float = 1e-5
    motion_teacher: float = 0.0
    """Not in the paper: the motion teacher's weight (0 leaves it out)."""
    mouth_interior: float = 0.0
    """Not in the paper, and only in motion pretraining: weight of the texture generator's teacher where the edit
    opens the mouth (:func:`motion_pretraining_objective`; 0 leaves it out)."""
    mask_margin: float = 0.1
    """Not in the paper, and only in texture pretraining: the mask learns to open where the texture map comes nearer
    the second frame than the warp by more than this (mean L1 over the colours, on ``[-1, 1]``): the inside of an
    opening mouth, not the misaligned edges a blurred texture would soften."""


@dataclass(frozen=True)
class EditBatch:
    """One micro-batch: faces ``(N, 3, S, S)`` in ``[-1, 1]``, their AUs ``x`` and target AUs ``y`` ``(N, 17)``
    in ``[0, 1]``, and (where the data has them) landmarks ``(N, 478, 2)`` in crop pixels with ``mirrored``
    ``(N,)`` bool (flipped faces, see :class:`defgan_hf.data.FaceItem`)."""

    real: torch.Tensor
    source_aus: torch.Tensor
    target_aus: torch.Tensor
    landmarks: torch.Tensor | None = None
    mirrored: torch.Tensor | None = None


Autocast = Callable[[], contextlib.AbstractContextManager]


def critic_objective(model: nn.Module, discriminator: nn.Module, batch: EditBatch, weights: LossWeights,
                     autocast: Autocast = contextlib.nullcontext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """``L_D = E[D_c(I_y)] − E[D_c(I_x)] + λ_gp GP + λ_exp ‖D_exp(I_x) − x‖²`` on one micro-batch.

    Args:
        model: the generators (a :class:`~defgan_hf.DefGAN`, possibly wrapped for DDP).
        discriminator: the critic.
        batch: the micro-batch.
        weights: the λs.
        autocast: mixed-precision context for the critic's forward passes; the gradient penalty runs outside
            it, in fp32.

    Returns:
        The loss, and its terms by name (``critic/…``).
    """
    with torch.no_grad():
        fake = model(batch.real, batch.source_aus, batch.target_aus, batch.landmarks).image
    with autocast():
        on_real, on_fake = discriminator(batch.real), discriminator(fake)
    terms = {
        "critic/wasserstein": critic_loss(on_real.critic, on_fake.critic),
        "critic/gradient_penalty": gradient_penalty(lambda x: discriminator(x).critic, batch.real, fake),
        "critic/expression_real": expression_loss(on_real.aus, batch.source_aus),
    }
    loss = (terms["critic/wasserstein"] + weights.gp * terms["critic/gradient_penalty"]
            + weights.expression_real * terms["critic/expression_real"])  # fmt: skip
    return loss, terms


def generator_objective(model: nn.Module, discriminator: Discriminator, batch: EditBatch, weights: LossWeights, *,
                        texture_only: bool, identity_model: nn.Module | None = None,
                        motion_model: MotionModel | None = None,
                        autocast: Autocast = contextlib.nullcontext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """Both generators' objective on one micro-batch: adversarial, expression on ``I*_y`` and ``I_y``, cycle,
    identity, grid composition, the two regularisers and, with a motion model, the motion teacher.

    Args:
        model: the generators (a :class:`~defgan_hf.DefGAN`, possibly wrapped for DDP).
        discriminator: the critic, unwrapped (not updated here: no gradient is computed for it).
        batch: the micro-batch; the motion teacher needs its landmarks.
        weights: the λs; ``motion_teacher`` > 0 needs ``motion_model``.
        identity_model: the face-embedding network of the identity loss, or None to leave the term out.
        motion_model: the teacher of the deformation generator.
        autocast: mixed-precision context for the critic's and the losses' forward passes.
        texture_only: whether ``model`` has no deformation generator (the GANimation ablation).

    Returns:
        The loss, and its terms by name (``generator/…``).
    """
    # The critic runs with detached parameters: the backward pass reaches the edits through it, but
    # computes no gradient for the critic, which this step does not update.
    critic = _frozen(discriminator)
    edit = model(batch.real, batch.source_aus, batch.target_aus, batch.landmarks)
    # The cycle edits I_y back toward x, its mask around the same features: they moved by a few pixels at
    # most, so the input's landmarks serve.
    cycle = model(edit.image, batch.target_aus, batch.source_aus, batch.landmarks)
    with autocast():
        on_edit = critic(edit.image)
        terms = {
            "generator/critic": generator_critic_loss(on_edit.critic),
            "generator/expression": expression_loss(on_edit.aus, batch.target_aus),
            "generator/cycle": cycle_loss(cycle.image, batch.real),
            "generator/mask_regularizer": mask_regularizer(edit.mask, weights.mask_eye, weights.mask_tv),
        }
        loss = (weights.critic * terms["generator/critic"] + weights.expression * terms["generator/expression"]
                + weights.cycle * terms["generator/cycle"] + terms["generator/mask_regularizer"])  # fmt: skip
        if not texture_only:
            terms["generator/expression_deformed"] = expression_loss(critic(edit.deformed).aus, batch.target_aus)
            terms["generator/composition"] = composition_loss(edit.grid, cycle.grid)
            terms["generator/grid_regularizer"] = grid_regularizer(edit.grid, weights.grid_eye, weights.grid_tv)
            loss = (loss + weights.expression_deformed * terms["generator/expression_deformed"]
                    + weights.composition * terms["generator/composition"] + terms["generator/grid_regularizer"])  # fmt: skip
            if weights.motion_teacher > 0:
                if motion_model is None or batch.landmarks is None:
                    raise ValueError("The motion teacher needs a motion model and the faces' landmarks.")
                with torch.no_grad():
                    teacher = motion_model.grid(batch.landmarks, batch.source_aus, batch.target_aus, batch.mirrored)
                terms["generator/motion_teacher"] = motion_teacher_loss(edit.grid, teacher)
                loss = loss + weights.motion_teacher * terms["generator/motion_teacher"]
        if identity_model is not None:
            terms["generator/identity"] = identity_loss(identity_model(edit.deformed), identity_model(batch.real))
            loss = loss + weights.identity * terms["generator/identity"]
    return loss, terms


MOUTH_INTERIOR_RGB: tuple[int, int, int] = (58, 18, 16)
"""The inside of an open mouth, 0–255: the mean of the darker half of the pixels within the lips' inner edge
(:data:`~defgan_hf.face_regions.INNER_LIPS`) in 166 crops with lips part above 0.7 of the default model's motion
videos: the mouth's shadow, not its teeth or tongue."""


def motion_pretraining_objective(model: nn.Module, batch: EditBatch, motion_model: MotionModel,
                                 mouth_interior: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """Not in the paper: the objective of the first steps, before the adversarial one.

    The deformation generator regresses the motion model's per-AU fields on each face
    (:meth:`~defgan_hf.motion.MotionModel.au_fields`, supervised), so that the adversarial objective starts
    from the motion the landmarks show instead of the identity warp. Every AU is taught on every face,
    whatever the batch's target, and each AU's error counts relative to its own motion,
    ``mean_k (Σ ‖P_k − B_k‖² / Σ ‖B_k‖²)`` over the batch's pixels (1 for fields of zero): in pixels² the
    wide motion of the lips parting would drown the lip corners' (AU12), which then come out blurred, the
    mouth shifted rather than curved. The edit ``I_y``
    is held to the motion-only edit ``I*_y`` (L1): the texture generator learns to add nothing meanwhile,
    and every parameter gets a gradient, as distributed training expects.

    With ``mouth_interior > 0`` the texture generator also learns the one thing these faces' geometry says a
    warp cannot do: where the edit opens the mouth (:func:`~defgan_hf.face_regions.opened_mouth_mask`, the lips'
    inner edge moved by the motion model, less what the warp fills from a mouth already open), the edit is held
    to the inside of a mouth (:data:`MOUTH_INTERIOR_RGB`) instead of ``I*_y``, which there shows the lips
    stretched over it, and the mask is taught (binary cross-entropy, weight ``mouth_interior``) to open there and
    only there within the changed AUs' regions.

    Args:
        model: the generators (a :class:`~defgan_hf.DefGAN` with a ``conditioning="change"`` deformation
            generator, possibly wrapped).
        batch: the micro-batch, with landmarks.
        motion_model: the teacher.
        mouth_interior: weight of the mask's lesson where the mouth opens (0: none, and no mouth interior).

    Returns:
        The loss, and its terms by name (``pretraining/…``).
    """
    if batch.landmarks is None:
        raise ValueError("Motion pretraining needs the faces' landmarks.")
    edit = model(batch.real, batch.source_aus, batch.target_aus, batch.landmarks)
    terms = {"pretraining/au_fields": _au_fields_error(edit.au_fields, motion_model, batch.landmarks, batch.mirrored)}
    wanted = edit.deformed
    if mouth_interior > 0:
        with torch.no_grad():
            landmarks = batch.landmarks[:, : motion_model.num_landmarks].to(edit.grid)
            moved = landmarks + motion_model.edit_motion(batch.source_aus, batch.target_aus, batch.mirrored).to(landmarks)
            opened = opened_mouth_mask(landmarks, moved, edit.grid)
            region = _changed_region(edit, landmarks, batch.source_aus, batch.target_aus) > 0
        inside = edit.image.new_tensor(MOUTH_INTERIOR_RGB).reshape(1, 3, 1, 1) / 127.5 - 1.0
        wanted = torch.lerp(edit.deformed, inside.expand_as(edit.deformed), opened)
        selection = F.binary_cross_entropy(edit.mask.float().clamp(1e-6, 1 - 1e-6), opened.float(), reduction="none")
        terms["pretraining/mouth_interior"] = (selection * region).sum() / region.sum().clamp_min(1.0)
    terms["pretraining/texture"] = (edit.image - wanted).abs().mean()
    loss = terms["pretraining/au_fields"] + terms["pretraining/texture"]
    if mouth_interior > 0:
        loss = loss + mouth_interior * terms["pretraining/mouth_interior"]
    return loss, terms


def texture_pretraining_objective(model: nn.Module, pair: FramePair, weights: LossWeights, *, texture_only: bool,
                                  motion_model: MotionModel | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """Not in the paper: the texture generator learns from two frames of a video what a warp cannot do.

    The first frame is warped by its landmarks' own motion to the second
    (:meth:`~defgan_hf.motion.MotionModel.landmark_grid`), and the edit from the first frame's AUs to the
    second's, with that grid, is held to the second frame (L1): where the mouth opens, the warp stretches the
    lips and the frame shows the dark inside and the teeth; where a lid closes, the warp folds skin and the
    frame shows the lid. Beside that:

    - the texture map is held to the second frame in the changed AUs' regions, each pixel weighted by the
      warp's error there, so that it learns to draw what the warp misses before the mask opens;
    - the mask is taught, pixel by pixel (binary cross-entropy), to open where the texture map comes nearer the
      second frame than the warp by ``weights.mask_margin``, and to stay shut where texture would only blur
      what the warp misaligned; the paper's mask regularisers (``mask_eye``, ``mask_tv``) stay, and the mask
      stays confined to the changed AUs' regions as in any edit;
    - the deformation generator stays held to the motion model's per-AU fields on the first frame
      (:func:`motion_pretraining_objective`'s term), so that both networks get a gradient, as distributed
      training expects.

    The texture-only ablation, which does not warp, is held to the second frame with its texture alone.

    Args:
        model: the generators (a :class:`~defgan_hf.DefGAN` with ``conditioning="change"`` deformation
            generator, or the texture-only ablation; possibly wrapped).
        pair: a batch of :class:`~defgan_hf.data.FramePair`.
        weights: the mask regularisers' λs and the mask's margin.
        texture_only: whether ``model`` has no deformation generator.
        motion_model: draws the frames' grid and teaches the per-AU fields (not needed with ``texture_only``).

    Returns:
        The loss, and its terms by name (``texture_pretraining/…``).
    """
    terms: dict[str, torch.Tensor] = {}
    if texture_only:
        edit = model(pair.source, pair.source_aus, pair.target_aus, pair.source_landmarks)
    else:
        if motion_model is None:
            raise ValueError("Texture pretraining of DefGAN needs a motion model, which draws the frames' grid.")
        with torch.no_grad():
            grid = motion_model.landmark_grid(pair.source_landmarks, pair.target_landmarks - pair.source_landmarks)
        edit = model(pair.source, pair.source_aus, pair.target_aus, pair.source_landmarks, grid)
        terms["texture_pretraining/au_fields"] = _au_fields_error(edit.au_fields, motion_model, pair.source_landmarks,
                                                                  pair.mirrored)  # fmt: skip
    terms["texture_pretraining/reconstruction"] = (edit.image - pair.target).abs().mean()
    # The texture map is also held to the second frame where the changed AUs act, whatever the mask, each pixel
    # weighted by how far the warp is from the frame there: through the composition alone it learns only where
    # the mask is already open (and the mask opens only where it is already better than the warp), and
    # unweighted it would spend itself on copying the many pixels the warp gets right.
    region = _changed_region(edit, pair.source_landmarks.to(edit.color), pair.source_aus, pair.target_aus)
    with torch.no_grad():
        warp_error = (edit.deformed - pair.target).abs().mean(dim=1, keepdim=True)
        emphasis = region * warp_error
    terms["texture_pretraining/color"] = ((edit.color - pair.target).abs() * emphasis).sum() / (
        3 * emphasis.sum()).clamp_min(1e-6)
    terms["texture_pretraining/mask_regularizer"] = mask_regularizer(edit.mask, weights.mask_eye, weights.mask_tv)
    # The mask is also told where to open: where the texture map beats the warp by the margin. Through the
    # composition alone its gradient fades as its sigmoid closes, and it closes on the many pixels that the warp
    # already gets right before it learns the few that the warp cannot.
    with torch.no_grad():
        gain = warp_error - (edit.color - pair.target).abs().mean(dim=1, keepdim=True)
        wanted = (gain > weights.mask_margin).to(edit.mask)
    inside = (region > 0).to(edit.mask)
    selection = F.binary_cross_entropy(edit.mask.float().clamp(1e-6, 1 - 1e-6), wanted.float(), reduction="none")
    terms["texture_pretraining/mask_selection"] = (selection * inside).sum() / inside.sum().clamp_min(1.0)
    loss = (terms["texture_pretraining/reconstruction"] + terms["texture_pretraining/color"]
            + terms["texture_pretraining/mask_regularizer"] + terms["texture_pretraining/mask_selection"])  # fmt: skip
    if not texture_only:
        loss = loss + terms["texture_pretraining/au_fields"]
    return loss, terms


def _changed_region(edit: DefGANOutput, landmarks: torch.Tensor, source_aus: torch.Tensor,
                    target_aus: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The regions of the changed AUs, ``(N, 1, S, S)``: those the model confined the edit's mask to, or, for a
    model that does not confine it, :func:`changed_region_mask` of the face."""
    if edit.region is not None:
        return edit.region
    return changed_region_mask(landmarks, source_aus, target_aus, edit.image.shape[-1])


def _au_fields_error(au_fields: torch.Tensor | None, motion_model: MotionModel, landmarks: torch.Tensor,
                     mirrored: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """The per-AU fields' error against the motion model's, each AU's relative to its own motion over the batch
    (:func:`motion_pretraining_objective`)."""
    if au_fields is None:
        raise ValueError("Learning the motion model's per-AU fields needs a deformation generator that has them "
                         "(conditioning='change').")  # fmt: skip
    with torch.no_grad():
        teacher = motion_model.au_fields(landmarks, mirrored)
        motion = teacher.pow(2).sum(dim=(0, 2, 3, 4))  # (K,) each AU's motion over the batch, pixels²
        moving = motion > 0  # AUs the motion model moves (the others' fields are held to zero, in pixels²)
    error = (au_fields - teacher).pow(2).sum(dim=(0, 2, 3, 4))
    return torch.where(moving, error / motion.clamp_min(1e-12), error / teacher[:, 0, 0].numel()).mean()


def _frozen(module: nn.Module) -> Callable[[torch.Tensor], Any]:
    """``module`` as a function of its input alone: its parameters enter detached."""
    parameters = {name: parameter.detach() for name, parameter in module.named_parameters()}
    return lambda inputs: torch.func.functional_call(module, parameters, (inputs,))
