"""The deploy fit: the likes models refitted on every labelled row (stage deploy_likes).

The regimes choose the settings on rows held out from training; the deploy fit then trains the
classifier, the bucket regressors and the tabular gate once more on every row with likes, with the
classifier's steps and each model's trees taken from the regime named by `deploy_likes.settings_from`
(their early-stopped best step / iteration, recorded in the regime's model files), with no early
stopping of its own. It reuses fit.fit_regime: every row is a training row of a one-sided
"regime", so the account and brand history (shifted on its rows, over every labelled row for new
ones) and the context come from every labelled row.

Its ranges are the regimes' conformal quantiles (tweetsim/likes/intervals.py): a deployed model has no
held-out rows of its own, so no figure of it can be measured on its rows; evaluate's per-regime
tables are the measure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tweetsim.likes import features as F
from tweetsim.data.sides import join_side_tables
from tweetsim.likes.fit import embed_rows, fit_regime
from tweetsim.likes.artefacts import META, Layout, classifier_params, read_bundle, read_training, write_json
from tweetsim.likes.intervals import Intervals
from tweetsim.config.params import ParamsError
from tweetsim.likes.regressor import BucketRegressor, fit_fixed_trees
from tweetsim.data.schema import read_tweets

SIDE = "classifier"  # fit_regime's side column and folder name: models/likes/deploy/classifier


def labelled_rows(tweets: Path, captions: Path, ocr: Path, p: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(every row with likes, in train_like_classifier's order and with its media text; organiser side
    statistics; context rows of every tweet), as train_like_classifier builds them, without the splits."""
    table = join_side_tables(read_tweets(tweets), captions if p["use_captions"] else None, ocr if p["use_ocr"] else None)
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


def fit_deploy(params: dict, tweets: Path, captions: Path, ocr: Path, models: Path, progress: bool = True) -> dict:
    """Fit on the rows of `tweets` (with the media stages' `captions` and `ocr` files) into
    models/likes/deploy/ and return its bundle (also written there as bundle.json)."""
    p, pr, d = classifier_params(params), params["regress_within_bucket"], params["deploy_likes"]
    regimes = params["split"]["regimes"]
    src = d["settings_from"]
    for key, regime in [("settings_from", src), *((f"intervals.{k}", v) for k, v in d["intervals"].items() if v)]:
        if regime not in regimes:
            raise ParamsError(f"deploy_likes.{key}: {regime!r} is not in split.regimes {regimes}")
    layout = Layout(models)
    base = read_bundle(layout.bundle, "combine_likes")  # final mode, smearing, gate, CLI params
    edges, gate = [str(e) for e in p["bucket_edges"]], base["gate"] == "tabular"
    s = validated_settings(models, src, edges, gate)
    out = layout.deploy
    sup, side_stats, context = labelled_rows(tweets, captions, ocr, p)
    emb = embed_rows(sup, p)
    # one evaluation, at the last step: the kept checkpoint is the last one (nothing early-stops on its own rows)
    steps = s["classifier_steps"]
    # its rows' classifier probabilities and history are built as in the regime it takes its settings from
    like = {k: [*(p.get(k) or []), SIDE] if src in (p.get(k) or []) else [] for k in ("crossfit_regimes", "history_crossfit_regimes")}
    feats, _ = fit_regime(sup.assign(**{SIDE: "train"}), SIDE, {**p, **like, "max_steps": steps, "eval_every": steps}, out, emb,
                          side_stats, context, progress=progress)
    names = [c for c in feats.columns if c not in META and c not in pr["xgb"]["drop_features"]]
    regs, gate_model = fit_fixed_trees(feats, feats["bucket"].to_numpy(), names, pr["xgb"], [s["trees"][e] for e in edges],
                                       s["gate_trees"] if gate else None)
    for e, reg in zip(edges, regs):
        reg.save(out / "regressor" / e)
    if gate_model is not None:
        gate_model.save(out / "gate")
    known = Intervals.load(layout.intervals(d["intervals"]["known_brand"]))
    new = d["intervals"].get("new_brand")
    Intervals.for_deploy(known, Intervals.load(layout.intervals(new)) if new else None
                         ).save(out / "intervals.json")
    rel = lambda q: q.relative_to(models).as_posix()  # noqa: E731
    bundle = {**base, "regime": "deploy", "history": "all", "settings_from": src, "n_rows": int(len(sup)), **s,
              "paths": {"classifier": rel(out / SIDE), "regressors": [rel(out / "regressor" / e) for e in edges],
                        "gate": rel(out / "gate") if gate else None, "intervals": rel(out / "intervals.json")}}
    write_json(out / "bundle.json", bundle)
    return bundle
