"""Measure the writer's reranker with each group of extra signals (select.EXTRA), on one regime of
the pipeline's data: the regime's pools scored once (all groups' columns computed), then per variant a
reranker trained and the choice rule and edits tuned on val as `select_text` does; BLEU-1 / ROUGE-L /
CIDEr of every val and test row with content, against retrieval, consensus_recent and the most typical
tweet (from data/predictions/text/, `dvc repro baselines`).

usage: python bench/writer_signals.py REGIME [--variants ",time,campaign,time+campaign"] [--set KEY=VALUE ...]
                                      [--cache FILE] [--test-pool train,val]
  --set: a writer param for the whole run, dotted under `writer` (pool.similar_text_weight=0.8,
         reranker.objective=rank:pairwise); JSON values. One JSON line per variant on stdout.
  --test-pool: the test rows also scored over a pool of these splits (e.g. train,val: every tweet
         dated before an unseen_time test row, as a deploy fit has them), the variant's reranker, rule
         and edits unchanged, against consensus_recent over the same pool.
Run by hand on the full data (download.source: ../shared/data/adobe), not by CI.
"""

import argparse
import dataclasses
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tweetsim.config.params import load_params  # noqa: E402
from tweetsim.text.consensus import ConsensusRecent  # noqa: E402
from tweetsim.text.metrics import TargetScorer  # noqa: E402
from tweetsim.writer import select as S  # noqa: E402
from tweetsim.writer.config import WriterConfig  # noqa: E402
from tweetsim.writer.fit import regime_writer, text_embedder, writer_table  # noqa: E402
from tweetsim.writer.pools import row_meta  # noqa: E402
from tweetsim.writer.tweet_writer import RULE, TweetWriter  # noqa: E402


def override(p: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for k in head:
        p = p[k]
    p[last] = value


def extras(writer: TweetWriter, rows: pd.DataFrame, scored: list, groups: list[str]) -> list[np.ndarray]:
    """Every row's extra columns of `groups`, as Selector computes them."""
    pool, meta = writer.pool, row_meta(rows)
    recs = rows[["source", "id", "username", "company", "caption", "ocr_text"]].to_dict("records")
    words = [S.media_text(r) for r in recs]
    menc = pool.space.encode(words)
    return [S.extra_features(pool, recs[r], {k: v[r] for k, v in meta.items()}, s.pool_ix, s.flags, groups,
                             menc.rows([r]) if words[r] else None) for r, s in enumerate(scored)]


def scored_regime(params: dict, regime: str, data: Path):
    p = WriterConfig.from_params(params["writer"])
    writer, parts = regime_writer(writer_table(data), p, regime, text_embedder(params))  # as select_text builds them
    past_only, held_out = regime in p.past_only_regimes, regime in p.brand_held_out_regimes
    scored = {s: writer.scored(rows, past_only, held_out, rows["content"].astype(str).tolist()) for s, rows in parts.items()}
    ex = {s: extras(writer, parts[s], scored[s], list(S.EXTRA)) for s in parts}
    writer.pool.embed_fn = None
    return writer, parts, scored, ex


def cached_regime(params: dict, regime: str, data: Path, cache: str | None):
    """`scored_regime`, read from the pickle `cache` if it exists, else computed (and written there if given)."""
    p = WriterConfig.from_params(params["writer"])
    if cache and Path(cache).is_file():
        writer, parts, scored, ex = pickle.load(open(cache, "rb"))
        writer.selector = S.Selector(writer.pool, p)
        return writer, parts, scored, ex
    writer, parts, scored, ex = scored_regime(params, regime, data)
    if cache:
        sel, writer.selector = writer.selector, None
        pickle.dump((writer, parts, scored, ex), open(cache, "wb"))
        writer.selector = sel
    return writer, parts, scored, ex


def baseline_texts(data: Path, regime: str):
    """(name, rows) -> the `baselines` stage's tweet for each of `rows` (data/predictions/text/<name>.parquet,
    retrieval or consensus_recent), "" where it has none."""
    preds = {n: pd.read_parquet(data / "predictions" / "text" / f"{n}.parquet") for n in ("retrieval", "consensus_recent")}

    def texts_of(name: str, rows: pd.DataFrame) -> list[str]:
        got = preds[name][preds[name]["regime"] == regime].set_index(["source", "id"])["pred_content"]
        return got.reindex(pd.MultiIndex.from_frame(rows[["source", "id"]])).fillna("").astype(str).tolist()

    return texts_of


def wider_pool(params: dict, table: pd.DataFrame, regime: str, writer: TweetWriter, groups: list, cols: dict,
               test: pd.DataFrame, splits: list[str]) -> dict:
    """The test rows scored over a pool of `splits` with `writer`'s reranker, rule and kept edits, and
    consensus_recent over the same pool: {"writer", "consensus_recent", "oracle", "vs_consensus_recent_%"}."""
    p = WriterConfig.from_params(params["writer"])
    side = table[regime]
    has = table["content"].notna() & (table["content"].astype(str).str.strip() != "")
    w = TweetWriter(table[side.isin(splits) & has], p, context=table, embed_fn=text_embedder(params),
                    reranker=writer.reranker, kept_edits=writer.kept, **{k: getattr(writer, k) for k in RULE})
    truths = test["content"].astype(str).tolist()
    sc = w.scored(test, regime in p.past_only_regimes, regime in p.brand_held_out_regimes, truths)
    idx = [c for g in groups for c in cols[g]]
    if idx:
        sc = [dataclasses.replace(x, features=np.hstack([x.features, e[:, idx]]))
              for x, e in zip(sc, extras(w, test, sc, list(S.EXTRA)))]
    w.pool.embed_fn = None
    texts = S.edited(w.pool, test, sc, S.choose(sc, w.ranking(sc)), w.kept, w.habits)
    recent = ConsensusRecent(table[side.isin(splits)], int(params["baselines"]["consensus_recent_n"])).texts(test)
    oracle = [x.texts[int(np.argmax(x.label))] for x in sc]
    f = dict(zip(("writer", "consensus_recent", "oracle"), TargetScorer(truths).figures([texts, recent, oracle])))
    return {**f, "vs_consensus_recent_%": {k: round(100 * (f["writer"][k] / max(f["consensus_recent"][k], 1e-9) - 1), 1)
                                           for k in f["writer"]}, "splits": splits}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("regime")
    ap.add_argument("--variants", default=",time,campaign,media_text,likes,clock,reply")
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--cache", default=None, help="pickle of the scored pools (written if absent, read if present)")
    ap.add_argument("--test-pool", default=None, help="splits whose tweets form a second pool for the test rows")
    args = ap.parse_args()
    params, data, regime = load_params(args.params), Path(args.data), args.regime
    for kv in args.set:
        k, v = kv.split("=", 1)
        override(params["writer"], k, json.loads(v) if v[:1] in "[{0123456789-tfn\"" else v)
    p = WriterConfig.from_params(params["writer"])
    writer, parts, scored, ex = cached_regime(params, regime, data, args.cache)
    if any(kv.startswith("reranker.label_weights=") for kv in args.set):  # labels of the cached pools, relabelled
        for part, rows in parts.items():
            truth = writer.pool.space.encode(rows["content"].astype(str).tolist())
            for r, x in enumerate(scored[part]):
                x.label = writer.selector.label(writer.pool.enc.rows(x.pool_ix), truth.rows([r]))
    texts_of = baseline_texts(data, regime)

    typical = writer.pool.texts[writer.pool.typical[0]]
    scorers = {s: TargetScorer(parts[s]["content"].astype(str).tolist()) for s in ("val", "test")}
    bars = {s: dict(zip(("retrieval", "consensus_recent", "typical"), scorers[s].figures(
        [texts_of("retrieval", parts[s]), texts_of("consensus_recent", parts[s]), [typical] * len(parts[s])])))
        for s in ("val", "test")}
    print(json.dumps({"regime": regime, "set": args.set, "rows": {s: len(parts[s]) for s in parts}, "baselines": bars}), flush=True)
    table = writer_table(data) if args.test_pool else None  # every tweet, read once for the wider pools
    start = np.cumsum([0] + [len(S.EXTRA[g]) for g in S.EXTRA])
    cols = {g: list(range(start[i], start[i + 1])) for i, g in enumerate(S.EXTRA)}
    for variant in args.variants.split(","):
        t0 = time.time()
        groups = [g for g in variant.split("+") if g]
        idx = [c for g in groups for c in cols[g]]
        sc = {s: [dataclasses.replace(x, features=np.hstack([x.features, e[:, idx]])) for x, e in zip(scored[s], ex[s])]
              for s in scored}
        writer.kept = []
        writer.reranker = S.train_reranker(sc["train"], sc["val"], p.reranker) if p.reranker.enabled else None
        base = {s: writer.base_scores(sc[s]) for s in ("val", "test")}
        against = {"retrieval": texts_of("retrieval", parts["val"])}
        if regime in p.typical_baseline_regimes:
            against["typical"] = [typical] * len(parts["val"])
        dec = writer.tune(parts["val"], sc["val"], base["val"], p.reranker.rule, p.edits, against,
                          p.reranker.resamples, int(p.reranker.seed))
        out = {}
        for s in ("val", "test"):
            picks = S.choose(sc[s], writer.ranking(sc[s], base[s]))
            f = scorers[s].figures([S.edited(writer.pool, parts[s], sc[s], picks, writer.kept, writer.habits)])[0]
            out[s] = {"writer": f, **{f"vs_{b}_%": {k: round(100 * (f[k] / max(v[k], 1e-9) - 1), 1) for k in f}
                                      for b, v in bars[s].items()}}
        if args.test_pool:
            out["test_pool"] = wider_pool(params, table, regime, writer, groups, cols, parts["test"], args.test_pool.split(","))
        print(json.dumps({"groups": groups, "rule": dec["rule"]["chosen"], "kept": writer.kept,
                          "best_iteration": None if writer.reranker is None else int(writer.reranker.best_iteration),
                          **out, "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
