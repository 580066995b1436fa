"""Pure helpers for what lands on disk: output names, colour mapping, encoding (writing is :mod:`owned`)."""

from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path, PurePosixPath

import numpy as np

from anomalib_folder_ext.errors import InputError, OutputDirError
from anomalib_folder_ext.options import known_colormap

NPY_SUFFIX = "_anomaly.npy"
PNG_SUFFIX = "_anomaly.png"


def default_output_dir(folder: str | os.PathLike) -> Path:
    """``inference_results_<folder name>`` in the working directory, as the old script named it."""
    return Path(f"inference_results_{Path(folder).resolve().name}")


_CONTROL = {code: f"\\x{code:02x}" for code in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t", 127: "\\x7f"}


def display_name(name: str) -> str:
    """A file name as one line of valid UTF-8 text: bytes that are not UTF-8 (names from Windows
    shares) as ``\\xNN``, control characters (a newline) escaped, as ``ls -b`` shows them.

    Used for every name that lands in a text file (CSV, summary, report) and for output names,
    so the ``npy``/``png`` columns name the files exactly.

    Example:
        >>> display_name(os.fsdecode(b"caf\\xe9.png")), display_name("two\\nlines.png"), display_name("ok.png")
        ('caf\\\\xe9.png', 'two\\\\nlines.png', 'ok.png')
    """
    if name.isprintable():  # the usual name: nothing to escape (undecodable bytes and controls are not printable)
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace").translate(_CONTROL)


def output_stems(relative_paths: Sequence[PurePosixPath | str | os.PathLike]) -> list[PurePosixPath]:
    """One output stem per input, mirroring sub-folders, never two the same.

    ``a.png`` alone becomes ``a``; ``a.png`` next to ``a.jpg`` become ``a_png`` and ``a_jpg``, so
    neither overwrites the other. Clashes are judged case-insensitively, because the outputs may
    be copied to a case-insensitive disk (Windows, macOS). The result depends only on the list,
    so every rank of a multi-GPU run computes the same names.

    Example:
        >>> [str(s) for s in output_stems(["a.png", "a.jpg", "sub/b.bmp", "c.tif"])]
        ['a_png', 'a_jpg', 'sub/b', 'c']
    """
    paths = [PurePosixPath(display_name(Path(p).as_posix())) for p in relative_paths]
    by_stem: dict[str, list[int]] = defaultdict(list)
    for index, path in enumerate(paths):
        by_stem[str(path.with_suffix("")).casefold()].append(index)

    stems: list[PurePosixPath] = []
    for path in paths:
        plain = path.with_suffix("")
        clashing = len(by_stem[str(plain).casefold()]) > 1
        stems.append(plain.with_name(f"{plain.name}_{path.suffix.lstrip('.')}") if clashing else plain)

    # A renamed stem can still meet a real file's stem ("a_png.bmp"): number what remains.
    taken: set[str] = set()
    unique: list[PurePosixPath] = []
    for stem in stems:
        candidate, counter = stem, 1
        while str(candidate).casefold() in taken:
            counter += 1
            candidate = stem.with_name(f"{stem.name}_{counter}")
        taken.add(str(candidate).casefold())
        unique.append(candidate)
    return unique


@lru_cache(maxsize=8)
def colormap_lut(name: str = "jet") -> np.ndarray:
    """A (256, 3) uint8 table of a matplotlib colormap: one lookup per pixel, no figure per image."""
    rgba = known_colormap(name)(np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def colorize(levels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 image of 8-bit map levels (:func:`anomalib_folder_ext.outputs.maps.quantize`) through ``lut``.

    What a viewer shows for the palette PNG the writer stores.
    """
    return lut[np.asarray(levels, dtype=np.uint8)]


def blend_overlay(image: np.ndarray, levels: np.ndarray, lut: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The colour-mapped map laid over the image: ``(1 - alpha) * image + alpha * lut[levels]``, uint8 RGB.

    ``image`` is resized (bilinear) to the map's size when they differ.

    Example:
        >>> lut = np.array([[0, 0, 0]] * 255 + [[255, 0, 0]], dtype=np.uint8)
        >>> blend_overlay(np.full((1, 2, 3), 100, np.uint8), np.array([[0, 255]], np.uint8), lut)[0].tolist()
        [[50, 50, 50], [178, 50, 50]]
    """
    height, width = levels.shape
    if image.shape[:2] != (height, width):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    heat = colorize(levels, lut).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def encode_overlay(image: np.ndarray, fmt: str = "jpg", quality: int = 90) -> bytes:
    """JPEG (small, for looking at) or PNG (lossless) bytes of an RGB overlay."""
    from PIL import Image

    buffer = io.BytesIO()
    if fmt == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_png(image: np.ndarray, compress_level: int = 1, palette: np.ndarray | None = None) -> bytes:
    """PNG bytes of an RGB image, or of uint8 indices into ``palette`` ((256, 3) uint8).

    The colour-mapped maps are written as palette PNGs (map levels as indices, the colormap's
    table as palette): one byte per pixel instead of three, so
    encoding is about 4x faster and files are smaller, and every viewer shows exactly
    ``palette[index]``. Level 1 is several times faster than 6 at a modestly larger file
    (``benchmarks/throughput.py`` prints the levels).
    """
    from PIL import Image

    picture = Image.fromarray(image)
    if palette is not None:
        picture.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_mask(mask: np.ndarray, compress_level: int = 1) -> bytes:
    """A 1-bit PNG of a boolean mask (white: in the mask): OpenCV reads it as 0 / 255, PIL as ``True`` / ``False``.

    Example:
        >>> from PIL import Image
        >>> mask = np.array([[True, False], [False, True]])
        >>> (np.array(Image.open(io.BytesIO(encode_mask(mask)))) == mask).all()
        np.True_
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_npy(array: np.ndarray) -> bytes:
    """NPY bytes, readable with ``np.load``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def ensure_writable(directory: Path, create: bool = True) -> None:
    """Fail before the run starts, naming the directory, when results could not be saved.

    ``create=False`` only checks (the nearest existing folder must let it be created), so a check
    made before the model loads leaves nothing behind if the run then fails.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        msg = f"output_dir {directory}: is a file, not a folder"
        raise OutputDirError(msg)
    if not create:
        existing = next(parent for parent in (directory.absolute(), *directory.absolute().parents) if parent.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            where = "" if existing == directory.absolute() else f" (cannot be created in {existing})"
            msg = f"output_dir {directory}: not writable{where}"
            raise OutputDirError(msg)
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"output_dir {directory}: cannot be created ({exc.strerror or exc})"
        raise OutputDirError(msg) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        msg = f"output_dir {directory}: not writable"
        raise OutputDirError(msg)
