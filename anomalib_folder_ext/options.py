"""Checks of option values that both entry points make: ``anomalib-folder``'s parser before anything
loads, and the writer when ``anomalib predict`` builds it from a config."""

from __future__ import annotations

import math


def fixed_range_problem(normalization: str, vmin: float | None, vmax: float | None) -> str | None:
    """Why ``vmin`` / ``vmax`` cannot be used with ``normalization``; ``None`` when they can.

    Example:
        >>> fixed_range_problem("fixed", 0.0, float("inf"))
        'normalization fixed needs finite vmin < vmax (got vmin 0.0, vmax inf)'
        >>> fixed_range_problem("per_image", 0.0, 1.0)
        'vmin and vmax apply only to normalization fixed (this run: per_image); leave them out or set normalization fixed'
    """
    if normalization != "fixed":
        if vmin is None and vmax is None:
            return None
        return (f"vmin and vmax apply only to normalization fixed (this run: {normalization}); "
                "leave them out or set normalization fixed")
    if vmin is None or vmax is None or not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        return f"normalization fixed needs finite vmin < vmax (got vmin {vmin}, vmax {vmax})"
    return None


def overlay_problem(alpha: float, overlay_format: str) -> str | None:
    """Why the overlay options cannot be used; ``None`` when they can (NaN is not in [0, 1])."""
    if not 0.0 <= alpha <= 1.0 or overlay_format not in {"jpg", "png"}:
        return f"overlay_alpha must be in [0, 1] and overlay_format jpg or png (got {alpha}, {overlay_format!r})"
    return None
