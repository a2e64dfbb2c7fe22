"""Pictures of what DefGAN does: deformation fields, attention masks, AU vectors, sample grids.

Every function takes model-world tensors and returns images ``(N, 3, H, W)`` in ``[-1, 1]``, so they
can be tiled next to faces; :func:`to_pil` turns a tiling into a picture.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from PIL import Image

from .images import tensor_to_image
from .warp import grid_offsets_px, warp

if TYPE_CHECKING:
    from .models import DefGANOutput
    from .motion import MotionModel


def flow_to_color(grid: torch.Tensor, max_offset: float) -> torch.Tensor:
    """Colour a deformation grid by its displacement: hue = direction, brightness = length.

    Args:
        grid: ``(N, H, W, 2)`` in normalised coordinates.
        max_offset: displacement in pixels drawn at full brightness (the deformer's bound).

    Returns:
        ``(N, 3, H, W)`` in ``[-1, 1]``; black where nothing moves.
    """
    offsets = grid_offsets_px(grid.detach().float())
    hue = (torch.atan2(offsets[..., 1], offsets[..., 0]) / (2 * math.pi)) % 1.0
    value = (offsets.norm(dim=-1) / max_offset).clamp(0, 1)
    # HSV → RGB at full saturation: each channel is a clamped triangle wave of the hue.
    shifts = torch.tensor([0.0, 2.0 / 3.0, 1.0 / 3.0], device=grid.device)
    channel = (hue[:, None] + shifts[None, :, None, None]) % 1.0
    rgb = (6.0 * (channel - 0.5).abs() - 1.0).clamp(0, 1)
    return rgb * value[:, None] * 2.0 - 1.0


def mask_to_image(mask: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` attention mask in ``[0, 1]`` → ``(N, 3, H, W)`` grey image in ``[-1, 1]`` (white = new texture)."""
    return mask.detach().float().expand(-1, 3, -1, -1) * 2.0 - 1.0


def au_bars(aus: torch.Tensor, size: int) -> torch.Tensor:
    """Draw AU vectors as bar charts, one bar per AU in :data:`~defgan_hf.AU_NAMES` order.

    Args:
        aus: ``(N, A)`` in ``[0, 1]``.
        size: side of the square picture.

    Returns:
        ``(N, 3, size, size)`` in ``[-1, 1]``: light bars on a dark background.
    """
    aus = aus.detach().float().clamp(0, 1).cpu()
    num_aus = aus.shape[1]
    column = torch.arange(size) * num_aus // size  # which AU each pixel column shows
    within_slot = (torch.arange(size) * num_aus % size) / size  # 0 … 1 across each AU's slot
    gap = (within_slot < 0.15) | (within_slot > 0.85)  # space between neighbouring bars
    height = (aus[:, column] * size).round()  # (N, size)
    rows = torch.arange(size - 1, -1, -1)[None, :, None]  # bottom row first
    filled = (rows < height[:, None, :]) & ~gap[None, None, :]
    return filled.float()[:, None].expand(-1, 3, -1, -1) * 1.6 - 0.8


def to_pil(images: torch.Tensor, columns: int = 1) -> Image.Image:
    """Tile ``(N·columns, 3, H, W)`` images in ``[-1, 1]`` into rows of ``columns`` and return a PIL image."""
    count, channels, height, width = images.shape
    rows = math.ceil(count / columns)
    canvas = images.new_full((channels, rows * height, columns * width), -1.0)  # black where a row is short
    for index, image in enumerate(images.detach()):
        row, col = divmod(index, columns)
        canvas[:, row * height:(row + 1) * height, col * width:(col + 1) * width] = image
    return tensor_to_image(canvas)


def sample_grid(image: torch.Tensor, edit: DefGANOutput, target_aus: torch.Tensor, max_offset: float) -> Image.Image:
    """One row per face: input | deformed | mask | final | deformation field | target AUs.

    Args:
        image: ``(N, 3, S, S)`` inputs in ``[-1, 1]``.
        edit: the model's :class:`~defgan_hf.DefGANOutput` for them.
        target_aus: ``(N, 17)`` in ``[0, 1]``.
        max_offset: the deformer's bound in pixels (full brightness in the field column).
    """
    size = image.shape[-1]
    panels = [
        image.detach().float(),
        edit.deformed.detach().float(),
        mask_to_image(edit.mask),
        edit.image.detach().float(),
        flow_to_color(edit.grid, max_offset),
        au_bars(target_aus, size).to(image.device),
    ]
    rows = torch.stack(panels, dim=1).flatten(0, 1)  # (N · 6, 3, S, S), row-major
    return to_pil(rows, columns=len(panels))


def deformation_lines(image: torch.Tensor, grid: torch.Tensor, spacing: int = 8) -> torch.Tensor:
    """Draw a deformation as a lattice of lines carried along by the warp, over the (dimmed) image.

    The straight lattice is warped with the grid exactly as the face is, so bent lines show where and
    how far the face moves.

    Args:
        image: ``(N, 3, S, S)`` in ``[-1, 1]``, the face the grid deforms.
        grid: ``(N, S, S, 2)``.
        spacing: pixels between lattice lines.

    Returns:
        ``(N, 3, S, S)`` in ``[-1, 1]``: yellow lines on the face at half brightness.
    """
    size = image.shape[-1]
    on_line = (torch.arange(size, device=image.device) % spacing) == spacing // 2
    lattice = (on_line[None, :] | on_line[:, None]).to(image.dtype)[None, None].expand(image.shape[0], 1, -1, -1)
    lines = warp(lattice, grid.to(image.dtype))
    yellow = torch.tensor([1.0, 0.9, 0.1], device=image.device, dtype=image.dtype)[None, :, None, None]
    dimmed = (image.detach().float() + 1) / 4  # [0, 0.5]: lines stand out on any face
    return (dimmed * (1 - lines) + yellow * lines) * 2 - 1


def difference_heatmap(before: torch.Tensor, after: torch.Tensor, full_scale: float = 0.5) -> torch.Tensor:
    """Where and how much an edit changed the image, black (no change) → red → yellow → white.

    Args:
        before, after: ``(N, 3, H, W)`` in ``[-1, 1]``.
        full_scale: mean absolute channel difference (in ``[-1, 1]`` units) shown as white.

    Returns:
        ``(N, 3, H, W)`` in ``[-1, 1]``.
    """
    heat = ((after.detach().float() - before.detach().float()).abs().mean(dim=1, keepdim=True) / full_scale).clamp(0, 1)
    rgb = torch.cat(((heat * 3).clamp(0, 1), (heat * 3 - 1).clamp(0, 1), (heat * 3 - 2).clamp(0, 1)), dim=1)
    return rgb * 2 - 1


def motion_figure(motion: MotionModel, scale: int = 3, columns: int = 6) -> Image.Image:
    """The motion model drawn: one panel per AU, arrows from the mean face's landmarks to where the AU moves them.

    Each arrow is the landmark's motion in an edit of the AU from 0 to 1 (:meth:`MotionModel.au_motion`),
    drawn at its true length in pixels of the crop, enlarged ``scale`` times with the face; AUs the data
    could not support are marked as such, "FACS" where they move as FACS describes them.

    Args:
        motion: a fitted :class:`~defgan_hf.motion.MotionModel`.
        scale: panel pixels per crop pixel.
        columns: panels per row.

    Returns:
        An RGB picture.
    """
    import cv2
    import numpy as np

    from .aus import AU_FACS_NAMES, AU_NAMES

    size = motion.image_size * scale
    points = motion.mean_landmarks.numpy() * scale
    rows = math.ceil(len(AU_NAMES) / columns)
    prior = motion.prior_aus
    sheet = np.full((rows * (size + 24), columns * size, 3), 255, dtype=np.uint8)
    for index, name in enumerate(AU_NAMES):
        panel = np.full((size, size, 3), 255, dtype=np.uint8)
        for x, y in points:
            cv2.circle(panel, (round(x), round(y)), 1, (170, 170, 170), -1, cv2.LINE_AA)
        arrows = motion.au_motion(name).numpy() * scale
        label = f"{name} {AU_FACS_NAMES[name]}"
        if motion.supported[index] < 0.5:
            label += " (FACS)" if name in prior else " (no data)"
        for (x, y), (dx, dy) in zip(points, arrows):
            if math.hypot(dx, dy) >= 0.25 * scale:
                cv2.arrowedLine(panel, (round(x), round(y)), (round(x + dx), round(y + dy)), (200, 30, 30), 1,
                                cv2.LINE_AA, tipLength=0.3)  # fmt: skip
        row, column = divmod(index, columns)
        top, left = row * (size + 24), column * size
        sheet[top + 24 : top + 24 + size, left : left + size] = panel
        cv2.putText(sheet, label, (left + 4, top + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return Image.fromarray(sheet)
