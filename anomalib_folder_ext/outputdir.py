"""The output dir's guard: one run at a time, never an input replaced, never two runs mixed.

- :class:`OutputDirLock` refuses a second run into a dir a live run is writing (``.lock``, with
  the owner's pid and host; a lock whose process is gone is taken over).
- :func:`replaced_input` finds an input an output file would replace (the output dir is the
  input folder, or holds it).
- :func:`check_output_dir` makes every refusal before anything is written; a dir holding another
  run's results is refused unless the user asks to overwrite (:func:`remove_earlier_run` deletes
  that run's files first) or to resume.
- :func:`remove_unused` leaves no empty or config-only dir behind when a run fails before its
  first map.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from anomalib_folder_ext.artifacts import OutputDirError, remove_temporaries
from anomalib_folder_ext.journal import JOURNAL_DIR, journal_dir, read_journal
from anomalib_folder_ext.summary import CSV_NAME, SUMMARY_NAME, read_results

LOCK_NAME = ".lock"
CONFIG_NAME = "config.yaml"  # anomalib's copy of the run's config, saved next to the results
# Files a run writes under fixed names (the maps are listed, per image, in results.csv and the journal).
RUN_FILES = (CSV_NAME, SUMMARY_NAME, "report.html", "report.png", CONFIG_NAME)
_FILE_COLUMNS = ("npy", "png", "overlay")


def run_token(world_size: int = 1) -> str:
    """Who holds a lock: one token for every rank of one run (Lightning gives them one MASTER_PORT)."""
    port = os.environ.get("MASTER_PORT")
    if world_size > 1 and port:  # the same on every node of the run
        return f"ranks of {os.environ.get('MASTER_ADDR', '')}:{port}"
    return f"{socket.gethostname()}:pid {os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class OutputDirLock:
    """``<output_dir>/.lock`` while a run writes there.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> lock = OutputDirLock(out)
        >>> lock.acquire(); (out / LOCK_NAME).exists()
        True
        >>> lock.release(); (out / LOCK_NAME).exists()
        False
    """

    def __init__(self, directory: str | Path, token: str | None = None) -> None:
        self.path = Path(directory) / LOCK_NAME
        self.token = token or run_token()
        self._held = False

    def holder(self) -> dict | None:
        """The lock's record when another live run holds it; ``None`` when free, stale or ours."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict):
            record = {}
        if record.get("token") == self.token:
            return None
        if record.get("host") == socket.gethostname() and isinstance(record.get("pid"), int) and not _alive(record["pid"]):
            return None  # its process is gone (killed, crashed): stale
        return record

    def check(self) -> None:
        """:class:`OutputDirError` when another live run holds the dir (ranks other than 0 only check)."""
        record = self.holder()
        if record is not None:
            owner = f"pid {record.get('pid', '?')} on {record.get('host', '?')}, since {record.get('since', '?')}"
            msg = (
                f"output_dir {self.path.parent}: another run is writing there ({owner}); wait for it to finish or "
                f"choose another output_dir (if no run uses it, delete {self.path})"
            )
            raise OutputDirError(msg)

    def acquire(self) -> None:
        self.check()
        record = {
            "token": self.token,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record) + "\n", encoding="utf-8")
        try:
            os.link(tmp, self.path)  # atomic create-if-absent: two runs starting together cannot both win
        except FileExistsError:
            self.check()  # a stale lock (or ours): replace it; a live one raised above
            os.replace(tmp, self.path)
        except OSError:  # a file system without hard links: not atomic, still a lock
            os.replace(tmp, self.path)
        else:
            tmp.unlink()
        self._held = True

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False


def replaced_input(output_dir: Path, folder: Path, names: Sequence[str], output_names: Iterable[str]) -> str | None:
    """Why writing ``output_names`` into ``output_dir`` would replace one of ``names`` in ``folder``; else ``None``."""
    out, source = output_dir.resolve(), folder.resolve()
    if out == source:
        return (
            f"output_dir {output_dir} is the input folder: maps written among the images would be read back as "
            "inputs by the next run and could replace an image (part_anomaly.png); choose another output_dir"
        )
    try:
        prefix = source.relative_to(out).as_posix()
    except ValueError:
        return None  # beside it, or inside it (then never listed as input): nothing to replace
    inputs = {f"{prefix}/{name}".casefold(): name for name in names}
    for output in output_names:
        if output.casefold() in inputs:
            return f"output_dir {output_dir}: the output {output} would replace the input image {folder / inputs[output.casefold()]}; choose another output_dir"
    return None


def earlier_run(output_dir: Path) -> str | None:
    """What shows ``output_dir`` holds another run's results (``None``: nothing there)."""
    csv_path = output_dir / CSV_NAME
    if csv_path.is_file():
        try:
            count = len(read_results(output_dir))
        except (OSError, ValueError):
            return f"{CSV_NAME}"
        return f"{CSV_NAME} of {count:,} images"
    if any(journal_dir(output_dir).glob("rank*.jsonl")):
        return "the journal of an interrupted run"
    return None


def check_output_dir(
    output_dir: Path, folder: Path | None, names: Sequence[str], output_names: Iterable[str], reuse: bool, token: str | None = None
) -> str | None:
    """Every refusal, before anything is written: an output that would replace an input, another
    live run's lock, another run's results (unless ``reuse``: resume or overwrite). Returns what an
    earlier run left there (``None``: nothing). The CLI calls it before anomalib loads, the writer in ``setup``."""
    problem = replaced_input(output_dir, folder, names, output_names) if folder is not None else None
    if problem:
        raise OutputDirError(problem)
    if not output_dir.is_dir():
        return None
    OutputDirLock(output_dir, token).check()
    found = earlier_run(output_dir)
    if found and not reuse:
        msg = (
            f"output_dir {output_dir} holds the results of an earlier run ({found}); to replace them set overwrite "
            "(--overwrite True), to finish an interrupted run set resume (--resume True), or choose another output_dir"
        )
        raise OutputDirError(msg)
    return found


def _earlier_files(output_dir: Path) -> set[Path]:
    names: set[str] = set(RUN_FILES)
    try:
        for row in read_results(output_dir):
            names.update(row.get(column) or "" for column in _FILE_COLUMNS)
    except (OSError, ValueError):
        pass
    for row in read_journal(output_dir).rows.values():
        names.update(getattr(row, column) for column in _FILE_COLUMNS)
    root = output_dir.resolve()
    files = set()
    for name in filter(None, names):
        path = (output_dir / name).resolve()
        if path.is_relative_to(root) and path.is_file():  # never a path out of the dir, whatever a CSV says
            files.add(output_dir / name)
    return files


def remove_earlier_run(output_dir: Path, protect: Path | None = None) -> int:
    """Delete the files an earlier run wrote into ``output_dir`` (its maps, summaries, journal); how many.

    Nothing under ``protect`` (the input folder, when the output dir holds it) is deleted.
    """
    protected = protect.resolve() if protect is not None else None
    removed = [path for path in _earlier_files(output_dir)
               if protected is None or not path.resolve().is_relative_to(protected)]
    for path in removed:
        path.unlink(missing_ok=True)
    shutil.rmtree(journal_dir(output_dir), ignore_errors=True)
    count = len(removed) + remove_temporaries(output_dir)
    root = output_dir.resolve()
    emptied = {folder for path in removed for folder in path.resolve().parents if folder.is_relative_to(root) and folder != root}
    for folder in sorted(emptied, key=lambda p: -len(p.parts)):  # deepest first
        if not any(folder.iterdir()):
            folder.rmdir()  # a sub-folder that held only maps (recursive runs)
    return count


def remove_unused(output_dir: Path, created: bool) -> None:
    """After a run failed before writing any map: no config-only or empty dir is left behind."""
    if not output_dir.is_dir() or earlier_run(output_dir) is not None:
        return
    leftovers = {path.name for path in output_dir.iterdir()}
    if leftovers - {CONFIG_NAME, LOCK_NAME, JOURNAL_DIR}:
        return  # something else is there (the user's files, maps of a run that wrote no summary): keep all
    (output_dir / CONFIG_NAME).unlink(missing_ok=True)
    shutil.rmtree(journal_dir(output_dir), ignore_errors=True)
    if created:
        (output_dir / LOCK_NAME).unlink(missing_ok=True)
        output_dir.rmdir()
