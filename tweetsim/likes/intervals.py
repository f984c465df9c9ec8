"""Ranges for the predicted likes: split conformal intervals around the point model (params `interval`).

Scores are the signed residuals in log1p space, log1p(likes) - log1p(prediction), of rows the
models did not train on (a regime's val rows), divided by a per-row scale: `constant` (1) or
`mixture` (the spread of the bucket regressors' log predictions under the gate's probabilities,
plus its median on the calibration rows, so a row the buckets agree on gets a narrower range).
The low and high ends are the calibration scores' alpha/2 and 1 - alpha/2 order statistics with the
finite-sample correction of split conformal prediction: on rows exchangeable with the calibration
rows the interval holds the truth with probability >= the nominal coverage, whatever the model.

Groups (Mondrian conformal) come from the router (likes/router.py): each route of the deploy fit
is calibrated on its own kind of held-out rows, the backtest's (likes/deploy.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tweetsim.likes.config import IntervalConfig, XgbConfig

SCALES = ("constant", "mixture")


def row_scale(probs: np.ndarray, z: np.ndarray, kind: str, floor: float) -> np.ndarray:
    """Per-row scale of the scores: 1, or the mixture's spread sqrt(sum_k p_k (z_k - zbar)^2) + floor."""
    if kind == "constant":
        return np.ones(len(z))
    if kind != "mixture":
        raise ValueError(f"interval.scale: unknown {kind!r} (constant | mixture)")
    zbar = (probs * z).sum(1, keepdims=True)
    return np.sqrt((probs * (z - zbar) ** 2).sum(1)) + floor


def conformal_quantiles(scores: np.ndarray, coverage: float) -> tuple[float, float]:
    """(low, high) order statistics of `scores` giving two-sided split-conformal coverage >= `coverage`:
    the ceil((n+1)(1-a/2))-th smallest for the high end, the floor((n+1) a/2)-th for the low end (a =
    1 - coverage); with too few rows for that, the ends are infinite (an honest "no idea")."""
    s = np.sort(np.asarray(scores, dtype=float))
    n, a = len(s), 1.0 - float(coverage)
    if not 0 < a < 1:
        raise ValueError(f"interval.coverage must be in (0, 1), got {coverage}")
    k_hi = math.ceil((n + 1) * (1 - a / 2) - 1e-9)  # the 1e-9: 1 - 0.8 is 0.19999999999999996 in floats
    k_lo = math.floor((n + 1) * a / 2 + 1e-9)
    hi = float(s[k_hi - 1]) if 1 <= k_hi <= n else math.inf
    lo = float(s[k_lo - 1]) if 1 <= k_lo <= n else -math.inf
    # the point prediction stays inside its range (low <= likes <= high) even with one-sided residuals
    return min(lo, 0.0), max(hi, 0.0)


class Intervals:
    """Calibrated quantiles, by group; `apply` turns point predictions into (low, high)."""

    def __init__(self, meta: dict):
        self.meta = meta

    @classmethod
    def calibrate(cls, likes_true, likes_pred, probs, z, p: IntervalConfig, source: str) -> "Intervals":
        """From rows the models did not train on: their true and predicted likes, gate probabilities and
        bucket log predictions. `p`: params `interval`; `source`: said in the metadata."""
        kind = p.scale
        spread = row_scale(probs, z, kind, 0.0)
        floor = float(np.median(spread)) if kind == "mixture" and len(spread) else 0.0
        r = np.log1p(np.asarray(likes_true, float)) - np.log1p(np.clip(np.asarray(likes_pred, float), 0, None))
        lo, hi = conformal_quantiles(r / row_scale(probs, z, kind, floor), p.coverage)
        group = {"low": lo, "high": hi, "floor": floor, "n": int(len(r)), "from": source}
        return cls({"coverage": float(p.coverage), "scale": kind, "groups": {"all": group}})

    def apply(self, likes, probs, z) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) likes for point predictions `likes`, with low <= likes <= high."""
        likes = np.clip(np.asarray(likes, float), 0, None)
        g = self.meta["groups"]["all"]
        scale = row_scale(probs, z, self.meta["scale"], g["floor"])
        lo, hi = g["low"] * scale, g["high"] * scale
        base = np.log1p(likes)
        with np.errstate(over="ignore", invalid="ignore"):
            low = np.expm1(np.clip(base + lo, 0, None))
            high = np.expm1(base + hi)
        return np.minimum(low, likes), np.maximum(high, likes)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Intervals":
        return cls(json.loads(Path(path).read_text()))


def brand_fold_rows(rows, groups, names: list[str], xgb: XgbConfig, trees: list[int], gate_trees: int | None,
                    folds: int, final: str, smear: bool):
    """Calibration rows of brands the models never saw: `rows` (a regime's training rows: features.parquet
    columns) in `folds` folds grouped by `groups` (their brands); each fold predicted by bucket regressors
    (and the tabular gate, where `gate_trees` is given; else the classifier's probabilities) refitted on
    the other folds with the regime's tree counts. Returns (true likes, point, probs, bucket log preds)."""
    from sklearn.model_selection import GroupKFold

    from tweetsim.likes.regressor import combine, fit_fixed_trees

    b = rows["bucket"].to_numpy()
    point, probs = np.zeros(len(rows)), np.zeros((len(rows), len(trees)))
    z = np.zeros((len(rows), len(trees)))
    for fit_ix, held in GroupKFold(n_splits=folds).split(rows, groups=np.asarray(groups)):
        fit, out = rows.iloc[fit_ix].reset_index(drop=True), rows.iloc[held].reset_index(drop=True)
        regs, gate = fit_fixed_trees(fit, b[fit_ix], names, xgb, trees, gate_trees)
        probs[held] = gate.predict(out) if gate is not None else out[[f"p_bucket{k}" for k in range(len(trees))]].to_numpy(float)
        z[held] = np.stack([r.predict_log(out) for r in regs], 1)
        point[held] = combine(probs[held], z[held], np.array([r.meta["smearing"] for r in regs]), final, smear)
    return rows["likes"].to_numpy(float), point, probs, z
