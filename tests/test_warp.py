import math

import pytest
import torch

from defgan_hf.warp import (
    bounded_offset_grid,
    compose_grids,
    grid_offsets_px,
    identity_grid,
    total_variation,
    warp,
)

# Identity sampling is exact up to float32 rounding of normalised coordinates: well below a grey level.
ROUNDING = 1e-4


def test_identity_grid_layout():
    grid = identity_grid(2, 5, 7)
    assert grid.shape == (2, 5, 7, 2)
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0]
    assert grid[0, -1, -1].tolist() == [1.0, 1.0]
    assert grid[0, 0, 1, 0] == pytest.approx(-1 + 2 / 6)  # x varies along the width
    assert grid[0, 1, 0, 1] == pytest.approx(-1 + 2 / 4)  # y varies along the height


@pytest.mark.parametrize("size", [(32, 32), (128, 128), (24, 40)])
def test_zero_offsets_return_the_input(size):
    image = torch.rand(2, 3, *size) * 2 - 1
    grid = bounded_offset_grid(torch.zeros(2, 2, *size), max_offset=5.0)
    assert torch.equal(grid, identity_grid(2, *size))
    assert (warp(image, grid) - image).abs().max() < ROUNDING


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, 3), (-4, 1)])
def test_constant_offset_moves_content_by_that_many_pixels(dx, dy):
    max_offset = 5.0
    image = torch.rand(1, 3, 40, 48)
    raw = torch.empty(1, 2, 40, 48)
    raw[:, 0] = math.atanh(dx / max_offset)
    raw[:, 1] = math.atanh(dy / max_offset)
    grid = bounded_offset_grid(raw, max_offset)
    assert torch.allclose(grid_offsets_px(grid), torch.tensor([float(dx), float(dy)]), atol=1e-4)
    warped = warp(image, grid)
    # Backward warp: output pixel (i, j) reads input pixel (i + dy, j + dx).
    rows = slice(max(0, -dy), 40 - max(0, dy))
    cols = slice(max(0, -dx), 48 - max(0, dx))
    src_rows = slice(rows.start + dy, rows.stop + dy)
    src_cols = slice(cols.start + dx, cols.stop + dx)
    assert torch.allclose(warped[..., rows, cols], image[..., src_rows, src_cols], atol=1e-4)


@pytest.mark.parametrize("max_offset", [1.0, 5.0])
def test_offset_bound_holds_for_huge_raw_outputs(max_offset):
    raw = torch.randn(2, 2, 32, 32) * 1e6
    offsets = grid_offsets_px(bounded_offset_grid(raw, max_offset))
    assert offsets.abs().max() <= max_offset + 1e-4
    assert offsets.abs().max() > max_offset * 0.99  # the bound is reached, not undershot


def smooth_displacement(height: int, width: int, amplitude_px: float) -> torch.Tensor:
    """A smooth (1, H, W, 2) displacement field in normalised units."""
    ys = torch.linspace(0, math.pi, height)[:, None]
    xs = torch.linspace(0, math.pi, width)[None, :]
    dx = amplitude_px * torch.sin(2 * xs) * torch.cos(ys) * 2 / (width - 1)
    dy = amplitude_px * torch.sin(ys) * torch.cos(xs) * 2 / (height - 1)
    return torch.stack((dx, dy), dim=-1)[None]


def test_composing_a_grid_with_its_inverse_gives_the_identity():
    height, width = 64, 64
    identity = identity_grid(1, height, width)
    displacement = smooth_displacement(height, width, amplitude_px=3.0)
    forward = identity + displacement
    # Inverse of p ↦ p + d(p): fixed point of q = p − d(q).
    inverse = identity.clone()
    for _ in range(30):
        inverse = identity - compose_grids(displacement, inverse)
    composed = compose_grids(forward, inverse)
    error_px = grid_offsets_px(composed).abs()
    interior = error_px[:, 4:-4, 4:-4]
    assert interior.max() < 0.02
    assert grid_offsets_px(compose_grids(forward, identity)).sub(grid_offsets_px(forward)).abs().max() < 1e-3


def test_composition_matches_warping_twice():
    height, width = 48, 48
    identity = identity_grid(1, height, width)
    first = identity + smooth_displacement(height, width, 2.0)
    second = identity + smooth_displacement(height, width, -1.5).flip(1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    image = torch.stack((torch.sin(3 * xs), torch.cos(2 * ys), xs * ys))[None]  # smooth: interpolation is accurate
    twice = warp(warp(image, first), second)
    once = warp(image, compose_grids(first, second))
    assert (twice - once)[..., 4:-4, 4:-4].abs().max() < 5e-3


def test_total_variation_by_hand():
    field = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])
    # vertical: (3-0)² + (5-1)² = 25; horizontal: (1-0)² + (5-3)² = 5
    assert total_variation(field).tolist() == [30.0]
    assert torch.all(total_variation(torch.ones(3, 2, 8, 8)) == 0)
