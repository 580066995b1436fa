"""What ``anomalib-folder`` checks before anomalib loads: the folder, the checkpoint, the output dir
with the names of every file the run will write, and for a multi-folder run every folder and the
output root. A bad input costs one line, not a model load."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomalib_folder_ext.run.translate import (
    inline_config,
    predict_config,
    resolve_folder,
    writer_options,
)


def check_inputs(options: argparse.Namespace):  # noqa: ANN201
    """Everything that can be checked before the model loads; raises with a one-line message."""
    from anomalib_folder_ext.outputs.artifacts import default_output_dir
    from anomalib_folder_ext.images.discover import list_folder_images

    folder = resolve_folder(options)
    output_dir = Path(options.output_dir) if options.output_dir else default_output_dir(folder)
    images = list_folder_images(folder, options.extensions, options.recursive, exclude=output_dir)
    checkpoint = read_checked_checkpoint(options)
    check_output_dir(output_dir, folder, images, options)
    return checkpoint


def check_output_dir(output_dir: Path, folder: Path, images: list[Path], options: argparse.Namespace) -> None:
    """The writer's output-dir checks, with the writer's output names, made before anomalib loads; creates nothing."""
    from anomalib_folder_ext.outputs import outputdir
    from anomalib_folder_ext.outputs.artifacts import ensure_writable
    from anomalib_folder_ext.outputs.runplan import OutputNames

    plan = OutputNames.for_options(writer_options(options), [path.as_posix() for path in images])
    ensure_writable(output_dir, create=False)
    outputdir.check_output_dir(output_dir, folder, plan, reuse=bool(options.resume or options.overwrite),
                               allow_other_files=options.allow_other_files)


def read_checked_checkpoint(options: argparse.Namespace):  # noqa: ANN201
    """The checkpoint, or the exported model (a graph file or an export directory), checked."""
    from anomalib_folder_ext.models.checkpoint import read_checkpoint
    from anomalib_folder_ext.errors import InputError
    from anomalib_folder_ext.models.exported import is_exported, read_export

    exported = is_exported(options.model_path)
    checkpoint = read_export(options.model_path) if exported else read_checkpoint(options.model_path)
    if options.image_size and checkpoint.image_size and tuple(options.image_size) != tuple(checkpoint.image_size):
        kind = "exported model" if exported else "checkpoint"
        msg = (
            f"--image_size {options.image_size[0]} {options.image_size[1]} differs from the {kind}'s input size "
            f"{checkpoint.image_size[0]} {checkpoint.image_size[1]}; leave it out to use the {kind}'s size"
        )
        raise InputError(msg)
    return checkpoint


def batch_folders(root: Path, options: argparse.Namespace) -> list[Path]:
    """The image folders directly under ``root``, in natural order: hidden folders, this tool's output
    dirs and output roots (the output root of this run among them) left out."""
    from anomalib_folder_ext.images.discover import has_images, holds_run_records, natural_key
    from anomalib_folder_ext.errors import FolderInputError

    if not root.is_dir():
        raise FolderInputError(f"{root}: no such folder")
    output_root = Path(options.output_root).resolve()
    folders = sorted(
        (path for path in root.iterdir()
         if path.is_dir() and not path.name.startswith((".", "inference_results_"))
         and path.resolve() != output_root and not holds_run_records(path)
         and has_images(path, options.extensions, options.recursive)),  # listed in full once, by its datamodule
        key=natural_key,
    )
    if options.only:
        names = {path.name: path for path in folders}
        missing = [name for name in options.only if name not in names]
        if missing:
            raise FolderInputError(f"{root / missing[0]}: no such batch folder with images (--only)")
        folders = [names[name] for name in options.only]
    if not folders:
        raise FolderInputError(f"{root}: no folders of images in it (extensions searched: {', '.join(options.extensions)})")
    return folders


def batch_jobs(options: argparse.Namespace, passthrough: list[str]) -> tuple[list[str], list]:
    """The shared anomalib arguments and one job per folder, for ``batches`` and ``predict --batches``."""
    from anomalib_folder_ext.outputs.artifacts import default_output_dir, ensure_writable
    from anomalib_folder_ext.run.batches import FolderJob
    from anomalib_folder_ext.outputs.outputroot import check_output_root

    output_root = Path(options.output_root)
    if options.command == "batches":
        folders = batch_folders(options.root.expanduser(), options)
        checkpoint = read_checked_checkpoint(options)
        base = ["predict", *inline_config(predict_config(options, checkpoint, folders[0])), *passthrough]
        jobs = [
            FolderJob(folder.name, ["--data.init_args.folder_path", str(folder),
                                    "--data.init_args.output_dir", str(output_root / default_output_dir(folder).name)],
                      origin=str(folder))
            for folder in folders
        ]
    else:
        for path in options.batches:
            if not Path(path).is_file():
                raise FileNotFoundError(2, "no such override file", path)
        base = ["predict"]
        if options.model_path:
            base += inline_config(predict_config(options, read_checked_checkpoint(options)))
        elif options.allow_other_files:
            base += ["--trainer.callbacks.init_args.allow_other_files", "true"]
        base += passthrough
        jobs = [FolderJob(Path(path).stem, ["--config", str(path)], origin=str(path)) for path in options.batches]
    check_output_root(output_root)
    ensure_writable(output_root, create=False)
    return base, jobs

