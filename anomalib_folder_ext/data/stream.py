"""A watched folder as a stream of batches for ``Trainer.predict``: the model stays loaded, and each image
that lands goes through the same decode, model, maps, writer and journal as a batch run's.

``WatchedFolderDataModule`` is a :class:`~anomalib_folder_ext.data.datamodule.FolderDataModule` whose loader
never ends by itself: a thread takes the complete files (:mod:`~anomalib_folder_ext.images.watch`), up to
``batch_size`` of them, holding the first no longer than ``max_wait_ms`` for the rest, decodes them and
queues the batch while the model runs the one before. It ends when told (Ctrl-C or SIGTERM: what was taken
is still predicted and journaled), at the end of a rotation period, or when the folder is removed.

What an earlier watch into the same output dir finished is not predicted again; a file replaced under the
same name is, and its row says so.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

from anomalib_folder_ext.console import say
from anomalib_folder_ext.data.batch import FolderImageBatch, FolderImageItem
from anomalib_folder_ext.data.datamodule import FolderDataModule, FolderImageDataset
from anomalib_folder_ext.errors import FolderInputError, OutputDirError
from anomalib_folder_ext.images.discover import DEFAULT_EXTENSIONS, discover_images
from anomalib_folder_ext.images.decode import DEFAULT_MAX_PIXELS
from anomalib_folder_ext.images.watch import FolderWatch, passed_over
from anomalib_folder_ext.options import WatchOptions, WriterOptions
from anomalib_folder_ext.outputs import journal
from anomalib_folder_ext.outputs.runplan import OutputNames, stems_of_rows

_END = object()
REPLACED_NOTE = "replaced: predicted again"


class WatchedFolderDataModule(FolderDataModule):
    """Predict each image as it lands in ``folder_path``, with the model loaded once (``anomalib-folder watch``).

    The arguments are :class:`FolderDataModule`'s and the watch options
    (:class:`~anomalib_folder_ext.options.WatchOptions`: ``max_wait_ms``, ``poll``, ``settle_ms``,
    ``complete_timeout_s``, ``summary_every``, ``rotate``, ``sort_into``, ``sort_move``, ``post``).
    Files are decoded on one thread beside the model (``num_workers`` is not used).
    """

    def __init__(self, folder_path: str | Path, output_dir: str | Path | None = None,
                 image_size: tuple[int, int] | None = None, batch_size: int = 8, num_workers: int | None = None,
                 recursive: bool = False, extensions: list[str] | tuple[str, ...] = DEFAULT_EXTENSIONS,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, max_wait_ms: int = 0, poll: float | None = None,
                 settle_ms: int = 500, complete_timeout_s: float = 60.0, summary_every: float = 60.0,
                 rotate: str | None = None, sort_into: str | None = None, sort_move: bool = False,
                 post: str | None = None) -> None:
        super().__init__(folder_path, output_dir, image_size, batch_size, 0, recursive, extensions, max_pixels)
        self.watch_options = WatchOptions(max_wait_ms, poll, settle_ms, complete_timeout_s, summary_every, rotate,
                                          sort_into, sort_move, post)
        self.watch: FolderWatch | None = None  # started at the first setup, kept across rotation periods
        self.done: dict[str, tuple[int, ...] | None] = {}  # image -> its file's stamp when predicted
        self.known_stems: dict[str, str] = {}  # image -> the output stem its journal row names
        self.until: Callable[[], bool] | None = None  # a rotation period's end (set by the watch loop)
        self.stopped: str | None = None  # why the stream ended: a signal, the folder gone
        self.watch_gone = False  # the folder itself was removed
        self.period_images: int | None = None  # images the current rotation period still takes (rotate N)
        self.stream: ImageStream | None = None
        self._earlier_here: frozenset[str] = frozenset()  # the names this output dir's journal holds

    streams = True

    def setup(self, stage: str | None = None) -> None:
        """The earlier rows of this output dir first (journal order), then the folder's images not among them."""
        del stage
        if self.relative_paths:
            return
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            raise FolderInputError("a watch runs on one device (devices 1): the images arrive one stream",
                                   option="devices")
        if self.watch_options.rotate and self.until is None:
            raise FolderInputError("rotate: a new output dir per period needs anomalib-folder watch (or "
                                   "anomalib_folder_ext.watch_folder), which starts each period's predict",
                                   option="rotate")
        check_watch_dirs(self.folder_path, self.output_dir, self.watch_options.sort_into)
        earlier = journal.read_journal(self.output_dir).rows if self.output_dir.is_dir() else {}
        self.known_stems = stems_of_rows(earlier.values())
        self.done.update((name, row.source) for name, row in earlier.items())
        here = [path.as_posix() for path in discover_images(self.folder_path, self.extensions, self.recursive)]
        self.relative_paths = [Path(name) for name in [*earlier, *(name for name in here if name not in earlier)]]
        self._earlier_here = frozenset(earlier)

    def skip_images(self, names: frozenset[str]) -> None:
        """The rows the writer trusts (resume's checks): an earlier row it does not is predicted again."""
        super().skip_images(names)
        for name in self._earlier_here - names:
            self.done.pop(name, None)

    def output_names(self, options: WriterOptions) -> OutputNames:
        return OutputNames.for_stream(options, [path.as_posix() for path in self.relative_paths], self.known_stems)

    def nothing_waiting(self) -> bool:
        return self.stream is not None and self.stream.idle()

    def stop(self, reason: str) -> None:
        """End the stream after what it already took (from any thread)."""
        self.stopped = self.stopped or reason
        if self.stream is not None:
            self.stream.stop.set()

    def close(self) -> None:
        """Stop watching (the watch loop calls it after its last period; a plain run at teardown)."""
        if self.watch is not None:
            self.watch.stop()
            if passed := passed_over(self.watch.ignored, self.watch.deleted, self.watch.extensions):
                say(passed)
            self.watch = None

    def teardown(self, stage: str | None = None) -> None:
        if self.until is None:  # a plain ``anomalib predict``: one period, the watch ends with it
            self.close()

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        if self.watch is None:  # after the writer's checks: what it trusts is not predicted again
            options = self.watch_options
            self.watch = FolderWatch(self.folder_path, self.extensions, self.recursive, options.poll,
                                     options.settle_ms / 1000, options.complete_timeout_s, self.output_dir)
            self.watch.start(self.done)
        self.predict_data = dataset = FolderImageDataset(self.folder_path, [], self.resolve_image_size(), self.max_pixels)
        self.stream = ImageStream(self, dataset)
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")  # one process, see __len__
        trainer = getattr(self, "trainer", None)
        pin = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return DataLoader(self.stream, batch_size=None, num_workers=0, pin_memory=pin)


def check_watch_dirs(folder: Path, output_dir: Path, sort_into: str | None) -> None:
    """The output dir (and ``sort_into``) outside the watched folder: their own files would be watched."""
    if not folder.is_dir():
        raise FolderInputError(f"folder_path {folder}: no such folder to watch", option="folder_path")
    watched = folder.resolve()
    for name, path in (("output_dir", output_dir), ("sort_into", sort_into)):
        if path and Path(path).resolve().is_relative_to(watched):
            raise OutputDirError(f"{name} {path} is inside the watched folder {folder}: its files would be taken for "
                                 f"new images; choose a dir outside it", option=name)


class ImageStream(IterableDataset):
    """The batches of a watch, in the main process: decoding on one thread, the model on the main one."""

    def __init__(self, data: WatchedFolderDataModule, dataset: FolderImageDataset) -> None:
        super().__init__()
        self.data, self.dataset = data, dataset
        self.stop = threading.Event()
        self.batches: queue.Queue = queue.Queue(maxsize=2)
        self.taken = 0  # images taken from the folder
        self.queued = 0  # of them, decoded and waiting for the model
        self.waited_s = 0.0  # the model's waits for images yet to land, after its first batch: not busy time
        self._handed = False

    def __len__(self) -> int:
        """Unbounded; a length at all keeps Lightning from fetching a batch ahead, which would hold each batch
        until the next image arrives."""
        return sys.maxsize

    def waiting(self) -> int:
        """Images seen and not yet handed to the model."""
        watch = self.data.watch
        return (watch.waiting if watch is not None else 0) + self.queued

    def idle(self) -> bool:
        """Nothing decoded and waiting, nothing in the folder waiting: the writer may finish its files now."""
        watch = self.data.watch
        return self.batches.empty() and (watch is None or watch.ready == 0)  # one being written may take minutes

    def __iter__(self) -> Iterator[FolderImageBatch]:
        producer = threading.Thread(target=self._produce, name="watch-batches", daemon=True)
        with _graceful_stop(self.data):
            producer.start()
            try:
                while (batch := self._next()) is not _END:
                    self.queued -= len(batch.relative_path) + len(batch.failed or ())
                    yield batch
            finally:
                self.stop.set()
                producer.join(timeout=30)

    def _next(self) -> FolderImageBatch | object:
        idle, began = self._handed and self.idle(), time.perf_counter()
        batch = self.batches.get()
        if idle:
            self.waited_s += time.perf_counter() - began
        self._handed = True
        return batch

    def _produce(self) -> None:
        data, watch = self.data, self.data.watch
        options = data.watch_options
        try:
            while not self.stop.is_set() and not (data.until is not None and data.until()):
                limit = data.batch_size if data.period_images is None else min(data.batch_size,
                                                                               data.period_images - self.taken)
                ready = watch.take(limit, options.max_wait_ms / 1000, wait_s=0.25, stop=self.stop)
                if watch.gone:
                    data.stopped = data.stopped or f"{data.folder_path}: the watched folder was removed"
                    data.watch_gone = True
                    say(f"{data.stopped}: stopping the watch", error=True)
                    break
                items = [item for item in (self._read(entry.name, entry.timed_out) for entry in ready) if item]
                if items:
                    self.taken += len(items)
                    self.queued += len(items)
                    self.batches.put(self.dataset.collate(items))
        finally:
            self.batches.put(_END)

    def _read(self, name: str, timed_out: bool) -> FolderImageItem | None:
        """The file decoded, a failed item when it never completed, ``None`` when there is nothing to do:
        unchanged since it was predicted, or deleted before it was read."""
        path = self.data.folder_path / name
        stamp = journal.file_stamp(path)
        done = self.data.done
        if stamp is None:
            self.data.watch.deleted_before_read()
            return None
        if name in done and done[name] == stamp:
            return None
        if timed_out:
            timeout = self.data.watch_options.complete_timeout_s
            item = FolderImageItem(image=_NO_IMAGE, image_path=str(path), relative_path=name, original_size=(0, 0),
                                   error=f"still being written after {timeout:g} s (complete_timeout_s); it is "
                                         "predicted when it completes", source=stamp)
        else:
            item = self.dataset.read(Path(name))
            if item.error and journal.file_stamp(path) is None:
                self.data.watch.deleted_before_read()
                return None
        if done.get(name) is not None:
            item.note = "; ".join(part for part in (REPLACED_NOTE, item.note) if part)
        done[name] = stamp if not timed_out else None
        return item


_NO_IMAGE = torch.zeros((3, 0, 0), dtype=torch.uint8)


class _graceful_stop:  # noqa: N801 - used as a context manager, like contextlib's
    """Ctrl-C and SIGTERM end the stream after what it took (a second Ctrl-C stops at once); main thread only."""

    def __init__(self, data: WatchedFolderDataModule) -> None:
        self.data, self.saved = data, {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.saved[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        if self.data.stopped and signum == signal.SIGINT:
            previous = self.saved.get(signum)
            if callable(previous):
                previous(signum, frame)
            raise KeyboardInterrupt
        say(f"{name}: stopping the watch once the images already taken are written "
            f"({'Ctrl-C again stops at once' if signum == signal.SIGINT else 'SIGINT stops at once'})", error=True)
        self.data.stop(f"stopped by {name}")

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)

