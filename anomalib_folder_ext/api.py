"""The front door for Python: a notebook, a script or a pipeline task runs what the commands run.

Each call builds the same ``anomalib predict`` config as ``anomalib-folder`` and hands it to
anomalib's CLI and Engine (:mod:`~anomalib_folder_ext.run.launch`), so a call and a command cannot
diverge. A call returns a result read from the files the run wrote, raises typed errors
(:mod:`anomalib_folder_ext.errors`) whose messages name the argument to change
(``predict_folder(..., overwrite=True)``), and never ends the caller's process nor changes its
exception hook or logging. anomalib's and Lightning's start-up chatter is kept out while the call
runs (``verbose=True`` shows it).

Example:
    >>> from anomalib_folder_ext import predict_folder
    >>> result = predict_folder("batch_01", "model.ckpt", batch_size=16, save_as_image=False)  # doctest: +SKIP
    >>> result.images, result.failed, result.top(3)  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from anomalib_folder_ext.errors import (
    CALIBRATE_FUNCTION,
    PREDICT_BATCHES,
    PREDICT_FOLDER,
    WATCH_FUNCTION,
    InputError,
    Terms,
    Worded,
)
from anomalib_folder_ext.options import WatchOptions, WriterOptions
from anomalib_folder_ext.run.spec import RunSpec

_RUN_NAMES = [option.name for option in fields(RunSpec) if option.name not in {"writer", "watch"}]
_WRITER_NAMES = [option.name for option in fields(WriterOptions)]
_WATCH_NAMES = [option.name for option in fields(WatchOptions)]


def run_spec(watching: bool = False, **options: object) -> RunSpec:
    """A :class:`RunSpec` from keyword arguments: any run option or writer option by its name (``watching``:
    and the watch options)."""
    known = [*_RUN_NAMES, *_WRITER_NAMES, *(_WATCH_NAMES if watching else ())]
    unknown = sorted(set(options) - set(known))
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        if unknown[0] in _WATCH_NAMES:
            hint = " (an option of watch_folder)"
        raise InputError(f"{unknown[0]}: no such option{hint}", option=unknown[0])
    writer = WriterOptions(**{name: options.pop(name) for name in list(options) if name in _WRITER_NAMES})
    watch = WatchOptions(**{name: options.pop(name) for name in list(options) if name in _WATCH_NAMES})
    return RunSpec(**options, writer=writer, watch=watch)


def predict_folder(folder_path: str | Path, model_path: str | Path, output_dir: str | Path | None = None, *,
                   verbose: bool = False, **options: object):  # noqa: ANN201 - FolderResult (typed below)
    """Predict every image of ``folder_path`` with the checkpoint (or export) ``model_path``.

    ``options``: any option of the datamodule and trainer (``batch_size``, ``recursive``, ``devices``,
    ``precision``, ...) or of the writer (``save_as_image``, ``normalization``, ``resume``, ``overwrite``,
    ...), as the flags of ``anomalib-folder predict`` name them. Returns the folder's
    :class:`~anomalib_folder_ext.outputs.result.FolderResult`.
    """
    from anomalib_folder_ext.run import launch, preflight
    from anomalib_folder_ext.run.translate import anomalib_predict_args

    with _front_door(PREDICT_FOLDER, verbose):
        spec = run_spec(folder_path=folder_path, model_path=model_path, output_dir=output_dir, **options)
        _one_of(spec.writer.resume, spec.writer.overwrite)
        args = anomalib_predict_args(spec, preflight.check_inputs(spec))
        return launch.run_anomalib(args, PREDICT_FOLDER)


def watch_folder(folder_path: str | Path, model_path: str | Path, output_dir: str | Path | None = None, *,
                 stop: threading.Event | None = None, verbose: bool = False, **options: object):  # noqa: ANN201
    """Predict each image as it lands in ``folder_path``, the model loaded once, until stopped: Ctrl-C or
    SIGTERM (in the main thread), ``stop`` set (from any thread), or the folder removed (an
    :class:`~anomalib_folder_ext.errors.InputError` once the results are written).

    ``options``: those of :func:`predict_folder` and the watch's (``max_wait_ms``, ``poll``, ``rotate``,
    ``summary_every``, ``sort_into``, ``post``, ...: ``anomalib-folder watch --help``). What an earlier watch
    into ``output_dir`` predicted is not predicted again. Returns the
    :class:`~anomalib_folder_ext.outputs.result.WatchResult`.
    """
    from anomalib_folder_ext.run import preflight
    from anomalib_folder_ext.run.translate import anomalib_predict_args
    from anomalib_folder_ext.run.watch import Watch

    with _front_door(WATCH_FUNCTION, verbose):
        spec = run_spec(watching=True, folder_path=folder_path, model_path=model_path, output_dir=output_dir, **options)
        watch = Watch(anomalib_predict_args(spec, preflight.check_watch(spec), watch=True), WATCH_FUNCTION)
        if stop is not None:
            threading.Thread(target=lambda: stop.wait() and watch.stop("stopped"), daemon=True).start()
        return watch.run()


def predict_batches(root: str | Path | Sequence[str | Path], model_path: str | Path, output_root: str | Path = ".", *,
                    only: Sequence[str] | None = None, resume: bool = True, verbose: bool = False,
                    **options: object):  # noqa: ANN201 - BatchesResult
    """Predict every batch folder under ``root`` (``batch_01``, ...) with one model load, into ``output_root``.

    ``root`` may also be a list of per-folder override files (``anomalib-folder predict --batches``: each
    a config whose ``data:`` names a folder and, optionally, its output dir, as ``split`` writes them).
    Resumable as ``anomalib-folder batches`` is: a folder an earlier call finished is skipped, an
    unfinished one predicts only what is left (``resume=False`` redoes everything). ``only``: these
    batch folders. ``options`` as for :func:`predict_folder`. Returns the
    :class:`~anomalib_folder_ext.outputs.result.BatchesResult`.
    """
    from anomalib_folder_ext.run import preflight
    from anomalib_folder_ext.run.batches import run_batches

    with _front_door(PREDICT_BATCHES, verbose):
        spec = run_spec(model_path=model_path, resume=resume, **options)
        overwrite = spec.writer.overwrite
        if isinstance(root, (str, Path)):
            base, jobs = preflight.root_jobs(Path(root), spec, Path(output_root), only)
        else:
            base, jobs = preflight.override_jobs(_override_files(root, only), spec, Path(output_root), option="root")
        return run_batches(base, jobs, output_root, resume and not overwrite, overwrite, PREDICT_BATCHES)


def calibrate(model_path: str | Path, good_folder: str | Path, out: str | Path = "calibration.json", *,
              defect_folder: str | Path | None = None, mask_folder: str | Path | None = None, target_fpr: float = 0.01,
              pixel_fpr: float = 1e-4, uncertain_fpr: float | None = None, work_dir: str | Path | None = None,
              resume: bool = True, verbose: bool = False, **options: object):  # noqa: ANN201 - Calibration
    """Fit the image and pixel thresholds of ``model_path`` on the known-good parts under ``good_folder`` at
    ``target_fpr`` and write them to ``out`` (``anomalib-folder calibrate``); predict takes ``out`` as
    ``calibration``. ``defect_folder`` (and ``mask_folder``) add recall, AUROC and the pixel figures.
    ``options``: how the model runs (``batch_size``, ``devices``, ``precision``, ...). Returns the
    :class:`~anomalib_folder_ext.decision.calibration.Calibration` written.
    """
    from anomalib_folder_ext.run.calibrate import CalibrationRequest
    from anomalib_folder_ext.run.calibrate import calibrate as run_calibration

    with _front_door(CALIBRATE_FUNCTION, verbose):
        writer = sorted(set(options) & set(_WRITER_NAMES))
        if writer:
            raise InputError(f"{writer[0]}: calibrate writes no maps of its own; it takes the model's run options only",
                             option=writer[0])
        spec = run_spec(model_path=model_path, **options)
        request = CalibrationRequest(spec, Path(good_folder), Path(out), defect_folder, mask_folder, target_fpr, pixel_fpr,
                                     uncertain_fpr, work_dir, resume)
        return run_calibration(request, CALIBRATE_FUNCTION)


def relabel(path: str | Path, *, calibration: str | Path | None = None, threshold: float | None = None,
            pixel_threshold: float | None = None, uncertain_below: float | None = None, verbose: bool = False):  # noqa: ANN201
    """Decide the finished output dir ``path`` (or every folder of the output root ``path``) again by new thresholds,
    without the model (``anomalib-folder relabel``): a threshold not given returns to the model's own. Returns what
    the dir now holds: a :class:`~anomalib_folder_ext.outputs.result.FolderResult` (or a ``BatchesResult``)."""
    from anomalib_folder_ext.run.relabel import relabel as relabel_on_disk

    with _front_door(PREDICT_FOLDER, verbose):
        return relabel_on_disk(path, calibration, threshold, pixel_threshold, uncertain_below, announce=False)


def _override_files(paths: Sequence[str | Path], only: Sequence[str] | None) -> list[str]:
    if only:
        raise InputError("only picks batch folders under a root; with override files, list the ones to run",
                         option="only")
    if not paths:
        raise InputError("no override file given", option="root")
    return [str(path) for path in paths]


@dataclass(frozen=True)
class ExportResult:
    """An export: its graph file (the directory holds ``export.json`` too) and how close it is to the checkpoint."""

    path: Path  # model.xml or model.onnx; predict_folder takes it, or its directory, as model_path
    format: str
    precision: str
    map_difference: float  # largest absolute difference of a map to the checkpoint's, on the check's images
    score_difference: float


def export_model(model_path: str | Path, out: str | Path, format: str = "openvino", precision: str = "fp32",  # noqa: A002
                 calibration_folder: str | Path | None = None, *, verbose: bool = False) -> ExportResult:
    """Export the checkpoint ``model_path`` for CPU inference into ``out``, checked against the checkpoint
    (``anomalib-folder export``): ``format`` openvino or onnx, ``precision`` fp32, fp16 or int8 (OpenVINO)."""
    with _front_door(PREDICT_FOLDER, verbose):
        from anomalib_folder_ext.run.export import export_checkpoint

        graph, parity = export_checkpoint(model_path, format, out, precision,
                                          Path(calibration_folder) if calibration_folder else None)
        return ExportResult(graph, format, precision, parity.map_difference, parity.score_difference)


def _one_of(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise InputError("resume=True continues the earlier run, overwrite=True replaces it: choose one", option="resume")


@contextmanager
def _front_door(terms: Terms, verbose: bool) -> Iterator[None]:
    """A call's run: quiet unless ``verbose``, messages in the call's terms, Ctrl-C as the caller had it,
    and anomalib's CLI refusing a config an error, not the end of the process."""
    from anomalib_folder_ext.console import quieted

    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    hook = sys.excepthook  # anomalib's CLI installs rich's traceback handler as it is imported
    try:
        with quieted(not verbose):
            yield
    except Worded as error:  # InputError, NoImagePredicted, RankLost, RunInterrupted: in this call's terms
        error.terms = terms
        raise
    except SystemExit as exit_info:  # jsonargparse ends on a config it refuses, having said why on stderr
        msg = f"anomalib's CLI refused the run's config (exit status {exit_info.code}); its message is above"
        raise InputError(msg) from None
    finally:
        sys.excepthook = hook
        if handler is not None:  # Lightning ignores SIGINT from the first Ctrl-C on
            signal.signal(signal.SIGINT, handler)


def _signature(function, names: list[str], defaults: dict) -> inspect.Signature:  # noqa: ANN001
    """The call's signature with every option a keyword (one list: the spec's and the writer's fields)."""
    base = inspect.signature(function)
    keep = [parameter for parameter in base.parameters.values() if parameter.kind is not parameter.VAR_KEYWORD]
    taken = {parameter.name for parameter in keep}
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults[name], "value", defaults[name]))
             for name in names if name not in taken]
    return base.replace(parameters=[*keep, *extra])


def _watch_defaults() -> dict:
    from anomalib_folder_ext.options import watch_defaults

    return watch_defaults()


def _option_defaults() -> dict:
    from anomalib_folder_ext.options import option_defaults
    from anomalib_folder_ext.run.spec import spec_defaults

    return {**spec_defaults(), **option_defaults()}


predict_folder.__signature__ = _signature(predict_folder, [*_RUN_NAMES, *_WRITER_NAMES], _option_defaults())
calibrate.__signature__ = _signature(
    calibrate, [name for name in _RUN_NAMES if name not in {"model_path", "folder_path", "output_dir", "recursive"}],
    _option_defaults())
watch_folder.__signature__ = _signature(watch_folder, [*_RUN_NAMES, *_WRITER_NAMES, *_WATCH_NAMES],
                                        {**_option_defaults(), **_watch_defaults()})
predict_batches.__signature__ = _signature(
    predict_batches, [name for name in [*_RUN_NAMES, *_WRITER_NAMES] if name not in {"folder_path", "output_dir"}],
    _option_defaults())
