"""Thresholds fitted on known-good parts, and what a sample of n parts can honestly say about them.

Pure numpy on lists of scores: no model, no files. A part is decided ``defect`` when its score is at
or above the threshold (:mod:`~anomalib_folder_ext.decision.rule`), so a threshold set just above the
r-th smallest of n good scores passes those r parts. For a new good part drawn like them, the chance
of a score above the r-th smallest of n is (n - r + 1) / (n + 1) whatever the scores' distribution,
and the part of all good parts above it (the false-positive rate, FPR) follows Beta(n - r + 1, r): its
upper quantile is the bound stated beside the threshold (Clopper-Pearson's, for a threshold taken
from the sample itself).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # of the stated upper bounds on the false-positive rate


class NotEnoughParts(ValueError):
    """Fewer good parts than a target false-positive rate can be shown with."""

    def __init__(self, have: int, need: int, target_fpr: float) -> None:
        self.have, self.need, self.target_fpr = have, need, target_fpr
        super().__init__(f"{have} good parts cannot show a false-positive rate of {target_fpr:g}: it takes at least "
                         f"{need} (the smallest rate n parts can resolve is 1/(n+1))")


def parts_needed(target_fpr: float) -> int:
    """How many good parts resolve ``target_fpr``: n with 1/(n+1) <= target_fpr.

    Example:
        >>> parts_needed(0.01), parts_needed(0.05), parts_needed(0.5)
        (99, 19, 1)
    """
    return max(1, math.ceil(1 / target_fpr - 1 - 1e-9))


def just_above(value: float) -> float:
    """The next float above ``value``: the threshold that passes a part scoring exactly ``value``."""
    return float(np.nextafter(np.float64(value), np.inf))


@dataclass(frozen=True)
class ThresholdFit:
    """A threshold set on n good scores, with what the sample says about its false-positive rate."""

    threshold: float
    n: int
    passed: int  # r: the good parts at or below the r-th smallest score, all passed
    target_fpr: float

    @property
    def above_on_good(self) -> int:
        """The good parts of the sample the threshold flags (scores tied at the r-th smallest pass)."""
        return self.n - self.passed

    @property
    def expected_fpr(self) -> float:
        """The chance that a new good part is flagged: (n - r + 1) / (n + 1)."""
        return (self.n - self.passed + 1) / (self.n + 1)

    @property
    def fpr_upper(self) -> float:
        """The false-positive rate stays below this with :data:`CONFIDENCE`."""
        return fpr_upper_bound(self.n, self.passed)

    @property
    def smallest_fpr(self) -> float:
        """The smallest false-positive rate n good parts can resolve: 1/(n+1)."""
        return 1 / (self.n + 1)


def fpr_upper_bound(n: int, passed: int, confidence: float = CONFIDENCE) -> float:
    """The upper ``confidence`` bound of the FPR of a threshold just above the ``passed``-th smallest of
    ``n`` good scores: the quantile of Beta(n - passed + 1, passed).

    Example:
        >>> round(fpr_upper_bound(100, 100), 4)  # the largest of 100: 1 - 0.05 ** (1/100)
        0.0295
        >>> round(fpr_upper_bound(1000, 990), 4)  # 11 expected in 1,000: below 1.7 % with 95 % confidence
        0.0169
    """
    from scipy.stats import beta

    if passed <= 0:
        return 1.0
    return float(beta.ppf(confidence, n - passed + 1, passed))


def fit_threshold(good_scores: Iterable[float], target_fpr: float) -> ThresholdFit:
    """The lowest threshold whose expected false-positive rate on new good parts is at most ``target_fpr``.

    :class:`NotEnoughParts` when the sample is too small to resolve it (:func:`parts_needed`).

    Example:
        >>> fit = fit_threshold(np.arange(1.0, 200.0), 0.01)  # 199 good parts, scores 1 ... 199
        >>> fit.passed, fit.above_on_good, round(fit.threshold, 6), round(fit.expected_fpr, 4)
        (198, 1, 198.0, 0.01)
    """
    scores = np.sort(np.asarray(list(good_scores), dtype=np.float64))
    scores = scores[np.isfinite(scores)]
    n = int(scores.size)
    if not 0 < target_fpr < 1:
        msg = f"target_fpr {target_fpr!r}: must be between 0 and 1, e.g. 0.01"
        raise ValueError(msg)
    passed = math.ceil((n + 1) * (1 - target_fpr) - 1e-9)
    if n == 0 or passed > n:
        raise NotEnoughParts(n, parts_needed(target_fpr), target_fpr)
    return ThresholdFit(just_above(scores[passed - 1]), n, passed, target_fpr)


def flagged_rate(scores: Sequence[float], threshold: float) -> float:
    """The part of ``scores`` at or above ``threshold`` (the decision's own rule); NaN for none."""
    values = np.asarray(scores, dtype=np.float64)
    return float(np.mean(values >= threshold)) if values.size else math.nan


def auroc(good_scores: Sequence[float], defect_scores: Sequence[float]) -> float:
    """The chance that a defect scores above a good part (ties count half): the area under the ROC curve.

    Example:
        >>> auroc([0.1, 0.2, 0.3], [0.25, 0.9]), auroc([1.0], [1.0])
        (0.8333333333333334, 0.5)
    """
    good = np.sort(np.asarray(good_scores, dtype=np.float64))
    defect = np.asarray(defect_scores, dtype=np.float64)
    if not good.size or not defect.size:
        return math.nan
    below = np.searchsorted(good, defect, side="left")
    tied = np.searchsorted(good, defect, side="right") - below
    return float((below + 0.5 * tied).sum() / (good.size * defect.size))


def separating_threshold(good_scores: Sequence[float], defect_scores: Sequence[float]) -> tuple[float, float, float]:
    """The threshold that separates the two sets best (most defects flagged minus good parts flagged),
    halfway between the two scores it falls between; with its recall and its FPR on these sets.

    Example:
        >>> separating_threshold([0.1, 0.2, 0.376], [0.767, 0.9])
        (0.5715, 1.0, 0.0)
    """
    good = np.asarray(good_scores, dtype=np.float64)
    defect = np.asarray(defect_scores, dtype=np.float64)
    if not good.size or not defect.size:
        return math.nan, math.nan, math.nan
    candidates = np.unique(np.concatenate([good, defect]))
    cuts = np.concatenate([[candidates[0]], (candidates[:-1] + candidates[1:]) / 2, [just_above(candidates[-1])]])
    recall, fpr = ((scores.size - np.searchsorted(np.sort(scores), cuts, side="left")) / scores.size
                   for scores in (defect, good))  # the share at or above each cut
    best = int(np.argmax(recall - fpr))
    return float(cuts[best]), float(recall[best]), float(fpr[best])


class TopValues:
    """The ``keep`` largest of a stream of arrays (every pixel of many maps) in bounded memory."""

    def __init__(self, keep: int) -> None:
        self.keep = max(1, int(keep))
        self.count = 0
        self._values = np.empty(0, dtype=np.float32)

    def add(self, values: np.ndarray) -> None:
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        self.count += flat.size
        if flat.size > self.keep:
            flat = np.partition(flat, flat.size - self.keep)[-self.keep:]
        self._values = np.concatenate([self._values, flat])
        if self._values.size > 4 * self.keep:
            self._values = np.partition(self._values, self._values.size - self.keep)[-self.keep:]

    def largest(self) -> np.ndarray:
        """The kept values, largest first."""
        return np.sort(self._values)[::-1][: self.keep]


def pixel_threshold(top: TopValues, target_fpr: float) -> float:
    """The lowest pixel threshold that flags at most ``target_fpr`` of the good pixels ``top`` saw
    (``top`` must keep at least ``target_fpr`` of them, plus one).

    Example:
        >>> top = TopValues(keep=11)
        >>> top.add(np.arange(1000.0).reshape(10, 100))
        >>> pixel_threshold(top, 0.01)  # 10 of 1,000 pixels at or above it: 990 ... 999
        989.0000000000001
    """
    flagged = math.floor(target_fpr * top.count + 1e-9)
    largest = top.largest()
    if flagged >= largest.size:
        msg = f"kept {largest.size} of {top.count} pixels, fewer than the {flagged + 1} a rate of {target_fpr:g} needs"
        raise ValueError(msg)
    return just_above(float(largest[flagged]))


def best_f1_threshold(inside: np.ndarray, outside: np.ndarray) -> tuple[float, float]:
    """The pixel threshold with the best F1 on known masks (``inside``: the defect pixels' raw values,
    ``outside``: the others'), and that F1; every distinct value is tried.

    Example:
        >>> best_f1_threshold(np.array([0.9, 0.8, 0.3]), np.array([0.1, 0.2, 0.85]))
        (0.3, 0.8571428571428571)
    """
    values = np.concatenate([np.asarray(inside, np.float64).ravel(), np.asarray(outside, np.float64).ravel()])
    defect = np.concatenate([np.ones(np.size(inside), bool), np.zeros(np.size(outside), bool)])
    if not defect.any():
        return math.nan, math.nan
    order = np.argsort(-values, kind="stable")
    values, defect = values[order], defect[order]
    hits, false = np.cumsum(defect), np.cumsum(~defect)
    last = np.r_[values[1:] != values[:-1], True]  # flagging ">= value" takes every tie of it
    f1 = 2 * hits / (2 * hits + false + (defect.sum() - hits))
    best = int(np.argmax(np.where(last, f1, -1.0)))
    return float(values[best]), float(f1[best])
