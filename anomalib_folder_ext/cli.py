"""``anomalib-folder``: the old script's flags, translated into an ``anomalib predict`` run.

Nothing here predicts: :func:`anomalib_predict_args` turns the flags into the same settings as
``configs/folder.yaml`` and hands them to anomalib's own CLI. Inputs are checked first, before
anomalib (and its rich traceback handler) is imported, so a bad path costs one line, not a wall.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from anomalib_folder_ext.discover import DEFAULT_EXTENSIONS

MODEL_CLASS = "anomalib.models.EfficientAd"
DATA_CLASS = "anomalib_folder_ext.data.FolderDataModule"
WRITER_CLASS = "anomalib_folder_ext.callbacks.AnomalyMapWriter"
CHANNELS_LAST_CLASS = "anomalib_folder_ext.callbacks.ChannelsLast"


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"true", "1", "yes", "on"}:
        return True
    if value in {"false", "0", "no", "off"}:
        return False
    msg = f"expected True or False, got {text!r}"
    raise argparse.ArgumentTypeError(msg)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomalib-folder",
        description="Folder-based EfficientAd inference on top of `anomalib predict`.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="write normalised anomaly maps (NPY, PNG) and a summary for a folder of images",
        description=(
            "Runs `anomalib predict` with anomalib_folder_ext's datamodule and writer. "
            "Arguments not listed here are passed to anomalib unchanged, e.g. --trainer.strategy ddp."
        ),
    )
    predict.add_argument("--model_path", required=True, help="EfficientAd Lightning checkpoint (.ckpt)")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder_path", "--custom_folder", dest="folder_path", help="folder of images")
    source.add_argument("--batch_folder", help="name of a batch folder under --data_root, e.g. batch_01")
    predict.add_argument("--data_root", default=".", help="where batch folders live (default: .)")
    predict.add_argument("--output_dir", help="default: inference_results_<folder name>")
    predict.add_argument("--image_size", type=int, nargs=2, metavar=("H", "W"), help="default: the checkpoint's")
    predict.add_argument("--batch_size", type=int, default=8)
    predict.add_argument("--save_as_image", type=_bool, default=True, metavar="True|False")
    predict.add_argument("--save_as_npy", type=_bool, default=True, metavar="True|False")
    predict.add_argument("--colormap", default="jet", help="matplotlib colormap for the PNGs")
    predict.add_argument("--recursive", type=_bool, default=False, metavar="True|False")
    predict.add_argument("--extensions", nargs="+", default=list(DEFAULT_EXTENSIONS))
    predict.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    predict.add_argument("--devices", default="1", help="number of devices, or auto")
    predict.add_argument("--precision", default="32-true", help="32-true, bf16-mixed, 16-mixed (see docs/PERFORMANCE.md)")
    predict.add_argument("--num_workers", type=int, help="DataLoader workers (default: min(8, CPUs - 1))")
    predict.add_argument("--print_config", action="store_true", help="print the anomalib config and exit")

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
    return parser


def resolve_folder(options: argparse.Namespace) -> Path:
    if options.batch_folder:
        return Path(options.data_root).expanduser() / options.batch_folder
    return Path(options.folder_path).expanduser()


def predict_config(options: argparse.Namespace, checkpoint) -> dict:  # noqa: ANN001
    """The ``anomalib predict`` config equivalent to ``options``: the shape of ``configs/folder.yaml``."""
    data = {
        "folder_path": str(resolve_folder(options)),
        "batch_size": options.batch_size,
        "recursive": options.recursive,
        "extensions": list(options.extensions),
    }
    if options.output_dir:
        data["output_dir"] = options.output_dir
    if options.image_size:
        data["image_size"] = list(options.image_size)
    if options.num_workers is not None:
        data["num_workers"] = options.num_workers
    devices = options.devices
    return {
        "model": {
            "class_path": MODEL_CLASS,
            "init_args": {
                "model_size": checkpoint.model_size,
                "teacher_out_channels": checkpoint.teacher_out_channels,
                "padding": checkpoint.padding,
                "pad_maps": checkpoint.pad_maps,
                "visualizer": False,
            },
        },
        "data": {"class_path": DATA_CLASS, "init_args": data},
        "ckpt_path": str(checkpoint.path),
        "return_predictions": False,
        "trainer": {
            "accelerator": options.accelerator,
            "devices": int(devices) if str(devices).isdigit() else devices,
            "precision": options.precision,
            "logger": False,
            "callbacks": [
                {"class_path": CHANNELS_LAST_CLASS},
                {
                    "class_path": WRITER_CLASS,
                    "init_args": {
                        "save_as_npy": options.save_as_npy,
                        "save_as_image": options.save_as_image,
                        "colormap": options.colormap,
                    },
                }
            ],
        },
    }


def anomalib_predict_args(options: argparse.Namespace, checkpoint) -> list[str]:  # noqa: ANN001
    """The ``anomalib predict`` arguments for ``options``: one inline ``--config``, as a file would hold."""
    import yaml

    return ["predict", "--config", yaml.safe_dump(predict_config(options, checkpoint), sort_keys=False)]


def check_inputs(options: argparse.Namespace):  # noqa: ANN201
    """Everything that can be checked before the model loads; raises with a one-line message."""
    from anomalib_folder_ext.artifacts import default_output_dir, ensure_writable
    from anomalib_folder_ext.checkpoint import read_checkpoint
    from anomalib_folder_ext.discover import list_folder_images
    from anomalib_folder_ext.errors import InputError

    folder = resolve_folder(options)
    output_dir = Path(options.output_dir) if options.output_dir else default_output_dir(folder)
    list_folder_images(folder, options.extensions, options.recursive, exclude=output_dir)

    checkpoint = read_checkpoint(options.model_path)
    if options.image_size and checkpoint.image_size and tuple(options.image_size) != checkpoint.image_size:
        msg = (
            f"--image_size {options.image_size[0]} {options.image_size[1]} differs from the checkpoint's input size "
            f"{checkpoint.image_size[0]} {checkpoint.image_size[1]}; leave it out to use the checkpoint's size"
        )
        raise InputError(msg)

    ensure_writable(output_dir)  # last: a failed check above leaves no empty folder behind
    return checkpoint


def run_anomalib(args: list[str]) -> None:
    """Hand over to anomalib's own CLI, configured as the ``anomalib`` command does."""
    from anomalib.cli.cli import AnomalibCLI  # installs rich's traceback hook over ours
    from anomalib.loggers import configure_logger

    from anomalib_folder_ext.errors import install_excepthook

    install_excepthook()  # wrap rich's again: input errors raised during the run stay one line
    configure_logger()
    AnomalibCLI(args)


def run_demo(options: argparse.Namespace) -> int:
    import os

    from anomalib_folder_ext import demo

    root = (options.dir or demo.default_demo_dir()).resolve()
    # Before anomalib (and matplotlib) load: their caches, the random teacher included, stay in the demo dir.
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    assets = demo.DemoAssets(root)
    if options.action in {"run", "build"}:
        assets = demo.build(root, force=options.rebuild)
    if options.action == "run":
        predict = build_parser().parse_args(
            ["predict", "--model_path", str(assets.checkpoint), "--folder_path", str(assets.predict_folder),
             "--output_dir", options.output_dir]
        )
        from anomalib_folder_ext.checkpoint import read_checkpoint

        run_anomalib(anomalib_predict_args(predict, read_checkpoint(assets.checkpoint)))
    if options.action in {"run", "score"}:
        if not (Path(options.output_dir) / "results.csv").is_file():
            print(f"anomalib-folder: error: {options.output_dir}/results.csv: no demo results; run the demo first",
                  file=sys.stderr)
            return 2
        scores = demo.evaluate(options.output_dir, assets.mask_folder)
        print(f"demo results : {Path(options.output_dir).resolve()} ({scores['images']} images)")
        print(f"  maps       : *_anomaly.npy, *_anomaly.png; summary: results.csv, results_summary.txt")
        print(f"  image AUROC: {scores['image_auroc']:.3f}   pixel AUROC: {scores['pixel_auroc']:.3f}")
        print("  (a demo model: random teacher, trained briefly on texture crops; for real use pass your own checkpoint)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options, passthrough = parser.parse_known_args(argv)
    if options.command == "demo":
        if passthrough:
            parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
        return run_demo(options)
    from anomalib_folder_ext.errors import InputError

    try:
        checkpoint = check_inputs(options)
    except (ValueError, OSError) as exc:  # InputError is a ValueError
        print(f"anomalib-folder: error: {exc}", file=sys.stderr)
        return 2

    args = anomalib_predict_args(options, checkpoint) + list(passthrough)
    if options.print_config:
        args.append("--print_config")

    run_anomalib(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
