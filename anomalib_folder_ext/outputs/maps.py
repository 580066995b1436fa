"""Batched map maths on the model's device: normalisation, resizing, the statistics, the PNG's 8-bit levels.

Pure torch functions on a whole batch of raw maps, so a GPU run never copies a raw map to the
host and loops over it there: the host receives only what is written (float32 maps for the NPY,
uint8 levels for the PNG) and a few numbers per image. On a CPU the same functions run on the CPU.

The per-image min-max map is what the old script wrote; its max is always 1, so it cannot rank
images. The raw statistics (``score`` = max of the raw map) are kept beside it for that, and
:func:`fixed_range` (or anomalib's own pixel normalisation, passed in by the writer) scales every
map alike, so maps compare across images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

STAT_NAMES: tuple[str, ...] = ("score", "raw_min", "raw_mean", "norm_mean")


Normalizer = Callable[[torch.Tensor], torch.Tensor]  # (B, H, W) raw -> (B, H, W) in [0, 1]


class MapBatch(NamedTuple):
    """What the writer needs of one batch; every tensor on the device of the raw maps.

    ``normalized`` and ``levels`` are (B, H, W) stacks at the model's size, or lists of (H_i, W_i)
    maps when resized to each image's own size.
    """

    normalized: torch.Tensor | list[torch.Tensor]  # float32 in [0, 1]
    levels: torch.Tensor | list[torch.Tensor] | None  # uint8 0-255, the colour table's index; None when not asked for
    stats: torch.Tensor  # (B, len(STAT_NAMES)) float64, the CSV's numbers
    masks: torch.Tensor | list[torch.Tensor] | None = None  # bool: raw map at or above the pixel threshold

    def host_tensors(self) -> dict[str, torch.Tensor]:
        """The maps under flat names for :class:`~anomalib_folder_ext.callbacks.transfer.HostCopy`; see :func:`image_map`."""
        tensors: dict[str, torch.Tensor] = {}
        for name, maps in (("normalized", self.normalized), ("levels", self.levels), ("masks", self.masks)):
            if isinstance(maps, torch.Tensor):
                tensors[name] = maps
            elif maps is not None:
                tensors |= {f"{name}.{index}": single for index, single in enumerate(maps)}
        return tensors


def image_map(tensors: dict[str, torch.Tensor], name: str, index: int) -> torch.Tensor:
    """Image ``index``'s map ``name`` from :meth:`MapBatch.host_tensors` (stacked or one per image)."""
    return tensors[name][index] if name in tensors else tensors[f"{name}.{index}"]


def fixed_range(vmin: float, vmax: float) -> Normalizer:
    """The same scale for every map: ``(v - vmin) / (vmax - vmin)``, clipped to [0, 1].

    Example:
        >>> fixed_range(1.0, 3.0)(torch.tensor([[[0.0, 2.0, 5.0]]]))
        tensor([[[0.0000, 0.5000, 1.0000]]])
    """
    if not vmax > vmin:
        msg = f"vmax ({vmax}) must be greater than vmin ({vmin})"
        raise ValueError(msg)
    return lambda maps: ((maps - vmin) / (vmax - vmin)).clamp_(0.0, 1.0)


def resize_each(maps: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Map ``i`` of a (B, H, W) stack resized bilinearly to ``sizes[i]`` (H, W); one call per distinct size.

    A size of (0, 0) (an image that could not be read) keeps the model's size.

    Example:
        >>> [tuple(m.shape) for m in resize_each(torch.zeros(3, 4, 4), [(2, 3), (8, 8), (2, 3)])]
        [(2, 3), (8, 8), (2, 3)]
    """
    resized: list[torch.Tensor | None] = [None] * len(sizes)
    for size in dict.fromkeys(tuple(size) for size in sizes):
        indices = [index for index, wanted in enumerate(sizes) if tuple(wanted) == size]
        group = maps[indices]
        if size != (0, 0) and size != tuple(maps.shape[-2:]):
            group = F.interpolate(group[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        for position, index in enumerate(indices):
            resized[index] = group[position]
    return resized


def as_map_stack(raw_maps: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W), (B, H, W) or (H, W) maps as a float32 (B, H, W) stack."""
    maps = raw_maps.detach()
    if maps.ndim == 4:
        maps = maps.squeeze(1)
    elif maps.ndim == 2:
        maps = maps.unsqueeze(0)
    return maps.to(torch.float32)


def minmax_normalize(raw_maps: torch.Tensor) -> torch.Tensor:
    """Scale each map to [0, 1] with its own min and max; a constant map becomes all zeros.

    Computed in float32 whatever the input dtype (bf16 / fp16 maps are widened first).

    Example:
        >>> minmax_normalize(torch.tensor([[[2.0, 4.0], [6.0, 10.0]]]))
        tensor([[[0.0000, 0.2500],
                 [0.5000, 1.0000]]])
        >>> minmax_normalize(torch.full((1, 2, 2), 3.0)).max()
        tensor(0.)
    """
    maps = as_map_stack(raw_maps)
    return _scaled(maps, *_extremes(maps))


def _extremes(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-map min and max, shape (B,). Two reductions: on CPUs far faster than ``torch.aminmax``."""
    flat = maps.flatten(-2)
    return flat.amin(dim=-1), flat.amax(dim=-1)


def _scaled(maps: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    low, value_range = low[:, None, None], (high - low)[:, None, None]
    usable = torch.isfinite(value_range) & (value_range > 0)
    normalized = (maps - low).div_(torch.where(usable, value_range, torch.ones_like(value_range)))
    return normalized.masked_fill_(~usable, 0.0)


def quantize(normalized_maps: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] as uint8 0-255 (rounded, out-of-range clipped): the colour table's index.

    Example:
        >>> quantize(torch.tensor([0.0, 0.5, 1.0, 2.0]))
        tensor([  0, 128, 255, 255], dtype=torch.uint8)
    """
    return (normalized_maps * 255.0).add_(0.5).clamp_(0, 255).to(torch.uint8)


def float32_cut(threshold: float) -> float:
    """The float32 value ``t`` with ``v >= t`` exactly when ``v >= threshold`` for every float32 ``v``: a raw
    map compared in its own precision decides as its float64 score does (the rows' rule).

    Example:
        >>> cut = float32_cut(0.1)  # 0.1 lies between two float32 values: the upper one
        >>> torch.tensor([cut], dtype=torch.float32).item() >= 0.1, float32_cut(0.5)
        (True, 0.5)
    """
    cut = np.float32(threshold)
    if float(cut) < threshold:
        cut = np.nextafter(cut, np.float32(np.inf))
    return float(cut)


def process_maps(
    raw_maps: torch.Tensor,
    with_levels: bool = True,
    normalize: Normalizer | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    pixel_threshold: float | None = None,
) -> MapBatch:
    """Everything the writer needs of a batch of raw maps, computed where the maps are.

    ``normalize`` maps raw values to [0, 1] (``None``: each map's own min-max); ``sizes`` resizes
    each normalised map to its image's (H, W) (``None``: the model's size). ``stats`` holds, per
    map, the raw max (``score``), raw min and raw mean, always of the model-size raw map, and the
    mean of the map as written. Means are float32 sums (pairwise on a CPU, tree-reduced on a GPU:
    about 1e-7 relative, far below the 6 significant digits the CSV keeps). ``pixel_threshold``: the
    masks, the raw map at or above it at the written size (resized bilinearly, as the written map is).
    """
    maps = as_map_stack(raw_maps)
    low, high = _extremes(maps)
    normalized = _scaled(maps, low, high) if normalize is None else normalize(maps).to(torch.float32)
    raw_mean = maps.flatten(-2).mean(dim=-1)
    if sizes is None:
        norm_mean = normalized.flatten(-2).mean(dim=-1)
        levels = quantize(normalized) if with_levels else None
    else:
        normalized = resize_each(normalized, sizes)
        norm_mean = torch.stack([single.mean() for single in normalized])
        levels = [quantize(single) for single in normalized] if with_levels else None
    masks = None
    if pixel_threshold is not None:
        cut = float32_cut(pixel_threshold)
        masks = maps >= cut if sizes is None else [single >= cut for single in resize_each(maps, sizes)]
    stats = torch.stack([high, low, raw_mean, norm_mean], dim=1)
    return MapBatch(normalized=normalized, levels=levels, stats=stats.to(torch.float64), masks=masks)
