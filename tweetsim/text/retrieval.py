"""The text baseline, and the writer LM's exemplars: retrieval of a training tweet — of the same
account, else the same brand, else any — choosing the one whose media caption is closest where
both sides have captions, else the most recent one before the row's date (the nearest after it
when none is before)."""

import numpy as np
import pandas as pd


class Retriever:
    """Nearest training tweet by account -> brand -> everything, caption similarity then time."""

    def __init__(self, pool: pd.DataFrame, embed_fn=None):
        pool = pool[pool["content"].notna()].sort_values(["date", "source", "id"], kind="stable").reset_index(drop=True)
        if pool.empty:
            raise ValueError("retrieval: the training split has no row with content")
        self.pool = pool
        self.embed_fn = embed_fn
        self.dates = pool["date"].to_numpy(dtype="datetime64[ns]")
        self.index = {k: i for i, k in enumerate(zip(pool["source"], pool["id"]))}
        self.has_cap = pool["caption"].notna().to_numpy() if "caption" in pool else np.zeros(len(pool), bool)
        self.cap_vecs = None
        if embed_fn is not None and self.has_cap.any():
            vecs = embed_fn(pool.loc[self.has_cap, "caption"].tolist())
            self.cap_vecs = np.zeros((len(pool), vecs.shape[1]), np.float32)
            self.cap_vecs[self.has_cap] = vecs
        self.groups = {level: pool.groupby(level).indices for level in ("username", "company")}
        self.everything = np.arange(len(pool))

    def _pick(self, cand: np.ndarray, date, qvec) -> int | None:
        """cand: pool indices in date order."""
        if len(cand) == 0:
            return None
        if qvec is not None and self.cap_vecs is not None:
            with_cap = cand[self.has_cap[cand]]
            if len(with_cap):
                return int(with_cap[np.argmax(self.cap_vecs[with_cap] @ qvec)])
        if date is None or pd.isna(date):
            return int(cand[-1])
        n_before = np.searchsorted(self.dates[cand], np.datetime64(date.tz_convert(None)), side="left")
        return int(cand[n_before - 1]) if n_before else int(cand[0])

    def retrieve(self, rows: pd.DataFrame, k: int = 1) -> list[list[int]]:
        """Indices into self.pool of up to k tweets for each row, best first (no row retrieves itself)."""
        qvecs = [None] * len(rows)
        if self.cap_vecs is not None and "caption" in rows:
            has = rows["caption"].notna().to_numpy()
            if has.any():
                it = iter(self.embed_fn(rows.loc[has, "caption"].tolist()))
                qvecs = [next(it) if h else None for h in has]
        out = []
        for q, src, id_, user, company, date in zip(qvecs, rows["source"], rows["id"], rows["username"],
                                                    rows["company"], rows["date"]):
            found = []
            excluded = {self.index.get((src, id_), -1)}
            for level, value in (("username", user), ("company", company), (None, None)):
                cand = self.everything if level is None else self.groups[level].get(value)
                if cand is None:
                    continue
                cand = cand[~np.isin(cand, list(excluded))]
                while len(found) < k:
                    i = self._pick(cand, date, q)
                    if i is None:
                        break
                    found.append(i)
                    excluded.add(i)
                    cand = cand[cand != i]
                if len(found) >= k:
                    break
            out.append(found)
        return out

    def texts(self, rows: pd.DataFrame) -> list[str]:
        return [self.pool.at[ix[0], "content"] for ix in self.retrieve(rows, k=1)]
