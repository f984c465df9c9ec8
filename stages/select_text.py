"""select_text: per regime, the tweet writer that chooses among candidates (tweetsim.writer).

For each regime: the pool is the training split's rows with content; the reranker is trained on
up to `writer.reranker.max_train_queries` training rows, whose pools are built as at prediction
time (never the row itself; only earlier tweets in `writer.past_only_regimes`; none of the row's
own brand in `writer.brand_held_out_regimes`), early-stopped on the val rows; on the val rows
too, `TweetWriter.tune` sets the choice rule (the reranker's mix with consensus, the length bonus)
and keeps each edit of `writer.edits`, by the smallest gain on BLEU-1, ROUGE-L and CIDEr over the
better of the baselines the targets name: retrieval (data/predictions/text/retrieval.parquet, from
`baselines`) and, in `writer.typical_baseline_regimes`, the single most typical tweet.
Writes, for every val and test row with content of every regime (`regime,source,id,split,
pred_content,origin,pool_size`):
  data/predictions/text/consensus.parquet  consensus (MBR) choice, kept edits applied
  data/predictions/text/reranked.parquet   the reranker's choice, kept edits applied (the default writer)
  data/predictions/text/oracle.parquet     the pool's best candidate against the real tweet (headroom)
  data/predictions/text/typical.parquet    the single most typical tweet of the training split
and models/writer/<regime>/{writer.json,reranker.json}, metrics/select_text.json.
usage: python stages/select_text.py [params.yaml] [data] [models] [metrics]
"""

from tweetsim.apps.entry import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.text import embed
from tweetsim.text.runtime import EncoderConfig
from tweetsim.text.metrics import to_json_safe
from tweetsim.config.params import load_params
from tweetsim.data.sides import join_from
from tweetsim.data.schema import read_tweets
from tweetsim.writer.tweet_writer import TweetWriter, origin
from tweetsim.writer import select as S
from tweetsim.writer.pools import SOURCES

def _lm_drafts(params: dict, adapter: Path, pool: pd.DataFrame, parts: dict) -> dict:
    """{split: per row [(draft, log-prob)]} for a seeded draw of `writer.lm.max_rows` rows of each
    split (the other rows get none), or {} with the LM off."""
    lm = params["writer"]["lm"]
    if int(lm["candidates"]) <= 0:
        return {}
    from tweetsim.writer.writers import lm_drafter

    drafter = lm_drafter(params, adapter, pool)
    out = {}
    for s, rows in parts.items():
        n = min(len(rows), int(lm["max_rows"]))
        chosen = sorted(rows.sample(n=n, random_state=int(params["writer"]["reranker"]["seed"])).index)
        got = dict(zip(chosen, drafter(rows.loc[chosen])))
        out[s] = [got.get(i, []) for i in rows.index]
        print(f"select_text: LM drafts for {n} of {len(rows)} {s} rows ({lm['candidates']} samples each, {adapter})")
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


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p, data = params["writer"], Path(data_dir)
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    table = join_from(table, data).sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    enc = EncoderConfig.from_params(params["encoder"])
    embed_fn = (lambda texts: embed.encode(texts, p["embed_model"], encoder=enc)) if p["caption_similarity"] else None
    has_content = table["content"].notna() & (table["content"].astype(str).str.strip() != "")
    retrieval = pd.read_parquet(data / "predictions" / "text" / "retrieval.parquet")
    preds = {name: [] for name in ("consensus", "reranked", "oracle", "typical")}
    report = {}
    for regime in params["split"]["regimes"]:
        side = table[regime]
        past_only = regime in p["past_only_regimes"]
        held_out = regime in p["brand_held_out_regimes"]
        train_q = table[(side == "train") & has_content]
        writer = TweetWriter(train_q, p, context=table, embed_fn=embed_fn)
        cap = p["reranker"]["max_train_queries"]
        if cap and len(train_q) > cap:
            train_q = train_q.sample(n=cap, random_state=int(p["reranker"]["seed"])).sort_values(["source", "id"])
        parts = {"train": train_q, **{s: table[(side == s) & has_content] for s in ("val", "test")}}
        drafts = _lm_drafts(params, Path(models_dir) / "llm" / regime, train_q, parts)
        scored = {s: writer.scored(rows, past_only, held_out, rows["content"].astype(str).tolist(), drafts.get(s),
                                   progress=f"select_text {regime} {s}") for s, rows in parts.items()}
        if p["reranker"]["enabled"]:  # else `reranked` is the consensus choice, and the CLI uses consensus
            writer.reranker = S.train_reranker(scored["train"], scored["val"], p["reranker"])
        base = {s: writer.base_scores(scored[s]) for s in ("val", "test")}
        typical = writer.pool.texts[writer.pool.typical[0]]
        against = {"retrieval": _val_texts(retrieval, regime, parts["val"])}
        if regime in p["typical_baseline_regimes"]:
            against["typical"] = [typical] * len(parts["val"])
        decisions = writer.tune(parts["val"], scored["val"], base["val"], p["reranker"]["rule"], p["edits"], against,
                                p["reranker"]["resamples"], int(p["reranker"]["seed"])) \
            if len(parts["val"]) else {}
        picks = {s: {"consensus": S.choose(scored[s]), "reranked": S.choose(scored[s], writer.ranking(scored[s], base[s])),
                     "oracle": [int(np.argmax(x.label)) for x in scored[s]]} for s in ("val", "test")}
        for s in ("val", "test"):
            rows = parts[s]
            keys = pd.DataFrame({"regime": regime, "source": rows["source"].to_numpy(), "id": rows["id"].to_numpy(), "split": s})
            for name, pk in picks[s].items():
                kept = [] if name == "oracle" else writer.kept
                preds[name].append(keys.assign(
                    pred_content=S.edited(writer.pool, rows, scored[s], pk, kept, writer.habits),
                    origin=[origin(x, k) for x, k in zip(scored[s], pk)],
                    pool_size=[len(x.texts) for x in scored[s]]))
            preds["typical"].append(keys.assign(pred_content=typical, origin="typical",
                                                pool_size=len(writer.pool.texts)))
        sources = np.vstack([x.flags for x in scored["test"]]) if scored["test"] else np.zeros((0, len(SOURCES)))
        info = {"regime": regime, "past_only": past_only, "brand_held_out": held_out, "edit_decisions_val": decisions,
                "edit_gains": {s: writer.edit_effects(parts[s], scored[s], base[s], p["edits"]) for s in ("val", "test")},
                "lm_rows": {s: sum(bool(d) for d in v) for s, v in drafts.items()},
                "pool_rows": len(writer.pool.texts), "queries": {s: len(r) for s, r in parts.items()},
                "best_iteration": None if writer.reranker is None else int(writer.reranker.best_iteration),
                "test_mean_pool_size": float(np.mean([len(x.texts) for x in scored["test"]])) if scored["test"] else None,
                "test_candidate_sources": {src: int(sources[:, i].sum()) for i, src in enumerate(SOURCES)},
                "typical_tweet": typical}
        writer.save(Path(models_dir) / "writer" / regime, info)
        report[regime] = info
        print(f"select_text {regime}: pool {len(writer.pool.texts)} tweets; {len(parts['train'])} / {len(parts['val'])} / "
              f"{len(parts['test'])} train / val / test rows; edits kept: {writer.kept or 'none'}")
    out = data / "predictions" / "text"
    out.mkdir(parents=True, exist_ok=True)
    for name, frames in preds.items():
        pd.concat(frames, ignore_index=True).to_parquet(out / f"{name}.parquet", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "select_text.json").write_text(json.dumps(to_json_safe(report), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
