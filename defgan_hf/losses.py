"""DefGAN's objective, one function per term of the paper (§3.2, Eq. 7–15).

Each function returns the unweighted term except the two regularisers, whose two parts carry their
own λ (Eq. 14–15). Reductions: means over the batch everywhere, so no term depends on the batch size;
sums over pixels only where the paper writes Σ (the total-variation parts).

Units chosen where the paper is silent:

- Grids enter :func:`composition_loss` and :func:`grid_regularizer` in **pixels** of the face crop, so
  λ_comp = 10 weighs a one-pixel composition error like ten units of L1 image error would, instead
  of vanishing in normalised coordinates (where one pixel of a 128² crop is 0.016).
- :func:`expression_loss` is a mean squared error over AUs. GANimation, whose λ values the paper
  inherits, divides its squared error by the batch size (25) on top; the training script therefore
  uses λ/25 (1000/25 = 40 on ``I*_y``, 4000/25 = 160 on ``I_y``, 4000/25 = 160 for D's regression on
  real faces), which reproduces the paper's weighting at batch 25 and keeps it at any batch size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .warp import compose_grids, grid_offsets_px, total_variation


def critic_loss(critic_real: torch.Tensor, critic_fake: torch.Tensor) -> torch.Tensor:
    """The critic's Wasserstein estimate to minimise (Eq. 7 without the penalty): ``E[D_c(I_y)] − E[D_c(I_x)]``.

    Args:
        critic_real: ``(N, 1, h, w)`` patch scores of real faces ``I_x``.
        critic_fake: ``(N, 1, h, w)`` patch scores of edits ``I_y`` (detached from the generators).
    """
    return critic_fake.mean() - critic_real.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇_Î D_c(Î)‖₂ − 1)²]`` on random points ``Î`` between real and fake images.

    Computed in float32 with autocast disabled: the second-order gradient of a half-precision critic
    underflows, and the penalty is what keeps the critic 1-Lipschitz.

    Args:
        critic: maps ``(N, 3, S, S)`` images to ``(N, 1, h, w)`` patch scores; the gradient is that of
            the sum of a sample's patch scores.
        real: ``(N, 3, S, S)`` real faces in ``[-1, 1]``.
        fake: ``(N, 3, S, S)`` edits in ``[-1, 1]``.
        generator: optional RNG for the interpolation weights.

    Returns:
        Scalar, differentiable with respect to the critic's parameters.
    """
    with torch.autocast(device_type=real.device.type, enabled=False):
        real, fake = real.detach().float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
        interpolated = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
        scores = critic(interpolated).float()
        (gradients,) = torch.autograd.grad(scores.sum(), interpolated, create_graph=True)
        return (gradients.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def generator_critic_loss(critic_fake: torch.Tensor) -> torch.Tensor:
    """The generators' adversarial term (Eq. 8): ``−E[D_c(I_y)]``.

    Args:
        critic_fake: ``(N, 1, h, w)`` patch scores of the edits, differentiable in the generators.
    """
    return -critic_fake.mean()


def expression_loss(predicted_aus: torch.Tensor, target_aus: torch.Tensor) -> torch.Tensor:
    """Squared AU error ``‖D_exp(I) − y‖²``, averaged over AUs and samples (Eq. 9 and 10).

    Used for the generators on ``I*_y`` and ``I_y`` against the target ``y``, and for the
    discriminator's AU regression on real faces against their labels ``x``.

    Args:
        predicted_aus: ``(N, 17)`` from the discriminator's AU head.
        target_aus: ``(N, 17)`` in ``[0, 1]``.
    """
    return F.mse_loss(predicted_aus.float(), target_aus.float())


def cycle_loss(reconstruction: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``‖G_Comp(G_Comp(I_x, x, y), y, x) − I_x‖₁``, the mean absolute error (Eq. 11).

    Args:
        reconstruction: ``(N, 3, S, S)`` the edit taken back to the source AUs, in ``[-1, 1]``.
        image: ``(N, 3, S, S)`` the input ``I_x`` in ``[-1, 1]``.
    """
    return F.l1_loss(reconstruction.float(), image.float())


def embedding_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The identity distance ``1 − cos(a, b)`` of face-recognition embeddings ``(..., D)`` (any norm).

    Returns:
        ``(...)`` in ``[0, 2]``: 0 for the same face, near 1 between different people (SFace).
    """
    return 1.0 - F.cosine_similarity(a.float(), b.float(), dim=-1)


def identity_loss(deformed_embedding: torch.Tensor, image_embedding: torch.Tensor) -> torch.Tensor:
    """``1 − cos(E(I*_y), E(I_x))`` with ``E`` a face-recognition embedding (Eq. 12), averaged.

    Args:
        deformed_embedding: ``(N, D)`` embeddings of the motion-only edits ``I*_y``.
        image_embedding: ``(N, D)`` embeddings of the inputs ``I_x``.
    """
    return embedding_distance(deformed_embedding, image_embedding).mean()


def composition_loss(grid: torch.Tensor, cycle_grid: torch.Tensor) -> torch.Tensor:
    """``(G ∘ G_cyc − Id)²`` (Eq. 13): going there and back must read every pixel from itself.

    The cycle reads ``I_x`` at ``G(G_cyc(p))`` (see :func:`~defgan_hf.warp.compose_grids`); the squared
    distance of that position from ``p`` is measured in pixels and averaged over positions and samples.

    Args:
        grid: ``(N, S, S, 2)`` forward grid ``G``.
        cycle_grid: ``(N, S, S, 2)`` grid ``G_cyc`` of the cycle pass.
    """
    return grid_offsets_px(compose_grids(grid.float(), cycle_grid.float())).pow(2).sum(dim=-1).mean()


def grid_regularizer(grid: torch.Tensor, eye_weight: float = 0.1, tv_weight: float = 1e-5) -> torch.Tensor:
    """``λ_eye (G − Id)² + λ_TV Σ (G_{i+1,j} − G_{i,j})² + (G_{i,j+1} − G_{i,j})²`` (Eq. 14).

    Both parts are taken of the displacement ``G − Id`` in pixels: the squared displacement averaged
    over positions, and the total variation summed over positions. (TV of ``G`` itself differs from TV
    of ``G − Id`` only by a term that pulls the grid's border inwards, which nobody wants; the paper's
    first difference ``G_{i+1,j} − G_{i+1,j}`` is a typo for this one.)

    Args:
        grid: ``(N, S, S, 2)``.
        eye_weight: λ_eye.
        tv_weight: λ_TV.
    """
    offsets = grid_offsets_px(grid.float())
    return (eye_weight * offsets.pow(2).sum(dim=-1).mean()
            + tv_weight * total_variation(offsets.permute(0, 3, 1, 2)).mean())


def mask_regularizer(mask: torch.Tensor, eye_weight: float = 0.1, tv_weight: float = 1e-5) -> torch.Tensor:
    """``λ_eye ‖M‖² + λ_TV Σ (M_{i+1,j} − M_{i,j})² + (M_{i,j+1} − M_{i,j})²`` (Eq. 15).

    The first part, averaged over positions, keeps the texture generator from repainting the whole
    face (which would make it GANimation again); the second, summed, keeps the mask smooth.

    Args:
        mask: ``(N, 1, S, S)`` in ``[0, 1]``.
        eye_weight: λ_eye.
        tv_weight: λ_TV.
    """
    mask = mask.float()
    return eye_weight * mask.pow(2).mean() + tv_weight * total_variation(mask).mean()


def motion_teacher_loss(grid: torch.Tensor, teacher_grid: torch.Tensor) -> torch.Tensor:
    """Not in the paper: ``mean ‖(G − Id) − (G_teacher − Id)‖²`` in pixels², the deformation generator's
    grid against the motion model's grid for the same face and edit (:meth:`defgan_hf.motion.MotionModel.grid`).

    Args:
        grid, teacher_grid: ``(N, S, S, 2)`` in normalised coordinates.

    Returns:
        Scalar.
    """
    return (grid_offsets_px(grid) - grid_offsets_px(teacher_grid)).pow(2).sum(dim=-1).mean()
