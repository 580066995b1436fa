"""One run's hold on its output dir: checked, locked, made ready (resume or overwrite), released.

Rank 0 alone reads the dir and decides (the checks, what resume keeps), then makes it ready;
under DDP the other ranks receive its plan (:mod:`~anomalib_folder_ext.distributed.ranks`) and only then
open the dir, so none of them judges a half-made dir or writes before rank 0's deletions are
done. The checks themselves are :mod:`~anomalib_folder_ext.outputs.outputdir`'s.
"""

from __future__ import annotations

from pathlib import Path

from anomalib_folder_ext.outputs import journal, outputdir
from anomalib_folder_ext.outputs.reuse import Reuse, reusable_rows
from anomalib_folder_ext.outputs.artifacts import ensure_writable
from anomalib_folder_ext.console import say
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.outputs.owned import OwnedDir, open_existing
from anomalib_folder_ext.distributed.ranks import decided_on_rank_zero
from anomalib_folder_ext.errors import OutputDirError
from anomalib_folder_ext.outputs.runplan import OutputNames, RunPlan


class RunDirectory:
    """The output dir of one run, made in the writer's ``setup``, before the checkpoint's weights load.

    Rank 0 (or the only rank) calls :meth:`prepare`: it reads first, so a refused run changes
    nothing, then locks the dir and makes it ready. The other ranks call :meth:`join` once rank 0
    has prepared it.
    """

    def __init__(self, output_dir: Path, folder: Path | None, outputs: OutputNames, options: WriterOptions,
                 world_size: int = 1, stream: bool = False) -> None:
        self.output_dir, self.folder, self.outputs, self.options = output_dir, folder, outputs, options
        self.stream = stream  # a watch's: its rows stand once written (failed ones, and those of images moved on)
        self.token = outputdir.run_token(world_size)
        self.directory: OwnedDir | None = None  # every file of the run is written and deleted through it
        self.lock: outputdir.OutputDirLock | None = None  # rank 0's
        self.created = False
        self.written: list[str] = []  # files written before the first map (taken back if the run fails then)
        self.earlier: journal.JournalState | None = None  # what resume read (checked again if need be)

    def prepare(self, settings: dict, checkpoint_later: bool = False) -> RunPlan:
        """Check the dir and plan the run, reading only; then lock it, record it as this tool's, and
        replace the earlier run (``overwrite``) or clear its leftovers (resume). ``checkpoint_later``:
        the checkpoint is known only as its weights load; resume compares it then (:meth:`check_settings`)."""
        options = self.options
        found = outputdir.check_output_dir(self.output_dir, self.folder, self.outputs, options.resume or options.overwrite,
                                           self.token, options.allow_other_files)
        self.created = not self.output_dir.exists()
        ensure_writable(self.output_dir, create=False)
        plan, reuse = self._plan(settings, checkpoint_later)
        self.directory = OwnedDir(self.output_dir, create=True)
        self.lock = outputdir.OutputDirLock(self.directory, self.token)
        self.lock.acquire()  # checks again: another run may have started since
        self.keep(journal.write_owner(self.directory))
        if self.earlier is None:
            if found:
                outputdir.remove_earlier_run(self.directory, self.outputs, protect=self.folder,
                                             shared=options.allow_other_files)
            journal.reset(self.directory)
        elif reuse is not None:
            line = reuse.summary_line()
            if line:
                say(line, error=True)
            if not options.allow_other_files:  # among other files, a name like a leftover's may be someone's
                outputdir.remove_temporaries(self.directory, self.outputs)
        return plan

    def _plan(self, settings: dict, checkpoint_later: bool) -> tuple[RunPlan, Reuse | None]:
        """What this run keeps of an earlier one (resume); without resume, nothing."""
        if not (self.options.resume and self.folder is not None):
            return RunPlan(self.outputs, settings), None
        self.earlier = journal.JournalState()
        existing = open_existing(self.output_dir)
        if existing is None:
            return RunPlan(self.outputs, settings), None
        with existing:
            self.earlier = journal.read_journal(existing)
            self.earlier.check(settings, self.output_dir, skip=("checkpoint",) if checkpoint_later else ())
            reuse = reusable_rows(self.earlier, existing, self.outputs, self.folder, keep_gone=self.stream)
        return RunPlan(self.outputs, settings, reuse.rows if self.stream else reuse.complete), reuse

    def join(self) -> None:
        """Another rank's view of the dir rank 0 prepared: it writes its maps and journal through it."""
        self.directory = OwnedDir(self.output_dir, create=True)

    def open_on_every_rank(self, strategy: object, settings: dict, checkpoint_later: bool = False) -> RunPlan:
        """Rank 0 prepares the dir; every other rank waits for its plan (or its refusal), then joins."""
        plan = decided_on_rank_zero(strategy, lambda: self.prepare(settings, checkpoint_later))
        if self.directory is None:
            self.join()
        return plan

    def check_settings(self, settings: dict) -> None:
        """Resume's check again, on rank 0, for settings known only once the weights loaded (a script's checkpoint)."""
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
        if self.lock is not None and self.lock.held:
            if failed and not kept_anything:
                outputdir.remove_unused(self.directory, self.written, self.created)
            self.lock.release()

    def close(self) -> None:
        if self.directory is not None:
            self.directory.close()


def output_dir_of(datamodule: object, writer_dir: Path | None = None) -> Path:
    """The datamodule's output dir, the one owner of it; a writer's ``output_dir`` may only name the same dir."""
    output_dir = Path(datamodule.output_dir)
    if writer_dir is not None and Path(writer_dir).resolve() != output_dir.resolve():
        msg = (f"AnomalyMapWriter output_dir {writer_dir} is not the datamodule's output_dir {output_dir}: the output dir "
               "is set on the data (FolderDataModule(output_dir=...), data.init_args.output_dir, --output_dir)")
        raise OutputDirError(msg)
    return output_dir
