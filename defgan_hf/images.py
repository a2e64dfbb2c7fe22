"""Reading photos and converting them to and from the networks' convention.

The one place that turns any image file into upright 8-bit RGB, and RGB into float ``(N, 3, H, W)``
tensors in ``[-1, 1]`` and back. Light on purpose (Pillow and numpy only): the training data reader
runs it in DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps


def load_image(source: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """Open a photo as 8-bit RGB, upright.

    Applies the EXIF orientation; composites transparency (RGBA, LA, palette) onto white; converts
    greyscale, CMYK and other modes to RGB; rescales 16-bit and 32-bit greyscale to 8 bits (Pillow's own
    conversion would clip them at 255).

    Args:
        source: a file path, a PIL image, or an ``(H, W)`` / ``(H, W, 3)`` / ``(H, W, 4)`` uint8 or
            uint16 RGB(A) array.

    Raises:
        FileNotFoundError: if a path does not exist.
        PIL.UnidentifiedImageError: if a file is not an image Pillow can read.
        OSError: if an image file is truncated or corrupt.
    """
    if isinstance(source, np.ndarray):
        image = _array_to_image(source)
    elif isinstance(source, Image.Image):
        image = source
    else:
        image = Image.open(source)
        image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        full_scale = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / full_scale), 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "RGBa", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("RGB")


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype == np.uint16:
        array = (array.astype(np.float64) / 257.0).round().astype(np.uint8)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(
            f"Expected an (H, W), (H, W, 3) or (H, W, 4) uint8 or uint16 RGB(A) array, got {array.dtype} "
            f"{array.shape}; convert float images with (array * 255).round().astype(np.uint8)."
        )
    return Image.fromarray(np.ascontiguousarray(array))


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → ``(1, 3, H, W)`` float32 in ``[-1, 1]``."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1)[None] / 127.5 - 1.0


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` float in ``[-1, 1]`` → RGB PIL image (values clipped)."""
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"Expected a (3, H, W) or (1, 3, H, W) image tensor, got shape {tuple(tensor.shape)}.")
    array = ((tensor.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def read_face_crop(path: str | Path, resolution: int) -> torch.Tensor:
    """Read a face crop as the networks take it: centre-cropped to a square (faces are not squashed),
    resized with Lanczos filtering (antialiased).

    Returns:
        ``(3, resolution, resolution)`` float32 RGB in ``[-1, 1]``.

    Raises:
        OSError, ValueError, …: Pillow's errors on an unreadable file.
    """
    image = ImageOps.fit(load_image(path), (resolution, resolution), method=Image.Resampling.LANCZOS)
    return image_to_tensor(image)[0].contiguous()
