"""``anomalib-folder``'s parser: the old script's flags, their defaults and help taken from the options
they set (:class:`~anomalib_folder_ext.options.WriterOptions`, :class:`~anomalib_folder_ext.run.spec.RunSpec`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from anomalib_folder_ext.images.discover import DEFAULT_EXTENSIONS
from anomalib_folder_ext.models.exported import FORMATS, PRECISIONS
from anomalib_folder_ext.options import (
    MapSize,
    Normalization,
    choices,
    known_colormap,
    option_defaults,
    option_docs,
    watch_defaults,
    watch_docs,
)
from anomalib_folder_ext.run.spec import spec_defaults, spec_docs


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"true", "1", "yes", "on"}:
        return True
    if value in {"false", "0", "no", "off"}:
        return False
    msg = f"expected True or False, got {text!r}"
    raise argparse.ArgumentTypeError(msg)


def _count(low: int):  # noqa: ANN202
    """An argparse type: a whole number of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            msg = f"expected a whole number of at least {low}, got {text!r}"
            raise argparse.ArgumentTypeError(msg)
        return value

    return parse


def _finite(text: str) -> float:
    """An argparse type: a finite number (``inf`` and ``nan`` would turn every map into NaN or 0)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        msg = f"expected a finite number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _colormap(name: str) -> str:
    try:
        known_colormap(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The old script's flags that shape a run, shared by ``predict`` and ``batches``."""
    docs, defaults = option_docs(), option_defaults()

    def writer_flag(name: str, **kwargs: object) -> None:
        """A writer option as a flag: its default and help are the option's (:mod:`~anomalib_folder_ext.options`)."""
        parser.add_argument(f"--{name}", default=defaults[name], help=docs[name], **kwargs)

    def run_flag(name: str, **kwargs: object) -> None:
        _run_flag(parser, name, **kwargs)

    run_flag("image_size", type=int, nargs=2, metavar=("H", "W"))
    run_flag("batch_size", type=_count(1))
    writer_flag("save_as_image", type=_bool, metavar="True|False")
    writer_flag("save_as_npy", type=_bool, metavar="True|False")
    writer_flag("colormap", type=_colormap)
    writer_flag("normalization", choices=choices(Normalization))
    writer_flag("vmin", type=_finite)
    writer_flag("vmax", type=_finite)
    writer_flag("map_size", choices=choices(MapSize))
    writer_flag("save_overlay", type=_bool, metavar="True|False")
    writer_flag("overlay_alpha", type=_finite)
    writer_flag("calibration", metavar="JSON")
    writer_flag("threshold", type=_finite)
    writer_flag("pixel_threshold", type=_finite)
    writer_flag("uncertain_below", type=_finite)
    writer_flag("save_mask", type=_bool, metavar="True|False")
    writer_flag("report", type=_bool, metavar="True|False")
    run_flag("recursive", type=_bool, metavar="True|False")
    run_flag("extensions", nargs="+")
    writer_flag("allow_other_files", type=_bool, metavar="True|False")
    run_flag("accelerator")
    run_flag("devices")
    run_flag("precision")
    run_flag("num_workers", type=_count(0))
    run_flag("max_pixels", type=_count(1))
    parser.add_argument("--verbose", action="store_true", help="also show anomalib's and Lightning's own messages")
    parser.add_argument("--print_config", action="store_true", help="print the anomalib config and exit")


def _run_flag(parser: argparse.ArgumentParser, name: str, **kwargs: object) -> None:
    """A run option as a flag: its default and help are the option's (:mod:`~anomalib_folder_ext.run.spec`)."""
    default = spec_defaults()[name]
    default = list(default) if isinstance(default, tuple) else default
    parser.add_argument(f"--{name}", default=str(default) if name == "devices" else default, help=spec_docs()[name],
                        **kwargs)


def _add_calibrate(commands: argparse._SubParsersAction) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="fit the image and pixel thresholds on known-good parts at a target false-positive rate",
        description=("Predicts --good_folder (and --defect_folder) through the same pipeline as predict, into --work_dir "
                     "(resumable), then fits the image threshold (raw score units) and the pixel threshold (raw map "
                     "units) at --target_fpr on the good parts and writes them with the model's identity to --out; "
                     "predict and batches take it as --calibration. Other arguments go to anomalib."),
    )
    calibrate.add_argument("--model_path", required=True, help="EfficientAd Lightning checkpoint (.ckpt), or an exported "
                           "model: an export is calibrated on its own scores")
    calibrate.add_argument("--good_folder", required=True, help="known-good parts (sub-folders, e.g. batch folders, included)")
    calibrate.add_argument("--defect_folder", help="known defective parts: recall, image AUROC, the separating threshold")
    calibrate.add_argument("--mask_folder", help="masks of the defect images (same relative path and stem, or "
                           "<stem>_mask): the pixel figures")
    calibrate.add_argument("--target_fpr", type=_finite, default=0.01, help="the false-positive rate on good parts "
                           "to fit at (default: 0.01); a score quantile q is target_fpr 1 - q")
    calibrate.add_argument("--pixel_fpr", type=_finite, default=1e-4, help="the share of good parts' pixels the "
                           "pixel threshold flags (default: 0.0001, about 7 pixels of a 256 x 256 good part)")
    calibrate.add_argument("--uncertain_fpr", type=_finite, help="also a band: scores from the threshold at this larger "
                           "rate up to the image threshold are decided uncertain")
    calibrate.add_argument("--out", default="calibration.json", help="the calibration file (default: calibration.json)")
    calibrate.add_argument("--work_dir", help="where the parts' runs go (default: <out's name>_runs beside it)")
    calibrate.add_argument("--resume", type=_bool, default=True, metavar="True|False",
                           help="False: predict every part again (default: parts predicted earlier are kept)")
    for name, kwargs in (("image_size", {"type": int, "nargs": 2, "metavar": ("H", "W")}),
                         ("batch_size", {"type": _count(1)}), ("extensions", {"nargs": "+"}), ("accelerator", {}),
                         ("devices", {}), ("precision", {}), ("num_workers", {"type": _count(0)}),
                         ("max_pixels", {"type": _count(1)})):
        _run_flag(calibrate, name, **kwargs)
    calibrate.add_argument("--verbose", action="store_true", help="also show anomalib's and Lightning's own messages")


def _add_watch(commands: argparse._SubParsersAction) -> None:
    watch = commands.add_parser(
        "watch",
        help="predict each image as it lands in a folder (a camera's), the model loaded once, until Ctrl-C or SIGTERM",
        description=("Keeps the model loaded and predicts each complete image that lands in DIR (written and closed, "
                     "or renamed into it) through the same pipeline as predict: maps, results.csv row by row, the "
                     "summary every --summary_every s. A restart predicts what landed while it was down and nothing "
                     "twice. Other arguments go to anomalib."),
    )
    watch.add_argument("folder_path", metavar="DIR", help="the folder to watch")
    watch.add_argument("--model_path", required=True, help="EfficientAd Lightning checkpoint (.ckpt), or an exported model")
    watch.add_argument("--output_dir", help="where results go, outside DIR (default: inference_results_<DIR name>); "
                       "with --rotate, the periods' dirs go under it")
    watch.add_argument("--overwrite", type=_bool, default=False, metavar="True|False",
                       help="replace an earlier watch's results in the output dir (default: continue them)")
    docs, defaults = watch_docs(), watch_defaults()
    types = {"max_wait_ms": _count(0), "poll": _finite, "settle_ms": _count(0), "complete_timeout_s": _finite,
             "summary_every": _finite, "sort_move": _bool}
    for name in docs:
        watch.add_argument(f"--{name}", default=defaults[name], help=docs[name], type=types.get(name, str),
                           **({"metavar": "True|False"} if name == "sort_move" else {}))
    _add_run_options(watch)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake in one line (the usage block is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"anomalib-folder: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="anomalib-folder",
        description="Folder-based EfficientAd inference on top of `anomalib predict`.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    predict = commands.add_parser(
        "predict",
        help="write normalised anomaly maps (NPY, PNG) and a summary for a folder of images",
        description=(
            "Runs `anomalib predict` with anomalib_folder_ext's datamodule and writer: either from the old "
            "script's flags (--model_path and a folder) or from anomalib configs (--config ...). "
            "Arguments not listed here are passed to anomalib unchanged, e.g. --trainer.strategy ddp."
        ),
    )
    predict.add_argument("--model_path", help="EfficientAd Lightning checkpoint (.ckpt), or an exported model (the "
                         "directory `anomalib-folder export` wrote, a model.xml or a .onnx); not needed with --config")
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--folder_path", "--custom_folder", dest="folder_path", help="folder of images")
    source.add_argument("--batch_folder", help="name of a batch folder under --data_root, e.g. batch_01")
    predict.add_argument("--data_root", default=".", help="where batch folders live (default: .)")
    predict.add_argument("--output_dir", help="where results go (default: inference_results_<folder name>)")
    predict.add_argument(
        "--batches", nargs="+", metavar="YAML",
        help="per-folder override configs (e.g. configs/batches/*.yaml): all folders in one process, one model load",
    )
    predict.add_argument("--output_root", default=".", help="with --batches: where folders without their own "
                         "output_dir and the combined files go (default: .)")
    predict.add_argument("--resume", type=_bool, default=None, metavar="True|False",
                         help="skip images an interrupted run in the same output dir finished "
                              "(default: False; True with --batches)")
    predict.add_argument("--overwrite", type=_bool, default=False, metavar="True|False",
                         help="replace the results of an earlier run in the output dir (default: refuse)")
    _add_run_options(predict)

    batches = commands.add_parser(
        "batches",
        help="predict every batch folder under ROOT in one process (one model load), resumable",
        description=(
            "Runs each image folder under ROOT (batch_01, batch_02, ...) through `anomalib predict` in one process: "
            "one output dir per folder under --output_root, plus all_batches.csv and all_batches_summary.txt. "
            "Finished folders and images are skipped (--resume False redoes them). Other arguments go to anomalib."
        ),
    )
    batches.add_argument("root", type=Path, help="folder holding the batch folders (e.g. made by `anomalib-folder split`)")
    batches.add_argument("--model_path", required=True, help="EfficientAd Lightning checkpoint (.ckpt), or an exported model")
    batches.add_argument("--only", nargs="+", metavar="NAME", help="only these batch folders, e.g. batch_03 batch_07")
    batches.add_argument("--output_root", default=".", help="where the output dirs and combined files go (default: .)")
    batches.add_argument("--resume", type=_bool, default=True, metavar="True|False",
                         help="False: redo every folder, replacing its earlier results")
    _add_run_options(batches)

    split = commands.add_parser(
        "split",
        help="split a folder of images into batch folders batch_01, batch_02, ... of --size images",
        description=(
            "Puts SRC's images, in natural order, into OUT/batch_01, OUT/batch_02, ... and writes OUT/batches.csv "
            "(image -> batch) and one override config per batch (OUT/configs/batch_NN.yaml). "
            "Running it again with the same arguments changes nothing."
        ),
    )
    split.add_argument("source", type=Path, metavar="SRC", help="folder of images to split")
    split.add_argument("--size", type=int, default=10000, help="images per batch folder (default: 10000)")
    split.add_argument("--out", type=Path, required=True, metavar="ROOT", help="where the batch folders go")
    split.add_argument("--mode", choices=["hardlink", "copy", "symlink", "move"], default="hardlink",
                       help="how files get into the batch folders (default: hardlink: no extra space)")
    split.add_argument("--recursive", type=_bool, default=False, metavar="True|False")
    split.add_argument("--extensions", nargs="+", default=list(DEFAULT_EXTENSIONS))

    _add_calibrate(commands)
    _add_watch(commands)

    relabel = commands.add_parser(
        "relabel",
        help="decide a finished output dir (or every folder of an output root) again by new thresholds, without the model",
        description=("Rewrites the decisions, masks, results.csv, defective.csv, the summaries, the report and the "
                     "combined files from what the run left on disk, in seconds; the dir stays resumable under the "
                     "new thresholds. A threshold not given returns to the model's own."),
    )
    relabel.add_argument("path", type=Path, metavar="OUTPUT_DIR|OUTPUT_ROOT", help="an output dir, or an output root "
                         "of batch folders (it holds all_batches.json)")
    relabel.add_argument("--calibration", metavar="JSON", help="a calibration.json of the same model (anomalib-folder calibrate)")
    relabel.add_argument("--threshold", type=_finite, help="the image threshold, raw score units")
    relabel.add_argument("--pixel_threshold", type=_finite, help="the pixel threshold, raw map units (new masks "
                         "need the run's NPY maps)")
    relabel.add_argument("--uncertain_below", type=_finite, help="scores from this up to the image threshold: uncertain")

    export = commands.add_parser(
        "export",
        help="export a checkpoint for fast CPU inference (OpenVINO IR or ONNX), checked against the checkpoint",
        description=("Writes OUT/model.xml + model.bin (OpenVINO) or OUT/model.onnx, and OUT/export.json; predict and "
                     "batches take OUT as --model_path. Ends with the largest map and score difference to the checkpoint."),
    )
    export.add_argument("--model_path", required=True, help="EfficientAd Lightning checkpoint (.ckpt)")
    export.add_argument("--format", choices=FORMATS, default="openvino", help="openvino (default) or onnx")
    export.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default); fp16 (weights) and int8 (NNCF quantisation): OpenVINO only")
    export.add_argument("--calibration_folder", help="images like those to inspect: int8's calibration and the check "
                        "(default: generated images; int8 needs it)")
    export.add_argument("--out", required=True, help="the export directory (new, empty, or an earlier export)")

    demo = commands.add_parser(
        "demo",
        help="build the offline demo (texture photos, painted defects, a model trained here) and run it",
        description=(
            "run: build the demo assets if missing, predict the demo folder, print image/pixel AUROC. "
            "build: only build the assets. score: only print the AUROC of finished results."
        ),
    )
    demo.add_argument("action", nargs="?", choices=["run", "build", "score"], default="run")
    demo.add_argument("--dir", type=Path, help="demo assets (default: $XDG_CACHE_HOME/anomalib-folder-ext/demo)")
    demo.add_argument("--output_dir", default="inference_results_demo", help="results of the demo run")
    demo.add_argument("--rebuild", action="store_true", help="build the assets again even if cached")
    demo.add_argument("--verbose", action="store_true", help="also show anomalib's and Lightning's own messages")
    return parser
