"""split: assign train / val / test per regime -> data/splits.parquet, metrics/splits.json.

usage: python stages/split.py [params.yaml] [data] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

from tweetsim.data.schema import read_tweets
from tweetsim.config.params import section
from tweetsim.data.splits import SplitConfig, assign, summary


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", metrics_dir: str = "metrics") -> None:
    p = section("split", params_path)
    table = read_tweets(Path(data_dir) / "tweets.parquet")
    splits = assign(table, SplitConfig.from_params(p))
    splits.to_parquet(Path(data_dir) / "splits.parquet", index=False)
    counts = summary(splits, table)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "splits.json").write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    for regime, sides in counts.items():
        print(f"split {regime}: " + ", ".join(f"{s} {c['rows']} ({c['with_likes']} likes, {c['with_content']} text)"
                                              for s, c in sides.items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
