"""Read what an EfficientAd Lightning checkpoint says about itself, without building the model.

anomalib's CLI builds the model from the config first and loads weights afterwards, so the
architecture settings in the config must match the checkpoint; this module recovers them so
``anomalib-folder`` can fill them in, and rejects a wrong file before anything heavy starts.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from anomalib_folder_ext.errors import InputError


class CheckpointError(InputError):
    """The checkpoint cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class EfficientAdCheckpoint:
    """Architecture and input size an EfficientAd checkpoint was trained with."""

    path: Path
    model_size: str = "small"
    teacher_out_channels: int = 384
    padding: bool = False
    pad_maps: bool = True
    image_size: tuple[int, int] | None = None


def _load(path: Path) -> dict:
    """``torch.load`` with ``weights_only``: a checkpoint is data, and loading it runs no code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "EfficientAdModelSize" not in str(exc):
            raise
    # Some anomalib versions pickle the model-size enum; allow exactly that class.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anomalib.models warns about unrelated models on import
        from anomalib.models.image.efficient_ad.torch_model import EfficientAdModelSize
    with torch.serialization.safe_globals([EfficientAdModelSize]):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | Path) -> EfficientAdCheckpoint:
    """Check ``path`` is a readable EfficientAd checkpoint and return its settings.

    Read once per process and file version: the CLI checks it before anomalib loads, the writer
    again in ``setup`` (for ``anomalib predict``), and a multi-folder run for every folder.
    """
    path = Path(path).expanduser()
    if not path.exists():
        msg = f"checkpoint {path}: no such file"
        raise CheckpointError(msg)
    if not path.is_file():
        msg = f"checkpoint {path}: not a file"
        raise CheckpointError(msg)
    stat = path.stat()
    return _read_checkpoint(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _read_checkpoint(path: Path, mtime_ns: int, size: int) -> EfficientAdCheckpoint:
    del mtime_ns, size  # part of the cache key only
    if not zipfile.is_zipfile(path):
        msg = f"checkpoint {path}: not a PyTorch checkpoint file (expected a .ckpt saved by Lightning)"
        raise CheckpointError(msg)
    try:
        content = _load(path)
    except PermissionError:
        msg = f"checkpoint {path}: permission denied"
        raise CheckpointError(msg) from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"checkpoint {path}: not a readable PyTorch Lightning checkpoint ({reason[:200]})"
        raise CheckpointError(msg) from None
    if not isinstance(content, dict) or "state_dict" not in content:
        msg = f"checkpoint {path}: not a PyTorch Lightning checkpoint (no state_dict)"
        raise CheckpointError(msg)

    keys = content["state_dict"].keys()
    if not any(key.startswith("model.teacher.") for key in keys) or not any(key.startswith("model.ae.") for key in keys):
        model = content.get("hyper_parameters", {}).get("class_path") or content.get("hparams_name") or "unknown model"
        msg = f"checkpoint {path}: not an EfficientAd checkpoint (no teacher/autoencoder weights; found {model})"
        raise CheckpointError(msg)

    hparams = content.get("hyper_parameters") or {}
    model_size = hparams.get("model_size", "small")
    return EfficientAdCheckpoint(
        path=path,
        model_size=str(getattr(model_size, "value", model_size)),
        teacher_out_channels=int(hparams.get("teacher_out_channels", 384)),
        padding=bool(hparams.get("padding", False)),
        pad_maps=bool(hparams.get("pad_maps", True)),
        image_size=_resize_size(content.get("anomalib_pre_processor_config")),
    )


def content_digest(path: str | Path) -> str:
    """SHA-256 of the checkpoint's bytes: what resume compares, so weights replaced at the same path are
    noticed. Computed once per process and file version (size and modification time), about 0.1 s per 100 MB.
    An OpenVINO IR counts by both its files, the graph (``.xml``) and its weights (``.bin``)."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    digest = _content_digest(path, stat.st_mtime_ns, stat.st_size)
    weights = path.with_suffix(".bin")
    if path.suffix == ".xml" and weights.is_file():
        return hashlib.sha256(f"{digest} {content_digest(weights)}".encode()).hexdigest()
    return digest


@lru_cache(maxsize=8)
def _content_digest(path: Path, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # part of the cache key only
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resize_size(pre_processor_config: dict | None) -> tuple[int, int] | None:
    """The Resize size in anomalib's serialised pre-processor transform, if there is one."""
    stack = [((pre_processor_config or {}).get("transform"))]
    while stack:
        spec = stack.pop()
        if isinstance(spec, dict):
            if str(spec.get("class_path", "")).endswith(".Resize"):
                size = spec.get("init_args", {}).get("size")
                if isinstance(size, int):
                    return (size, size)
                if isinstance(size, list | tuple) and size:
                    return (int(size[0]), int(size[-1]))
            stack.extend(spec.values())
        elif isinstance(spec, list | tuple):
            stack.extend(spec)
    return None

