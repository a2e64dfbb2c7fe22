"""Deformation grids: the one place that fixes the grid convention.

A grid is a float tensor ``(N, H, W, 2)`` holding, for every output pixel ``p``, the position
``G(p)`` to read the input from, as ``(x, y)`` in ``[-1, 1]`` with ``align_corners=True``: ``-1`` is
the centre of the first pixel and ``+1`` the centre of the last, so one pixel is ``2 / (size − 1)``.
This is the layout :func:`torch.nn.functional.grid_sample` takes. Warping is backward:
``warp(I, G)(p) = I(G(p))``, with border padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_grid(
    batch_size: int, height: int, width: int, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The grid that reads every pixel from itself.

    Returns:
        ``(batch_size, height, width, 2)`` in ``[-1, 1]``, ``(x, y)`` last.
    """
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1).expand(batch_size, height, width, 2)


def bounded_offset_grid(raw_offsets: torch.Tensor, max_offset: float) -> torch.Tensor:
    """Turn unbounded network outputs into a grid whose displacement never exceeds ``max_offset`` pixels.

    ``offset_px = max_offset · tanh(raw)``: a bound on the absolute displacement of each pixel, which is
    what the paper's "maximum offset of 5 pixels" states. (Deforming Autoencoders' integral-of-sigmoid
    form bounds local stretch instead; here folds and tears are discouraged by the grid regulariser's
    total variation and by the cycle's grid-composition loss.)

    Args:
        raw_offsets: ``(N, 2, H, W)`` any real values; channel 0 moves along x, channel 1 along y.
        max_offset: bound in pixels of the ``H × W`` image.

    Returns:
        ``(N, H, W, 2)`` grid with ``|G − Id| ≤ max_offset`` pixels in each axis.
    """
    return offset_grid(max_offset * torch.tanh(raw_offsets.permute(0, 2, 3, 1)))


def offset_grid(offsets_px: torch.Tensor) -> torch.Tensor:
    """The grid that reads each pixel from ``offsets_px`` pixels away (the inverse of :func:`grid_offsets_px`).

    Args:
        offsets_px: ``(N, H, W, 2)`` displacement in pixels, ``(x, y)`` last.

    Returns:
        ``(N, H, W, 2)`` grid in normalised coordinates.
    """
    batch_size, height, width, _ = offsets_px.shape
    pixel_to_normalised = offsets_px.new_tensor([2.0 / (width - 1), 2.0 / (height - 1)])
    base = identity_grid(batch_size, height, width, offsets_px.device, offsets_px.dtype)
    return base + offsets_px * pixel_to_normalised


def grid_offsets_px(grid: torch.Tensor) -> torch.Tensor:
    """Displacement ``G − Id`` of a grid, in pixels.

    Args:
        grid: ``(N, H, W, 2)`` in normalised coordinates.

    Returns:
        ``(N, H, W, 2)`` displacement in pixels, ``(x, y)`` last.
    """
    batch_size, height, width, _ = grid.shape
    normalised_to_pixel = grid.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return (grid - identity_grid(batch_size, height, width, grid.device, grid.dtype)) * normalised_to_pixel


def warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward warp ``Warp(G, I)(p) = I(G(p))``, bilinear, border padding.

    With the identity grid the input comes back up to float32 rounding of the normalised
    coordinates (below 1e-4 on ``[-1, 1]`` images, i.e. about 0.01 of a grey level).

    Args:
        image: ``(N, C, H, W)``.
        grid: ``(N, H', W', 2)`` in normalised coordinates.

    Returns:
        ``(N, C, H', W')``.
    """
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def compose_grids(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The grid of two successive warps: ``(outer ∘ inner)(p) = outer(inner(p))``.

    Warping by ``outer`` and then warping the result by ``inner`` reads the original image at
    ``outer(inner(p))``, so ``warp(warp(I, outer), inner) ≈ warp(I, compose_grids(outer, inner))``.
    For the cycle, ``compose_grids(G, G_cyc)`` must be the identity: the forward grid ``G`` is sampled
    as a two-channel image at the positions of the cycle's grid ``G_cyc``.

    Args:
        outer: ``(N, H, W, 2)`` the grid applied first to the image.
        inner: ``(N, H', W', 2)`` the grid applied second.

    Returns:
        ``(N, H', W', 2)``.
    """
    return warp(outer.permute(0, 3, 1, 2), inner).permute(0, 2, 3, 1)


def total_variation(field: torch.Tensor) -> torch.Tensor:
    """Squared total variation ``Σ (f[i+1, j] − f[i, j])² + (f[i, j+1] − f[i, j])²`` per sample.

    Args:
        field: ``(N, C, H, W)`` (an attention mask, or grid offsets moved channel-first).

    Returns:
        ``(N,)`` sums over channels and positions.
    """
    vertical = (field[:, :, 1:, :] - field[:, :, :-1, :]).pow(2).sum(dim=(1, 2, 3))
    horizontal = (field[:, :, :, 1:] - field[:, :, :, :-1]).pow(2).sum(dim=(1, 2, 3))
    return vertical + horizontal
