"""The backtest of the served path (stage backtest_likes): within each regime, the deploy recipe (the
router's route fits, likes/deploy.py) is fitted on that regime's training rows only and its held-out
rows are predicted through the router, exactly as `tweetsim predict-likes` predicts a file.

- Val rows are predicted with the account and brand history of the training rows; each route's
  ranges are calibrated on its val rows (split conformal; every route's val rows together when a
  route has fewer than `deploy_likes.min_calibration_rows`). In the regimes of
  `interval.brand_folds_regimes` the new_brand route also calibrates on its training rows in
  brand-grouped folds (trees refitted without the fold's brands, intervals.brand_fold_rows): a few
  val brands are too few to say how wrong a new brand can be.
- Test rows are predicted with the history of every labelled row known before them (train and val,
  as a regime's own models see them), with those ranges.

So a test row's brand (unseen_brand) and later rows (unseen_time) never reach the models it is
scored with, and a row's route is decided from the rows known at its time. The route models take the
regime's own validated tree counts (its val rows early-stopped them; its test rows never did).
Writes the predictions of val and test rows (regime, source, id, side, route, reason, pred_likes,
pred_low, pred_high) and the calibration rows (val rows and brand folds, `held_out`: likes, prediction,
gate probabilities and bucket log predictions) that the deploy fit's ranges come from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes import features as F
from tweetsim.likes.artefacts import Layout, read_bundle
from tweetsim.likes.deploy import (LikesParams, calibrate_route, fit_route, labelled_rows, route_recipes, save_intervals,
                                   validated_settings)
from tweetsim.likes.intervals import brand_fold_rows
from tweetsim.likes.router import ROUTES, Router, route_rows, write_index


def _predict(router: Router, rows: pd.DataFrame, ranged: bool) -> pd.DataFrame:
    likes = router.predict_with_range(rows)[0] if ranged else router.predict(rows)
    routes, reasons = router.last_routes
    out = pd.DataFrame({"source": rows["source"].to_numpy(), "id": rows["id"].to_numpy(), "route": routes.astype(str),
                        "reason": reasons, "likes": rows["likes"].to_numpy(float), "pred_likes": likes})
    if ranged:
        out["pred_low"], out["pred_high"] = router.ranges
    else:
        for k in range(router.last["probs"].shape[1]):
            out[f"p{k}"], out[f"z{k}"] = router.last["probs"][:, k], router.last["z"][:, k]
    return out


def _brand_folds(fit: tuple, rows: pd.DataFrame, lp: LikesParams, base: dict, settings: dict) -> pd.DataFrame:
    """Calibration rows of the new_brand route from its training `rows` in brand-grouped folds."""
    _, feats, names = fit
    edges = [str(e) for e in lp.classifier.bucket_edges]
    likes, point, probs, z = brand_fold_rows(feats, rows["company"].fillna("").to_numpy(), names, lp.buckets.xgb,
                                             [settings["trees"][e] for e in edges], settings.get("gate_trees"),
                                             int(lp.interval.brand_folds), base["final"], bool(base["smearing"]))
    out = pd.DataFrame({"source": rows["source"].to_numpy(), "id": rows["id"].to_numpy(), "route": "new_brand",
                        "reason": "training row in a brand-grouped fold", "likes": likes, "pred_likes": point})
    for k in range(probs.shape[1]):
        out[f"p{k}"], out[f"z{k}"] = probs[:, k], z[:, k]
    return out.assign(held_out="brand_fold")


def backtest_regime(regime: str, sup: pd.DataFrame, emb: np.ndarray, side_stats: pd.DataFrame, context: pd.DataFrame,
                    lp: LikesParams, models: Path, threads: int = 2, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions of `regime`'s val and test rows through its router, val calibration rows): `sup` is
    every labelled row with the regime's side column, `emb` their embeddings."""
    p, d = lp.classifier, lp.deploy
    recipes = route_recipes(d, lp.regimes)
    if regime in (p.hide_like_stats or []):  # this regime's world has no like statistics: a held-out
        # brand's, computed by the organisers over its likes, would leak them (features.hide_like_stats)
        sup = F.hide_like_stats(sup)
        side_stats = side_stats.drop(columns=[c for c in F.LIKE_STATS if c in side_stats])
    base = read_bundle(Layout(models).bundle, "combine_likes")
    edges = [str(e) for e in p.bucket_edges]
    settings = validated_settings(models, regime, edges, base["gate"] == "tabular")
    side = sup[regime].to_numpy()
    tr, va, te = side == "train", side == "val", side == "test"
    train, val, test, known = sup[tr], sup[va], sup[te], sup[tr | va]
    tables = {k: {lv: F.history_table(rows, lv) for lv in F.LEVELS} for k, rows in (("val", train), ("test", known))}
    stats_route = bool(d.stats_route)
    needed = set(route_rows(val, tables["val"], side_stats, stats_route)[0]) | set(route_rows(test, tables["test"], side_stats, stats_route)[0])
    blend = float(d.brand_blend)
    if "brand" in needed and blend < 1:  # the brand route's answer blends in the account route's model
        needed.add("account")
    routes = [r for r in ROUTES if r in needed]
    with tempfile.TemporaryDirectory(prefix=f"backtest-{regime}-") as tmp:
        folder = Path(tmp)
        fits = {r: fit_route(train, emb[tr], side_stats, context, lp, base, recipes[r], settings, folder / r, progress)
                for r in routes}
        write_index(folder, routes, {"n_rows": int(tr.sum()), "backtest": regime, "stats_route": stats_route, "brand_blend": blend})
        router = Router(folder, threads)
        router.set_history(tables["val"])
        cal = _predict(router, val, ranged=False).assign(held_out="val")
        if "new_brand" in fits and regime in (lp.interval.brand_folds_regimes or []):
            cal = pd.concat([cal, _brand_folds(fits["new_brand"], train, lp, base, settings)], ignore_index=True)
        for r in routes:
            save_intervals(folder / r, calibrate_route(cal.assign(regime=regime), r, [regime], lp.interval,
                                                       int(d.min_calibration_rows)))
        router = Router(folder, threads)  # reloaded with the ranges
        router.set_history(tables["test"])
        pred = _predict(router, test, ranged=True)
    val_out = cal.loc[cal["held_out"] == "val", ["source", "id", "route", "reason", "pred_likes"]].assign(pred_low=np.nan, pred_high=np.nan)
    preds = pd.concat([val_out.assign(side="val"), pred.drop(columns="likes").assign(side="test")], ignore_index=True)
    return preds.assign(regime=regime), cal.assign(regime=regime)


def backtest(params: dict, tweets: Path, captions: Path, ocr: Path, splits: Path, models: Path, threads: int = 2,
             progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """backtest_regime of every regime of split.regimes: (predictions, calibration rows). `params`: the
    loaded params.yaml (read as likes.config.LikesParams)."""
    from tweetsim.likes.fit import embed_rows

    lp = LikesParams.from_params(params)
    sup, side_stats, context = labelled_rows(tweets, captions, ocr, lp.classifier)
    sup = sup.merge(pd.read_parquet(splits), on=["source", "id"], how="left", validate="one_to_one")
    emb = embed_rows(sup, lp.inference)
    parts = [backtest_regime(r, sup, emb, side_stats, context, lp, models, threads, progress) for r in lp.regimes]
    cols = ["regime", "side", "source", "id", "route", "reason", "pred_likes", "pred_low", "pred_high"]
    preds = pd.concat([a for a, _ in parts], ignore_index=True)[cols]
    cal = pd.concat([b for _, b in parts], ignore_index=True)
    return preds, cal[["regime", "source", "id", "route", *[c for c in cal.columns if c not in ("regime", "source", "id", "route", "reason")]]]
