"""EfficientAd with its network replaced by a trivial map: the I/O ceiling of the pipeline.

Everything else is the real run: the same checkpoint, datamodule, workers, pre/post-processor,
writer and summary. Only ``predict_step`` differs, so the images/s it reaches is the most the
pipeline around the model can deliver on this machine.

    anomalib predict --config configs/folder.yaml --model io_ceiling_model.TrivialMapEfficientAd ...

(with ``benchmarks/`` on ``PYTHONPATH``; ``benchmarks/throughput.py`` does this for you).
"""

from __future__ import annotations

from anomalib.models import EfficientAd


class TrivialMapEfficientAd(EfficientAd):
    """The grey level of each pixel as its "anomaly": costs microseconds, varies per image."""

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):  # noqa: ANN001, ANN201
        del batch_idx, dataloader_idx
        anomaly_map = batch.image.mean(dim=1, keepdim=True)
        return batch.update(anomaly_map=anomaly_map, pred_score=anomaly_map.amax(dim=(1, 2, 3)))
