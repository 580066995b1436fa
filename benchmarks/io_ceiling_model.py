"""EfficientAd with its network replaced by a trivial map: the I/O ceiling of the pipeline.

Everything else is the real run: the same checkpoint, datamodule, workers, pre/post-processor,
writer and summary. Only ``predict_step`` differs, so the images/s it reaches is the most the
pipeline around the model can deliver on this machine.

    anomalib predict --config configs/folder.yaml --model io_ceiling_model.TrivialMapEfficientAd ...

(with ``benchmarks/`` on ``PYTHONPATH``; the benchmark scripts put it there: ``common.subprocess_env``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.models import EfficientAd


class TrivialMapEfficientAd(EfficientAd):
    """The image's brightness at 1/8 resolution, upsampled bilinearly: costs microseconds, varies per image.

    Smooth like EfficientAd's own maps (upsampled from about 1/4 resolution), so PNG encoding
    costs what it costs for real maps; a per-pixel map of a noisy photo would compress like
    noise and make the ceiling about the PNG encoder instead of the pipeline.
    """

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):  # noqa: ANN001, ANN201
        del batch_idx, dataloader_idx
        image = batch.image.as_subclass(torch.Tensor)  # a plain tensor: no tv_tensor dispatch per op
        coarse = F.avg_pool2d(image, 8).mean(dim=1, keepdim=True)
        anomaly_map = F.interpolate(coarse, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return batch.update(anomaly_map=anomaly_map, pred_score=anomaly_map.amax(dim=(1, 2, 3)))
