"""``anomalib-folder``: the old script's flags, translated into an ``anomalib predict`` run.

Nothing here predicts: the parser and the dispatch only. :mod:`~anomalib_folder_ext.run.translate` turns
the flags into the same settings as ``configs/folder.yaml``, :mod:`~anomalib_folder_ext.run.preflight`
checks the inputs before anomalib (and its rich traceback handler) is imported, so a bad path costs
one line, not a wall, and :mod:`~anomalib_folder_ext.run.launch` hands the run to anomalib's own CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from anomalib_folder_ext.images.discover import DEFAULT_EXTENSIONS
from anomalib_folder_ext.models.exported import FORMATS, PRECISIONS
from anomalib_folder_ext.run.launch import one_line_errors, run_anomalib, run_batch_folders
from anomalib_folder_ext.options import MapSize, Normalization, choices, option_defaults, option_docs
from anomalib_folder_ext.run.preflight import batch_jobs, check_inputs
from anomalib_folder_ext.run.translate import (
    anomalib_predict_args,
    resolve_folder,
    writer_flags,
)


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
    from anomalib_folder_ext.outputs.artifacts import colormap_lut

    try:
        colormap_lut(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The old script's flags that shape a run, shared by ``predict`` and ``batches``."""
    docs, defaults = option_docs(), option_defaults()

    def writer_flag(name: str, **kwargs: object) -> None:
        """A writer option as a flag: its default and help are the option's (:mod:`~anomalib_folder_ext.options`)."""
        parser.add_argument(f"--{name}", default=defaults[name], help=docs[name], **kwargs)

    parser.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"),
                        help="the model's input size: must equal the checkpoint's (default: the checkpoint's)")
    parser.add_argument("--batch_size", type=_count(1), default=8, help="images per forward pass")
    writer_flag("save_as_image", type=_bool, metavar="True|False")
    writer_flag("save_as_npy", type=_bool, metavar="True|False")
    writer_flag("colormap", type=_colormap)
    writer_flag("normalization", choices=choices(Normalization))
    writer_flag("vmin", type=_finite)
    writer_flag("vmax", type=_finite)
    writer_flag("map_size", choices=choices(MapSize))
    writer_flag("save_overlay", type=_bool, metavar="True|False")
    writer_flag("overlay_alpha", type=_finite)
    writer_flag("report", type=_bool, metavar="True|False")
    parser.add_argument("--recursive", type=_bool, default=False, metavar="True|False",
                        help="also take images in sub-folders (mirrored in the output dir)")
    parser.add_argument("--extensions", nargs="+", default=list(DEFAULT_EXTENSIONS),
                        help="file extensions to take, any letter case")
    writer_flag("allow_other_files", type=_bool, metavar="True|False")
    parser.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    parser.add_argument("--devices", default="1", help="number of devices, or auto")
    parser.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed (see docs/PERFORMANCE.md)")
    parser.add_argument("--num_workers", type=_count(0), help="DataLoader workers (default: min(8, CPUs - 1))")
    parser.add_argument("--max_pixels", type=_count(1), help="larger images are listed as failed instead of "
                        "decoded (default: 100,000,000, i.e. 10,000 x 10,000)")
    parser.add_argument("--verbose", action="store_true", help="also show anomalib's and Lightning's own messages")
    parser.add_argument("--print_config", action="store_true", help="print the anomalib config and exit")


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


def run_demo(options: argparse.Namespace) -> int:
    import os

    from anomalib_folder_ext.console import quiet_dependencies

    quiet_dependencies()  # before anomalib's imports warn
    from anomalib_folder_ext.tools import demo

    root = (options.dir or demo.default_demo_dir()).resolve()
    # Before anomalib (and matplotlib) load: their caches, the random teacher included, stay in the demo dir.
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    assets = demo.DemoAssets(root)
    if options.action in {"run", "build"}:
        assets = demo.build(root, force=options.rebuild)
    if options.action == "run":
        predict = build_parser().parse_args(
            ["predict", "--model_path", str(assets.checkpoint), "--folder_path", str(assets.predict_folder),
             "--output_dir", options.output_dir, "--overwrite", "True"]  # the demo's own results: replaced
        )
        from anomalib_folder_ext.models.checkpoint import read_checkpoint

        run_anomalib(anomalib_predict_args(predict, read_checkpoint(assets.checkpoint)))
    if options.action in {"run", "score"}:
        if not (Path(options.output_dir) / "results.csv").is_file():
            print(f"anomalib-folder: error: {options.output_dir}/results.csv: no demo results; run the demo first",
                  file=sys.stderr)
            return 2
        scores = demo.evaluate(options.output_dir, assets.mask_folder)
        print(f"demo results : {Path(options.output_dir).resolve()} ({scores['images']} images)")
        print("  maps       : *_anomaly.npy, *_anomaly.png; summary: results.csv, results_summary.txt")
        print(f"  image AUROC: {scores['image_auroc']:.3f}   pixel AUROC: {scores['pixel_auroc']:.3f}")
        print("  (a demo model: random teacher, trained briefly on texture crops; for real use pass your own checkpoint)")
    return 0


def run_split(options: argparse.Namespace) -> int:
    from anomalib_folder_ext.tools.split import CONFIGS_DIR, PLAN_NAME, split_folder

    result = split_folder(options.source, options.out, options.size, options.mode, options.extensions, options.recursive)
    root, counts = result.root, result.batches
    if result.placed == 0:
        print(f"{root}: already split ({len(result.plan)} images in {len(counts)} batch folders); nothing changed")
    else:
        print(f"split {len(result.plan)} images of {Path(options.source).resolve()} into {len(counts)} batch folders "
              f"({options.mode}) under {root}:")
        for batch, count in counts.items():
            print(f"  {batch}  {count} images")
    print(f"  image -> batch: {root / PLAN_NAME}; override configs: {root / CONFIGS_DIR}/batch_*.yaml")
    print(f"  next: anomalib-folder batches {root} --model_path model.ckpt")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options, passthrough = parser.parse_known_args(argv)
    import os

    from anomalib_folder_ext.console import COMMAND_ENV, VERBOSE_ENV

    if getattr(options, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"  # also for DDP ranks, which re-run this command
    os.environ[COMMAND_ENV] = options.command  # messages name this command's flags
    if options.command in {"demo", "split", "export"} and passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    if options.command == "demo":
        return run_demo(options)
    if options.command in {"predict", "batches"}:
        from anomalib_folder_ext.errors import InputError
        from anomalib_folder_ext.run.translate import writer_options

        try:
            writer_options(options)
        except InputError as exc:
            problem = str(exc)
            for name in ("vmin", "vmax", "normalization", "overlay_alpha"):  # the flags' spelling
                problem = problem.replace(name, f"--{name}")
            parser.error(problem)
    with_configs = "--config" in passthrough or any(arg.startswith("--config=") for arg in passthrough)
    if options.command == "predict":
        if options.resume and options.overwrite:
            parser.error("--resume True continues the earlier run, --overwrite True replaces it: choose one")
        if not options.model_path and not with_configs:
            parser.error("predict needs --model_path (with --folder_path or --batch_folder), or anomalib configs (--config)")
        if options.model_path and not options.batches and resolve_folder(options) is None:
            parser.error("predict needs --folder_path / --custom_folder or --batch_folder (or --batches)")
    try:
        if options.command == "split":
            return run_split(options)
        if options.command == "export":
            from anomalib_folder_ext.console import quiet_dependencies

            quiet_dependencies()  # before anomalib's imports warn
            from anomalib_folder_ext.run.export import run_export

            return run_export(options)
        if options.command == "batches" or options.batches:
            if options.resume is None:
                options.resume = not getattr(options, "overwrite", False)
            base, jobs = batch_jobs(options, list(passthrough))
        elif options.model_path:
            args = anomalib_predict_args(options, check_inputs(options)) + list(passthrough)
        else:
            args = ["predict", *passthrough, *writer_flags(options)]
    except (ValueError, OSError) as exc:  # InputError is a ValueError
        print(f"anomalib-folder: error: {_message(exc)}", file=sys.stderr)
        return 2

    if options.command == "batches" or options.batches:
        if options.print_config:
            run_anomalib([*base, *jobs[0].args, "--print_config"])
            return 0
        return one_line_errors(run_batch_folders, base, jobs, options.output_root, options.resume,
                                getattr(options, "overwrite", False))
    if options.print_config:
        args.append("--print_config")
    return one_line_errors(run_anomalib, args)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
