"""combine_likes: per regime, the final likes from the classifier's bucket probabilities and the
bucket regressors: the predicted bucket's regressor (argmax) and the probability-weighted mixture,
each with and without smearing; plots; the bundle the `tweetsim predict-likes` CLI loads
(tweetsim.likes.combine).

Writes data/predictions/likes/bucket_xgb_{argmax,mixture}[_nosmear].parquet (val + test rows),
plots/likes/pred_vs_actual.csv, plots/likes/confusion.csv (test rows of every regime),
metrics/like_buckets.json, models/likes/bundle.json and models/likes/intervals/<regime>.json (conformal
ranges calibrated on the regime's val rows, tweetsim/likes/intervals.py; the CLI's variant's predictions get
`pred_low, pred_high`).
usage: python stages/combine_likes.py [params.yaml] [data] [models] [plots] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.likes.combine import combine_regimes, write_bundle


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models",
         plots_dir: str = "plots/likes", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    data = Path(data_dir)
    got = combine_regimes(params, data / "likes" / "features.parquet", data / "tweets.parquet", Path(models_dir))
    out = data / "predictions" / "likes"
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in got["predictions"].items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    got["pred_vs_actual"].to_csv(Path(plots_dir) / "pred_vs_actual.csv", index=False)
    got["confusion"].to_csv(Path(plots_dir) / "confusion.csv", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "like_buckets.json").write_text(json.dumps(got["summary"], indent=2, sort_keys=True) + "\n")
    write_bundle(params, Path(models_dir))  # refuses a cli_regime outside split.regimes


if __name__ == "__main__":
    main(*sys.argv[1:])
