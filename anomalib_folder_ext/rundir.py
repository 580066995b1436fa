"""One run's hold on its output dir: checked, locked, made ready (resume or overwrite), released.

Every rank decides from the same files: all of them read first (the checks, what to resume), and
only once every rank has read (the writer waits at a barrier) does rank 0 write. A rank that
checked while another already wrote would judge a half-made dir. The checks themselves are
:mod:`~anomalib_folder_ext.outputdir`'s.
"""

from __future__ import annotations

from pathlib import Path

from anomalib_folder_ext import journal, outputdir
from anomalib_folder_ext.artifacts import ensure_writable
from anomalib_folder_ext.console import say
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.owned import OwnedDir, open_existing
from anomalib_folder_ext.runplan import OutputNames, RunPlan


class RunDirectory:
    """The output dir of one run, taken in two steps.

    Made in the writer's ``setup``, before the checkpoint's weights load. ``__init__`` and
    :meth:`plan` only read: every refusal is made there, and a refused run changes nothing.
    :meth:`open` follows once every rank has read; ``writes``: this rank writes (rank 0).
    """

    def __init__(self, output_dir: Path, folder: Path | None, outputs: OutputNames, options: WriterOptions,
                 world_size: int = 1, writes: bool = True) -> None:
        self.output_dir, self.folder, self.outputs, self.options, self.writes = output_dir, folder, outputs, options, writes
        self.token = outputdir.run_token(world_size)
        self.found = outputdir.check_output_dir(output_dir, folder, outputs, options.resume or options.overwrite,
                                                self.token, options.allow_other_files)
        self.created = not output_dir.exists()
        ensure_writable(output_dir, create=False)
        self.directory: OwnedDir | None = None  # every file of the run is written and deleted through it (open)
        self.lock: outputdir.OutputDirLock | None = None
        self.written: list[str] = []  # files written before the first map (taken back if the run fails then)
        self.earlier: journal.JournalState | None = None  # what resume read (checked again if need be)
        self._reuse: journal.Reuse | None = None

    def plan(self, settings: dict) -> RunPlan:
        """What this run keeps of an earlier one (resume), reading only; without resume, nothing."""
        if not (self.options.resume and self.folder is not None):
            return RunPlan(self.outputs, settings)
        self.earlier = journal.JournalState()
        existing = open_existing(self.output_dir)
        if existing is None:
            return RunPlan(self.outputs, settings)
        with existing:
            self.earlier = journal.read_journal(existing)
            self.earlier.check(settings, self.output_dir)  # before anything is written
            self._reuse = journal.reusable_rows(self.earlier, existing, self.outputs, self.folder)
        return RunPlan(self.outputs, settings, self._reuse.complete)

    def open(self) -> None:
        """Open the dir for writing, once every rank has read it. Rank 0 locks it, records it as this
        tool's, and replaces the earlier run (``overwrite``) or clears its leftovers (resume)."""
        self.directory = OwnedDir(self.output_dir, create=True)
        self.lock = outputdir.OutputDirLock(self.directory, self.token)
        if not self.writes:
            return
        self.lock.acquire()  # checks again: another run may have started since
        self.keep(journal.write_owner(self.directory))
        if self.earlier is None:
            if self.found:
                outputdir.remove_earlier_run(self.directory, self.outputs, protect=self.folder)
            journal.reset(self.directory)
        elif self._reuse is not None:
            line = self._reuse.summary_line()
            if line:
                say(line, error=True)
            outputdir.remove_temporaries(self.directory, self.outputs)

    def check_settings(self, settings: dict) -> None:
        """Resume's check again, for settings known only as the loop starts (a script's checkpoint)."""
        if self.earlier is not None:
            self.earlier.check(settings, self.output_dir)

    def keep(self, name: str | None) -> None:
        """``name`` was written by this run before its first map (``None``: nothing was)."""
        if name:
            self.written.append(name)

    def release(self, failed: bool, kept_anything: bool = True) -> None:
        """Unlock; after a failure before any map was kept, take back what this run wrote.

        Only a run that holds the lock touches anything: one refused by a live run's lock leaves
        that run's files alone.
        """
        if self.writes and self.lock is not None and self.lock.held:
            if failed and not kept_anything:
                outputdir.remove_unused(self.directory, self.written, self.created)
            self.lock.release()

    def close(self) -> None:
        if self.directory is not None:
            self.directory.close()


def output_dir_of(writer_dir: Path | None, datamodule: object) -> Path:
    """The writer's own output dir, else the datamodule's."""
    if writer_dir is not None:
        return writer_dir
    if getattr(datamodule, "output_dir", None) is not None:
        return Path(datamodule.output_dir)
    msg = "AnomalyMapWriter needs output_dir, or anomalib_folder_ext.data.FolderDataModule as the data"
    raise ValueError(msg)
