"""How far an account-level predictor can go: the high/low accuracy and log1p-RMSE on each regime's
test rows of an *oracle* that predicts, for every test row, its account's median log1p likes over the
test rows themselves (test labels: not a model, a ceiling for any predictor that gives all tweets of
an account one value). Next to it, the same with the account's median over the rows a test row's
history may use (`train_like_classifier.test_history`), which is a real predictor.

usage: python scripts/likes_ceiling.py [data] [params.yaml]   (after `dvc repro train_like_classifier`)
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tweetsim.likes.features import known_splits_for_test


def main(data_dir: str = "data", params_path: str = "params.yaml") -> None:
    data = Path(data_dir)
    known_splits = known_splits_for_test(yaml.safe_load(Path(params_path).read_text())["train_like_classifier"]["test_history"])
    feats = pd.read_parquet(data / "likes" / "features.parquet", columns=["regime", "source", "id", "side", "likes"])
    users = pd.read_parquet(data / "tweets.parquet", columns=["source", "id", "username"])
    f = feats.merge(users, on=["source", "id"], how="left").assign(y=lambda d: np.log1p(d["likes"].astype(float)))
    for regime, fr in f.groupby("regime", sort=True):
        thr = np.log1p(np.median(fr.loc[fr["side"] == "train", "likes"].astype(float)))
        te = fr[fr["side"] == "test"]
        hist = fr[fr["side"].isin(known_splits)].groupby("username")["y"].median()
        for name, pred in (("oracle: account median over the test rows", te.groupby("username")["y"].transform("median")),
                           (f"account median over {'+'.join(known_splits)} (constant where none)", te["username"].map(hist).fillna(thr))):
            acc = np.mean((pred > thr) == (te["y"] > thr))
            rmse = np.sqrt(np.mean((pred - te["y"]) ** 2))
            print(f"{regime:13s} {name:55s} high/low {acc:.3f}  log1p-RMSE {rmse:.3f}  ({len(te)} test rows)")


if __name__ == "__main__":
    main(*sys.argv[1:])
