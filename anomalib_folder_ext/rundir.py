"""One run's hold on its output dir: checked, locked, made ready (resume or overwrite), released.

Every rank makes the same decisions from the same files; only rank 0 writes (Lightning's setup
barriers keep the others waiting). The checks themselves are :mod:`~anomalib_folder_ext.outputdir`'s.
"""

from __future__ import annotations

from pathlib import Path

from anomalib_folder_ext import journal, outputdir
from anomalib_folder_ext.artifacts import ensure_writable
from anomalib_folder_ext.console import say
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.owned import OwnedDir
from anomalib_folder_ext.runplan import OutputNames, RunPlan


class RunDirectory:
    """The output dir of one run.

    Made in the writer's ``setup``, before the checkpoint's weights load: every refusal is made
    here, and a refused resume changes nothing. ``writes``: this rank writes (rank 0).
    """

    def __init__(self, output_dir: Path, folder: Path | None, outputs: OutputNames, options: WriterOptions,
                 world_size: int = 1, writes: bool = True) -> None:
        self.output_dir, self.folder, self.options, self.writes = output_dir, folder, options, writes
        token = outputdir.run_token(world_size)
        self.found = outputdir.check_output_dir(output_dir, folder, outputs, options.resume or options.overwrite,
                                                token, options.allow_other_files)
        self.created = not output_dir.exists()
        ensure_writable(output_dir, create=False)
        self.directory = OwnedDir(output_dir, create=True)  # every file of the run is written and deleted through it
        self.lock = outputdir.OutputDirLock(self.directory, token)
        self.written: list[str] = []  # files written before the first map (taken back if the run fails then)
        self.earlier: journal.JournalState | None = None  # what resume read (checked again if need be)
        if writes:
            try:
                self.lock.acquire()  # checks again: another run may have started since
                self.keep(journal.write_owner(self.directory))
            except BaseException:
                self.release(failed=True, kept_anything=False)
                self.close()
                raise

    def plan(self, outputs: OutputNames, settings: dict) -> RunPlan:
        """Resume what an earlier run left, or replace it (``overwrite``); the refusals were made before."""
        resume = self.options.resume and self.folder is not None
        self.earlier = journal.read_journal(self.directory) if resume else None
        if self.earlier is None:
            if self.writes:
                if self.found:
                    outputdir.remove_earlier_run(self.directory, outputs, protect=self.folder)
                journal.reset(self.directory)
            return RunPlan(outputs, settings)
        self.earlier.check(settings, self.output_dir)  # before anything is written
        reuse = journal.reusable_rows(self.earlier, self.directory, outputs, self.folder)
        if self.writes:
            line = reuse.summary_line()
            if line:
                say(line, error=True)
            outputdir.remove_temporaries(self.directory, outputs)
        return RunPlan(outputs, settings, reuse.complete)

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
        if self.writes and self.lock.held:
            if failed and not kept_anything:
                outputdir.remove_unused(self.directory, self.written, self.created)
            self.lock.release()

    def close(self) -> None:
        self.directory.close()


def output_dir_of(writer_dir: Path | None, datamodule: object) -> Path:
    """The writer's own output dir, else the datamodule's."""
    if writer_dir is not None:
        return writer_dir
    if getattr(datamodule, "output_dir", None) is not None:
        return Path(datamodule.output_dir)
    msg = "AnomalyMapWriter needs output_dir, or anomalib_folder_ext.data.FolderDataModule as the data"
    raise ValueError(msg)
