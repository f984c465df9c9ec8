"""deploy_likes: one likes model per route (tweetsim/likes/router.py), each refitted on every labelled
row with its recipe and a validated regime's steps and trees (tweetsim/likes/deploy.py), its ranges
calibrated on the backtest's held-out rows of that route; the CLI and the web app load it by default.

Writes models/likes/deploy/ (router.json; <route>/ with classifier/, regressor/<edge>.*, gate.*,
intervals.json, bundle.json).
usage: python stages/deploy_likes.py [params.yaml] [data] [models]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

from tweetsim.config.params import load_params
from tweetsim.likes.deploy import fit_deploy


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models") -> None:
    params = load_params(params_path)
    data = Path(data_dir)
    meta = fit_deploy(params, data / "tweets.parquet", data / "captions.parquet", data / "ocr.parquet", Path(models_dir),
                      data / "likes" / "backtest_calibration.parquet", progress=params["train_like_classifier"]["progress"])
    for route, r in meta["recipes"].items():
        print(f"deploy_likes {route}: fitted on all {meta['n_rows']} labelled rows, settings of {r['settings_from']}, "
              f"history hidden: {r['hide'] or 'none'}, like statistics {'hidden' if r['hide_like_stats'] else 'kept'}, "
              f"trees {r['trees']}; ranges from {r['ranges_from']}")
    print("deploy_likes: no figure of this fit can come from its own rows: backtest_likes runs the same recipe in each "
          "regime, and evaluate scores it as `served` (metrics/likes.json)")


if __name__ == "__main__":
    main(*sys.argv[1:])
