"""A batch of a folder's images as anomalib's dataclasses see it: ``uint8`` until the device, with
where each image came from, and the files that did not decode carried aside (never through the model)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from anomalib.data import ImageBatch, ImageItem
from torchvision.transforms.v2.functional import to_dtype_image
from torchvision.tv_tensors import Image


def _checked_image(image: torch.Tensor) -> Image:
    """anomalib's image checks, without its conversion to float: ``uint8`` stays ``uint8`` until the device."""
    if not isinstance(image, torch.Tensor):
        msg = f"Image must be a torch.Tensor, got {type(image)}."
        raise TypeError(msg)
    if image.ndim not in {3, 4} or image.shape[-3] != 3:
        msg = f"Image must have shape [3, H, W] or [N, 3, H, W], got shape {tuple(image.shape)}."
        raise ValueError(msg)
    return Image(image if image.dtype in {torch.uint8, torch.float32} else image.to(torch.float32))


class FailedImage(NamedTuple):
    """A file that did not decode: it travels beside the batch, never through the model."""

    relative_path: str
    error: str
    note: str = ""
    source: tuple[int, ...] | None = None


@dataclass
class FolderImageItem(ImageItem):
    """An ``ImageItem`` that remembers where it came from and how big it was; its image is ``uint8``."""

    relative_path: str = ""
    original_size: tuple[int, int] = (0, 0)  # (H, W) of the file
    error: str = ""  # why the file could not be read; "" when it was
    note: str = ""  # what was changed on the way in (16-bit scaled, alpha dropped, ...); "" when nothing
    source: tuple[int, ...] | None = None  # the file's stamp as read (journal.file_stamp), for resume to compare

    @staticmethod
    def validate_image(image: torch.Tensor) -> Image:
        return _checked_image(image)


@dataclass
class FolderImageBatch(ImageBatch):
    """Batch of :class:`FolderImageItem`. The image is ``uint8`` until it is on the device.

    ``relative_path``, ``original_size`` and ``error`` are plain lists, so Lightning leaves them
    on the host and reading them never waits for the device. Iterated (as anomalib's visualizer
    does), it yields :class:`FolderImageItem`.
    """

    item_class = FolderImageItem

    relative_path: list[str] | None = None
    original_size: list[tuple[int, int]] | None = None
    error: list[str] | None = None
    note: list[str] | None = None
    source: list[tuple[int, ...] | None] | None = None
    failed: list[FailedImage] | None = None  # the batch's files that did not decode (not in ``image``)

    @staticmethod
    def validate_image(image: torch.Tensor) -> Image:
        return _checked_image(image)

    @property
    def items(self) -> list[FolderImageItem]:
        """The decoded images as items (``failed`` is the batch's, not an item's)."""
        values = {field.name: getattr(self, field.name) for field in fields(self.item_class)}
        return [self.item_class(**{name: value[index] if hasattr(value, "__getitem__") else None
                                   for name, value in values.items()}) for index in range(self.batch_size)]

    def pin_memory(self) -> FolderImageBatch:
        """Called by the DataLoader's pinning thread: page-locked memory makes the device copy asynchronous."""
        self.image = self.image.pin_memory()
        return self


def to_float(image: torch.Tensor) -> torch.Tensor:
    """``uint8`` to float32 in [0, 1] exactly as ``read_image`` does; the kernel on a plain tensor, no tv_tensor dispatch."""
    return to_dtype_image(image.as_subclass(torch.Tensor), torch.float32, scale=True)
