"""The end of one folder's run: every rank's rows merged on rank 0, then ``results.csv``, the text
summary, the report, the finished record (``.journal/finished.json``, for tools) and the last line."""

from __future__ import annotations

import os

from lightning.pytorch import Trainer

from anomalib_folder_ext.outputs import artifacts, journal, summary
from anomalib_folder_ext.console import check_failures, count, images_per_s, say, shown_dir
from anomalib_folder_ext.callbacks.deciding import decision_record
from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.errors import NoImagePredicted
from anomalib_folder_ext.options import Normalization, WriterOptions
from anomalib_folder_ext.outputs.outputdir import REPORT_NAMES
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.result import FolderResult
from anomalib_folder_ext.callbacks.runinfo import (
    LoopClock,
    RankReport,
    gather_to_rank_zero,
    device_text,
    peak_memory_mib,
    precision_text,
)
from anomalib_folder_ext.outputs.runplan import RunPlan

_NORMALIZATION_NOTES = {
    Normalization.per_image: "per_image (each map by its own min and max: every map's max is 1)",
    Normalization.model: "model (anomalib's pixel normalisation from the checkpoint: 0.5 = the pixel threshold in force; clipped)",
    Normalization.fixed: "fixed (raw {options.vmin:g} -> 0, raw {options.vmax:g} -> 1; clipped)",
}


class FolderFinish:
    """What the end of a folder's run needs to know; :meth:`run` is called on every rank."""

    def __init__(self, options: WriterOptions, directory: OwnedDir, plan: RunPlan, checkpoint: str | None,
                 thresholds: Thresholds, announce: bool = True) -> None:
        self.options, self.directory, self.plan = options, directory, plan
        self.checkpoint, self.thresholds, self.announce = checkpoint, thresholds, announce

    def run(self, trainer: Trainer, mine: dict[str, summary.ImageResult], clock: LoopClock) -> FolderResult | None:
        """Gather every rank's rows on rank 0, which writes the files and says the last line; the folder's
        result on rank 0 (``None`` on the others), as :meth:`FolderResult.read` would read it back.

        Raises :class:`~anomalib_folder_ext.errors.NoImagePredicted` (with the result) when no image
        succeeded, once every file is written.
        """
        reports = gather_to_rank_zero(RankReport(list(mine.values()), clock.startup_s(), clock.loop_s(),
                                                 *peak_memory_mib(trainer)))
        if not trainer.is_global_zero:
            return None
        merged = dict(self.plan.earlier)
        merged.update((row.image, row) for report in reports for row in report.rows)
        rows = [merged[name] for name in self.plan.names if name in merged]
        predicted = sum(len(report.rows) for report in reports)
        loop_s = max((report.loop_s for report in reports if report.rows), default=0.0)
        parameters = self.parameters(trainer, rows, reports, predicted, loop_s)
        self.directory.write(summary.CSV_NAME, summary.csv_text(rows).encode())
        self.write_views(trainer, rows, parameters)
        journal.write_finished(self.directory, {
            "settings": self.plan.settings,
            "images": journal.names_digest(self.plan.names),
            "count": len(rows),
            "predicted": predicted,
            "loop_s": round(loop_s, 3),
            "startup_s": reports[0].startup_s,
            "precision": str(trainer.precision),
            "image_size": list(trainer.datamodule.resolve_image_size()),  # what a calibration records
            **decision_record(trainer.lightning_module, self.options, self.thresholds),  # what a relabel needs
            "parameters": {key: str(value) for key, value in parameters.items()},
            "folder": str(trainer.datamodule.folder_path),
            "report": {"top_k": self.options.report_top_k, "colormap": self.options.colormap,
                       "alpha": self.options.overlay_alpha} if self.options.report else None,
            "top_count": self.options.top_count,
            "ranks": [report.record() for report in reports],
        })
        result = FolderResult(self.directory.path, tuple(rows), predicted, round(loop_s, 3), reports[0].startup_s)
        if self.announce:
            progress = trainer.progress_bar_callback
            if progress is not None:  # finish the bar first: the last line goes below it
                progress.teardown(trainer, trainer.lightning_module, "predict")
            try:
                overlays = self.options.overlay_format.value if self.options.save_overlay else None
                say(last_line(self.directory.path, rows, predicted, loop_s, self.options.report, overlays,
                              self.thresholds.decides))
            except NoImagePredicted as error:
                error.result = result
                raise
        return result

    def write_views(self, trainer: Trainer, rows: list[summary.ImageResult], parameters: dict[str, object]) -> None:
        """The summary, ``defective.csv`` and the report of ``rows`` (at the end, and while a watch runs)."""
        self.directory.write(summary.SUMMARY_NAME, summary.summary_text(parameters, rows, self.options.top_count).encode())
        if self.thresholds.decides:
            self.directory.write(summary.DEFECTIVE_NAME, summary.defective_csv_text(rows).encode())
        if self.options.report:
            from anomalib_folder_ext.outputs.report import write_report

            write_report(self.directory, trainer.datamodule.folder_path, rows, parameters, self.options.report_top_k,
                         self.options.colormap, self.options.overlay_alpha, self.thresholds)

    def refresh(self, trainer: Trainer, earlier: dict, mine: dict[str, summary.ImageResult], clock: LoopClock) -> None:
        """The views of a watch's rows so far, from its own thread (copies: the predict loop goes on)."""
        merged = {**earlier, **mine}
        rows = [merged[name] for name in list(self.plan.names) if name in merged]
        report = RankReport(list(mine.values()), clock.startup_s(), clock.loop_s(), *peak_memory_mib(trainer))
        self.write_views(trainer, rows, self.parameters(trainer, rows, [report], len(mine), report.loop_s))

    def parameters(self, trainer: Trainer, rows: list[summary.ImageResult], reports: list[RankReport],
                   predicted: int, loop_s: float) -> dict[str, object]:
        """The summary's head: what ran, on what, and how it went."""
        datamodule, options = trainer.datamodule, self.options
        ok = sum(row.status == "ok" for row in rows)
        dataset = datamodule.predict_data
        startups = [f"{report.startup_s:.1f}" for report in reports if report.startup_s is not None]
        per_rank = ", per rank" if len(reports) > 1 else ""
        resumed = f"; {len(rows) - predicted} finished by an earlier run (resumed)" if len(rows) > predicted else ""
        return {
            "checkpoint": self.checkpoint or "(none: weights as instantiated)",
            "folder": datamodule.folder_path.resolve(),
            "output dir": self.directory.path.resolve(),
            "image size (H, W)": dataset.image_size if dataset is not None else "",
            "batch size": datamodule.batch_size,
            "device": device_text(trainer.strategy),
            "ranks": f"{trainer.world_size} (images per rank: {', '.join(str(len(r.rows)) for r in reports)})",
            "precision": precision_text(trainer),
            "normalization": _NORMALIZATION_NOTES[options.normalization].format(options=options),
            **self.thresholds.parameters(),
            "map size": "each image's own size" if options.map_size.value == "original" else "the model's input size",
            "outputs": options.outputs_text(),
            "images": f"{len(rows)} ({ok} ok, {len(rows) - ok} failed){resumed}",
            "start-up": f"{' / '.join(startups)} s (process start to first batch{per_rank})" if startups else "n/a",
            "predict loop": f"{loop_s:.2f} s (first batch to last file written"
                            f"{', less the waits for images to land' if datamodule.streams else ''})",
            "throughput": f"{predicted / loop_s:.2f} images/s" if loop_s > 0 else "",
            "peak memory": " / ".join(report.peak_memory for report in reports) + (f" ({per_rank[2:]})" if per_rank else ""),
        }


def last_line(output_dir: os.PathLike, rows: list[summary.ImageResult], predicted: int, loop_s: float,
              report: bool, overlays: str | None = None, decided: bool = False) -> str:
    """The run's last line: where the results are and what they hold (``overlays``: their format, when
    written; ``decided``: the parts were decided, ``defective.csv`` lists the defects);
    :class:`NoImagePredicted` when nothing succeeded."""
    stats = summary.score_statistics(rows)
    shown = shown_dir(output_dir)
    files = [summary.CSV_NAME, *([summary.DEFECTIVE_NAME] if decided else []), summary.SUMMARY_NAME,
             *(REPORT_NAMES if report else ()), *([f"*_overlay.{overlays}"] if overlays else [])]
    first = next((row for row in rows if row.status != "ok"), None)
    check_failures(stats["images"], stats["failed"], f"{shown}{summary.CSV_NAME}",
                   f"{artifacts.display_name(first.image)}: {first.error}" if first else "")
    parts = [f"{count(stats['images'])} images" + (f" ({count(stats['failed'])} failed)" if stats["failed"] else "")]
    if stats["decided"]:
        parts.append(summary.decisions_text(stats))
    noted = sum(bool(row.note) for row in rows)
    if noted:
        parts.append(f"{count(noted)} with a note")
    if predicted < len(rows):
        parts.append(f"{count(len(rows) - predicted)} from the earlier run")
    if predicted and loop_s > 0:
        parts.append(images_per_s(predicted / loop_s))
    return f"{shown}: {', '.join(parts)} \u2014 {', '.join(files)}"
