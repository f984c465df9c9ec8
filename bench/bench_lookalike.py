"""Time the look-alike brands: pools and consensus features of the first N unseen_brand test rows
(every one without a known account or brand), metadata alone (`similar_text_weight: 0`) against
metadata and words (the params' weight), after a 50-row warm-up. Run by hand on the pipeline's data.

usage: python bench/bench_lookalike.py [--params params.yaml] [--data data] [--rows 1000] [--out FILE]
(--out: the JSON of the run, default bench/results/bench_lookalike.json)
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from _results import add_out, write

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tweetsim.config.params import load_params  # noqa: E402
from tweetsim.data.schema import read_tweets  # noqa: E402
from tweetsim.data.sides import join_from  # noqa: E402
from tweetsim.writer.config import WriterConfig  # noqa: E402
from tweetsim.writer.tweet_writer import TweetWriter  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--rows", type=int, default=1000)
    add_out(ap, "bench_lookalike")
    args = ap.parse_args()
    data, p = Path(args.data), WriterConfig.from_params(load_params(args.params)["writer"])
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    table = join_from(table, data).sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    rows = table[table["unseen_brand"] == "test"].iloc[: args.rows]
    pool = table[(table["unseen_brand"] == "train") & table["content"].notna()]
    fig = {"rows": len(rows), "warm_up_rows": 50, "rows_per_s": {}}
    for w in (0.0, float(p.pool.similar_text_weight)):
        writer = TweetWriter(pool, replace(p, pool=replace(p.pool, similar_text_weight=w)), context=table)
        writer.scored(rows.iloc[:50])
        t0 = time.perf_counter()
        writer.scored(rows)
        dt = time.perf_counter() - t0
        fig["rows_per_s"][f"similar_text_weight={w}"] = round(len(rows) / dt)
        print(f"similar_text_weight={w}: {len(rows)} rows in {dt:.2f} s = {len(rows) / dt:.0f} rows/s")
    write(args.out, fig)


if __name__ == "__main__":
    main()
