"""A batch's maps to files, on threads: encode NPY / PNG / overlay, write each atomically, journal its row.

The predict loop never waits here: normalisation, statistics and the PNG's 8-bit levels are
computed for the whole batch where the maps are (:mod:`maps`), the results start on their way to
host memory (:class:`~anomalib_folder_ext.callbacks.transfer.HostCopy`), and a bounded thread pool
(:class:`~anomalib_folder_ext.callbacks.writepool.BatchWritePool`) waits for them, encodes and writes. At most
a few batches are in flight (back-pressure). Works without a Trainer.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from anomalib_folder_ext.decision.rule import DEFECT, Thresholds, mask_regions
from anomalib_folder_ext.outputs import artifacts, journal, maps
from anomalib_folder_ext.images.decode import decode_rgb
from anomalib_folder_ext.options import MapSize, WriterOptions
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.runplan import RunPlan
from anomalib_folder_ext.outputs.summary import ImageResult
from anomalib_folder_ext.callbacks.transfer import HostCopy
from anomalib_folder_ext.callbacks.writepool import BatchWritePool


class MapWriter:
    """Writes the files of each predicted image of one folder, and keeps their rows.

    ``journal``: where each finished row is recorded as soon as it is (resume trusts it).
    ``rows`` holds this process's rows, by image name.
    """

    def __init__(self, options: WriterOptions, directory: OwnedDir, plan: RunPlan, folder: Path, batch_size: int,
                 journal: journal.Journal, normalizer: maps.Normalizer, thresholds: Thresholds | None = None) -> None:
        self.options, self.directory, self.plan, self.folder = options, directory, plan, folder
        self.journal, self.normalizer, self.thresholds = journal, normalizer, thresholds or Thresholds()
        self.lut = artifacts.colormap_lut(options.colormap) if options.with_levels else None
        self.rows: dict[str, ImageResult] = {}
        self.listeners: list = []  # told each group of rows once journaled, closed with this (a watch's live files)
        # Enough batches queued to keep every writer thread busy, few enough to bound host memory.
        max_batches = max(2, -(-4 * options.write_workers // max(batch_size, 1)))
        self.pool: BatchWritePool[ImageResult] | None = BatchWritePool(options.write_workers, max_batches)

    def submit(self, outputs: object, pred_scores: torch.Tensor | None, finish_now: bool = False) -> None:
        """Queue the files of a predicted batch (a ``FolderImageBatch``) and journal what is finished now
        (``finish_now``: wait for every file first, when no batch follows soon: a watch between parts).

        A resumed run predicts the batches of an uninterrupted run (the same maps, bit for bit);
        the images of them an earlier run finished are not written again.
        """
        for name in [*outputs.relative_path, *(image.relative_path for image in outputs.failed or ())]:
            self.plan.outputs.add(name)  # a watch's images arrive as it runs; a folder's are all planned
        sizes = outputs.original_size if self.options.map_size is MapSize.original else None
        computed = maps.process_maps(outputs.anomaly_map, self.options.with_levels, self.normalizer, sizes,
                                     self.thresholds.pixel)
        wanted = {"normalized": self.options.save_as_npy, "levels": self.options.with_levels, "masks": True}
        tensors = {"stats": computed.stats}
        tensors |= {name: t for name, t in computed.host_tensors().items() if wanted[name.split(".")[0]]}
        if pred_scores is not None:
            tensors["pred_score"] = pred_scores
        copy = HostCopy(tensors)
        size = len(outputs.relative_path)
        items = zip(outputs.relative_path, outputs.original_size, outputs.error, outputs.note or [""] * size,
                    outputs.source or [None] * size, strict=True)
        failed = [(-1, (image.relative_path, (0, 0), image.error, image.note, image.source))
                  for image in outputs.failed or ()]  # no map: its row says why
        jobs = [partial(self._write_one, copy, index, *item) for index, item in [*enumerate(items), *failed]
                if item[0] not in self.plan.earlier]
        self._keep(self.pool.submit(jobs))
        self._keep(self.pool.drain() if finish_now else self.pool.collect_done())  # now, not a few batches later

    def _write_one(
        self, copy: HostCopy, index: int, name: str, size: tuple[int, int], error: str, note: str,
        source: tuple[int, ...] | None,
    ) -> ImageResult:
        row = ImageResult(image=name, height=int(size[0]), width=int(size[1]), note=note, source=source)
        if error:
            row.status, row.error = "failed", error
            return row
        host = copy.wait()
        row.score, row.raw_min, row.raw_mean, row.norm_mean = host["stats"][index].tolist()
        if "pred_score" in host:
            row.pred_score = float(host["pred_score"][index])
        row.decision = self.thresholds.decide(row.score)
        row.pred_label = row.decision == DEFECT if row.decision else None  # the label is the decision's
        files = self.plan.outputs.files(name)
        if self.thresholds.pixel is not None:
            mask = maps.image_map(host, "masks", index).numpy()
            row.defect_area, row.defect_regions = mask_regions(mask)
            row.defect_fraction = row.defect_area / mask.size
            if self.options.save_mask:
                row.mask = files["mask"]
                self.directory.write(row.mask, artifacts.encode_mask(mask, self.options.png_compress_level))
        options = self.options
        levels = maps.image_map(host, "levels", index).numpy() if options.with_levels else None
        if options.save_as_npy:
            row.npy = files["npy"]
            self.directory.write(row.npy, artifacts.encode_npy(maps.image_map(host, "normalized", index).numpy()))
        if options.save_as_image:
            row.png = files["png"]
            self.directory.write(row.png, artifacts.encode_png(levels, options.png_compress_level, palette=self.lut))
        if options.save_overlay:
            row.overlay = files["overlay"]
            image = decode_rgb(self.folder / name, max_pixels=None)
            overlay = artifacts.blend_overlay(image, levels, self.lut, options.overlay_alpha)
            self.directory.write(row.overlay, artifacts.encode_overlay(overlay, options.overlay_format.value))
        return row

    def _keep(self, rows: list[ImageResult]) -> None:
        self.rows.update((row.image, row) for row in rows)
        self.journal.append(rows)
        for listener in self.listeners:
            listener.rows_done(rows)

    def drain(self) -> None:
        """Wait for every queued file; a failed write is raised here, naming its file."""
        if self.pool is not None:
            self._keep(self.pool.drain())

    def abandon(self) -> None:
        """After a failure: keep (and journal) what finished, so a resumed run does not redo it."""
        if self.pool is not None:
            self._keep(self.pool.abandon())

    def close(self) -> None:
        for listener in self.listeners:  # their last rows are in; the end's views are the writer's
            listener.close()
        self.listeners.clear()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self.journal.close()
