"""Lightning glue: ``AnomalyMapWriter``, whose hooks call the modules that do the work.

A folder's run, hook by hook: ``setup`` checks and prepares the output dir and makes the run plan
(:mod:`~anomalib_folder_ext.outputs.rundir`), before the checkpoint's weights load; each batch's maps go
to :mod:`~anomalib_folder_ext.callbacks.mapwriter` with the model's scores (:mod:`~anomalib_folder_ext.callbacks.scoring`);
``teardown`` merges the ranks and writes the summaries (:mod:`~anomalib_folder_ext.callbacks.finish`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_folder_ext.outputs import journal, outputdir
from anomalib_folder_ext.distributed import liveness
from anomalib_folder_ext.console import (
    EXIT_INTERRUPTED,
    count,
    option_hint,
    quiet_under_cli,
    say,
)
from anomalib_folder_ext.data.datamodule import FolderDataModule, FolderImageBatch
from anomalib_folder_ext.errors import EXIT_INPUT_ERROR, InputError
from anomalib_folder_ext.callbacks.finish import FolderFinish
from anomalib_folder_ext.callbacks.mapwriter import MapWriter
from anomalib_folder_ext.options import WriterOptions, args_doc
from anomalib_folder_ext.distributed.ranks import DecidedOnRankZero
from anomalib_folder_ext.outputs.rundir import RunDirectory, output_dir_of
from anomalib_folder_ext.callbacks.runinfo import LoopClock, backend_of, checked_checkpoint, save_run_config
from anomalib_folder_ext.outputs.runplan import OutputNames, RunPlan, run_settings
from anomalib_folder_ext.callbacks.scoring import Scoring, hand_over
from anomalib_folder_ext.outputs.summary import ImageResult


class AnomalyMapWriter(Callback):
    """Write each image's normalised anomaly map (NPY, PNG, overlay), then ``results.csv`` and ``results_summary.txt``.

    Runs before anomalib's PostProcessor in the predict loop (Lightning appends the model's own
    callbacks after the trainer's), so it sees the model's raw map. The image-level
    ``pred_score`` / ``pred_label`` are the model's own post-processor's numbers. The predict loop
    never waits for a file to be written (:mod:`~anomalib_folder_ext.callbacks.mapwriter`).

    The output dir is guarded (:mod:`~anomalib_folder_ext.outputs.outputdir`): the run writes and deletes
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

    The arguments are :class:`~anomalib_folder_ext.options.WriterOptions`, documented there (below).
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
        self.options = WriterOptions(
            output_dir=output_dir, save_as_npy=save_as_npy, save_as_image=save_as_image, colormap=colormap,
            png_compress_level=png_compress_level, write_workers=write_workers, top_count=top_count,
            release_maps=release_maps, normalization=normalization, vmin=vmin, vmax=vmax, map_size=map_size,
            save_overlay=save_overlay, overlay_alpha=overlay_alpha, overlay_format=overlay_format, report=report,
            report_top_k=report_top_k, resume=resume, overwrite=overwrite, allow_other_files=allow_other_files,
        )
        self.announce = True  # the last line and the exit status; a multi-folder run says its own
        self.checkpoint: str | None = None  # the last run's (a script may not name it again)
        self.plan: RunPlan | None = None  # the datamodule asks it which images not to predict again
        self._run_config: object = None  # this folder's own config, in a multi-folder run
        self._run_dir: RunDirectory | None = None
        self._reset()

    def configure(self, *, resume: bool, overwrite: bool, announce: bool, run_config: object = None) -> None:
        """What a multi-folder run (:mod:`~anomalib_folder_ext.run.batches`) sets for each folder's run."""
        self.options = self.options.configured(resume=resume, overwrite=overwrite)
        self.announce, self._run_config = announce, run_config

    def _reset(self) -> None:
        if self._run_dir is not None:
            self._run_dir.close()  # the previous folder's (a multi-folder run)
        self._run_dir, self.plan = None, None
        self._maps: MapWriter | None = None
        self._scoring: Scoring | None = None
        self._clock = LoopClock()
        self._failed = False

    @property
    def resolved_output_dir(self) -> Path | None:
        """This run's output dir (the writer's ``output_dir``, or the datamodule's), once ``setup`` ran."""
        return self._run_dir.output_dir if self._run_dir is not None else None

    # -- set-up -------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Every check that can fail, before the checkpoint's weights load (Lightning loads them after setup)."""
        if stage != "predict":
            return
        self._reset()
        self.checkpoint = checked_checkpoint(trainer) or self.checkpoint
        if self.announce:  # a multi-folder run watches the ranks itself
            liveness.watch(trainer.strategy, rerun=f"it again with {option_hint('resume')}")
        datamodule = trainer.datamodule
        folder = datamodule.folder_path if isinstance(datamodule, FolderDataModule) else None
        outputs = OutputNames.for_options(self.options, [path.as_posix() for path in datamodule.relative_paths] if folder else [])
        self._run_dir = run_dir = RunDirectory(output_dir_of(self.options.output_dir, datamodule), folder, outputs,
                                               self.options, trainer.world_size)
        settings = run_settings(self.options, self.checkpoint, trainer.precision, backend_of(pl_module))
        try:
            self.plan = run_dir.open_on_every_rank(trainer.strategy, settings)
            # after an overwrite took the earlier run's files away, its config among them
            run_dir.keep(save_run_config(trainer, run_dir.directory, outputdir.CONFIG_NAME, self._run_config))
        except BaseException:
            self._release(failed=True)
            raise
        # Lightning's own files (a logger, if one is configured) go with the results, not to ./results/...
        trainer._default_root_dir = str(self._run_dir.output_dir)  # noqa: SLF001

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, FolderDataModule):
            msg = "AnomalyMapWriter reads image names from anomalib_folder_ext.data.FolderDataModule; use it as --data"
            raise TypeError(msg)
        if trainer.ckpt_path and self.checkpoint is None:  # a script's trainer.predict(ckpt_path=...): known only now
            self.checkpoint = str(Path(trainer.ckpt_path).resolve())
            self.plan.settings = run_settings(self.options, self.checkpoint, trainer.precision, backend_of(pl_module))
            self._run_dir.check_settings(trainer.strategy, self.plan.settings)
        options, directory = self.options, self._run_dir.directory
        self._scoring = Scoring.for_model(pl_module, options.normalization, options.vmin, options.vmax)
        if trainer.is_global_zero:
            journal.mark_unfinished(directory)  # finished again only when the summaries are
        rows = journal.Journal(directory, trainer.global_rank, self.plan.settings)
        self._maps = MapWriter(options, directory, self.plan, datamodule.folder_path, datamodule.batch_size, rows,
                               self._scoring.normalizer)
        self._clock.start()

    # -- per batch ----------------------------------------------------------------------------
    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: FolderImageBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._clock.batch()

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: FolderImageBatch, batch: FolderImageBatch,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        scores, labels = self._scoring.scores(pl_module, outputs.pred_score)
        self._maps.submit(outputs, scores, labels)
        hand_over(outputs, labels, self.options.release_maps)

    # -- end ----------------------------------------------------------------------------------
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        try:
            self._maps.drain()  # a failed write is raised here, naming its file
        finally:
            self._shutdown()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Keep what the model already computed: queued writes still land (each file atomically).

        No summary is written for a failed run; the error that stopped it is the one reported.
        """
        if isinstance(exception, SystemExit):
            return  # our own exit status (no image succeeded), raised after the summaries
        self._failed = True
        if self._maps is not None:
            self._maps.abandon()  # journaled: a resumed run does not redo them
        self._shutdown()
        self._release(failed=True)
        _stop_for(exception, trainer, len(self._rows()) + len(self.plan.earlier if self.plan else {}), self.resolved_output_dir)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Merge every rank's rows on rank 0 and write the summaries.

        Teardown, not ``on_predict_end``: a rank that got no images runs no ``on_predict_*`` hook,
        but every rank reaches teardown, so the gather here always completes.
        """
        self._shutdown()
        if stage != "predict" or self._failed:
            return
        try:
            finish = FolderFinish(self.options, self._run_dir.directory, self.plan, self.checkpoint, self.announce)
            finish.run(trainer, self._rows(), self._clock)
        finally:
            self._release(failed=False)
            if self.announce:  # this rank's part of the job is over (a multi-folder run says so after its last folder)
                liveness.finished()

    def _rows(self) -> dict[str, ImageResult]:
        return self._maps.rows if self._maps is not None else {}

    def _release(self, failed: bool) -> None:
        if self._run_dir is not None:
            self._run_dir.release(failed, kept_anything=bool(self._rows() or (self.plan and self.plan.earlier)))

    def _shutdown(self) -> None:
        if self._maps is not None:
            self._maps.close()


def _stop_for(exception: BaseException, trainer: Trainer, done: int, output_dir: Path | None) -> None:
    """The one line and exit status a failed run ends with; a bug keeps Lightning's own ending."""
    if liveness.lost_rank(exception) is not None:  # a rank is gone: one line names it, whatever failed here
        liveness.say_lost()
        raise SystemExit(liveness.EXIT_RANK_LOST)
    if isinstance(exception, KeyboardInterrupt):
        if trainer.is_global_zero:
            say(f"interrupted: {count(done)} images finished and recorded in {output_dir}; "
                f"run it again with {option_hint('resume')} to predict only the rest", error=True)
        raise SystemExit(EXIT_INTERRUPTED)  # Lightning would exit with 1, as for a crash
    if isinstance(exception, InputError):
        # One line and exit status 2, as for every input error, said by each rank that fails: a
        # rank that exits without a word has Lightning end the others, rank 0 before it could speak.
        # Rank 0's refusal reaches every rank; each node's first rank says it on that node.
        if not getattr(exception, "quiet", False):
            shared = trainer.is_global_zero or isinstance(exception, DecidedOnRankZero)
            say(f"error: {'' if shared else f'rank {trainer.global_rank}: '}{exception}", error=True)
        raise SystemExit(EXIT_INPUT_ERROR)


# One source for the options' documentation: jsonargparse (`anomalib predict --help`) reads the Args.
AnomalyMapWriter.__doc__ = f"{AnomalyMapWriter.__doc__.rstrip()}\n\n{args_doc()}"
