"""Compare the clock encodings the trees may read (regress_within_bucket.xgb.time_features: raw | cyclic |
both) on val and test of every regime: each regime's bucket regressors and tabular gate are refitted on
its training rows of data/likes/features.parquet as regress_within_bucket and combine_likes fit them, one
set per encoding, and scored by log1p-RMSE; the time effect's backtest (likes/timeeffect.py) of each on
the test rows says whether its hour and weekday effects stay inside the observed intervals.

usage: python bench/time_features.py [params.yaml] [data] [out json]
Needs the artefacts of `dvc repro` (data/likes/features.parquet, data/tweets.parquet).
Writes bench/results/time_features.json with the CPU named.
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from _results import cpu
from tweetsim.config.params import load_params
from tweetsim.likes import features as F
from tweetsim.likes.artefacts import tree_features
from tweetsim.likes.config import XgbConfig
from tweetsim.likes.regressor import bucket_parts, combine, fit_validated
from tweetsim.likes.timeeffect import time_effect


def fit_predict(f: pd.DataFrame, names: list[str], p: dict, xgb: XgbConfig, n_buckets: int) -> np.ndarray:
    """Predicted likes of `f`'s val and test rows from bucket regressors and a gate fitted on its train rows."""
    tr, va = f[f["side"] == "train"].reset_index(drop=True), f[f["side"] == "val"].reset_index(drop=True)
    regs, gate = fit_validated(tr, va, names, xgb, n_buckets)
    probs, z, smear = bucket_parts(regs, gate, f[f["side"] != "train"].reset_index(drop=True))
    return combine(probs, z, smear, p["final"], bool(p["smearing"]))


def main(params_path: str = "params.yaml", data_dir: str = "data", out: str = "bench/results/time_features.json") -> None:
    params = load_params(params_path)
    p = params["regress_within_bucket"]
    data = Path(data_dir)
    feats = pd.read_parquet(data / "likes" / "features.parquet")
    tweets = pd.read_parquet(data / "tweets.parquet", columns=["source", "id", "date", "username"])
    feats = feats.merge(tweets, on=["source", "id"], how="left", validate="many_to_one")
    clock = F.base_features(feats)  # the clock columns of the library's feature code, from each row's date
    feats = feats.assign(**{c: clock[c].to_numpy() for c in clock if c not in feats})
    n_buckets = len(params["train_like_classifier"]["bucket_edges"])
    res = {"cpu": cpu()["model"], "cores": cpu()["cores"], "params": params_path, "metric": "log1p-RMSE of the regime models (bucket regressors + tabular gate, "
           f"final {p['final']}, smearing {p['smearing']})", "modes": {}}
    for mode in F.TIME_FEATURES:
        xgb = replace(XgbConfig.from_params(p["xgb"]), time_features=mode)
        names = tree_features([c for c in feats.columns if c not in ("date", "username")], xgb)
        t0 = time.perf_counter()
        res["modes"][mode] = {}
        for regime in params["split"]["regimes"]:
            f = feats[feats["regime"] == regime].reset_index(drop=True)
            held = f[f["side"] != "train"].reset_index(drop=True)
            pred = fit_predict(f, names, p, xgb, n_buckets)
            r = {}
            for side in ("val", "test"):
                s = (held["side"] == side).to_numpy()
                r[f"{side}_rmse_log1p"] = float(np.sqrt(np.mean((np.log1p(pred[s]) - F.log_likes(held.loc[s, "likes"])) ** 2)))
            te = (held["side"] == "test").to_numpy()
            effect = time_effect(held[te].assign(pred_likes=pred[te]))
            r.update({f"{g}_inside": effect[g]["inside"] for g in ("hour_bucket", "weekday")})
            r.update({f"{g}_steps_inside": effect[g]["steps_inside"] for g in ("hour_bucket", "weekday", "hour")})
            res["modes"][mode][regime] = r
            print(f"{mode:6s} {regime:12s} " + " ".join(f"{k} {v:.3f}" for k, v in r.items()), flush=True)
        res["modes"][mode]["seconds"] = round(time.perf_counter() - t0, 1)
    regimes = params["split"]["regimes"]
    res["mean_rmse_log1p"] = {m: {s: float(np.mean([res["modes"][m][r][f"{s}_rmse_log1p"] for r in regimes])) for s in ("val", "test")}
                              for m in F.TIME_FEATURES}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    print(f"{out}: mean over regimes " + "; ".join(f"{m} val {v['val']:.4f} test {v['test']:.4f}" for m, v in res["mean_rmse_log1p"].items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
