"""Which thresholds decide this run's parts, and the calibration file's check against the model as it runs.

The image and pixel thresholds come, each on its own, from the writer's option (``threshold``,
``pixel_threshold``), else from the calibration file (``calibration``), else from the model's own
post-processor (anomalib's validation). The rule they drive is :mod:`anomalib_folder_ext.decision.rule`.
"""

from __future__ import annotations

import math
from pathlib import Path

from lightning.pytorch import LightningModule, Trainer

from anomalib_folder_ext.callbacks.runinfo import backend_of
from anomalib_folder_ext.decision.calibration import Calibration, ModelRun, parse_calibration
from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.errors import CalibrationError
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.outputs.runplan import run_settings

CHECKPOINT = "checkpoint"


def read_calibration(path: str | None) -> Calibration | None:
    """The calibration file ``path`` (``None``: no calibration); one line naming the file when it cannot be used."""
    if not path:
        return None
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"calibration {path}: no such file; make one with anomalib-folder calibrate") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"calibration {path}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    return parse_calibration(text, str(path))


def check_calibration(calibration: Calibration | None, run: ModelRun) -> None:
    """Refuse a calibration made for another model, runtime, precision or image size, in one line."""
    refusal = calibration.refusal(run) if calibration is not None else None
    if refusal:
        raise CalibrationError(refusal)


def model_thresholds(pl_module: LightningModule) -> tuple[float | None, float | None]:
    """The model's own image and pixel thresholds in raw units (anomalib's post-processor; ``None`` where it has none)."""
    post_processor = getattr(pl_module, "post_processor", None)
    found = []
    for name in ("image_threshold", "pixel_threshold"):
        value = getattr(post_processor, name, None)
        value = float(value) if value is not None else math.nan
        found.append(value if math.isfinite(value) else None)
    if post_processor is not None and not getattr(post_processor, "enable_thresholding", True):
        return None, found[1]
    return found[0], found[1]


def given_thresholds(options: WriterOptions, calibration: Calibration | None) -> dict:
    """The thresholds this run is given (by option or calibration), in raw units: resume compares them.
    Empty when the model's own decide (its identity already covers them)."""
    values = {"image": options.threshold, "pixel": options.pixel_threshold, "uncertain_below": options.uncertain_below}
    if calibration is not None:
        values = {"image": options.threshold if options.threshold is not None else calibration.image_threshold,
                  "pixel": options.pixel_threshold if options.pixel_threshold is not None else calibration.pixel_threshold,
                  "uncertain_below": (options.uncertain_below if options.uncertain_below is not None or options.threshold
                                      is not None else calibration.uncertain_below)}
    return {key: value for key, value in values.items() if value is not None}


def run_thresholds(options: WriterOptions, calibration: Calibration | None, pl_module: LightningModule) -> Thresholds:
    """The thresholds in force, each with where it came from."""
    model_image, model_pixel = model_thresholds(pl_module)
    given = given_thresholds(options, calibration)
    from_file = f"calibration {calibration.path}" if calibration is not None else ""

    def source(name: str, option: str, calibrated: float | None) -> str:
        if getattr(options, option) is not None:
            return f"{option} option"
        return from_file if calibrated is not None else CHECKPOINT

    image = given.get("image", model_image)
    pixel = given.get("pixel", model_pixel)
    try:
        return Thresholds(
            image=image, pixel=pixel, uncertain_below=given.get("uncertain_below"),
            image_source=source("image", "threshold", calibration and calibration.image_threshold),
            pixel_source=source("pixel", "pixel_threshold", calibration and calibration.pixel_threshold),
        )
    except ValueError as exc:
        raise CalibrationError(str(exc), option="uncertain_below") from None


def decided_settings(options: WriterOptions, calibration: Calibration | None, checkpoint: str | None, trainer: Trainer,
                     pl_module: LightningModule) -> dict:
    """The run's settings (:func:`~anomalib_folder_ext.outputs.runplan.run_settings`) with the thresholds it is
    given, once the calibration is checked against the model as it runs (known once its checkpoint is)."""
    backend = backend_of(pl_module)
    settings = run_settings(options, checkpoint, trainer.precision, backend, given_thresholds(options, calibration))
    if calibration is not None and settings["checkpoint"]:
        check_calibration(calibration, ModelRun.from_settings(settings, trainer.datamodule.resolve_image_size()))
    return settings
