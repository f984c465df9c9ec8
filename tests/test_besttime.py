"""The time effect: the clock features (features.time_columns), its backtest (likes/timeeffect.py) and the
best-time curve (likes/besttime.py) of bucket trees fitted on accounts with a planted hour effect, and
on accounts without one."""

from pathlib import Path

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tweetsim.config.params import load_params
from tweetsim.likes import besttime as B
from tweetsim.likes import features as F
from tweetsim.likes import timeeffect as T
from tweetsim.likes.config import IntervalConfig, XgbConfig
from tweetsim.likes.artefacts import tree_features
from tweetsim.likes.classifier import bucketize
from tweetsim.likes.intervals import Intervals
from tweetsim.likes.regressor import bucket_parts, combine, fit_validated

PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
EDGES = PARAMS["train_like_classifier"]["bucket_edges"]
PEAK = 18  # the planted effect's best hour (UTC)


def planted(hour, amplitude: float) -> np.ndarray:
    return amplitude * np.cos(2 * np.pi * (np.asarray(hour, float) - PEAK) / 24)


def _tweets(amplitude: float, accounts: int = 60, per: int = 40, seed: int = 5) -> pd.DataFrame:
    """Accounts of different sizes posting at random hours; log1p likes = the account's level + the planted
    hour effect + noise; rows split at random into train / val / test."""
    rng = np.random.default_rng(seed)
    acct = np.repeat(np.arange(accounts), per)
    date = pd.Timestamp("2021-01-04", tz="UTC") + pd.to_timedelta(rng.integers(0, 365 * 24, len(acct)), unit="h")
    level = rng.normal(4.0, 1.0, accounts)
    y = level[acct] + planted(date.hour, amplitude) + rng.normal(0, 0.3, len(acct))
    return pd.DataFrame({"source": "s", "id": np.arange(len(acct)), "username": [f"a{a}" for a in acct],
                         "company": [f"c{a % 7}" for a in acct], "date": date, "likes": np.expm1(y).round(),
                         "level": level[acct], "side": rng.choice(["train", "val", "test"], len(acct), p=[0.6, 0.2, 0.2])})


def _features(rows: pd.DataFrame) -> pd.DataFrame:
    """The library's date features and the account's level (what the history features carry)."""
    return F.base_features(rows).assign(acct_level=rows["level"].to_numpy(), likes=rows["likes"].to_numpy(float),
                                        bucket=bucketize(rows["likes"].astype(float), EDGES))


@dataclass(frozen=True)
class _Batch:
    eval_batch_size: int  # what best_time widens of the Predictor's InferenceConfig


class Fitted:
    """The bucket trees and gate fitted on the train rows (cyclic clock features) with ranges calibrated on
    the val rows, answering best_time and swing as a Predictor does."""

    def __init__(self, rows: pd.DataFrame, mode: str = "cyclic"):
        xgb = XgbConfig.from_params({**PARAMS["regress_within_bucket"]["xgb"], "time_features": mode, "num_threads": 1})
        X = _features(rows).reset_index(drop=True)
        self.names = tree_features(X.columns, xgb)
        side = rows["side"].to_numpy()
        self.regs, self.gate = fit_validated(X[side == "train"].reset_index(drop=True), X[side == "val"].reset_index(drop=True),
                                             self.names, xgb, len(EDGES))
        self.bundle = {"final": "mixture", "smearing": True}
        self.level = dict(zip(rows["username"], rows["level"]))
        val = rows[side == "val"]
        pred, probs, z = self._point(val)
        self.intervals = Intervals.calibrate(val["likes"].to_numpy(float), pred, probs, z, IntervalConfig.from_params(PARAMS["interval"]), "val rows")
        self.state, self.p, self.ranges = type("State", (), {"context": None})(), _Batch(64), None

    def _point(self, rows):
        self.last_features = _features(rows.assign(level=rows["username"].map(self.level))).reset_index(drop=True)
        probs, z, smear = bucket_parts(self.regs, self.gate, self.last_features)
        return combine(probs, z, smear, "mixture", True), probs, z

    def predict(self, rows) -> np.ndarray:
        return self._point(rows)[0]

    def predict_with_probs(self, rows, context=None):
        likes, probs, z = self._point(rows)
        self.ranges = self.intervals.apply(likes, probs, z)
        return likes, probs


@pytest.fixture(scope="module")
def with_effect():
    rows = _tweets(amplitude=1.0)
    return rows, Fitted(rows)


@pytest.fixture(scope="module")
def without_effect():
    rows = _tweets(amplitude=0.0, seed=6)
    return rows, Fitted(rows)


def _post(rows):
    return rows[rows["side"] == "test"].head(1).drop(columns=["side"])


def test_clock_columns_follow_the_mode():
    rows = pd.DataFrame({"date": pd.to_datetime(["2024-03-03 23:00", "2024-03-04 00:00"], utc=True)})  # Sun 23h, Mon 0h
    f = F.base_features(rows)
    # on the circle, 23 h and 0 h are as close as 0 h and 1 h; Sunday and Monday as Monday and Tuesday
    gap = np.hypot(f["hour_sin"].diff(), f["hour_cos"].diff()).iloc[1]
    assert gap == pytest.approx(2 * np.sin(np.pi / 24)) and f["hour"].diff().iloc[1] == -23
    assert np.hypot(f["dayofweek_sin"].diff(), f["dayofweek_cos"].diff()).iloc[1] == pytest.approx(2 * np.sin(np.pi / 7))
    xgb = lambda mode: SimpleNamespace(drop_features=["days"], time_features=mode)  # noqa: E731 - the XgbConfig fields read
    cols = [*f.columns, "likes", "bucket"]
    raw, cyclic, both = (tree_features(cols, xgb(m)) for m in F.TIME_FEATURES)
    assert "hour" in raw and "hour_sin" not in raw and "hour_sin" in cyclic and "hour" not in cyclic
    assert set(both) == set(raw) | set(cyclic) and "days" not in both and "likes" not in both
    with pytest.raises(ValueError, match="unknown 'polar'"):
        tree_features(cols, xgb("polar"))


def test_planted_hour_effect_is_recovered(with_effect):
    rows, model = with_effect
    test = rows[rows["side"] == "test"]
    effect = T.time_effect(test.assign(pred_likes=model.predict(test)))
    hb = effect["hour_bucket"]
    assert set(hb["groups"]) == {"00-04h", "04-08h", "08-12h", "12-16h", "16-20h", "20-24h"}
    # the observed effect is the planted one (16-20 h best, 04-08 h worst) ...
    assert hb["groups"]["16-20h"]["low"] > 0.5 and hb["groups"]["04-08h"]["high"] < -0.5
    # ... and the learned effect lies inside its interval, bucket by bucket and step by step
    assert hb["inside"] == 1.0 and hb["steps_inside"] == 1.0 and hb["largest_step"]["inside"]
    assert all(g["low"] <= g["observed"] <= g["high"] for g in hb["groups"].values())
    assert effect["weekday"]["inside"] == 1.0  # none planted, none learned
    assert effect["n_accounts"] == 60 and effect["n_rows"] == len(test)


def test_planted_effect_best_time(with_effect):
    rows, model = with_effect
    curve, best = B.best_time(model, _post(rows), top=3)
    assert (curve["likes_low"] <= curve["likes"] + 1e-6).all() and (curve["likes"] <= curve["likes_high"] + 1e-6).all()
    assert set(best["hour"]) <= {PEAK - 2, PEAK - 1, PEAK, PEAK + 1, PEAK + 2}
    assert B.distinct(curve, best) is None  # the best slot is above the median slot's range
    shares = B.swing(model)  # the cyclic columns move as the hour of day
    assert shares.index[0] == "hour of day" and shares.iloc[0] > 0.8
    lines = B.describe(best)  # the slots best-time prints, with their ranges
    assert len(lines) == 3 and all(f"{r.date:%a %Y-%m-%d %H:00} UTC" in ln and "80% range" in ln for r, ln in zip(best.itertuples(), lines))
    # the served curve's hour effect (its mean per four-hour bucket, centred) is the planted one
    per_bucket = curve.groupby(curve["hour"] // T.BUCKET_HOURS)["log1p_likes"].mean()
    truth = pd.Series(planted(np.arange(24), 1.0)).groupby(np.arange(24) // T.BUCKET_HOURS).mean()
    assert np.abs((per_bucket - per_bucket.mean()) - truth).max() < 0.15
    test = rows[rows["side"] == "test"]
    effect = T.time_effect(test.assign(pred_likes=model.predict(test)))
    # an hour-to-hour jump the held-out rows do not show is flagged, where it is
    assert len(effect["hour"]["steps"]) == 24
    jump = curve.assign(log1p_likes=curve["log1p_likes"] + np.where(curve["slot"] >= 100, 3.0, 0.0))
    flagged = T.unsupported_steps(jump, effect["hour"])
    assert 100 in flagged["slot"].tolist() and 100 not in T.unsupported_steps(curve, effect["hour"])["slot"].tolist()
    assert (flagged["step"].abs() > flagged["bound"]).all()


def test_no_time_effect_gives_a_flat_curve(without_effect):
    rows, model = without_effect
    curve, best = B.best_time(model, _post(rows), top=3)
    assert (curve["likes_low"] <= curve["likes"] + 1e-6).all() and (curve["likes"] <= curve["likes_high"] + 1e-6).all()
    # flat within its band: every slot's likes inside every slot's range
    assert curve["likes"].max() <= curve["likes_high"].min() and curve["likes"].min() >= curve["likes_low"].max()
    assert "inside the median slot's 80% range" in B.distinct(curve, best)
    test = rows[rows["side"] == "test"]
    effect = T.time_effect(test.assign(pred_likes=model.predict(test)))
    assert effect["hour_bucket"]["inside"] == 1.0 and effect["weekday"]["inside"] == 1.0
    assert T.unsupported_steps(curve, effect["hour"]).empty


def test_time_effect_backtest_rules():
    d = pd.to_datetime(["2024-03-04 01:00", "2024-03-04 13:00", "2024-03-05 01:00", "2024-03-05 13:00", "2024-03-06 13:00"], utc=True)
    rows = pd.DataFrame({"username": ["a", "a", "b", "b", "c"], "date": d, "likes": [0, 99, 9, 999, 5],
                         "pred_likes": [9, 9, 99, 99, 5]})
    e = T.time_effect(rows, resamples=200)
    assert e["n_rows"] == 4 and e["n_accounts"] == 2  # account c has one row: nothing about time
    g = e["hour_bucket"]["groups"]
    # within each account, 12-16 h gets log(100) - log(10) = log(10) more than 00-04 h in log1p likes (around the mean)
    assert set(g) == {"00-04h", "12-16h"} and g["12-16h"]["observed"] - g["00-04h"]["observed"] == pytest.approx(2 * np.log(10))
    assert g["12-16h"]["model"] == pytest.approx(0) and not g["12-16h"]["inside"]
    # steps join neighbouring groups only: none between 00-04 h and 12-16 h; Monday to Tuesday is one
    assert e["hour_bucket"]["largest_step"] is None and e["hour_bucket"]["steps"] == {}
    assert set(e["weekday"]["groups"]) == {"Mon", "Tue"} and list(e["weekday"]["steps"]) == ["Mon>Tue"]
