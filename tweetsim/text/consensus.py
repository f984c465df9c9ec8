"""The strong text baseline, `consensus_recent`: among the account's last N tweets dated before the
row, the one closest on average to the others (TF-IDF cosine). No model: the metrics reward an
account's typical tweet, and this picks it. The writer must beat it to be worth its reranker.

Candidates come from a pool (the regime's training split with content), dated strictly before the
row and never the row itself: the account's last N; without any, the brand's last N; without any,
the pool's last N. The TF-IDF vocabulary and weights are fitted on the pool's texts. A row with no
earlier tweet at all takes the pool's first N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def most_central(vectors) -> int:
    """Position of the row with the highest mean cosine to the other rows (`vectors`: L2-normalised
    rows, sparse or dense); ties go to the last row (the latest tweet), one row is its own pick."""
    n = vectors.shape[0]
    if n == 1:
        return 0
    sims = vectors @ vectors.T
    sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
    np.fill_diagonal(sims, 0.0)
    mean = np.round(sims.sum(1) / (n - 1), 12)  # rounded: ties broken by position, not by float noise
    return int(n - 1 - np.argmax(mean[::-1]))


class ConsensusRecent:
    """Fitted on a pool of tweets with content; `texts(rows)` gives each row's pick."""

    def __init__(self, pool: pd.DataFrame, n: int):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if n < 1:
            raise ValueError(f"baselines.consensus_recent: n must be at least 1, got {n}")
        pool = pool[pool["content"].notna()].sort_values(["date", "source", "id"], kind="stable").reset_index(drop=True)
        if pool.empty:
            raise ValueError("consensus_recent: the training split has no row with content")
        self.pool, self.n = pool, int(n)
        self.vectors = TfidfVectorizer().fit_transform(pool["content"].astype(str)).tocsr()
        self.dates = pool["date"].to_numpy(dtype="datetime64[ns]")
        self.key = dict(zip(zip(pool["source"], pool["id"]), range(len(pool))))
        self.groups = {lv: {k: np.asarray(v) for k, v in pool.groupby(lv, sort=True).indices.items()}
                       for lv in ("username", "company")}

    def candidates(self, row) -> np.ndarray:
        """Pool positions of `row`'s candidates, in date order (account -> brand -> pool)."""
        date = row.date
        cutoff = (np.datetime64(pd.Timestamp(date).tz_convert(None)) if pd.notna(date) else None)
        own = self.key.get((row.source, row.id), -1)
        everything = np.arange(len(self.pool))
        for level, value in (("username", row.username), ("company", row.company), (None, None)):
            cand = everything if level is None else self.groups[level].get(value)
            if cand is None:
                continue
            earlier = cand[self.dates[cand] < cutoff] if cutoff is not None else cand
            earlier = earlier[earlier != own]
            if len(earlier):
                return earlier[-self.n:]
        return everything[everything != own][: self.n]

    def pick(self, row) -> int:
        cand = self.candidates(row)
        return int(cand[most_central(self.vectors[cand])])

    def texts(self, rows: pd.DataFrame) -> list[str]:
        cols = rows.assign(username=rows["username"].fillna(""), company=rows["company"].fillna(""))
        return [self.pool.at[self.pick(r), "content"] for r in cols[["source", "id", "date", "username", "company"]].itertuples()]
