"""A datamodule for unlabelled image folders, fed to ``Trainer.predict`` by anomalib's CLI/Engine.

The data path is built so the device never waits for the host:

- DataLoader workers decode each file to ``uint8`` (4x fewer bytes than float32) and collate a
  batch into one (B, H, W, 3) block, which reads as an NCHW batch in channels-last memory;
- the loader pins it, Lightning copies it to the device without blocking, and
  :meth:`FolderDataModule.on_after_batch_transfer` converts it to float there, exactly as
  anomalib's ``read_image`` does (``to_dtype(..., scale=True)``);
- the model's own pre-processor then resizes the batch on the device, so the maps are anomalib's
  own by construction.

A file that cannot be decoded costs its decode only: the batch carries it aside (``failed``), with
why, and the model sees only the images that decoded (a batch of none is an empty forward).

A batch whose images differ in size cannot be one block: its images are converted and resized in
the worker with the pre-processor's own ``Resize`` (the float path), and the pre-processor's
resize then leaves them as they are. Folders of one image size, the usual case, never take it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from anomalib.data import AnomalibDataModule
from anomalib.data.transforms.utils import extract_transforms_by_type
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import Resize

from anomalib_folder_ext.outputs.artifacts import default_output_dir
from anomalib_folder_ext.console import at_anomalib_cli_edge
from anomalib_folder_ext.images.decode import DEFAULT_MAX_PIXELS, decode_image, failure_reason
from anomalib_folder_ext.images.discover import (
    DEFAULT_EXTENSIONS,
    list_folder_images,
    normalize_extensions,
)
from anomalib_folder_ext.errors import FolderInputError
from anomalib_folder_ext.options import WriterOptions, check_counts
from anomalib_folder_ext.outputs.runplan import OutputNames
from anomalib_folder_ext.outputs.journal import file_stamp
from anomalib_folder_ext.distributed.ranks import decided_on_rank_zero
from anomalib_folder_ext.data.batch import FailedImage, FolderImageBatch, FolderImageItem, to_float
from anomalib_folder_ext.data.schedule import FolderShardSampler, scheduled_indices

DEFAULT_IMAGE_SIZE = (256, 256)


class FolderImageDataset(Dataset):
    """Images of one folder, decoded to ``uint8``; batches are collated by :meth:`collate`.

    A file that cannot be decoded does not stop the run: it yields an empty image and its error,
    and the writer lists it as failed.

    Example:
        >>> dataset = FolderImageDataset("path/to/batch_01", ["a.png"], (256, 256))  # doctest: +SKIP
        >>> item = dataset[0]  # doctest: +SKIP
        >>> item.image.dtype, item.original_size, item.relative_path  # doctest: +SKIP
        (torch.uint8, (300, 200), 'a.png')
    """

    def __init__(
        self,
        root: str | Path,
        relative_paths: Sequence[Path],
        image_size: tuple[int, int],
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.relative_paths = [Path(path) for path in relative_paths]
        self.image_size = tuple(image_size)
        self.max_pixels = max_pixels
        self.resize = Resize(self.image_size, antialias=True)

    def __len__(self) -> int:
        return len(self.relative_paths)

    def __getitem__(self, index: int) -> FolderImageItem:
        return self.read(self.relative_paths[index])

    def read(self, relative: Path) -> FolderImageItem:
        """The file ``relative`` (to the root) decoded, or its error."""
        path = self.root / relative
        error, notes = "", []
        source = file_stamp(path)  # before reading: a file replaced while it is read reads as changed next time
        try:
            pixels, notes = decode_image(path, self.max_pixels)
            original_size = (int(pixels.shape[0]), int(pixels.shape[1]))
            if original_size[0] < self.image_size[0] or original_size[1] < self.image_size[1]:
                notes.append(f"upscaled from {original_size[1]} x {original_size[0]}")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is reported per file, not raised
            error = failure_reason(path, exc)
            pixels = np.zeros((0, 0, 3), dtype=np.uint8)  # collate sets it aside
            original_size = (0, 0)
        return FolderImageItem(
            image=torch.from_numpy(pixels).permute(2, 0, 1),  # CHW view of HWC memory, no copy
            image_path=str(path),
            relative_path=relative.as_posix(),
            original_size=original_size,
            error=error,
            note="; ".join(notes),
            source=source,
        )

    def collate(self, items: list[FolderImageItem]) -> FolderImageBatch:
        """One ``uint8`` block when the images share a size, else the float path (see the module doc);
        the files that did not decode aside."""
        failed = [FailedImage(item.relative_path, item.error, item.note, item.source) for item in items if item.error]
        items = [item for item in items if not item.error]
        sizes = {tuple(item.image.shape[-2:]) for item in items}
        if not items:
            image = torch.empty((0, 3, *self.image_size), dtype=torch.uint8)
        elif len(sizes) == 1:
            height, width = sizes.pop()
            block = torch.empty((len(items), height, width, 3), dtype=torch.uint8)
            for index, item in enumerate(items):
                block[index].copy_(item.image.permute(1, 2, 0))
            image = block.permute(0, 3, 1, 2)  # NCHW shape, channels-last memory
        else:
            image = torch.stack([self.resize(to_float(item.image)) for item in items])
        return FolderImageBatch(
            image=image,
            image_path=[item.image_path for item in items],
            relative_path=[item.relative_path for item in items],
            original_size=[item.original_size for item in items],
            error=[item.error for item in items],
            note=[item.note for item in items],
            source=[item.source for item in items],
            failed=failed,
        )

    @property
    def collate_fn(self):  # noqa: ANN201 - same contract as anomalib's datasets
        return self.collate


class FolderDataModule(AnomalibDataModule):
    """Predict-only datamodule for a folder of unlabelled images (``batch_01``, ...).

    Args:
        folder_path: Folder holding the images.
        output_dir: Where this folder's results go. Writer callbacks use it unless given their
            own; ``None`` means ``inference_results_<folder name>`` in the working directory.
            It lives here so a per-folder override file sets input and output in one place.
        image_size: (H, W) the model sees. ``None`` takes the checkpoint's own input size; any
            other size is an error, because the model's pre-processor would resize again.
        batch_size: Images per forward pass.
        num_workers: DataLoader worker processes decoding files to ``uint8``; ``None`` picks
            ``min(8, CPU count - 1)``, leaving a core for the predict loop and the writer.
        recursive: Also take images in sub-folders (mirrored in the output dir).
        extensions: File extensions to take, any letter case.
        max_pixels: An image of more pixels is listed as failed, with its size, instead of being
            decoded (a 13000 x 13000 scan takes gigabytes). ``None``: no limit.

    Example:
        >>> datamodule = FolderDataModule(folder_path="path/to/batch_01", batch_size=16)  # doctest: +SKIP
        >>> datamodule.category  # doctest: +SKIP
        'batch_01'
    """

    def __init__(
        self,
        folder_path: str | Path,
        output_dir: str | Path | None = None,
        image_size: tuple[int, int] | None = None,
        batch_size: int = 8,
        num_workers: int | None = None,
        recursive: bool = False,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        at_anomalib_cli_edge()
        check_counts(batch_size=(batch_size, 1), num_workers=(num_workers, 0), max_pixels=(max_pixels, 1))
        if num_workers is None:
            num_workers = min(8, max((os.cpu_count() or 1) - 1, 0))
        super().__init__(train_batch_size=batch_size, eval_batch_size=batch_size, num_workers=num_workers)
        # With more ranks than images some ranks get none; Lightning rejects that unless told (and
        # LightningDataModule.__init__ resets this attribute, so it is set after it).
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.folder_path = Path(folder_path).expanduser()
        self.output_dir = Path(output_dir).expanduser() if output_dir else default_output_dir(self.folder_path)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.batch_size = batch_size
        self.recursive = recursive
        self.extensions = normalize_extensions(extensions)
        self.max_pixels = max_pixels
        self.category = self.folder_path.resolve().name
        self.relative_paths: list[Path] = []
        self.predict_data: FolderImageDataset | None = None
        self.finished: frozenset[str] = frozenset()  # images an earlier run finished: listed, not predicted

    streams = False  # a folder is listed once; a watched one streams (data.stream)

    @property
    def name(self) -> str:
        return "folder"

    def output_names(self, options: WriterOptions) -> OutputNames:
        """The files each listed image gets under the writer's ``options``."""
        return OutputNames.for_options(options, [path.as_posix() for path in self.relative_paths])

    def nothing_waiting(self) -> bool:
        """Whether no image is waiting to be predicted soon (a watch's idle moments); a listed folder never is."""
        return False

    def _setup(self, _stage: str | None = None) -> None:
        """Nothing to split: the base class's train/val/test logic does not apply to a predict folder."""

    def setup(self, stage: str | None = None) -> None:
        """List the images. Lightning calls this before it loads the checkpoint's weights, so a
        bad folder fails fast; the dataset itself waits for the model's input size (predict_dataloader).
        Under DDP rank 0 lists and every rank takes its list: the ranks share one list, whatever their
        view of the folder."""
        del stage
        if not self.relative_paths:
            trainer = getattr(self, "trainer", None)
            self.relative_paths = decided_on_rank_zero(trainer.strategy if trainer is not None else None, self.list_images)

    def skip_images(self, names: frozenset[str]) -> None:
        """The images an earlier, interrupted run finished (the writer's run plan says which): they stay in
        ``relative_paths`` (names, order, summaries), and batches of nothing else are not predicted again."""
        self.finished = frozenset(names)

    def row_settings(self) -> dict[str, object]:
        """The data settings that decide a folder's rows: the ranks of one job must share them."""
        return {"folder_path": str(self.folder_path.resolve()), "output_dir": str(self.output_dir.resolve()),
                "image_size": self.image_size, "batch_size": self.batch_size, "recursive": self.recursive,
                "extensions": tuple(self.extensions), "max_pixels": self.max_pixels}

    def list_images(self) -> list[Path]:
        return list_folder_images(self.folder_path, self.extensions, self.recursive, exclude=self.output_dir)

    def resolve_image_size(self) -> tuple[int, int]:
        """The model's input size when a model is attached; checked against ``image_size``."""
        model_size = self._model_input_size()
        if self.image_size is None:
            return model_size or DEFAULT_IMAGE_SIZE
        if model_size is not None and tuple(self.image_size) != model_size:
            msg = (
                f"image_size {tuple(self.image_size)} differs from the checkpoint's input size {model_size}: "
                "the model's pre-processor would resize every image a second time. "
                "Leave image_size unset to use the checkpoint's size."
            )
            raise FolderInputError(msg)
        return tuple(self.image_size)

    def _model_input_size(self) -> tuple[int, int] | None:
        trainer = getattr(self, "trainer", None)
        model = trainer.lightning_module if trainer is not None else None
        pre_processor = getattr(model, "pre_processor", None)
        transform = getattr(pre_processor, "transform", None)
        if transform is None:
            return None
        resizes = extract_transforms_by_type(transform, Resize)
        if not resizes:
            return None
        size = resizes[0].size
        return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])

    def on_after_batch_transfer(self, batch: FolderImageBatch, dataloader_idx: int) -> FolderImageBatch:
        """On the device: ``uint8`` to float in [0, 1], as anomalib's ``read_image`` does on the host."""
        del dataloader_idx
        if isinstance(batch, FolderImageBatch) and batch.image.dtype == torch.uint8:
            batch.image = to_float(batch.image)
        return batch

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        self.predict_data = FolderImageDataset(
            self.folder_path, self.relative_paths, self.resolve_image_size(), self.max_pixels
        )
        trainer = getattr(self, "trainer", None)
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        names = [path.as_posix() for path in self.relative_paths]
        indices = scheduled_indices(names, self.finished, world_size, rank, self.batch_size)
        if names and not indices:  # nothing left for this rank (resumed, or more ranks than images): no alarm
            warnings.filterwarnings("ignore", message="Total length of `DataLoader` across ranks is zero")
        sampler = FolderShardSampler(self.predict_data, world_size, rank, indices)
        return DataLoader(
            self.predict_data,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.predict_data.collate_fn,
            pin_memory=trainer is not None and trainer.strategy.root_device.type == "cuda",
            persistent_workers=False,
        )
