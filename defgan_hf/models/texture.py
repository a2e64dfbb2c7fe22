"""The texture generator G_Tex (GANimation's generator): colour map T and attention mask M."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..aus import NUM_AUS
from .blocks import AUSequential, Encoder, check_aus, check_image, conv_norm_relu, instance_norm, tile_aus
from .hub import HubModel


class TextureOutput(NamedTuple):
    """``color``: ``(N, 3, H, W)`` in ``[-1, 1]``; ``mask``: ``(N, 1, H, W)`` in ``[0, 1]``, 1 where T is used."""

    color: torch.Tensor
    mask: torch.Tensor


class TextureGenerator(nn.Module, HubModel):
    """``T, M = G_Tex(I, y)``: hallucinates the texture a warp cannot produce (teeth, shading, eyelids).

    Conv7×7 → downsampling convs → residual blocks → transposed convs back to full resolution, then
    two 7×7 heads: a colour map (tanh) and an attention mask (sigmoid). The final image is composed by
    :class:`~defgan_hf.DefGAN` as ``M·T + (1 − M)·I`` (the paper's convention: M selects the new texture).
    At the defaults it has ≈ 8.5 M parameters.

    Args:
        image_size: side of the square face crops it is trained on.
        num_aus: length of the AU vectors.
        width: channels after the first convolution; doubled by each downsampling.
        num_downsamples: stride-2 convolutions (and matching transposed convolutions).
        num_res_blocks: residual blocks at the bottleneck.
        au_modulation: also modulate the normalisations after the bottleneck by ``y`` (or ``y`` and
            ``Δ``) (:class:`~defgan_hf.models.blocks.AUModulatedNorm`); False is the paper's layout.
        upsampling: ``"transposed"`` (the paper's 4×4 transposed convolutions) or ``"bilinear"`` (bilinear
            upsampling + 3×3 convolution, which cannot leave the transposed convolutions' checkerboard).
        conditioning: ``"paper"`` (``y`` tiled) or ``"change"`` (``y`` and the AU change ``Δ = y − x``
            tiled: the network knows what changes, not only where the face should end up).
    """

    def __init__(self, image_size: int = 128, num_aus: int = NUM_AUS, width: int = 64, num_downsamples: int = 2,
                 num_res_blocks: int = 6, au_modulation: bool = False, upsampling: str = "transposed",
                 conditioning: str = "paper") -> None:
        super().__init__()
        if image_size % 2**num_downsamples:
            raise ValueError(f"image_size {image_size} must be divisible by 2**num_downsamples = {2**num_downsamples}.")
        self.image_size = image_size
        self.num_aus = num_aus
        self.au_modulation = au_modulation
        if upsampling not in ("transposed", "bilinear"):
            raise ValueError(f"upsampling must be 'transposed' or 'bilinear', got {upsampling!r}.")
        if conditioning not in ("paper", "change"):
            raise ValueError(f"conditioning must be 'paper' or 'change', got {conditioning!r}.")
        self.upsampling, self.conditioning = upsampling, conditioning
        conditioning_aus = num_aus if conditioning == "paper" else 2 * num_aus
        modulating_aus = conditioning_aus if au_modulation else 0
        self.encoder = Encoder(3 + conditioning_aus, width, num_downsamples, num_res_blocks, modulating_aus)
        layers: list[nn.Module] = []
        channels = self.encoder.out_channels
        for _ in range(num_downsamples):
            if upsampling == "transposed":
                layers += [
                    nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1, bias=False),
                    instance_norm(channels // 2, modulating_aus),
                    nn.ReLU(inplace=True),
                ]
            else:
                layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                           conv_norm_relu(channels, channels // 2, 3, modulating_aus=modulating_aus)]
            channels //= 2
        self.decoder = AUSequential(*layers)
        self.color_head = nn.Sequential(nn.Conv2d(channels, 3, 7, padding=3, bias=False), nn.Tanh())
        self.mask_head = nn.Sequential(nn.Conv2d(channels, 1, 7, padding=3, bias=False), nn.Sigmoid())

    def forward(self, image: torch.Tensor, target_aus: torch.Tensor,
                source_aus: torch.Tensor | None = None) -> TextureOutput:  # fmt: skip
        """
        Args:
            image: ``(N, 3, S, S)`` in ``[-1, 1]`` (the deformed face ``I*_y``), ``S = image_size``.
            target_aus: ``(N, num_aus)`` in ``[0, 1]``.
            source_aus: ``(N, num_aus)`` in ``[0, 1]``, needed with ``conditioning="change"``.

        Returns:
            :class:`TextureOutput` with ``color`` ``(N, 3, S, S)`` in ``[-1, 1]`` and ``mask`` ``(N, 1, S, S)`` in ``[0, 1]``.
        """
        check_image(image, self.image_size, type(self).__name__)
        check_aus(target_aus, image.shape[0], self.num_aus, "target_aus")
        aus = target_aus.to(image.dtype)
        if self.conditioning == "change":
            if source_aus is None:
                raise ValueError("This texture generator is conditioned on the AU change: pass source_aus too.")
            check_aus(source_aus, image.shape[0], self.num_aus, "source_aus")
            aus = torch.cat((aus, (target_aus - source_aus).to(image.dtype)), dim=1)
        x = torch.cat((image, tile_aus(aus, self.image_size, self.image_size)), dim=1)
        features = self.decoder(self.encoder(x, aus), aus)
        return TextureOutput(self.color_head(features), self.mask_head(features))

    def usage_example(self) -> str:
        s = self.image_size
        return (
            "import torch\nfrom defgan_hf import TextureGenerator, EXPRESSIONS\n\n"
            'texturer = TextureGenerator.from_pretrained("REPO_ID_OR_FOLDER", subfolder="texturer")\n'
            f"face = torch.rand(1, 3, {s}, {s}) * 2 - 1  # an aligned face crop in [-1, 1]\n"
            'color, mask = texturer(face, EXPRESSIONS["happy"][None])'
        )
