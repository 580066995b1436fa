"""The old script's flags, translated into the ``anomalib predict`` config ``configs/folder.yaml`` holds.

Nothing here predicts: the result is handed to anomalib's own CLI (:mod:`~anomalib_folder_ext.run.launch`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anomalib_folder_ext.options import Normalization, WriterOptions

MODEL_CLASS = "anomalib.models.EfficientAd"
EXPORTED_MODEL_CLASS = "anomalib_folder_ext.exportedmodel.ExportedModel"
DATA_CLASS = "anomalib_folder_ext.data.FolderDataModule"
WRITER_CLASS = "anomalib_folder_ext.callbacks.AnomalyMapWriter"
CHANNELS_LAST_CLASS = "anomalib_folder_ext.callbacks.ChannelsLast"


def resolve_folder(options: argparse.Namespace) -> Path | None:
    if getattr(options, "batch_folder", None):
        return Path(options.data_root).expanduser() / options.batch_folder
    if getattr(options, "folder_path", None):
        return Path(options.folder_path).expanduser()
    return None


def predict_config(options: argparse.Namespace, checkpoint, folder: Path | None = None) -> dict:  # noqa: ANN001
    """The ``anomalib predict`` config equivalent to ``options``: the shape of ``configs/folder.yaml``.

    ``folder`` defaults to the one the options name; a multi-folder run sets it per folder.
    """
    folder = folder or resolve_folder(options)
    data = {"folder_path": str(folder)} if folder else {}
    data |= {
        "batch_size": options.batch_size,
        "recursive": options.recursive,
        "extensions": list(options.extensions),
    }
    if getattr(options, "output_dir", None):
        data["output_dir"] = options.output_dir
    if options.image_size:
        data["image_size"] = list(options.image_size)
    if options.num_workers is not None:
        data["num_workers"] = options.num_workers
    if options.max_pixels is not None:
        data["max_pixels"] = options.max_pixels
    devices = options.devices
    return {
        **model_config(checkpoint),
        "data": {"class_path": DATA_CLASS, "init_args": data},
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
                    "init_args": writer_init_args(writer_options(options)),
                }
            ],
        },
    }


def model_config(checkpoint) -> dict:  # noqa: ANN001
    """``model`` and ``ckpt_path``: EfficientAd built as the checkpoint was, or an exported model (no checkpoint)."""
    if hasattr(checkpoint, "format"):  # exported.ExportInfo
        return {"model": {"class_path": EXPORTED_MODEL_CLASS, "init_args": {"model_path": str(checkpoint.path)}}}
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
        "ckpt_path": str(checkpoint.path),
    }


def writer_options(options: argparse.Namespace) -> WriterOptions:
    """The writer's options the flags ask for, checked (an ``InputError`` names what is wrong)."""
    return WriterOptions(
        save_as_npy=options.save_as_npy, save_as_image=options.save_as_image, colormap=options.colormap,
        normalization=options.normalization, vmin=options.vmin, vmax=options.vmax, map_size=options.map_size,
        save_overlay=options.save_overlay, overlay_alpha=options.overlay_alpha, report=options.report,
        resume=bool(options.resume), overwrite=bool(getattr(options, "overwrite", False)),
        allow_other_files=options.allow_other_files,
    )


def writer_init_args(writer: WriterOptions) -> dict:
    """The writer's ``init_args`` in the config: the options the flags set (the rest keep their defaults)."""
    fixed = writer.normalization is Normalization.fixed
    return {
        "save_as_npy": writer.save_as_npy,
        "save_as_image": writer.save_as_image,
        "colormap": writer.colormap,
        "normalization": writer.normalization.value,
        **({"vmin": writer.vmin, "vmax": writer.vmax} if fixed else {}),
        "map_size": writer.map_size.value,
        "save_overlay": writer.save_overlay,
        "overlay_alpha": writer.overlay_alpha,
        "report": writer.report,
        "resume": writer.resume,
        "overwrite": writer.overwrite,
        "allow_other_files": writer.allow_other_files,
    }


def inline_config(config: dict) -> list[str]:
    import yaml

    return ["--config", yaml.safe_dump(config, sort_keys=False)]


def anomalib_predict_args(options: argparse.Namespace, checkpoint) -> list[str]:  # noqa: ANN001
    """The ``anomalib predict`` arguments for ``options``: one inline ``--config``, as a file would hold."""
    return ["predict", *inline_config(predict_config(options, checkpoint))]


def writer_flags(options: argparse.Namespace) -> list[str]:
    """``--resume`` / ``--overwrite`` / ``--allow_other_files`` for a run from configs: the writer is the last
    callback, as in configs/folder.yaml."""
    flags = []
    for name in ("resume", "overwrite", "allow_other_files"):
        if getattr(options, name, None):
            flags += [f"--trainer.callbacks.init_args.{name}", "true"]
    return flags

