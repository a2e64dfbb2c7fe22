"""Building blocks shared by the DefGAN networks (GANimation's generator layout, paper appendix D.1)."""

from __future__ import annotations

import torch
from torch import nn


class AUModulatedNorm(nn.InstanceNorm2d):
    """InstanceNorm whose affine scale and shift also depend on the AU vector ``a``:
    ``(γ·IN(h) + β)·(1 + W_γ a) + W_β a`` (AdaIN-style, as in StarGAN v2).

    Why: the paper's generators see the AUs only as constant channels tiled over the input, and the
    first InstanceNorm subtracts each channel's spatial mean, so away from the image border the AUs
    survive only as a faint shift of the normalisation statistics. Modulating the normalisations after
    the bottleneck hands every AU to the layers that decide where pixels move. ``W_γ, W_β`` start at zero,
    so a network gains the modulation without changing its outputs (fine-tuning adds it to a trained
    model, see :func:`~defgan_hf.models.defgan.with_au_modulation`). Off by default: the paper's layout.

    Args:
        channels: feature channels normalised.
        num_aus: length of the modulating AU vector.
    """

    def __init__(self, channels: int, num_aus: int) -> None:
        super().__init__(channels, affine=True)
        self.modulation = nn.Linear(num_aus, 2 * channels)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, features: torch.Tensor, aus: torch.Tensor | None = None) -> torch.Tensor:
        """``features``: ``(N, C, H, W)``; ``aus``: ``(N, num_aus)`` in ``[0, 1]`` → ``(N, C, H, W)``."""
        if aus is None:
            raise ValueError("An AU-modulated network needs the AU vector in every normalisation layer.")
        scale, shift = self.modulation(aus.to(features.dtype)).chunk(2, dim=1)
        return super().forward(features) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


def instance_norm(channels: int, modulating_aus: int = 0) -> nn.InstanceNorm2d:
    """Affine InstanceNorm, AU-modulated by ``modulating_aus`` AUs when that is non-zero."""
    return AUModulatedNorm(channels, modulating_aus) if modulating_aus else nn.InstanceNorm2d(channels, affine=True)


class AUSequential(nn.Sequential):
    """``nn.Sequential`` that hands the AU vector to the layers that take it (same weight names)."""

    def forward(self, x: torch.Tensor, aus: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, aus) if isinstance(layer, (AUModulatedNorm, AUSequential, ResidualBlock)) else layer(x)
        return x


def conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                   modulating_aus: int = 0) -> AUSequential:
    """Conv (no bias: InstanceNorm removes it) → InstanceNorm (affine, AU-modulated if ``modulating_aus``)
    → ReLU, 'same'-style padding."""
    return AUSequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False),
        instance_norm(out_channels, modulating_aus),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """``x + (Conv3×3 → IN → ReLU → Conv3×3 → IN)(x)`` at constant width."""

    def __init__(self, channels: int, modulating_aus: int = 0) -> None:
        super().__init__()
        self.body = AUSequential(
            conv_norm_relu(channels, channels, 3, modulating_aus=modulating_aus),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            instance_norm(channels, modulating_aus),
        )

    def forward(self, x: torch.Tensor, aus: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.body(x, aus)


class Encoder(nn.Module):
    """Conv7×7 → ``num_downsamples`` × (Conv4×4 stride 2, doubling the width) → ``num_res_blocks`` residual blocks.

    Maps ``(N, in_channels, H, W)`` to ``(N, width · 2**num_downsamples, H / 2**num_downsamples, W / 2**num_downsamples)``.
    With ``modulating_aus`` the residual blocks' normalisations are AU-modulated (:class:`AUModulatedNorm`).
    """

    def __init__(self, in_channels: int, width: int, num_downsamples: int, num_res_blocks: int,
                 modulating_aus: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_norm_relu(in_channels, width, 7)]
        channels = width
        for _ in range(num_downsamples):
            layers.append(conv_norm_relu(channels, channels * 2, 4, stride=2))
            channels *= 2
        layers.extend(ResidualBlock(channels, modulating_aus) for _ in range(num_res_blocks))
        self.layers = AUSequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor, aus: torch.Tensor | None = None) -> torch.Tensor:
        """``aus``: ``(N, modulating_aus)``, needed only by an AU-modulated encoder."""
        return self.layers(x, aus)


def tile_aus(aus: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Repeat AU vectors over space so they can be concatenated to an image: ``(N, A)`` → ``(N, A, H, W)``."""
    return aus[:, :, None, None].expand(-1, -1, height, width)


def check_image(image: torch.Tensor, image_size: int, model_name: str) -> None:
    """Raise a ValueError unless ``image`` is ``(N, 3, image_size, image_size)``."""
    if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] != image_size or image.shape[3] != image_size:
        raise ValueError(
            f"{model_name} expects images of shape (N, 3, {image_size}, {image_size}) in [-1, 1], got "
            f"{tuple(image.shape)}. Crop and resize faces to the model's image_size first."
        )


def check_aus(aus: torch.Tensor, batch_size: int, num_aus: int, what: str) -> None:
    """Raise a ValueError unless ``aus`` is ``(batch_size, num_aus)``."""
    if aus.shape != (batch_size, num_aus):
        raise ValueError(f"{what} must have shape ({batch_size}, {num_aus}), got {tuple(aus.shape)}.")
