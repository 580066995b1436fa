"""Split a big folder of images into batch folders ``batch_01``, ``batch_02``, ... of a fixed size.

The plan is written first (``batches.csv``: image -> batch), then the files are linked, copied or
moved into place, so a split that was interrupted finishes when run again with the same
arguments, and a finished one changes nothing. Each batch also gets a small override config for
``anomalib predict --config configs/folder.yaml --config <that file>``.

The root is written like an output dir (:class:`~anomalib_folder_ext.outputs.owned.OwnedDir`): never
through a link, and a copy or a move to another file system lands under a temporary name first,
so a file under its final name is always complete; the source of a move is deleted only after.
"""

from __future__ import annotations

import csv
import errno
import filecmp
import io
import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_folder_ext.images.discover import (
    DEFAULT_EXTENSIONS,
    list_folder_images,
    natural_key,
)
from anomalib_folder_ext.errors import InputError, OutputDirError
from anomalib_folder_ext.outputs.owned import (
    OwnedDir,
    open_existing,
    relative_parts,
    temporary_name,
)

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


_BATCH_NAME = re.compile(r"batch_\d+")


def split_difference(earlier: Sequence[Placement], plan: Sequence[Placement]) -> str:
    """What differs between two splits, in the user's terms: the size, the images, or where one goes.

    Example:
        >>> split_difference(plan_split(["a", "b", "c"], 2), plan_split(["a", "b", "c"], 1))
        'batches of 2 images; this one: of 1'
        >>> split_difference(plan_split(["a", "b"], 2), plan_split(["a", "b", "c"], 2))
        '2 images; this one: 3 (c is new)'
    """
    sizes = [max(Counter(p.batch for p in placements).values()) for placements in (earlier, plan)]
    if sizes[0] != sizes[1] and len(earlier) > sizes[0]:
        return f"batches of {sizes[0]} images; this one: of {sizes[1]}"
    before, now = {p.image for p in earlier}, {p.image for p in plan}
    if before != now:
        what = f"{min(now - before, key=natural_key)} is new" if now - before else f"{min(before - now, key=natural_key)} is gone"
        return f"{len(earlier)} images; this one: {len(plan)} ({what})"
    moved = next(p for p, q in zip(earlier, plan, strict=True) if p != q)
    return f"{moved.image} is in {moved.batch}; this one puts it elsewhere"


def read_plan(root: OwnedDir | str | Path) -> list[Placement] | None:
    """The plan ``batches.csv`` in the split's root (``None`` when there is none); :class:`SplitError`
    naming the file when it is not a plan this command wrote, before anything is touched."""
    if not isinstance(root, OwnedDir):
        root = open_existing(root)
        if root is None:
            return None
    path = root.path / PLAN_NAME
    if root.lstat(PLAN_NAME) is None:
        return None
    try:
        text = root.read_bytes(PLAN_NAME).decode("utf-8")
    except OSError as exc:
        msg = f"{path}: cannot be read as a split plan ({exc.strerror or exc}; a link is never followed)"
        raise SplitError(msg) from None
    except UnicodeDecodeError:
        msg = f"{path}: not a split plan (not UTF-8 text); move it away or choose another --out"
        raise SplitError(msg) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames != ["image", "batch"]:
        msg = f"{path}: not a split plan (its columns are not image,batch); move it away or choose another --out"
        raise SplitError(msg)
    plan = []
    for line, row in enumerate(reader, 2):
        image, batch = row.get("image") or "", row.get("batch") or ""
        try:
            relative_parts(image)
        except OutputDirError:
            image = ""
        if not image or not _BATCH_NAME.fullmatch(batch) or None in row:
            msg = f"{path}: line {line} is not a split plan row (image, batch_NN); move it away or choose another --out"
            raise SplitError(msg)
        plan.append(Placement(image, batch))
    return plan


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


def _same_file(source: Path, root: OwnedDir, relative: str, mode: str) -> bool:
    """Whether ``relative`` in the root already is what placing ``source`` there in ``mode`` would make.

    For a move, a target whose source is still there with the very same bytes is a move that was
    interrupted after its copy: :func:`_place` finishes it by deleting the source.
    """
    target = root.real / relative
    found = root.lstat(relative)
    if mode == "symlink":
        return found is not None and target.is_symlink() and Path(os.readlink(target)) == source
    if not root.is_file(relative):
        return False
    if mode == "hardlink":
        return source.exists() and os.path.samefile(source, target)
    if mode == "copy":
        stat_source, stat_target = source.stat(), target.stat()
        return stat_source.st_size == stat_target.st_size and stat_source.st_mtime_ns == stat_target.st_mtime_ns
    if not source.exists() or os.path.samefile(source, target):
        return True  # moved
    return filecmp.cmp(source, target, shallow=False)  # copied to another file system, source not yet deleted


def _place(source: Path, root: OwnedDir, relative: str, mode: str) -> None:
    """Put one file in its batch folder, never through a link; a copy lands atomically (temporary
    name, then rename), and so does a move to another file system, whose source goes last."""
    try:
        with root.parent(relative, create=True) as (fd, name):
            if root.lstat(relative) is not None:  # only a finished copy of an interrupted move gets here
                os.unlink(source)
                return
            if mode == "hardlink":
                os.link(source, name, dst_dir_fd=fd)
            elif mode == "symlink":
                os.symlink(source, name, dir_fd=fd)
            elif mode == "move":
                try:
                    os.rename(source, name, dst_dir_fd=fd)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    _copy_in(source, fd, name)  # another file system: copy, rename, then delete the source
                    os.unlink(source)
            else:
                _copy_in(source, fd, name)
    except OSError as exc:
        hint = "; use --mode copy or symlink" if mode == "hardlink" else ""
        msg = f"{root.path / relative}: cannot {mode} {source} ({exc.strerror or exc}){hint}"
        raise SplitError(msg) from None


def _copy_in(source: Path, fd: int, name: str) -> None:
    """``source`` copied (bytes, mode, times) to ``name`` in the open folder ``fd``, under a temporary name first."""
    temporary = temporary_name(name)
    try:
        os.unlink(temporary, dir_fd=fd)  # an interrupted copy's leftover, by its exact name
    except FileNotFoundError:
        pass
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
    try:
        with source.open("rb") as reader, os.fdopen(handle, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()  # before the times are set: a later write would change them
            found = source.stat()
            os.fchmod(writer.fileno(), found.st_mode & 0o7777)
            os.utime(writer.fileno(), ns=(found.st_atime_ns, found.st_mtime_ns))
        os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=fd)
        except OSError:
            pass
        raise


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
    existing = open_existing(root)
    earlier = read_plan(existing) if existing is not None else None

    images = {path.as_posix() for path in _source_images(source, extensions, recursive, root, allow_empty=earlier is not None)}
    if earlier is not None:  # images an earlier --mode move took away still belong to the split
        images |= {p.image for p in earlier
                   if not (source / p.image).exists() and existing.is_file(f"{p.batch}/{p.image}")}
    plan = plan_split(sorted(images, key=natural_key), size)
    if not plan:
        msg = f"{source}: no images to split"
        raise SplitError(msg)

    if earlier is not None and earlier != plan:
        msg = f"{root}: already holds a different split ({PLAN_NAME}: {split_difference(earlier, plan)}); choose an empty --out"
        raise SplitError(msg)
    batches = list(dict.fromkeys(p.batch for p in plan))
    if existing is not None:
        _check_root(existing, batches, made_here=earlier is not None)

    todo = []
    for placement in plan:
        origin, relative = source / placement.image, f"{placement.batch}/{placement.image}"
        if existing is not None and existing.lstat(relative) is not None:
            if not _same_file(origin, existing, relative, mode):
                msg = f"{root / relative}: exists and is not {origin} ({mode}); choose an empty --out"
                raise SplitError(msg)
            if not (mode == "move" and origin.exists() and not os.path.samefile(origin, existing.real / relative)):
                continue  # in place; an interrupted move's finished copy still has its source to delete
        todo.append((origin, relative))

    with OwnedDir(root, create=True) as directory:
        _write_if_changed(directory, PLAN_NAME, plan_csv(plan))  # the plan first: an interrupted split resumes from it
        for origin, relative in todo:
            _place(origin, directory, relative, mode)
        counts = SplitResult(root, plan, len(todo)).batches
        for batch, count in counts.items():
            _write_if_changed(directory, f"{CONFIGS_DIR}/{batch}.yaml", override_yaml(root / batch, count, source, recursive))
    return SplitResult(root, plan, len(todo))


def _check_root(existing: OwnedDir, batches: list[str], made_here: bool) -> None:
    """A root this split writes into: no link where it writes, and (without a plan of its own) no
    batch folder or override config of someone else's."""
    for name in [PLAN_NAME, CONFIGS_DIR, *batches, *(f"{CONFIGS_DIR}/{batch}.yaml" for batch in batches)]:
        if existing.is_link(name):
            msg = f"{existing.path / name}: is a symbolic link; a split never writes through a link: remove it or choose another --out"
            raise SplitError(msg)
    if made_here:
        return
    for batch in batches:
        if existing.lstat(batch) is not None and existing.names(batch):
            msg = f"{existing.path / batch}: not empty and not made by this split (no {existing.path / PLAN_NAME}); choose an empty --out"
            raise SplitError(msg)
        config = f"{CONFIGS_DIR}/{batch}.yaml"
        if existing.lstat(config) is not None:
            msg = f"{existing.path / config}: not made by this split (no {existing.path / PLAN_NAME}), so it is not replaced; choose an empty --out"
            raise SplitError(msg)


def _source_images(source: Path, extensions: Sequence[str], recursive: bool, root: Path, allow_empty: bool) -> list[Path]:
    try:
        return list_folder_images(source, extensions, recursive, exclude=root)
    except InputError:
        if allow_empty and source.is_dir():
            return []  # everything moved out by an earlier --mode move
        raise


def _write_if_changed(directory: OwnedDir, relative: str, text: str) -> None:
    """Same content: leave the file alone (not even its modification time changes)."""
    data = text.encode()
    if directory.is_file(relative) and directory.read_bytes(relative) == data:
        return
    directory.write(relative, data)

