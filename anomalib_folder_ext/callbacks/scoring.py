"""The only place that uses anomalib's post-processor: image scores and labels, and the scale of the
maps in ``normalization: model``."""

from __future__ import annotations

from functools import partial

import torch
from anomalib.data import InferenceBatch
from anomalib.post_processing import PostProcessor
from lightning.pytorch import LightningModule

from anomalib_folder_ext.outputs import maps
from anomalib_folder_ext.errors import InputError


def map_normalizer(pl_module: LightningModule, normalization: str, vmin: float | None, vmax: float | None) -> maps.Normalizer | None:
    """The scale of every map in this run (``None``: each map's own min-max); checked once, here."""
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
    # anomalib's own pixel arithmetic: its post-processor has it as a static method and no public function
    return partial(PostProcessor._normalize, norm_min=pixel_min, norm_max=pixel_max, threshold=threshold)  # noqa: SLF001


def has_image_threshold(pl_module: LightningModule) -> bool:
    """Whether anomalib's post-processor has an image threshold to label with (asked once per run)."""
    post_processor = getattr(pl_module, "post_processor", None)
    if not isinstance(post_processor, PostProcessor) or not post_processor.enable_thresholding:
        return False
    return not bool(torch.isnan(post_processor.normalized_image_threshold).item())


def image_scores(
    pl_module: LightningModule, raw_scores: torch.Tensor | None, labels_from_threshold: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """anomalib's ``pred_score`` and ``pred_label`` for raw image scores, as device tensors.

    For anomalib's ``PostProcessor`` this is its own normalisation and threshold, without its
    per-call check of the threshold on the host (which would wait for the device every batch).
    """
    post_processor = getattr(pl_module, "post_processor", None)
    if post_processor is None or raw_scores is None:
        return None, None
    raw = raw_scores.detach().to(torch.float32).reshape(-1)
    if isinstance(post_processor, PostProcessor):
        scores = raw
        if post_processor.enable_normalization:
            scores = PostProcessor._normalize(  # noqa: SLF001 - its own arithmetic, no public function
                raw, post_processor.image_min, post_processor.image_max, post_processor.image_threshold
            )
        labels = scores > post_processor.normalized_image_threshold if labels_from_threshold else None
        return scores, labels
    processed = post_processor(InferenceBatch(pred_score=raw))  # another post-processor: its own forward
    label = processed.pred_label
    labels = label.reshape(-1) if label is not None and label.dtype == torch.bool else None
    return processed.pred_score.reshape(-1), labels



class Scoring:
    """The model's image scores and labels for each batch, and the scale of its maps, for one run.

    Made as the loop starts (``for_model``): the threshold is looked at once, not per batch.
    """

    def __init__(self, normalizer: maps.Normalizer | None, labels_from_threshold: bool) -> None:
        self.normalizer, self.labels_from_threshold = normalizer, labels_from_threshold

    @classmethod
    def for_model(cls, pl_module: LightningModule, normalization: str, vmin: float | None, vmax: float | None) -> Scoring:
        return cls(map_normalizer(pl_module, str(normalization), vmin, vmax), has_image_threshold(pl_module))

    def scores(self, pl_module: LightningModule, raw_scores: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return image_scores(pl_module, raw_scores, self.labels_from_threshold)


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
