"""The tweet writer: generate candidates, then choose among them well.

    pools.py     candidate pools per row (account, brand, caption neighbours, look-alike brands,
                 the pool's most typical tweets, optionally the LM's drafts), with their origin
    textsim.py   tweet-to-tweet similarity for whole pools (n-gram overlap, ROUGE-L, CIDEr-D)
    select.py    consensus (MBR) selection, the reranker's features, labels and training
    edits.py     light edits of the chosen tweet (placeholders, brand substitution)
    lm.py        the fine-tuned LM's sampled drafts as candidates (optional)

`TweetWriter` below is what the `select_text` stage, `tweetsim generate` and the web app use; the
artefacts it loads (`writer.json`, `reranker.json`) are written by `save` here, next to `load`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.writer import edits as E
from tweetsim.writer import select as S
from tweetsim.writer.pools import SOURCES, Pool, PoolConfig

MODEL_FILE, META_FILE = "reranker.json", "writer.json"
SELECTORS = ("reranked", "consensus")
TARGETS = ("bleu1", "rougeL", "cider")  # what the length bonus and the edits are judged by on val


def val_figures(refs: list[str], hyps: list[str]) -> dict:
    from tweetsim.metrics import text_metrics

    m = text_metrics(refs, hyps, embed=False)
    return {k: m[k] for k in TARGETS}


def gain(new: dict, old: dict) -> float:
    """Mean relative change of the target metrics."""
    return float(np.mean([(new[k] - old[k]) / max(old[k], 1e-9) for k in TARGETS]))


class TweetWriter:
    """A pool of known tweets + consensus selection + (optionally) the reranker and the kept edits."""

    def __init__(self, pool_table: pd.DataFrame, params: dict, context: pd.DataFrame | None = None,
                 embed_fn=None, reranker=None, kept_edits: list[str] = (), lm=None, length_bonus: float = 0.0,
                 score_scale: float = 1.0):
        self.params = params
        self.pool = Pool(pool_table, PoolConfig.from_params(params["pool"]), dict(params["utility"]),
                         context=context, embed_fn=embed_fn)
        self.selector = S.Selector(self.pool, params)
        self.habits = E.account_habits(self.pool.table)
        self.reranker, self.kept = reranker, list(kept_edits)
        # choice = score / score_scale + length_bonus * tokens: both set on val by select_text (corpus
        # BLEU's brevity penalty punishes a writer whose tweets run short of the real ones)
        self.length_bonus, self.score_scale = float(length_bonus), float(score_scale)
        self.lm = lm  # rows -> per row [(draft, mean log-prob)] (writer.lm.Drafter), or None

    @classmethod
    def load(cls, model_dir: str | Path, pool_table: pd.DataFrame, params: dict, context=None, embed_fn=None,
             selector: str = "reranked") -> "TweetWriter":
        """The writer of a `select_text` run (its writer.json and reranker.json) over `pool_table`."""
        if selector not in SELECTORS:
            raise ValueError(f"selector must be one of {SELECTORS}, got {selector!r}")
        d = Path(model_dir)
        if not (d / META_FILE).is_file():
            raise FileNotFoundError(f"no writer in {d} (run `dvc repro select_text`, or pass --writer-dir DIR)")
        meta = json.loads((d / META_FILE).read_text())
        model = None  # consensus: asked for, or the run trained no reranker (writer.reranker.enabled: false)
        if selector == "reranked" and meta["reranker"]:
            model = S.load_reranker(d / MODEL_FILE, int(params["reranker"]["num_threads"]))
        # the length bonus was tuned for the run's own scores: consensus alone, over a reranker's run, goes without
        tuned = (model is not None) == bool(meta["reranker"])
        return cls(pool_table, params, context, embed_fn, model, meta["kept_edits"],
                   length_bonus=meta["length_bonus"] if tuned else 0.0, score_scale=meta["score_scale"] if tuned else 1.0)

    def save(self, model_dir: str | Path, info: dict) -> None:
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        if self.reranker is not None:
            S.save_reranker(self.reranker, d / MODEL_FILE)
        meta = {"reranker": self.reranker is not None, "kept_edits": self.kept, "features": S.FEATURES,
                "sources": list(SOURCES), "length_bonus": self.length_bonus, "score_scale": self.score_scale, **info}
        (d / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def scored(self, rows: pd.DataFrame, past_only=False, exclude_company=False, truths=None, drafts=None, progress=None):
        return self.selector.score(rows, past_only, exclude_company, truths, drafts, progress)

    def base_scores(self, scored: list[S.Scored]) -> list[np.ndarray]:
        """Per row, a score per candidate: the reranker's where there is one, else consensus."""
        if self.reranker is None:
            return [s.consensus for s in scored]
        return S.rerank_scores(self.reranker, scored)

    def ranking(self, scored: list[S.Scored], base: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """The scores the writer chooses by: base / score_scale + length_bonus * tokens."""
        base = self.base_scores(scored) if base is None else base
        n_tok = S.FEATURES.index("n_tokens")
        return [b / self.score_scale + self.length_bonus * s.features[:, n_tok] for b, s in zip(base, scored)]

    def tune(self, rows: pd.DataFrame, scored: list[S.Scored], base: list[np.ndarray], bonuses, edit_names) -> dict:
        """On val rows (with their real tweets): the score scale, then the length bonus among `bonuses`
        (0 unless one raises the mean of BLEU-1, ROUGE-L and CIDEr), then each edit of `edit_names`
        in order, kept only where it raises them further. Returns every figure tried."""
        refs = rows["content"].astype(str).tolist()

        def figures(kept):
            picks = S.choose(scored, self.ranking(scored, base))
            return val_figures(refs, S.edited(self.pool, rows, scored, picks, kept, self.habits))

        self.score_scale = float(np.std(np.concatenate(base))) or 1.0
        tried = {}
        for bonus in sorted({0.0, *map(float, bonuses)}):
            self.length_bonus = bonus
            tried[bonus] = figures([])
        gains = {b: gain(f, tried[0.0]) for b, f in tried.items()}
        self.length_bonus = max([0.0] + [b for b, g in gains.items() if g > 0], key=lambda b: gains.get(b, 0.0))
        out = {"length_bonus": {"chosen": self.length_bonus,
                                "val": {str(b): {**f, "gain": gains[b]} for b, f in tried.items()}}}
        best = tried[self.length_bonus]
        for name in edit_names:
            if name not in E.EDITS:
                raise ValueError(f"writer.edits: unknown edit {name!r} (known: {E.EDITS})")
            trial = figures(self.kept + [name])
            out[name] = {**trial, "gain": gain(trial, best), "kept": gain(trial, best) > 0}
            if out[name]["kept"]:
                self.kept.append(name)
                best = trial
        return out

    def write(self, rows: pd.DataFrame, past_only=False) -> pd.DataFrame:
        """One tweet per row: columns content, origin (the chosen candidate's sources), pool_size, widest
        (nothing known about the row: its pool is the pool's most typical tweets)."""
        scored = self.scored(rows, past_only, drafts=self.lm(rows) if self.lm is not None else None)
        picks = S.choose(scored, self.ranking(scored))
        texts = S.edited(self.pool, rows, scored, picks, self.kept, self.habits)
        known = [i for i, src in enumerate(SOURCES) if src not in ("typical", "lm")]
        return pd.DataFrame({"content": texts, "origin": [origin(s, k) for s, k in zip(scored, picks)],
                             "pool_size": [len(s.texts) for s in scored],
                             "widest": [not s.flags[:, known].any() for s in scored]}, index=rows.index)

    def drafts(self, row: pd.DataFrame, n: int) -> list[tuple[str, str]]:
        """Up to n distinct (text, origin) for one row, best first."""
        s = self.scored(row.iloc[:1], drafts=self.lm(row.iloc[:1]) if self.lm is not None else None)
        order = np.argsort(-self.ranking(s)[0], kind="stable")
        texts = S.edited(self.pool, pd.concat([row.iloc[:1]] * len(order)), s * len(order), list(order),
                         self.kept, self.habits)
        out: dict[str, str] = {}
        for t, k in zip(texts, order):
            if t and t not in out:
                out[t] = origin(s[0], k)
            if len(out) >= n:
                break
        return list(out.items())


def origin(s: S.Scored, k: int) -> str:
    return "+".join(SOURCES[j] for j in np.flatnonzero(s.flags[k]))
