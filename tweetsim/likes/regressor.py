"""One XGBoost regressor per like bucket, trained in log1p space, with Duan's smearing.

A bucket's model sees that bucket's training rows only (early stopping on its val rows). A bucket
with fewer than `min_rows` training rows falls back to a model over all training rows (said in
its metadata and printed). Back-transform: `expm1(yhat)` is the median-type prediction; the
smearing estimate `S * exp(yhat) - 1`, S = mean(exp(residual)) on the bucket's training rows,
corrects the bias of the mean on the count scale. Both are reported.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes.config import XgbConfig


def feature_matrix(X: pd.DataFrame, features: list[str]) -> np.ndarray:
    """X's `features` columns, in that order, as a C-ordered float64 matrix (a missing column: KeyError);
    astype(float) first, as before, so nullable columns' NA become NaN (xgboost's missing value)."""
    return np.ascontiguousarray(X[features].astype(float).to_numpy())


class BucketRegressor:
    def __init__(self, model, features: list[str], meta: dict):
        self.model, self.features, self.meta = model, features, meta

    def predict_log(self, X: pd.DataFrame) -> np.ndarray:
        # a plain float matrix in training's column order: same values as the DataFrame (xgboost casts
        # both to float32), without its per-call pandas conversion (most of a one-row call)
        return np.clip(self.model.predict(feature_matrix(X, self.features)), 0, None)

    def set_threads(self, n: int) -> None:
        """Prediction threads (the values do not depend on them; rows are independent)."""
        self.model.set_params(n_jobs=n)
        self.model.get_booster().set_param({"nthread": n})

    def predict(self, X: pd.DataFrame, smear: bool = True) -> np.ndarray:
        z = self.predict_log(X)
        return np.clip((self.meta["smearing"] if smear else 1.0) * np.exp(z) - 1, 0, None)

    def save(self, stem: Path) -> None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.model.save_model(f"{stem}.ubj")
        Path(f"{stem}.json").write_text(json.dumps({**self.meta, "features": self.features}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, stem: Path) -> "BucketRegressor":
        import xgboost as xgb

        meta = json.loads(Path(f"{stem}.json").read_text())
        model = xgb.XGBRegressor()
        model.load_model(f"{stem}.ubj")
        return cls(model, meta.pop("features"), meta)


def fit_bucket(X_tr: pd.DataFrame, y_tr: np.ndarray, in_bucket_tr: np.ndarray, X_va: pd.DataFrame, y_va: np.ndarray,
               in_bucket_va: np.ndarray, features: list[str], p: XgbConfig, bucket: int) -> BucketRegressor:
    """Fit bucket `bucket`'s regressor on log1p likes. in_bucket_*: boolean masks of rows in the bucket;
    `p`: params regress_within_bucket.xgb."""
    import xgboost as xgb

    fallback = int(in_bucket_tr.sum()) < int(p.min_rows)
    tr = np.ones(len(y_tr), bool) if fallback else in_bucket_tr
    va = np.ones(len(y_va), bool) if fallback else in_bucket_va
    params = {**p.xgb_params(), "reg_lambda": float(p.reg_lambda)}
    use_es = int(va.sum()) >= int(p.min_val_rows)
    if use_es:
        params["early_stopping_rounds"] = int(p.early_stopping_rounds)
    model = xgb.XGBRegressor(**params)
    Xt = X_tr.loc[tr, features].astype(float)
    fit_kw = {"verbose": False}
    if use_es:
        fit_kw["eval_set"] = [(X_va.loc[va, features].astype(float), y_va[va])]
    model.fit(Xt, y_tr[tr], **fit_kw)
    resid = y_tr[tr] - np.clip(model.predict(Xt), 0, None)
    meta = {"bucket": bucket, "fallback_all_rows": bool(fallback), "n_train": int(tr.sum()), "n_val": int(va.sum()),
            "early_stopping": use_es, "best_iteration": int(getattr(model, "best_iteration", params["n_estimators"] - 1) or 0),
            "smearing": float(np.mean(np.exp(resid))), "train_rmse_log1p": float(np.sqrt(np.mean(resid**2)))}
    if use_es:
        pv = np.clip(model.predict(X_va.loc[va, features].astype(float)), 0, None)
        meta["val_rmse_log1p"] = float(np.sqrt(np.mean((y_va[va] - pv) ** 2)))
    return BucketRegressor(model, features, meta)


def fit_fixed_trees(X: pd.DataFrame, buckets: np.ndarray, features: list[str], p: XgbConfig, trees: list[int],
                    gate_trees: int | None) -> tuple[list[BucketRegressor], "BucketGate | None"]:
    """Bucket regressors (and the tabular gate, where `gate_trees` is given) fitted on every row of `X`
    with tree counts chosen elsewhere (a validated run's best iterations): no early stopping, as no row
    of X is held out. Used where the rows it trains on are all there is (the deploy fit, the
    brand-grouped calibration folds)."""
    y, fixed = np.log1p(X["likes"].to_numpy(float)), replace(p, min_val_rows=int(np.iinfo(np.int32).max))
    none = X.iloc[:0]
    regs = [fit_bucket(X, y, buckets == k, none, y[:0], np.zeros(0, bool), features, replace(fixed, n_estimators=n), k)
            for k, n in enumerate(trees)]
    gate = None if gate_trees is None else BucketGate.fit(X, buckets, none, buckets[:0], features, len(trees),
                                                         replace(fixed, n_estimators=gate_trees))
    return regs, gate


def fit_validated(tr: pd.DataFrame, va: pd.DataFrame, features: list[str], p: dict, n_buckets: int) -> tuple[list[BucketRegressor], "BucketGate"]:
    """A regime's bucket regressors and tabular gate fitted on `tr` and early-stopped on `va` (feature tables
    with likes and bucket), as regress_within_bucket and combine_likes fit them; `p`: their xgb params."""
    y_tr, y_va = np.log1p(tr["likes"].to_numpy(float)), np.log1p(va["likes"].to_numpy(float))
    b_tr, b_va = tr["bucket"].to_numpy(), va["bucket"].to_numpy()
    regs = [fit_bucket(tr, y_tr, b_tr == k, va, y_va, b_va == k, features, p, k) for k in range(n_buckets)]
    return regs, BucketGate.fit(tr, b_tr, va, b_va, features, n_buckets, p)


def bucket_parts(regs: list[BucketRegressor], gate: "BucketGate", X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the gate's bucket probabilities, each bucket's log1p prediction, the smearing factors) of `X`: what
    combine and intervals.Intervals read."""
    return gate.predict(X), np.stack([r.predict_log(X) for r in regs], 1), np.array([r.meta["smearing"] for r in regs])


def combine(probs: np.ndarray, preds_log: np.ndarray, smearing: np.ndarray, mode: str, smear: bool) -> np.ndarray:
    """Final likes from bucket probabilities (n, K) and each bucket's log1p prediction (n, K).

    argmax: the predicted bucket's regressor. mixture: the probability-weighted mixture, taken in
    log space (the metric's space) and back-transformed with the probability-weighted smearing.
    """
    s = smearing if smear else np.ones_like(smearing)
    if mode == "argmax":
        k = probs.argmax(1)
        z, f = preds_log[np.arange(len(k)), k], s[k]
    elif mode == "mixture":
        z, f = (probs * preds_log).sum(1), probs @ s
    else:
        raise ValueError(f"regress_within_bucket.final: unknown mode {mode!r} (argmax | mixture)")
    return np.clip(f * np.exp(z) - 1, 0, None)


class BucketGate:
    """Bucket probabilities for the final combination: a multi-class XGBoost over the tabular
    features *including* the transformer's probabilities (stacking), trained without class weights
    and early-stopped on val, so its probabilities are calibrated for mixing. With
    `regress_within_bucket.gate: classifier` the transformer's own probabilities are used instead."""

    def __init__(self, booster, features: list[str], meta: dict):
        self.booster, self.features, self.meta = booster, features, meta

    @classmethod
    def fit(cls, X_tr: pd.DataFrame, b_tr: np.ndarray, X_va: pd.DataFrame, b_va: np.ndarray, features: list[str],
            num_class: int, p: XgbConfig) -> "BucketGate":
        import xgboost as xgb

        params = {"objective": "multi:softprob", "num_class": num_class, "eta": float(p.learning_rate),
                  "max_depth": int(p.max_depth), "min_child_weight": float(p.min_child_weight),
                  "subsample": float(p.subsample), "colsample_bytree": float(p.colsample_bytree),
                  "lambda": float(p.reg_lambda), "tree_method": "hist", "seed": int(p.seed),
                  "nthread": int(p.num_threads), "eval_metric": "mlogloss"}
        dtr = xgb.DMatrix(X_tr[features].astype(float), label=b_tr)
        kw = {}
        if len(b_va) >= int(p.min_val_rows):
            kw = {"evals": [(xgb.DMatrix(X_va[features].astype(float), label=b_va), "val")],
                  "early_stopping_rounds": int(p.early_stopping_rounds), "verbose_eval": False}
        booster = xgb.train(params, dtr, num_boost_round=int(p.n_estimators), **kw)
        best = int(getattr(booster, "best_iteration", int(p.n_estimators) - 1)) if kw else int(p.n_estimators) - 1
        return cls(booster, features, {"best_iteration": best, "num_class": num_class})

    def set_threads(self, n: int) -> None:
        self.booster.set_param({"nthread": n})

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        # inplace_predict: the same trees and values as a DMatrix, without building one per call
        out = self.booster.inplace_predict(feature_matrix(X, self.features), iteration_range=(0, self.meta["best_iteration"] + 1))
        return np.asarray(out).reshape(len(X), -1)

    def save(self, stem: Path) -> None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(f"{stem}.ubj")
        Path(f"{stem}.json").write_text(json.dumps({**self.meta, "features": self.features}, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, stem: Path) -> "BucketGate":
        import xgboost as xgb

        meta = json.loads(Path(f"{stem}.json").read_text())
        booster = xgb.Booster()
        booster.load_model(f"{stem}.ubj")
        return cls(booster, meta.pop("features"), meta)
