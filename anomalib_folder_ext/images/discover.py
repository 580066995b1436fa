"""Find the images of a folder in a stable, human order.

Order matters twice: results must be reproducible run to run, and with several ranks every
process must see the same list so that Lightning's sampler shards it consistently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path, PurePath

from anomalib_folder_ext.errors import FolderInputError

DEFAULT_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "bmp", "tif", "tiff")
# What marks a folder this tool wrote: an output dir holds .journal/, the output root of a
# multi-folder run all_batches.json. Their maps and reports are never read back as inputs.
RUN_RECORD_NAMES: tuple[str, ...] = (".journal", "all_batches.json")

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
    text = path if isinstance(path, str) else PurePath(path).as_posix()
    natural = tuple(
        tuple(int(chunk) if chunk.isdecimal() else chunk.casefold() for chunk in _DIGITS.split(part))
        for part in text.split("/")
    )
    return natural, text


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
    return [Path(name) for name in sorted(_iter_images(Path(folder), extensions, recursive), key=natural_key)]


def holds_run_records(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an output dir or output root of this tool (see :data:`RUN_RECORD_NAMES`)."""
    return any(os.path.lexists(os.path.join(folder, name)) for name in RUN_RECORD_NAMES)


def has_images(folder: str | Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS, recursive: bool = False) -> bool:
    """Whether :func:`discover_images` would find anything; stops at the first image."""
    return next(_iter_images(Path(folder), extensions, recursive), None) is not None


def _iter_images(root: Path, extensions: Sequence[str], recursive: bool) -> Iterator[str]:
    """Relative POSIX names of the images under ``root``. ``os.scandir`` and plain strings: 100,000
    files are listed in well under a second (``benchmarks/scale.py``); symlinked folders are not
    followed, as ``Path.rglob`` does not follow them, and this tool's output folders are not entered."""
    wanted = {f".{ext}" for ext in normalize_extensions(extensions)}
    pending = [("", os.fspath(root))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if recursive and entry.is_dir(follow_symlinks=False):
                    if not holds_run_records(entry.path):
                        pending.append((f"{prefix}{name}/", entry.path))
                    continue
                dot = name.rfind(".")
                if dot <= 0 or name[dot:].lower() not in wanted:
                    continue
                # A dangling symlink is listed too: it gets a failed row saying so, instead of vanishing.
                if entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path)):
                    yield f"{prefix}{name}"


@lru_cache(maxsize=4)
def _listing(folder: Path, extensions: tuple[str, ...], mtime_ns: int) -> tuple[Path, ...]:
    """One listing per folder and process while the folder is unchanged: the checks before the model
    loads and the datamodule see the same images, and a folder of 100,000 files is read once."""
    del mtime_ns  # part of the cache key: a file added, removed or renamed changes the folder's time
    return tuple(discover_images(folder, extensions))


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
    if holds_run_records(folder):
        msg = (f"folder_path {folder}: is an output folder of this tool (it holds {' or '.join(RUN_RECORD_NAMES)}); "
               "its maps are not images to predict: point folder_path at the images")
        raise FolderInputError(msg)
    extensions = normalize_extensions(extensions)
    try:
        if recursive:  # a change in a sub-folder leaves the folder's own time alone: listed each time
            images = discover_images(folder, extensions, recursive=True)
        else:
            images = list(_listing(folder.resolve(), tuple(extensions), folder.stat().st_mtime_ns))
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
