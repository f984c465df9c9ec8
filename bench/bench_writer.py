"""Benchmark the default tweet writer (tweetsim.writer, LM off): selection rows/s after load,
consensus alone against the reranker, pools of nearby rows scored together (writer.share_pools)
against row by row, chunked against one row at a time (same run, same rows), and `tweetsim
generate` on a 10,000-row official file end to end (wall time, peak memory).

usage: python bench/bench_writer.py [--params params.yaml] [--pool data/tweets.parquet]
                                    [--writer-dir models/writer/unseen_time] [--input FILE] [--rows 10000] [--one 200] [--out FILE]
(--out: the JSON of the run, default bench/results/bench_writer.json)
Needs `dvc repro select_text`. Run by hand, not by CI.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from _results import add_out, write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tweetsim.writer.writers import select_writer  # noqa: E402
from tweetsim.data.load import read_official  # noqa: E402
from tweetsim.config.params import load_params  # noqa: E402


def peak_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--pool", default="data/tweets.parquet")
    ap.add_argument("--writer-dir", default=None)
    ap.add_argument("--input", default="data/sample/official/content_simulation_test_time.xlsx")
    ap.add_argument("--rows", type=int, default=10_000, help="rows of the replicated file for `tweetsim generate`")
    ap.add_argument("--one", type=int, default=200, help="rows timed one at a time")
    add_out(ap, "bench_writer")
    args = ap.parse_args()
    params = load_params(args.params)
    writer_dir = Path(args.writer_dir or ROOT / "models" / "writer" / params["writer"]["cli_regime"])
    rows, _ = read_official(args.input)
    t0 = time.perf_counter()
    writer = select_writer(params, writer_dir, args.pool, "reranked", context=rows)
    load_s = time.perf_counter() - t0
    print(f"load: {load_s:.1f}s (pool {len(writer.pool.texts)} tweets, {len(rows)} input rows)")
    timing = {}
    reranker, share = writer.reranker, writer.selector.p.share_pools
    for name, model, shared in (("consensus", None, share), ("reranked", reranker, share), ("reranked, row by row pools", reranker, 0)):
        writer.reranker = model
        writer.selector.p = replace(writer.selector.p, share_pools=shared)
        t0 = time.perf_counter()
        for i in range(0, len(rows), 512):
            writer.write(rows.iloc[i : i + 512])
        timing[name] = len(rows) / (time.perf_counter() - t0)
        print(f"selection, {name}: {timing[name]:.0f} rows/s (chunks of 512)")
    writer.selector.p = replace(writer.selector.p, share_pools=share)
    print(f"pools scored together / row by row: {timing['reranked'] / timing['reranked, row by row pools']:.2f}x")
    one = rows.head(args.one)
    t0 = time.perf_counter()
    for i in range(len(one)):
        writer.write(one.iloc[i : i + 1])
    one_rate = len(one) / (time.perf_counter() - t0)
    print(f"selection, reranked, one row at a time: {one_rate:.0f} rows/s; chunked / one at a time "
          f"{timing['reranked'] / one_rate:.2f}x; reranker / consensus cost {timing['consensus'] / timing['reranked']:.2f}x; "
          f"peak RSS {peak_mb():.0f} MB")

    with tempfile.TemporaryDirectory() as tmp:
        raw = pd.read_excel(args.input) if args.input.endswith(".xlsx") else pd.read_csv(args.input)
        reps = -(-args.rows // len(raw))
        big = pd.concat([raw.assign(id=raw["id"] + k * 10**7) for k in range(reps)], ignore_index=True).head(args.rows)
        src = Path(tmp) / f"content_simulation_{args.rows}.csv"
        big.to_csv(src, index=False)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tweetsim", "generate", "--input", str(src), "--output", str(Path(tmp) / "out.csv"),
                        "--params", args.params, "--pool", args.pool, "--writer-dir", str(writer_dir)], check=True)
        wall = time.perf_counter() - t0
        n_out = len(pd.read_csv(Path(tmp) / "out.csv"))
    fig = {"load_s": round(load_s, 1), "pool_tweets": len(writer.pool.texts), "input_rows": len(rows),
           "selection_rows_per_s": {k: round(v) for k, v in timing.items()},
           "ratio_shared_pools": round(timing["reranked"] / timing["reranked, row by row pools"], 2),
           "one_at_a_time_rows": len(one), "one_at_a_time_rows_per_s": round(one_rate),
           "ratio_chunked_one": round(timing["reranked"] / one_rate, 2),
           "ratio_consensus_reranker": round(timing["consensus"] / timing["reranked"], 2), "peak_rss_mb": round(peak_mb()),
           "generate_rows": args.rows, "generate_rows_written": n_out, "generate_wall_s": round(wall, 1),
           "generate_peak_rss_mb": round(peak_mb(resource.RUSAGE_CHILDREN))}
    print(f"tweetsim generate, {args.rows:,}-row file: {wall:.1f}s wall ({n_out} rows written; target under 300 s), "
          f"peak RSS {peak_mb(resource.RUSAGE_CHILDREN):.0f} MB")
    write(args.out, fig)


if __name__ == "__main__":
    main()
