"""The selecting writer of each regime fitted (stage select_text): its pool, reranker, choice rule and
kept edits, and its choices for the regime's val and test rows.

Per regime the pool is the training split's rows with content; the reranker is trained on up to
`writer.reranker.max_train_queries` training rows, whose pools are built as at prediction time (never
the row itself; only earlier tweets in `writer.past_only_regimes`; none of the row's own brand in
`writer.brand_held_out_regimes`), early-stopped on the val rows; on the val rows too,
`TweetWriter.tune` sets the choice rule and keeps each edit of `writer.edits`, by the smallest gain
over the better of retrieval (the `baselines` stage's tweet) and, in `writer.typical_baseline_regimes`,
the single most typical tweet. `regime_writer` builds a regime's writer and rows as the stage does
(bench/writer_signals.py measures the reranker's signals on them).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.data.schema import read_tweets
from tweetsim.data.sides import join_from
from tweetsim.data.splits import SplitConfig
from tweetsim.text import embed
from tweetsim.text.runtime import EncoderConfig
from tweetsim.writer import select as S
from tweetsim.writer.config import WriterConfig
from tweetsim.writer.pools import SOURCES
from tweetsim.writer.tweet_writer import TweetWriter, origin

log = logging.getLogger(__name__)

PREDICTIONS = ("consensus", "reranked", "oracle", "typical")  # data/predictions/text/<name>.parquet


def writer_table(data: Path) -> pd.DataFrame:
    """Every tweet with its splits and media text (`data`/tweets.parquet, splits.parquet, the side tables),
    in (source, id) order."""
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    return join_from(table, data).sort_values(["source", "id"], kind="stable").reset_index(drop=True)


def text_embedder(params: dict):
    """The sentence encoder the pools compare captions with (`writer.caption_similarity`), or None."""
    p = WriterConfig.from_params(params["writer"])
    return embed.embedder(p.embed_model, EncoderConfig.from_params(params["encoder"]), p.caption_similarity)


def regime_writer(table: pd.DataFrame, p: WriterConfig, regime: str, embed_fn) -> tuple[TweetWriter, dict[str, pd.DataFrame]]:
    """(the writer over the regime's training rows with content, {"train": its queries (a seeded draw of
    `reranker.max_train_queries`), "val", "test": the rows with content}) for `writer` params `p`."""
    side = table[regime]
    has_content = table["content"].notna() & (table["content"].astype(str).str.strip() != "")
    train_q = table[(side == "train") & has_content]
    writer = TweetWriter(train_q, p, context=table, embed_fn=embed_fn)
    cap = p.reranker.max_train_queries
    if cap and len(train_q) > cap:
        train_q = train_q.sample(n=cap, random_state=int(p.reranker.seed)).sort_values(["source", "id"])
    return writer, {"train": train_q, **{s: table[(side == s) & has_content] for s in ("val", "test")}}


def _lm_drafts(params: dict, adapter: Path, pool: pd.DataFrame, parts: dict) -> dict:
    """{split: per row [(draft, log-prob)]} for a seeded draw of `writer.lm.max_rows` rows of each
    split (the other rows get none), or {} with the LM off."""
    w = WriterConfig.from_params(params["writer"])
    lm = w.lm
    if int(lm.candidates) <= 0:
        return {}
    from tweetsim.writer.writers import lm_drafter

    drafter = lm_drafter(params, adapter, pool)
    out = {}
    for s, rows in parts.items():
        n = min(len(rows), int(lm.max_rows))
        chosen = sorted(rows.sample(n=n, random_state=int(w.reranker.seed)).index)
        got = dict(zip(chosen, drafter(rows.loc[chosen])))
        out[s] = [got.get(i, []) for i in rows.index]
        log.info(f"select_text: LM drafts for {n} of {len(rows)} {s} rows ({lm.candidates} samples each, {adapter})")
    return out


def _val_texts(retrieval: pd.DataFrame, regime: str, rows: pd.DataFrame) -> list[str]:
    """The retrieval baseline's tweet for each of `rows` (the regime's val rows), in their order."""
    got = retrieval[retrieval["regime"] == regime].set_index(["source", "id"])["pred_content"]
    keys = pd.MultiIndex.from_frame(rows[["source", "id"]])
    missing = keys.difference(got.index)
    if len(missing):
        raise ValueError(f"data/predictions/text/retrieval.parquet: {len(missing)} {regime} val rows have no retrieval "
                         f"tweet (first: {missing[0]}); rerun `dvc repro baselines`")
    return got.reindex(keys).fillna("").astype(str).tolist()


def _choices(writer: TweetWriter, regime: str, parts: dict, scored: dict, base: dict, typical: str) -> dict[str, list]:
    """{PREDICTIONS name: [the val rows' frame, the test rows']}: `regime,source,id,split,pred_content,origin,pool_size`."""
    picks = {s: {"consensus": S.choose(scored[s]), "reranked": S.choose(scored[s], writer.ranking(scored[s], base[s])),
                 "oracle": [int(np.argmax(x.label)) for x in scored[s]]} for s in ("val", "test")}
    preds = {name: [] for name in PREDICTIONS}
    for s in ("val", "test"):
        rows = parts[s]
        keys = pd.DataFrame({"regime": regime, "source": rows["source"].to_numpy(), "id": rows["id"].to_numpy(), "split": s})
        for name, pk in picks[s].items():
            kept = [] if name == "oracle" else writer.kept
            preds[name].append(keys.assign(
                pred_content=S.edited(writer.pool, rows, scored[s], pk, kept, writer.habits),
                origin=[origin(x, k) for x, k in zip(scored[s], pk)],
                pool_size=[len(x.texts) for x in scored[s]]))
        preds["typical"].append(keys.assign(pred_content=typical, origin="typical", pool_size=len(writer.pool.texts)))
    return preds


def fit_regime(regime: str, table: pd.DataFrame, params: dict, embed_fn, retrieval: pd.DataFrame,
               models: Path) -> tuple[dict[str, list], dict]:
    """One regime's writer fitted and saved to `models`/writer/<regime>/: ({PREDICTIONS name: its val and
    test frames}, the regime's entry of metrics/select_text.json, also saved in writer.json)."""
    p = WriterConfig.from_params(params["writer"])
    past_only = regime in (p.past_only_regimes or [])
    held_out = regime in (p.brand_held_out_regimes or [])
    writer, parts = regime_writer(table, p, regime, embed_fn)
    drafts = _lm_drafts(params, models / "llm" / regime, parts["train"], parts)
    scored = {s: writer.scored(rows, past_only, held_out, rows["content"].astype(str).tolist(), drafts.get(s),
                               progress=f"select_text {regime} {s}") for s, rows in parts.items()}
    if p.reranker.enabled:  # else `reranked` is the consensus choice, and the CLI uses consensus
        writer.reranker = S.train_reranker(scored["train"], scored["val"], p.reranker)
    base = {s: writer.base_scores(scored[s]) for s in ("val", "test")}
    typical = writer.pool.texts[writer.pool.typical[0]]
    against = {"retrieval": _val_texts(retrieval, regime, parts["val"])}
    if regime in (p.typical_baseline_regimes or []):
        against["typical"] = [typical] * len(parts["val"])
    decisions = writer.tune(parts["val"], scored["val"], base["val"], p.reranker.rule, p.edits, against,
                            p.reranker.resamples, int(p.reranker.seed)) \
        if len(parts["val"]) else {}
    preds = _choices(writer, regime, parts, scored, base, typical)
    sources = np.vstack([x.flags for x in scored["test"]]) if scored["test"] else np.zeros((0, len(SOURCES)))
    info = {"regime": regime, "past_only": past_only, "brand_held_out": held_out, "edit_decisions_val": decisions,
            "edit_gains": {s: writer.edit_effects(parts[s], scored[s], base[s], p.edits) for s in ("val", "test")},
            "lm_rows": {s: sum(bool(d) for d in v) for s, v in drafts.items()},
            "pool_rows": len(writer.pool.texts), "queries": {s: len(r) for s, r in parts.items()},
            "best_iteration": None if writer.reranker is None else int(writer.reranker.best_iteration),
            "test_mean_pool_size": float(np.mean([len(x.texts) for x in scored["test"]])) if scored["test"] else None,
            "test_candidate_sources": {src: int(sources[:, i].sum()) for i, src in enumerate(SOURCES)},
            "typical_tweet": typical}
    writer.save(models / "writer" / regime, info)
    log.info(f"select_text {regime}: pool {len(writer.pool.texts)} tweets; {len(parts['train'])} / {len(parts['val'])} / "
             f"{len(parts['test'])} train / val / test rows; edits kept: {writer.kept or 'none'}")
    return preds, info


def fit_regimes(params: dict, data: Path, models: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """The stage select_text: every regime of split.regimes through `fit_regime`. Returns ({PREDICTIONS name:
    every val and test row with content of every regime}, per regime its metrics/select_text.json entry)."""
    table = writer_table(data)
    embed_fn = text_embedder(params)
    retrieval = pd.read_parquet(data / "predictions" / "text" / "retrieval.parquet")
    preds, report = {name: [] for name in PREDICTIONS}, {}
    for regime in SplitConfig.from_params(params["split"]).regimes:
        got, report[regime] = fit_regime(regime, table, params, embed_fn, retrieval, models)
        for name, frames in got.items():
            preds[name] += frames
    return {name: pd.concat(frames, ignore_index=True) for name, frames in preds.items()}, report
