"""Conformal ranges (tweetsim/likes/intervals.py) and their scores (likes.metrics.interval_metrics) on constructed cases."""

import numpy as np
import pytest

from tweetsim.likes.config import IntervalConfig
from tweetsim.likes.intervals import Intervals, conformal_quantiles
from tweetsim.likes.metrics import interval_metrics


def test_interval_metrics_counts_coverage_and_width():
    truth = [0, 5, 10, 100, 50]
    low = [0, 6, 9, 10, 49]     # row 2 (5 < 6) and row 4 (100 > 99) are outside; the ends count as inside
    high = [3, 20, 10, 99, 199]
    r = interval_metrics(truth, low, high)
    assert r["coverage"] == pytest.approx(3 / 5) and r["n"] == 5
    # (1 + high) / (1 + low): 4, 3, 1.1, 100/11, 4 -> median 4
    assert r["width_ratio_median"] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="low > high"):
        interval_metrics([1], [2], [1])


def test_conformal_quantiles_are_the_corrected_order_statistics():
    s = np.arange(1, 20, dtype=float) - 10  # 19 scores -9..9
    lo, hi = conformal_quantiles(s, 0.8)
    # n=19, a=0.2: high = ceil(20 * 0.9) = 18th smallest (8), low = floor(20 * 0.1) = 2nd smallest (-8)
    assert (lo, hi) == (-8.0, 8.0)
    assert conformal_quantiles(s[:3], 0.8) == (-np.inf, np.inf)  # too few rows: no finite range
    assert conformal_quantiles(np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), 0.8)[0] == 0.0  # low end kept <= 0


@pytest.mark.parametrize("scale", ["constant", "mixture"])
def test_coverage_holds_on_exchangeable_rows(scale):
    rng = np.random.default_rng(0)
    n_cal, n_test, K = 2000, 20000, 3

    def draw(n):
        probs = rng.dirichlet(np.ones(K), n)
        z = rng.uniform(0, 6, (n, K))
        point = np.expm1((probs * z).sum(1))
        noise = rng.standard_t(4, n) * (0.3 + np.sqrt((probs * (z - (probs * z).sum(1, keepdims=True)) ** 2).sum(1)))
        return np.expm1(np.clip(np.log1p(point) + noise, 0, None)), point, probs, z

    y, point, probs, z = draw(n_cal)
    iv = Intervals.calibrate(y, point, probs, z, IntervalConfig(coverage=0.8, scale=scale, brand_folds_regimes=[], brand_folds=5),
                             "synthetic")
    y, point, probs, z = draw(n_test)
    low, high = iv.apply(point, probs, z)
    assert (low <= point).all() and (point <= high).all()
    assert interval_metrics(y, low, high)["coverage"] == pytest.approx(0.8, abs=0.02)
