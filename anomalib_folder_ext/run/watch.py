"""A watch: anomalib's CLI builds the model, the watched datamodule and the Engine once, and each period's
``Trainer.predict`` streams what lands in the folder into one output dir (:mod:`~anomalib_folder_ext.data.stream`).

Without ``rotate`` there is one period: the watch runs until Ctrl-C, SIGTERM or :meth:`Watch.stop`. With
``rotate`` (hourly, daily, or a number of images) each period writes its own output dir under the output
dir (``2026-12-07_14``, ``2026-12-07``, ``part_0001``), finished like a batch run's (``results.csv``, the
summary, the finished record), so a week of watching is a set of ordinary output dirs. A restart resumes
the current period's dir, and what any earlier period predicted is not predicted again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_folder_ext.errors import FolderInputError, InputError, Terms
from anomalib_folder_ext.outputs import journal
from anomalib_folder_ext.outputs.result import FolderResult, WatchResult
from anomalib_folder_ext.run.anomalibcli import anomalib_cli, predict_arguments, the_writer

_PART = re.compile(r"part_(\d{4,})")
_FORMATS = {"hourly": "%Y-%m-%d_%H", "daily": "%Y-%m-%d"}


@dataclass(frozen=True)
class Period:
    """One rotation period: its output dir's name, and when (or after how many images) it ends."""

    name: str
    ends_at: float | None = None  # time.time() at which the next period starts
    images: int | None = None  # images it takes (rotate N)

    def ended(self, taken: int) -> bool:
        return (self.ends_at is not None and time.time() >= self.ends_at) or (
            self.images is not None and taken >= self.images)


def next_period(root: Path, rotate: str, now: float | None = None) -> Period:
    """The period a watch writes into now: by the clock (hourly, daily), or the first ``part_NNNN`` with room.

    Example:
        >>> import tempfile
        >>> next_period(Path(tempfile.mkdtemp()), "100").name
        'part_0001'
        >>> period = next_period(Path("out"), "hourly", now=time.mktime((2026, 12, 7, 14, 59, 0, 0, 0, -1)))
        >>> period.name, time.localtime(period.ends_at).tm_hour
        ('2026-12-07_14', 15)
    """
    if rotate in _FORMATS:
        now = time.time() if now is None else now
        start = time.localtime(now)
        fields = [start.tm_year, start.tm_mon, start.tm_mday, start.tm_hour if rotate == "hourly" else 0, 0, 0, 0, 0, -1]
        fields[3 if rotate == "hourly" else 2] += 1  # mktime normalises the 25th hour, the 32nd day
        return Period(time.strftime(_FORMATS[rotate], start), ends_at=time.mktime(tuple(fields)))
    size = int(rotate)
    parts = sorted(int(match.group(1)) for path in (root.iterdir() if root.is_dir() else ())
                   if (match := _PART.fullmatch(path.name)))
    number = parts[-1] if parts else 1
    held = len(journal.read_journal(root / f"part_{number:04d}").rows) if parts else 0
    if held >= size:
        number, held = number + 1, 0
    return Period(f"part_{number:04d}", images=size - held)


def done_elsewhere(root: Path, current: str) -> dict[str, tuple[int, ...] | None]:
    """image -> stamp of the rows every other period's dir under ``root`` holds: not predicted again."""
    done: dict[str, tuple[int, ...] | None] = {}
    for path in sorted(root.iterdir()) if root.is_dir() else ():
        if path.name != current and path.is_dir() and journal.journal_dir(path).is_dir():
            done.update((name, row.source) for name, row in journal.read_journal(path).rows.items())
    return done


class Watch:
    """anomalib's CLI objects for a watch config, and the periods it ran."""

    def __init__(self, args: Sequence[str], terms: Terms) -> None:
        from anomalib_folder_ext.data.stream import WatchedFolderDataModule

        self.cli = anomalib_cli(args)
        self.writer = the_writer(self.cli, required=True)
        self.writer.configure(terms=terms, resume=not self.writer.options.overwrite)
        self.data = self.cli.datamodule
        if not isinstance(self.data, WatchedFolderDataModule):
            raise InputError("a watch needs data: anomalib_folder_ext.data.WatchedFolderDataModule")
        self.root = Path(self.data.output_dir)
        self.rotate = self.data.watch_options.rotate
        self.periods: list[FolderResult] = []
        self.loaded = False

    def stop(self, reason: str = "stopped") -> None:
        """End the watch after the images it already took (from another thread)."""
        self.data.stop(reason)

    def run(self) -> WatchResult:
        try:
            while True:
                if self.rotate:
                    self._enter(next_period(self.root, self.rotate))
                self._predict()
                self.periods.append(self.writer.result)
                self.writer.configure(overwrite=False, resume=True)  # a later period resumes, never replaces
                if self.data.stopped or not self.rotate:
                    break
        finally:
            self.data.close()
        if self.data.watch_gone:
            raise FolderInputError(f"{self.data.stopped}: the watch stopped; its results are in {self.root}",
                                   option="folder_path")
        return WatchResult(self.root, tuple(self.periods), self.data.stopped or "")

    def _enter(self, period: Period) -> None:
        data = self.data
        data.output_dir = self.root / period.name
        data.relative_paths = []
        data.done.clear()
        data.done.update(done_elsewhere(self.root, period.name))
        data.until = lambda: period.ended(data.stream.taken if data.stream is not None else 0)
        data.period_images = period.images

    def _predict(self) -> None:
        if self.loaded:
            self.cli.engine.trainer.predict(self.cli.model, datamodule=self.data, return_predictions=False)
            return
        self.cli.engine.predict(**{**predict_arguments(self.cli), "return_predictions": False})
        self.loaded = True
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(name).setLevel(logging.WARNING)  # the second period's notices say nothing new


def run_watch(args: Sequence[str], terms: Terms) -> WatchResult:
    """Watch as the config ``args`` says until stopped; the periods' results."""
    return Watch(args, terms).run()
