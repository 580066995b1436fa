"""Where a watched folder's rows go as they land: a line's downstream systems. A reject gate reads folders
(:class:`SortInto`), a PLC gateway or a MES takes an HTTP post per part (:class:`Poster`). Neither may stall
inspection: a sink never raises for a file or a network that misbehaves, it says so in one line and the watch
goes on; a dead endpoint costs a queue slot, never a wait.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import numbers
import os
import shutil
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from anomalib_folder_ext.errors import InputError
from anomalib_folder_ext.options import check_post_url
from anomalib_folder_ext.outputs.runplan import FILE_KINDS

if TYPE_CHECKING:
    from anomalib_folder_ext.outputs.summary import ImageResult

GROUPS = ("ok", "defect", "uncertain", "failed", "undecided")
_RECORD_FIELDS = ("image", "status", "error", "note", "score", "decision", "defect_area", "defect_fraction",
                  "defect_regions", "height", "width")
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, getattr(errno, "EOPNOTSUPP", errno.ENOTSUP)}
_MAX_BACKOFF_S = 10.0
_WARN_EVERY_S = 60.0


class SortInto:
    """Puts each input image under ``root/<group>/`` as its row lands, so a reject gate reads folders.

    An image is in exactly one group: predicted again (replaced under the same name), it moves. A hard
    link costs no space and keeps the input where it is; a copy is the fallback across filesystems.

    Example:
        >>> import tempfile
        >>> from anomalib_folder_ext.outputs.summary import ImageResult
        >>> base = Path(tempfile.mkdtemp())
        >>> _ = (base / "in" / "line1").mkdir(parents=True), (base / "in" / "line1" / "a.png").write_bytes(b"png")
        >>> sort = SortInto(base / "sorted", base / "in")
        >>> sort.place(ImageResult("line1/a.png", decision="defect")), sort.place(ImageResult("line1/a.png", decision="ok"))
        (None, None)
        >>> sorted(path.relative_to(base / "sorted").as_posix() for path in (base / "sorted").rglob("*.png"))
        ['ok/line1/a.png']
    """

    def __init__(self, root: Path, folder: Path, move: bool = False) -> None:
        self.root, self.folder, self.move = Path(root), Path(folder), move
        self._real_root = os.path.realpath(self.root)

    def place(self, row: ImageResult) -> str | None:
        """``None`` once the image is in its group, else one line naming the file and why (never raises)."""
        relative = PurePosixPath(row.image)
        if not row.image or relative.is_absolute() or ".." in relative.parts:
            return f"sort_into: {row.image!r}: not a path inside the folder"
        group = "failed" if row.status == "failed" else row.decision if row.decision in GROUPS[:3] else "undecided"
        source, target = self.folder.joinpath(*relative.parts), self.root.joinpath(group, *relative.parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not self._ours(target.parent, group, relative):
                return f"sort_into: {target.parent}: leads out of {self.root} (a link); not written through"
            self._put(source, target)
            return self._forget_elsewhere(group, relative)
        except OSError as exc:  # a missing input (deleted meanwhile) too: its name and "No such file"
            return f"sort_into: {exc.filename or source}: {_why(exc)}"

    def _put(self, source: Path, target: Path) -> None:
        """Lands ``target`` whole (a temporary name, then ``os.replace``), over an earlier one."""
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.sorting")
        try:
            try:
                if self.move:
                    os.replace(source, target)
                    return
                os.link(source, temporary)
            except OSError as exc:
                if exc.errno not in ({errno.EXDEV} if self.move else _NO_LINK):
                    raise
                shutil.copy2(source, temporary)
            os.replace(temporary, target)  # a no-op when both name one file (linked again): the name stays
            if self.move:
                os.unlink(source)
        finally:
            if os.path.lexists(temporary):
                os.unlink(temporary)

    def _forget_elsewhere(self, group: str, relative: PurePosixPath) -> str | None:
        """Removes the image's earlier place, only ever a name of ours: no link out of ``root`` is followed."""
        for other in GROUPS:
            stale = self.root.joinpath(other, *relative.parts)
            if other != group and os.path.lexists(stale) and not os.path.isdir(stale):
                if not self._ours(stale.parent, other, relative):
                    return f"sort_into: {stale.parent}: leads out of {self.root} (a link); nothing removed there"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stale)
        return None

    def _ours(self, directory: Path, group: str, relative: PurePosixPath) -> bool:
        """Whether ``directory`` is really ``root/group/<image's folder>``, with no link on the way."""
        return os.path.realpath(directory) == os.path.join(self._real_root, group, *relative.parent.parts)


def _why(exc: object) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _plain(value: object) -> object:
    """A JSON value: numpy numbers as Python ones, NaN and infinities as ``None``."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return float(value) if math.isfinite(value) else None
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value


def row_record(row: ImageResult, output_dir: Path) -> dict:
    """The JSON body posted for one row: its numbers, its decision and where its files are."""
    record = {name: _plain(getattr(row, name)) for name in _RECORD_FIELDS}
    record["files"] = {kind: str(Path(output_dir) / getattr(row, kind)) for kind in FILE_KINDS if getattr(row, kind)}
    record["output_dir"] = str(output_dir)
    return record


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer >= 300, a failure: a POST is not silently turned into a GET elsewhere."""
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Poster:
    """Posts one JSON object per row from one background thread; :meth:`post` only enqueues.

    A full queue drops its oldest record (counted): the newest parts matter most to a line. Failures
    are warned once, then summarised at most once a minute, so a dead endpoint cannot flood the log.
    """

    def __init__(self, url: str, retries: int = 3, timeout_s: float = 2.0, queue_size: int = 1000,
                 backoff_s: float = 0.5, warn: Callable[[str], None] = _stderr) -> None:
        check_post_url(url)
        if retries < 0 or timeout_s <= 0 or queue_size < 1 or backoff_s < 0:
            raise InputError(f"post {url!r}: needs retries, backoff_s >= 0, timeout_s > 0, queue_size >= 1", option="post")
        self.url, self.retries, self.timeout_s, self.backoff_s, self.queue_size = url, retries, timeout_s, backoff_s, queue_size
        self.sent = self.failed = self.dropped = self._in_flight = self._unreported = 0
        self.last_error, self._since, self._last_warn, self._failing, self._closed = "", "", 0.0, False, False
        self._warn, self._queue, self._abort, self._cond = warn, deque(), threading.Event(), threading.Condition()
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._thread = threading.Thread(target=self._run, name="anomalib-folder-post", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._in_flight

    def post(self, record: dict) -> None:
        """Queue ``record`` for the endpoint; never waits (after :meth:`close` it is counted as dropped)."""
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(record)
            self._cond.notify()

    def close(self, wait_s: float = 5.0) -> None:
        """Deliver what is queued for at most ``wait_s`` seconds; what is left then is dropped."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(max(wait_s, 0.0))
        with self._cond:
            self.dropped += len(self._queue)
            self._queue.clear()
            self._abort.set()  # a try still in flight ends by its timeout; the thread is a daemon

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed and not self._abort.is_set():
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    return
                record, self._in_flight = self._queue.popleft(), 1
            self._count(self._deliver(record))

    def _deliver(self, record: dict) -> str | None:
        """``None`` once the endpoint took the record, else the last try's error."""
        try:
            body = json.dumps(record, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return f"not JSON: {exc}"
        error, delay = "", self.backoff_s
        for attempt in range(1 + self.retries):
            if attempt:
                if self._abort.wait(min(delay, _MAX_BACKOFF_S)):
                    break
                delay *= 2
            request = urllib.request.Request(self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
            try:
                with self._opener.open(request, timeout=self.timeout_s) as response:
                    if response.status < 300:
                        return None
                    error = f"HTTP {response.status}"
            except urllib.request.HTTPError as exc:
                error = f"HTTP {exc.code} {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - any failure of a try is a failure, never the watch's
                error = _why(exc.reason if isinstance(exc, urllib.request.URLError) else exc)
        return error

    def _count(self, error: str | None) -> None:
        now, line = time.monotonic(), None
        with self._cond:
            self._in_flight = 0
            if error is None:
                self.sent += 1
                line = f"post: {self.url} reachable again" if self._failing else None
                self._failing = False
            else:
                self.failed, self.last_error, self._unreported = self.failed + 1, error, self._unreported + 1
                if not self._failing or now - self._last_warn >= _WARN_EVERY_S:
                    line = (f"post: {self._unreported} records not delivered to {self.url} since {self._since}; last error: {error}"
                            if self._failing else f"post: a record not delivered to {self.url} after {1 + self.retries}"
                            f" tries: {error} (more failures: one line a minute)")
                    self._failing, self._last_warn, self._since, self._unreported = True, now, time.strftime("%H:%M:%S"), 0
        if line is not None:
            with contextlib.suppress(Exception):  # a broken warn must not stop the posting
                self._warn(line)
