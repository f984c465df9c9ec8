"""Measure choice and writing designs beyond the writer's reranker, on one regime of the pipeline's
data, against consensus_recent (the writer's bar) and retrieval, every val and test row with content:

- `hedge`: minimum Bayes risk among the rule's top K: the candidate with the highest expected
  similarity (BLEU-1 / ROUGE-L / CIDEr components) to the others, each weighted by softmax(rule / tau),
  mixed with the rule at `lam` (what a hedging choice gains on ROUGE-L, and what it costs on CIDEr);
- `cr_features`: consensus_recent's own signal given to the reranker (each candidate's mean TF-IDF
  cosine to the row's consensus_recent set, whether it is that set's pick, whether it is in it);
- `merge`: when the rule's top two share a template (ROUGE-L between them >= theta), their longest
  common token subsequence (what both say) in place of the top one;
- `caption`: the row's media caption appended to the chosen tweet (media words);
- `label ...`: the reranker trained on a label that weights CIDEr twice, alone and hedged;
- `exact`: rows whose tweet equals the real one, and their share of the CIDEr sum (CIDEr-D gives an
  exact copy 10, a typical row about 0.1);
- with `typical` among the regime's bars (writer.typical_baseline_regimes): every choice rule of the
  grid on test, and the share of `typical` candidates each picks.

Each design is judged on val as select_text judges its rule (`resampled_worst_gain`, here over
retrieval and consensus_recent): `kept_by_val` says whether val would keep it.

usage: python bench/writer_designs.py REGIME [--data DATA] [--params PARAMS] [--cache FILE] [--out JSON]
Run by hand on a full-data run's data/ (download.source: ../shared/data/adobe), not by CI.
"""

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import commit, cpu, load_average  # noqa: E402
from writer_signals import baseline_texts, cached_regime  # noqa: E402

from tweetsim.config.params import load_params  # noqa: E402
from tweetsim.text.consensus import ConsensusRecent, most_central  # noqa: E402
from tweetsim.text.metrics import TargetScorer, tokenize  # noqa: E402
from tweetsim.writer import select as S  # noqa: E402
from tweetsim.writer import textsim  # noqa: E402
from tweetsim.writer.config import WriterConfig  # noqa: E402
from tweetsim.writer.fit import writer_table  # noqa: E402
from tweetsim.writer.pools import SOURCES  # noqa: E402
from tweetsim.writer.tweet_writer import TARGETS, resampled_worst_gain  # noqa: E402

SPLITS = ("val", "test")


def lcs(a: list, b: list) -> list:
    """Longest common subsequence of two token lists."""
    n, m = len(a), len(b)
    L = np.zeros((n + 1, m + 1), int)
    for i in range(n):
        for j in range(m):
            L[i + 1, j + 1] = L[i, j] + 1 if a[i] == b[j] else max(L[i, j + 1], L[i + 1, j])
    out, i, j = [], n, m
    while i and j:
        if a[i - 1] == b[j - 1]:
            out.append(a[i - 1])
            i, j = i - 1, j - 1
        elif L[i - 1, j] >= L[i, j - 1]:
            i -= 1
        else:
            j -= 1
    return out[::-1]


def hedged(writer, scored, rank, scale, k=20, tau=0.5, lam=0.1) -> list[int]:
    """Per row, the candidate of highest (1 - lam) * rule + lam * expected similarity to the top k."""
    comps, out = ["unigram", "rougeL", "cider"], []
    for r, x in zip(rank, scored):
        if lam == 0 or len(r) < 2:
            out.append(int(np.argmax(r)))
            continue
        top = np.argsort(-r, kind="stable")[:k]
        e = writer.pool.space.encode([x.texts[i] for i in top])
        sims = textsim.similarity(e, e, comps)
        u = sum(sims[c] for c in comps) / len(comps)
        z = r[top] / scale / tau
        w = np.tile(np.exp(z - z.max()), (len(top), 1))
        np.fill_diagonal(w, 0.0)
        eu = (u * w).sum(1) / np.maximum(w.sum(1), 1e-12)
        out.append(int(top[np.argmax((1 - lam) * z * tau + lam * eu / max(eu.std(), 1e-9))]))
    return out


def cr_features(table, regime, n, writer, parts, scored) -> dict:
    """Per split, per row [candidates, 3]: mean TF-IDF cosine to the row's consensus_recent set, is its pick, is in it."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    cr = ConsensusRecent(table[table[regime] == "train"], n)
    tf = TfidfVectorizer().fit(cr.pool["content"].astype(str))  # the vocabulary and weights ConsensusRecent fits
    pv = tf.transform([str(t) for t in writer.pool.texts]).tocsr()
    texts = cr.pool["content"].astype(str).to_numpy()
    out = {}
    for s, rows in parts.items():
        cols = rows.assign(username=rows["username"].fillna(""), company=rows["company"].fillna(""))
        got = []
        for r, x in zip(cols[["source", "id", "date", "username", "company"]].itertuples(), scored[s]):
            cand = cr.candidates(r)
            v = cr.vectors[cand]
            pick = texts[cand[most_central(v)]]
            c = (pv[x.pool_ix] @ v.T).toarray()
            own = np.minimum((c > 0.9999).sum(1), 1)  # a candidate in the set meets itself
            mean = (c.sum(1) - own) / np.maximum(len(cand) - own, 1)
            inset = set(texts[cand])
            got.append(np.column_stack([mean, [t == pick for t in x.texts], [t in inset for t in x.texts]]).astype(float))
        out[s] = got
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("regime")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--cache", default=None, help="pickle of the scored pools (as writer_signals' --cache: read if present, else written)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    params, data, regime = load_params(args.params), Path(args.data), args.regime
    p = WriterConfig.from_params(params["writer"])
    writer, parts, scored, ex = cached_regime(params, regime, data, args.cache)
    table = writer_table(data)
    texts_of = baseline_texts(data, regime)

    typical = writer.pool.texts[writer.pool.typical[0]]
    names = ["retrieval", "consensus_recent"] + (["typical"] if regime in p.typical_baseline_regimes else [])
    scorer = {s: TargetScorer(parts[s]["content"].astype(str).tolist()) for s in SPLITS}
    bars = {s: dict(zip(names, scorer[s].figures([typical_or(texts_of, n, parts[s], typical) for n in names], per_row=True)))
            for s in SPLITS}
    draws = np.random.default_rng(int(p.reranker.seed)).integers(0, len(parts["val"]), size=(max(int(p.reranker.resamples), 1), len(parts["val"])))
    result = {"regime": regime, "argv": ["python", "bench/writer_designs.py", *sys.argv[1:]], "rows": {s: len(parts[s]) for s in SPLITS},
              "baselines": {s: {n: figs(b) for n, b in bars[s].items()} for s in SPLITS}, "designs": {}}

    def fit(sc):  # the reranker, rule and edits as select_text fits them (rule judged against retrieval, and typical)
        writer.kept = []
        writer.reranker = S.train_reranker(sc["train"], sc["val"], p.reranker)
        base = {s: writer.base_scores(sc[s]) for s in SPLITS}
        ag = {"retrieval": texts_of("retrieval", parts["val"])}
        if regime in p.typical_baseline_regimes:
            ag["typical"] = [typical] * len(parts["val"])
        writer.tune(parts["val"], sc["val"], base["val"], p.reranker.rule, p.edits, ag, p.reranker.resamples, int(p.reranker.seed))
        return base

    def record(name, texts, extra=None) -> dict:
        """Scores `texts` ({split: tweets}) as design `name`; returns {split: its per-row figures}."""
        out, per_row = {}, {}
        for s in SPLITS:
            f = scorer[s].figures([texts[s]], per_row=True)[0]
            rows = per_row[s] = f.pop("rows")
            out[s] = {"figures": figs(f), **{f"vs_{n}_%": pct(f, bars[s][n]) for n in names}}
            if s == "val":
                out["val_resampled_worst_gain_%"] = round(100 * resampled_worst_gain(
                    rows, {n: bars[s][n]["rows"] for n in names}, draws), 2)
        result["designs"][name] = {**out, **(extra or {})}
        print(json.dumps({name: result["designs"][name]}), flush=True)
        return per_row

    base = fit(scored)
    rule = {k: getattr(writer, k) for k in ("consensus_mix", "typicality_weight", "length_bonus")}
    rank = {s: writer.ranking(scored[s], base[s]) for s in SPLITS}
    served = {s: S.choose(scored[s], rank[s]) for s in SPLITS}
    out = {s: S.edited(writer.pool, parts[s], scored[s], served[s], writer.kept, writer.habits) for s in SPLITS}
    served_rows = record("served", out, {"rule": rule, "kept": list(writer.kept)})
    for s in SPLITS:  # exact copies of the real tweet: CIDEr-D's 10 against ~0.1 for a typical row
        refs = parts[s]["content"].astype(str).tolist()
        for n, t, f in (("served", out[s], served_rows[s]["cider"]),
                        ("consensus_recent", texts_of("consensus_recent", parts[s]), bars[s]["consensus_recent"]["rows"]["cider"])):
            same = np.array([tokenize(h) == tokenize(r) for h, r in zip(t, refs)])
            result.setdefault("exact", {}).setdefault(s, {})[n] = {"rows": int(same.sum()), "cider_sum": round(float(np.sum(f)), 2),
                                                                   "cider_sum_exact_rows": round(float(np.asarray(f)[same].sum()), 2)}
    scale = float(np.std(np.concatenate(rank["val"])))
    for lam in (0.1, 0.2, 0.3):
        record(f"hedge lam={lam}", {s: S.edited(writer.pool, parts[s], scored[s], hedged(writer, scored[s], rank[s], scale, lam=lam),
                                                writer.kept, writer.habits) for s in SPLITS}, {"k": 20, "tau": 0.5})
    tops = {}
    for s in SPLITS:
        second = [int(np.argsort(-r, kind="stable")[min(1, len(r) - 1)]) for r in rank[s]]
        tops[s] = (out[s], S.edited(writer.pool, parts[s], scored[s], second, writer.kept, writer.habits))
    for theta in (0.5, 0.7):
        texts, merged = {}, 0
        for s in SPLITS:
            texts[s] = []
            for a, b in zip(*tops[s]):
                ta, tb = tokenize(a), tokenize(b)
                common = lcs(ta, tb)
                f = 2 * len(common) / (len(ta) + len(tb)) if common else 0.0   # ROUGE-L F1 between the two
                texts[s].append(" ".join(common) if theta <= f < 1 else a)
                merged += int(theta <= f < 1)
        record(f"merge theta={theta}", texts, {"rows_merged": merged})
    caps = {s: parts[s]["caption"].fillna("").astype(str).tolist() if "caption" in parts[s] else [""] * len(parts[s]) for s in SPLITS}
    record("caption", {s: [f"{t} {c}".strip() for t, c in zip(out[s], caps[s])] for s in SPLITS},
           {"rows_with_caption": {s: sum(bool(c.strip()) for c in caps[s]) for s in SPLITS}})
    if regime in p.typical_baseline_regimes:
        frontier = []
        for mix, tw, lb in itertools.product(*(sorted({0.0, *map(float, p.reranker.rule[k])}) for k in rule)):
            writer.consensus_mix, writer.typicality_weight, writer.length_bonus = mix, tw, lb
            picks = S.choose(scored["test"], writer.ranking(scored["test"], base["test"]))
            f = scorer["test"].figures([S.edited(writer.pool, parts["test"], scored["test"], picks, writer.kept, writer.habits)])[0]
            frontier.append({"rule": [mix, tw, lb], "test": figs(f),
                             "typical_share": round(float(np.mean([x.flags[k, SOURCES.index("typical")] for x, k in zip(scored["test"], picks)])), 3)})
        result["rule_frontier_test"] = frontier
        print(json.dumps({"frontier": frontier}), flush=True)
    for weights in ({"unigram_long": 1.0, "rougeL": 1.0, "cider": 2.0},):  # a label that weights CIDEr more, hedged or not
        sel = S.Selector(writer.pool, WriterConfig.from_params({**params["writer"], "reranker": {**params["writer"]["reranker"], "label_weights": weights}}))
        sc = {}
        for s, rows in parts.items():
            truth = writer.pool.space.encode(rows["content"].astype(str).tolist())
            sc[s] = [dataclasses.replace(x, label=sel.label(writer.pool.enc.rows(x.pool_ix), truth.rows([r]))) for r, x in enumerate(scored[s])]
        base = fit(sc)
        rank = {s: writer.ranking(sc[s], base[s]) for s in SPLITS}
        scale = float(np.std(np.concatenate(rank["val"])))
        tag = "label " + "/".join(f"{k}={v:g}" for k, v in weights.items())
        for lam in (0.0, 0.1, 0.2):
            record(f"{tag} hedge lam={lam}", {s: S.edited(writer.pool, parts[s], sc[s], hedged(writer, sc[s], rank[s], scale, lam=lam),
                                                          writer.kept, writer.habits) for s in SPLITS},
                   {"rule": {k: getattr(writer, k) for k in rule}, "kept": list(writer.kept)})
    crf = cr_features(table, regime, int(params["baselines"]["consensus_recent_n"]), writer, parts, scored)
    sc = {s: [dataclasses.replace(x, features=np.hstack([x.features, f])) for x, f in zip(scored[s], crf[s])] for s in scored}
    base = fit(sc)
    record("cr_features", {s: S.edited(writer.pool, parts[s], sc[s], S.choose(sc[s], writer.ranking(sc[s], base[s])),
                                       writer.kept, writer.habits) for s in SPLITS},
           {"best_iteration": int(writer.reranker.best_iteration)})
    bar = result["designs"]["served"]["val_resampled_worst_gain_%"]
    for d in result["designs"].values():
        d["kept_by_val"] = d["val_resampled_worst_gain_%"] > bar
    result.update(load_average=load_average(), cpu=cpu(), commit=commit())
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


def typical_or(texts_of, name, rows, typical):
    return [typical] * len(rows) if name == "typical" else texts_of(name, rows)


def figs(f: dict) -> dict:
    return {k: round(float(f[k]), 4) for k in TARGETS}


def pct(f: dict, b: dict) -> dict:
    return {k: round(100 * (f[k] / max(b[k], 1e-9) - 1), 1) for k in TARGETS}


if __name__ == "__main__":
    main()
