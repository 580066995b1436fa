"""A run's options (:class:`~anomalib_folder_ext.run.spec.RunSpec`) as the ``anomalib predict`` config
``configs/folder.yaml`` holds, and the old script's flags as a spec.

Nothing here predicts: the config is handed to anomalib's own CLI (:mod:`~anomalib_folder_ext.run.launch`).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from pathlib import Path

from anomalib_folder_ext.options import Normalization, WatchOptions, WriterOptions
from anomalib_folder_ext.run.spec import RunSpec

MODEL_CLASS = "anomalib.models.EfficientAd"
EXPORTED_MODEL_CLASS = "anomalib_folder_ext.exportedmodel.ExportedModel"
DATA_CLASS = "anomalib_folder_ext.data.FolderDataModule"
WATCH_DATA_CLASS = "anomalib_folder_ext.data.WatchedFolderDataModule"
WRITER_CLASS = "anomalib_folder_ext.callbacks.AnomalyMapWriter"
CHANNELS_LAST_CLASS = "anomalib_folder_ext.callbacks.ChannelsLast"
# Writer options the flags set; the rest keep their defaults in the config, as configs/folder.yaml has them.
FLAG_WRITER_OPTIONS = ("save_as_npy", "save_as_image", "colormap", "normalization", "vmin", "vmax", "map_size",
                       "save_overlay", "overlay_alpha", "calibration", "threshold", "pixel_threshold",
                       "uncertain_below", "save_mask", "report", "resume", "overwrite", "allow_other_files")


def resolve_folder(options: argparse.Namespace) -> Path | None:
    if getattr(options, "batch_folder", None):
        return Path(options.data_root).expanduser() / options.batch_folder
    if getattr(options, "folder_path", None):
        return Path(options.folder_path).expanduser()
    return None


def spec_from_flags(options: argparse.Namespace) -> RunSpec:
    """The run the flags ask for, checked (an ``InputError`` names what is wrong)."""
    writer = WriterOptions(**{name: getattr(options, name) for name in FLAG_WRITER_OPTIONS
                              if name not in {"resume", "overwrite"}},
                           resume=bool(options.resume), overwrite=bool(getattr(options, "overwrite", False)))
    folder = resolve_folder(options)
    return RunSpec(
        model_path=options.model_path, folder_path=folder, output_dir=getattr(options, "output_dir", None),
        image_size=options.image_size, batch_size=options.batch_size, recursive=options.recursive,
        extensions=options.extensions, num_workers=options.num_workers, max_pixels=options.max_pixels,
        accelerator=options.accelerator, devices=options.devices, precision=options.precision, writer=writer,
    )


def predict_config(spec: RunSpec, checkpoint, folder: Path | None = None, watch: bool = False) -> dict:  # noqa: ANN001
    """The ``anomalib predict`` config equivalent to ``spec``: the shape of ``configs/folder.yaml``
    (``watch``: of ``configs/watch.yaml``, the folder watched).

    ``folder`` defaults to the spec's; a multi-folder run sets it per folder.
    """
    folder = folder or spec.folder
    data = {"folder_path": str(folder)} if folder else {}
    data |= {"batch_size": spec.batch_size, "recursive": spec.recursive, "extensions": list(spec.extensions)}
    if spec.output_dir:
        data["output_dir"] = str(spec.output_dir)
    if spec.image_size:
        data["image_size"] = list(spec.image_size)
    if spec.num_workers is not None:
        data["num_workers"] = spec.num_workers
    if spec.max_pixels is not None:
        data["max_pixels"] = spec.max_pixels
    if watch:
        data |= {name: value for name, value in asdict(spec.watch).items() if value != getattr(WatchOptions(), name)}
    trainer = {"enable_progress_bar": False} if watch else {}  # a watch draws its own live line
    return {
        **model_config(checkpoint),
        "data": {"class_path": WATCH_DATA_CLASS if watch else DATA_CLASS, "init_args": data},
        "return_predictions": False,
        "trainer": {
            "accelerator": spec.accelerator,
            "devices": spec.devices,
            "precision": spec.precision,
            "logger": False,
            **trainer,
            "callbacks": [
                {"class_path": CHANNELS_LAST_CLASS},
                {"class_path": WRITER_CLASS, "init_args": writer_init_args(spec.writer)},
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


def writer_init_args(writer: WriterOptions) -> dict:
    """The writer's ``init_args`` in the config: the options the flags set, and any other the caller changed
    (the rest keep their defaults). ``vmin`` and ``vmax`` only with ``normalization: fixed``."""
    defaults = WriterOptions()
    fixed = writer.normalization is Normalization.fixed
    values = {}
    for option in fields(WriterOptions):
        name, value = option.name, getattr(writer, option.name)
        if name in {"vmin", "vmax"} and not fixed:
            continue
        if name in FLAG_WRITER_OPTIONS or value != getattr(defaults, name):
            values[name] = getattr(value, "value", str(value) if isinstance(value, Path) else value)
    return values


def inline_config(config: dict) -> list[str]:
    import yaml

    return ["--config", yaml.safe_dump(config, sort_keys=False)]


def anomalib_predict_args(spec: RunSpec, checkpoint, watch: bool = False) -> list[str]:  # noqa: ANN001
    """The ``anomalib predict`` arguments for ``spec``: one inline ``--config``, as a file would hold."""
    return ["predict", *inline_config(predict_config(spec, checkpoint, watch=watch))]


def writer_flags(options: argparse.Namespace) -> list[str]:
    """``--resume`` / ``--overwrite`` / ``--allow_other_files`` for a run from configs: the writer is the last
    callback, as in configs/folder.yaml."""
    flags = []
    for name in ("resume", "overwrite", "allow_other_files"):
        if getattr(options, name, None):
            flags += [f"--trainer.callbacks.init_args.{name}", "true"]
    return flags
