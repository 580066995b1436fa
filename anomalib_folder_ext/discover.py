"""Find the images of a folder in a stable, human order.

Order matters twice: results must be reproducible run to run, and with several ranks every
process must see the same list so that Lightning's sampler shards it consistently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePath

from anomalib_folder_ext.errors import FolderInputError

DEFAULT_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "bmp", "tif", "tiff")

_DIGITS = re.compile(r"(\d+)")


def normalize_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """Lower-case extensions without the leading dot, so ``".PNG"`` and ``"png"`` mean the same."""
    cleaned = tuple(dict.fromkeys(ext.strip().lstrip(".").lower() for ext in extensions if ext.strip(". ")))
    if not cleaned:
        msg = "extensions is empty: name at least one image extension, e.g. png"
        raise FolderInputError(msg)
    return cleaned


def natural_key(path: PurePath | str) -> tuple:
    """Sort key that puts ``img2`` before ``img10`` and compares folders part by part.

    Case is ignored first and used only to break ties, so the order is the same on every OS.
    """
    parts = PurePath(path).parts
    natural = tuple(
        tuple(int(chunk) if chunk.isdigit() else chunk.casefold() for chunk in _DIGITS.split(part)) for part in parts
    )
    return natural, str(path)


def discover_images(
    folder: str | Path,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    recursive: bool = False,
) -> list[Path]:
    """Return image paths relative to ``folder``, naturally sorted.

    Hidden files and folders (``.DS_Store``, ``._x.png`` from macOS, ``.cache/``) are skipped:
    they are never the user's images.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ["img10.png", "img2.JPG", "notes.txt"]:
        ...     _ = (root / name).write_bytes(b"")
        >>> [str(p) for p in discover_images(root)]
        ['img2.JPG', 'img10.png']
    """
    return sorted(_iter_images(Path(folder), extensions, recursive), key=natural_key)


def has_images(folder: str | Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS, recursive: bool = False) -> bool:
    """Whether :func:`discover_images` would find anything; stops at the first image."""
    return next(_iter_images(Path(folder), extensions, recursive), None) is not None


def _iter_images(root: Path, extensions: Sequence[str], recursive: bool) -> Iterator[Path]:
    wanted = {f".{ext}" for ext in normalize_extensions(extensions)}
    for path in root.rglob("*") if recursive else root.iterdir():
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in wanted and path.is_file():
            yield relative


def list_folder_images(
    folder: str | Path,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    recursive: bool = False,
    exclude: str | Path | None = None,
) -> list[Path]:
    """:func:`discover_images`, or a :class:`FolderInputError` naming the folder and the problem.

    ``exclude`` (the output dir) is never read back when it sits inside ``folder``.
    """
    folder = Path(folder)
    if not folder.exists():
        msg = f"folder_path {folder}: no such folder"
        raise FolderInputError(msg)
    if not folder.is_dir():
        msg = f"folder_path {folder}: not a folder"
        raise FolderInputError(msg)
    extensions = normalize_extensions(extensions)
    try:
        images = discover_images(folder, extensions, recursive)
    except PermissionError as exc:
        msg = f"folder_path {folder}: cannot be read ({exc.strerror})"
        raise FolderInputError(msg) from None
    if exclude is not None:
        try:
            inside = Path(exclude).resolve().relative_to(folder.resolve()).parts
        except ValueError:
            inside = None
        if inside:
            images = [path for path in images if path.parts[: len(inside)] != inside]
    if not images:
        where = "or its sub-folders " if recursive else ""
        msg = (
            f"folder_path {folder}: no images found in it {where}"
            f"(extensions searched: {', '.join(extensions)}, any letter case)"
        )
        raise FolderInputError(msg)
    return images
