"""Thresholds from good parts: the fit, its honesty about n parts, and the figures with defects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anomalib_folder_ext.decision.fit import (NotEnoughParts, TopValues, auroc, fit_threshold, flagged_rate,
                                              fpr_upper_bound, parts_needed, pixel_threshold, separating_threshold)


@pytest.mark.parametrize("distribution", ["lognormal", "gamma", "uniform"])
def test_the_stated_bound_holds_on_held_out_good_parts_in_95_percent_of_samples(distribution):
    """Fit on 200 good parts, measure the rate on 200,000 more, 400 times: whatever the scores'
    distribution, the rate stays under the bound in about 95 % of samples and averages the expected rate."""
    rng = np.random.default_rng(7)
    draw = {"lognormal": lambda size: rng.lognormal(0.0, 0.5, size), "gamma": lambda size: rng.gamma(2.0, 1.0, size),
            "uniform": lambda size: rng.uniform(0.0, 1.0, size)}[distribution]
    held_out = np.sort(draw(200_000))
    within, rates = 0, []
    for _ in range(400):
        fit = fit_threshold(draw(200), target_fpr=0.02)
        rate = 1 - np.searchsorted(held_out, fit.threshold, side="left") / held_out.size
        rates.append(rate)
        within += rate <= fit.fpr_upper
    assert 0.92 <= within / 400 <= 0.98, within
    assert abs(np.mean(rates) - fit.expected_fpr) < 0.004, (np.mean(rates), fit.expected_fpr)
    assert fit.expected_fpr <= 0.02 and fit.smallest_fpr == 1 / 201


def test_a_threshold_passes_every_good_part_up_to_its_rank_and_flags_the_rest():
    good = np.array([0.30, 0.10, 0.376, 0.20, 0.25] * 20)  # 100 parts, ties among them
    fit = fit_threshold(good, 0.01)
    assert fit.passed == 100 and fit.above_on_good == 0  # 1/(n+1) = 0.0099: the largest passes
    assert 0.376 < fit.threshold < 0.376 + 1e-12 and flagged_rate(good, fit.threshold) == 0.0
    assert fit.fpr_upper == pytest.approx(1 - 0.05 ** (1 / 100))


def test_too_few_good_parts_say_how_many_it_would_take():
    with pytest.raises(NotEnoughParts) as refused:
        fit_threshold(np.arange(50.0), 0.01)
    assert refused.value.need == 99 == parts_needed(0.01) and refused.value.have == 50
    assert "50 good parts cannot show a false-positive rate of 0.01: it takes at least 99" in str(refused.value)
    with pytest.raises(NotEnoughParts):
        fit_threshold([], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        fit_threshold([1.0, 2.0], 0.0)
    assert fit_threshold([math.nan, *range(99)], 0.01).n == 99  # an unscored part is not a good part's score


def test_auroc_and_the_separating_threshold_with_defects():
    good, defect = [0.1, 0.2, 0.376], [0.767, 0.9, 0.3]
    assert auroc(good, defect) == pytest.approx(8 / 9)  # 0.3 beats two good parts of three
    threshold, recall, fpr = separating_threshold(good, defect)
    assert (recall - fpr) == pytest.approx(2 / 3) and fpr <= 1 / 3
    assert flagged_rate(defect, threshold) == recall and flagged_rate(good, threshold) == fpr
    assert math.isnan(auroc([], defect)) and math.isnan(separating_threshold(good, [])[0])


def test_the_pixel_threshold_flags_at_most_the_target_share_of_good_pixels():
    rng = np.random.default_rng(3)
    maps = [rng.gamma(2.0, 1.0, (64, 64)).astype(np.float32) for _ in range(30)]
    top = TopValues(keep=math.floor(0.001 * 30 * 64 * 64) + 1)
    for single in maps:
        top.add(single)
    threshold = pixel_threshold(top, 0.001)
    every = np.concatenate([single.ravel() for single in maps]).astype(np.float64)
    assert np.count_nonzero(every >= threshold) <= 0.001 * every.size
    assert np.count_nonzero(every >= np.sort(every)[::-1][122]) > 0.001 * every.size  # the lowest such threshold
    assert fpr_upper_bound(10, 0) == 1.0
