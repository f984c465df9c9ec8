"""Similarity between tweets, computed for whole pools at once: the utility of consensus (MBR)
selection, the reranker's features and its labels.

Every text is tokenised as the metrics tokenise it (`tweetsim.metrics.tokenize`) and encoded once
into sparse rows, so the similarity of every pair in a pool is a sparse matrix product:

- `unigram`, `bigram`: Dice overlap of the n-gram sets, 2|A∩B| / (|A| + |B|) (BLEU-1 / ROUGE-1
  and ROUGE-2 reward shared n-grams);
- `rougeL`: the LCS F-measure 2·LCS / (|a| + |b|), the pair's LCS from rapidfuzz (C++; each token
  is mapped to one character so its string LCS is the token LCS);
- `cider`: CIDEr-D for one reference: the mean over n = 1..4 of the cosine of TF-IDF n-gram vectors,
  times the Gaussian length penalty exp(-(|a| - |b|)² / 2σ²), σ = 6; document frequencies come
  from the texts the space is built on (the training split). Without CIDEr's x10, so every
  component lies in [0, 1] and the params' weights mix like with like.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import scipy.sparse as sp

from tweetsim.metrics import tokenize

COMPONENTS = ("unigram", "bigram", "rougeL", "cider")
CIDER_N = 4
CIDER_SIGMA = 6.0
_CHAR0 = 0x10000  # token ids map to characters from here on: no surrogates, ~1M distinct tokens


def _ngrams(toks: list[str], n: int) -> list[tuple]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


class TextSpace:
    """N-gram vocabularies and document frequencies of a corpus (the training split's tweets)."""

    def __init__(self, corpus: list[str]):
        self.vocab: list[dict] = [{} for _ in range(CIDER_N)]
        self.df: list[Counter] = [Counter() for _ in range(CIDER_N)]
        toks = [tokenize(t) for t in corpus]
        for t in toks:
            for n in range(CIDER_N):
                self.df[n].update(set(_ngrams(t, n + 1)))
        self.n_docs = len(toks)

    def _id(self, n: int, gram: tuple) -> int:
        return self.vocab[n].setdefault(gram, len(self.vocab[n]))

    def encode(self, texts: list[str]) -> "Encoded":
        """Sparse rows for `texts` (grams outside the corpus get ids too: document frequency 0)."""
        rows: list[list[list[int]]] = [[[] for _ in texts] for _ in range(CIDER_N)]
        vals: list[list[list[float]]] = [[[] for _ in texts] for _ in range(CIDER_N)]
        strings, lengths = [], np.zeros(len(texts), np.float64)
        for i, text in enumerate(texts):
            toks = tokenize(text)
            lengths[i] = len(toks)
            strings.append("".join(chr(_CHAR0 + self._id(0, (t,))) for t in toks))
            for n in range(CIDER_N):
                counts = Counter(_ngrams(toks, n + 1))
                for gram, c in sorted(counts.items()):
                    rows[n][i].append(self._id(n, gram))
                    vals[n][i].append(c * np.log((self.n_docs + 1.0) / (self.df[n].get(gram, 0) + 1.0)))
        sets, tfidf = [], []
        for n in range(CIDER_N):
            indptr = np.cumsum([0] + [len(r) for r in rows[n]])
            idx = np.fromiter((j for r in rows[n] for j in r), np.int64, count=int(indptr[-1]))
            width = max(len(self.vocab[n]), 1)
            binary = sp.csr_matrix((np.ones(len(idx)), idx, indptr), shape=(len(texts), width))
            weights = sp.csr_matrix((np.fromiter((v for r in vals[n] for v in r), np.float64, count=len(idx)), idx, indptr),
                                    shape=(len(texts), width))
            norm = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())
            weights = sp.diags(np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)) @ weights
            if n < 2:
                sets.append(binary)
            tfidf.append(weights.tocsr())
        return Encoded(self, sets, tfidf, strings, lengths)


class Encoded:
    """Encoded texts; `rows(ix)` selects, `stack` concatenates (vocabularies may have grown since)."""

    def __init__(self, space: TextSpace, sets, tfidf, strings, lengths):
        self.space, self.sets, self.tfidf, self.strings, self.lengths = space, sets, tfidf, strings, lengths

    def __len__(self) -> int:
        return len(self.strings)

    def rows(self, ix) -> "Encoded":
        ix = np.asarray(ix, dtype=np.int64)
        return Encoded(self.space, [m[ix] for m in self.sets], [m[ix] for m in self.tfidf],
                       [self.strings[i] for i in ix], self.lengths[ix])

    @staticmethod
    def stack(parts: list["Encoded"]) -> "Encoded":
        parts = [p for p in parts if len(p)]
        widths = [max(p.tfidf[n].shape[1] for p in parts) for n in range(CIDER_N)]

        def _cat(ms, w):
            return sp.vstack([sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], w)) for m in ms]).tocsr()

        return Encoded(parts[0].space, [_cat([p.sets[n] for p in parts], widths[n]) for n in range(2)],
                       [_cat([p.tfidf[n] for p in parts], widths[n]) for n in range(CIDER_N)],
                       [s for p in parts for s in p.strings], np.concatenate([p.lengths for p in parts]))


def _align(a: sp.csr_matrix, b: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    w = max(a.shape[1], b.shape[1])
    fix = lambda m: m if m.shape[1] == w else sp.csr_matrix((m.data, m.indices, m.indptr), shape=(m.shape[0], w))  # noqa: E731
    return fix(a), fix(b)


def similarity(a: Encoded, b: Encoded, components=COMPONENTS) -> dict[str, np.ndarray]:
    """{component: [len(a), len(b)] matrix} of the similarities of every pair (a_i, b_j)."""
    from rapidfuzz.distance import LCSseq
    from rapidfuzz.process import cdist

    out = {}
    la, lb = a.lengths[:, None], b.lengths[None, :]
    for n, name in enumerate(("unigram", "bigram")):
        if name in components:
            x, y = _align(a.sets[n], b.sets[n])
            inter = (x @ y.T).toarray()
            size_a, size_b = np.asarray(x.sum(axis=1)), np.asarray(y.sum(axis=1)).T
            total = size_a + size_b
            out[name] = np.divide(2 * inter, total, out=np.zeros_like(inter), where=total > 0)
    if "rougeL" in components:
        lcs = cdist(a.strings, b.strings, scorer=LCSseq.similarity, dtype=np.int32, workers=1).astype(np.float64)
        total = la + lb
        out["rougeL"] = np.divide(2 * lcs, total, out=np.zeros_like(lcs), where=total > 0)
    if "cider" in components:
        cos = np.zeros((len(a), len(b)))
        for n in range(CIDER_N):
            x, y = _align(a.tfidf[n], b.tfidf[n])
            cos += (x @ y.T).toarray()
        out["cider"] = cos / CIDER_N * np.exp(-((la - lb) ** 2) / (2 * CIDER_SIGMA**2))
    return out


def mix(sims: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted mean of the components (weights need not sum to 1; zero weights are skipped)."""
    total = sum(float(w) for w in weights.values())
    if total <= 0:
        raise ValueError(f"utility weights must have a positive sum, got {weights}")
    return sum(float(w) * sims[k] for k, w in weights.items() if float(w)) / total
