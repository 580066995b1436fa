"""The output dir's guard: a run writes only into a dir that is its own, one run at a time, never
over an input, never two runs mixed, and it deletes only what an earlier run of this tool recorded.

- :func:`check_output_dir` makes every refusal before anything is written: the file system's root
  or a home directory; an output that would replace an input; a link among the names a run
  writes; another live run's lock; a dir of someone else's files (unless ``allow_other_files``),
  and even then a file of theirs under a name the run would write; another run's results
  (unless the user asks to overwrite or to resume).
- :class:`OutputDirLock` refuses a second run into a dir a live run is writing (``.lock``, with the
  owner's pid and host; a lock whose process is gone is taken over).
- :func:`remove_earlier_run` deletes exactly the files an earlier run recorded (its ``results.csv``
  and journal rows, its fixed-name files, its temporaries by their exact names), never by pattern,
  never a link, never under the input folder.
- :func:`remove_unused` takes back what a run wrote when it fails before its first map.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from anomalib_folder_ext.outputs import journal
from anomalib_folder_ext.errors import option_hint
from anomalib_folder_ext.errors import OutputDirError
from anomalib_folder_ext.outputs.owned import OwnedDir, open_existing, relative_parts
from anomalib_folder_ext.outputs.runplan import FILE_KINDS, MAP_SUFFIXES, OutputNames
from anomalib_folder_ext.outputs.summary import CSV_NAME, DEFECTIVE_NAME, SUMMARY_NAME, parse_results

LOCK_NAME = ".lock"
CONFIG_NAME = "config.yaml"  # the run's resolved anomalib config, saved next to the results
REPORT_NAMES = ("report.html", "report.png")
# Files a run writes under fixed names (the maps are listed, per image, in results.csv and the journal).
RUN_FILES = (CSV_NAME, DEFECTIVE_NAME, SUMMARY_NAME, *REPORT_NAMES, CONFIG_NAME)


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
        >>> out = OwnedDir(tempfile.mkdtemp())
        >>> lock = OutputDirLock(out)
        >>> lock.acquire(); out.is_file(LOCK_NAME)
        True
        >>> lock.release(); out.is_file(LOCK_NAME)
        False
    """

    def __init__(self, directory: OwnedDir, token: str | None = None) -> None:
        self.directory = directory
        self.token = token or run_token()
        self.held = False

    def holder(self) -> dict | None:
        """The lock's record when another live run holds it; ``None`` when free, stale or ours."""
        if self.directory.lstat(LOCK_NAME) is None:
            return None
        try:
            record = json.loads(self.directory.read_text(LOCK_NAME))
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
            path = self.directory.path / LOCK_NAME
            msg = (
                f"output_dir {self.directory.path}: another run is writing there ({owner}); wait for it to finish or "
                f"choose another output_dir (if no run uses it, delete {path})"
            )
            raise OutputDirError(msg)

    def acquire(self) -> None:
        self.check()
        record = {"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        data = (json.dumps(record) + "\n").encode()
        if not self.directory.create_exclusive(LOCK_NAME, data):  # two runs starting together cannot both win
            self.check()  # a stale lock (or ours): replace it; a live one raised above
            self.directory.write(LOCK_NAME, data)
        self.held = True

    def release(self) -> None:
        if self.held:
            self.directory.remove(LOCK_NAME)
            self.held = False


def open_folder(path: Path, option: str) -> OwnedDir | None:
    """The folder ``option`` names, open, when it exists (``None``: not yet); a file there is refused."""
    if path.exists() and not path.is_dir():
        msg = f"{option} {path}: is a file, not a folder"
        raise OutputDirError(msg)
    return open_existing(path)


def shared_location(path: Path) -> str | None:
    """What ``path`` is when no tool's files belong directly in it (the file system's root, a home directory)."""
    real = Path(os.path.realpath(path))
    home = Path(os.path.realpath(Path.home()))
    if real == Path(real.anchor):
        return "the root of the file system"
    if real == home:
        return "your home directory"
    if home.is_relative_to(real):
        return f"a folder that holds your home directory ({home})"
    return None


def refused_location(output_dir: Path) -> str | None:
    """Why ``output_dir`` can never hold a run's results (see :func:`shared_location`); else ``None``."""
    what = shared_location(output_dir)
    if what is None:
        return None
    return (f"output_dir {output_dir}: is {what}; results go into a folder of their own, "
            "such as inference_results_<folder name>: choose one")


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


def earlier_run(directory: OwnedDir) -> str | None:
    """What shows ``directory`` holds another run's results (``None``: nothing there)."""
    if directory.lstat(CSV_NAME) is not None:
        try:
            count = len(parse_results(directory.read_text(CSV_NAME)))
        except (OSError, ValueError):
            return f"{CSV_NAME}"
        return f"{CSV_NAME} of {count:,} images"
    if journal.rank_files(directory):
        return "the journal of an interrupted run"
    return None


def check_output_dir(
    output_dir: Path,
    folder: Path | None,
    plan: OutputNames,
    reuse: bool,
    token: str | None = None,
    allow_other_files: bool = False,
) -> str | None:
    """Every refusal, before anything is written (see the module doc). Returns what an earlier run
    left there (``None``: nothing). The CLI calls it before anomalib loads, the writer in ``setup``,
    a multi-folder run for every folder before the first one starts."""
    problem = refused_location(output_dir)
    if problem is None and folder is not None:
        problem = replaced_input(output_dir, folder, plan.names, plan.all_files())
    if problem:
        raise OutputDirError(problem)
    directory = open_folder(output_dir, "output_dir")
    if directory is None:
        return None
    with directory:
        ours = journal.has_record(directory)
        folders = set(plan.folders())
        for name in (journal.JOURNAL_DIR, LOCK_NAME, *RUN_FILES, *sorted(folders)):
            found = directory.lstat(name)
            if found is None:
                continue
            if stat.S_ISLNK(found.st_mode):
                raise OutputDirError(_link_message(output_dir, name))
            if name in folders and not stat.S_ISDIR(found.st_mode):
                msg = (f"{output_dir / name}: is a file where the run needs a folder (its maps mirror the input's "
                       "sub-folders); move it away or choose another output_dir")
                raise OutputDirError(msg)
        OutputDirLock(directory, token).check()
        if not ours:
            _check_foreign(directory, output_dir, allow_other_files)
        for name in plan.all_files():
            found = directory.lstat(name)
            if found is None:
                continue
            if stat.S_ISLNK(found.st_mode):
                raise OutputDirError(_link_message(output_dir, name))
            if not ours:
                msg = (f"{output_dir / name}: exists and is not from a run of this tool, so it is not replaced: "
                       "move it away or choose another output_dir")
                raise OutputDirError(msg)
        found = earlier_run(directory) if ours else None
    if found and not reuse:
        msg = (
            f"output_dir {output_dir} holds the results of an earlier run ({found}); to replace them: "
            f"{option_hint('overwrite')}; to finish an interrupted run: {option_hint('resume')}; or choose another output_dir"
        )
        raise OutputDirError(msg)
    return found


def _link_message(output_dir: Path, name: str) -> str:
    return (f"{output_dir / name}: is a symbolic link; a run writes only inside its output dir and never through a "
            "link: remove the link or choose another output_dir")


def _check_foreign(directory: OwnedDir, output_dir: Path, allow_other_files: bool) -> None:
    """A dir no run of this tool has written: none of our fixed names may be taken, and it must be
    empty unless the user lets the results go among other files."""
    entries = [name for name in directory.names() if name != LOCK_NAME]
    if not entries:
        return
    taken = [name for name in (journal.JOURNAL_DIR, *RUN_FILES) if name in entries]
    if taken:
        msg = (f"output_dir {output_dir}: its {taken[0]} is not from a run of this tool (there is no "
               f"{journal.JOURNAL_DIR} record), so it is not replaced: move it away or choose another output_dir")
        raise OutputDirError(msg)
    if not allow_other_files:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        msg = (f"output_dir {output_dir}: is not empty ({len(entries):,} entries: {shown}) and holds no run of this "
               f"tool; choose a new or empty output_dir, or let the results go among those files with "
               f"{option_hint('allow_other_files')}")
        raise OutputDirError(msg)


def _recorded_maps(directory: OwnedDir) -> set[str]:
    """The map files an earlier run recorded (results.csv and journal rows), as names inside the dir."""
    names: set[str] = set()
    try:
        for row in parse_results(directory.read_text(CSV_NAME)):
            names.update(row.get(kind) or "" for kind in FILE_KINDS)
    except (OSError, ValueError):
        pass
    for row in journal.read_journal(directory).rows.values():
        names.update(getattr(row, kind) for kind in FILE_KINDS)
    recorded = set()
    for name in names:
        if not name or not name.endswith(MAP_SUFFIXES):
            continue  # only a map of this tool, whatever a CSV says
        try:
            relative_parts(name)
        except OutputDirError:
            continue  # a path that leaves the dir: never
        recorded.add(name)
    return recorded


def _inside(directory: OwnedDir, folder: Path | None) -> str | None:
    if folder is None:
        return None
    try:
        return Path(os.path.realpath(folder)).relative_to(directory.real).as_posix()
    except ValueError:
        return None


def remove_earlier_run(directory: OwnedDir, plan: OutputNames, protect: Path | None = None, shared: bool = False) -> int:
    """Delete the files an earlier run recorded in ``directory`` (its maps, summaries, report, config,
    journal, temporaries); how many. Nothing under ``protect`` (the input folder, when the output dir
    holds it), no link and no file of another name is deleted; in a ``shared`` dir (other files
    allowed) no temporary outside the journal either: a name like a leftover's may be someone's file."""
    protected = _inside(directory, protect)
    maps = sorted(name for name in _recorded_maps(directory)
                  if not (protected and (name == protected or name.startswith(f"{protected}/"))))
    removed = sum(directory.remove(name) for name in [*maps, *RUN_FILES])
    journal.reset(directory)
    if not shared:
        for name in maps:
            directory.remove_temporary(name)
        removed += remove_temporaries(directory, plan)
    directory.remove_empty_folders(parent for name in maps for parent in PurePosixPath(name).parents
                                   if parent.as_posix() != ".")  # sub-folders that held only maps (recursive runs)
    return removed


def remove_temporaries(directory: OwnedDir, plan: OutputNames) -> int:
    """Delete what a killed run's atomic writes left behind: the temporary of each file this run
    can write, by its exact name; how many."""
    names = [*plan.all_files(), *RUN_FILES, f"{journal.JOURNAL_DIR}/{journal.FINISHED_NAME}"]
    return sum(directory.remove_temporary(name) for name in names)


def remove_unused(directory: OwnedDir, written: Iterable[str], created: bool) -> None:
    """After a run failed before writing any map: take back the files it wrote (``written``: its
    config, its owner record), and the dir itself if the run created it and nothing else is there."""
    for name in written:
        directory.remove(name)
    directory.remove_empty_folders([journal.JOURNAL_DIR])
    if created and not [name for name in directory.names() if name != LOCK_NAME]:
        directory.remove(LOCK_NAME)
        try:
            os.rmdir(directory.real)
        except OSError:
            pass
