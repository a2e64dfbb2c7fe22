"""Building blocks shared by the DefGAN networks (GANimation's generator layout, paper appendix D.1)."""

from __future__ import annotations

import torch
from torch import nn


def conv_norm_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """Conv (no bias: InstanceNorm removes it) → InstanceNorm (affine) → ReLU, 'same'-style padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2, bias=False),
        nn.InstanceNorm2d(out_channels, affine=True),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """``x + (Conv3×3 → IN → ReLU → Conv3×3 → IN)(x)`` at constant width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_norm_relu(channels, channels, 3),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """Conv7×7 → ``num_downsamples`` × (Conv4×4 stride 2, doubling the width) → ``num_res_blocks`` residual blocks.

    Maps ``(N, in_channels, H, W)`` to ``(N, width · 2**num_downsamples, H / 2**num_downsamples, W / 2**num_downsamples)``.
    """

    def __init__(self, in_channels: int, width: int, num_downsamples: int, num_res_blocks: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_norm_relu(in_channels, width, 7)]
        channels = width
        for _ in range(num_downsamples):
            layers.append(conv_norm_relu(channels, channels * 2, 4, stride=2))
            channels *= 2
        layers.extend(ResidualBlock(channels) for _ in range(num_res_blocks))
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


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
