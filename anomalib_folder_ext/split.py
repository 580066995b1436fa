"""Split a big folder of images into batch folders ``batch_01``, ``batch_02``, ... of a fixed size.

The plan is written first (``batches.csv``: image -> batch), then the files are linked, copied or
moved into place, so a split that was interrupted finishes when run again with the same
arguments, and a finished one changes nothing. Each batch also gets a small override config for
``anomalib predict --config configs/folder.yaml --config <that file>``.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_folder_ext.artifacts import atomic_write
from anomalib_folder_ext.discover import DEFAULT_EXTENSIONS, list_folder_images, natural_key
from anomalib_folder_ext.errors import InputError

PLAN_NAME = "batches.csv"
CONFIGS_DIR = "configs"
MODES = ("hardlink", "copy", "symlink", "move")


class SplitError(InputError):
    """The split cannot go ahead; the message names the file or folder and the reason."""


@dataclass(frozen=True)
class Placement:
    image: str  # path relative to the source folder, and inside its batch folder
    batch: str


def batch_names(count: int) -> list[str]:
    """``batch_01`` ... with as many digits as the count needs (at least two), so they sort as text too.

    Example:
        >>> batch_names(3)
        ['batch_01', 'batch_02', 'batch_03']
        >>> batch_names(120)[-1]
        'batch_120'
    """
    width = max(2, len(str(count)))
    return [f"batch_{index:0{width}d}" for index in range(1, count + 1)]


def plan_split(images: Sequence[str], size: int) -> list[Placement]:
    """Consecutive runs of ``size`` images, in the order given (the natural order), one batch each.

    Example:
        >>> [(p.image, p.batch) for p in plan_split(["a.png", "b.png", "c.png"], 2)]
        [('a.png', 'batch_01'), ('b.png', 'batch_01'), ('c.png', 'batch_02')]
    """
    if size < 1:
        msg = f"--size {size}: must be at least 1"
        raise SplitError(msg)
    names = batch_names(-(-len(images) // size))
    return [Placement(image, names[index // size]) for index, image in enumerate(images)]


def plan_csv(plan: Sequence[Placement]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "batch"])
    writer.writerows((placement.image, placement.batch) for placement in plan)
    return buffer.getvalue()


def read_plan(path: Path) -> list[Placement]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [Placement(row["image"], row["batch"]) for row in csv.DictReader(handle)]


def override_yaml(batch_folder: Path, count: int, source: Path, recursive: bool) -> str:
    """The per-batch config: only what differs from ``configs/folder.yaml``."""
    lines = [
        f"# {batch_folder.name}: {count} images of {source}, made by `anomalib-folder split`.",
        "#   anomalib predict --config configs/folder.yaml --config <this file> --ckpt_path model.ckpt",
        "data:",
        "  init_args:",
        f"    folder_path: {batch_folder}",
    ]
    if recursive:
        lines.append("    recursive: true")
    return "\n".join(lines) + "\n"


def _same_file(source: Path, target: Path, mode: str) -> bool:
    """Whether ``target`` already is what placing ``source`` there in ``mode`` would make."""
    if mode == "symlink":
        return target.is_symlink() and Path(os.readlink(target)) == source
    if not target.is_file():
        return False
    if mode == "hardlink":
        return source.exists() and os.path.samefile(source, target)
    if mode == "copy":
        stat_source, stat_target = source.stat(), target.stat()
        return stat_source.st_size == stat_target.st_size and stat_source.st_mtime_ns == stat_target.st_mtime_ns
    return not source.exists() or os.path.samefile(source, target)  # move: already moved


def _place(source: Path, target: Path, mode: str) -> None:
    """Put one file in its batch folder; a copy lands atomically (temporary name, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if mode == "hardlink":
            os.link(source, target)
        elif mode == "symlink":
            os.symlink(source, target)
        elif mode == "move":
            shutil.move(source, target)
        else:
            partial = target.with_name(f".{target.name}.split.tmp")
            shutil.copy2(source, partial)
            os.replace(partial, target)
    except OSError as exc:
        hint = "; use --mode copy or symlink" if mode == "hardlink" else ""
        msg = f"{target}: cannot {mode} {source} ({exc.strerror or exc}){hint}"
        raise SplitError(msg) from None


@dataclass
class SplitResult:
    root: Path
    plan: list[Placement]
    placed: int  # files put in place by this call; 0 when everything was there already

    @property
    def batches(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for placement in self.plan:
            counts[placement.batch] = counts.get(placement.batch, 0) + 1
        return counts


def split_folder(
    source: str | Path,
    root: str | Path,
    size: int,
    mode: str = "hardlink",
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    recursive: bool = False,
) -> SplitResult:
    """Split ``source`` into ``root/batch_NN`` folders of ``size`` images; see the module doc.

    Example:
        >>> result = split_folder("/data/all", "/data/batches", size=10000)  # doctest: +SKIP
        >>> result.batches  # doctest: +SKIP
        {'batch_01': 10000, 'batch_02': 10000, 'batch_03': 2417}
    """
    if mode not in MODES:
        msg = f"--mode {mode}: choose one of {', '.join(MODES)}"
        raise SplitError(msg)
    source, root = Path(source).expanduser().resolve(), Path(root).expanduser().resolve()
    if root == source:
        msg = f"--out {root}: is the source folder itself; choose a new folder"
        raise SplitError(msg)
    plan_path = root / PLAN_NAME
    earlier = read_plan(plan_path) if plan_path.is_file() else None

    images = {path.as_posix() for path in _source_images(source, extensions, recursive, root, allow_empty=earlier is not None)}
    if earlier is not None:  # images an earlier --mode move took away still belong to the split
        images |= {p.image for p in earlier if not (source / p.image).exists() and (root / p.batch / p.image).exists()}
    plan = plan_split(sorted(images, key=natural_key), size)
    if not plan:
        msg = f"{source}: no images to split"
        raise SplitError(msg)

    if earlier is not None and earlier != plan:
        msg = (
            f"{root}: already holds a different split ({PLAN_NAME}: {len(earlier)} images in "
            f"{len({p.batch for p in earlier})} batch folders; this one: {len(plan)} in "
            f"{len({p.batch for p in plan})}); choose an empty --out"
        )
        raise SplitError(msg)
    if earlier is None:
        for batch in dict.fromkeys(p.batch for p in plan):
            folder = root / batch
            if folder.exists() and any(folder.iterdir()):
                msg = f"{folder}: not empty and not made by this split (no {plan_path}); choose an empty --out"
                raise SplitError(msg)

    todo = []
    for placement in plan:
        origin, target = source / placement.image, root / placement.batch / placement.image
        if target.exists() or target.is_symlink():
            if not _same_file(origin, target, mode):
                msg = f"{target}: exists and is not {origin} ({mode}); choose an empty --out"
                raise SplitError(msg)
            continue
        todo.append((origin, target))

    root.mkdir(parents=True, exist_ok=True)
    _write_if_changed(plan_path, plan_csv(plan))  # the plan first: an interrupted split resumes from it
    for origin, target in todo:
        _place(origin, target, mode)
    counts = SplitResult(root, plan, len(todo)).batches
    for batch, count in counts.items():
        _write_if_changed(root / CONFIGS_DIR / f"{batch}.yaml", override_yaml(root / batch, count, source, recursive))
    return SplitResult(root, plan, len(todo))


def _source_images(source: Path, extensions: Sequence[str], recursive: bool, root: Path, allow_empty: bool) -> list[Path]:
    try:
        return list_folder_images(source, extensions, recursive, exclude=root)
    except InputError:
        if allow_empty and source.is_dir():
            return []  # everything moved out by an earlier --mode move
        raise


def _write_if_changed(path: Path, text: str) -> None:
    """Same content: leave the file alone (not even its modification time changes)."""
    data = text.encode()
    if path.is_file() and path.read_bytes() == data:
        return
    atomic_write(path, data)

