"""The one rule that turns a part's numbers into a decision, and its map into the place of the defect.

Both thresholds are in the model's raw units: the image threshold compares with ``score`` (the max of
the raw map, EfficientAd's image score), the pixel threshold with each pixel of the raw map.

- A part is ``defect`` when its score is at or above the image threshold, ``uncertain`` when a band
  is set and its score lies in it (at or above ``uncertain_below``, below the image threshold), and
  ``ok`` otherwise.
- Its mask is the raw map at or above the pixel threshold, at the map's size; the defect area and
  regions are the mask's, for every part.
- The pixel threshold is never above the image threshold (a higher one is lowered to it), so the
  pixel at a defect's score is always in its mask: no part is ``defect`` with an empty mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OK, DEFECT, UNCERTAIN = "ok", "defect", "uncertain"
DECISIONS = (OK, UNCERTAIN, DEFECT)


@dataclass(frozen=True)
class Thresholds:
    """The thresholds in force for a run, and where each came from (``checkpoint``, a calibration
    file, a flag): the summary and the report say it.

    Example:
        >>> rule = Thresholds(image=0.5, pixel=0.7, image_source="--threshold", pixel_source="checkpoint")
        >>> rule.pixel, rule.pixel_source, [rule.decide(score) for score in (0.2, 0.5, math.nan)]
        (0.5, 'checkpoint, lowered to the image threshold', ['ok', 'defect', ''])
        >>> Thresholds(image=0.5, pixel=0.4, uncertain_below=0.3).decide(0.35)
        'uncertain'
    """

    image: float | None = None
    pixel: float | None = None
    uncertain_below: float | None = None
    image_source: str = ""
    pixel_source: str = ""

    def __post_init__(self) -> None:
        for name in ("image", "pixel", "uncertain_below"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                msg = f"{name} threshold {value!r}: must be a finite number in the model's raw units"
                raise ValueError(msg)
        if self.image is not None and self.pixel is not None and self.pixel > self.image:
            object.__setattr__(self, "pixel", self.image)  # the rule above: a defect's peak is in its mask
            object.__setattr__(self, "pixel_source", f"{self.pixel_source}, lowered to the image threshold".lstrip(", "))
        if self.uncertain_below is not None and (self.image is None or self.uncertain_below >= self.image):
            msg = (f"uncertain_below {self.uncertain_below:g} must lie below the image threshold "
                   f"({'none' if self.image is None else format(self.image, 'g')})")
            raise ValueError(msg)

    @property
    def decides(self) -> bool:
        return self.image is not None

    def decide(self, score: float) -> str:
        """``ok``, ``uncertain`` or ``defect`` for an image score; ``""`` without an image threshold or a score."""
        if self.image is None or score is None or math.isnan(score):
            return ""
        if score >= self.image:
            return DEFECT
        if self.uncertain_below is not None and score >= self.uncertain_below:
            return UNCERTAIN
        return OK

    def settings(self) -> dict:
        """What resume compares: the numbers, not where they came from."""
        return {"image": self.image, "pixel": self.pixel, "uncertain_below": self.uncertain_below}

    def record(self) -> dict:
        """The thresholds with their sources, as a run's finished record keeps them."""
        return {**self.settings(), "image_source": self.image_source, "pixel_source": self.pixel_source}

    def parameters(self) -> dict[str, str]:
        """The thresholds in force, in words, for the summaries' head.

        Example:
            >>> Thresholds(image=0.32, pixel=0.28, image_source="calibration c.json", pixel_source="checkpoint").parameters()
            {'image threshold': '0.32 (calibration c.json)', 'pixel threshold': '0.28 (checkpoint)'}
        """
        if not self.decides:
            return {"image threshold": "none: no part is decided (the model has none; give a calibration or a threshold)"}
        found = {"image threshold": f"{self.image:.6g} ({self.image_source})"}
        if self.uncertain_below is not None:
            found["uncertain from"] = f"{self.uncertain_below:.6g} ({self.image_source})"
        found["pixel threshold"] = f"{self.pixel:.6g} ({self.pixel_source})" if self.pixel is not None else "none: no masks"
        return found


def mask_regions(mask: np.ndarray) -> tuple[int, int]:
    """The mask's area in pixels and its number of regions (8-connected: pixels touching at a corner
    are one region).

    Example:
        >>> mask_regions(np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=bool))
        (4, 3)
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    area = int(np.count_nonzero(mask))
    if not area:
        return 0, 0
    _, regions = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return area, int(regions)
