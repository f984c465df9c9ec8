"""backtest_likes: the served path measured on held-out rows. Within each regime, the router's route
models are fitted on the regime's training rows with the deploy recipe, and its val and test rows are
predicted through the router, as `tweetsim predict-likes` would (tweetsim/likes/backtest.py).

Writes data/predictions/likes/served.parquet (val and test rows: route, reason, likes and range;
evaluate scores its test rows as `served`) and data/likes/backtest_calibration.parquet (the val rows
that each route's ranges in the deploy fit are calibrated on).
usage: python stages/backtest_likes.py [params.yaml] [data] [models]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.likes.backtest import backtest


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models") -> None:
    params = load_params(params_path)
    data = Path(data_dir)
    preds, cal = backtest(params, data / "tweets.parquet", data / "captions.parquet", data / "ocr.parquet",
                          data / "splits.parquet", Path(models_dir), int(params["deploy_likes"]["num_threads"]),
                          progress=False)
    (data / "predictions" / "likes").mkdir(parents=True, exist_ok=True)
    preds.to_parquet(data / "predictions" / "likes" / "served.parquet", index=False)
    cal.to_parquet(data / "likes" / "backtest_calibration.parquet", index=False)
    test = preds[preds["side"] == "test"]
    counts = test.groupby(["regime", "route"], sort=True).size()
    print("backtest_likes: test rows by regime and route: " + ", ".join(f"{r}/{k} {n}" for (r, k), n in counts.items())
          + " (evaluate scores them as `served`)")


if __name__ == "__main__":
    main(*sys.argv[1:])
