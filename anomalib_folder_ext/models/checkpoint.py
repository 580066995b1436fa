"""Read what an EfficientAd Lightning checkpoint says about itself, without building the model.

anomalib's CLI builds the model from the config first and loads weights afterwards, so the
architecture settings in the config must match the checkpoint; this module recovers them so
``anomalib-folder`` can fill them in, and rejects a wrong file before anything heavy starts.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
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


def _load(data: bytes) -> dict:
    """``torch.load`` with ``weights_only``: a checkpoint is data, and loading it runs no code."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "EfficientAdModelSize" not in str(exc):
            raise
    # Some anomalib versions pickle the model-size enum; allow exactly that class.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anomalib.models warns about unrelated models on import
        from anomalib.models.image.efficient_ad.torch_model import EfficientAdModelSize
    with torch.serialization.safe_globals([EfficientAdModelSize]):
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class LoadedCheckpoint:
    """One read of a checkpoint file: what it says about itself, its content and the digest of those bytes.

    What is checked is what is used: the file is read once, so a file swapped in between is never
    loaded unchecked (nor with ``weights_only=False``).
    """

    settings: EfficientAdCheckpoint
    content: dict
    data: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        """SHA-256 of the bytes read (hashed when asked: checking a checkpoint does not need it)."""
        return hashlib.sha256(self.data).hexdigest()


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
    return load_checkpoint(path).settings


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Read ``path`` once and check it is an EfficientAd checkpoint (one line naming the file if not)."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        msg = f"checkpoint {path}: no such file"
        raise CheckpointError(msg) from None
    except IsADirectoryError:
        msg = f"checkpoint {path}: not a file"
        raise CheckpointError(msg) from None
    except PermissionError:
        msg = f"checkpoint {path}: permission denied"
        raise CheckpointError(msg) from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        msg = f"checkpoint {path}: not a PyTorch checkpoint file (expected a .ckpt saved by Lightning)"
        raise CheckpointError(msg)
    try:
        content = _load(data)
    except pickle.UnpicklingError as exc:  # torch's text goes on to say how to load it anyway: not our advice
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        msg = (f"checkpoint {path}: holds Python objects besides weights{what}, which loading would run; "
               "a checkpoint is only read as data: use one saved by anomalib's training")
        raise CheckpointError(msg) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
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
    settings = EfficientAdCheckpoint(
        path=path,
        model_size=str(getattr(model_size, "value", model_size)),
        teacher_out_channels=int(hparams.get("teacher_out_channels", 384)),
        padding=bool(hparams.get("padding", False)),
        pad_maps=bool(hparams.get("pad_maps", True)),
        image_size=_resize_size(content.get("anomalib_pre_processor_config")),
    )
    return LoadedCheckpoint(settings, content, data)


def by_network(keys: list[str]) -> str:
    """Weight names counted by the network they belong to.

    Example:
        >>> by_network(["model.ae.a", "model.ae.b", "model.student.c"])
        'model.ae (2 tensors), model.student (1 tensor)'
    """
    counts: dict[str, int] = {}
    for key in keys:
        network = ".".join(key.split(".")[:2])
        counts[network] = counts.get(network, 0) + 1
    return ", ".join(f"{network} ({count} tensor{'s' if count > 1 else ''})" for network, count in counts.items())


def weights_mismatch(expected: dict, found: dict) -> str | None:
    """What keeps the weights ``found`` from filling a model whose ``state_dict()`` is ``expected``,
    by sub-network (``None``: every weight fits).

    A checkpoint missing a whole network (the autoencoder, the student) must never be filled with
    random weights: a model that loads only partly is refused, as Lightning refuses it for predict.

    Example:
        >>> import torch
        >>> expected = {"model.ae.w": torch.zeros(2), "model.ae.b": torch.zeros(2), "model.student.w": torch.zeros(3)}
        >>> weights_mismatch(expected, {"model.student.w": torch.zeros(4), "extra.x": torch.zeros(1)})
        'weights missing for model.ae (2 tensors); of another shape: model.student (1 tensor); of no EfficientAd part: extra.x (1 tensor)'
        >>> weights_mismatch(expected, dict(expected)) is None
        True
    """

    missing = [key for key in expected if key not in found]
    reshaped = [key for key in expected if key in found and tuple(found[key].shape) != tuple(expected[key].shape)]
    unexpected = [key for key in found if key not in expected]
    problems = [f"{what}{by_network(keys)}" for what, keys in (("weights missing for ", missing),
                ("of another shape: ", reshaped), ("of no EfficientAd part: ", unexpected)) if keys]
    return "; ".join(problems) or None


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

