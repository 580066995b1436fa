"""Lightning glue: turn each predicted batch into NPY / PNG files and the run's summaries.

The hooks stay thin; the work is in :mod:`maps`, :mod:`transfer`, :mod:`artifacts` and :mod:`summary`.
"""

from __future__ import annotations

import os
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_folder_ext import artifacts, journal, maps, outputdir, summary
from anomalib_folder_ext.console import EXIT_INTERRUPTED, count, option_hint, quiet_under_cli, report_failures, say
from anomalib_folder_ext.data import FolderDataModule, FolderImageBatch
from anomalib_folder_ext.decode import decode_rgb
from anomalib_folder_ext.errors import EXIT_INPUT_ERROR, InputError
from anomalib_folder_ext.options import fixed_range_problem, overlay_problem
from anomalib_folder_ext.owned import OwnedDir
from anomalib_folder_ext.runinfo import (
    RankReport, gather_to_rank_zero, peak_memory, precision_text, process_age_s, requested_checkpoint, save_run_config,
)
from anomalib_folder_ext.runplan import OutputNames
from anomalib_folder_ext.scoring import has_image_threshold, image_scores, map_normalizer
from anomalib_folder_ext.transfer import HostCopy
from anomalib_folder_ext.writepool import BatchWritePool


class ChannelsLast(Callback):
    """Run prediction in the channels-last (NHWC) memory layout.

    Convolutions in NHWC take the fast oneDNN kernels on CPUs (and the bf16 matrix units where
    the CPU has them) and the tensor cores on GPUs; EfficientAd is all convolutions. The maps are
    the same up to float rounding (fp32: within 1e-5 of NCHW). Precision stays the trainer's
    (``trainer.precision``); this only changes the layout of the weights and of the network's input.

    The input is converted by a forward pre-hook on the network, so it happens after anomalib's
    pre-processor (which may resize on the device). Batches from
    :class:`~anomalib_folder_ext.data.FolderDataModule` of one image size arrive in NHWC
    already (no conversion at all).

    Example (config)::

        trainer:
          callbacks:
            - class_path: anomalib_folder_ext.callbacks.ChannelsLast
    """

    def __init__(self) -> None:
        super().__init__()
        self._hook = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)
        network = getattr(pl_module, "model", pl_module)
        self._hook = network.register_forward_pre_hook(_channels_last_input)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple | None:
    del module
    if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


class AnomalyMapWriter(Callback):
    """Write each image's min-max normalised anomaly map, then ``results.csv`` and ``results_summary.txt``.

    Runs before anomalib's PostProcessor in the predict loop (Lightning appends the model's own
    callbacks after the trainer's), so it sees the model's raw map. The image-level
    ``pred_score`` / ``pred_label`` are the model's own post-processor's numbers.

    The predict loop never waits here: normalisation, statistics and the PNG's 8-bit levels are
    computed for the whole batch where the maps are (:mod:`maps`), the results start on their way
    to host memory (:class:`~anomalib_folder_ext.transfer.HostCopy`), and a bounded thread pool
    waits for them, encodes and writes. At most a few batches are in flight (back-pressure), and
    everything is flushed before the summaries are written.

    Args:
        output_dir: Where to write; ``None`` takes the datamodule's ``output_dir``.
        save_as_npy: Write ``<stem>_anomaly.npy`` (H x W float32 in [0, 1]).
        save_as_image: Write ``<stem>_anomaly.png``, colour-mapped.
        colormap: Any matplotlib colormap name.
        png_compress_level: zlib level 0-9 for the PNGs; 1 is fast and near the smallest
            (``benchmarks/throughput.py`` measures the levels).
        write_workers: Threads encoding and writing files (zlib, PIL and file writes release
            the GIL). ``None`` picks ``min(8, CPU count)``.
        top_count: Length of the "most anomalous" list in the text summary.
        release_maps: Drop each batch's map once handed over, so anomalib's PostProcessor skips
            normalising and thresholding full-size maps that nothing else reads. Set false when
            another callback, such as anomalib's visualizer, needs ``anomaly_map`` / ``pred_mask``.
        normalization: How each map is scaled to [0, 1] in the files. ``per_image``: by its own
            min and max (every map's max is 1: shows where, not how much); ``model``: anomalib's
            own pixel normalisation from the checkpoint's validation statistics (0.5 is the
            model's pixel threshold), the same scale for every image and every run of the
            checkpoint; ``fixed``: ``(v - vmin) / (vmax - vmin)`` of the raw map. Clipped to [0, 1].
        vmin: The raw value shown as 0 with ``normalization: fixed``.
        vmax: The raw value shown as 1 with ``normalization: fixed``.
        map_size: ``model``: maps at the model's input size; ``original``: each map resized
            (bilinearly, on the device) to its image's own size, so it overlays the image.
        save_overlay: Write ``<stem>_overlay.jpg``: the colour-mapped map blended over the input
            image, at the map's size. The writer threads read the image file again for it.
        overlay_alpha: The map's weight in the overlay (0: only the image, 1: only the map).
        overlay_format: ``jpg`` (small) or ``png`` (lossless).
        report: At the end, also write ``report.html`` (self-contained: counts, a score histogram,
            the most anomalous images with thumbnails and links) and ``report.png`` (the same top
            images as a contact sheet, and the histogram), from what the run wrote.
        report_top_k: How many of the most anomalous images the report shows.
        resume: Continue an interrupted run in the same output dir: images whose files an earlier
            run finished (its journal, :mod:`~anomalib_folder_ext.journal`) are not predicted
            again, and ``results.csv`` comes out as an uninterrupted run's.
        overwrite: An output dir that holds another run's results is refused unless this is set
            (exactly the files that run recorded are deleted first) or ``resume`` is.
        allow_other_files: Write into an output dir that holds other files and no run of this
            tool (refused by default). A file of theirs under a name the run would write is
            refused all the same, never replaced.

    The output dir is guarded (:mod:`~anomalib_folder_ext.outputdir`): the run writes and deletes
    only its own files, inside the output dir, never through a link; a second run into it while
    one writes there is refused, and so is an output dir that would replace an input image.
    At the end, rank 0 prints one line saying where the results are and what they hold; the
    process exits with status 3 when no image could be predicted, and 130 on Ctrl-C.

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
        normalization: Literal["per_image", "model", "fixed"] = "per_image",
        vmin: float | None = None,
        vmax: float | None = None,
        map_size: Literal["model", "original"] = "model",
        save_overlay: bool = False,
        overlay_alpha: float = 0.5,
        overlay_format: Literal["jpg", "png"] = "jpg",
        report: bool = False,
        report_top_k: int = 12,
        resume: bool = False,
        overwrite: bool = False,
        allow_other_files: bool = False,
    ) -> None:
        super().__init__()
        quiet_under_cli()
        self.overwrite = overwrite
        self.allow_other_files = allow_other_files
        # A multi-folder run (batches.py) prints its own line per folder and sets its own exit status.
        self.announce = True
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.save_as_npy = save_as_npy
        self.save_as_image = save_as_image
        self.colormap = colormap
        self.png_compress_level = png_compress_level
        self.write_workers = max(1, write_workers if write_workers is not None else min(8, os.cpu_count() or 1))
        self.top_count = top_count
        self.release_maps = release_maps
        self.resume = resume
        self.normalization, self.vmin, self.vmax, self.map_size = normalization, vmin, vmax, map_size
        if normalization not in {"per_image", "model", "fixed"}:
            msg = f"normalization {normalization!r}: use per_image, model or fixed"
            raise InputError(msg)
        if map_size not in {"model", "original"}:
            msg = f"map_size {map_size!r}: use model or original"
            raise InputError(msg)
        problem = fixed_range_problem(normalization, vmin, vmax)
        if problem:
            raise InputError(problem)
        self._normalizer: maps.Normalizer | None = None
        self.save_overlay, self.overlay_alpha, self.overlay_format = save_overlay, overlay_alpha, overlay_format
        problem = overlay_problem(overlay_alpha, overlay_format)
        if problem:
            raise InputError(problem)
        self._folder = Path()
        self.report, self.report_top_k = report, report_top_k
        self._checkpoint: str | None = None  # the checkpoint of the last run (a script may not name one again)
        self._lut = artifacts.colormap_lut(colormap) if save_as_image or save_overlay else None
        self._reset()

    def _reset(self) -> None:
        if getattr(self, "_dir", None) is not None:
            self._dir.close()  # the previous folder's (a multi-folder run)
        self._pool: BatchWritePool[summary.ImageResult] | None = None
        self._rows: dict[str, summary.ImageResult] = {}
        self._started = time.perf_counter()  # predict start; the loop's clock starts at the first batch
        self._first_batch_at: float | None = None
        self._labels_from_threshold = False
        self._failed = False
        self._earlier: dict[str, summary.ImageResult] = {}  # rows an interrupted run finished (resume)
        self._settings: dict | None = None
        self._earlier_journal: journal.JournalState | None = None  # what resume read (checked again if need be)
        self._journal: journal.Journal | None = None
        self._lock: outputdir.OutputDirLock | None = None
        self._created_output_dir = False
        self._written: list[str] = []  # files this run wrote before its first map (taken back if it fails then)
        self._predicting = False
        self._plan: OutputNames | None = None
        self._dir: OwnedDir | None = None  # every file of the run is written and deleted through it
        self.resolved_output_dir: Path | None = None  # set in setup: output_dir, or the datamodule's

    # -- set-up -------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Every check that can fail, before the checkpoint's weights load (Lightning loads them after setup)."""
        if stage != "predict":
            return
        self._reset()
        checkpoint = requested_checkpoint(trainer)
        if checkpoint:  # under `anomalib predict`, nothing has read it yet: say what is wrong in one line
            from anomalib_folder_ext.checkpoint import read_checkpoint

            read_checkpoint(checkpoint)
            self._checkpoint = str(Path(checkpoint).expanduser().resolve())
        self.resolved_output_dir = out = self._resolve_output_dir(trainer)
        datamodule = trainer.datamodule
        folder = datamodule.folder_path if isinstance(datamodule, FolderDataModule) else None
        names = [path.as_posix() for path in datamodule.relative_paths] if folder else []
        self._plan = self.output_names(names)
        token = outputdir.run_token(trainer.world_size)
        # Every rank decides the same from the same files; only rank 0 writes (between Lightning's setup barriers).
        found = outputdir.check_output_dir(out, folder, self._plan, self.resume or self.overwrite, token,
                                           self.allow_other_files)
        self._created_output_dir = not out.exists()
        artifacts.ensure_writable(out, create=False)
        self._dir = OwnedDir(out, create=True)
        self._lock = outputdir.OutputDirLock(self._dir, token)
        try:
            if trainer.is_global_zero:
                self._lock.acquire()  # checks again: another run may have started since
                self._written += filter(None, [journal.write_owner(self._dir)])
            self._settings = self.run_settings(self._checkpoint, trainer.precision)
            earlier = journal.read_journal(self._dir) if self.resume and folder is not None else None
            if earlier is not None:
                earlier.check(self._settings, out)  # before anything is written: a refused resume changes nothing
                self._earlier_journal = earlier
            self._prepare_output_dir(trainer, names, folder, found, earlier)
            # after an overwrite took the earlier run's files away, its config among them
            self._written += filter(None, [save_run_config(trainer, self._dir, outputdir.CONFIG_NAME)])
        except BaseException:
            self._release(trainer, failed=True)
            raise
        # Keep Lightning's own files (a logger, if one is configured) with the results instead of a
        # ./results/<model>/<data>/latest tree in the working directory.
        trainer._default_root_dir = str(self.resolved_output_dir)  # noqa: SLF001

    def output_names(self, names: list[str]) -> OutputNames:
        """The files each image gets under this writer's options."""
        return OutputNames.for_images(names, self.save_as_npy, self.save_as_image,
                                      self.overlay_format if self.save_overlay else None)

    def _prepare_output_dir(
        self, trainer: Trainer, names: list[str], folder: Path | None, found: str | None, earlier: journal.JournalState | None
    ) -> None:
        """Resume what an earlier run left (``earlier``), or replace it (``overwrite``); refusals were made before."""
        datamodule = trainer.datamodule
        if earlier is not None:
            reuse = journal.reusable_rows(earlier, self._dir, self._plan, folder)
            self._earlier = reuse.complete
            datamodule.skip = frozenset(self._earlier)
            if self._earlier and len(self._earlier) == len(names):
                # Nothing to predict: Lightning's warning about an empty loader would only alarm.
                warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")
            if trainer.is_global_zero:
                line = reuse.summary_line()
                if line:
                    say(line, error=True)
                outputdir.remove_temporaries(self._dir, self._plan)
        elif trainer.is_global_zero:
            if found:
                outputdir.remove_earlier_run(self._dir, self._plan, protect=folder)
            journal.reset(self._dir)

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
        self._folder = datamodule.folder_path
        # Enough batches queued to keep every writer thread busy, few enough to bound host memory.
        max_batches = max(2, -(-4 * self.write_workers // max(datamodule.batch_size, 1)))
        self._pool = BatchWritePool(self.write_workers, max_batches)
        self._labels_from_threshold = has_image_threshold(pl_module)  # one device sync, here, not per batch
        self._normalizer = map_normalizer(pl_module, self.normalization, self.vmin, self.vmax)
        if trainer.ckpt_path and self._checkpoint is None:  # a script's trainer.predict(ckpt_path=...): known only now
            self._checkpoint = str(Path(trainer.ckpt_path).resolve())
            self._settings = self.run_settings(self._checkpoint, trainer.precision)
            if self._earlier_journal is not None:
                self._earlier_journal.check(self._settings, self.resolved_output_dir)
        if trainer.is_global_zero:
            journal.mark_unfinished(self._dir)  # finished again only when the summaries are
        self._journal = journal.Journal(self._dir, trainer.global_rank, self._settings)
        self._predicting = True
        self._started = time.perf_counter()

    def run_settings(self, checkpoint: str | Path | None, precision: str) -> dict:
        """What decides the files' content; an output dir resumes only under the same settings.

        The checkpoint counts by its content (SHA-256), not its path: new weights saved over the old
        file are another model, and a checkpoint moved elsewhere is the same one.
        """
        from anomalib_folder_ext.checkpoint import content_digest

        return {
            "checkpoint": content_digest(checkpoint) if checkpoint else None,
            "precision": str(precision),
            "npy": self.save_as_npy,
            "png": self.colormap if self.save_as_image else False,
            "overlay": f"{self.overlay_format} {self.overlay_alpha:g}" if self.save_overlay else False,
            "normalization": self.normalization_text(),
            "map_size": self.map_size,
        }

    def normalization_text(self) -> str:
        return f"fixed {self.vmin:g} {self.vmax:g}" if self.normalization == "fixed" else self.normalization

    # -- per batch ----------------------------------------------------------------------------
    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: FolderImageBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._first_batch_at is None:
            self._first_batch_at = time.perf_counter()

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
        sizes = outputs.original_size if self.map_size == "original" else None
        with_levels = self.save_as_image or self.save_overlay
        computed = maps.process_maps(outputs.anomaly_map, with_levels, self._normalizer, sizes)
        pred_scores, pred_labels = image_scores(pl_module, outputs.pred_score, self._labels_from_threshold)
        if self.release_maps:
            outputs.anomaly_map = None  # the PostProcessor then skips its pixel-level work
        if pred_labels is not None and outputs.pred_label is None:
            outputs.pred_label = pred_labels  # the same labels; the PostProcessor then does not wait for the device
        tensors = {"stats": computed.stats}
        wanted = {"normalized": self.save_as_npy, "levels": with_levels}
        tensors |= {name: t for name, t in computed.host_tensors().items() if wanted[name.split(".")[0]]}
        if pred_scores is not None:
            tensors["pred_score"] = pred_scores
        if pred_labels is not None:
            tensors["pred_label"] = pred_labels
        copy = HostCopy(tensors)
        size = len(outputs.relative_path)
        items = zip(outputs.relative_path, outputs.original_size, outputs.error, outputs.note or [""] * size,
                    outputs.source or [None] * size, strict=True)
        # A resumed run predicts the batches of an uninterrupted run (the same maps, bit for bit);
        # the images of them an earlier run finished are not written again.
        jobs = [partial(self._write_one, copy, index, *item) for index, item in enumerate(items)
                if item[0] not in self._earlier]
        self._keep(self._pool.submit(jobs))
        self._keep(self._pool.collect_done())  # journal what is finished now, not a few batches later

    def _write_one(
        self, copy: HostCopy, index: int, name: str, size: tuple[int, int], error: str, note: str,
        source: tuple[int, int] | None,
    ) -> summary.ImageResult:
        row = summary.ImageResult(image=name, height=int(size[0]), width=int(size[1]), note=note, source=source)
        if error:
            row.status, row.error = "failed", error
            return row
        host = copy.wait()
        row.score, row.raw_min, row.raw_mean, row.norm_mean = host["stats"][index].tolist()
        if "pred_score" in host:
            row.pred_score = float(host["pred_score"][index])
        if "pred_label" in host:
            row.pred_label = bool(host["pred_label"][index])
        files = self._plan.files(name)
        if self.save_as_npy:
            row.npy = files["npy"]
            self._dir.write(row.npy, artifacts.encode_npy(maps.image_map(host, "normalized", index).numpy()))
        if self.save_as_image:
            row.png = files["png"]
            png = artifacts.encode_png(maps.image_map(host, "levels", index).numpy(), self.png_compress_level, palette=self._lut)
            self._dir.write(row.png, png)
        if self.save_overlay:
            row.overlay = files["overlay"]
            levels = maps.image_map(host, "levels", index).numpy()
            overlay = artifacts.blend_overlay(decode_rgb(self._folder / name, max_pixels=None), levels, self._lut, self.overlay_alpha)
            self._dir.write(row.overlay, artifacts.encode_overlay(overlay, self.overlay_format))
        return row

    def _keep(self, rows: list[summary.ImageResult]) -> None:
        self._rows.update((row.image, row) for row in rows)
        if self._journal is not None:
            self._journal.append(rows)

    # -- end ----------------------------------------------------------------------------------
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        try:
            self._keep(self._pool.drain())  # a failed write is raised here, naming its file
        finally:
            self._shutdown()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Keep what the model already computed: queued writes still land (each file atomically).

        No summary is written for a failed run; the error that stopped it is the one reported.
        """
        if isinstance(exception, SystemExit):
            return  # our own exit status (no image succeeded), raised after the summaries
        self._failed = True
        if self._pool is not None:
            self._keep(self._pool.abandon())  # journaled: a resumed run does not redo them
        self._shutdown()
        self._release(trainer, failed=True)
        if isinstance(exception, KeyboardInterrupt):
            if trainer.is_global_zero:
                done = len(self._rows) + len(self._earlier)
                say(f"interrupted: {count(done)} images finished and recorded in {self.resolved_output_dir}; "
                    f"run it again with {option_hint('resume')} to predict only the rest", error=True)
            raise SystemExit(EXIT_INTERRUPTED)  # Lightning would exit with 1, as for a crash
        if isinstance(exception, InputError):
            # One line and exit status 2, as for every input error. Checks made before the loop fail
            # alike on every rank: rank 0 says it; a rank's own failure in the loop is said by that rank.
            if trainer.is_global_zero or self._predicting:
                prefix = "" if trainer.is_global_zero else f"rank {trainer.global_rank}: "
                say(f"error: {prefix}{exception}", error=True)
            raise SystemExit(EXIT_INPUT_ERROR)

    def _release(self, trainer: Trainer, failed: bool) -> None:
        """Unlock the output dir; after a failure before any map, take back what this run wrote.

        Only a run that held the lock touches anything: one refused by a live run's lock leaves
        that run's files alone.
        """
        if trainer.is_global_zero and self._lock is not None and self._lock.held:
            if failed and not self._rows and not self._earlier:
                outputdir.remove_unused(self._dir, self._written, self._created_output_dir)
            self._lock.release()
        self._lock = None

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Merge every rank's rows on rank 0 and write the summaries.

        Teardown, not ``on_predict_end``: a rank that got no images runs no ``on_predict_*`` hook,
        but every rank reaches teardown, so the gather here always completes.
        """
        self._shutdown()
        if stage != "predict" or self._failed:
            return
        try:
            self._finish(trainer)
        finally:
            self._release(trainer, failed=False)

    def _finish(self, trainer: Trainer) -> None:
        settings = self._settings
        finished = time.perf_counter()
        loop_s = finished - (self._first_batch_at or self._started)
        mine = RankReport(list(self._rows.values()), self._startup_s(), loop_s, peak_memory(trainer))
        reports = gather_to_rank_zero(mine)
        if trainer.is_global_zero:
            merged = dict(self._earlier)
            merged.update((row.image, row) for report in reports for row in report.rows)
            order = [path.as_posix() for path in trainer.datamodule.relative_paths]
            rows = [merged[name] for name in order if name in merged]
            predicted = sum(len(report.rows) for report in reports)
            loop_s = max((report.loop_s for report in reports if report.rows), default=0.0)
            parameters = self._write_summaries(trainer, rows, reports, predicted, loop_s)
            if self.report:
                from anomalib_folder_ext.report import write_report

                write_report(self._dir, trainer.datamodule.folder_path, rows, parameters,
                             self.report_top_k, self.colormap, self.overlay_alpha)
            journal.write_finished(self._dir, {
                "settings": settings,
                "images": journal.names_digest(order),
                "count": len(rows),
                "predicted": predicted,
                "loop_s": round(loop_s, 3),
                "startup_s": reports[0].startup_s,
            })
            if self.announce:
                progress = trainer.progress_bar_callback
                if progress is not None:  # finish the bar first: the last line goes below it
                    progress.teardown(trainer, trainer.lightning_module, "predict")
                self._announce(rows, predicted, loop_s)

    def _announce(self, rows: list[summary.ImageResult], predicted: int, loop_s: float) -> None:
        """The run's last line: where the results are and what they hold; exit 3 when nothing succeeded."""
        stats = summary.score_statistics(rows)
        relative = os.path.relpath(self.resolved_output_dir)
        shown = f"{self.resolved_output_dir.resolve() if relative.startswith('..') else relative}/"
        files = [summary.CSV_NAME, summary.SUMMARY_NAME] + (["report.html"] if self.report else [])
        first = next((row for row in rows if row.status != "ok"), None)
        status = report_failures(stats["images"], stats["failed"], f"{shown}{summary.CSV_NAME}",
                                 f"{artifacts.display_name(first.image)}: {first.error}" if first else "")
        if status:
            raise SystemExit(status)
        parts = [f"{count(stats['images'])} images" + (f" ({count(stats['failed'])} failed)" if stats["failed"] else "")]
        if any(row.pred_label is not None for row in rows):
            parts.append(f"{count(stats['above_threshold'])} above threshold")
        noted = sum(bool(row.note) for row in rows)
        if noted:
            parts.append(f"{count(noted)} with a note")
        if predicted < len(rows):
            parts.append(f"{count(len(rows) - predicted)} from the earlier run")
        if predicted and loop_s > 0:
            parts.append(f"{predicted / loop_s:.0f} images/s" if predicted / loop_s >= 10 else f"{predicted / loop_s:.2f} images/s")
        say(f"{shown}: {', '.join(parts)} \u2014 {', '.join(files)}")

    def _startup_s(self) -> float | None:
        """Seconds from the process's start to its first batch: imports, checkpoint, workers."""
        age = process_age_s()
        if age is None or self._first_batch_at is None:
            return None
        return age - (time.perf_counter() - self._first_batch_at)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._journal is not None:
            self._journal.close()

    def _write_summaries(
        self, trainer: Trainer, rows: list[summary.ImageResult], reports: list[RankReport], predicted: int, loop_s: float
    ) -> dict[str, object]:
        datamodule = trainer.datamodule
        ok = sum(row.status == "ok" for row in rows)
        dataset = datamodule.predict_data
        startups = [f"{report.startup_s:.1f}" for report in reports if report.startup_s is not None]
        per_rank = ", per rank" if len(reports) > 1 else ""
        parameters = {
            "checkpoint": self._checkpoint or "(none: weights as instantiated)",
            "folder": datamodule.folder_path.resolve(),
            "output dir": self.resolved_output_dir.resolve(),
            "image size (H, W)": dataset.image_size if dataset is not None else "",
            "batch size": datamodule.batch_size,
            "device": f"{trainer.strategy.root_device.type} ({trainer.strategy.__class__.__name__})",
            "ranks": f"{trainer.world_size} (images per rank: {', '.join(str(len(r.rows)) for r in reports)})",
            "precision": precision_text(trainer),
            "normalization": _NORMALIZATION_NOTES[self.normalization].format(self=self),
            "map size": "each image's own size" if self.map_size == "original" else "the model's input size",
            "outputs": ", ".join(
                name for name, on in (("npy", self.save_as_npy), (f"png ({self.colormap})", self.save_as_image),
                                      (f"overlay ({self.overlay_format}, alpha {self.overlay_alpha:g})", self.save_overlay))
                if on
            )
            or "summary only",
            "images": f"{len(rows)} ({ok} ok, {len(rows) - ok} failed)"
            + (f"; {len(rows) - predicted} finished by an earlier run (resumed)" if len(rows) > predicted else ""),
            "start-up": f"{' / '.join(startups)} s (process start to first batch{per_rank})" if startups else "n/a",
            "predict loop": f"{loop_s:.2f} s (first batch to last file written)",
            "throughput": f"{predicted / loop_s:.2f} images/s" if loop_s > 0 else "",
            "peak memory": " / ".join(report.peak_memory for report in reports) + (f" ({per_rank[2:]})" if per_rank else ""),
        }
        self._dir.write(summary.CSV_NAME, summary.csv_text(rows).encode())
        self._dir.write(summary.SUMMARY_NAME, summary.summary_text(parameters, rows, self.top_count).encode())
        return parameters


_NORMALIZATION_NOTES = {
    "per_image": "per_image (each map by its own min and max: every map's max is 1)",
    "model": "model (anomalib's pixel normalisation from the checkpoint: 0.5 = the model's pixel threshold; clipped)",
    "fixed": "fixed (raw {self.vmin:g} -> 0, raw {self.vmax:g} -> 1; clipped)",
}


