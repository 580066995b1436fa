"""The host side of the data path: uint8 decoding, collation by size, conversion after the transfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anomalib_folder_ext.data.datamodule import FolderDataModule, FolderImageDataset
from conftest import write_images


def dataset_of(folder: Path, names: list[str]) -> FolderImageDataset:
    return FolderImageDataset(folder, [Path(name) for name in names], (256, 256))


def test_one_size_batches_stay_uint8_in_channels_last_memory(tmp_path):
    write_images(tmp_path, {"a.png": ((320, 240), "PNG"), "b.bmp": ((320, 240), "BMP")})
    dataset = dataset_of(tmp_path, ["a.png", "b.bmp"])
    batch = dataset.collate([dataset[0], dataset[1]])
    assert batch.image.dtype == torch.uint8 and batch.image.shape == (2, 3, 240, 320)
    assert batch.image.is_contiguous(memory_format=torch.channels_last)  # (B, H, W, 3) in memory
    for index, name in enumerate(["a.png", "b.bmp"]):
        pixels = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        np.testing.assert_array_equal(batch.image[index].permute(1, 2, 0).numpy(), pixels)
    assert batch.original_size == [(240, 320), (240, 320)] and batch.error == ["", ""]
    assert batch.relative_path == ["a.png", "b.bmp"]


def test_after_the_transfer_the_batch_is_anomalib_float_image(tmp_path):
    from anomalib.data.utils import read_image

    write_images(tmp_path, {"a.png": ((64, 48), "PNG"), "b.jpg": ((64, 48), "JPEG")})
    dataset = dataset_of(tmp_path, ["a.png", "b.jpg"])
    batch = FolderDataModule(tmp_path).on_after_batch_transfer(dataset.collate([dataset[0], dataset[1]]), 0)
    assert batch.image.dtype == torch.float32
    for index, name in enumerate(["a.png", "b.jpg"]):
        torch.testing.assert_close(batch.image[index], read_image(tmp_path / name, as_tensor=True), rtol=0, atol=0)


def test_mixed_size_batches_are_resized_in_the_worker_as_the_pre_processor_would(tmp_path):
    from anomalib.data.utils import read_image
    from torchvision.transforms.v2 import Resize

    write_images(tmp_path, {"a.png": ((300, 200), "PNG"), "b.png": ((256, 256), "PNG")})
    dataset = dataset_of(tmp_path, ["a.png", "b.png"])
    batch = dataset.collate([dataset[0], dataset[1]])
    assert batch.image.dtype == torch.float32 and batch.image.shape == (2, 3, 256, 256)
    resize = Resize((256, 256), antialias=True)
    for index, name in enumerate(["a.png", "b.png"]):
        torch.testing.assert_close(batch.image[index], resize(read_image(tmp_path / name, as_tensor=True)),
                                   rtol=0, atol=0)
    assert batch.original_size == [(200, 300), (256, 256)]
    assert FolderDataModule(tmp_path).on_after_batch_transfer(batch, 0).image is batch.image  # already float


def test_a_broken_file_travels_beside_the_batch_with_its_error_and_never_in_the_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    write_images(tmp_path, {"a.png": ((320, 240), "PNG")})
    dataset = dataset_of(tmp_path, ["broken.png", "a.png"])
    item = dataset[0]
    assert item.image.numel() == 0 and item.original_size == (0, 0) and item.error.startswith("UnidentifiedImageError")

    batch = dataset.collate([dataset[0], dataset[1]])
    assert batch.image.shape == (1, 3, 240, 320) and batch.relative_path == ["a.png"] and batch.error == [""]
    assert [(failed.relative_path, failed.error) for failed in batch.failed] == [("broken.png", item.error)]
    assert [it.relative_path for it in batch] == ["a.png"]  # anomalib's item view: the decoded images

    nothing = dataset.collate([dataset[0]])
    assert nothing.image.shape == (0, 3, 256, 256) and nothing.image.dtype == torch.uint8 and len(nothing.failed) == 1


def test_metadata_stays_on_the_host():
    """Lightning moves tensors to the device; sizes and names are lists, so reading them never syncs."""
    from anomalib_folder_ext.data.batch import FolderImageBatch

    batch = FolderImageBatch(image=torch.zeros(1, 3, 4, 4, dtype=torch.uint8), original_size=[(4, 4)],
                             relative_path=["a.png"], error=[""])
    assert not any(isinstance(value, torch.Tensor) for value in (batch.original_size, batch.relative_path))
    assert hasattr(batch, "pin_memory")  # the DataLoader's pinning thread calls it on a GPU run


def test_the_loaders_pinning_thread_pins_the_image(monkeypatch):
    """torch's pin_memory() helper finds the batch's own pin_memory (CUDA runs only; faked here)."""
    from torch.utils.data._utils.pin_memory import pin_memory

    from anomalib_folder_ext.data.batch import FolderImageBatch

    pinned = []

    def fake_pin(tensor, *args, **kwargs):  # the real one needs a CUDA driver
        pinned.append(tensor)
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    image = torch.zeros(2, 4, 4, 3, dtype=torch.uint8).permute(0, 3, 1, 2)
    batch = FolderImageBatch(image=image, relative_path=["a", "b"], original_size=[(4, 4)] * 2, error=["", ""])
    result = pin_memory(batch)
    assert result is batch and len(pinned) == 1 and pinned[0].data_ptr() == image.data_ptr()
    assert batch.image.dtype == torch.uint8 and batch.image.data_ptr() != image.data_ptr()
