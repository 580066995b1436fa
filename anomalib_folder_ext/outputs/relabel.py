"""A finished output dir decided again without the model: new thresholds, from what is on disk.

The journal holds every row's exact numbers, the finished record the thresholds in force, the
model's own, the image scores' range and how the NPY maps relate to the raw map
(:func:`~anomalib_folder_ext.callbacks.deciding.decision_record`). A relabel decides every row by the
same rule as a run (:mod:`anomalib_folder_ext.decision.rule`), makes the masks again from the NPY maps
when the pixel threshold changes, and rewrites the journal (under the new settings: the dir stays
resumable with them), ``results.csv``, ``defective.csv``, the summary, the report and the finished
record, each file atomically, under the output dir's lock. Interrupted, it leaves the dir marked
unfinished; run again, it finishes: every number it writes comes from the scores and the maps.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from anomalib_folder_ext.decision.calibration import Calibration, ModelRun, given_thresholds, thresholds_in_force
from anomalib_folder_ext.decision.rule import DEFECT, Thresholds, mask_regions
from anomalib_folder_ext.errors import OutputDirError
from anomalib_folder_ext.outputs import artifacts, journal, outputdir, summary
from anomalib_folder_ext.outputs.owned import OwnedDir, open_existing
from anomalib_folder_ext.outputs.summary import ImageResult


def relabel_output_dir(path: str | Path, calibration: Calibration | None = None, threshold: float | None = None,
                       pixel_threshold: float | None = None, uncertain_below: float | None = None) -> Thresholds:
    """Decide the finished run in ``path`` again by the thresholds given (each not given: the model's own);
    the thresholds now in force. One line naming the dir and what it lacks when it cannot be done."""
    path = Path(path)
    directory = open_existing(path)
    record = journal.read_finished(directory) if directory is not None else None
    if record is None:
        raise OutputDirError(f"{path}: not a finished run of this tool (no .journal/finished.json): finish it first "
                             "(predict it again with resume)")
    if "map_scale" not in record:
        raise OutputDirError(f"{path}: written by an earlier version, whose record lacks what a relabel needs; predict "
                             "it again with overwrite")
    with directory:
        model = ModelRun.from_settings(record["settings"], record.get("image_size", (0, 0)))
        if calibration is not None:
            calibration.check(model, f"the run in {path}")
        given = given_thresholds(calibration, threshold, pixel_threshold, uncertain_below)
        own = record.get("model_thresholds", {})
        thresholds = thresholds_in_force(given, own.get("image"), own.get("pixel"))
        lock = outputdir.OutputDirLock(directory, outputdir.run_token(1))
        lock.acquire()
        try:
            rows = _relabelled_rows(directory, path, record, thresholds)
            settings = {key: value for key, value in record["settings"].items() if key != "thresholds"}
            numbers = {name: value for name, (value, _) in given.items()}
            settings = ({"thresholds": numbers} if numbers else {}) | settings
            _write(directory, record, settings, rows, thresholds)
        finally:
            lock.release()
    return thresholds


def _relabelled_rows(directory: OwnedDir, path: Path, record: dict, thresholds: Thresholds) -> list[ImageResult]:
    state = journal.read_journal(directory)
    by_name = {artifacts.display_name(name): row for name, row in state.rows.items()}
    try:
        order = [by_name[values["image"]] for values in summary.parse_results(directory.read_text(summary.CSV_NAME))]
    except (KeyError, OSError, ValueError):
        raise OutputDirError(f"{path}: its results.csv and its journal disagree (changed by hand?); predict it again "
                             "with resume") from None
    earlier = record.get("thresholds", {})
    new_masks = thresholds.pixel is not None and thresholds.pixel != earlier.get("pixel")
    if new_masks:
        check_masks_can_be_made(path, record, thresholds.pixel)
    image_range = record.get("image_range")
    return [_decided(directory, row, thresholds, record, new_masks, image_range) for row in order]


def check_masks_can_be_made(path: Path, record: dict, pixel: float) -> None:
    """Masks at another pixel threshold are the raw map at it: the NPY maps must hold it unclipped there."""
    scale = record["map_scale"]
    if not record["settings"].get("npy"):
        raise OutputDirError(f"{path}: a new pixel threshold needs the raw maps, and this run kept no NPY "
                             "(save_as_npy false): keep the pixel threshold, or predict again")
    low, high = scale.get("low"), scale.get("high")
    if scale["normalization"] != "per_image" and (low is None or not low < pixel < high):
        raise OutputDirError(f"{path}: its maps ({scale['normalization']} normalisation) hold the raw map only from "
                             f"{low:.6g} to {high:.6g}, and the pixel threshold {pixel:.6g} lies outside; predict again "
                             "with normalization per_image" if low is not None else
                             f"{path}: its maps' scale is not recorded; predict again")


PER_IMAGE = {"normalization": "per_image"}  # each NPY its own map's min-max: the row's raw min and score undo it


def raw_map(directory: OwnedDir, row: ImageResult, scale: dict) -> np.ndarray:
    """A row's raw map (at the written size) from its NPY, by the run's normalisation (float64)."""
    normalized = np.load(io.BytesIO(directory.read_bytes(row.npy)), allow_pickle=False).astype(np.float64)
    if scale["normalization"] == "per_image":
        low, high = row.raw_min, row.score
    else:
        low, high = scale["low"], scale["high"]
    return low + normalized * (high - low)


def _decided(directory: OwnedDir, row: ImageResult, thresholds: Thresholds, record: dict, new_masks: bool,
             image_range: list | None) -> ImageResult:
    if row.status != "ok":
        return row
    decision = thresholds.decide(row.score)
    changes: dict = {"decision": decision, "pred_label": decision == DEFECT if thresholds.decides else None}
    if image_range and None not in image_range and thresholds.decides:
        low, high = np.float32(image_range[0]), np.float32(image_range[1])
        scaled = (np.float32(row.score) - np.float32(thresholds.image)) / (high - low if high != low else np.float32(1))
        changes["pred_score"] = float(np.clip(scaled + np.float32(0.5), 0, 1))  # anomalib's arithmetic, in float32
    if thresholds.pixel is None:
        changes |= {"defect_area": None, "defect_fraction": math.nan, "defect_regions": None}
    elif new_masks:
        mask = raw_map(directory, row, record["map_scale"]) >= thresholds.pixel
        area, regions = mask_regions(mask)
        changes |= {"defect_area": area, "defect_fraction": area / mask.size, "defect_regions": regions}
        if row.mask:
            directory.write(row.mask, artifacts.encode_mask(mask))
    return replace(row, **changes)


def _write(directory: OwnedDir, record: dict, settings: dict, rows: list[ImageResult], thresholds: Thresholds) -> None:
    journal.mark_unfinished(directory)  # finished again only when every file is
    journal.rewrite(directory, settings, rows)
    directory.write(summary.CSV_NAME, summary.csv_text(rows).encode())
    if thresholds.decides:
        directory.write(summary.DEFECTIVE_NAME, summary.defective_csv_text(rows).encode())
    else:
        directory.remove(summary.DEFECTIVE_NAME)
    ran = record.get("run_parameters") or record.get("parameters", {})  # the summary's head as the run wrote it
    parameters = {key: value for key, value in ran.items() if key not in {"image threshold", "uncertain from",
                                                                           "pixel threshold"}}
    scale = record["map_scale"]
    if scale["normalization"] == "model" and None not in (scale.get("low"), scale.get("high")) and \
            not math.isclose(thresholds.pixel or math.nan, (scale["low"] + scale["high"]) / 2, rel_tol=1e-9):
        parameters["normalization"] = (f"model (0.5 = raw {(scale['low'] + scale['high']) / 2:.6g}, the pixel threshold "
                                       "the maps were written at: a relabel does not redraw them; clipped)")
    parameters = _with_thresholds(parameters, thresholds)
    parameters["relabelled"] = f"{time.strftime('%Y-%m-%d %H:%M:%S')}, without the model"
    directory.write(summary.SUMMARY_NAME, summary.summary_text(parameters, rows, record.get("top_count", 10)).encode())
    report = record.get("report")
    if report:
        from anomalib_folder_ext.outputs.report import write_report

        write_report(directory, record["folder"], rows, parameters, report["top_k"], report["colormap"], report["alpha"],
                     thresholds)
    journal.write_finished(directory, {**record, "settings": settings, "thresholds": thresholds.record(),
                                       "parameters": parameters, "run_parameters": ran})


def _with_thresholds(parameters: dict, thresholds: Thresholds) -> dict:
    """The summary's head with the thresholds in force where a run puts them (after the normalisation)."""
    placed: dict = {}
    for key, value in parameters.items():
        placed[key] = value
        if key == "normalization":
            placed |= thresholds.parameters()
    return placed if "normalization" in parameters else {**parameters, **thresholds.parameters()}
