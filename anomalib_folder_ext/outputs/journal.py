"""What a run has finished, kept on disk as it goes, so an interrupted run resumes where it stopped.

Layout, inside the output dir::

    .journal/owner.json      written first: this dir belongs to a run of this tool
    .journal/rank0.jsonl     one rank's append-only log: a header line with the run's settings,
    .journal/rank1.jsonl     then one line per finished image (its results.csv row, exact floats,
                             and the input file's stamp as it was read: :func:`file_stamp`)
    .journal/finished.json   written last, once results.csv and the summary are in place

Rows are appended a batch at a time and flushed, so a process killed at any moment (even
``kill -9``) leaves every row it reported and at most one torn last line, which is ignored. A row
is written only after its files were renamed into place, and every file is written atomically,
so a row means its files are complete.

Resume trusts nothing it reads (:func:`~anomalib_folder_ext.outputs.reuse.reusable_rows`): the settings, the checkpoint's content
among them, must match; a row is reused only when it names exactly the files this run would
write, those files are in place, and its image still has the recorded stamp.
Maps from two models, or of two versions of an image, never end up in one ``results.csv``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from anomalib_folder_ext.errors import InputError, option_hint
from anomalib_folder_ext.outputs.owned import DirView, OwnedDir, open_existing
from anomalib_folder_ext.outputs.runplan import FILE_KINDS
from anomalib_folder_ext.outputs.summary import ImageResult

JOURNAL_DIR = ".journal"
OWNER_NAME = "owner.json"
FINISHED_NAME = "finished.json"
TOOL = "anomalib-folder-ext"
_RANK_FILE = re.compile(r"rank(\d+)\.jsonl")


class JournalMismatchError(InputError):
    """An output dir's journal was written with other settings; the message says which."""


def journal_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / JOURNAL_DIR


def _rank_file(rank: int) -> str:
    return f"{JOURNAL_DIR}/rank{rank}.jsonl"


def names_digest(names: Sequence[str]) -> str:
    """A short fingerprint of a folder's image list: a finished run counts only for the same images."""
    return hashlib.sha1("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def file_stamp(path: str | Path) -> tuple[int, ...] | None:
    """``(size, mtime_ns, ctime_ns, inode)`` of an input file now (``None``: unreadable). A copy keeps size and mtime
    (``cp -p``, ``rsync -t``, an unpacked archive), never the change time and inode: the same ``stat`` gives them."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino)


def row_json(row: ImageResult) -> str:
    values = {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in asdict(row).items()}
    return json.dumps(values, separators=(",", ":"))


_FLOATS = ("score", "raw_min", "raw_mean", "norm_mean", "pred_score", "defect_fraction")
_TEXTS = ("image", "status", "error", "note", "decision", *FILE_KINDS)


def _row_from_json(values: Mapping[str, object]) -> ImageResult | None:
    """The row a line of ours holds; ``None`` for a line of any other shape."""
    try:
        if set(values) - set(ImageResult.__dataclass_fields__) or not isinstance(values.get("image"), str):
            return None
        fixed = dict(values)
        for key in _FLOATS:
            value = fixed.get(key)
            if value is None:
                fixed[key] = math.nan
            elif isinstance(value, bool) or not isinstance(value, int | float):
                return None
        if any(not isinstance(fixed.get(key, ""), str) for key in _TEXTS):
            return None
        if fixed.get("pred_label") not in {None, True, False} or any(
                fixed.get(key) is not None and type(fixed[key]) is not int for key in ("defect_area", "defect_regions")):
            return None
        source = fixed.get("source")
        if source is not None:
            if not (isinstance(source, list) and len(source) in {2, 4} and all(type(part) is int for part in source)):
                return None
            fixed["source"] = tuple(source)  # an older version's (size, mtime_ns) never equals a stamp now: redone
        return ImageResult(**fixed)
    except (TypeError, ValueError):
        return None


class Journal:
    """One rank's append-only log of finished images. The file is created at the first row.

    Example:
        >>> import tempfile
        >>> out = OwnedDir(tempfile.mkdtemp())
        >>> journal = Journal(out, rank=0, settings={"colormap": "jet"})
        >>> journal.append([ImageResult("a.png", npy="a_anomaly.npy", score=0.5)])
        >>> journal.close()
        >>> list(read_journal(out).rows)
        ['a.png']
    """

    def __init__(self, output_dir: OwnedDir, rank: int, settings: Mapping[str, object]) -> None:
        self.directory = output_dir
        self.name = _rank_file(rank)
        self.settings = dict(settings)
        self._handle: IO[str] | None = None

    def append(self, rows: Iterable[ImageResult]) -> None:
        lines = "".join(f"{row_json(row)}\n" for row in rows)
        if not lines:
            return
        if self._handle is None:
            found = self.directory.lstat(self.name)
            self._handle = self.directory.open_append(self.name)
            if found is None or found.st_size == 0:
                self._handle.write(json.dumps({"tool": TOOL, "settings": self.settings}) + "\n")
            elif self.directory.last_byte(self.name) != b"\n":
                self._handle.write("\n")  # end the line a killed run left half-written
        self._handle.write(lines)
        self._handle.flush()  # to the OS: survives the process being killed

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass
class JournalState:
    """What earlier runs in an output dir finished (the last row per image) and the settings they ran with."""

    rows: dict[str, ImageResult] = field(default_factory=dict)
    settings: list[tuple[str, dict]] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # lines or files that are not this tool's, for the warning

    def check(self, current: Mapping[str, object], where: str | Path = "", skip: Sequence[str] = ()) -> None:
        """:class:`JournalMismatchError` unless every earlier run used ``current`` settings (``skip``: not yet known)."""
        for _, saved in self.settings:
            changed = [key for key in sorted(set(saved) | set(current))
                       if saved.get(key) != current.get(key) and key not in skip]
            if changed:
                key = changed[0]
                was, now = saved.get(key), current.get(key)
                if key == "checkpoint":
                    what = (f"other weights (checkpoint content sha256 {str(was)[:12]}…, now {str(now)[:12]}…)"
                            if was else "a checkpoint it recorded no content hash of (an older version)")
                    detail = f"its earlier run used {what}"
                else:
                    detail = f"its earlier run used {key} {was!r}, this one {now!r}"
                msg = (
                    f"{where}: {detail}; resume only continues a run with the same settings: redo it with "
                    f"{option_hint('overwrite')}, or choose another output_dir"
                )
                raise JournalMismatchError(msg)


def _directory(output_dir: OwnedDir | str | Path) -> OwnedDir | None:
    return output_dir if isinstance(output_dir, OwnedDir) else open_existing(output_dir)


def rank_files(directory: DirView) -> list[str]:
    """The journal's per-rank logs (``rank<N>.jsonl``), in rank order."""
    try:
        present = directory.names(JOURNAL_DIR)
    except (OSError, InputError):
        return []
    ranks = sorted(int(match.group(1)) for name in present if (match := _RANK_FILE.fullmatch(name)))
    return [_rank_file(rank) for rank in ranks]


def read_journal(output_dir: OwnedDir | str | Path) -> JournalState:
    """Every rank's rows and settings from earlier runs in ``output_dir``; lines not of this tool are set aside."""
    state = JournalState()
    directory = _directory(output_dir)
    if directory is None:
        return state
    for name in rank_files(directory):
        try:
            lines = directory.read_text(name).splitlines()
        except OSError:
            state.foreign.append(f"{name}: not a file of this tool (a link, or unreadable)")
            continue
        header = _json(lines[0]) if lines else None
        if not (isinstance(header, dict) and header.get("tool") == TOOL and isinstance(header.get("settings"), dict)):
            if lines:
                state.foreign.append(f"{name}: not a journal of this tool (no settings line)")
            continue
        state.settings.append((name, header["settings"]))
        for line in lines[1:]:
            record = _json(line)
            if record is None:
                continue  # a line a killed run left half-written: that image is simply done again
            if isinstance(record, dict) and "settings" in record:
                state.settings.append((name, record["settings"]) if isinstance(record["settings"], dict) else (name, {}))
                continue
            row = _row_from_json(record) if isinstance(record, dict) else None
            if row is None:
                state.foreign.append(f"{name}: a line that is not a row of this tool")
                continue
            state.rows[row.image] = row
    return state


def _json(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def reset(directory: OwnedDir) -> None:
    """Forget earlier runs (a run without resume starts from nothing): the journal's own files, by name."""
    for name in [*rank_files(directory), f"{JOURNAL_DIR}/{FINISHED_NAME}"]:
        directory.remove(name)
        directory.remove_temporary(name)


def write_owner(directory: OwnedDir) -> str | None:
    """The first file of a run: the output dir is this tool's from now on (kept by every later run).
    Its name when this call wrote it; ``None`` when an earlier run had."""
    name = f"{JOURNAL_DIR}/{OWNER_NAME}"
    if directory.is_file(name):
        return None
    record = {"tool": TOOL, "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    directory.write(name, (json.dumps(record) + "\n").encode())
    return name


def has_record(directory: OwnedDir) -> bool:
    """Whether a run of this tool has written here: an owner record, a rank log or a finished record."""
    if directory.is_link(JOURNAL_DIR):
        return False
    return any(directory.is_file(f"{JOURNAL_DIR}/{name}") for name in (OWNER_NAME, FINISHED_NAME)) or bool(rank_files(directory))


def mark_unfinished(directory: OwnedDir) -> None:
    directory.remove(f"{JOURNAL_DIR}/{FINISHED_NAME}")


def write_finished(directory: OwnedDir, record: Mapping[str, object]) -> None:
    """The last step of a folder: its results.csv and summary are complete."""
    directory.write(f"{JOURNAL_DIR}/{FINISHED_NAME}", (json.dumps(record, indent=1) + "\n").encode())


def read_finished(output_dir: OwnedDir | str | Path) -> dict | None:
    directory = _directory(output_dir)
    if directory is None:
        return None
    try:
        record = json.loads(directory.read_text(f"{JOURNAL_DIR}/{FINISHED_NAME}"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def rewrite(directory: OwnedDir, settings: Mapping[str, object], rows: Iterable[ImageResult]) -> None:
    """Every row under one settings line, in rank 0's log (replaced atomically); then the other ranks' logs
    go. A relabel changes what decides the rows, not which images are done: interrupted between the two,
    the rows still say the same, and relabelling again makes the settings one."""
    lines = [json.dumps({"tool": TOOL, "settings": dict(settings)}), *(row_json(row) for row in rows)]
    directory.write(_rank_file(0), ("\n".join(lines) + "\n").encode())
    for name in rank_files(directory)[1:]:
        directory.remove(name)
