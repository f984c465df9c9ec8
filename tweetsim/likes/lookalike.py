"""Look-alike brands: for a row of a brand the labelled rows never saw, the known brands most like it
by what the row carries, and their likes level.

Each known brand is profiled by the mean TF-IDF vector (L2-normalised) of its rows' words: tweet text,
media caption and OCR text, username split into words, and a token per media kind. A row's look-alikes
are the `k` brands whose profile is nearest its own vector (cosine); its feature is their similarity-
weighted mean log1p likes, each brand's mean shrunk towards the prior with `shrink` pseudo-rows.
A brand's level says how large its audience is, the one thing a new brand's rows do not say.

Training rows get the feature with their own brand left out (its profile is no candidate, its likes are
in neither a level nor the prior), as a row of an unknown brand sees it. The IDF weights read no likes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

COLUMNS = ("lookalike_level", "lookalike_sim")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|[_\d]+")


def row_words(rows: pd.DataFrame) -> list[str]:
    """The words a row carries: text, caption, OCR, username split at case changes, media kinds."""
    def col(c):
        return rows[c].fillna("").astype(str).tolist() if c in rows else [""] * len(rows)

    def num(c):
        return np.nan_to_num(pd.to_numeric(rows[c], errors="coerce").to_numpy(float)) if c in rows else np.zeros(len(rows))

    kinds = [" ".join(f"mediakind{k}" for k, v in zip(("photo", "video", "gif"), flags) if v > 0) or "mediakindnone"
             for flags in zip(num("n_photo"), num("n_video"), num("n_gif"))]
    user = [_CAMEL.sub(" ", u) for u in col("username")]
    return [" ".join(parts) for parts in zip(col("content"), col("caption"), col("ocr_text"), user, kinds)]


class LookAlike:
    """Brand profiles and levels of labelled rows; `features` gives the look-alike columns of rows."""

    def __init__(self, k: int, shrink: float, max_words: int):
        self.k, self.shrink, self.max_words = int(k), float(shrink), int(max_words)
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.brands: list[str] = []
        self.profiles = sparse.csr_matrix((0, 0))
        self.sums = np.zeros(0)  # per brand: sum and count of log1p likes
        self.counts = np.zeros(0)

    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer

        v = TfidfVectorizer(lowercase=True, min_df=2, max_features=self.max_words or None, sublinear_tf=True, dtype=np.float64)
        if self.vocab:
            v.vocabulary_, v.idf_ = self.vocab, self.idf
        return v

    def vectors(self, rows: pd.DataFrame) -> sparse.csr_matrix:
        return self._vectorizer().transform(row_words(rows)).tocsr()

    def fit(self, rows: pd.DataFrame, brands, likes) -> "LookAlike":
        """Profiles and levels of the brands of `rows` (labelled: `likes`); rows without a brand count
        for the vocabulary only."""
        v = self._vectorizer().fit(row_words(rows))
        self.vocab = {w: int(i) for w, i in sorted(v.vocabulary_.items())}
        self.idf = v.idf_.astype(float)
        X = self.vectors(rows)
        brands = pd.Series(brands, dtype=object).fillna("").astype(str).to_numpy()
        y = np.log1p(np.clip(np.asarray(likes, float), 0, None))
        self.brands = sorted(set(brands) - {""})
        code = pd.Categorical(brands, categories=self.brands).codes
        keep = code >= 0
        member = sparse.csr_matrix((np.ones(keep.sum()), (code[keep], np.flatnonzero(keep))), shape=(len(self.brands), len(brands)))
        profiles = member @ X
        norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(1))).ravel()
        self.profiles = sparse.diags(1.0 / np.clip(norms, 1e-12, None)) @ profiles
        self.sums = np.bincount(code[keep], weights=y[keep], minlength=len(self.brands))
        self.counts = np.bincount(code[keep], minlength=len(self.brands)).astype(float)
        return self

    def features(self, rows: pd.DataFrame, own_brand=None) -> pd.DataFrame:
        """lookalike_level (the k nearest known brands' shrunk mean log1p likes, weighted by similarity)
        and lookalike_sim (the nearest one's cosine) of each row, from the row alone. `own_brand`:
        each row's brand, left out of its look-alikes, its levels and the prior (training rows)."""
        sim = (self.vectors(rows) @ self.profiles.T).toarray() if len(self.brands) else np.zeros((len(rows), 0))
        n = len(rows)
        sums, counts = np.broadcast_to(self.sums, sim.shape).copy(), np.broadcast_to(self.counts, sim.shape).copy()
        if own_brand is not None:
            pos = {b: i for i, b in enumerate(self.brands)}
            idx = np.array([pos.get(str(b), -1) for b in own_brand])
            hit = np.flatnonzero(idx >= 0)
            sim[hit, idx[hit]] = -np.inf
            sums[hit, idx[hit]], counts[hit, idx[hit]] = 0.0, 0.0
        prior = sums.sum(1) / np.clip(counts.sum(1), 1, None)
        level = (sums + self.shrink * prior[:, None]) / (counts + self.shrink)
        k = min(self.k, sim.shape[1] - (own_brand is not None))
        if k <= 0:
            return pd.DataFrame({COLUMNS[0]: np.full(n, np.nan), COLUMNS[1]: np.full(n, np.nan)}, index=rows.index)
        # the k most similar, ties broken by brand order (argsort is stable on the negated similarities)
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        s = np.take_along_axis(sim, top, 1)
        w = np.clip(s, 0, None)
        w[w.sum(1) == 0] = 1.0  # a row sharing no word with any brand: their plain mean
        out = (w * np.take_along_axis(level, top, 1)).sum(1) / w.sum(1)
        return pd.DataFrame({COLUMNS[0]: out, COLUMNS[1]: np.clip(s[:, 0], 0, None)}, index=rows.index)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        sparse.save_npz(folder / "lookalike_profiles.npz", self.profiles.tocsr(), compressed=True)
        np.savez(folder / "lookalike_levels.npz", idf=self.idf, sums=self.sums, counts=self.counts)
        (folder / "lookalike.json").write_text(json.dumps({"k": self.k, "shrink": self.shrink, "max_words": self.max_words,
                                                           "brands": self.brands, "vocab": self.vocab}, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "LookAlike":
        meta = json.loads((folder / "lookalike.json").read_text())
        la = cls(meta["k"], meta["shrink"], meta["max_words"])
        z = np.load(folder / "lookalike_levels.npz")
        la.vocab, la.brands, la.idf, la.sums, la.counts = meta["vocab"], meta["brands"], z["idf"], z["sums"], z["counts"]
        la.profiles = sparse.load_npz(folder / "lookalike_profiles.npz").tocsr()
        return la
