"""regress_within_bucket@<edge>: per regime, the XGBoost regressor of the like bucket whose lower
edge is <edge> (one DVC foreach stage per bucket), trained in log1p space with smearing.

Writes models/like_regressor/<edge>/<regime>.{ubj,json}.
usage: python stages/regress_within_bucket.py params.yaml data models EDGE
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes.artefacts import Layout, tree_features
from tweetsim.likes.config import XgbConfig
from tweetsim.likes.features import log_likes
from tweetsim.config.params import StageError, load_params
from tweetsim.likes.regressor import fit_bucket


@stage
def main(params_path: str, data_dir: str, models_dir: str, edge: str) -> None:
    params = load_params(params_path)
    p = XgbConfig.from_params(params["regress_within_bucket"]["xgb"])
    edges = [float(e) for e in params["train_like_classifier"]["bucket_edges"]]
    if float(edge) not in edges:
        raise StageError(f"regress_within_bucket: {edge} is not one of train_like_classifier.bucket_edges {edges}")
    b = edges.index(float(edge))
    feats = pd.read_parquet(Path(data_dir) / "likes" / "features.parquet")
    names = tree_features(feats.columns, p)
    for regime in params["split"]["regimes"]:
        f = feats[feats["regime"] == regime].reset_index(drop=True)
        tr, va = f[f["side"] == "train"].reset_index(drop=True), f[f["side"] == "val"].reset_index(drop=True)
        reg = fit_bucket(tr, log_likes(tr["likes"]), (tr["bucket"] == b).to_numpy(), va, log_likes(va["likes"]),
                         (va["bucket"] == b).to_numpy(), names, p, b)
        reg.save(Layout(Path(models_dir)).regressor(edge, regime))
        m = reg.meta
        print(f"regress_within_bucket@{edge} {regime}: {m['n_train']} training rows"
              f"{' (FALLBACK: too few in bucket, fitted on all rows)' if m['fallback_all_rows'] else ''}, "
              f"{m['best_iteration'] + 1} trees, smearing {m['smearing']:.3f}, "
              f"train log1p-RMSE {m['train_rmse_log1p']:.3f}, val {m.get('val_rmse_log1p', np.nan):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
