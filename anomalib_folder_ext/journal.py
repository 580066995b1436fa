"""What a run has finished, kept on disk as it goes, so an interrupted run resumes where it stopped.

Layout, inside the output dir::

    .journal/rank0.jsonl     one rank's append-only log: a header line with the run's settings,
    .journal/rank1.jsonl     then one line per finished image (its results.csv row, exact floats)
    .journal/finished.json   written last, once results.csv and the summary are in place

Rows are appended a batch at a time and flushed, so a process killed at any moment (even
``kill -9``) leaves every row it reported and at most one torn last line, which is ignored. A row
is written only after its files were renamed into place, and every file is written atomically,
so a row means its files are complete. Resuming also checks the files still exist.

The settings (checkpoint, precision, which files, colormap) must match to resume: maps from two
models never end up in one ``results.csv``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from anomalib_folder_ext.artifacts import display_name
from anomalib_folder_ext.errors import InputError
from anomalib_folder_ext.summary import ImageResult, read_results

JOURNAL_DIR = ".journal"
FINISHED_NAME = "finished.json"


class JournalMismatchError(InputError):
    """An output dir's journal was written with other settings; the message says which."""


def journal_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / JOURNAL_DIR


def names_digest(names: Sequence[str]) -> str:
    """A short fingerprint of a folder's image list: a finished run counts only for the same images."""
    return hashlib.sha1("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _row_json(row: ImageResult) -> str:
    values = {key: (None if isinstance(value, float) and math.isnan(value) else value) for key, value in asdict(row).items()}
    return json.dumps(values, separators=(",", ":"))


def _row_from_json(values: Mapping[str, object]) -> ImageResult:
    fixed = {key: (math.nan if value is None and key not in {"pred_label"} else value) for key, value in values.items()}
    return ImageResult(**fixed)


class Journal:
    """One rank's append-only log of finished images. The file is created at the first row.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> journal = Journal(out, rank=0, settings={"colormap": "jet"})
        >>> journal.append([ImageResult("a.png", npy="a_anomaly.npy", score=0.5)])
        >>> journal.close()
        >>> list(read_journal(out).rows)
        ['a.png']
    """

    def __init__(self, output_dir: str | Path, rank: int, settings: Mapping[str, object]) -> None:
        self.path = journal_dir(output_dir) / f"rank{rank}.jsonl"
        self.settings = dict(settings)
        self._handle: IO[str] | None = None

    def append(self, rows: Iterable[ImageResult]) -> None:
        lines = "".join(f"{_row_json(row)}\n" for row in rows)
        if not lines:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = self.path.stat().st_size if self.path.exists() else 0
            self._handle = self.path.open("a", encoding="utf-8")
            if size == 0:
                self._handle.write(json.dumps({"settings": self.settings}) + "\n")
            elif _last_byte(self.path) != b"\n":
                self._handle.write("\n")  # end the line a killed run left half-written
        self._handle.write(lines)
        self._handle.flush()  # to the OS: survives the process being killed

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1)


@dataclass
class JournalState:
    """What earlier runs in an output dir finished (the last row per image) and the settings they ran with."""

    rows: dict[str, ImageResult] = field(default_factory=dict)
    settings: list[tuple[Path, dict]] = field(default_factory=list)

    def complete(self, output_dir: str | Path) -> dict[str, ImageResult]:
        """The rows that need no redoing: ``ok``, with every file they list still on disk."""
        out = Path(output_dir)
        return {
            name: row
            for name, row in self.rows.items()
            if row.status == "ok" and all((out / file).is_file() for file in (row.npy, row.png) if file)
        }

    def check(self, current: Mapping[str, object]) -> None:
        """:class:`JournalMismatchError` unless every earlier run used ``current`` settings."""
        for path, saved in self.settings:
            changed = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
            if changed:
                key = changed[0]
                msg = (
                    f"{path.parent.parent}: its earlier run used {key} {saved.get(key)!r}, this one "
                    f"{current.get(key)!r}; resume only continues a run with the same settings: "
                    "choose another output_dir, or turn resume off to redo it"
                )
                raise JournalMismatchError(msg)


def read_journal(output_dir: str | Path) -> JournalState:
    """Every rank's rows and settings from earlier runs in ``output_dir``."""
    state = JournalState()
    for path in sorted(journal_dir(output_dir).glob("rank*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line a killed run left half-written: that image is simply done again
            if not isinstance(record, dict):
                continue
            if "settings" in record:
                state.settings.append((path, record["settings"]))
            else:
                row = _row_from_json(record)
                state.rows[row.image] = row
    return state


def reset(output_dir: str | Path) -> None:
    """Forget earlier runs (a run without resume starts from nothing)."""
    shutil.rmtree(journal_dir(output_dir), ignore_errors=True)


def mark_unfinished(output_dir: str | Path) -> None:
    (journal_dir(output_dir) / FINISHED_NAME).unlink(missing_ok=True)


def write_finished(output_dir: str | Path, record: Mapping[str, object]) -> None:
    """The last step of a folder: its results.csv and summary are complete."""
    from anomalib_folder_ext.artifacts import atomic_write

    atomic_write(journal_dir(output_dir) / FINISHED_NAME, (json.dumps(record, indent=1) + "\n").encode())


def read_finished(output_dir: str | Path) -> dict | None:
    try:
        return json.loads((journal_dir(output_dir) / FINISHED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def finished_run(output_dir: str | Path, settings: Mapping[str, object], names: Sequence[str]) -> dict | None:
    """The finished record when ``output_dir`` holds a complete run of exactly these images with
    these settings, every listed file still there; else ``None`` (the folder needs a run)."""
    record = read_finished(output_dir)
    if record is None or record.get("settings") != dict(settings) or record.get("images") != names_digest(names):
        return None
    out = Path(output_dir)
    try:
        rows = read_results(out)
    except (OSError, ValueError):
        return None
    if [row["image"] for row in rows] != [display_name(name) for name in names]:
        return None
    if not all((out / row[key]).is_file() for row in rows for key in ("npy", "png") if row.get(key)):
        return None
    return record

