"""A watch's results as they land, for the person at the line and the systems after it.

``results.csv`` grows by one line per image (each batch's lines in one append, after their journal rows,
so a reader tailing it never sees a row whose files are not in place); the summary, ``defective.csv`` and
the report are refreshed every ``summary_every`` seconds; the optional sinks (:mod:`~anomalib_folder_ext.outputs.sinks`)
get each row; and the console shows one live line (images/s, the last part and its decision, what is
waiting), with a warning when images arrive faster than they are predicted. At the end the writer writes
``results.csv`` whole, one row per image, as a batch run's.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from anomalib_folder_ext.callbacks.progress import ProgressLines, every_s
from anomalib_folder_ext.console import count, images_per_s, say, shown_dir
from anomalib_folder_ext.options import WatchOptions
from anomalib_folder_ext.outputs.artifacts import display_name
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.summary import CSV_NAME, ImageResult, csv_text

_TICK_S = 0.5


class QueueGrowth:
    """A warning when what waits keeps growing: the images arrive faster than the model predicts them.

    Example (8 more waiting every second, batches of 8):
        >>> growth = QueueGrowth(batch_size=8, window_s=10)
        >>> [line for second in range(12) if (line := growth.observe(float(second), 8 * second))][:1]
        ['warning: 72 images waiting, 72 more than 9 s ago: they arrive faster than they are predicted']
    """

    def __init__(self, batch_size: int, window_s: float = 10.0, quiet_s: float = 60.0) -> None:
        self.batch_size, self.window_s, self.quiet_s = batch_size, window_s, quiet_s
        self.seen: deque[tuple[float, int]] = deque()
        self.warned = -float("inf")

    def observe(self, now: float, waiting: int) -> str | None:
        self.seen.append((now, waiting))
        while self.seen and now - self.seen[0][0] > self.window_s:
            self.seen.popleft()
        then, before = self.seen[0]
        grown = waiting - before
        if now - then < self.window_s * 0.9 or waiting < 2 * self.batch_size or grown < self.batch_size:
            return None
        if now - self.warned < self.quiet_s:
            return None
        self.warned = now
        return (f"warning: {count(waiting)} images waiting, {count(grown)} more than {now - then:.0f} s ago: "
                "they arrive faster than they are predicted")


def live_line(label: str, rows: int, defects: int, failed: int, rate: float, last: ImageResult | None,
              waiting: int) -> str:
    """The console's one line while watching.

    Example:
        >>> last = ImageResult("cam/part_0042.png", score=0.731, decision="defect")
        >>> live_line("out/", 1234, 12, 1, 4.04, last, 0)
        'watching -> out/: 1,234 images (12 defect, 1 failed), 4.04 images/s, last cam/part_0042.png defect 0.731, 0 waiting'
    """
    tally = ", ".join(part for part in (f"{count(defects)} defect" if defects else "",
                                         f"{count(failed)} failed" if failed else "") if part)
    shown = ""
    if last is not None:
        verdict = "failed" if last.status != "ok" else f"{last.decision or 'score'} {last.score:.3g}"
        shown = f", last {display_name(last.image)} {verdict}"
    return (f"watching -> {label}: {count(rows)} images{f' ({tally})' if tally else ''}, {images_per_s(rate)}"
            f"{shown}, {count(waiting)} waiting")


class LiveResults:
    """One output dir's live files, sinks and console line while a watch runs into it."""

    def __init__(self, directory: OwnedDir, options: WatchOptions, folder: object, waiting: Callable[[], int],
                 refresh: Callable[[], None], batch_size: int) -> None:
        self.directory, self.options, self.folder = directory, options, folder
        self.waiting, self.refresh = waiting, refresh
        self.label = shown_dir(directory.path)
        self.rows = self.defects = self.failed = 0
        self.last: ImageResult | None = None
        self.recent: deque[tuple[float, int]] = deque()  # (time, rows) for the rate over the last seconds
        self.growth = QueueGrowth(batch_size)
        self.terminal = sys.stdout.isatty()
        self._csv = None
        self._sinks: list = []
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._changed = False
        self._lock = threading.Lock()

    def start(self, earlier: Sequence[ImageResult]) -> None:
        """``results.csv`` as the earlier rows left it (one row per image), then appended to; the sinks; the ticker."""
        from anomalib_folder_ext.outputs.sinks import Poster, SortInto

        self.directory.write(CSV_NAME, csv_text(earlier).encode())
        self._csv = self.directory.open_append(CSV_NAME)
        if self.options.sort_into:
            self._sinks.append(SortInto(self.options.sort_into, self.folder, move=self.options.sort_move))
        if self.options.post:
            self._sinks.append(Poster(self.options.post, warn=self.say))
        self._ticker = threading.Thread(target=self._tick, name="watch-live", daemon=True)
        self._ticker.start()

    def rows_done(self, rows: Sequence[ImageResult]) -> None:
        """Rows just journaled: their lines, their sinks, the counts."""
        if not rows:
            return
        self._csv.write(csv_text(rows, header=False))
        self._csv.flush()
        from anomalib_folder_ext.outputs.sinks import Poster, row_record

        for row in rows:
            for sink in self._sinks:
                if isinstance(sink, Poster):
                    sink.post(row_record(row, self.directory.path))
                elif (problem := sink.place(row)) is not None:
                    self.say(problem, error=True)
        with self._lock:
            self.rows += len(rows)
            self.defects += sum(row.decision == "defect" for row in rows)
            self.failed += sum(row.status != "ok" for row in rows)
            self.last, self._changed = rows[-1], True

    def say(self, line: str, error: bool = False) -> None:
        """A line above the live one."""
        if self.terminal:
            sys.stdout.write("\r\x1b[K")
        say(line, error=error)

    def _tick(self) -> None:
        every, last_line = every_s(), time.monotonic()
        refreshed = time.monotonic()
        while not self._stop.wait(_TICK_S):
            now = time.monotonic()
            waiting = self.waiting()
            warning = self.growth.observe(now, waiting)
            if warning:
                self.say(warning, error=True)
            line = live_line(self.label, self.rows, self.defects, self.failed, self._rate(now), self.last, waiting)
            if self.terminal:
                sys.stdout.write(f"\r{line}\x1b[K")
                sys.stdout.flush()
            elif every and now - last_line >= every:
                last_line = now
                say(line)
            if self._changed and now - refreshed >= self.options.summary_every:
                refreshed, self._changed = now, False
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - a view not refreshed is said; the watch goes on
                    self.say(f"warning: the summary was not refreshed: {exc}", error=True)

    def _rate(self, now: float) -> float:
        self.recent.append((now, self.rows))
        while len(self.recent) > 2 and now - self.recent[0][0] > 10.0:
            self.recent.popleft()
        then, before = self.recent[0]
        return (self.rows - before) / (now - then) if now > then else 0.0

    def close(self) -> None:
        """Stop the ticker (the end's summary is the writer's), deliver what the sinks hold, close the CSV."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
        if self.terminal:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
        for sink in self._sinks:
            if hasattr(sink, "close"):
                sink.close()
        if self._csv is not None:
            self._csv.close()
            self._csv = None


def run_lines(trainer: object, maps: object, options: object, checkpoint: str | None, clock: object,
              to_predict: int) -> ProgressLines | None:
    """What a run shows as it goes: a watch its live files and line (closed with ``maps``); a folder progress
    lines where the progress bar cannot draw (``None`` where it can)."""
    if not trainer.datamodule.streams:
        return ProgressLines.for_trainer(trainer, shown_dir(maps.directory.path), to_predict)
    watching(trainer, maps, options, checkpoint, clock)
    return None


def watching(trainer: object, maps: object, options: object, checkpoint: str | None, clock: object) -> LiveResults:
    """The live side of a watch's run into the writer's output dir, started: its first line said."""
    from anomalib_folder_ext.callbacks.finish import FolderFinish

    data, plan = trainer.datamodule, maps.plan
    finish = FolderFinish(options, maps.directory, plan, checkpoint, maps.thresholds, announce=False)
    live = LiveResults(maps.directory, data.watch_options, data.folder_path, data.stream.waiting,
                       lambda: finish.refresh(trainer, plan.earlier, dict(maps.rows), clock), data.batch_size)
    live.start([plan.earlier[name] for name in plan.names if name in plan.earlier])
    maps.listeners.append(live)
    clock.waited = lambda: data.stream.waited_s  # the rate of a watch is its busy time's
    wait = data.watch_options.max_wait_ms
    live.say(f"watching {data.folder_path} ({data.watch.kind}; batch_size {data.batch_size}, max_wait {wait} ms) -> "
             f"{live.label}: {count(len(plan.earlier))} images from earlier, {count(data.watch.waiting)} waiting; "
             "Ctrl-C or SIGTERM stops after the images in flight")
    return live
