"""One row per image, and the two summaries built from the rows: ``results.csv`` and
``results_summary.txt``. Rows hold numbers only, never maps, so a run of any size fits in memory.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from anomalib_folder_ext.console import counted
from anomalib_folder_ext.decision.rule import DECISIONS, DEFECT, OK, UNCERTAIN
from anomalib_folder_ext.outputs.artifacts import display_name
from anomalib_folder_ext.outputs.owned import OwnedDir

CSV_NAME = "results.csv"
DEFECTIVE_NAME = "defective.csv"
SUMMARY_NAME = "results_summary.txt"
NOTES_SHOWN = 20  # the summary lists this many notes; results.csv has every one


@dataclass
class ImageResult:
    """What the summary knows about one input image; the CSV columns, in order."""

    image: str
    status: str = "ok"
    error: str = ""
    note: str = ""  # what was changed on the way in: "16-bit scaled to 8", "alpha dropped", ...
    npy: str = ""
    png: str = ""
    overlay: str = ""
    mask: str = ""
    score: float = math.nan
    raw_min: float = math.nan
    raw_mean: float = math.nan
    norm_mean: float = math.nan
    pred_score: float = math.nan
    pred_label: bool | None = None
    decision: str = ""  # ok, uncertain or defect (decision.rule); empty without an image threshold
    defect_area: int | None = None  # pixels of the mask (the raw map at or above the pixel threshold)
    defect_fraction: float = math.nan  # of the map's pixels
    defect_regions: int | None = None  # 8-connected regions of the mask
    width: int = 0
    height: int = 0
    # The input file as it was read (journal.file_stamp): kept in the journal, not in results.csv, so
    # resume can tell an image replaced under the same name.
    source: tuple[int, ...] | None = field(default=None, metadata={"csv": False})


CSV_COLUMNS: tuple[str, ...] = tuple(column.name for column in fields(ImageResult) if column.metadata.get("csv", True))
_TEXT_COLUMNS = frozenset(("image", "status", "error", "note", "npy", "png", "overlay", "mask", "decision"))
# A cell a spreadsheet would run as a formula starts with one of these; such a cell gets a leading
# apostrophe (so does one that starts with an apostrophe, so reading it back is exact).
_FORMULA_START = ("=", "+", "-", "@", "'")


def csv_safe(text: str) -> str:
    """A text cell that no spreadsheet runs as a formula: ``=1+1`` becomes ``'=1+1``.

    Example:
        >>> csv_safe("=HYPERLINK(x).png"), csv_safe("plain.png"), csv_unsafe(csv_safe("-a.png"))
        ("'=HYPERLINK(x).png", 'plain.png', '-a.png')
    """
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def csv_unsafe(text: str) -> str:
    """The value a :func:`csv_safe` cell stands for."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def read_results(output_dir: str | Path) -> list[dict[str, str]]:
    """The rows of a finished run's ``results.csv``, in order, every value as its text (formula guards undone).

    A link named ``results.csv`` is not read (``OSError``): what a run reads back is its own file.
    """
    with OwnedDir(output_dir) as directory:
        text = directory.read_bytes(CSV_NAME).decode("utf-8")
    return parse_results(text)


def parse_results(text: str) -> list[dict[str, str]]:
    """``results.csv`` text as rows; ``ValueError`` when it is not a table of this tool's columns."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or not {"image", "status"} <= set(reader.fieldnames):
        msg = f"not a {CSV_NAME} of this tool (no image and status columns)"
        raise ValueError(msg)
    return [{key: csv_unsafe(value) if key in _TEXT_COLUMNS and value else value for key, value in row.items()}
            for row in reader]


def row_from_csv(values: Mapping[str, str]) -> ImageResult:
    """An :class:`ImageResult` back from its ``results.csv`` line (numbers to 6 significant digits)."""
    row = ImageResult(image=values["image"])
    for column in fields(ImageResult):
        text = values.get(column.name, "")
        if column.name == "image" or text == "":
            continue
        if column.type in {"float", float}:
            setattr(row, column.name, float(text))
        elif column.type in {"int", int, "int | None"}:
            setattr(row, column.name, int(text))
        elif column.name == "pred_label":
            row.pred_label = text == "true"
        else:
            setattr(row, column.name, text)
    return row


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return display_name(str(value))


def _csv_cells(row: ImageResult) -> list[str]:
    return [csv_safe(_cell(getattr(row, name))) if name in _TEXT_COLUMNS else _cell(getattr(row, name))
            for name in CSV_COLUMNS]


def csv_text(rows: Iterable[ImageResult], header: bool = True) -> str:
    """The CSV file's content: header plus one line per row, in the order given (``header=False``: the lines
    a watch appends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(_csv_cells(row))
    return buffer.getvalue()


DEFECTIVE_COLUMNS = ("image", "decision", "score", "pred_score", "defect_area", "defect_fraction", "defect_regions",
                     "npy", "png", "overlay", "mask")


def defective_rows(rows: Iterable[ImageResult]) -> list[ImageResult]:
    """The parts decided defect, then uncertain, each highest score first."""
    return sorted((row for row in rows if row.status == "ok" and row.decision in {DEFECT, UNCERTAIN}),
                  key=lambda row: (row.decision != DEFECT, -row.score))


def defective_csv_text(rows: Iterable[ImageResult]) -> str:
    """``defective.csv``: the parts decided defect, then uncertain, each highest score first; the list to act on.

    Example:
        >>> rows = [ImageResult("a.png", score=0.2, decision="ok"), ImageResult("b.png", score=0.9, decision="defect"),
        ...         ImageResult("c.png", score=0.45, decision="uncertain"), ImageResult("d.png", score=0.7, decision="defect")]
        >>> [line.split(",")[0] for line in defective_csv_text(rows).splitlines()]
        ['image', 'b.png', 'd.png', 'c.png']
    """
    chosen = defective_rows(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(DEFECTIVE_COLUMNS)
    for row in chosen:
        cells = dict(zip(CSV_COLUMNS, _csv_cells(row), strict=True))
        writer.writerow([cells[name] for name in DEFECTIVE_COLUMNS])
    return buffer.getvalue()


def score_statistics(rows: Sequence[ImageResult]) -> dict[str, float | int]:
    """Overall numbers over the successfully processed images; ``decided`` counts the images with a decision."""
    scores = np.array([row.score for row in rows if row.status == "ok"], dtype=np.float64)
    labels = [row.pred_label for row in rows if row.status == "ok"]
    decisions = [row.decision for row in rows if row.status == "ok" and row.decision]
    stats: dict[str, float | int] = {
        "images": len(rows),
        "ok": int(scores.size),
        "failed": sum(row.status != "ok" for row in rows),
        "above_threshold": sum(label is True for label in labels),
        "decided": len(decisions),
        **{f"decided_{name}": decisions.count(name) for name in DECISIONS},
    }
    if scores.size:
        stats |= {
            "score_min": float(scores.min()),
            "score_mean": float(scores.mean()),
            "score_median": float(np.median(scores)),
            "score_p95": float(np.percentile(scores, 95)),
            "score_max": float(scores.max()),
        }
    return stats


def most_anomalous(rows: Sequence[ImageResult], count: int = 10) -> list[ImageResult]:
    """The ``count`` highest raw scores, highest first (ties keep input order)."""
    ok = [row for row in rows if row.status == "ok"]
    return sorted(ok, key=lambda row: -row.score)[:count]


def _parameter_lines(parameters: Mapping[str, object]) -> list[str]:
    width = max((len(key) for key in parameters), default=0)
    return [f"  {key:<{width}} : {value}" for key, value in parameters.items()]


def _score_lines(stats: Mapping[str, float | int], width: int) -> list[str]:
    if not stats["ok"]:
        return []
    lines = [f"  score {name:<{width}} : {stats[f'score_{name}']:.6g}" for name in ("min", "mean", "median", "p95", "max")]
    if stats["decided"]:
        lines.append(f"  {'decided':<{width + 6}} : {decisions_text(stats)} (the thresholds above)")
    return lines


def decisions_text(stats: Mapping[str, float | int]) -> str:
    """``3 defect, 1 uncertain, 36 ok``: the decisions, the uncertain ones only where a band made any."""
    return ", ".join(f"{stats[f'decided_{name}']} {name}" for name in (DEFECT, UNCERTAIN, OK)
                     if name != UNCERTAIN or stats[f"decided_{name}"])


def summary_text(
    parameters: Mapping[str, object],
    rows: Sequence[ImageResult],
    top_count: int = 10,
) -> str:
    """The human-readable report: parameters, overall statistics, top list, per-image table."""
    stats = score_statistics(rows)
    lines = ["EfficientAd folder inference - results summary", "=" * 48, "", "Processing parameters"]
    lines += _parameter_lines(parameters)
    lines += ["", "Overall statistics (score = max of the raw anomaly map; comparable across images)"]
    lines.append(f"  images processed : {stats['ok']} ok, {stats['failed']} failed, {stats['images']} total")
    lines += _score_lines(stats, width=10)

    top = most_anomalous(rows, top_count)
    if top:
        lines += ["", f"Most anomalous images (top {len(top)} by score)"]
        lines += [f"  {rank:>3}. {row.score:<12.6g} {display_name(row.image)}" for rank, row in enumerate(top, 1)]

    failed = [row for row in rows if row.status != "ok"]
    if failed:
        lines += ["", f"Failed images ({len(failed)})"]
        lines += [f"  {display_name(row.image)}: {display_name(row.error)}" for row in failed]

    noted = [row for row in rows if row.note]
    if noted:
        lines += ["", f"Changed on the way in ({len(noted)}; the note column of {CSV_NAME})"]
        lines += [f"  {display_name(row.image)}: {row.note}" for row in noted[:NOTES_SHOWN]]
        if len(noted) > NOTES_SHOWN:
            lines.append(f"  ... and {len(noted) - NOTES_SHOWN} more")

    lines += ["", "Per-image results (input order)"]
    header = (f"  {'score':>12} {'raw_min':>12} {'raw_mean':>12} {'norm_mean':>10} {'pred_score':>10} {'decision':>9} "
              f"{'area':>8}  image")
    lines.append(header)
    for row in rows:
        if row.status != "ok":
            lines.append(f"  {'failed':>12} {'':>12} {'':>12} {'':>10} {'':>10} {'':>9} {'':>8}  {display_name(row.image)}")
            continue
        lines.append(
            f"  {row.score:>12.6g} {row.raw_min:>12.6g} {row.raw_mean:>12.6g} {row.norm_mean:>10.4f} "
            f"{_cell(row.pred_score):>10} {row.decision:>9} {_cell(row.defect_area):>8}  {display_name(row.image)}"
        )
    return "\n".join(lines) + "\n"


# -- many batch folders: one combined view ---------------------------------------------------------
ALL_CSV_NAME = "all_batches.csv"
ALL_SUMMARY_NAME = "all_batches_summary.txt"


@dataclass
class BatchReport:
    """One batch folder of a multi-folder run, as its output dir holds it."""

    name: str
    output_dir: str  # as shown, relative to the combined files where possible
    rows: list[ImageResult]
    status: str  # "ran", "resumed" or "done earlier"
    predicted: int = 0  # images predicted by this run
    loop_s: float = 0.0  # first batch to last file written
    overhead_s: float = 0.0  # the rest of the folder's time in this run: data set-up, workers, summaries
    # (for a folder done earlier, predicted and loop_s are that run's)


def combined_csv_text(reports: Sequence[BatchReport]) -> str:
    """``all_batches.csv``: every folder's rows with the batch first; npy/png relative to the combined file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("batch", *CSV_COLUMNS))
    for report in reports:
        for row in report.rows:
            located = replace(row, **{key: f"{report.output_dir}/{getattr(row, key)}" for key in ("npy", "png", "overlay")
                                      if getattr(row, key)})
            writer.writerow([csv_safe(display_name(report.name)), *_csv_cells(located)])
    return buffer.getvalue()


def combined_summary_text(
    parameters: Mapping[str, object], reports: Sequence[BatchReport], top_count: int = 20
) -> str:
    """``all_batches_summary.txt``: one line per batch folder, overall statistics, top anomalies of all."""
    every = [row for report in reports for row in report.rows]
    stats = score_statistics(every)
    lines = ["EfficientAd batch folders - combined summary", "=" * 45, "", *_parameter_lines(parameters)]
    lines += ["", "Per batch folder (score = max of the raw anomaly map)"]
    name_width = max([len(report.name) for report in reports] + [5])
    lines.append(
        f"  {'batch':<{name_width}} {'images':>7} {'ok':>7} {'failed':>6} {'defect':>6} {'score med':>10} "
        f"{'p95':>10} {'max':>10} {'time s':>8} {'images/s':>9}  status"
    )
    for report in reports:
        numbers = score_statistics(report.rows)
        scores = [f"{numbers.get(key, math.nan):>10.4g}" for key in ("score_median", "score_p95", "score_max")]
        rate = f"{report.predicted / report.loop_s:>9.2f}" if report.predicted and report.loop_s > 0 else f"{'':>9}"
        time_text = f"{report.loop_s + report.overhead_s:>8.1f}" if report.predicted else f"{'':>8}"
        lines.append(
            f"  {report.name:<{name_width}} {numbers['images']:>7} {numbers['ok']:>7} {numbers['failed']:>6} "
            f"{numbers['decided_defect']:>6} {' '.join(scores)} {time_text} {rate}  {report.status}"
        )
    lines += ["", "Overall"]
    lines.append(f"  images : {stats['images']} ({stats['ok']} ok, {stats['failed']} failed) in {counted(len(reports), 'batch folder')}")
    lines += _score_lines(stats, width=6)
    owner = {id(row): report.name for report in reports for row in report.rows}
    top = most_anomalous(every, top_count)
    if top:
        lines += ["", f"Most anomalous images of all batch folders (top {len(top)} by score)"]
        lines += [f"  {rank:>3}. {row.score:<12.6g} {owner[id(row)]}/{display_name(row.image)}"
                  for rank, row in enumerate(top, 1)]
    failed = [(report.name, row) for report in reports for row in report.rows if row.status != "ok"]
    if failed:
        lines += ["", f"Failed images ({len(failed)})"]
        lines += [f"  {name}/{display_name(row.image)}: {display_name(row.error)}" for name, row in failed]
    return "\n".join(lines) + "\n"
