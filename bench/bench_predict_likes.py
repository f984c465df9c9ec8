"""Benchmark `tweetsim predict-likes`: artefact load time, then throughput on 2 cores once loaded
(whole file batched vs one tweet at a time), and where the time goes.

usage: python bench/bench_predict_likes.py [models] [input file] [rows]
Needs the artefacts of `dvc repro` (models/). Target: >= 100 tweets/s batched.
"""

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main(models: str = "models", path: str = "data/sample/official/behaviour_simulation_test_time.xlsx", rows: str = "1000") -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    import numpy as np

    from tweetsim import behaviour, features as F, likemodel
    from tweetsim.load import read_official

    t0 = time.perf_counter()
    table, _ = read_official(path)
    table = table.head(int(rows)).reset_index(drop=True)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = behaviour.Predictor(models, num_threads=2)
    t_load = time.perf_counter() - t0
    pred.predict(table.head(8))  # warm-up (first tokenizer / kernel calls)
    t0 = time.perf_counter()
    out = pred.predict(table)
    t_batch = time.perf_counter() - t0
    n1 = min(50, len(table))
    t0 = time.perf_counter()
    for i in range(n1):
        pred.predict(table.iloc[[i]])
    t_one = time.perf_counter() - t0
    # where the batched time goes: the two transformer passes
    t0 = time.perf_counter()
    likemodel.predict_proba(pred.tok, pred.model, likemodel.verbalise(table), pred.state.max_length, 64)
    t_cls = time.perf_counter() - t0
    t0 = time.perf_counter()
    behaviour.embed_texts(F.text_of(table), pred.p)
    t_emb = time.perf_counter() - t0
    print(f"read {len(table)} rows from {path}: {t_read:.2f}s")
    print(f"load artefacts: {t_load:.2f}s")
    print(f"batched: {len(table) / t_batch:.1f} tweets/s ({t_batch:.2f}s for {len(table)}); "
          f"one at a time: {n1 / t_one:.1f} tweets/s; ratio batched/one-by-one {(len(table) / t_batch) / (n1 / t_one):.1f}x")
    print(f"share of batched time: classifier {t_cls / t_batch:.0%}, sentence embedding {t_emb / t_batch:.0%}, "
          f"rest (features, trees) {max(0.0, 1 - (t_cls + t_emb) / t_batch):.0%}")
    print(f"predicted likes: median {np.median(out):.0f}, mean {np.mean(out):.0f}; target >= 100 tweets/s: "
          f"{'MET' if len(table) / t_batch >= 100 else 'NOT MET'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
