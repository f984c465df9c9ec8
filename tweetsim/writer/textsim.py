"""Similarity between tweets, computed for whole pools at once: the utility of consensus (MBR)
selection, the reranker's features and its labels.

Every text is tokenised as the metrics tokenise it (`tweetsim.text.metrics.tokenize`) and encoded once
into sparse rows, so the similarity of every pair in a pool is one sparse matrix product:

- `unigram`, `bigram`: Dice overlap of the n-gram sets, 2|A∩B| / (|A| + |B|) (BLEU-1 / ROUGE-1
  and ROUGE-2 reward shared n-grams);
- `unigram_long`: the shared unigrams over the larger set, |A∩B| / max(|A|, |B|): BLEU-1's precision
  and its brevity penalty at once (a short text cannot score well against a long one);
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
import pandas as pd
import scipy.sparse as sp

from tweetsim.text.metrics import tokenize

COMPONENTS = ("unigram", "unigram_long", "bigram", "rougeL", "cider")
CIDER_N = 4
CIDER_SIGMA = 6.0
# Each text is 6 sparse rows: its unigram set, bigram set, and TF-IDF 1..4-gram vectors, each block
# in its own column range, so one product of a pool's rows with themselves gives every component
# of every pair at once (a pool of ~100 costs one sparse product instead of six).
BLOCKS = 2 + CIDER_N
_WIDTH = 1 << 24          # columns per block: n-gram ids stay below it
_CHAR0 = 0x10000          # tokens map to characters from here on: no surrogates, up to ~1M distinct tokens


def _ngrams(toks: list[str], n: int) -> list[tuple]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


class TextSpace:
    """N-gram vocabularies and document frequencies of a corpus (the training split's tweets)."""

    def __init__(self, corpus: list[str]):
        self.vocab: dict[tuple, int] = {}     # n-grams of every order -> column within a block
        self.tokens: dict[str, int] = {}      # tokens -> character (for the LCS)
        self.df: Counter = Counter()
        for text in corpus:
            toks = tokenize(text)
            self.df.update({g for n in range(CIDER_N) for g in _ngrams(toks, n + 1)})
        self.n_docs = len(corpus)

    def _id(self, gram: tuple) -> int:
        i = self.vocab.setdefault(gram, len(self.vocab))
        if i >= _WIDTH:
            raise ValueError(f"textsim: more than {_WIDTH} distinct n-grams")
        return i

    def encode(self, texts: list[str]) -> "Encoded":
        """Sparse rows for `texts` (grams outside the corpus get ids too: document frequency 0)."""
        cols, vals, counts = [], [], np.zeros(BLOCKS * len(texts), np.int64)
        strings, lengths, sizes = [], np.zeros(len(texts)), np.zeros((len(texts), 2))
        for i, text in enumerate(texts):
            toks = tokenize(text)
            lengths[i] = len(toks)
            strings.append("".join(chr(_CHAR0 + self.tokens.setdefault(t, len(self.tokens))) for t in toks))
            rows: list = [None] * BLOCKS  # (column ids, values) per block, in row order
            for n in range(CIDER_N):
                grams = Counter(_ngrams(toks, n + 1))
                ids = np.array([self._id(g) for g in grams], np.int64)
                w = np.array([c * np.log((self.n_docs + 1.0) / (self.df.get(g, 0) + 1.0)) for g, c in grams.items()])
                order = np.argsort(ids)
                ids, w = ids[order], w[order]
                norm = np.sqrt((w**2).sum())
                if n < 2:  # the n-gram set
                    sizes[i, n] = len(ids)
                    rows[n] = (n * _WIDTH + ids, np.ones(len(ids)))
                rows[2 + n] = ((2 + n) * _WIDTH + ids, w / norm if norm > 0 else w)
            for k, (c, v) in enumerate(rows):
                cols.append(c)
                vals.append(v)
                counts[BLOCKS * i + k] = len(c)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        x = sp.csr_matrix((np.concatenate(vals) if vals else np.zeros(0), np.concatenate(cols) if cols else np.zeros(0, np.int64),
                           indptr), shape=(BLOCKS * len(texts), BLOCKS * _WIDTH))
        return Encoded(x, strings, lengths, sizes)


class Encoded:
    """Encoded texts (BLOCKS rows each); `rows(ix)` selects, `stack` concatenates."""

    def __init__(self, x: sp.csr_matrix, strings: list[str], lengths: np.ndarray, sizes: np.ndarray):
        self.x, self.strings, self.lengths, self.sizes = x, strings, lengths, sizes

    def __len__(self) -> int:
        return len(self.strings)

    def rows(self, ix) -> "Encoded":
        ix = np.asarray(ix, dtype=np.int64)
        rows = (BLOCKS * ix[:, None] + np.arange(BLOCKS)).ravel()
        return Encoded(self.x[rows], [self.strings[i] for i in ix], self.lengths[ix], self.sizes[ix])

    @staticmethod
    def stack(parts: list["Encoded"]) -> "Encoded":
        return Encoded(sp.vstack([p.x for p in parts]).tocsr(), [s for p in parts for s in p.strings],
                       np.concatenate([p.lengths for p in parts]), np.vstack([p.sizes for p in parts]))


def _local(a: sp.csr_matrix, b: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The same rows over only the columns they use (transposing a 100M-column matrix costs its width).
    Columns are renumbered by a hash table in order of first use: each row keeps its entries' order,
    so every product sums in the same order (the same bits) as over the original columns."""
    if a is b:  # a pool with itself
        inv, uniq = pd.factorize(a.indices)
        one = sp.csr_matrix((a.data, inv, a.indptr), shape=(a.shape[0], max(len(uniq), 1)))
        return one, one
    inv, uniq = pd.factorize(np.concatenate([a.indices, b.indices]))
    m = max(len(uniq), 1)
    return (sp.csr_matrix((a.data, inv[: len(a.indices)], a.indptr), shape=(a.shape[0], m)),
            sp.csr_matrix((b.data, inv[len(a.indices) :], b.indptr), shape=(b.shape[0], m)))


def _blocks(a: Encoded, b: Encoded) -> np.ndarray:
    """[BLOCKS, len(a), len(b)]: the dot products of every pair, block by block."""
    if len(a) * len(b) <= 1_000_000:  # one product; cross-block entries are zero by construction,
        xa, xb = _local(a.x, a.x if a is b else b.x)  # so its nonzeros go straight to their block
        c = (xa @ xb.T).tocoo()
        g = np.zeros((BLOCKS, len(a), len(b)))
        g[c.row % BLOCKS, c.row // BLOCKS, c.col // BLOCKS] = c.data
        return g
    out = []
    for k in range(BLOCKS):
        xa = a.x[k::BLOCKS]
        xa, xb = _local(xa, xa if a is b else b.x[k::BLOCKS])
        out.append((xa @ xb.T).toarray())
    return np.stack(out)


def similarity(a: Encoded, b: Encoded, components=COMPONENTS) -> dict[str, np.ndarray]:
    """{component: [len(a), len(b)] matrix} of the similarities of every pair (a_i, b_j)."""
    from rapidfuzz.distance import LCSseq
    from rapidfuzz.process import cdist

    out = {}
    la, lb = a.lengths[:, None], b.lengths[None, :]
    g = _blocks(a, b)
    for n, name in enumerate(("unigram", "bigram")):
        if name in components:
            total = a.sizes[:, n][:, None] + b.sizes[:, n][None, :]
            out[name] = np.divide(2 * g[n], total, out=np.zeros_like(g[n]), where=total > 0)
    if "unigram_long" in components:
        longer = np.maximum(a.sizes[:, 0][:, None], b.sizes[:, 0][None, :])
        out["unigram_long"] = np.divide(g[0], longer, out=np.zeros_like(g[0]), where=longer > 0)
    if "rougeL" in components:
        lcs = cdist(a.strings, b.strings, scorer=LCSseq.similarity, dtype=np.int32, workers=1).astype(np.float64)
        total = la + lb
        out["rougeL"] = np.divide(2 * lcs, total, out=np.zeros_like(lcs), where=total > 0)
    if "cider" in components:
        out["cider"] = g[2:].sum(axis=0) / CIDER_N * np.exp(-((la - lb) ** 2) / (2 * CIDER_SIGMA**2))
    return out


def mix(sims: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted mean of the components (weights need not sum to 1; zero weights are skipped)."""
    total = sum(float(w) for w in weights.values())
    if total <= 0:
        raise ValueError(f"utility weights must have a positive sum, got {weights}")
    return sum(float(w) * sims[k] for k, w in weights.items() if float(w)) / total
