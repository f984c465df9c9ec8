"""The regimes' final likes (stage combine_likes): per regime, the bucket probabilities (the
classifier's, or a tabular gate's fitted on the regime's train rows and early-stopped on its val rows)
and the bucket regressors combined: the predicted bucket's regressor (argmax) and the
probability-weighted mixture, each with and without smearing, on the val and test rows; the conformal
ranges of the served variant (`regress_within_bucket.final`, `smearing`) calibrated on the regime's
val rows (and, in `interval.brand_folds_regimes`, brand folds of its train rows); the bundle that
`tweetsim predict-likes --models-of REGIME` loads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.config.params import StageError
from tweetsim.data.splits import SplitConfig
from tweetsim.likes.artefacts import Layout, tree_features, write_json
from tweetsim.likes.config import BucketsConfig, ClassifierConfig, InferenceConfig, IntervalConfig
from tweetsim.likes.intervals import Intervals, brand_fold_rows
from tweetsim.likes.regressor import BucketGate, BucketRegressor, combine
from tweetsim.text.runtime import EncoderConfig

log = logging.getLogger(__name__)

VARIANTS = [(mode, smear) for mode in ("argmax", "mixture") for smear in (True, False)]


def name_of(mode: str, smear: bool) -> str:
    """The predictions' model name of a variant: bucket_xgb_<mode>[_nosmear]."""
    return f"bucket_xgb_{mode}" + ("" if smear else "_nosmear")


def _probs(fr: pd.DataFrame, f: pd.DataFrame, regime: str, n_buckets: int, names: list[str], p: BucketsConfig,
           layout: Layout) -> tuple[np.ndarray, np.ndarray, BucketGate | None]:
    """(the bucket probabilities the regime's models use, the classifier's, the tabular gate or None) of the rows `f`."""
    clf_probs = f[[f"p_bucket{k}" for k in range(n_buckets)]].to_numpy(float)
    if p.gate == "tabular":
        tr, va = fr[fr["side"] == "train"], fr[fr["side"] == "val"]
        gate = BucketGate.fit(tr, tr["bucket"].to_numpy(), va, va["bucket"].to_numpy(), names, n_buckets, p.xgb)
        gate.save(layout.gate(regime))
        return gate.predict(f), clf_probs, gate
    if p.gate == "classifier":
        return clf_probs, clf_probs, None
    raise StageError(f"combine_likes: regress_within_bucket.gate must be tabular or classifier, not {p.gate!r}")


def _ranges(fr: pd.DataFrame, regime: str, cal: tuple, brands: pd.DataFrame, names: list[str], regs: list,
            gate: BucketGate | None, p: BucketsConfig, pi: IntervalConfig) -> Intervals:
    """The served variant's conformal ranges from the regime's val rows (`cal`), and in
    `interval.brand_folds_regimes` the train rows' brand folds too (more held-out brands than val has)."""
    source = f"{regime} val rows"
    if regime in pi.brand_folds_regimes:
        tr = fr[fr["side"] == "train"].reset_index(drop=True)
        groups = tr[["source", "id"]].merge(brands, on=["source", "id"], how="left")["company"].fillna("").to_numpy()
        folds = brand_fold_rows(tr, groups, names, p.xgb, [r.meta["best_iteration"] + 1 for r in regs],
                                gate.meta["best_iteration"] + 1 if p.gate == "tabular" else None,
                                int(pi.brand_folds), p.final, bool(p.smearing))
        cal = tuple(np.concatenate([a, b]) for a, b in zip(cal, folds))
        source += f" + {int(pi.brand_folds)} brand folds of its train rows"
    return Intervals.calibrate(*cal, pi, source)


def _regime(regime: str, fr: pd.DataFrame, brands: pd.DataFrame, names: list[str], edges: list[str], p: BucketsConfig,
            pi: IntervalConfig, layout: Layout) -> dict:
    """One regime's predictions of every variant (the served one with its range), test scatter,
    confusion and summary; its gate and ranges saved under `layout`."""
    f = fr[fr["side"].isin(["val", "test"])].reset_index(drop=True)
    regs = [BucketRegressor.load(layout.regressor(e, regime)) for e in edges]
    probs, clf_probs, gate = _probs(fr, f, regime, len(edges), names, p, layout)
    z = np.stack([r.predict_log(f) for r in regs], 1)
    smear = np.array([r.meta["smearing"] for r in regs])
    summary = {"smearing": {e: float(s) for e, s in zip(edges, smear)},
               "fallback_buckets": [e for e, r in zip(edges, regs) if r.meta["fallback_all_rows"]]}
    test = (f["side"] == "test").to_numpy()
    truth = f.loc[test, "bucket"].to_numpy()
    summary["test_bucket_accuracy"] = {"classifier": float(np.mean(clf_probs[test].argmax(1) == truth)),
                                       "final": float(np.mean(probs[test].argmax(1) == truth))}
    y = np.log1p(f["likes"].to_numpy(float))
    final = (p.final, bool(p.smearing))
    point, val = combine(probs, z, smear, *final), (f["side"] == "val").to_numpy()
    ranges = _ranges(fr, regime, (f.loc[val, "likes"].to_numpy(float), point[val], probs[val], z[val]), brands, names,
                     regs, gate, p, pi)
    ranges.save(layout.intervals(regime))
    low, high = ranges.apply(point, probs, z)
    preds, scatter = {}, None
    for mode, sm in VARIANTS:
        pred = combine(probs, z, smear, mode, sm)
        frame = pd.DataFrame({"regime": regime, "source": f["source"], "id": f["id"], "pred_likes": pred})
        if (mode, sm) == final:
            frame["pred_low"], frame["pred_high"] = low, high
        preds[name_of(mode, sm)] = frame
        summary[f"{name_of(mode, sm)}_test_rmse_log1p"] = float(np.sqrt(np.mean((np.log1p(pred[test]) - y[test]) ** 2)))
        if (mode, sm) == final:
            scatter = pd.DataFrame({"regime": regime, "actual_log1p": y[test].round(4),
                                    "predicted_log1p": np.log1p(pred[test]).round(4)})
    confusion = pd.DataFrame({"regime": regime, "actual_bucket": f.loc[test, "bucket"].map(lambda k: edges[k]),
                              "predicted_bucket": [edges[k] for k in probs[test].argmax(1)]})
    log.info(f"combine_likes {regime}: " + ", ".join(
        f"{name_of(m, s)} {summary[name_of(m, s) + '_test_rmse_log1p']:.3f}" for m, s in VARIANTS)
        + " (test log1p-RMSE; evaluate gives the full table)")
    return {"predictions": preds, "scatter": scatter, "confusion": confusion, "summary": summary}


def combine_regimes(params: dict, features: Path, tweets: Path, models: Path) -> dict:
    """Every regime of split.regimes through `_regime`, from the classifier stage's feature table
    (`features`, data/likes/features.parquet) and the bucket regressors under `models`; the gates and
    ranges are saved there. Returns {"predictions": {name_of(variant): val + test rows of every regime},
    "pred_vs_actual": the served variant's test rows, "confusion": its test buckets, "summary": per
    regime (metrics/like_buckets.json)}."""
    p, pi = BucketsConfig.from_params(params["regress_within_bucket"]), IntervalConfig.from_params(params["interval"])
    edges = [str(e) for e in ClassifierConfig.from_params(params["train_like_classifier"]).bucket_edges]
    layout = Layout(models)
    feats = pd.read_parquet(features)
    brands = pd.read_parquet(tweets, columns=["source", "id", "company"])
    names = tree_features(feats.columns, p.xgb)
    got = {regime: _regime(regime, feats[feats["regime"] == regime], brands, names, edges, p, pi, layout)
           for regime in SplitConfig.from_params(params["split"]).regimes}
    return {"predictions": {name_of(*v): pd.concat([g["predictions"][name_of(*v)] for g in got.values()], ignore_index=True)
                            for v in VARIANTS},
            "pred_vs_actual": pd.concat([g["scatter"] for g in got.values()], ignore_index=True),
            "confusion": pd.concat([g["confusion"] for g in got.values()], ignore_index=True),
            "summary": {regime: g["summary"] for regime, g in got.items()}}


def write_bundle(params: dict, models: Path) -> None:
    """models/likes/bundle.json: the regimes' final mode, smearing, edges and gate, the regime and history
    `tweetsim predict-likes --models-of` uses, and the classifier params the Predictor needs."""
    p = BucketsConfig.from_params(params["regress_within_bucket"])
    clf = ClassifierConfig.from_params(params["train_like_classifier"])
    bundle = {"regime": p.cli_regime, "final": p.final, "smearing": bool(p.smearing),
              "edges": [str(e) for e in clf.bucket_edges], "gate": p.gate, "history": p.cli_history,
              "params": InferenceConfig.of(clf, EncoderConfig.from_params(params["encoder"])).to_bundle()}
    if bundle["regime"] not in SplitConfig.from_params(params["split"]).regimes:
        raise StageError(f"combine_likes: regress_within_bucket.cli_regime {bundle['regime']!r} is not in split.regimes")
    write_json(Layout(models).bundle, bundle)
