"""The one rule linking a part's score, its decision and its mask."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anomalib_folder_ext.decision.rule import Thresholds, mask_regions


def test_decisions_at_and_around_the_thresholds():
    rule = Thresholds(image=0.5, pixel=0.3, uncertain_below=0.4, image_source="flag", pixel_source="flag")
    assert [rule.decide(score) for score in (0.39999, 0.4, 0.49999, 0.5, 7.0)] == ["ok", "uncertain", "uncertain",
                                                                                      "defect", "defect"]
    assert Thresholds().decide(0.9) == "" and not Thresholds().decides
    assert rule.settings() == {"image": 0.5, "pixel": 0.3, "uncertain_below": 0.4}


def test_a_defects_peak_is_always_in_its_mask():
    """A pixel threshold above the image threshold is lowered to it, and the summary says so."""
    rule = Thresholds(image=0.5, pixel=0.9, image_source="--threshold", pixel_source="checkpoint")
    raw = np.array([[0.1, 0.5], [0.2, 0.3]], dtype=np.float32)  # score 0.5: a defect
    assert rule.decide(float(raw.max())) == "defect" and mask_regions(raw >= rule.pixel) == (1, 1)
    assert rule.parameters()["pixel threshold"] == "0.5 (checkpoint, lowered to the image threshold)"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_threshold_that_is_not_finite_is_refused(bad):
    with pytest.raises(ValueError, match="must be a finite number"):
        Thresholds(image=bad)


def test_a_band_must_lie_below_the_image_threshold():
    with pytest.raises(ValueError, match="uncertain_below 0.6 must lie below the image threshold"):
        Thresholds(image=0.5, uncertain_below=0.6)


def test_regions_touching_at_a_corner_are_one():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours
    mask[4:6, 4:6] = True
    assert mask_regions(mask) == (6, 2)
    assert mask_regions(np.zeros((3, 3), dtype=bool)) == (0, 0)
