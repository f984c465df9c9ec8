"""select_text: per regime, the tweet writer that chooses among candidates (tweetsim.writer.fit).

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

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.text.metrics import to_json_safe
from tweetsim.writer.fit import fit_regimes


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    preds, report = fit_regimes(load_params(params_path), Path(data_dir), Path(models_dir))
    out = Path(data_dir) / "predictions" / "text"
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in preds.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "select_text.json").write_text(json.dumps(to_json_safe(report), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
