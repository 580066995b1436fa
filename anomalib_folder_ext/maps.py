"""Batched map maths on the model's device: per-image min-max, the statistics, the PNG's 8-bit levels.

Pure torch functions on a whole batch of raw maps, so a GPU run never copies a raw map to the
host and loops over it there: the host receives only what is written (float32 maps for the NPY,
uint8 levels for the PNG) and a few numbers per image. On a CPU the same functions run on the CPU.

The per-image min-max map is what the old script wrote; its max is always 1, so it cannot rank
images. The raw statistics (``score`` = max of the raw map) are kept beside it for that.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

STAT_NAMES: tuple[str, ...] = ("score", "raw_min", "raw_mean", "norm_mean")


class MapBatch(NamedTuple):
    """What the writer needs of one batch; every tensor on the device of the raw maps."""

    normalized: torch.Tensor  # (B, H, W) float32 in [0, 1]
    levels: torch.Tensor | None  # (B, H, W) uint8 0-255, the colour table's index; None when not asked for
    stats: torch.Tensor  # (B, len(STAT_NAMES)) float64, the CSV's numbers


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


def process_maps(raw_maps: torch.Tensor, with_levels: bool = True) -> MapBatch:
    """Everything the writer needs of a batch of raw maps, computed where the maps are.

    ``stats`` holds, per map, the raw max (``score``), raw min, raw mean and the mean of the
    normalised map. Means are float32 sums (pairwise on a CPU, tree-reduced on a GPU: about 1e-7
    relative, far below the 6 significant digits the CSV keeps).
    """
    maps = as_map_stack(raw_maps)
    low, high = _extremes(maps)
    normalized = _scaled(maps, low, high)
    stats = torch.stack([high, low, maps.flatten(-2).mean(dim=-1), normalized.flatten(-2).mean(dim=-1)], dim=1)
    return MapBatch(
        normalized=normalized,
        levels=quantize(normalized) if with_levels else None,
        stats=stats.to(torch.float64),
    )
