"""Benchmark `tweetsim predict-likes`: artefact load time, then throughput on 2 cores once loaded
(whole file batched vs one tweet at a time), and where the batched time goes.

usage: python bench/bench_predict_likes.py [models] [input file] [rows] [reference.npy] [--save] [--out FILE]
(--out: the JSON of the run, default bench/results/bench_predict_likes.json)
Needs the artefacts of `dvc repro` (models/; the deploy fit, models/likes/deploy, as predict-likes loads
it), with the ranges (likes_low, likes_high) computed as predict-likes does.
Checks that one-at-a-time predictions equal the batched ones (log1p likes within 1e-6); with a
reference .npy (likes of the same rows saved by an earlier version: `--save` writes one), that the
batched predictions equal it too, so a speed-up is shown not to change the predictions. Also times the
same batched call on the torch path (encoder.runtime torch, the bundle's inference_dtype: the
alternative to the ONNX runtime) and prints the ratio. Every timed call starts cold: no
embedding memoised in the process or in the embedding cache (a fresh folder; the exports are made
by the warm-up call, once per model, as a first predict-likes run makes them).
With the static table (train_like_classifier.embed_model static) it also times MiniLM's pass over the
same strings, the step the table replaces. Target: >= 300 tweets/s batched on 2 idle cores.
"""

import os
import sys
import tempfile
import time
from dataclasses import replace

from _results import pop_out, write

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# on log1p(likes): float32 inference is exact whatever the batch; bfloat16 (train_like_classifier.
# inference_dtype) rounds each op's result, so a row's prediction moves with its batch's padding
# (measured: 9.7e-3 with the sample's deploy fit, 1.0e-2 with all the shared data's, just past the
# tolerance there and flagged DIFFERENT: 1% of the likes; float32 removes it at ~1.5x the cost).
# The ONNX runtimes run each text on its own: a row's prediction cannot depend on the batch.
TOL = {"float32": 1e-6, "bfloat16": 1e-2, "onnx": 1e-6, "onnx-int8": 1e-6}


def main(models: str = "models", path: str = "data/sample/official/behaviour_simulation_test_time.xlsx", rows: str = "1000",
         reference: str | None = None, save: bool = False,
         out_json: str | None = None) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:2]))
    import numpy as np

    from tweetsim.likes import features as F
    from tweetsim.likes.router import load_likes_model
    from tweetsim.text import embed
    from tweetsim.data.load import read_official

    print(f"load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")
    t0 = time.perf_counter()
    table, _ = read_official(path)
    table = table.head(int(rows)).reset_index(drop=True)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = load_likes_model(models, num_threads=2)
    t_load = time.perf_counter() - t0
    cache = tempfile.mkdtemp(prefix="bench_predict_likes_")
    pred.p = replace(pred.p, encoder=replace(pred.p.encoder, cache_dir=cache))  # not the repo's cache: cold runs
    runtime = pred.p.encoder.runtime
    dtype = runtime if runtime != "torch" else pred.p.inference_dtype or "float32"
    tol = TOL[dtype]
    pred.predict(table.tail(8))  # warm-up (first tokenizer / kernel calls, the ONNX exports)
    # embeddings are memoised by text in the process and in the cache: start each timed run cold
    embed.clear_cache(cache)
    t0 = time.perf_counter()
    out, low, high = pred.predict_with_range(table)  # what predict-likes calls (ranges on)
    t_batch = time.perf_counter() - t0
    split = dict(pred.timings)  # this batched call's seconds by step, measured inside predict
    # the same call on the torch path (the two passes side by side, one torch thread each)
    onnx_p = pred.p
    pred.p = replace(onnx_p, encoder=replace(onnx_p.encoder, runtime="torch"))
    torch_dtype = pred.p.inference_dtype or "float32"
    pred.predict(table.tail(8))
    embed.clear_cache(cache)
    t0 = time.perf_counter()
    seq, _, _ = pred.predict_with_range(table)
    t_seq = time.perf_counter() - t0
    pred.p = onnx_p
    n1 = min(50, len(table))
    one = []
    embed.clear_cache(cache)
    t0 = time.perf_counter()
    for i in range(n1):
        one.append(pred.predict(table.iloc[[i]])[0])
    t_one = time.perf_counter() - t0
    fig = {"rows": len(table), "read_s": round(t_read, 2), "load_s": round(t_load, 2), "runtime": runtime, "dtype": dtype,
           "tweets_per_s_batched": round(len(table) / t_batch, 1), "one_at_a_time_rows": n1,
           "tweets_per_s_one_at_a_time": round(n1 / t_one, 1), "ratio_batched_one": round((len(table) / t_batch) / (n1 / t_one), 1),
           "torch_dtype": torch_dtype, "tweets_per_s_torch": round(len(table) / t_seq, 1),
           "ratio_torch_runtime": round(t_seq / t_batch, 2), "share_of_batched_time": {k: round(v / t_batch, 2) for k, v in split.items()},
           "range_ratio_median": round(float(np.median((1 + high) / (1 + low))), 1)}
    print(f"read {len(table)} rows from {path}: {t_read:.2f}s")
    print(f"load artefacts: {t_load:.2f}s; encoder runtime {runtime} (bundle), inference {dtype}")
    print(f"ranges: likes_low <= likes <= likes_high on every row: {bool(((low <= out) & (out <= high)).all())}; "
          f"median (1 + high) / (1 + low) {np.median((1 + high) / (1 + low)):.1f}")
    print(f"batched, with ranges: {len(table) / t_batch:.1f} tweets/s ({t_batch:.2f}s for {len(table)}); "
          f"one at a time: {n1 / t_one:.1f} tweets/s; ratio batched/one-by-one {(len(table) / t_batch) / (n1 / t_one):.1f}x")
    print(f"{runtime}: {len(table) / t_batch:.1f} tweets/s; torch ({torch_dtype}, the path before the ONNX runtime): "
          f"{len(table) / t_seq:.1f} tweets/s; ratio {t_seq / t_batch:.2f}x; max |diff log1p likes| "
          f"{np.abs(np.log1p(seq) - np.log1p(out)).max():.1e}, median {np.median(np.abs(np.log1p(seq) - np.log1p(out))):.1e}")
    print("share of batched time: " + ", ".join(f"{k} {v / t_batch:.0%}" for k, v in split.items())
          + " (the classifier's and the encoder's own seconds: side by side, they overlap)")
    if embed.is_static(pred.p.embed_model):
        # the static table runs no transformer, so the runtimes above time the same thing; what it replaces
        # is MiniLM's pass over the same strings (embed_model null), timed cold here
        from tweetsim.likes.fit import embed_strings

        strings = F.texts_to_embed(table, pred.p.embed_text)
        embed.clear_cache(cache)
        t0 = time.perf_counter()
        embed_strings(strings, replace(pred.p, embed_model=None))
        t_mini = time.perf_counter() - t0
        fig.update(embedding_static_s=round(split["embedding"], 2), embedding_minilm_s=round(t_mini, 2),
                   ratio_minilm_static=round(t_mini / max(split["embedding"], 1e-9)),
                   tweets_per_s_minilm_cap=round(len(table) / t_mini))
        print(f"embedding step: static table {split['embedding']:.2f}s against MiniLM ({runtime}) {t_mini:.2f}s on the same "
              f"strings ({t_mini / max(split['embedding'], 1e-9):.0f}x); MiniLM's pass alone caps predict-likes at "
              f"{len(table) / t_mini:.0f} tweets/s")
    gap = np.abs(np.log1p(np.array(one)) - np.log1p(out[:n1])).max()
    fig.update(max_diff_one_at_a_time=float(f"{gap:.1e}"))
    # a batch's rows are pooled into each other's account/brand context (features.context_features): given
    # the batch's context, a row alone must predict what it did in the batch, to the float
    ctx = F.context_features(table, pred.state.context)
    same = np.array([pred.predict_with_probs(table.iloc[[i]], context=ctx.iloc[[i]])[0][0] for i in range(n1)])
    num = np.abs(np.log1p(same) - np.log1p(out[:n1])).max()
    fig.update(max_diff_batch_context=float(f"{num:.1e}"))
    print(f"one-at-a-time vs batched: max |diff log1p likes| {gap:.1e} (the batch's rows pool their context); "
          f"with the batch's context {num:.1e} ({'OK' if num <= tol else 'DIFFERENT'}, tolerance {tol:g} for {dtype})")
    if reference and save:
        np.save(reference, out)
        print(f"saved the batched likes to {reference}")
    elif reference:
        ref = np.load(reference)
        if ref.shape != out.shape:
            raise SystemExit(f"{reference}: {ref.shape[0]} predictions, this run made {out.shape[0]}")
        gap = np.abs(np.log1p(ref) - np.log1p(out)).max()
        fig.update(max_diff_reference=float(f"{gap:.1e}"))
        print(f"vs {reference}: max |diff log1p likes| {gap:.1e} ({'OK' if gap <= tol else 'DIFFERENT'})")
    print(f"predicted likes: median {np.median(out):.0f}, mean {np.mean(out):.0f}; target >= 300 tweets/s with ranges: "
          f"{'MET' if len(table) / t_batch >= 300 else 'NOT MET'}")
    fig.update(likes_median=round(float(np.median(out))), likes_mean=round(float(np.mean(out))))
    if out_json:
        write(out_json, fig)


if __name__ == "__main__":
    args, out = pop_out([a for a in sys.argv[1:] if a != "--save"], "bench_predict_likes")
    main(*args, save="--save" in sys.argv[1:], out_json=out)
