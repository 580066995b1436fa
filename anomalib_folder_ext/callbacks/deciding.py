"""Which thresholds decide this run's parts, and the calibration file's check against the model as it runs.

The image and pixel thresholds come, each on its own, from the writer's option (``threshold``,
``pixel_threshold``), else from the calibration file (``calibration``), else from the model's own
post-processor (anomalib's validation). The rule they drive is :mod:`anomalib_folder_ext.decision.rule`.
"""

from __future__ import annotations

import math

from lightning.pytorch import LightningModule, Trainer

from anomalib_folder_ext.callbacks.runinfo import backend_of
from anomalib_folder_ext.decision.calibration import Calibration, ModelRun, given_thresholds, thresholds_in_force
from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.outputs.runplan import run_settings

CHECKPOINT = "checkpoint"


def _statistic(pl_module: LightningModule, name: str) -> float | None:
    """A number of the model's post-processor (anomalib's validation statistics); ``None`` where it has none."""
    value = getattr(getattr(pl_module, "post_processor", None), name, None)
    value = float(value) if value is not None else math.nan
    return value if math.isfinite(value) else None


def model_thresholds(pl_module: LightningModule) -> tuple[float | None, float | None]:
    """The model's own image and pixel thresholds in raw units (``None`` where it has none)."""
    thresholding = getattr(getattr(pl_module, "post_processor", None), "enable_thresholding", True)
    image = _statistic(pl_module, "image_threshold") if thresholding else None
    return image, _statistic(pl_module, "pixel_threshold")


def run_thresholds(options: WriterOptions, calibration: Calibration | None, pl_module: LightningModule) -> Thresholds:
    """The thresholds in force, each with where it came from."""
    return thresholds_in_force(given(options, calibration), *model_thresholds(pl_module))


def given(options: WriterOptions, calibration: Calibration | None) -> dict[str, tuple[float, str]]:
    return given_thresholds(calibration, options.threshold, options.pixel_threshold, options.uncertain_below)


def decided_settings(options: WriterOptions, calibration: Calibration | None, checkpoint: str | None, trainer: Trainer,
                     pl_module: LightningModule) -> dict:
    """The run's settings (:func:`~anomalib_folder_ext.outputs.runplan.run_settings`) with the thresholds it is
    given, once the calibration is checked against the model as it runs (known once its checkpoint is)."""
    backend = backend_of(pl_module)
    numbers = {name: value for name, (value, _) in given(options, calibration).items()}
    settings = run_settings(options, checkpoint, trainer.precision, backend, numbers)
    if calibration is not None and settings["checkpoint"]:
        calibration.check(ModelRun.from_settings(settings, trainer.datamodule.resolve_image_size()))
    return settings


def decision_record(pl_module: LightningModule, options: WriterOptions, thresholds: Thresholds) -> dict:
    """What relabelling the run without the model needs, kept in its finished record: the thresholds in force,
    the model's own (to return to), its image scores' range (``pred_score``) and how the written NPY maps
    relate to the raw map (masks at another pixel threshold are made from them)."""
    model_image, model_pixel = model_thresholds(pl_module)
    scale: dict = {"normalization": options.normalization.value, "map_size": options.map_size.value}
    if options.normalization.value == "fixed":
        scale |= {"low": options.vmin, "high": options.vmax}
    elif options.normalization.value == "model":
        threshold = thresholds.pixel if thresholds.pixel_source != CHECKPOINT else model_pixel
        low, high = _statistic(pl_module, "pixel_min"), _statistic(pl_module, "pixel_max")
        if None not in (threshold, low, high):  # the written map is clip((raw - threshold) / (high - low) + 0.5)
            scale |= {"low": threshold - (high - low) / 2, "high": threshold + (high - low) / 2}
    normalizes = getattr(getattr(pl_module, "post_processor", None), "enable_normalization", False)
    image_range = [_statistic(pl_module, "image_min"), _statistic(pl_module, "image_max")] if normalizes else None
    return {"thresholds": thresholds.record(), "model_thresholds": {"image": model_image, "pixel": model_pixel},
            "image_range": image_range, "map_scale": scale}
