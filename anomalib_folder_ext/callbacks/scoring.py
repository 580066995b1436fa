"""The only place that uses anomalib's post-processor: image scores and labels, and the scale of the
maps in ``normalization: model``."""

from __future__ import annotations

from functools import partial

import torch
from anomalib.data import InferenceBatch
from anomalib.post_processing import PostProcessor
from lightning.pytorch import LightningModule

from anomalib_folder_ext.callbacks.deciding import CHECKPOINT, run_thresholds
from anomalib_folder_ext.decision.calibration import Calibration
from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.errors import InputError
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.outputs import maps


def map_normalizer(pl_module: LightningModule, normalization: str, vmin: float | None, vmax: float | None,
                   pixel_threshold: float | None = None) -> maps.Normalizer | None:
    """The scale of every map in this run (``None``: each map's own min-max); checked once, here.
    ``pixel_threshold``: the one in force, when not the model's (``model`` puts 0.5 there)."""
    if normalization == "fixed":
        if getattr(getattr(pl_module, "info", None), "normalized", False):
            msg = ("normalization fixed: vmin and vmax are in raw map units, and this model's graph (an anomalib export) "
                   "gives maps already normalised to 0-1; use model or per_image, or export with anomalib-folder export")
            raise InputError(msg)
        return maps.fixed_range(vmin, vmax)
    if normalization == "per_image":
        return None
    post_processor = getattr(pl_module, "post_processor", None)
    stats = [getattr(post_processor, name, None) for name in ("pixel_min", "pixel_max", "pixel_threshold")]
    if not isinstance(post_processor, PostProcessor) or any(
        value is None or bool(torch.isnan(value).any()) for value in stats
    ):
        msg = (
            "normalization model: the checkpoint's post-processor has no pixel statistics "
            "(pixel_min, pixel_max, pixel_threshold from validation); use per_image, or fixed with vmin/vmax"
        )
        raise InputError(msg)
    pixel_min, pixel_max, threshold = stats
    threshold = threshold if pixel_threshold is None else torch.tensor(pixel_threshold, dtype=threshold.dtype)
    # anomalib's own pixel arithmetic: its post-processor has it as a static method and no public function
    return partial(PostProcessor._normalize, norm_min=pixel_min, norm_max=pixel_max, threshold=threshold)  # noqa: SLF001


def image_scores(
    pl_module: LightningModule, raw_scores: torch.Tensor | None, thresholds: Thresholds
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``pred_score`` and ``pred_label`` for raw image scores, as device tensors.

    For anomalib's ``PostProcessor`` the score is its own normalisation, around the image threshold in
    force (0.5 there), without its per-call check of the threshold on the host (which would wait for
    the device every batch); the label is the decision rule's (:mod:`anomalib_folder_ext.decision.rule`),
    compared in float64 as the rows are.
    """
    post_processor = getattr(pl_module, "post_processor", None)
    if raw_scores is None:
        return None, None
    raw = raw_scores.detach().to(torch.float32).reshape(-1)
    labels = raw.to(torch.float64) >= thresholds.image if thresholds.decides else None
    if isinstance(post_processor, PostProcessor):
        scores = raw
        if post_processor.enable_normalization:
            threshold = post_processor.image_threshold
            if thresholds.decides and thresholds.image_source != CHECKPOINT:
                threshold = torch.tensor(thresholds.image, dtype=threshold.dtype, device=threshold.device)
            scores = PostProcessor._normalize(  # noqa: SLF001 - its own arithmetic, no public function
                raw, post_processor.image_min, post_processor.image_max, threshold
            )
        return scores, labels
    if post_processor is None:
        return None, labels
    processed = post_processor(InferenceBatch(pred_score=raw))  # another post-processor: its own forward
    return processed.pred_score.reshape(-1), labels



class Scoring:
    """The image scores and labels for each batch, the scale of the maps and the thresholds in force, for one run.

    Made as the loop starts (``for_model``): the thresholds are looked at once, not per batch.
    """

    def __init__(self, normalizer: maps.Normalizer | None, thresholds: Thresholds) -> None:
        self.normalizer, self.thresholds = normalizer, thresholds

    @classmethod
    def for_model(cls, pl_module: LightningModule, options: WriterOptions, calibration: Calibration | None) -> Scoring:
        thresholds = run_thresholds(options, calibration, pl_module)
        pixel = thresholds.pixel if thresholds.pixel_source != CHECKPOINT else None
        return cls(map_normalizer(pl_module, str(options.normalization), options.vmin, options.vmax, pixel), thresholds)

    def scores(self, pl_module: LightningModule, raw_scores: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return image_scores(pl_module, raw_scores, self.thresholds)


def keeps_maps(pl_module: LightningModule) -> bool:
    """Whether a callback after the writer needs each batch's map: anomalib's visualizer draws it."""
    return getattr(pl_module, "visualizer", None) is not None


def hand_over(outputs: object, labels: torch.Tensor | None, release_maps: bool) -> None:
    """What anomalib's PostProcessor gets after the writer: without the map (``release_maps``), it
    skips its pixel-level work; with the labels, it does not wait for the device to make them again."""
    if release_maps:
        outputs.anomaly_map = None
    if labels is not None and outputs.pred_label is None:
        outputs.pred_label = labels
