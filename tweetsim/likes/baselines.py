"""The likes baselines every likes model is judged against, fitted on rows whose likes the models know too.

Likes: the constant training median, and the per-account median likes (falling back to the
constant for accounts with none) over the rows the models' own account history may use: training
rows for val rows, `train_like_classifier.test_history` (train and val) for test rows, so that
the models and the baseline know the same likes. The text baseline is text/retrieval.py.
"""

import numpy as np
import pandas as pd


def likes_baselines(train: pd.DataFrame, rows: pd.DataFrame, history: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """Predictions for `rows` from `train` (rows with likes); the per-account medians from `history`
    (rows with likes; default `train`)."""
    median = float(train["likes"].astype(float).median())
    history = train if history is None else history
    per_account = history["likes"].astype(float).groupby(history["username"].to_numpy()).median()
    account = rows["username"].map(per_account).fillna(median).to_numpy(dtype=float)
    return {"median": np.full(len(rows), median), "account_median": account}
