"""The deploy fit: one likes model per route (likes/router.py), each refitted on every labelled row
(stage deploy_likes).

The regimes choose the settings on rows held out from training; a route fit then trains the
classifier, the bucket regressors and the tabular gate once more on its rows, with the classifier's
steps and each model's trees taken from a validated regime's run (their early-stopped best step /
iteration, recorded in the regime's model files; `deploy_likes.routes.<route>.settings_from`) and no
early stopping of its own. It reuses fit.fit_regime: every row is a training row of a one-sided
"regime", so the history (shifted or cross-fitted on its rows) and the context come from every
labelled row; the route's `hide` levels (and with `hide_like_stats` the organisers' like statistics)
are blanked on every row.

A route's ranges are conformal quantiles of the backtest's held-out rows of that route
(likes/backtest.py): later rows of known accounts, new accounts, held-out brands
(`deploy_likes.intervals`). No figure of the deploy fit can come from its own rows; the backtest,
which runs this same recipe inside each regime, is its measure.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.config.params import ParamsError
from tweetsim.data.schema import read_tweets
from tweetsim.data.sides import join_side_tables
from tweetsim.data.splits import SplitConfig
from tweetsim.likes import features as F
from tweetsim.likes.artefacts import Layout, read_bundle, read_training, tree_features, write_json
from tweetsim.likes.config import (BucketsConfig, ClassifierConfig, DeployConfig, InferenceConfig, IntervalConfig,
                                   RouteRecipe)
from tweetsim.likes.fit import fit_regime
from tweetsim.likes.intervals import Intervals
from tweetsim.likes.lookalike import LookAlike
from tweetsim.likes.regressor import BucketRegressor, fit_fixed_trees
from tweetsim.likes.router import ROUTES, write_index
from tweetsim.text.runtime import EncoderConfig

SIDE = "classifier"  # fit_regime's side column and folder name: <route folder>/classifier


@dataclass(frozen=True)
class LikesParams:
    """The typed sections the deploy fit and the backtest read of a loaded params.yaml."""

    classifier: ClassifierConfig
    encoder: EncoderConfig
    buckets: BucketsConfig
    interval: IntervalConfig
    deploy: DeployConfig
    regimes: list

    @classmethod
    def from_params(cls, params: dict) -> "LikesParams":
        return cls(ClassifierConfig.from_params(params["train_like_classifier"]), EncoderConfig.from_params(params["encoder"]),
                   BucketsConfig.from_params(params["regress_within_bucket"]), IntervalConfig.from_params(params["interval"]),
                   DeployConfig.from_params(params["deploy_likes"]), list(SplitConfig.from_params(params["split"]).regimes))

    @property
    def inference(self) -> InferenceConfig:
        return InferenceConfig.of(self.classifier, self.encoder)


def labelled_rows(tweets: Path, captions: Path, ocr: Path, clf: ClassifierConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(every row with likes, in train_like_classifier's order and with its media text; organiser side
    statistics; context rows of every tweet), as train_like_classifier builds them, without the splits."""
    table = join_side_tables(read_tweets(tweets), captions if clf.use_captions else None, ocr if clf.use_ocr else None)
    sup = table[table["likes"].notna()].sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    return sup, F.side_stats_table(table), F.context_rows(table)


def validated_settings(models: Path, regime: str, edges: list[str], gate: bool) -> dict:
    """The classifier's best step and each tree model's tree count in `regime`'s validated run."""
    layout = Layout(models)
    out = {"classifier_steps": int(read_training(layout.classifier(regime))["best_step"]),
           "trees": {e: BucketRegressor.load(layout.regressor(e, regime)).meta["best_iteration"] + 1 for e in edges}}
    if gate:
        out["gate_trees"] = int(json.loads(layout.gate(regime).with_suffix(".json").read_text())["best_iteration"]) + 1
    return out


def route_recipes(d: DeployConfig, regimes: list[str]) -> dict[str, RouteRecipe]:
    """deploy_likes.routes checked against router.ROUTES and split.regimes (`regimes`): {route: its recipe}."""
    routes = d.routes
    if sorted(routes) != sorted(ROUTES):
        raise ParamsError(f"deploy_likes.routes: needs exactly the routes {list(ROUTES)}, got {sorted(routes)}")
    for name, r in routes.items():
        if r.settings_from not in regimes:
            raise ParamsError(f"deploy_likes.routes.{name}.settings_from: {r.settings_from!r} is not in split.regimes {regimes}")
        if r.crossfit_level not in F.LEVELS:
            raise ParamsError(f"deploy_likes.routes.{name}.crossfit_level: {r.crossfit_level!r} is not one of {list(F.LEVELS)}")
        bad = [lv for lv in r.hide if lv not in F.LEVELS]
        if bad:
            raise ParamsError(f"deploy_likes.routes.{name}.hide: unknown levels {bad} (of {list(F.LEVELS)})")
    for name, froms in d.intervals.items():
        if name not in ROUTES or not froms or any(f not in regimes for f in froms):
            raise ParamsError(f"deploy_likes.intervals.{name}: needs a route of {list(ROUTES)} and regimes of "
                              f"split.regimes {regimes}, got {froms!r}")
    if sorted(d.intervals) != sorted(ROUTES):
        raise ParamsError(f"deploy_likes.intervals: needs every route {list(ROUTES)}, got {sorted(d.intervals)}")
    return dict(routes)


def fit_route(rows: pd.DataFrame, emb: np.ndarray, side_stats: pd.DataFrame, context: pd.DataFrame, lp: LikesParams,
              base: dict, recipe: RouteRecipe, settings: dict, out: Path, progress: bool = False) -> tuple[dict, pd.DataFrame, list[str]]:
    """Fit one route's models on every row of `rows` (labelled, with `emb` their embeddings) into `out`
    and return (its bundle (written as out/bundle.json without intervals; save_intervals adds them), the
    feature table of its rows (fit.fit_regime's), the trees' feature names).
    `base`: combine_likes' bundle (final mode, smearing, gate, params); `settings`: validated_settings."""
    p, xgb = lp.classifier, lp.buckets.xgb
    edges, gate = [str(e) for e in p.bucket_edges], base["gate"] == "tabular"
    src, steps = recipe.settings_from, settings["classifier_steps"]
    # its rows' classifier probabilities and history are built as in the regime it takes its settings from
    like = {k: [*(getattr(p, k) or []), SIDE] if src in (getattr(p, k) or []) else []
            for k in ("crossfit_regimes", "history_crossfit_regimes")}
    # one evaluation, at the last step: the kept checkpoint is the last one (nothing early-stops on its own rows)
    feats, _ = fit_regime(rows.assign(**{SIDE: "train"}), SIDE, replace(p, **like, max_steps=steps, eval_every=steps),
                          lp.encoder, out, emb, side_stats, context, progress=progress, hide=tuple(recipe.hide),
                          hide_like_stats=recipe.hide_like_stats, crossfit_level=recipe.crossfit_level)
    lookalike = None
    if recipe.lookalike:  # the look-alike brands' level: each training row's own brand left out
        la = lp.deploy.lookalike
        lookalike = LookAlike(la.k, la.shrink, la.max_words).fit(rows, rows["company"], rows["likes"])
        lookalike.save(out / "lookalike")
        feats = feats.assign(**lookalike.features(rows.reset_index(drop=True), rows["company"].fillna("").astype(str).to_numpy()))
    names = tree_features(feats.columns, xgb)
    regs, gate_model = fit_fixed_trees(feats, feats["bucket"].to_numpy(), names, xgb, [settings["trees"][e] for e in edges],
                                       settings["gate_trees"] if gate else None)
    for e, reg in zip(edges, regs):
        reg.save(out / "regressor" / e)
    if gate_model is not None:
        gate_model.save(out / "gate")
    bundle = {**base, "regime": "deploy", "route": out.name, "hide": list(recipe.hide), "hide_like_stats": recipe.hide_like_stats,
              "history": "all",
              "settings_from": src, "n_rows": int(len(rows)), **settings,
              "paths": {"classifier": SIDE, "regressors": [f"regressor/{e}" for e in edges],
                        "gate": "gate" if gate else None, "intervals": None,
                        "lookalike": "lookalike" if lookalike is not None else None}}
    write_json(out / "bundle.json", bundle)
    return bundle, feats, names


def save_intervals(folder: Path, ranges: Intervals) -> None:
    """A fitted route's conformal ranges, recorded in its bundle."""
    ranges.save(folder / "intervals.json")
    bundle = json.loads((folder / "bundle.json").read_text())
    write_json(folder / "bundle.json", {**bundle, "paths": {**bundle["paths"], "intervals": "intervals.json"}})


def calibrate_route(cal: pd.DataFrame, route: str, regimes: list[str], p: IntervalConfig, min_rows: int) -> Intervals:
    """`route`'s ranges from the backtest's held-out rows (backtest.calibration_rows) of `regimes`: that
    route's rows, or every route's rows of those regimes when it has fewer than `min_rows` (said in `from`)."""
    rows = cal[cal["regime"].isin(regimes)]
    own = rows[rows["route"] == route]
    source = f"{route} rows held out in the backtest of {'+'.join(regimes)}"
    if len(own) < min_rows:
        source = (f"every route's rows held out in the backtest of {'+'.join(regimes)}: {route} has {len(own)} "
                  f"(< deploy_likes.min_calibration_rows {min_rows})")
        own = rows
    k = sum(1 for c in cal.columns if c[0] == "p" and c[1:].isdigit())
    probs, z = own[[f"p{i}" for i in range(k)]].to_numpy(float), own[[f"z{i}" for i in range(k)]].to_numpy(float)
    return Intervals.calibrate(own["likes"].to_numpy(float), own["pred_likes"].to_numpy(float), probs, z, p, source)


def fit_deploy(params: dict, tweets: Path, captions: Path, ocr: Path, models: Path, calibration: Path,
               progress: bool = True) -> dict:
    """Fit every route on the rows of `tweets` (with the media stages' `captions` and `ocr` files) into
    models/likes/deploy/<route>/, its ranges from the backtest's `calibration` rows; returns router.json's dict.
    `params`: the loaded params.yaml (read as likes.config.LikesParams)."""
    from tweetsim.likes.fit import embed_rows

    lp = LikesParams.from_params(params)
    d = lp.deploy
    recipes = route_recipes(d, lp.regimes)
    layout = Layout(models)
    base = read_bundle(layout.bundle, "combine_likes")  # final mode, smearing, gate, CLI params
    edges, gate = [str(e) for e in lp.classifier.bucket_edges], base["gate"] == "tabular"
    sup, side_stats, context = labelled_rows(tweets, captions, ocr, lp.classifier)
    emb = embed_rows(sup, lp.inference)
    cal = pd.read_parquet(calibration)
    summary = {}
    for route in ROUTES:
        recipe = recipes[route]
        settings = validated_settings(models, recipe.settings_from, edges, gate)
        folder = layout.deploy / route
        b = fit_route(sup, emb, side_stats, context, lp, base, recipe, settings, folder, progress)[0]
        ranges = calibrate_route(cal, route, d.intervals[route], lp.interval, int(d.min_calibration_rows))
        save_intervals(folder, ranges)
        summary[route] = {**dataclasses.asdict(recipe), "trees": b["trees"],
                          "ranges_from": ranges.meta["groups"]["all"]["from"]}
    meta = {"n_rows": int(len(sup)), "recipes": summary, "stats_route": bool(d.stats_route), "brand_blend": float(d.brand_blend)}
    write_index(layout.deploy, list(ROUTES), meta)
    return meta
