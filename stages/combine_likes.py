"""combine_likes: per regime, the final likes from the classifier's bucket probabilities and the
bucket regressors: the predicted bucket's regressor (argmax) and the probability-weighted mixture,
each with and without smearing; plots; the bundle the `tweetsim predict-likes` CLI loads.

Writes data/predictions/likes/bucket_xgb_{argmax,mixture}[_nosmear].parquet (val + test rows),
plots/likes/pred_vs_actual.csv, plots/likes/confusion.csv (test rows of every regime),
metrics/like_buckets.json, models/likes/bundle.json and models/likes/intervals/<regime>.json (conformal
ranges calibrated on the regime's val rows, tweetsim/likes/intervals.py; the CLI's variant's predictions get
`pred_low, pred_high`).
usage: python stages/combine_likes.py [params.yaml] [data] [models] [plots] [metrics]
"""

from tweetsim.apps.entry import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes.artefacts import BUNDLE_PARAMS, Layout, classifier_params, tree_features, write_json
from tweetsim.likes.intervals import Intervals, brand_fold_rows
from tweetsim.config.params import load_params
from tweetsim.likes.regressor import BucketGate, BucketRegressor, combine

VARIANTS = [(mode, smear) for mode in ("argmax", "mixture") for smear in (True, False)]


def name_of(mode: str, smear: bool) -> str:
    return f"bucket_xgb_{mode}" + ("" if smear else "_nosmear")


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models",
         plots_dir: str = "plots/likes", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p, pc = params["regress_within_bucket"], classifier_params(params)
    edges = [str(e) for e in pc["bucket_edges"]]
    data, models = Path(data_dir), Path(models_dir)
    layout = Layout(models)
    feats = pd.read_parquet(data / "likes" / "features.parquet")
    pi = params["interval"]
    brands = pd.read_parquet(data / "tweets.parquet", columns=["source", "id", "company"])
    preds = {name_of(*v): [] for v in VARIANTS}
    scatter, confusion, summary = [], [], {}
    names = tree_features(feats.columns, p["xgb"])
    for regime in params["split"]["regimes"]:
        fr = feats[feats["regime"] == regime]
        f = fr[fr["side"].isin(["val", "test"])].reset_index(drop=True)
        regs = [BucketRegressor.load(layout.regressor(e, regime)) for e in edges]
        clf_probs = f[[f"p_bucket{k}" for k in range(len(edges))]].to_numpy(float)
        if p["gate"] == "tabular":
            tr, va = fr[fr["side"] == "train"], fr[fr["side"] == "val"]
            gate = BucketGate.fit(tr, tr["bucket"].to_numpy(), va, va["bucket"].to_numpy(), names, len(edges), p["xgb"])
            gate.save(layout.gate(regime))
            probs = gate.predict(f)
        elif p["gate"] == "classifier":
            probs = clf_probs
        else:
            raise SystemExit(f"combine_likes: regress_within_bucket.gate must be tabular or classifier, not {p['gate']!r}")
        z = np.stack([r.predict_log(f) for r in regs], 1)
        smear = np.array([r.meta["smearing"] for r in regs])
        summary[regime] = {"smearing": {e: float(s) for e, s in zip(edges, smear)},
                           "fallback_buckets": [e for e, r in zip(edges, regs) if r.meta["fallback_all_rows"]]}
        test = (f["side"] == "test").to_numpy()
        truth = f.loc[test, "bucket"].to_numpy()
        summary[regime]["test_bucket_accuracy"] = {"classifier": float(np.mean(clf_probs[test].argmax(1) == truth)),
                                                   "final": float(np.mean(probs[test].argmax(1) == truth))}
        y = np.log1p(f["likes"].to_numpy(float))
        final = (p["final"], bool(p["smearing"]))
        point, val = combine(probs, z, smear, *final), (f["side"] == "val").to_numpy()
        cal = (f.loc[val, "likes"].to_numpy(float), point[val], probs[val], z[val])
        source = f"{regime} val rows"
        if regime in pi["brand_folds_regimes"]:  # more held-out brands than val has: the train rows' brand folds
            tr = fr[fr["side"] == "train"].reset_index(drop=True)
            groups = tr[["source", "id"]].merge(brands, on=["source", "id"], how="left")["company"].fillna("").to_numpy()
            folds = brand_fold_rows(tr, groups, names, p["xgb"], [r.meta["best_iteration"] + 1 for r in regs],
                                    gate.meta["best_iteration"] + 1 if p["gate"] == "tabular" else None,
                                    int(pi["brand_folds"]), *final)
            cal = tuple(np.concatenate([a, b]) for a, b in zip(cal, folds))
            source += f" + {int(pi['brand_folds'])} brand folds of its train rows"
        ranges = Intervals.calibrate(*cal, pi, source)
        ranges.save(layout.intervals(regime))
        low, high = ranges.apply(point, probs, z)
        for mode, sm in VARIANTS:
            pred = combine(probs, z, smear, mode, sm)
            frame = pd.DataFrame({"regime": regime, "source": f["source"], "id": f["id"], "pred_likes": pred})
            if (mode, sm) == final:
                frame["pred_low"], frame["pred_high"] = low, high
            preds[name_of(mode, sm)].append(frame)
            summary[regime][f"{name_of(mode, sm)}_test_rmse_log1p"] = float(np.sqrt(np.mean((np.log1p(pred[test]) - y[test]) ** 2)))
            if (mode, sm) == final:
                scatter.append(pd.DataFrame({"regime": regime, "actual_log1p": y[test].round(4),
                                             "predicted_log1p": np.log1p(pred[test]).round(4)}))
        confusion.append(pd.DataFrame({"regime": regime, "actual_bucket": f.loc[test, "bucket"].map(lambda k: edges[k]),
                                       "predicted_bucket": [edges[k] for k in probs[test].argmax(1)]}))
        print(f"combine_likes {regime}: " + ", ".join(
            f"{name_of(m, s)} {summary[regime][name_of(m, s) + '_test_rmse_log1p']:.3f}" for m, s in VARIANTS)
            + " (test log1p-RMSE; evaluate gives the full table)")
    out = data / "predictions" / "likes"
    out.mkdir(parents=True, exist_ok=True)
    for name, parts in preds.items():
        pd.concat(parts, ignore_index=True).to_parquet(out / f"{name}.parquet", index=False)
    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    pd.concat(scatter, ignore_index=True).to_csv(Path(plots_dir) / "pred_vs_actual.csv", index=False)
    pd.concat(confusion, ignore_index=True).to_csv(Path(plots_dir) / "confusion.csv", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "like_buckets.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    bundle = {"regime": p["cli_regime"], "final": p["final"], "smearing": bool(p["smearing"]), "edges": edges, "gate": p["gate"],
              "history": p["cli_history"],
              "params": {k: pc[k] for k in BUNDLE_PARAMS}}
    if bundle["regime"] not in params["split"]["regimes"]:
        raise SystemExit(f"combine_likes: regress_within_bucket.cli_regime {bundle['regime']!r} is not in split.regimes")
    write_json(layout.bundle, bundle)


if __name__ == "__main__":
    main(*sys.argv[1:])
