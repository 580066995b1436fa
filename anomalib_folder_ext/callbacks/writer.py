"""Lightning glue: ``AnomalyMapWriter``, whose hooks call the modules that do the work.

A folder's run, hook by hook: ``setup`` checks and prepares the output dir and makes the run plan
(:mod:`~anomalib_folder_ext.outputs.rundir`), before the checkpoint's weights load; each batch's maps go
to :mod:`~anomalib_folder_ext.callbacks.mapwriter` with the model's scores (:mod:`~anomalib_folder_ext.callbacks.scoring`);
``teardown`` merges the ranks and writes the summaries (:mod:`~anomalib_folder_ext.callbacks.finish`).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Literal

from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_folder_ext.callbacks.deciding import decided_settings
from anomalib_folder_ext.callbacks.finish import FolderFinish
from anomalib_folder_ext.callbacks.live import run_lines
from anomalib_folder_ext.callbacks.mapwriter import MapWriter
from anomalib_folder_ext.callbacks.progress import ProgressLines
from anomalib_folder_ext.callbacks.runinfo import LoopClock, backend_of, checked_checkpoint, save_run_config
from anomalib_folder_ext.callbacks.scoring import Scoring, hand_over, keeps_maps
from anomalib_folder_ext.callbacks.stopping import stopping_error
from anomalib_folder_ext.console import at_anomalib_cli_edge, caller_terms, raise_dropped_ctrl_c
from anomalib_folder_ext.data.batch import FolderImageBatch
from anomalib_folder_ext.data.datamodule import FolderDataModule
from anomalib_folder_ext.decision.calibration import Calibration, read_calibration
from anomalib_folder_ext.distributed import liveness
from anomalib_folder_ext.distributed.ranks import agreed_on_every_rank
from anomalib_folder_ext.errors import NoImagePredicted, Terms, option_hint
from anomalib_folder_ext.models.precision import warn_slow_precision
from anomalib_folder_ext.options import OUTPUT_DIR_DOC, WriterOptions, args_doc
from anomalib_folder_ext.outputs import journal, outputdir
from anomalib_folder_ext.outputs.result import FolderResult
from anomalib_folder_ext.outputs.rundir import RunDirectory, output_dir_of
from anomalib_folder_ext.outputs.runplan import RunPlan
from anomalib_folder_ext.outputs.summary import ImageResult


_OPTION_NAMES = frozenset(option.name for option in fields(WriterOptions))


class AnomalyMapWriter(Callback):
    """Write each image's normalised anomaly map (NPY, PNG, overlay, mask), then ``results.csv`` and ``results_summary.txt``.

    Runs before anomalib's PostProcessor in the predict loop (Lightning appends the model's own callbacks
    after the trainer's), so it sees the model's raw map; parts are decided by the thresholds in force
    (:mod:`~anomalib_folder_ext.callbacks.deciding`). The loop never waits for a file (:mod:`~anomalib_folder_ext.callbacks.mapwriter`).

    The output dir is guarded (:mod:`~anomalib_folder_ext.outputs.outputdir`): the run writes and deletes
    only its own files, inside the output dir, never through a link, and never replaces an input.
    At the end rank 0 says where the results are, and :attr:`result` holds them (a
    :class:`~anomalib_folder_ext.outputs.result.FolderResult`). A run that stops raises a typed error
    (:mod:`anomalib_folder_ext.errors`) naming the option as the caller spells it.

    Example (config): ``trainer.callbacks: [{class_path: anomalib_folder_ext.callbacks.AnomalyMapWriter,
    init_args: {save_as_image: false}}]``.

    The arguments are :class:`~anomalib_folder_ext.options.WriterOptions`, documented there (below),
    and ``output_dir``: the output dir belongs to the datamodule (``FolderDataModule(output_dir=...)``,
    ``data.init_args.output_dir``), where a per-folder override sets input and output together; the
    writer takes ``output_dir`` so configs that name it still run, and refuses one naming another dir.
    """

    def __init__(  # output_dir, then one parameter per option of WriterOptions, as jsonargparse reads them
        self, output_dir: str | Path | None = None, save_as_npy: bool = True, save_as_image: bool = True,
        colormap: str = "jet", png_compress_level: int = 1, write_workers: int | None = None, top_count: int = 10,
        release_maps: bool = True, normalization: Literal["per_image", "model", "fixed"] = "per_image",
        vmin: float | None = None, vmax: float | None = None, map_size: Literal["model", "original"] = "model",
        save_overlay: bool = False, overlay_alpha: float = 0.5, overlay_format: Literal["jpg", "png"] = "jpg",
        calibration: str | None = None, threshold: float | None = None, pixel_threshold: float | None = None,
        uncertain_below: float | None = None, save_mask: bool = False, report: bool = False, report_top_k: int = 12,
        resume: bool = False, overwrite: bool = False, allow_other_files: bool = False,
    ) -> None:
        options = {name: value for name, value in locals().items() if name in _OPTION_NAMES}
        super().__init__()
        at_anomalib_cli_edge()
        self.options = WriterOptions(**options)
        self.output_dir = Path(output_dir).expanduser() if output_dir else None  # only to check: see above
        self.announce = True  # the last line and the watch over the ranks; a multi-folder run has its own
        self.terms: Terms = caller_terms()  # how messages name an option: a flag, a config key, an argument
        self.checkpoint: str | None = None  # the last run's: a script's next predict may not name it again
        self.plan: RunPlan | None = None  # what this run writes and what an earlier run finished
        self.result: FolderResult | None = None  # the last run's results, on rank 0, once it finished
        self._run_config: object = None  # this folder's own config, in a multi-folder run
        self._run_dir: RunDirectory | None = None
        self._calibration: Calibration | None = None
        self._reset()

    def configure(self, *, terms: Terms | None = None, announce: bool | None = None, run_config: object = None,
                  **options: object) -> None:
        """What our launcher sets once the config made the writer: its caller's terms, and for each folder
        of a multi-folder run (:mod:`~anomalib_folder_ext.run.batches`) resume, overwrite and its config."""
        self.options = self.options.configured(**options) if options else self.options
        self.terms = terms or self.terms
        self.announce = self.announce if announce is None else announce
        self._run_config = run_config

    def _reset(self) -> None:
        if self._run_dir is not None:
            self._run_dir.close()  # the previous folder's (a multi-folder run)
        self._run_dir, self.plan = None, None
        self._maps: MapWriter | None = None
        self._scoring: Scoring | None = None
        self._progress: ProgressLines | None = None  # where the progress bar cannot draw (a log file)
        self._clock = LoopClock()
        self._failed, self._checkpoint_deferred = False, False  # deferred: Engine.predict(ckpt_path=...) names it late
        self._release_maps = self.options.release_maps

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
        named = checked_checkpoint(trainer)
        warn_slow_precision(trainer, torch_model=backend_of(pl_module) is None)  # an export's runtime picks its own
        self.checkpoint, self._checkpoint_deferred = named or self.checkpoint, named is None
        if self.announce:  # a multi-folder run watches the ranks itself
            liveness.watch(trainer.strategy, rerun=self.terms.render(f"it again with {option_hint('resume')}"))
        datamodule = folder_data(trainer.datamodule)
        self._run_dir = run_dir = RunDirectory(output_dir_of(datamodule, self.output_dir), datamodule.folder_path,
                                               datamodule.output_names(self.options), self.options, trainer.world_size,
                                               stream=datamodule.streams)
        self._calibration = read_calibration(self.options.calibration)  # read once per run: a bad file, one line now
        settings = decided_settings(self.options, self._calibration, self.checkpoint, trainer, pl_module)
        try:
            agreed_on_every_rank(trainer.strategy, {**datamodule.row_settings(), **settings})
            self.plan = run_dir.open_on_every_rank(trainer.strategy, settings, self._checkpoint_deferred)
            # after an overwrite took the earlier run's files away, its config among them
            run_dir.keep(save_run_config(trainer, run_dir.directory, outputdir.CONFIG_NAME, self._run_config))
        except BaseException:
            self._release(failed=True)
            raise
        datamodule.skip_images(self.plan.skip)  # what an earlier run finished is listed, not predicted again
        # Lightning's own files (a logger, if one is configured) go with the results, not to ./results/...
        trainer._default_root_dir = str(self._run_dir.output_dir)  # noqa: SLF001 - the Trainer has no setter for it

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = folder_data(trainer.datamodule)
        self._settle_checkpoint(trainer, pl_module)
        options, directory = self.options, self._run_dir.directory
        self._scoring = Scoring.for_model(pl_module, options, self._calibration)
        self._release_maps = options.release_maps and not keeps_maps(pl_module)
        if trainer.is_global_zero:
            journal.mark_unfinished(directory)  # finished again only when the summaries are
        rows = journal.Journal(directory, trainer.global_rank, self.plan.settings)
        self._maps = MapWriter(options, directory, self.plan, datamodule.folder_path, datamodule.batch_size, rows,
                               self._scoring.normalizer, self._scoring.thresholds)
        to_predict = len(datamodule.relative_paths) - len(self.plan.skip)
        self._progress = run_lines(trainer, self._maps, options, self.checkpoint, self._clock, to_predict)
        self._clock.start()

    # -- per batch ----------------------------------------------------------------------------
    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: FolderImageBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._clock.batch()
        raise_dropped_ctrl_c()  # one that came during a fork: taken up as any Ctrl-C is

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: FolderImageBatch, batch: FolderImageBatch,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        scores, labels = self._scoring.scores(pl_module, outputs.pred_score)
        self._maps.submit(outputs, scores, finish_now=trainer.datamodule.nothing_waiting())  # a watch between parts
        hand_over(outputs, labels, self._release_maps)
        if self._progress is not None:
            self._progress.say(len(outputs.relative_path) + len(outputs.failed or ()))

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
        if isinstance(exception, NoImagePredicted):
            return  # the run finished, every file written: raised after the summaries
        self._failed = True
        if self._maps is not None:
            self._maps.abandon()  # journaled: a resumed run does not redo them
        self._shutdown()
        self._release(failed=True)
        done = len(self._rows()) + len(self.plan.earlier if self.plan else {})
        error = stopping_error(exception, trainer, done, self.resolved_output_dir, self.terms)
        if error is not None:
            raise error from exception

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Merge every rank's rows on rank 0 and write the summaries.

        Teardown, not ``on_predict_end``: a rank that got no images runs no ``on_predict_*`` hook,
        but every rank reaches teardown, so the gather here always completes.
        """
        self._shutdown()
        if stage != "predict" or self._failed:
            return
        try:
            self._settle_checkpoint(trainer, pl_module)  # a rank with no batch to predict ran no on_predict_start
            scoring = self._scoring or Scoring.for_model(pl_module, self.options, self._calibration)  # none predicted
            finish = FolderFinish(self.options, self._run_dir.directory, self.plan, self.checkpoint, scoring.thresholds, self.announce)
            self.result = finish.run(trainer, self._rows(), self._clock)
        except NoImagePredicted as error:
            self.result = error.result
            raise
        finally:
            self._release(failed=False)
            if self.announce:  # this rank's part of the job is over (a multi-folder run says so after its last folder)
                liveness.finished()

    def _settle_checkpoint(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A script's ``Engine.predict(ckpt_path=...)`` names the checkpoint only as its weights load: its
        settings now, and on rank 0 (where the earlier run was read) resume's check of them."""
        if self._checkpoint_deferred:  # without one this time, the weights are the last run's (the model kept them)
            self._checkpoint_deferred = False
            self.checkpoint = str(Path(trainer.ckpt_path).resolve()) if trainer.ckpt_path else self.checkpoint
            self.plan.settings = decided_settings(self.options, self._calibration, self.checkpoint, trainer, pl_module)
            if trainer.is_global_zero:
                self._run_dir.check_settings(self.plan.settings)

    def _rows(self) -> dict[str, ImageResult]:
        return self._maps.rows if self._maps is not None else {}

    def _release(self, failed: bool) -> None:
        if self._run_dir is not None:
            self._run_dir.release(failed, kept_anything=bool(self._rows() or (self.plan and self.plan.earlier)))

    def _shutdown(self) -> None:
        if self._maps is not None:
            self._maps.close()


def folder_data(datamodule: object) -> FolderDataModule:
    """The run's data, which names the images and owns the output dir."""
    if not isinstance(datamodule, FolderDataModule):
        msg = "AnomalyMapWriter reads image names from anomalib_folder_ext.data.FolderDataModule; use it as --data"
        raise TypeError(msg)
    return datamodule


# One source for the options' documentation: jsonargparse (`anomalib predict --help`) reads the Args.
AnomalyMapWriter.__doc__ = (f"{AnomalyMapWriter.__doc__.rstrip()}\n\n{args_doc()}"
                            f"        output_dir: {OUTPUT_DIR_DOC}\n")
