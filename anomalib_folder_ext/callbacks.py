"""Lightning glue: turn each predicted batch into NPY / PNG files and the run's summaries.

The hooks stay thin; the work is in :mod:`normalize`, :mod:`artifacts` and :mod:`summary`.
"""

from __future__ import annotations

import collections
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from anomalib.data import InferenceBatch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_folder_ext import artifacts, normalize, summary
from anomalib_folder_ext.data import FolderDataModule, FolderImageBatch


class ChannelsLast(Callback):
    """Run prediction in the channels-last (NHWC) memory layout.

    Convolutions in NHWC take the fast oneDNN kernels on CPUs (and the bf16 matrix units where
    the CPU has them) and the tensor cores on GPUs; EfficientAd is all convolutions. The maps are
    the same up to float rounding (fp32: within 1e-5 of NCHW). Precision stays the trainer's
    (``trainer.precision``); this only changes the layout of the weights and of each batch.

    Example (config)::

        trainer:
          callbacks:
            - class_path: anomalib_folder_ext.callbacks.ChannelsLast
    """

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: FolderImageBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if isinstance(batch.image, torch.Tensor) and batch.image.ndim == 4:
            batch.image = batch.image.contiguous(memory_format=torch.channels_last)


class AnomalyMapWriter(Callback):
    """Write each image's min-max normalised anomaly map, then ``results.csv`` and ``results_summary.txt``.

    Runs before anomalib's PostProcessor in the predict loop (Lightning appends the model's own
    callbacks after the trainer's), so it sees the model's raw map. The image-level
    ``pred_score`` / ``pred_label`` come from the model's own post-processor applied to the raw score.

    Encoding and file writes run on a small bounded thread pool so the model does not wait on
    the disk; everything is flushed before the summaries are written.

    Args:
        output_dir: Where to write; ``None`` takes the datamodule's ``output_dir``.
        save_as_npy: Write ``<stem>_anomaly.npy`` (H x W float32 in [0, 1]).
        save_as_image: Write ``<stem>_anomaly.png``, colour-mapped.
        colormap: Any matplotlib colormap name.
        png_compress_level: zlib level 0-9 for the PNGs; 1 is fast and near the smallest
            (``benchmarks/throughput.py`` measures the levels).
        write_workers: Threads colour-mapping, encoding and writing files (zlib, PIL and numpy
            release the GIL). ``None`` picks ``min(8, CPU count)``.
        top_count: Length of the "most anomalous" list in the text summary.
        release_maps: Drop each batch's map once copied, so anomalib's PostProcessor skips
            normalising and thresholding full-size maps that nothing else reads (about half the
            predict loop's time when the model is fast). Set false when another callback, such as
            anomalib's visualizer, needs ``anomaly_map`` / ``pred_mask``.

    Example (config)::

        trainer:
          callbacks:
            - class_path: anomalib_folder_ext.callbacks.AnomalyMapWriter
              init_args:
                save_as_image: false
    """

    def __init__(
        self,
        output_dir: str | Path | None = None,
        save_as_npy: bool = True,
        save_as_image: bool = True,
        colormap: str = "jet",
        png_compress_level: int = 1,
        write_workers: int | None = None,
        top_count: int = 10,
        release_maps: bool = True,
    ) -> None:
        super().__init__()
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.save_as_npy = save_as_npy
        self.save_as_image = save_as_image
        self.colormap = colormap
        self.png_compress_level = png_compress_level
        self.write_workers = max(1, write_workers if write_workers is not None else min(8, os.cpu_count() or 1))
        self.top_count = top_count
        self.release_maps = release_maps
        self._lut = artifacts.colormap_lut(colormap) if save_as_image else None
        self._reset()

    def _reset(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[Future] = collections.deque()
        self._rows: dict[str, summary.ImageResult] = {}
        self._stems: dict[str, PurePosixPath] = {}
        self._started = time.perf_counter()
        self._failed = False

    # -- set-up -------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        self._reset()
        self.resolved_output_dir = self._resolve_output_dir(trainer)
        artifacts.ensure_writable(self.resolved_output_dir)
        # anomalib saves the run's full config.yaml under the trainer's root dir, by default a
        # ./results/<model>/<data>/latest tree in the working directory. Keep it with the results
        # instead: <output_dir>/config.yaml says exactly how these files were made.
        trainer._default_root_dir = str(self.resolved_output_dir)  # noqa: SLF001

    def _resolve_output_dir(self, trainer: Trainer) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        datamodule = trainer.datamodule
        if isinstance(datamodule, FolderDataModule):
            return datamodule.output_dir
        msg = "AnomalyMapWriter needs output_dir, or anomalib_folder_ext.data.FolderDataModule as the data"
        raise ValueError(msg)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, FolderDataModule):
            msg = "AnomalyMapWriter reads image names from anomalib_folder_ext.data.FolderDataModule; use it as --data"
            raise TypeError(msg)
        names = [path.as_posix() for path in datamodule.relative_paths]
        self._stems = dict(zip(names, artifacts.output_stems(names), strict=True))
        self._pool = ThreadPoolExecutor(max_workers=self.write_workers, thread_name_prefix="anomaly-map-writer")
        self._started = time.perf_counter()

    # -- per batch ----------------------------------------------------------------------------
    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: FolderImageBatch,
        batch: FolderImageBatch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, batch, batch_idx, dataloader_idx
        # Copy now: anomalib's PostProcessor rewrites the batch's maps right after this hook.
        raw_maps = outputs.anomaly_map.detach().to(torch.float32).cpu().numpy().copy()
        raw_maps = raw_maps.reshape(len(outputs.relative_path), *raw_maps.shape[-2:])
        if self.release_maps:
            outputs.anomaly_map = None  # the PostProcessor then skips its pixel-level work
        pred_scores, pred_labels = _post_processed_scores(pl_module, outputs.pred_score)
        sizes = outputs.original_size.tolist()

        for i, relative in enumerate(outputs.relative_path):
            row = summary.ImageResult(image=relative, height=int(sizes[i][0]), width=int(sizes[i][1]))
            if outputs.error[i]:
                row.status, row.error = "failed", outputs.error[i]
                self._rows[relative] = row
                continue
            row.pred_score = pred_scores[i] if pred_scores is not None else float("nan")
            row.pred_label = pred_labels[i] if pred_labels is not None else None
            self._submit(row, raw_maps[i])

    def _submit(self, row: summary.ImageResult, raw_map: np.ndarray) -> None:
        while len(self._pending) >= 4 * self.write_workers:
            self._collect(self._pending.popleft())
        self._pending.append(self._pool.submit(self._write_one, row, raw_map))

    def _write_one(self, row: summary.ImageResult, raw_map: np.ndarray) -> summary.ImageResult:
        normalized = normalize.minmax_normalize(raw_map)
        stats = normalize.map_stats(raw_map, normalized)
        row.score, row.raw_min, row.raw_mean, row.norm_mean = stats.score, stats.raw_min, stats.raw_mean, stats.norm_mean
        stem = self._stems[row.image]
        if self.save_as_npy:
            row.npy = f"{stem}{artifacts.NPY_SUFFIX}"
            artifacts.atomic_write(self.resolved_output_dir / row.npy, artifacts.encode_npy(normalized))
        if self.save_as_image:
            row.png = f"{stem}{artifacts.PNG_SUFFIX}"
            png = artifacts.encode_colormap_png(normalized, self._lut, self.png_compress_level)
            artifacts.atomic_write(self.resolved_output_dir / row.png, png)
        return row

    def _collect(self, future: Future) -> None:
        row = future.result()  # re-raises a failed write here, in the predict loop
        self._rows[row.image] = row

    def _drain(self) -> None:
        while self._pending:
            self._collect(self._pending.popleft())

    # -- end ----------------------------------------------------------------------------------
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        try:
            self._drain()
        finally:
            self._shutdown()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Keep what the model already computed: queued writes still land (each file atomically).

        No summary is written for a failed run; the error that stopped it is the one reported.
        """
        self._failed = True
        for future in self._pending:
            future.exception()  # waits; a second write error is not raised over the first
        self._shutdown()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Merge every rank's rows on rank 0 and write the summaries.

        Teardown, not ``on_predict_end``: a rank that got no images runs no ``on_predict_*`` hook,
        but every rank reaches teardown, so the gather here always completes.
        """
        self._shutdown()
        if stage != "predict" or self._failed:
            return
        elapsed = time.perf_counter() - self._started
        per_rank = _gather_to_rank_zero(list(self._rows.values()))
        if trainer.is_global_zero:
            merged = {row.image: row for rank_rows in per_rank for row in rank_rows}
            order = [path.as_posix() for path in trainer.datamodule.relative_paths]
            rows = [merged[name] for name in order if name in merged]
            self._write_summaries(trainer, rows, elapsed, [len(rank_rows) for rank_rows in per_rank])

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._pending.clear()

    def _write_summaries(
        self, trainer: Trainer, rows: list[summary.ImageResult], elapsed: float, images_per_rank: list[int]
    ) -> None:
        datamodule = trainer.datamodule
        ok = sum(row.status == "ok" for row in rows)
        dataset = datamodule.predict_data
        parameters = {
            "checkpoint": trainer.ckpt_path or "(none: weights as instantiated)",
            "folder": datamodule.folder_path.resolve(),
            "output dir": self.resolved_output_dir.resolve(),
            "image size (H, W)": dataset.image_size if dataset is not None else "",
            "batch size": datamodule.batch_size,
            "device": f"{trainer.strategy.root_device.type} ({trainer.strategy.__class__.__name__})",
            "ranks": f"{trainer.world_size} (images per rank: {', '.join(map(str, images_per_rank))})",
            "precision": trainer.precision,
            "outputs": ", ".join(
                name for name, on in (("npy", self.save_as_npy), (f"png ({self.colormap})", self.save_as_image)) if on
            )
            or "summary only",
            "images": f"{len(rows)} ({ok} ok, {len(rows) - ok} failed)",
            "wall time": f"{elapsed:.2f} s",
            "throughput": f"{len(rows) / elapsed:.2f} images/s" if elapsed > 0 else "",
        }
        out = self.resolved_output_dir
        artifacts.atomic_write(out / summary.CSV_NAME, summary.csv_text(rows).encode())
        artifacts.atomic_write(out / summary.SUMMARY_NAME, summary.summary_text(parameters, rows, self.top_count).encode())


def _gather_to_rank_zero(rows: list[summary.ImageResult]) -> list[list[summary.ImageResult]]:
    """Every rank's rows, indexed by rank, on rank 0 (other ranks get ``[]``); no-op in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [rows]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(rows, gathered, dst=0)
    return gathered if gathered is not None else []


def _post_processed_scores(
    pl_module: LightningModule, raw_scores: torch.Tensor
) -> tuple[list[float] | None, list[bool] | None]:
    """The model's own post-processor applied to raw image scores: anomalib's ``pred_score`` and label."""
    post_processor = getattr(pl_module, "post_processor", None)
    if post_processor is None or raw_scores is None:
        return None, None
    processed = post_processor(InferenceBatch(pred_score=raw_scores.detach().float()))
    scores = processed.pred_score.flatten().cpu().tolist()
    label = processed.pred_label
    labels = label.flatten().cpu().tolist() if label is not None and label.dtype == torch.bool else None
    return scores, labels
