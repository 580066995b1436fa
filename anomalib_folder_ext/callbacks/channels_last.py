"""``ChannelsLast``: prediction in the NHWC memory layout, the fast one for convolutions."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class ChannelsLast(Callback):
    """Run prediction in the channels-last (NHWC) memory layout.

    Convolutions in NHWC take the fast oneDNN kernels on CPUs (and the bf16 matrix units where
    the CPU has them) and the tensor cores on GPUs; EfficientAd is all convolutions. The maps are
    the same up to float rounding (fp32: within 1e-5 of NCHW). Precision stays the trainer's
    (``trainer.precision``); this only changes the layout of the weights and of the network's input.

    The input is converted by a forward pre-hook on the network, so it happens after anomalib's
    pre-processor (which may resize on the device). Batches from
    :class:`~anomalib_folder_ext.data.FolderDataModule` of one image size arrive in NHWC
    already (no conversion at all).

    Example (config)::

        trainer:
          callbacks:
            - class_path: anomalib_folder_ext.callbacks.ChannelsLast
    """

    def __init__(self) -> None:
        super().__init__()
        self._hook = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.to(memory_format=torch.channels_last)
        network = getattr(pl_module, "model", pl_module)
        self._hook = network.register_forward_pre_hook(_channels_last_input)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _channels_last_input(module: torch.nn.Module, args: tuple) -> tuple | None:
    del module
    if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None
