"""The discriminator D: a PatchGAN critic D_c and an AU regression head D_exp."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..aus import NUM_AUS
from .blocks import check_image
from .hub import HubModel


class DiscriminatorOutput(NamedTuple):
    """``critic``: ``(N, 1, S / 2**num_layers, S / 2**num_layers)`` unbounded WGAN scores per patch; ``aus``: ``(N, num_aus)`` regressed AUs."""

    critic: torch.Tensor
    aus: torch.Tensor


class Discriminator(nn.Module, HubModel):
    """``D_c(I), D_exp(I) = D(I)``: how real each patch looks, and which AUs the face shows.

    ``num_layers`` stride-2 Conv4×4 + LeakyReLU(0.01) layers from ``width`` channels, doubling each
    time, without normalisation (WGAN-GP penalises per-sample gradients, which batch statistics would
    mix). The critic head is a 3×3 convolution to one channel, a patch map; the AU head is a
    convolution covering the whole remaining map. ≈ 45 M parameters at the defaults.

    Without normalisation, PyTorch's default initialisation shrinks the activations about 2.5× per layer
    (the AU head's gradient starts ~15× smaller than with He initialisation), and the AU regression learned
    its labels half as fast: the trunk starts He-initialised for its LeakyReLU and the AU head at zero
    (:meth:`reset_parameters`), so the regression starts from 0, most AUs' value, instead of from noise as
    wide as the labels' spread.

    Args:
        image_size: side of the square face crops; must be divisible by ``2**num_layers``.
        num_aus: length of the AU vectors.
        width: channels of the first layer.
        num_layers: stride-2 layers.
    """

    def __init__(self, image_size: int = 128, num_aus: int = NUM_AUS, width: int = 64, num_layers: int = 6) -> None:
        super().__init__()
        if image_size % 2**num_layers:
            raise ValueError(f"image_size {image_size} must be divisible by 2**num_layers = {2**num_layers}.")
        self.image_size = image_size
        layers: list[nn.Module] = []
        in_channels, channels = 3, width
        for _ in range(num_layers):
            layers += [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            in_channels, channels = channels, channels * 2
        self.trunk = nn.Sequential(*layers)
        self.critic_head = nn.Conv2d(in_channels, 1, 3, padding=1, bias=False)
        self.au_head = nn.Conv2d(in_channels, num_aus, image_size // 2**num_layers, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He initialisation of the trunk (fan-in, LeakyReLU(0.01)) with zero biases, and a zero AU head; the
        critic head keeps PyTorch's default. Weights loaded by ``from_pretrained`` replace all of them."""
        for module in self.trunk:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.01, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.au_head.weight)

    def forward(self, image: torch.Tensor) -> DiscriminatorOutput:
        """
        Args:
            image: ``(N, 3, S, S)`` in ``[-1, 1]``, ``S = image_size``.

        Returns:
            :class:`DiscriminatorOutput`; ``aus`` is unbounded (a regression trained toward ``[0, 1]``).
        """
        check_image(image, self.image_size, type(self).__name__)
        features = self.trunk(image)
        return DiscriminatorOutput(self.critic_head(features), self.au_head(features).flatten(1))

    def usage_example(self) -> str:
        s = self.image_size
        return (
            "import torch\nfrom defgan_hf import Discriminator\n\n"
            'discriminator = Discriminator.from_pretrained("REPO_ID_OR_FOLDER", subfolder="discriminator")\n'
            f"face = torch.rand(1, 3, {s}, {s}) * 2 - 1  # an aligned face crop in [-1, 1]\n"
            "estimated_aus = discriminator(face).aus.clamp(0, 1)"
        )
