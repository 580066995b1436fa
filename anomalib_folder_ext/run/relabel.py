"""``anomalib-folder relabel``: an output dir, or every folder of an output root, decided again by new
thresholds without the model (:mod:`anomalib_folder_ext.outputs.relabel`); an output root's combined files
are then made again from its folders."""

from __future__ import annotations

import time
from pathlib import Path

from anomalib_folder_ext.console import count, say, shown_dir
from anomalib_folder_ext.decision.calibration import read_calibration
from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.options import check_thresholds
from anomalib_folder_ext.outputs import journal, summary
from anomalib_folder_ext.outputs.outputroot import ROOT_RECORD, OutputRoot
from anomalib_folder_ext.outputs.relabel import relabel_output_dir
from anomalib_folder_ext.outputs.result import BatchesResult, FolderResult


def relabel(path: str | Path, calibration: str | Path | None = None, threshold: float | None = None,
            pixel_threshold: float | None = None, uncertain_below: float | None = None,
            announce: bool = True) -> FolderResult | BatchesResult:
    """Relabel the output dir ``path``, or every folder of the output root ``path``; what it holds now."""
    path = Path(path).expanduser()
    started = time.perf_counter()
    check_thresholds(threshold=threshold, pixel_threshold=pixel_threshold, uncertain_below=uncertain_below)
    decided = read_calibration(str(calibration) if calibration else None)
    given = {"calibration": decided, "threshold": threshold, "pixel_threshold": pixel_threshold,
             "uncertain_below": uncertain_below}
    if not (path / ROOT_RECORD).is_file():
        thresholds = relabel_output_dir(path, **given)
        result = FolderResult.read(path, "relabelled")
        if announce:
            say(_last_line(shown_dir(path), result.rows, thresholds, started))
        return result
    root = OutputRoot(path, [], write=False)
    folders, reports = {}, []
    for entry in root.earlier_entries:
        out = path / entry["output_dir"]
        if journal.read_finished(out) is None:
            continue  # never finished: nothing to relabel (its folder runs again with resume)
        thresholds = relabel_output_dir(out, **given)
        folders[entry["name"]] = result = FolderResult.read(out, "relabelled")
        reports.append(summary.BatchReport(entry["name"], root.shown(out), list(result.rows), "relabelled"))
    parameters = {"output root": path.resolve(), "batch folders": len(reports),
                  "relabelled": f"{time.strftime('%Y-%m-%d %H:%M:%S')}, without the model"}
    written = root.write_combined(reports, parameters)
    if announce:
        rows = [row for report in reports for row in report.rows]
        say(_last_line(f"{shown_dir(path)} ({len(reports)} folders)", rows, thresholds if reports else None, started)
            + f"; {written}")
    return BatchesResult(path, folders)


def _last_line(where: str, rows: list, thresholds: Thresholds | None, started: float) -> str:
    stats = summary.score_statistics(rows)
    decided = summary.decisions_text(stats) if stats["decided"] else "no decision"
    rule = (f" (image threshold {thresholds.image:.6g}, from the {thresholds.image_source})"
            if thresholds is not None and thresholds.decides else "")
    return (f"{where}: {count(len(rows))} images relabelled in {time.perf_counter() - started:.1f} s: {decided}{rule} "
            f"\u2014 {summary.CSV_NAME}, {summary.DEFECTIVE_NAME}, {summary.SUMMARY_NAME}")
