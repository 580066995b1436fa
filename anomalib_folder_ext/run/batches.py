"""Many batch folders in one process: anomalib's CLI builds the model, the datamodule and the Engine
once; every folder then runs through the same ``Engine`` / ``Trainer.predict`` with its own
datamodule and output dir. The checkpoint is loaded once, by the first folder that needs a run.

Each folder is one ordinary predict (its own ``results.csv``, summary, ``config.yaml`` and
journal); the output root gets the combined files, built from what the folders hold on disk
(:mod:`~anomalib_folder_ext.outputs.outputroot`). Every folder's output dir is checked before the first
folder runs.

Under DDP every rank runs this same loop (Lightning starts the ranks by re-running the command,
or torchrun / SLURM start them). The ranks join before the first folder is read, and rank 0 makes
every decision for all of them (:mod:`~anomalib_folder_ext.distributed.ranks`): the folder list, each folder's
images, the output dir checks, which folders an earlier run finished. Only rank 0 prints and
writes the combined files; every rank watches the others (:mod:`~anomalib_folder_ext.distributed.liveness`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

from anomalib_folder_ext.outputs import journal, outputdir, summary
from anomalib_folder_ext.outputs.reuse import finished_run
from anomalib_folder_ext.distributed import liveness
from anomalib_folder_ext.outputs.artifacts import default_output_dir, display_name
from anomalib_folder_ext.console import check_failures, counted, duration
from anomalib_folder_ext.images.discover import natural_key
from anomalib_folder_ext.errors import BATCHES_COMMAND, PREDICT_COMMAND, InputError, NoImagePredicted, Terms
from anomalib_folder_ext.outputs.outputroot import (
    FolderOutput,
    OutputRoot,
    check_folder_outputs,
)
from anomalib_folder_ext.outputs.owned import open_existing
from anomalib_folder_ext.outputs.result import BatchesResult, FolderResult
from anomalib_folder_ext.run.anomalibcli import anomalib_cli, predict_arguments, the_writer
from anomalib_folder_ext.outputs.runplan import OutputNames, run_settings
from anomalib_folder_ext.distributed.ranks import agreed_on_every_rank, decided_on_rank_zero, start_ranks
from anomalib_folder_ext.callbacks.runinfo import backend_of, device_text, precision_name


@dataclass
class FolderJob:
    """One batch folder: the anomalib arguments that select it, after the shared ones."""

    name: str
    args: list[str]
    origin: str  # where the folder came from, for messages: an override file or the batch root
    config: object = None  # its parsed anomalib config
    datamodule: object = None
    names: list[str] = field(default_factory=list)
    plan: object = None  # its OutputNames
    output: object = None  # its FolderOutput: input folder and output dir
    listed_s: float = 0.0  # time to list its images (before the first folder runs)
    finished: dict | None = None  # the finished record of an earlier run that did this folder (resume)

    def source(self) -> str:
        """Where it was named, absolute: its override file, or the batch root holding it. The nodes of
        one job must agree on these (which folders a root holds is rank 0's view)."""
        if self.args[:1] == ["--config"]:
            return str(Path(self.args[1]).resolve())
        return str(Path(self.args[1]).resolve().parent)


def _rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


@rank_zero_only
def _say(text: str) -> None:
    print(text, flush=True)


def _shared_settings(config) -> dict:  # noqa: ANN001
    """Everything but the data: what all folders of one run must agree on."""
    values = config.predict.as_dict()
    return {key: value for key, value in values.items() if key not in {"data", "config", "__path__"}}


_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                      "lightning_utilities.core.rank_zero")


class _QuietRepeats(logging.Filter):
    """From the second folder on, Lightning's per-run notices say nothing new."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("The following callbacks returned in") or "available:" in text)


def run_batches(
    base_args: Sequence[str], jobs: list[FolderJob], output_root: str | Path, resume: bool = True, overwrite: bool = False,
    terms: Terms = BATCHES_COMMAND,
) -> BatchesResult:
    """Predict every folder of ``jobs`` with one model and one Trainer; see the module doc. The folders'
    results (on rank 0; the other ranks' is empty)."""
    run = BatchRun(base_args, jobs, output_root, resume, overwrite, terms)
    run.prepare()
    for number, job in enumerate(run.jobs, 1):  # rank 0's list, on every rank
        run.run_folder(number, job)
    return run.finish()


class BatchRun:
    """anomalib's CLI objects (model, Engine, the writer), the folders, and the progress so far."""

    def __init__(
        self, base_args: Sequence[str], jobs: list[FolderJob], output_root: str | Path, resume: bool, overwrite: bool = False,
        terms: Terms = BATCHES_COMMAND,
    ) -> None:
        self.started = time.perf_counter()
        self.base_args, self.jobs, self.output_root, self.resume = list(base_args), jobs, Path(output_root), resume
        self.first_args, self.terms = list(jobs[0].args), terms
        self.cli = anomalib_cli([*base_args, *self.first_args])  # model, first datamodule, Engine
        self.writer = the_writer(self.cli, required=True)
        # --resume False: redo every folder; one line per folder here instead of the writer's, and one ending
        self.overwrite = overwrite or self.writer.options.overwrite or not resume
        self.writer.configure(terms=terms, resume=resume, overwrite=self.overwrite, announce=False)
        predict = self.cli.config.predict
        self.ckpt_path = predict.get("ckpt_path")
        self.settings = run_settings(self.writer.options, self.ckpt_path or getattr(self.cli.model, "model_file", None),
                                                     precision_name(predict.trainer.precision), backend_of(self.cli.model))
        # The Trainer now rather than at the first predict (anomalib's Engine makes it on demand, with
        # the same arguments): the other ranks join before the folders are read, to take rank 0's decisions.
        self.cli.engine._setup_trainer(self.cli.model)  # noqa: SLF001 - the Engine makes it only inside its calls
        self.strategy = self.cli.engine.trainer.strategy
        start_ranks(self.cli.engine.trainer)
        liveness.watch(self.strategy, rerun=_rerun(terms, resume))
        data = {name: value for name, value in self.cli.datamodule.row_settings().items()
                if name not in {"folder_path", "output_dir"}}  # each folder's are compared as it starts
        agreed_on_every_rank(self.strategy, {"input": sorted({job.source() for job in jobs}), "output_root": str(
            self.output_root.resolve()), "resume": resume, **data, **self.settings})
        self.jobs = decided_on_rank_zero(self.strategy, lambda: jobs)  # rank 0's view of the batch root
        self.reports: list[summary.BatchReport] = []
        self.results: dict[str, FolderResult] = {}
        self.done_images = self.predicted_images = 0
        self.predict_seconds = 0.0
        self.loaded = False
        self.root: OutputRoot | None = None  # the combined files and their record; opened by prepare

    @property
    def total_images(self) -> int:
        return sum(len(job.names) for job in self.jobs)

    def prepare(self) -> None:
        """Every folder's config, image list and output dir, before the first runs: a mistake in the
        last costs seconds. The output root's own checks were made before anything loaded."""
        shared = _shared_settings(self.cli.config)
        for index, job in enumerate(self.jobs):
            self._load_folder(index, job, shared)
        decided = decided_on_rank_zero(self.strategy, self._read_folders)
        for job, (paths, finished) in zip(self.jobs, decided, strict=True):
            job.finished = finished
            if job.plan is None:  # another rank's: rank 0 listed and planned the folder
                job.datamodule.relative_paths = paths
                self._plan_folder(job)
        _say(f"{counted(len(self.jobs), 'batch folder')}, {self.total_images} images -> {self.output_root.resolve()}"
             f" (resume {'on: finished folders and images are skipped' if self.resume else 'off: everything is redone'})")

    def _load_folder(self, index: int, job: FolderJob, shared: dict) -> None:
        """The folder's config (only data settings may differ from the first's), datamodule and images."""
        from anomalib.utils.config import update_config
        from lightning.pytorch.cli import instantiate_class

        from anomalib_folder_ext.data.datamodule import FolderDataModule

        config = self.cli.config
        if index or job.args != self.first_args:
            config = self.cli.parser.parse_args([*self.base_args, *job.args])
            config["predict"] = update_config(config["predict"])
            mine = _shared_settings(config)
            changed = [key for key in sorted(set(shared) | set(mine)) if shared.get(key) != mine.get(key)]
            if changed:
                msg = (f"{job.origin}: changes {changed[0]}; the folders of one run share the model and the "
                       "trainer, so only data settings may differ per folder (run that folder on its own instead)")
                raise InputError(msg)
        data = config.predict.data
        if data.init_args.get("output_dir") is None:
            data.init_args.output_dir = str(self.output_root / default_output_dir(data.init_args.folder_path).name)
        datamodule = self.cli.datamodule if config is self.cli.config else instantiate_class((), data.as_dict())
        if not isinstance(datamodule, FolderDataModule):
            msg = f"{job.origin}: data must be anomalib_folder_ext.data.FolderDataModule for a multi-folder run"
            raise InputError(msg)
        datamodule.output_dir = Path(data.init_args.output_dir)
        job.config, job.datamodule = config, datamodule

    def _read_folders(self) -> list[tuple[list[Path], dict | None]]:
        """Rank 0: each folder's images, the checks of every output dir, the folders an earlier run
        finished; the output root opened for this run."""
        for job in self.jobs:
            listing = time.perf_counter()
            try:
                job.datamodule.setup("predict")  # lists the images: a missing or empty folder stops the run here
            except InputError as exc:
                raise exc.prefixed(f"{job.origin}: ") from None
            job.listed_s = time.perf_counter() - listing
            self._plan_folder(job)
        check_folder_outputs([job.output for job in self.jobs], self.output_root)
        for job in self.jobs:
            try:  # every refusal the writer would make when this folder's turn comes, made now
                outputdir.check_output_dir(job.output.output_dir, job.output.folder, job.plan,
                                           self.resume or self.overwrite,
                                           allow_other_files=self.writer.options.allow_other_files)
            except InputError as exc:
                raise exc.prefixed(f"{job.origin}: ") from None
        self.root = OutputRoot(self.output_root, [job.output for job in self.jobs], write=True)
        return [(job.datamodule.relative_paths, self._finished_earlier(job)) for job in self.jobs]

    def _plan_folder(self, job: FolderJob) -> None:
        job.names = [path.as_posix() for path in job.datamodule.relative_paths]
        job.plan = OutputNames.for_options(self.writer.options, job.names)
        job.output = FolderOutput(job.name, job.origin, job.datamodule.folder_path, job.datamodule.output_dir)

    def _finished_earlier(self, job: FolderJob) -> dict | None:
        """The record of an earlier run that finished this folder as this run would (resume), else ``None``."""
        directory = open_existing(job.datamodule.output_dir) if self.resume else None
        if directory is None:
            return None
        with directory:
            return finished_run(directory, self.settings, job.plan, job.datamodule.folder_path)

    def run_folder(self, number: int, job: FolderJob) -> None:
        """Skip the folder if an earlier run finished it, else one ``Trainer.predict``; then its line."""
        started = time.perf_counter()
        if job.finished is None:
            self._predict(job)
        if not _rank_zero():
            return
        out = job.datamodule.output_dir
        if job.finished is not None:
            record, status = job.finished, "done earlier"
        else:
            record = journal.read_finished(out) or {}
            status = "resumed" if record.get("predicted", 0) < len(job.names) else "ran"
        rows = [summary.row_from_csv(values) for values in summary.read_results(out)]
        seconds = time.perf_counter() - started + job.listed_s
        report = summary.BatchReport(job.name, self.root.shown(out), rows, status, record.get("predicted", 0), record.get("loop_s", 0.0))
        if status != "done earlier":
            report.overhead_s = max(seconds - report.loop_s, 0.0)
            self.predicted_images += report.predicted
            self.predict_seconds += seconds
        self.reports.append(report)
        self.results[job.name] = FolderResult(out, tuple(rows), report.predicted, report.loop_s, record.get("startup_s"), status)
        self.done_images += len(job.names)
        _say(_batch_line(number, len(self.jobs), report, seconds, self.done_images, self.total_images,
                         self.predicted_images / self.predict_seconds if self.predicted_images else 0.0))

    def _predict(self, job: FolderJob) -> None:
        # each folder's config.yaml is its own
        self.writer.configure(resume=self.resume, overwrite=self.overwrite, announce=False, run_config=job.config.predict)
        if self.loaded:
            self.cli.engine.trainer.predict(self.cli.model, datamodule=job.datamodule, return_predictions=False)
            return
        self.cli.engine.predict(**{**predict_arguments(self.cli), "datamodule": job.datamodule, "return_predictions": False})
        self.loaded = True
        quiet = _QuietRepeats()
        for name in _RANK_ZERO_LOGGERS:
            logging.getLogger(name).addFilter(quiet)

    def finish(self) -> BatchesResult:
        """Rank 0: the combined files (this run's folders and those of earlier runs they covered), the
        run's last line; the folders' results (:class:`NoImagePredicted` when none of this run's images was)."""
        liveness.finished()  # no rank needs another from here on
        result = BatchesResult(self.output_root, self.results)
        if not _rank_zero():
            return result
        every = [row for report in self.reports for row in report.rows]
        ok = sum(row.status == "ok" for row in every)
        earlier = self.root.earlier_reports()
        covered = sorted([*self.reports, *earlier], key=lambda report: natural_key(report.name)) if earlier else self.reports
        parameters = {
            "checkpoint": str(Path(self.ckpt_path).resolve()) if self.ckpt_path else getattr(self.cli.model, "model_file", "(none)"),
            "output root": self.output_root.resolve(),
            "batch folders": f"{len(covered)} ({len(earlier)} from earlier runs)" if earlier else len(covered),
            "precision": self.settings["precision"],
            "device": f"{device_text(self.strategy)}, ranks {self.strategy.world_size}",
            "wall time": f"{time.perf_counter() - self.started:.1f} s (this run, from reading the configs)",
        }
        written = self.root.write_combined(covered, parameters)
        also = f"; the combined files also cover {len(earlier)} folder{'s' if len(earlier) > 1 else ''} of earlier runs" \
            if earlier else ""
        _say(
            f"done: {counted(len(self.reports), 'batch folder')}, {len(every)} images ({ok} ok, {len(every) - ok} failed) -> "
            f"{self.output_root.resolve()}: {written}, "
            f"and one output dir per folder (maps, results.csv, results_summary.txt){also}"
        )
        first = next(((report, row) for report in self.reports for row in report.rows if row.status != "ok"), None)
        reason = f"{first[0].name}/{display_name(first[1].image)}: {first[1].error}" if first else ""
        try:
            check_failures(len(every), len(every) - ok, str(self.output_root / summary.ALL_CSV_NAME), reason)
        except NoImagePredicted as error:
            error.result = result
            raise
        return result


def _rerun(terms: Terms, resume: bool) -> str:
    """What the line of a lost rank tells the user to run: the same command, or the same Python call."""
    if terms in (BATCHES_COMMAND, PREDICT_COMMAND):
        return "the same command" if resume else "the same command with --resume True"
    return f"{terms.name} again" + ("" if resume else " with resume=True")


def _batch_line(
    number: int, count: int, report: summary.BatchReport, seconds: float, done: int, total: int, rate_so_far: float
) -> str:
    """The folder's line: what it held, how long it took, and the whole run's progress and ETA."""
    stats = summary.score_statistics(report.rows)
    head = f"[{number}/{count}] {report.name}: "
    if report.status == "done earlier":
        body = f"done earlier, {stats['images']} images, skipped in {seconds:.2f} s"
    else:
        rate = f"{report.predicted / report.loop_s:.2f} images/s" if report.loop_s > 0 else "no images to predict"
        body = (f"{stats['images']} images ({stats['ok']} ok, {stats['failed']} failed"
                + (f", {report.predicted} predicted, the rest resumed" if report.status == "resumed" else "")
                + f") in {seconds:.1f} s, {rate}, folder overhead {report.overhead_s:.2f} s")
    if stats["ok"]:
        body += f", max score {stats['score_max']:.4g}"
    eta = f", ETA {duration((total - done) / rate_so_far)}" if rate_so_far and done < total else ""
    return f"{head}{body} -> {report.output_dir} | {done}/{total} images{eta}"
