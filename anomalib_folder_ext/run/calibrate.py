"""``anomalib-folder calibrate``: thresholds fitted on known-good parts, through predict's own pipeline.

The good parts (and, when given, known defects) are predicted as batch folders ``good`` and
``defect`` of a work dir (:mod:`~anomalib_folder_ext.run.batches`: the same config, datamodule, writer,
DDP and resume as any run), with exact maps kept as NPY. The thresholds are then fitted on what
those runs wrote: the image threshold on the parts' scores, the pixel threshold on every good
pixel of the raw maps (each NPY is its map's own min-max, undone with the row's raw min and max),
at the target false-positive rate (:mod:`anomalib_folder_ext.decision.fit`). The calibration
records the model as it ran (its identity, runtime, precision and image size): predict refuses it
for anything else. Run again, it resumes: only new parts are predicted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from anomalib_folder_ext.console import count, say
from anomalib_folder_ext.decision.calibration import KIND, Calibration, ModelRun
from anomalib_folder_ext.decision.fit import (CONFIDENCE, NotEnoughParts, TopValues, auroc, best_f1_threshold,
                                              fit_threshold, flagged_rate, parts_needed, pixel_threshold,
                                              separating_threshold)
from anomalib_folder_ext.errors import CalibrationError, FolderInputError, InputError, OutputDirError, Terms
from anomalib_folder_ext.images.discover import list_folder_images
from anomalib_folder_ext.outputs import journal
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.relabel import PER_IMAGE, raw_map
from anomalib_folder_ext.outputs.summary import ImageResult
from anomalib_folder_ext.run.spec import RunSpec

GOOD, DEFECT = "good", "defect"
QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
MASK_SUFFIXES = ("", "_mask")  # a defect image's mask: the same stem, or <stem>_mask (MVTec's ground truth)


@dataclass(frozen=True)
class CalibrationRequest:
    """What to calibrate: the model (and how it runs, ``spec``), the parts, the target, where things go."""

    spec: RunSpec  # the model and how it runs; its folder and writer are calibrate's own
    good_folder: Path
    out: Path = Path("calibration.json")
    defect_folder: Path | None = None
    mask_folder: Path | None = None
    target_fpr: float = 0.01
    pixel_fpr: float = 1e-4  # of the good parts' pixels: about 7 of a 256 x 256 good part
    uncertain_fpr: float | None = None
    work_dir: Path | None = None  # default: <out's stem>_runs beside out
    resume: bool = True
    anomalib_args: tuple[str, ...] = ()  # passed to anomalib's CLI as they are, e.g. --trainer.strategy ddp

    def __post_init__(self) -> None:
        for name in ("good_folder", "out", "defect_folder", "mask_folder", "work_dir"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser())
        for name, example in (("target_fpr", "0.01"), ("pixel_fpr", "0.0001")):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < 1):
                raise InputError(f"{name} {value!r}: must lie between 0 and 1, e.g. {example}", option=name)
        if self.uncertain_fpr is not None and not self.target_fpr < self.uncertain_fpr < 1:
            raise InputError(f"uncertain_fpr {self.uncertain_fpr!r}: must lie between target_fpr ({self.target_fpr:g}) "
                             "and 1: the band flags more good parts than the threshold", option="uncertain_fpr")
        if self.mask_folder is not None and self.defect_folder is None:
            raise InputError("mask_folder: masks belong to the defect_folder's images; give defect_folder too",
                             option="mask_folder")

    @property
    def runs(self) -> Path:
        return self.work_dir or self.out.with_name(f"{self.out.stem}_runs")


def count_parts(folder: Path, option: str, extensions: tuple[str, ...]) -> int:
    """The images under ``folder`` (sub-folders included); one line naming ``option`` when there are none."""
    try:
        return len(list_folder_images(folder, extensions, recursive=True))
    except FolderInputError as exc:
        raise FolderInputError(str(exc).replace("folder_path", option, 1), option=option) from None


def check_out(out: Path) -> None:
    """``out`` is new, or an earlier calibration file (replaced atomically); never a link, never another file."""
    if out.is_symlink():
        raise OutputDirError(f"out {out}: is a symbolic link; a calibration is never written through one", option="out")
    if out.is_dir():
        raise OutputDirError(f"out {out}: is a folder; name the calibration file, e.g. {out / 'calibration.json'}",
                             option="out")
    if out.exists():
        try:
            earlier = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        if not (isinstance(earlier, dict) and earlier.get("kind") == KIND):
            raise OutputDirError(f"out {out}: exists and is not a calibration of this tool, so it is not replaced: "
                                 "choose another name", option="out")
    existing = next(parent for parent in (out.absolute().parent, *out.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise OutputDirError(f"out {out}: {existing} is not a folder", option="out")


def calibration_jobs(request: CalibrationRequest) -> tuple[list[str], list]:
    """The shared anomalib arguments and one folder job per set of parts: the batch-folder runner's input."""
    from anomalib_folder_ext.run.batches import FolderJob
    from anomalib_folder_ext.run.preflight import check_root, read_checked_checkpoint
    from anomalib_folder_ext.run.translate import inline_config, predict_config

    spec = calibration_spec(request.spec, request.resume)
    folders = {GOOD: request.good_folder, DEFECT: request.defect_folder}
    checkpoint = read_checked_checkpoint(spec)
    base = ["predict", *inline_config(predict_config(spec, checkpoint, request.good_folder)), *request.anomalib_args]
    jobs = [FolderJob(name, ["--data.init_args.folder_path", str(folder), "--data.init_args.output_dir",
                             str(request.runs / name)], origin=str(folder))
            for name, folder in folders.items() if folder is not None]
    check_root(request.runs)
    return base, jobs


def calibration_spec(spec: RunSpec, resume: bool) -> RunSpec:
    """How calibrate predicts: every image under the folder, the exact map kept (NPY of its own min-max,
    invertible), no pictures, no decision of its own."""
    return spec.with_changes(recursive=True, normalization="per_image", vmin=None, vmax=None, map_size="model",
                             save_as_npy=True, save_as_image=False, save_overlay=False, save_mask=False, report=False,
                             calibration=None, threshold=None, pixel_threshold=None, uncertain_below=None,
                             resume=resume, overwrite=not resume)


def calibrate(request: CalibrationRequest, terms: Terms) -> Calibration | None:
    """Predict the parts, fit, write ``request.out``; the calibration (``None`` on a rank other than 0)."""
    extensions = request.spec.extensions
    good = count_parts(request.good_folder, "good_folder", extensions)
    if good < parts_needed(request.target_fpr):
        raise CalibrationError(f"good_folder {request.good_folder}: {NotEnoughParts(good, parts_needed(request.target_fpr), request.target_fpr)}; "
                               "add good parts, or ask for a larger target_fpr", option="good_folder")
    if request.defect_folder is not None:
        count_parts(request.defect_folder, "defect_folder", extensions)
    if request.mask_folder is not None and not request.mask_folder.is_dir():
        raise FolderInputError(f"mask_folder {request.mask_folder}: no such folder", option="mask_folder")
    check_out(request.out)
    from anomalib_folder_ext.run.batches import run_batches

    base, jobs = calibration_jobs(request)
    ran = run_batches(base, jobs, request.runs, request.resume, not request.resume, terms)
    if not ran.folders:  # another rank: rank 0 fits and writes
        return None
    calibration = fit_calibration(request, ran.folders[GOOD].output_dir,
                                  ran.folders[DEFECT].output_dir if DEFECT in ran.folders else None)
    write_calibration(request.out, calibration)
    for line in calibration_table(calibration):
        say(line)
    return calibration


# -- the fit, from what the runs wrote --------------------------------------------------------------
def exact_rows(output_dir: Path) -> list[ImageResult]:
    """The predicted parts of a finished run, with the journal's full-precision numbers (``results.csv``
    rounds to 6 digits: a threshold between two close scores must see them as the writer did)."""
    rows = journal.read_journal(output_dir).rows
    return [row for row in rows.values() if row.status == "ok"]


def raw_maps(output_dir: Path, rows: list[ImageResult]) -> Iterator[tuple[ImageResult, np.ndarray]]:
    """Each row with its raw map: calibrate's runs write each NPY as its map's own min-max (relabel's rule)."""
    with OwnedDir(output_dir) as directory:
        for row in rows:
            yield row, raw_map(directory, row, PER_IMAGE)


def fit_calibration(request: CalibrationRequest, good_dir: Path, defect_dir: Path | None) -> Calibration:
    record = journal.read_finished(good_dir) or {}
    model = ModelRun.from_settings(record.get("settings", {}), tuple(record.get("image_size", (0, 0))),
                                   path=str(request.spec.model_path))
    rows = exact_rows(good_dir)
    scores = [row.score for row in rows]
    try:
        image = fit_threshold(scores, request.target_fpr)
        band = fit_threshold(scores, request.uncertain_fpr) if request.uncertain_fpr else None
    except NotEnoughParts as exc:
        raise CalibrationError(f"good_folder {request.good_folder}: {exc}; some could not be read (see "
                               f"{good_dir / 'results.csv'})", option="good_folder") from None
    pixels = TopValues(keep=math.floor(request.pixel_fpr * len(rows) * math.prod(model.image_size)) + 1)
    for _, raw in raw_maps(good_dir, rows):
        pixels.add(raw)
    pixel = pixel_threshold(pixels, request.pixel_fpr)
    own = record.get("thresholds", {})
    checkpoint = {"image": own.get("image"), "pixel": own.get("pixel")} if own.get("image_source") == "checkpoint" else {}
    if checkpoint.get("image") is not None:
        checkpoint["fpr_on_good"] = flagged_rate(scores, checkpoint["image"])
    good = {"folder": str(request.good_folder), "n": image.n, "above_threshold": image.above_on_good,
            "expected_fpr": image.expected_fpr, "fpr_upper": image.fpr_upper, "confidence": CONFIDENCE,
            "smallest_fpr": image.smallest_fpr,
            "quantiles": {f"{q:g}": float(np.quantile(scores, q)) for q in QUANTILES}, "run": str(good_dir)}
    uncertain = band.threshold if band is not None and band.threshold < image.threshold else None
    if uncertain is not None:
        good["uncertain_fpr"] = request.uncertain_fpr
    calibration = Calibration(
        image_threshold=image.threshold, pixel_threshold=min(pixel, image.threshold), model=model,
        target_fpr=request.target_fpr, uncertain_below=uncertain, good=good,
        pixels={"target_fpr": request.pixel_fpr, "n": pixels.count, "fitted": pixel,
                "lowered_to_the_image_threshold": pixel > image.threshold},
        checkpoint_thresholds=checkpoint, path=str(request.out))
    if defect_dir is None:
        return calibration
    return replace(calibration, defect=defect_figures(request, calibration, scores, defect_dir))


def defect_figures(request: CalibrationRequest, calibration: Calibration, good_scores: list[float],
                   defect_dir: Path) -> dict:
    """Recall at the thresholds, the image AUROC and the threshold that separates the sets best; with masks,
    the pixels' own figures."""
    rows = exact_rows(defect_dir)
    scores = [row.score for row in rows]
    best, best_recall, best_fpr = separating_threshold(good_scores, scores)
    figures = {"folder": str(request.defect_folder), "n": len(rows), "run": str(defect_dir),
               "recall": flagged_rate(scores, calibration.image_threshold), "image_auroc": auroc(good_scores, scores),
               "separating_threshold": best, "separating_recall": best_recall, "separating_fpr_on_good": best_fpr}
    own = calibration.checkpoint_thresholds.get("image")
    if own is not None:
        calibration.checkpoint_thresholds["recall"] = flagged_rate(scores, own)
    if request.mask_folder is not None:
        figures["pixels"] = mask_figures(request.mask_folder, defect_dir, rows, calibration.pixel_threshold)
    return figures


def find_mask(mask_folder: Path, image: str) -> Path | None:
    """The mask of the defect image ``image`` (relative): the same relative path and stem, or ``<stem>_mask``,
    any image extension."""
    relative = Path(image)
    folder = mask_folder / relative.parent
    if not folder.is_dir():
        return None
    wanted = {f"{relative.stem}{suffix}".lower() for suffix in MASK_SUFFIXES}
    found = sorted(path for path in folder.iterdir() if path.is_file() and path.stem.lower() in wanted)
    return found[0] if found else None


def mask_figures(mask_folder: Path, defect_dir: Path, rows: list[ImageResult], threshold: float) -> dict:
    """Pixel recall, precision and AUROC over the defect images that have a mask (resized to the map, nearest)."""
    from PIL import Image

    inside, outside, matched = [], [], []
    masks = {row.image: find_mask(mask_folder, row.image) for row in rows}
    for row, raw in raw_maps(defect_dir, [row for row in rows if masks[row.image] is not None]):
        path = masks[row.image]
        with Image.open(path) as picture:
            mask = np.asarray(picture.convert("L").resize(raw.shape[::-1], Image.NEAREST)) > 127
        inside.append(raw[mask])
        outside.append(raw[~mask])
        matched.append(row.image)
    if not matched:
        raise FolderInputError(f"mask_folder {mask_folder}: no mask for any defect image (a mask has the image's "
                               "relative path and stem, or <stem>_mask)", option="mask_folder")
    defect_pixels, normal_pixels = np.concatenate(inside), np.concatenate(outside)
    hit, false = int((defect_pixels >= threshold).sum()), int((normal_pixels >= threshold).sum())
    best, best_f1 = best_f1_threshold(defect_pixels, normal_pixels)
    return {"images": len(matched), "recall": hit / max(defect_pixels.size, 1),
            "precision": hit / (hit + false) if hit + false else math.nan,
            "f1": 2 * hit / (hit + false + defect_pixels.size) if defect_pixels.size else math.nan,
            "auroc": auroc(normal_pixels, defect_pixels), "best_f1_threshold": best, "best_f1": best_f1,
            "missing_masks": len(rows) - len(matched)}


def write_calibration(out: Path, calibration: Calibration) -> None:
    """Atomically, never through a link (checked again: it may have changed while the parts ran)."""
    check_out(out)
    with OwnedDir(out.absolute().parent, create=True) as directory:
        directory.write(out.name, calibration.to_json().encode())


def calibration_table(calibration: Calibration) -> list[str]:
    """The short table calibrate prints, and its last line."""
    good, defect, own = calibration.good, calibration.defect, calibration.checkpoint_thresholds
    n_defects = defect.get("n")
    lines = [f"calibrated on {count(good['n'])} good parts (target false-positive rate {calibration.target_fpr:g}; "
             f"the smallest rate {count(good['n'])} parts resolve: {good['smallest_fpr']:.2g})",
             f"  {'':<20} {'threshold':>10} {'FPR on good':>12} {'FPR bound':>10} "
             + (f"{f'recall on {n_defects}':>14}" if n_defects else "")]

    def row(name: str, threshold: float | None, fpr: float | None, bound: float | None, recall: float | None) -> str:
        cells = [f"{'' if value is None else format(value, fmt):>{width}}" for value, fmt, width in
                 ((threshold, '.6g', 10), (fpr, '.3f', 12), (bound, '.3f', 10))]
        recall_cell = f" {'' if recall is None else format(recall, '.3f'):>14}" if n_defects else ""
        return f"  {name:<20} {' '.join(cells)}{recall_cell}"

    lines.append(row("image (calibrated)", calibration.image_threshold, good["above_threshold"] / good["n"],
                     good["fpr_upper"], defect.get("recall")))
    if own.get("image") is not None:
        lines.append(row("image (checkpoint)", own["image"], own.get("fpr_on_good"), None, own.get("recall")))
    if calibration.uncertain_below is not None:
        lines.append(row("uncertain from", calibration.uncertain_below, None, None, None))
    lines.append(row(f"pixel ({calibration.pixels['target_fpr']:g} of px)", calibration.pixel_threshold, None, None,
                     defect.get("pixels", {}).get("recall")))
    if n_defects:
        lines.append(f"  defects: image AUROC {defect['image_auroc']:.3f}; the threshold separating these sets best: "
                     f"{defect['separating_threshold']:.6g} (recall {defect['separating_recall']:.3f}, FPR on good "
                     f"{defect['separating_fpr_on_good']:.3f})")
    if defect.get("pixels"):
        pixels = defect["pixels"]
        lines.append(f"  masks of {pixels['images']} defects: pixel AUROC {pixels['auroc']:.3f}; at the pixel threshold "
                     f"recall {pixels['recall']:.3f}, precision {pixels['precision']:.3f}, F1 {pixels['f1']:.3f}; the best "
                     f"F1 on these masks: {pixels['best_f1']:.3f} at {pixels['best_f1_threshold']:.6g}")
    lines.append(f"{calibration.path}: image threshold {calibration.image_threshold:.6g}, pixel threshold "
                 f"{calibration.pixel_threshold:.6g}; false positives at most {good['fpr_upper']:.2%} of good parts "
                 f"({good['confidence']:.0%} confidence); use: --calibration {calibration.path}")
    return lines
