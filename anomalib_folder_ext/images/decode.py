"""One image file to the ``uint8`` RGB pixels the model starts from, with notes on what changed on
the way in and, for a file that cannot be read, the reason in one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

# Our own ``max_pixels`` replaces Pillow's decompression-bomb check, which only warns below twice
# its limit (a 13000 x 13000 PNG took 3.8 GB) and would print that warning from every worker.
PILImage.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 100_000_000  # 10,000 x 10,000: above any camera frame, about 300 MB decoded
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_WIDE_MODES = {"I": "32-bit integer", "F": "32-bit float"}  # Pillow's 32-bit grey modes


def decode_rgb(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The file as an (H, W, 3) ``uint8`` array: the pixels anomalib's ``read_image`` starts from."""
    return decode_image(path, max_pixels)[0]


def decode_image(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """The file as (H, W, 3) ``uint8`` RGB, and notes on what was changed on the way in.

    The pixels are those anomalib's ``read_image`` (``convert("RGB")``) gives, except where Pillow
    would clip grey of more than 8 bits to white: 16-bit grey is scaled to 8 bits (``/ 257``);
    32-bit integer or float grey, whose range no format states, is scaled from its own min..max
    (the note gives that range). Raises ``ValueError`` for an image of more than ``max_pixels``
    before decoding it.
    """
    notes: list[str] = []
    with PILImage.open(path) as picture:
        width, height = picture.size
        if max_pixels is not None and width * height > max_pixels:
            msg = f"{width} x {height} = {width * height:,} pixels, more than max_pixels {max_pixels:,}"
            raise ValueError(msg)
        frames = getattr(picture, "n_frames", 1)
        if frames > 1:
            notes.append(f"first of {frames} pages")
        orientation = picture.getexif().get(0x0112)
        if orientation not in {None, 1}:
            notes.append(f"EXIF orientation {orientation} not applied (pixels as stored)")
        if "A" in picture.mode or "transparency" in picture.info:
            notes.append("alpha dropped")
        sixteen_in_i = picture.mode == "I" and any(";16" in str(tile.args) for tile in picture.tile[:1])
        if picture.mode in _SIXTEEN_BIT_MODES or sixteen_in_i:
            notes.append("16-bit scaled to 8")
            grey = np.asarray(picture, dtype=np.float32)
            level = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
            return np.repeat(level[..., None], 3, axis=2), notes
        if picture.mode in _WIDE_MODES:
            level, low, high = _own_range_to_8_bits(np.asarray(picture, dtype=np.float64))
            notes.append(f"{_WIDE_MODES[picture.mode]} scaled from its own range {low:g}..{high:g} to 8 bits")
            return np.repeat(level[..., None], 3, axis=2), notes
        if any(";16" in str(tile.args) for tile in picture.tile[:1]):
            notes.append("16-bit scaled to 8")  # 16-bit RGB: Pillow keeps the high byte
        return np.array(picture.convert("RGB")), notes  # a writable copy: torch.from_numpy needs one


def _own_range_to_8_bits(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``values`` scaled linearly from their finite min..max to 0..255 (all 0 when flat); and that range."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    spread = high - low
    scaled = np.where(np.isfinite(values), values - low, 0.0) * (255.0 / spread if spread > 0 else 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), low, high


def failure_reason(path: Path, exc: Exception) -> str:
    """Why a file could not be read, in one line (the path is the row's own)."""
    if isinstance(exc, FileNotFoundError) and path.is_symlink():
        return f"dangling symlink: its target {os.readlink(path)} does not exist"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}".replace(str(path), path.name).replace("\n", " ")  # the row names the file
