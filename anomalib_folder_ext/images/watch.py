"""Which files of a watched folder are complete, and when: the images a camera or a PLC drops there.

A file is read only once it is whole. With inotify (Linux) that is its close after writing, or its
arrival by rename (the usual way cameras publish: write ``x.tmp``, rename to ``x.png``); a file
that arrives whole from another folder (no open for writing follows its creation) is ready at once.
Polling (``poll``: network shares, where inotify sees nothing) has no such events: a file is ready
when its size and modification time stay the same for ``settle_s``. The files already there when
the watch starts are judged the same way. A file that never completes is handed over as timed out
after ``complete_timeout_s``, so it gets a failed row instead of waiting for ever; written again
later, it is ready again.

Events come from ``watchdog``'s observer thread; the consumer calls :meth:`FolderWatch.take`,
which also runs the checks that need time to pass (stability, timeouts, the folder still there).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_folder_ext.console import counted
from anomalib_folder_ext.errors import FolderInputError
from anomalib_folder_ext.images.discover import discover_images, normalize_extensions

_GRACE_S = 0.05  # a creation followed by no open for writing within this: the file arrived whole
_CLOSE, _STABLE = "close", "stable"  # how a pending file completes


@dataclass
class Ready:
    """A file to predict: its name relative to the folder, and whether it timed out instead of completing."""

    name: str
    since: float  # when it was seen complete (or timed out), time.monotonic()
    timed_out: bool = False


@dataclass
class _Pending:
    first: float  # when it was first seen
    changed: float  # when its stamp last changed
    stamp: tuple[int, int] | None
    rule: str  # _CLOSE: wait for the close after writing; _STABLE: for a stamp that stays
    opened: bool = False
    timed_out: bool = False  # handed over once as timed out; still watched, taken again when complete


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_size, found.st_mtime_ns)


def passed_over(ignored: int, deleted: int, extensions: Sequence[str]) -> str:
    """What a watch gave no row, for its last lines: ``""`` when nothing.

    Example:
        >>> passed_over(3, 1, ["png"])
        'no row for 3 files that are not images (extensions png) nor for 1 image deleted before it was read'
        >>> passed_over(1, 0, ["png", "jpg"]), passed_over(0, 0, ["png"])
        ('no row for 1 file that is not an image (extensions png, jpg)', '')
    """
    parts = [f"{counted(ignored, 'file')} that {'is not an image' if ignored == 1 else 'are not images'} "
             f"(extensions {', '.join(extensions)})" if ignored else "",
             f"{counted(deleted, 'image')} deleted before {'it was' if deleted == 1 else 'they were'} read"
             if deleted else ""]
    return f"no row for {' nor for '.join(part for part in parts if part)}" if any(parts) else ""


class FolderWatch:
    """The complete files of ``folder`` as they land; see the module doc.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.png").write_bytes(b"not yet an image")
        >>> watch = FolderWatch(folder, ["png"], poll=0.05, settle_s=0.05)
        >>> watch.start()
        >>> [ready.name for ready in watch.take(limit=8, max_wait_s=0.0, wait_s=2.0)]
        ['a.png']
        >>> watch.stop()
    """

    def __init__(self, folder: str | Path, extensions: Sequence[str], recursive: bool = False, poll: float | None = None,
                 settle_s: float = 0.5, complete_timeout_s: float = 60.0, exclude: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser()
        self.extensions = normalize_extensions(extensions)
        self.recursive, self.poll, self.settle_s, self.complete_timeout_s = recursive, poll, settle_s, complete_timeout_s
        self.exclude = Path(exclude).resolve() if exclude else None
        self.gone = False  # the folder itself was removed
        self.ignored = 0  # files that are not images (by extension), counted
        self.deleted = 0  # images deleted before they were complete
        self._pending: dict[str, _Pending] = {}
        self._ready: OrderedDict[str, Ready] = OrderedDict()
        self._lock = threading.Condition()
        self._observer = None
        self._checked = self._stated = 0.0

    @property
    def kind(self) -> str:
        """How files are noticed, for the first line."""
        return f"polling every {self.poll:g} s" if self.poll else "inotify" if _inotify() else "file events"

    @property
    def ready(self) -> int:
        """Files complete and not yet taken."""
        with self._lock:
            return len(self._ready)

    @property
    def waiting(self) -> int:
        """Files seen and not yet taken: ready, or still being written."""
        with self._lock:
            return len(self._ready) + len(self._pending)

    def deleted_before_read(self) -> None:
        """A file taken from the watch was gone when its reader came: counted with those deleted here."""
        with self._lock:
            self.deleted += 1

    def start(self, done: Mapping[str, Sequence[int] | None] | None = None) -> None:
        """Watch first, then list what is there: a file landing in between is seen either way. ``done``:
        image -> the stamp (size, mtime_ns, ...) it was predicted with; unchanged, it is not taken again."""
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        if not self.folder.is_dir():
            raise FolderInputError(f"{self.folder}: no such folder to watch", option="folder_path")
        self._observer = PollingObserver(timeout=self.poll) if self.poll else Observer()
        self._observer.schedule(_Events(self), str(self.folder), recursive=self.recursive)
        self._observer.daemon = True
        self._observer.start()
        now = time.monotonic()
        with self._lock:
            for path in discover_images(self.folder, self.extensions, self.recursive):
                name, stamp = path.as_posix(), _stamp(self.folder / path)
                earlier = (done or {}).get(name)
                if stamp is not None and earlier is not None and tuple(earlier[:2]) == stamp:
                    continue
                self._pending.setdefault(name, _Pending(now, now, stamp, _STABLE))

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive() and self._observer is not threading.current_thread():
                self._observer.join(timeout=5)
            self._observer = None
        with self._lock:
            self._lock.notify_all()

    def take(self, limit: int, max_wait_s: float, wait_s: float, stop: threading.Event | None = None) -> list[Ready]:
        """Up to ``limit`` ready files, oldest first: waits up to ``wait_s`` for the first, then at most
        ``max_wait_s`` after it became ready for more to fill ``limit``. Empty when nothing came, when
        ``stop`` is set or the folder is gone."""
        deadline = time.monotonic() + wait_s
        with self._lock:
            while True:
                self._check(time.monotonic())
                now = time.monotonic()
                if self.gone or (stop is not None and stop.is_set()):
                    return []
                if self._ready:
                    first = next(iter(self._ready.values())).since
                    if len(self._ready) >= limit or now >= first + max_wait_s:
                        return [self._ready.popitem(last=False)[1] for _ in range(min(limit, len(self._ready)))]
                    pause = first + max_wait_s - now
                elif now >= deadline:
                    return []
                else:
                    pause = deadline - now
                self._lock.wait(min(pause, 0.02 if self._pending else 0.25))

    # -- called with the lock held ---------------------------------------------------------------------
    def _check(self, now: float) -> None:
        """What needs time to pass: a stable stamp, a creation with no writer, a timeout, the folder gone."""
        if now - self._checked >= 0.5:
            self._checked = now
            if not self.folder.is_dir():
                self.gone = True
                return
        stat_now = now - self._stated >= min(0.1, self.settle_s / 2)  # a stat per file, not per wake-up
        self._stated = now if stat_now else self._stated
        for name, pending in list(self._pending.items()):
            if not pending.timed_out and now - pending.first >= self.complete_timeout_s:
                pending.timed_out = True
                self._ready[name] = Ready(name, now, timed_out=True)
                self._lock.notify_all()
            if pending.rule == _CLOSE:
                if not pending.opened and now - pending.first >= _GRACE_S:
                    self._complete(name, now)  # created and never opened: moved (or linked) in whole
                continue
            if not stat_now:
                continue
            stamp = _stamp(self.folder / name)
            if stamp is None:
                del self._pending[name]  # deleted before it completed
                self.deleted += 1
            elif stamp != pending.stamp:
                pending.stamp, pending.changed = stamp, now
            elif now - pending.changed >= self.settle_s:
                self._complete(name, now)

    def _complete(self, name: str, now: float) -> None:
        self._pending.pop(name, None)
        self._ready.pop(name, None)  # a replaced file goes to the back: it is new
        self._ready[name] = Ready(name, now)
        self._lock.notify_all()

    def _name(self, path: str, landed: bool = False) -> str | None:
        """``path``'s name relative to the folder when it is an image this watch takes; else ``None``
        (``landed``: the file just arrived, and a file that is no image is counted once)."""
        try:
            relative = Path(path).relative_to(self.folder)
        except ValueError:
            return None
        parts = relative.parts
        if not parts or any(part.startswith(".") for part in parts) or (len(parts) > 1 and not self.recursive):
            return None
        if self.exclude is not None and Path(path).resolve().is_relative_to(self.exclude):
            return None
        if relative.suffix.lstrip(".").lower() not in self.extensions:
            self.ignored += landed
            return None
        return relative.as_posix()

    def _event(self, kind: str, path: str, dest: str | None = None) -> None:
        with self._lock:
            if kind == "moved":
                old = self._name(path)
                if old is not None:
                    self._pending.pop(old, None)
                    self._ready.pop(old, None)
                name = self._name(dest, landed=True) if dest else None
                if name is not None:
                    self._complete(name, time.monotonic())  # a rename is atomic: the content is whole
                return
            name = self._name(path, landed=kind == "created")
            if name is None:
                return
            now = time.monotonic()
            pending = self._pending.get(name)
            if kind == "deleted":
                if self._pending.pop(name, None) is not None or self._ready.pop(name, None) is not None:
                    self.deleted += 1
            elif kind == "created":
                rule = _STABLE if self.poll else _CLOSE
                self._ready.pop(name, None)
                self._pending[name] = _Pending(now, now, _stamp(self.folder / name), rule)
            elif kind == "opened" and pending is not None:
                pending.opened = True
            elif kind == "modified":
                if pending is not None:
                    pending.opened, pending.changed = True, now
                elif name not in self._ready:  # written again in place: new content, a new prediction once complete
                    self._pending[name] = _Pending(now, now, None, _STABLE if self.poll else _CLOSE, opened=True)
            elif kind == "closed" and pending is not None and pending.rule == _CLOSE:
                self._complete(name, now)


class _Events:
    """watchdog's handler: every file event to :meth:`FolderWatch._event`; the folder's own removal noted."""

    _KINDS = frozenset({"created", "modified", "deleted", "moved", "opened", "closed"})  # not closed_no_write

    def __init__(self, watch: FolderWatch) -> None:
        self.watch = watch

    def dispatch(self, event: object) -> None:
        kind = event.event_type if event.event_type in self._KINDS else None
        src = os.fsdecode(event.src_path)
        if event.is_directory:
            if kind == "deleted" and Path(src) == self.watch.folder:
                with self.watch._lock:  # noqa: SLF001 - the watch's own handler
                    self.watch.gone = True
                    self.watch._lock.notify_all()  # noqa: SLF001
            return
        if kind is not None:
            self.watch._event(kind, src, os.fsdecode(event.dest_path) if kind == "moved" else None)  # noqa: SLF001


def _inotify() -> bool:
    from watchdog.observers import Observer

    return "Inotify" in Observer.__name__
