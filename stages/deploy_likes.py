"""deploy_likes: refit the likes models (classifier, bucket regressors, tabular gate) on every labelled
row, with the steps and trees of the validated regime `deploy_likes.settings_from` (tweetsim/likes/deploy.py);
the CLI and the web app load it by default.

Writes models/likes/deploy/ (classifier/, regressor/<edge>.*, gate.*, intervals.json, bundle.json).
usage: python stages/deploy_likes.py [params.yaml] [data] [models]
"""

import sys
from pathlib import Path

from tweetsim.likes.deploy import fit_deploy
from tweetsim.config.params import load_params
from tweetsim.apps.entry import stage


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models") -> None:
    params = load_params(params_path)
    d = params["deploy_likes"]
    data = Path(data_dir)
    b = fit_deploy(params, data / "tweets.parquet", data / "captions.parquet", data / "ocr.parquet", Path(models_dir),
                   progress=params["train_like_classifier"]["progress"])
    print(f"deploy_likes: fitted on all {b['n_rows']} labelled rows with the settings of regime {d['settings_from']}: "
          + ("the embedding head" if params["train_like_classifier"]["classifier"] == "head" else f"{b['classifier_steps']} classifier steps")
          + f", trees {b['trees']}"
          + (f", gate {b['gate_trees']} trees" if "gate_trees" in b else "")
          + f"; ranges from {d['intervals']}. No figure of this fit can come from its own rows (all of them are "
          "training rows): evaluate's per-regime tables (metrics/likes.json) are the measure.")


if __name__ == "__main__":
    main(*sys.argv[1:])
