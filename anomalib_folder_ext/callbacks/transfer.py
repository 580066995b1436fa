"""Device results to the host without making the predict loop wait.

On a GPU, a ``.cpu()`` in a callback blocks the main thread until the batch's forward has
finished, so the next batch is neither fetched nor launched meanwhile. :class:`HostCopy` instead
packs a batch's results into one byte buffer on the device, starts one non-blocking copy into
pinned host memory, and records a CUDA event; the writer threads wait on that event, the loop
goes on. On a CPU the results already are in host memory: nothing is copied and waiting is free.

Pinned buffers come from PyTorch's caching host allocator, which reuses a block once the copies
that used it are complete; the writer bounds how many batches are in flight, which bounds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch


class Field(NamedTuple):
    """Where one tensor sits in a packed byte buffer."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def _align(offset: int, alignment: int = 8) -> int:
    return (offset + alignment - 1) // alignment * alignment


def pack(tensors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, list[Field]]:
    """One contiguous uint8 buffer holding every tensor's bytes (8-byte aligned), and its layout.

    Example:
        >>> flat, layout = pack({"a": torch.arange(3, dtype=torch.float32), "b": torch.tensor([True, False])})
        >>> [(f.name, f.offset, f.nbytes) for f in layout], flat.numel()
        ([('a', 0, 12), ('b', 16, 2)], 18)
    """
    layout, offset = [], 0
    for name, tensor in tensors.items():
        offset = _align(offset)
        layout.append(Field(name, tensor.dtype, tuple(tensor.shape), offset, tensor.numel() * tensor.element_size()))
        offset += layout[-1].nbytes
    device = next(iter(tensors.values())).device if tensors else torch.device("cpu")
    flat = torch.empty(offset, dtype=torch.uint8, device=device)
    for field, tensor in zip(layout, tensors.values(), strict=True):
        flat[field.offset : field.offset + field.nbytes].copy_(tensor.detach().contiguous().reshape(-1).view(torch.uint8))
    return flat, layout


def unpack(flat: torch.Tensor, layout: list[Field]) -> dict[str, torch.Tensor]:
    """The tensors :func:`pack` stored in ``flat``, as views (no copy)."""
    return {
        field.name: flat[field.offset : field.offset + field.nbytes].view(field.dtype).reshape(field.shape)
        for field in layout
    }


class HostCopy:
    """A batch's result tensors on their way to host memory; :meth:`wait` returns them there.

    Create it on the thread that owns the device stream (the predict loop): it only enqueues work.
    Call :meth:`wait` from any thread; it blocks until the copy has landed (never on a CPU).

    Example:
        >>> copy = HostCopy({"maps": torch.zeros(2, 4, 4)})
        >>> copy.wait()["maps"].shape
        torch.Size([2, 4, 4])
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._event = None
        devices = {tensor.device for tensor in tensors.values()}
        if devices <= {torch.device("cpu")}:
            self._tensors = {name: tensor.detach() for name, tensor in tensors.items()}
            return
        flat, layout = pack(tensors)
        cuda = flat.device.type == "cuda"
        host = torch.empty(flat.numel(), dtype=torch.uint8, pin_memory=cuda)
        host.copy_(flat, non_blocking=cuda)  # other accelerators: a plain (blocking) copy
        if cuda:
            self._event = torch.cuda.Event()
            self._event.record()
        self._tensors = unpack(host, layout)

    def wait(self) -> dict[str, torch.Tensor]:
        if self._event is not None:
            self._event.synchronize()  # releases the GIL while it waits
        return self._tensors
