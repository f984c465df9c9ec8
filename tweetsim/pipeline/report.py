"""The review-sized view of evaluate's metrics: the headline file (metrics/headline.json).

`metrics/likes.json` and `metrics/text.json` score every model on every metric in every regime
(hundreds of values), which is what an investigation needs and what a reviewer cannot read. The
headline (`metrics/headline.json`, written by evaluate) keeps, per regime, the models that are
served and the baselines they are judged against, on the figures the README's targets use:

    {regime: {"likes_served":   {"rmse_log1p", "high_low_accuracy"},   # the router's backtest
              "likes_regime_model": {...},      # the regime's own model on its own test rows
              "likes_median":   {...},          # constant training median
              "likes_account_median": {...},
              "text_served":    {"bleu1", "rougeL", "cider"},
              "text_retrieval": {...},
              "text_consensus_recent": {...},   # the strong baseline: the account's most central recent tweet
              "text_typical":   {...}},         # only in writer.typical_baseline_regimes
     "mixed": {"likes_served": {...}}}          # every regime's test rows, each through its regime's router

Keys name roles, not models, so that `dvc metrics diff` compares the served model with the served
model when a param changes which one that is; `served_models` says which ones they are, from the
params. Row counts are left out on purpose: they change only with the data, and a change of data
shows in every figure anyway.

The result tables of the README and docs/ are rendered from the same metrics files (pipeline/tables.py).
This module imports nothing else of tweetsim: it reads the params it needs (PARAMS) into its own
typed view, `ReportParams`, and the metrics as plain dicts.
"""

import functools
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

LIKES_FIGURES = ("rmse_log1p", "high_low_accuracy")
TEXT_FIGURES = ("bleu1", "rougeL", "cider")
# the baselines stage's outputs: the likes models every target is stated against, and retrieval
LIKES_BASELINES = ("median", "account_median")
TEXT_BASELINE = "retrieval"
STRONG_TEXT_BASELINE = "consensus_recent"  # the bar the served writer must clear in every regime
TYPICAL = "typical"   # select_text's single most typical tweet: a second baseline where the params say so
MIXED = "mixed"       # metrics/likes.json's block of every regime's test rows together

# every params key read here, in ReportParams' order; tests/test_report.py checks evaluate declares them in dvc.yaml
PARAMS = ("regress_within_bucket.final", "regress_within_bucket.smearing", "writer.reranker.enabled",
          "writer.typical_baseline_regimes", "evaluate.likes_models", "evaluate.text_models", "split.regimes")


@dataclass(frozen=True)
class ReportParams:
    """The params the headline and the tables read (PARAMS, in this order), each from the loaded params.yaml."""

    final: str                                 # regress_within_bucket.final
    smearing: bool                             # regress_within_bucket.smearing
    reranker_enabled: bool                     # writer.reranker.enabled
    typical_baseline_regimes: list | None      # writer.typical_baseline_regimes
    likes_models: list                         # evaluate.likes_models
    text_models: list                          # evaluate.text_models
    regimes: list                              # split.regimes

    @classmethod
    def from_params(cls, params: dict) -> "ReportParams":
        return cls(*(functools.reduce(lambda section, key: section[key], dotted.split("."), params) for dotted in PARAMS))

    @property
    def typical_regimes(self) -> set:
        return set(self.typical_baseline_regimes or [])


SERVED_LIKES = "served"  # backtest_likes' predictions: the router, as predict-likes runs it


def served_models(params: dict) -> dict[str, str]:
    """The likes model and the writer that are served, as named in evaluate's predictions.

    Likes: `served`, the backtest of the router (every regime's test rows through routes fitted on its
    training rows, as `tweetsim predict-likes` predicts); `likes_regime`: the regime's own model in
    combine_likes' `final` mode and `smearing` (its `name_of`: bucket_xgb_<final>[_nosmear]), each regime's
    model on its own test rows. Text: select_text's `reranked` when the reranker is enabled, else
    `consensus` (what `tweetsim generate` and the app load).
    """
    r = ReportParams.from_params(params)
    regime_model = f"bucket_xgb_{r.final}" + ("" if r.smearing else "_nosmear")
    text = "reranked" if r.reranker_enabled else "consensus"
    for kind, name, listed in (("likes", SERVED_LIKES, r.likes_models), ("likes", regime_model, r.likes_models),
                               ("text", text, r.text_models)):
        if name not in listed:
            raise ValueError(f"report: the served {kind} model '{name}' is not in evaluate.{kind}_models {listed}")
    return {"likes": SERVED_LIKES, "likes_regime": regime_model, "text": text}


def _pick(scores: dict, figures: tuple[str, ...], where: str) -> dict[str, float]:
    missing = [f for f in figures if f not in scores]
    if missing:
        raise KeyError(f"report: {where} has no {missing}")
    return {f: scores[f] for f in figures}


def headline(params: dict, likes: dict, text: dict) -> dict:
    """The headline dict from evaluate's likes and text results ({regime: {model: scores}} and
    {regime: {"all_rows": {model: scores}, ...}}, as in metrics/likes.json and metrics/text.json)."""
    served, r = served_models(params), ReportParams.from_params(params)
    typical_regimes = r.typical_regimes
    out = {}
    for regime in r.regimes:
        lr, tr = likes[regime], text[regime]["all_rows"]
        block = {"likes_served": _pick(lr[served["likes"]], LIKES_FIGURES, f"likes {regime} {served['likes']}"),
                 "likes_regime_model": _pick(lr[served["likes_regime"]], LIKES_FIGURES, f"likes {regime} {served['likes_regime']}")}
        for name in LIKES_BASELINES:
            block[f"likes_{name}"] = _pick(lr[name], LIKES_FIGURES, f"likes {regime} {name}")
        if served["text"] not in tr:
            raise KeyError(f"report: the served writer '{served['text']}' did not write every test row of {regime}")
        block["text_served"] = _pick(tr[served["text"]], TEXT_FIGURES, f"text {regime} {served['text']}")
        for name in (TEXT_BASELINE, STRONG_TEXT_BASELINE) + ((TYPICAL,) if regime in typical_regimes else ()):
            block[f"text_{name}"] = _pick(tr[name], TEXT_FIGURES, f"text {regime} {name}")
        out[regime] = block
    if MIXED in likes:
        out[MIXED] = {"likes_served": _pick(likes[MIXED][served["likes"]], LIKES_FIGURES, f"likes {MIXED}")}
    log.info("headline: served likes model %s, served writer %s", served["likes"], served["text"])
    return out
