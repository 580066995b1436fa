"""A datamodule for unlabelled image folders, fed to ``Trainer.predict`` by anomalib's CLI/Engine.

Images are decoded with anomalib's own ``read_image`` and resized with the same torchvision
``Resize`` the model's pre-processor uses, inside DataLoader workers. The pre-processor's resize
then meets images already at its size and leaves them untouched (torchvision returns same-size
inputs as they are), so the maps equal anomalib's own while decoding runs in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from anomalib.data import AnomalibDataModule, ImageBatch, ImageItem
from anomalib.data.transforms.utils import extract_transforms_by_type
from anomalib.data.utils import read_image
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms.v2 import Resize
from torchvision.tv_tensors import Image

from anomalib_folder_ext.artifacts import default_output_dir
from anomalib_folder_ext.discover import DEFAULT_EXTENSIONS, list_folder_images, normalize_extensions
from anomalib_folder_ext.errors import FolderInputError

DEFAULT_IMAGE_SIZE = (256, 256)


@dataclass
class FolderImageItem(ImageItem):
    """An ``ImageItem`` that remembers where it came from and how big it was."""

    relative_path: str = ""
    original_size: torch.Tensor | None = None  # (H, W) before resizing
    error: str = ""  # why the file could not be read; "" when it was


@dataclass
class FolderImageBatch(ImageBatch):
    """Batch of :class:`FolderImageItem`; the extra fields collate like the standard ones."""

    relative_path: list[str] | None = None
    original_size: torch.Tensor | None = None
    error: list[str] | None = None


class FolderImageDataset(Dataset):
    """Images of one folder, resized to ``image_size``.

    A file that cannot be decoded does not stop the run: it yields a black image and its error,
    and the writer lists it as failed.

    Example:
        >>> dataset = FolderImageDataset("path/to/batch_01", ["a.png"], (256, 256))  # doctest: +SKIP
        >>> item = dataset[0]  # doctest: +SKIP
        >>> item.image.shape, item.relative_path  # doctest: +SKIP
        (torch.Size([3, 256, 256]), 'a.png')
    """

    def __init__(self, root: str | Path, relative_paths: Sequence[Path], image_size: tuple[int, int]) -> None:
        super().__init__()
        self.root = Path(root)
        self.relative_paths = list(relative_paths)
        self.image_size = tuple(image_size)
        self.resize = Resize(self.image_size, antialias=True)

    def __len__(self) -> int:
        return len(self.relative_paths)

    def __getitem__(self, index: int) -> FolderImageItem:
        relative = self.relative_paths[index]
        path = self.root / relative
        error = ""
        try:
            image = read_image(path, as_tensor=True)
            original_size = torch.tensor(image.shape[-2:])
            image = self.resize(Image(image))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is reported per file, not raised
            error = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            image = Image(torch.zeros(3, *self.image_size))
            original_size = torch.tensor([0, 0])
        return FolderImageItem(
            image=image,
            image_path=str(path),
            relative_path=relative.as_posix(),
            original_size=original_size,
            error=error,
        )

    @property
    def collate_fn(self):  # noqa: ANN201 - same contract as anomalib's datasets
        return FolderImageBatch.collate


class FolderShardSampler(DistributedSampler):
    """Rank ``r`` of ``n`` takes images ``r, r + n, r + 2n, ...``: each image exactly once, no padding.

    Lightning's own predict sampler asserts that every rank gets at least one image; this one
    lets a rank get none (1 image on 2 GPUs), and its loader is then simply empty.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self):  # noqa: ANN204
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


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
        num_workers: DataLoader worker processes decoding and resizing; ``None`` picks
            ``min(8, CPU count - 1)``, leaving a core for the predict loop and the writer.
        recursive: Also take images in sub-folders (mirrored in the output dir).
        extensions: File extensions to take, any letter case.

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
    ) -> None:
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
        self.category = self.folder_path.resolve().name
        self.relative_paths: list[Path] = []
        self.predict_data: FolderImageDataset | None = None

    @property
    def name(self) -> str:
        return "folder"

    def _setup(self, _stage: str | None = None) -> None:
        """Nothing to split: the base class's train/val/test logic does not apply to a predict folder."""

    def setup(self, stage: str | None = None) -> None:
        """List the images. Lightning calls this before it loads the checkpoint's weights, so a
        bad folder fails fast; the dataset itself waits for the model's input size (predict_dataloader)."""
        del stage
        if not self.relative_paths:
            self.relative_paths = list_folder_images(
                self.folder_path, self.extensions, self.recursive, exclude=self.output_dir
            )

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

    def predict_dataloader(self) -> DataLoader:
        self.setup("predict")
        self.predict_data = FolderImageDataset(self.folder_path, self.relative_paths, self.resolve_image_size())
        trainer = getattr(self, "trainer", None)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = FolderShardSampler(self.predict_data, trainer.world_size, trainer.global_rank)
        return DataLoader(
            self.predict_data,
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.predict_data.collate_fn,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
