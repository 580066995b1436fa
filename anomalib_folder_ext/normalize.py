"""Pure functions that turn one raw anomaly map into the numbers users keep.

The per-image min-max map is what the old script wrote; its max is always 1, so it cannot rank
images. The raw statistics (``score`` = max of the raw map) are kept beside it for that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def minmax_normalize(anomaly_map: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] with its own min and max; a constant map becomes all zeros.

    Computed in float32 whatever the input dtype (bf16 / fp16 maps are widened first).

    Example:
        >>> minmax_normalize(np.array([[2.0, 4.0], [6.0, 10.0]]))
        array([[0.  , 0.25],
               [0.5 , 1.  ]], dtype=float32)
        >>> minmax_normalize(np.full((2, 2), 3.0)).max()
        np.float32(0.0)
    """
    values = np.asarray(anomaly_map, dtype=np.float32)
    low = values.min()
    value_range = values.max() - low
    if not np.isfinite(value_range) or value_range <= 0:
        return np.zeros_like(values)
    return (values - low) / value_range


@dataclass(frozen=True)
class MapStats:
    """Statistics of one map that survive normalisation: ``score`` compares across images."""

    score: float
    raw_min: float
    raw_mean: float
    norm_mean: float


def map_stats(raw_map: np.ndarray, normalized_map: np.ndarray) -> MapStats:
    """Raw max/min/mean of a map plus the mean of its normalised version."""
    raw = np.asarray(raw_map, dtype=np.float32)
    return MapStats(
        score=float(raw.max()),
        raw_min=float(raw.min()),
        raw_mean=float(raw.mean(dtype=np.float64)),
        norm_mean=float(np.asarray(normalized_map).mean(dtype=np.float64)),
    )
