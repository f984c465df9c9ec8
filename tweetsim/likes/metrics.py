"""Scores for like prediction, shared by every likes model so all are compared alike.

Likes: RMSE, RMSE of log1p values (the headline: likes are heavy-tailed), MAE, Spearman, and the
high/low accuracy of the LCBM paper (truth and prediction split at the *training* median). Ranges:
coverage and median width.
"""

import math

import numpy as np


def _as_array(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"likes_metrics: {name} is not numeric: {e}") from None
    return arr


def likes_metrics(y_true, y_pred, train_median: float) -> dict:
    """Scores of predicted like counts against the truth.

    `rmse` and `mae` use the predictions as given; `rmse_log1p` clips negative predictions to 0
    first (log1p is undefined below -1, and no tweet has negative likes). `spearman` is None when
    undefined (constant truth or predictions, or fewer than 2 rows): reporting 0.0 would claim
    "no rank agreement", which was not measured. `high_low_accuracy`: a value is high iff it is
    > `train_median` (the median likes of the regime's training rows, so test labels never set the
    threshold); the share of rows where truth and prediction fall on the same side.
    """
    t, p = _as_array(y_true, "y_true"), _as_array(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"likes_metrics: y_true has {len(t)} values but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("likes_metrics: no rows to score")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if len(bad):
            raise ValueError(f"likes_metrics: {name} has {len(bad)} NaN/inf values (first at position {bad[0]})")
    neg = np.flatnonzero(t < 0)
    if len(neg):
        raise ValueError(f"likes_metrics: y_true has {len(neg)} negative like counts (first at position {neg[0]})")
    if train_median is None or not math.isfinite(float(train_median)):
        raise ValueError(f"likes_metrics: train_median must be a finite number, got {train_median!r}")
    from scipy.stats import spearmanr

    err = p - t
    log_err = np.log1p(np.clip(p, 0, None)) - np.log1p(t)
    spearman = None
    if len(t) > 1 and np.ptp(t) > 0 and np.ptp(p) > 0:
        rho = float(spearmanr(t, p).statistic)
        spearman = rho if math.isfinite(rho) else None
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rmse_log1p": float(np.sqrt(np.mean(log_err**2))),
        "mae": float(np.mean(np.abs(err))),
        "spearman": spearman,
        "high_low_accuracy": float(np.mean((t > train_median) == (p > train_median))),
        "n": int(len(t)),
    }


def interval_metrics(y_true, low, high) -> dict:
    """Coverage (share of rows with low <= truth <= high) and the median width as the ratio
    (1 + high) / (1 + low): how many times over the high end is the low one, 0 likes counted as 1."""
    t, lo, hi = (np.asarray(v, dtype=float).reshape(-1) for v in (y_true, low, high))
    if not len(t) == len(lo) == len(hi) or len(t) == 0:
        raise ValueError(f"interval_metrics: {len(t)} truths, {len(lo)} lows, {len(hi)} highs (need as many, > 0)")
    if np.any(lo > hi):
        raise ValueError(f"interval_metrics: low > high on {int(np.sum(lo > hi))} rows")
    return {"coverage": float(np.mean((lo <= t) & (t <= hi))),
            "width_ratio_median": float(np.median((1 + hi) / (1 + lo))), "n": int(len(t))}
