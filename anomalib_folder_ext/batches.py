"""Many batch folders in one process: anomalib's CLI builds the model, the datamodule and the Engine
once; every folder then runs through the same ``Engine`` / ``Trainer.predict`` with its own
datamodule and output dir. The checkpoint is loaded once, by the first folder that needs a run.

Each folder is one ordinary predict (its own ``results.csv``, summary, ``config.yaml`` and
journal); the output root gets ``all_batches.csv`` and ``all_batches_summary.txt``, built from
what the folders hold on disk, and ``all_batches.json``, the record of which folders the combined
files cover (a run of some folders, ``--only``, adds to them instead of replacing them). Every
folder's output dir is checked before the first folder runs. Under DDP every rank runs this same
loop (Lightning starts the ranks by re-running the command), makes the same decisions from the
same files, and only rank 0 prints and writes the combined files.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from anomalib_folder_ext import journal, summary
from anomalib_folder_ext.artifacts import default_output_dir, display_name
from anomalib_folder_ext.console import report_failures
from anomalib_folder_ext.discover import RUN_RECORD_NAMES, natural_key
from anomalib_folder_ext.errors import InputError, OutputDirError
from anomalib_folder_ext.owned import OwnedDir, open_existing

ROOT_RECORD = RUN_RECORD_NAMES[1]  # all_batches.json: the folders the combined files cover
INDEX_HTML = "index.html"
ROOT_FILES = (summary.ALL_CSV_NAME, summary.ALL_SUMMARY_NAME, INDEX_HTML)


def check_output_root(output_root: Path) -> None:
    """Refuse an output root whose combined-file names are taken by someone else's files or links.

    The combined files are this tool's when ``all_batches.json`` is (or, from before that record,
    when ``all_batches.csv`` has exactly this tool's header); otherwise a file under one of their
    names is the user's and is not replaced.
    """
    if Path(os.path.realpath(output_root)) == Path("/"):
        msg = f"--output_root {output_root}: is the root of the file system; choose a folder of its own"
        raise OutputDirError(msg)
    directory = open_existing(output_root)
    if directory is None:
        return
    with directory:
        for name in (ROOT_RECORD, *ROOT_FILES):
            if directory.is_link(name):
                msg = (f"{output_root / name}: is a symbolic link; a run never writes through a link: remove it or "
                       "choose another --output_root")
                raise OutputDirError(msg)
        if _read_root_record(directory) is not None or _legacy_combined_csv(directory):
            return
        taken = [name for name in (ROOT_RECORD, *ROOT_FILES) if directory.lstat(name) is not None]
        if taken:
            msg = (f"{output_root / taken[0]}: is not from a run of this tool (no {ROOT_RECORD} record), so it is not "
                   "replaced: move it away or choose another --output_root")
            raise OutputDirError(msg)


def _read_root_record(directory: OwnedDir) -> dict | None:
    try:
        record = json.loads(directory.read_text(ROOT_RECORD))
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("tool") == journal.TOOL and isinstance(record.get("folders"), list)):
        return None
    record["folders"] = [entry for entry in record["folders"] if isinstance(entry, dict)
                         and isinstance(entry.get("name"), str) and isinstance(entry.get("output_dir"), str)]
    return record


def _legacy_combined_csv(directory: OwnedDir) -> bool:
    try:
        first = directory.read_text(summary.ALL_CSV_NAME).split("\n", 1)[0]
    except OSError:
        return False
    return first == ",".join(("batch", *summary.CSV_COLUMNS))

# Lightning's precision names, as the trainer reports them for what a config may say.
_PRECISION_NAMES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true", "64-true": "64-true"}


def precision_name(value: object) -> str:
    """``trainer.precision`` as the Trainer reports it (``32`` -> ``32-true``), to compare settings.

    Example:
        >>> precision_name(32), precision_name("bf16-mixed")
        ('32-true', 'bf16-mixed')
    """
    return _PRECISION_NAMES.get(str(value), str(value))


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
    listed_s: float = 0.0  # time to list its images (before the first folder runs)


def _rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _say(text: str) -> None:
    if _rank_zero():
        print(text, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
    base_args: Sequence[str], jobs: list[FolderJob], output_root: str | Path, resume: bool = True, overwrite: bool = False
) -> int:
    """Predict every folder of ``jobs`` with one model and one Trainer; see the module doc."""
    run = BatchRun(base_args, jobs, output_root, resume, overwrite)
    run.prepare()
    for number, job in enumerate(jobs, 1):
        run.run_folder(number, job)
    return run.finish()


class BatchRun:
    """anomalib's CLI objects (model, Engine, the writer), the folders, and the progress so far."""

    def __init__(
        self, base_args: Sequence[str], jobs: list[FolderJob], output_root: str | Path, resume: bool, overwrite: bool = False
    ) -> None:
        from anomalib.cli.cli import AnomalibCLI
        from lightning.pytorch.cli import SaveConfigCallback

        from anomalib_folder_ext.callbacks import AnomalyMapWriter

        self.started = time.perf_counter()
        self.base_args, self.jobs, self.output_root, self.resume = list(base_args), jobs, Path(output_root), resume
        self.cli = AnomalibCLI([*base_args, *jobs[0].args], run=False)  # model, first datamodule, Engine
        callbacks = self.cli.config_init.predict.trainer.callbacks or []
        writers = [callback for callback in callbacks if isinstance(callback, AnomalyMapWriter)]
        if len(writers) != 1:
            msg = "a multi-folder run needs exactly one anomalib_folder_ext.callbacks.AnomalyMapWriter in trainer.callbacks"
            raise InputError(msg)
        self.writer = writers[0]
        self.writer.resume = resume
        self.writer.overwrite = overwrite or self.writer.overwrite or not resume  # --resume False: redo every folder
        self.writer.announce = False  # one line per folder here instead, and one exit status for the run
        self.save_config = next((callback for callback in callbacks if isinstance(callback, SaveConfigCallback)), None)
        predict = self.cli.config.predict
        self.ckpt_path = predict.get("ckpt_path")
        self.settings = self.writer.run_settings(self.ckpt_path, precision_name(predict.trainer.precision))
        self.reports: list[summary.BatchReport] = []
        self.done_images = self.predicted_images = 0
        self.predict_seconds = 0.0
        self.loaded = False
        self.root: OwnedDir | None = None  # the output root: the combined files and their record
        self.earlier_entries: list[dict] = []  # folders of earlier runs the combined files cover

    @property
    def total_images(self) -> int:
        return sum(len(job.names) for job in self.jobs)

    def prepare(self) -> None:
        """Every folder's config and image list, before the first runs: a mistake in the last costs seconds."""
        from anomalib.utils.config import update_config
        from lightning.pytorch.cli import instantiate_class

        from anomalib_folder_ext.data import FolderDataModule

        from anomalib_folder_ext import outputdir

        check_output_root(self.output_root)
        shared = _shared_settings(self.cli.config)
        output_dirs: dict[Path, str] = {}
        root_key = self.output_root.resolve()
        for index, job in enumerate(self.jobs):
            config = self.cli.config
            if index:
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
            datamodule = self.cli.datamodule if index == 0 else instantiate_class((), data.as_dict())
            if not isinstance(datamodule, FolderDataModule):
                msg = f"{job.origin}: data must be anomalib_folder_ext.data.FolderDataModule for a multi-folder run"
                raise InputError(msg)
            datamodule.output_dir = Path(data.init_args.output_dir)
            key = datamodule.output_dir.resolve()
            if key in output_dirs:
                msg = f"{job.origin}: output_dir {datamodule.output_dir} is also {output_dirs[key]}'s; each folder needs its own"
                raise InputError(msg)
            if key == root_key:
                msg = (f"{job.origin}: output_dir {datamodule.output_dir} is the output root, where the combined files "
                       "go; give each folder an output dir of its own")
                raise InputError(msg)
            output_dirs[key] = job.name
            listing = time.perf_counter()
            try:
                datamodule.setup("predict")  # lists the images: a missing or empty folder stops the run here
            except InputError as exc:
                raise InputError(f"{job.origin}: {exc}") from None
            job.listed_s = time.perf_counter() - listing
            job.config, job.datamodule = config, datamodule
            job.names = [path.as_posix() for path in datamodule.relative_paths]
            job.plan = self.writer.output_names(job.names)
            try:  # every refusal the writer would make when this folder's turn comes, made now
                outputdir.check_output_dir(datamodule.output_dir, datamodule.folder_path, job.plan,
                                           self.writer.resume or self.writer.overwrite,
                                           allow_other_files=self.writer.allow_other_files)
            except InputError as exc:
                raise InputError(f"{job.origin}: {exc}") from None
        inputs = {job.datamodule.folder_path.resolve(): job.name for job in self.jobs}
        for job in self.jobs:
            reader = inputs.get(job.datamodule.output_dir.resolve())
            if reader is not None:
                msg = (f"{job.origin}: output_dir {job.datamodule.output_dir} is the input folder of {reader}; "
                       "its maps would be read as images: choose another output_dir")
                raise InputError(msg)
        self._open_root()
        _say(f"{len(self.jobs)} batch folders, {self.total_images} images -> {self.output_root.resolve()}"
             f" (resume {'on: finished folders and images are skipped' if self.resume else 'off: everything is redone'})")

    def _open_root(self) -> None:
        """The output root, and the record of the folders its combined files cover (this run's added now)."""
        self.root = OwnedDir(self.output_root, create=True)
        record = _read_root_record(self.root) or {"folders": []}
        mine = {self._entry_dir(job.datamodule.output_dir) for job in self.jobs}
        self.earlier_entries = [entry for entry in record["folders"] if entry["output_dir"] not in mine]
        if _rank_zero():
            self._write_root_record()

    def _entry_dir(self, output_dir: Path) -> str:
        try:
            return output_dir.resolve().relative_to(self.output_root.resolve()).as_posix()
        except ValueError:
            return str(output_dir.resolve())

    def _write_root_record(self) -> None:
        entries = [*self.earlier_entries,
                   *({"name": job.name, "output_dir": self._entry_dir(job.datamodule.output_dir), "origin": job.origin}
                     for job in self.jobs)]
        entries.sort(key=lambda entry: (natural_key(entry["name"]), entry["output_dir"]))
        record = {"tool": journal.TOOL, "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "folders": entries}
        self.root.write(ROOT_RECORD, (json.dumps(record, indent=1) + "\n").encode())

    def run_folder(self, number: int, job: FolderJob) -> None:
        """Skip the folder if an earlier run finished it, else one ``Trainer.predict``; then its line."""
        started = time.perf_counter()
        out = job.datamodule.output_dir
        record = None
        if self.resume:
            with OwnedDir(out) if out.is_dir() else nullcontext() as directory:
                if directory is not None:
                    record = journal.finished_run(directory, self.settings, job.plan, job.datamodule.folder_path)
        if record is not None:
            status = "done earlier"
        else:
            self._predict(job)
            record = journal.read_finished(out) or {}
            status = "resumed" if record.get("predicted", 0) < len(job.names) else "ran"
        rows = [summary.row_from_csv(values) for values in summary.read_results(out)] if _rank_zero() else []
        seconds = time.perf_counter() - started + job.listed_s
        shown = os.path.relpath(out.resolve(), self.output_root.resolve())
        report = summary.BatchReport(job.name, shown, rows, status, record.get("predicted", 0), record.get("loop_s", 0.0))
        if status != "done earlier":
            report.overhead_s = max(seconds - report.loop_s, 0.0)
            self.predicted_images += report.predicted
            self.predict_seconds += seconds
        self.reports.append(report)
        self.done_images += len(job.names)
        _say(_batch_line(number, len(self.jobs), report, seconds, self.done_images, self.total_images,
                         self.predicted_images / self.predict_seconds if self.predicted_images else 0.0))

    def _predict(self, job: FolderJob) -> None:
        if self.save_config is not None:  # each folder's config.yaml is its own
            self.save_config.config, self.save_config.already_saved = job.config.predict, False
        if self.loaded:
            self.cli.engine.trainer.predict(self.cli.model, datamodule=job.datamodule, return_predictions=False)
            return
        self.cli.engine.predict(
            model=self.cli.model, datamodule=job.datamodule, ckpt_path=self.ckpt_path, return_predictions=False
        )
        self.loaded = True
        quiet = _QuietRepeats()
        for name in _RANK_ZERO_LOGGERS:
            logging.getLogger(name).addFilter(quiet)

    def finish(self) -> int:
        """Rank 0: the combined files (this run's folders and those of earlier runs they covered), the
        run's last line; the exit status (of this run's folders)."""
        if not _rank_zero():
            return 0
        every = [row for report in self.reports for row in report.rows]
        ok = sum(row.status == "ok" for row in every)
        earlier = self._earlier_reports()
        covered = sorted([*self.reports, *earlier], key=lambda report: natural_key(report.name)) if earlier else self.reports
        trainer = self.cli.config.predict.trainer
        parameters = {
            "checkpoint": str(Path(self.ckpt_path).resolve()) if self.ckpt_path else "(none)",
            "output root": self.output_root.resolve(),
            "batch folders": len(covered) if len(covered) == len(self.reports)
            else f"{len(covered)} ({len(covered) - len(self.reports)} from earlier runs)",
            "precision": self.settings["precision"],
            "device": f"{trainer.accelerator}, devices {trainer.devices}",
            "wall time": f"{time.perf_counter() - self.started:.1f} s (this run, from reading the configs)",
        }
        self.root.write(summary.ALL_CSV_NAME, summary.combined_csv_text(covered).encode())
        self.root.write(summary.ALL_SUMMARY_NAME, summary.combined_summary_text(parameters, covered).encode())
        self._write_root_record()
        extra = ""
        if any(_report_exists(self.output_root / report.output_dir) for report in covered):
            from anomalib_folder_ext.report import index_html

            self.root.write(INDEX_HTML, index_html(covered).encode())
            extra = f", {INDEX_HTML} (every folder's report)"
        more = len(earlier)
        also = f"; the combined files also cover {more} folder{'s' if more > 1 else ''} of earlier runs" if more else ""
        _say(
            f"done: {len(self.reports)} batch folders, {len(every)} images ({ok} ok, {len(every) - ok} failed) -> "
            f"{self.output_root.resolve()}: {summary.ALL_CSV_NAME} (one row per image), {summary.ALL_SUMMARY_NAME}{extra}, "
            f"and one output dir per folder (maps, results.csv, results_summary.txt){also}"
        )
        first = next(((report, row) for report in self.reports for row in report.rows if row.status != "ok"), None)
        reason = f"{first[0].name}/{display_name(first[1].image)}: {first[1].error}" if first else ""
        return report_failures(len(every), len(every) - ok, str(self.output_root / summary.ALL_CSV_NAME), reason)

    def _earlier_reports(self) -> list[summary.BatchReport]:
        """Folders an earlier run of this output root finished and this run did not touch, from their files."""
        reports = []
        for entry in self.earlier_entries:
            out = self.output_root / entry["output_dir"]
            record = journal.read_finished(out)
            if record is None:
                continue  # gone, or never finished: nothing to show of it
            try:
                rows = [summary.row_from_csv(values) for values in summary.read_results(out)]
            except (OSError, ValueError, InputError):
                continue
            reports.append(summary.BatchReport(entry["name"], os.path.relpath(out.resolve(), self.output_root.resolve()),
                                               rows, "done earlier", record.get("predicted", 0), record.get("loop_s", 0.0)))
        return reports


def _report_exists(output_dir: Path) -> bool:
    from anomalib_folder_ext.report import REPORT_HTML

    return (output_dir / REPORT_HTML).is_file()


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
    eta = f", ETA {_duration((total - done) / rate_so_far)}" if rate_so_far and done < total else ""
    return f"{head}{body} -> {report.output_dir} | {done}/{total} images{eta}"
