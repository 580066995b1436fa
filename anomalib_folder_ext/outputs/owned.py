"""The only way a run writes or deletes a file: through the directory it owns.

A run writes into a directory it was given (an output dir, the output root of a multi-folder
run, the root of a split) and nowhere else. :class:`OwnedDir` resolves that directory once and
holds it open; every path below it is relative and is walked one folder at a time without
following a symbolic link (``O_NOFOLLOW``). A link planted there (a ``config.yaml`` pointing at a
file elsewhere, a ``.journal`` or a sub-folder linked out of the dir) is refused, never written
through.

Files land atomically: written under a temporary name beside them (``.<name>.tmp``, or the next free
one: never a name that exists) and renamed, so a file is either absent or complete, and a killed
run's leftovers are found by their exact names, never by a pattern. Deleting takes regular files
only: a link, a folder or anything else under a name of ours is left alone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import IO

from anomalib_folder_ext.errors import option_hint
from anomalib_folder_ext.errors import OutputDirError

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | _CLOEXEC
_NAME_MAX = 255
_ATTEMPTS = 100  # temporary names tried for one file before the write fails
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def temporary_name(name: str, attempt: int = 0) -> str:
    """The temporary name a file ``name`` is written under, beside it (``.<name>.tmp``); ``attempt``: the
    next one, when that name is taken.

    Example:
        >>> temporary_name("img1_anomaly.npy"), temporary_name("img1_anomaly.npy", 1)
        ('.img1_anomaly.npy.tmp', '.img1_anomaly.npy.1.tmp')
    """
    tail = f".{attempt}.tmp" if attempt else ".tmp"
    temporary = f".{name}{tail}"
    if len(os.fsencode(temporary)) <= _NAME_MAX:
        return temporary
    return f".{hashlib.sha1(os.fsencode(name)).hexdigest()[:24]}.long{tail}"  # a name near the file system's limit


def relative_parts(relative: str | PurePath) -> list[str]:
    """The folders and the name of a path inside a directory; refuses one that would leave it.

    Example:
        >>> relative_parts("sub/img_anomaly.npy")
        ['sub', 'img_anomaly.npy']
        >>> relative_parts("../x")
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.OutputDirError: ../x: not a path inside the directory
    """
    text = PurePath(relative).as_posix() if isinstance(relative, PurePath) else str(relative)
    parts = text.split("/")
    if "\0" in text or text.startswith("/") or any(part in {"", ".", ".."} for part in parts):
        msg = f"{text}: not a path inside the directory"
        raise OutputDirError(msg)
    return parts


class DirView:
    """A directory resolved once and held open, read without ever following a link below it.

    What :class:`OwnedDir` writes through, and what a check reads before anything is written.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._fd: int | None = None
        self.path = Path(path)
        self.real = Path(os.path.realpath(self.path))
        try:
            self._fd = os.open(self.real, _DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError as exc:
            msg = f"{self.path}: cannot be opened as a folder ({exc.strerror or exc})"
            raise OutputDirError(msg) from None

    # -- walking ------------------------------------------------------------------------------
    @contextmanager
    def folder(self, parts: list[str], create: bool = False) -> Iterator[int]:
        """The open folder at ``parts`` below this one; folders made on the way when ``create``.

        Raises :class:`OutputDirError` when a folder on the way is a link or a file, and
        ``FileNotFoundError`` when one is missing (without ``create``).
        """
        root = self._root()
        fd = root
        try:
            for depth, part in enumerate(parts, 1):
                child = self._enter(fd, part, create, parts[:depth])
                if fd != root:
                    os.close(fd)
                fd = child
            yield fd
        finally:
            if fd != root:
                os.close(fd)

    @contextmanager
    def parent(self, relative: str | PurePath, create: bool = False) -> Iterator[tuple[int, str]]:
        """The open folder holding ``relative``, and its last name (see :meth:`folder`)."""
        parts = relative_parts(relative)
        with self.folder(parts[:-1], create) as fd:
            yield fd, parts[-1]

    def _root(self) -> int:
        if self._fd is None:
            msg = f"{self.path}: closed"
            raise OutputDirError(msg)
        return self._fd

    def _enter(self, fd: int, part: str, create: bool, so_far: list[str]) -> int:
        try:
            try:
                return os.open(part, _DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass  # made by another thread or rank just now
                return os.open(part, _DIRECTORY, dir_fd=fd)
        except OSError as exc:
            if exc.errno not in {errno.ELOOP, errno.ENOTDIR}:
                raise
            raise OutputDirError(self._not_a_folder(fd, part, so_far)) from None

    def _not_a_folder(self, fd: int, part: str, so_far: list[str]) -> str:
        where = self.path.joinpath(*so_far)
        try:
            linked = stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode)
        except OSError:
            linked = False
        if linked:
            return (f"{where}: is a symbolic link; a run writes only inside its own folder, never through a link: "
                    "remove the link or choose another output folder")
        return f"{where}: is a file where a folder is needed; move it away or choose another output folder"

    # -- reading ------------------------------------------------------------------------------
    def lstat(self, relative: str | PurePath) -> os.stat_result | None:
        """The entry itself (a link is not followed); ``None`` when absent or behind a link or file."""
        try:
            with self.parent(relative) as (fd, name):
                return os.lstat(name, dir_fd=fd)
        except (OSError, OutputDirError):
            return None

    def is_file(self, relative: str | PurePath) -> bool:
        """A regular file of this directory (not a link, not behind one)."""
        found = self.lstat(relative)
        return found is not None and stat.S_ISREG(found.st_mode)

    def is_link(self, relative: str | PurePath) -> bool:
        found = self.lstat(relative)
        return found is not None and stat.S_ISLNK(found.st_mode)

    def read_bytes(self, relative: str | PurePath) -> bytes:
        """The file's content; ``OSError`` when absent, a link (``ELOOP``) or behind one."""
        try:
            with self.parent(relative) as (fd, name):
                handle = os.open(name, _READ, dir_fd=fd)
        except OutputDirError as exc:
            raise OSError(errno.ELOOP, str(exc)) from None
        with os.fdopen(handle, "rb") as stream:
            return stream.read()

    def last_byte(self, relative: str | PurePath) -> bytes:
        """The file's last byte (``b""`` when empty), read without reading the rest."""
        with self.parent(relative) as (fd, name):
            handle = os.open(name, _READ, dir_fd=fd)
        try:
            size = os.fstat(handle).st_size
            return os.pread(handle, 1, size - 1) if size else b""
        finally:
            os.close(handle)

    def read_text(self, relative: str | PurePath) -> str:
        return self.read_bytes(relative).decode("utf-8", errors="replace")

    def names(self, relative: str | PurePath | None = None) -> list[str]:
        """The entries of this directory, or of a folder inside it (never through a link)."""
        with self.folder(relative_parts(relative) if relative is not None else []) as fd:
            return sorted(entry.name for entry in os.scandir(fd))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass



class OwnedDir(DirView):
    """A directory a run writes into: every file it writes or deletes goes through here (module doc).

    Example:
        >>> import tempfile
        >>> out = OwnedDir(Path(tempfile.mkdtemp()) / "results", create=True)
        >>> out.write("sub/a_anomaly.npy", b"map")
        >>> out.read_bytes("sub/a_anomaly.npy"), out.is_file("sub/a_anomaly.npy")
        (b'map', True)
        >>> out.remove("sub/a_anomaly.npy"), out.is_file("sub/a_anomaly.npy")
        (True, False)
    """

    def __init__(self, path: str | os.PathLike, create: bool = False) -> None:
        if create:
            try:
                os.makedirs(path, exist_ok=True)
            except OSError as exc:
                msg = f"output_dir {path}: cannot be created ({exc.strerror or exc})"
                raise OutputDirError(msg) from None
        super().__init__(path)

    # -- writing ------------------------------------------------------------------------------
    def write(self, relative: str | PurePath, data: bytes) -> None:
        """``relative`` holds ``data`` or, if the process dies, what it held before: never a part.

        A link under that name is refused, never replaced or followed. A failure (disk full, a
        file where a folder should be) raises :class:`OutputDirError` naming the file.
        """
        try:
            with self.parent(relative, create=True) as (fd, name):
                self._refuse_link(fd, name, relative)
                temporary, handle = self._create(fd, name)
                try:
                    with os.fdopen(handle, "wb") as stream:
                        stream.write(data)
                    os.replace(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
                except BaseException:
                    _unlink_quietly(temporary, fd)
                    raise
        except OSError as exc:
            raise OutputDirError(self._cannot(relative, "write", exc)) from exc

    def open_append(self, relative: str | PurePath) -> IO[str]:
        """A text stream appending to ``relative`` (created if absent; a link is refused)."""
        try:
            with self.parent(relative, create=True) as (fd, name):
                handle = os.open(name, _APPEND, 0o666, dir_fd=fd)
        except OSError as exc:
            raise OutputDirError(self._cannot(relative, "write", exc)) from exc
        return os.fdopen(handle, "a", encoding="utf-8")

    def create_exclusive(self, relative: str | PurePath, data: bytes) -> bool:
        """Create ``relative`` only if nothing has that name (atomic: two runs cannot both win); whether it did."""
        temporary = f"{relative}.{os.getpid()}"
        self.write(temporary, data)
        try:
            with self.parent(relative) as (fd, name):
                os.link(PurePath(temporary).name, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        except FileExistsError:
            return False
        finally:
            self.remove(temporary)
        return True

    def _refuse_link(self, fd: int, name: str, relative: str | PurePath) -> None:
        try:
            found = os.lstat(name, dir_fd=fd)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(found.st_mode):
            msg = (f"{self.path / relative}: is a symbolic link; a run never writes through a link nor replaces one "
                   "it did not make: remove it or choose another output folder")
            raise OutputDirError(msg)

    def _create(self, fd: int, name: str) -> tuple[str, int]:
        """A new temporary for ``name``: never a name that exists (a killed run's leftover, or someone's
        file of that name among a dir of other files), which is left as it is."""
        for attempt in range(_ATTEMPTS):
            temporary = temporary_name(name, attempt)
            try:
                return temporary, os.open(temporary, _NEW_FILE, 0o666, dir_fd=fd)
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, f"{_ATTEMPTS} temporary names taken", temporary_name(name))

    def _cannot(self, relative: str | PurePath, action: str, exc: OSError) -> str:
        text = f"{self.path / relative}: cannot {action} ({exc.strerror or exc})"
        if exc.errno in _FULL:
            text += (f"; free space on that disk, then finish the run with {option_hint('resume')}: "
                     "every image written so far is kept")
        return text

    # -- deleting -----------------------------------------------------------------------------
    def remove(self, relative: str | PurePath) -> bool:
        """Delete a regular file; a link, a folder or a missing name is left alone (``False``)."""
        try:
            with self.parent(relative) as (fd, name):
                if not stat.S_ISREG(os.lstat(name, dir_fd=fd).st_mode):
                    return False
                os.unlink(name, dir_fd=fd)
                return True
        except (OSError, OutputDirError):
            return False

    def remove_temporary(self, relative: str | PurePath) -> bool:
        """Delete the leftover temporary of ``relative`` (a killed run's), by its exact name."""
        path = PurePath(relative)
        return self.remove(path.with_name(temporary_name(path.name)))

    def remove_empty_folders(self, folders: Iterable[str | PurePath]) -> None:
        """Remove these folders if they are empty, deepest first (a link or a full folder stays)."""
        for folder in sorted({PurePath(f).as_posix() for f in folders}, key=lambda text: -text.count("/")):
            try:
                with self.parent(folder) as (fd, name):
                    os.rmdir(name, dir_fd=fd)
            except (OSError, OutputDirError):
                pass

def _unlink_quietly(name: str, fd: int) -> None:
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def open_existing(path: str | os.PathLike) -> OwnedDir | None:
    """An :class:`OwnedDir` for reading what a directory holds; ``None`` when there is no such folder."""
    try:
        return OwnedDir(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
