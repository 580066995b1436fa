"""One run's options, typed and checked once: what ``anomalib-folder``'s flags and the Python front
door's arguments mean. The writer's options are :class:`~anomalib_folder_ext.options.WriterOptions`;
the rest (the model, the folder, the datamodule, the trainer) are here. The flags take their
defaults and help from these fields, and :mod:`~anomalib_folder_ext.run.translate` turns a spec
into the ``anomalib predict`` config ``configs/folder.yaml`` holds.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from anomalib_folder_ext.errors import InputError
from anomalib_folder_ext.images.discover import DEFAULT_EXTENSIONS
from anomalib_folder_ext.options import WatchOptions, WriterOptions, check_counts


def _option(default: object, doc: str) -> object:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class RunSpec:
    """The model, the folder, how it is read and on what it runs, and the writer's options.

    Example:
        >>> spec = RunSpec(model_path="model.ckpt", folder_path="batch_01", batch_size=16, devices="2")
        >>> spec.devices, spec.writer.normalization.value, spec.output_dir_or_default().as_posix()
        (2, 'per_image', 'inference_results_batch_01')
        >>> RunSpec(batch_size=0)
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.FolderInputError: batch_size 0: must be a whole number of at least 1
    """

    model_path: str | Path | None = _option(None, "EfficientAd Lightning checkpoint (.ckpt), or an exported model")
    folder_path: str | Path | None = _option(None, "folder of images")
    output_dir: str | Path | None = _option(None, "where results go (default: inference_results_<folder name>)")
    image_size: tuple[int, int] | None = _option(
        None, "the model's input size: must equal the checkpoint's (default: the checkpoint's)")
    batch_size: int = _option(8, "images per forward pass")
    recursive: bool = _option(False, "also take images in sub-folders (mirrored in the output dir)")
    extensions: tuple[str, ...] = _option(DEFAULT_EXTENSIONS, "file extensions to take, any letter case")
    num_workers: int | None = _option(None, "DataLoader workers (default: min(8, CPUs - 1))")
    max_pixels: int | None = _option(None, "larger images are listed as failed instead of decoded "
                                           "(default: 100,000,000, i.e. 10,000 x 10,000)")
    accelerator: str = _option("auto", "cpu, gpu, auto")
    devices: int | str = _option(1, "number of devices, or auto")
    precision: str = _option("32-true", "32-true, bf16-mixed, 16-mixed (see docs/PERFORMANCE.md)")
    writer: WriterOptions = field(default_factory=WriterOptions)
    watch: WatchOptions = field(default_factory=WatchOptions)  # used by a watch only

    def __post_init__(self) -> None:
        check_counts(batch_size=(self.batch_size, 1), num_workers=(self.num_workers, 0), max_pixels=(self.max_pixels, 1))
        if isinstance(self.extensions, str):
            raise InputError(f"extensions {self.extensions!r}: give a list, e.g. ['.png', '.jpg']", option="extensions")
        object.__setattr__(self, "extensions", tuple(self.extensions))
        if self.folder_path is not None:
            object.__setattr__(self, "folder_path", Path(self.folder_path).expanduser())
        if self.image_size is not None:
            object.__setattr__(self, "image_size", tuple(int(side) for side in self.image_size))
        devices = str(self.devices)
        object.__setattr__(self, "devices", int(devices) if devices.isdigit() else devices)
        if not isinstance(self.writer, WriterOptions):
            raise InputError("writer: give WriterOptions", option="writer")
        if not isinstance(self.watch, WatchOptions):
            raise InputError("watch: give WatchOptions", option="watch")

    @property
    def folder(self) -> Path | None:
        return self.folder_path

    def output_dir_or_default(self) -> Path:
        """This run's output dir: the one given, or ``inference_results_<folder name>``."""
        from anomalib_folder_ext.outputs.artifacts import default_output_dir

        return Path(self.output_dir).expanduser() if self.output_dir else default_output_dir(self.folder)

    def with_changes(self, **changes: object) -> RunSpec:
        """This spec with ``changes``, checked again (``writer=``, ``watch=`` or any of their options by name)."""
        for group, kind in (("writer", WriterOptions), ("watch", WatchOptions)):
            names = {option.name for option in fields(kind)}
            group_changes = {name: changes.pop(name) for name in list(changes) if name in names}
            if group_changes:
                changes[group] = replace(changes.get(group, getattr(self, group)), **group_changes)
        return replace(self, **changes)


def spec_docs() -> dict[str, str]:
    """Each run option's documentation (the flags' help)."""
    return {option.name: option.metadata["doc"] for option in fields(RunSpec) if "doc" in option.metadata}


def spec_defaults() -> dict[str, object]:
    return {option.name: option.default for option in fields(RunSpec) if option.default is not MISSING}
