"""What a run checks before anomalib loads: the folder, the checkpoint, the output dir with the names of
every file the run will write, and for a multi-folder run every folder and the output root. A bad input
costs one line, not a model load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anomalib_folder_ext.run.spec import RunSpec
from anomalib_folder_ext.run.translate import inline_config, predict_config


def check_inputs(spec: RunSpec):  # noqa: ANN201
    """Everything that can be checked before the model loads; raises with a one-line message."""
    from anomalib_folder_ext.images.discover import list_folder_images

    output_dir = spec.output_dir_or_default()
    images = list_folder_images(spec.folder, spec.extensions, spec.recursive, exclude=output_dir)
    checkpoint = read_checked_checkpoint(spec)
    check_output_dir(output_dir, spec.folder, images, spec)
    return checkpoint


def check_output_dir(output_dir: Path, folder: Path, images: list[Path], spec: RunSpec) -> None:
    """The writer's output-dir checks, with the writer's output names, made before anomalib loads; creates nothing."""
    from anomalib_folder_ext.outputs import outputdir
    from anomalib_folder_ext.outputs.artifacts import ensure_writable
    from anomalib_folder_ext.outputs.runplan import OutputNames

    writer = spec.writer
    plan = OutputNames.for_options(writer, [path.as_posix() for path in images])
    ensure_writable(output_dir, create=False)
    outputdir.check_output_dir(output_dir, folder, plan, reuse=writer.resume or writer.overwrite,
                               allow_other_files=writer.allow_other_files)


def read_checked_checkpoint(spec: RunSpec):  # noqa: ANN201
    """The checkpoint, or the exported model (a graph file or an export directory), checked."""
    from anomalib_folder_ext.errors import InputError
    from anomalib_folder_ext.models.checkpoint import read_checkpoint
    from anomalib_folder_ext.models.exported import is_exported, read_export

    exported = is_exported(spec.model_path)
    checkpoint = read_export(spec.model_path) if exported else read_checkpoint(spec.model_path)
    if spec.image_size and checkpoint.image_size and tuple(spec.image_size) != tuple(checkpoint.image_size):
        kind = "exported model" if exported else "checkpoint"
        msg = (
            f"--image_size {spec.image_size[0]} {spec.image_size[1]} differs from the {kind}'s input size "
            f"{checkpoint.image_size[0]} {checkpoint.image_size[1]}; leave it out to use the {kind}'s size"
        )
        raise InputError(msg, option="image_size")
    return checkpoint


def batch_folders(root: Path, spec: RunSpec, output_root: Path, only: Sequence[str] | None = None) -> list[Path]:
    """The image folders directly under ``root``, in natural order: hidden folders, this tool's output
    dirs and output roots (the output root of this run among them) left out."""
    from anomalib_folder_ext.errors import FolderInputError
    from anomalib_folder_ext.images.discover import has_images, holds_run_records, natural_key

    if not root.is_dir():
        raise FolderInputError(f"{root}: no such folder", option="root")
    output_root = Path(output_root).resolve()
    folders = sorted(
        (path for path in root.iterdir()
         if path.is_dir() and not path.name.startswith((".", "inference_results_"))
         and path.resolve() != output_root and not holds_run_records(path)
         and has_images(path, spec.extensions, spec.recursive)),  # listed in full once, by its datamodule
        key=natural_key,
    )
    if only:
        names = {path.name: path for path in folders}
        missing = [name for name in only if name not in names]
        if missing:
            raise FolderInputError(f"{root / missing[0]}: no such batch folder with images (--only)", option="only")
        folders = [names[name] for name in only]
    if not folders:
        raise FolderInputError(f"{root}: no folders of images in it (extensions searched: {', '.join(spec.extensions)})",
                               option="root")
    return folders


def root_jobs(root: Path, spec: RunSpec, output_root: Path, only: Sequence[str] | None,
              passthrough: Sequence[str] = ()) -> tuple[list[str], list]:
    """The shared anomalib arguments and one job per batch folder under ``root`` (``batches``)."""
    from anomalib_folder_ext.outputs.artifacts import default_output_dir
    from anomalib_folder_ext.run.batches import FolderJob

    folders = batch_folders(Path(root).expanduser(), spec, output_root, only)
    checkpoint = read_checked_checkpoint(spec)
    base = ["predict", *inline_config(predict_config(spec, checkpoint, folders[0])), *passthrough]
    jobs = [
        FolderJob(folder.name, ["--data.init_args.folder_path", str(folder),
                                "--data.init_args.output_dir", str(Path(output_root) / default_output_dir(folder).name)],
                  origin=str(folder))
        for folder in folders
    ]
    check_root(output_root)
    return base, jobs


def override_jobs(overrides: Sequence[str], spec: RunSpec, output_root: Path,
                  passthrough: Sequence[str] = (), option: str = "batches") -> tuple[list[str], list]:
    """The shared anomalib arguments and one job per override file (``predict --batches``); ``option``: how
    the caller names the list."""
    from anomalib_folder_ext.errors import FolderInputError
    from anomalib_folder_ext.run.batches import FolderJob

    for path in overrides:
        if not Path(path).is_file():
            raise FolderInputError(f"{path}: no such override file", option=option)
    base = ["predict"]
    if spec.model_path:
        base += inline_config(predict_config(spec, read_checked_checkpoint(spec)))
    elif spec.writer.allow_other_files:
        base += ["--trainer.callbacks.init_args.allow_other_files", "true"]
    base += list(passthrough)
    jobs = [FolderJob(Path(path).stem, ["--config", str(path)], origin=str(path)) for path in overrides]
    check_root(output_root)
    return base, jobs


def check_root(output_root: Path) -> None:
    from anomalib_folder_ext.outputs.artifacts import ensure_writable
    from anomalib_folder_ext.outputs.outputroot import check_output_root

    check_output_root(Path(output_root))
    ensure_writable(Path(output_root), create=False)


def check_watch(spec: RunSpec):  # noqa: ANN201
    """A watch's checks before the model loads: the folder, the checkpoint, the output dir (outside the
    folder, and this tool's or new: a watch resumes it); the model's config for the run."""
    from anomalib_folder_ext.data.stream import check_watch_dirs
    from anomalib_folder_ext.outputs import outputdir
    from anomalib_folder_ext.outputs.artifacts import ensure_writable
    from anomalib_folder_ext.outputs.runplan import OutputNames

    output_dir = spec.output_dir_or_default()
    check_watch_dirs(spec.folder, output_dir, spec.watch.sort_into)
    checkpoint = read_checked_checkpoint(spec)
    ensure_writable(output_dir, create=False)
    if not spec.watch.rotate:  # with rotate, each period's dir is checked as it starts
        outputdir.check_output_dir(output_dir, spec.folder, OutputNames.for_options(spec.writer, []), reuse=True,
                                   allow_other_files=spec.writer.allow_other_files)
    return checkpoint
