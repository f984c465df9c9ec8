"""Scores for tweet writing, shared by every model so all are compared alike (the likes' scores
are tweetsim.likes.metrics).

Text: corpus BLEU-1..4 and CIDEr-D from pycocoevalcap (the coco-caption code the LCBM paper's
numbers come from), mean ROUGE-1/2/L F-measure from rouge-score, and the mean cosine of MiniLM
sentence embeddings. All n-gram metrics see the same tokens, from `tokenize` below: rouge-score's
own tokenizer would drop emoji, non-ascii words and the `<hyperlink>`/`<mention>` placeholders,
which are a large part of what a tweet writer must get right.
"""

import html
import math
import re
from typing import Callable

import numpy as np

PLACEHOLDERS = ("<hyperlink>", "<mention>")

# Order matters: placeholders, then @handles and #hashtags, then words (an inner apostrophe keeps
# "don't" whole), then any other visible character on its own: punctuation, and emoji together
# with their variation selectors, skin tones and zero-width-joined parts.
_TOKEN = re.compile(
    "|".join(re.escape(p) for p in PLACEHOLDERS)
    + r"|[@#]\w+"
    + r"|\w+(?:['’]\w+)*"
    + r"|[^\w\s](?:[\ufe0f\U0001F3FB-\U0001F3FF]|\u200d[^\w\s])*"
)


def tokenize(text: str | None) -> list[str]:
    """Lowercased tokens; HTML entities (`&amp;` in the data) are unescaped first. None -> []."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    return _TOKEN.findall(html.unescape(str(text)).lower())


class _Tokenizer:
    """rouge-score calls `.tokenize(text)`; give it the shared tokens (no stemming)."""

    def tokenize(self, text: str) -> list[str]:
        return tokenize(text)


def embedding_cosine(refs: list[str], hyps: list[str], encode: Callable[[list[str]], np.ndarray] | None = None,
                     hyp_toks: list[list[str]] | None = None) -> float:
    """`text_metrics`' embedding_cosine on its own (evaluate computes it apart from the n-gram
    scores, which its workers compute): an empty hypothesis scores 0."""
    if encode is None:
        from tweetsim.text.embed import encode
    if hyp_toks is None:
        hyp_toks = [tokenize(h) for h in hyps]
    # The slow part: encode each distinct text once (generations repeat), ordered by length
    # so each batch pads to a similar length.
    uniq = sorted(set(refs) | {str(h) for h, t in zip(hyps, hyp_toks) if t}, key=lambda s: (len(s), s))
    vecs = dict(zip(uniq, np.asarray(encode(uniq), dtype=np.float64)))
    return float(np.mean([float(vecs[r] @ vecs[str(h)]) if t else 0.0 for r, h, t in zip(refs, hyps, hyp_toks)]))


def text_metrics(refs: list[str], hyps: list[str], embed: bool = True,
                 encode: Callable[[list[str]], np.ndarray] | None = None) -> dict:
    """Scores of written tweets `hyps` against the real ones `refs` (one reference each).

    - `bleu1`..`bleu4`: corpus BLEU (clipped n-gram counts and lengths summed over all pairs, one
      brevity penalty), pycocoevalcap's Bleu, no smoothing: a corpus with no matching 4-gram
      scores ~0 on BLEU-4.
    - `rouge1`, `rouge2`, `rougeL`: mean over pairs of the F-measure (rouge-score, sentence-level
      LCS for L, shared tokenizer, no stemming).
    - `cider`: pycocoevalcap's Cider, which is CIDEr-D (clipped counts, Gaussian length penalty,
      x10). Its IDF comes from the references of *this* corpus, so scores depend on the set
      scored together and a single pair always scores 0; compare models on the same rows.
    - `embedding_cosine`: mean cosine of sentence embeddings (`encode`, default
      `tweetsim.text.embed.encode`, unit vectors); None when `embed` is False.
    Empty hypotheses are valid and score 0 on every measure (the embedding cosine included: the
    encoder would otherwise give an empty string a non-zero similarity). None counts as empty.
    The n-gram scores are `CorpusScorer`'s: several writers on the same rows share its work.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"text_metrics: {len(refs)} references but {len(hyps)} hypotheses")
    scorer = CorpusScorer(refs)
    out = scorer.figures([scorer.pair(i, h) for i, h in enumerate(hyps)])
    out["embedding_cosine"] = embedding_cosine(refs, hyps, encode) if embed else None
    return out


class CorpusScorer:
    """`text_metrics`' n-gram scores for any number of writers over one set of references.

    pycocoevalcap recomputes the references' side (BLEU's clipped counts, CIDEr-D's document
    frequencies and vectors) on every call and scores every pair again; here the references' side
    is computed once and each distinct (row, text) pair once (`pair`, cached per row), since
    writers choosing from one pool often write the same text. The figures are pycocoevalcap's and
    rouge-score's to the bit: BLEU runs BleuScorer's own sums over the cached per-pair counts,
    CIDEr-D is `_CiderD`, ROUGE sums rouge-score's F-measures in row order (ROUGE-L's LCS from
    rapidfuzz; tests/test_metrics.py)."""

    ROUGE = ("rouge1", "rouge2", "rougeL")

    def __init__(self, refs: list[str]):
        from pycocoevalcap.bleu.bleu_scorer import cook_refs
        from rouge_score import rouge_scorer

        if len(refs) == 0:
            raise ValueError("text_metrics: no rows to score")
        bad = [i for i, r in enumerate(refs) if not isinstance(r, str)]
        if bad:
            raise ValueError(f"text_metrics: reference {bad[0]} is {refs[bad[0]]!r}, not a string ({len(bad)} such)")
        self.refs = list(refs)
        toks = [tokenize(r) for r in self.refs]
        sents = [" ".join(t) for t in toks]
        self.crefs = [cook_refs([s]) for s in sents]  # as Bleu(4).compute_score cooks them
        self.cider = _CiderD(sents)
        self.rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2"], tokenizer=_Tokenizer())
        self.chars: dict[str, str] = {}  # token -> one character, so rapidfuzz's string LCS is the token LCS
        self.ref_chars = [self._chars(t) for t in toks]
        self.seen: list[dict[str, tuple]] = [{} for _ in self.refs]

    def _chars(self, toks: list[str]) -> str:
        return "".join([self.chars.setdefault(t, chr(0x10000 + len(self.chars))) for t in toks])

    def _rouge_l(self, i: int, toks: list[str]) -> float:
        """rouge-score's ROUGE-L F (its _score_lcs arithmetic) with the LCS length from rapidfuzz
        (C++): rouge-score's pure-Python LCS table was a third of evaluate's n-gram time."""
        from rapidfuzz.distance import LCSseq
        from rouge_score.scoring import fmeasure

        ref = self.ref_chars[i]
        if not ref or not toks:
            return 0
        lcs = LCSseq.similarity(ref, self._chars(toks))
        return fmeasure(lcs / len(toks), lcs / len(ref))

    def pair(self, i: int, hyp: str | None) -> tuple:
        """(BLEU's counts of `hyp` against row i, as BleuScorer cooks them; ROUGE-1, -2, -L F; CIDEr-D)."""
        from pycocoevalcap.bleu.bleu_scorer import cook_test

        h = "" if hyp is None else str(hyp)
        got = self.seen[i].get(h)
        if got is None:
            toks = tokenize(h)
            sent = " ".join(toks)
            r = self.rouge.score(self.refs[i], h)
            got = self.seen[i][h] = (cook_test(sent, self.crefs[i]), r["rouge1"].fmeasure, r["rouge2"].fmeasure,
                                     self._rouge_l(i, toks), self.cider.score(i, sent))
        return got

    def figures(self, pairs: list[tuple]) -> dict:
        """bleu1..4, rouge1/2/L, cider and n of one writer from its `pair` of every row, in row order."""
        from pycocoevalcap.bleu.bleu_scorer import BleuScorer

        if len(pairs) != len(self.refs):
            raise ValueError(f"text_metrics: {len(self.refs)} references but {len(pairs)} hypotheses")
        bleu = BleuScorer(n=4)
        bleu.crefs, bleu.ctest = self.crefs, [p[0] for p in pairs]
        b, _ = bleu.compute_score(option="closest", verbose=0)
        rouge = {k: 0.0 for k in self.ROUGE}
        for p in pairs:
            for j, k in enumerate(self.ROUGE):
                rouge[k] += p[1 + j]
        n = len(pairs)
        out = {f"bleu{k + 1}": float(b[k]) for k in range(4)}
        out.update({k: v / n for k, v in rouge.items()})
        out.update({"cider": float(np.mean(np.array([p[4] for p in pairs]))), "n": n})
        return out


class _CiderD:
    """pycocoevalcap's CIDEr-D (CiderScorer: n=4, sigma=6, one reference a row) for any (row, text)
    pair, with the references' side (document frequencies, idf, reference vectors) computed once.
    CiderScorer recomputes all of it on every call, which made tuning a writer on 40,000 val rows
    spend most of its time there. The arithmetic is CiderScorer's, in its order (the same numbers,
    to the bit; tests/test_metrics.py compares it with CiderScorer's per-row scores), including its quirk of counting a text's length
    in bigrams for the length penalty."""

    def __init__(self, ref_sents: list[str], n: int = 4, sigma: float = 6.0):
        from pycocoevalcap.cider.cider_scorer import precook

        self.precook, self.n, self.sigma = precook, n, sigma
        crefs = [precook(s, n) for s in ref_sents]
        self.df: dict[tuple, float] = {}
        for c in crefs:
            for ngram in c:
                self.df[ngram] = self.df.get(ngram, 0.0) + 1
        self.ref_len = np.log(float(len(crefs)))
        self.idf: dict[tuple, float] = {}
        self.refs = [self._vec(c) for c in crefs]

    def _vec(self, cnts):
        vec, norm, length = [{} for _ in range(self.n)], [0.0] * self.n, 0
        for ngram, tf in cnts.items():
            w = self.idf.get(ngram)
            if w is None:
                w = self.idf[ngram] = float(self.ref_len - np.log(max(1.0, self.df.get(ngram, 0.0))))
            k = len(ngram) - 1
            vec[k][ngram] = float(tf) * w
            norm[k] += pow(vec[k][ngram], 2)
            if k == 1:
                length += tf
        return vec, [np.sqrt(x) for x in norm], length

    def score(self, i: int, sent: str) -> float:
        """CIDEr-D of `sent` (tokens joined by spaces) against reference row i."""
        vec, norm, length = self._vec(self.precook(sent, self.n))
        vec_ref, norm_ref, length_ref = self.refs[i]
        delta = float(length - length_ref)
        val = np.array([0.0 for _ in range(self.n)])
        for k in range(self.n):
            for ngram, v in vec[k].items():
                r = vec_ref[k].get(ngram, 0.0)
                val[k] += min(v, r) * r
            if norm[k] != 0 and norm_ref[k] != 0:
                val[k] /= norm[k] * norm_ref[k]
            val[k] *= np.e ** (-(delta ** 2) / (2 * self.sigma ** 2))
        return float(np.mean(val) * 10.0)


class TargetScorer:
    """`text_metrics`' bleu1, rougeL and cider for many candidate writers over one set of rows, each
    (row, text) pair scored once over the scorer's life (`CorpusScorer.pair`): what tuning a writer
    on val needs, where dozens of choice rules and edits differ on a few rows each. BLEU-1 is
    corpus-level (clipped matches and lengths summed, one brevity penalty), so it is summed from
    per-pair counts; `per_row` keeps those counts for resampling the rows (`figures_from_rows`)."""

    def __init__(self, refs: list[str]):
        self.corpus = CorpusScorer(refs)
        self.ref_lens = np.array([c[0][0] for c in self.corpus.crefs], float)

    def figures(self, hyp_lists: list[list[str]], per_row: bool = False) -> list[dict]:
        """One dict of bleu1, rougeL, cider per list of `hyp_lists` (one text per reference; None is
        empty). With `per_row`, each dict also has the per-row arrays `figures_from_rows` sums."""
        n = len(self.ref_lens)
        if any(len(h) != n for h in hyp_lists):
            raise ValueError(f"target_figures: every hypothesis list needs one text per reference ({n})")
        out = []
        for hyps in hyp_lists:
            pairs = [self.corpus.pair(i, h) for i, h in enumerate(hyps)]
            parts = {"matches": np.array([p[0]["correct"][0] for p in pairs], float),
                     "lengths": np.array([p[0]["testlen"] for p in pairs], float), "ref_lengths": self.ref_lens,
                     "rougeL": np.array([p[3] for p in pairs]), "cider": np.array([p[4] for p in pairs])}
            f = {k: float(v[0]) for k, v in figures_from_rows(parts, np.arange(n)[None]).items()}
            out.append({**f, "rows": parts} if per_row else f)
        return out


def target_figures(refs: list[str], hyp_lists: list[list[str]], per_row: bool = False) -> list[dict]:
    """`TargetScorer(refs).figures(hyp_lists, per_row)`: see there."""
    return TargetScorer(refs).figures(hyp_lists, per_row)


def figures_from_rows(parts: dict, draws: np.ndarray) -> dict[str, np.ndarray]:
    """bleu1, rougeL, cider for each row of `draws` ([k, n] indices of rows: one corpus each) from
    `target_figures`' per-row arrays; BLEU-1 as pycocoevalcap's BleuScorer, one reference a row
    (CIDEr's idf stays that of all the rows)."""
    correct, guess = parts["matches"][draws].sum(axis=1), parts["lengths"][draws].sum(axis=1)
    ratio = (guess + 1e-15) / (parts["ref_lengths"][draws].sum(axis=1) + 1e-9)
    bleu1 = (correct + 1e-15) / (guess + 1e-9) * np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    return {"bleu1": bleu1, "rougeL": parts["rougeL"][draws].mean(axis=1), "cider": parts["cider"][draws].mean(axis=1)}


def to_json_safe(d, ndigits: int = 6):
    """Copy of nested dicts/lists with floats rounded and NaN/inf -> None, numpy scalars -> Python,
    so metrics JSON is valid and stable across runs (last-bit float noise does not show as a diff)."""
    if isinstance(d, dict):
        return {str(k): to_json_safe(v, ndigits) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [to_json_safe(v, ndigits) for v in d]
    if isinstance(d, (bool, np.bool_)):
        return bool(d)
    if isinstance(d, (int, np.integer)):
        return int(d)
    if isinstance(d, (float, np.floating)):
        f = float(d)
        if not math.isfinite(f):
            return None
        r = round(f, ndigits)
        return 0.0 if r == 0 else r  # no "-0.0"
    return d
