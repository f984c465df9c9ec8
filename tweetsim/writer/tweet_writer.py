"""TweetWriter: candidates from the pools, the choice among them (consensus or the reranker), the
kept edits; its artefacts (writer.json, reranker.json) saved and loaded here."""


from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.writer import edits as E
from tweetsim.writer import select as S
from tweetsim.writer.config import WriterConfig
from tweetsim.writer.pools import SOURCES, Pool

MODEL_FILE, META_FILE = "reranker.json", "writer.json"
SELECTORS = ("reranked", "consensus")
TARGETS = ("bleu1", "rougeL", "cider")  # what the choice rule and the edits are judged by on val
RULE = ("length_bonus", "score_scale", "consensus_mix", "consensus_scale", "typicality_weight", "typicality_scale")  # the choice rule, saved in writer.json


def gain(new: dict, old: dict) -> float:
    """Mean relative change of the target metrics."""
    return float(np.mean([(new[k] - old[k]) / max(old[k], 1e-9) for k in TARGETS]))


def worst_gain(new: dict, baselines: dict[str, dict]):
    """The smallest relative gain over the best baseline, metric by metric: what the writer's
    targets ask (beat retrieval, and the most typical tweet, on BLEU-1, ROUGE-L and CIDEr each).
    Works elementwise on arrays of figures (one per resample of the rows)."""
    best = {k: np.maximum.reduce([np.asarray(b[k], float) for b in baselines.values()]) for k in TARGETS}
    return np.minimum.reduce([(np.asarray(new[k], float) - best[k]) / np.maximum(best[k], 1e-9) for k in TARGETS])


def resampled_worst_gain(new_rows: dict, baseline_rows: dict[str, dict], draws: np.ndarray) -> float:
    """`worst_gain` averaged over bootstrap resamples of the val rows (`draws`: [k, n] indices), the
    writer and the baselines scored on the same draw: a choice that beats them only on the rows val
    happens to hold scores lower than one that beats them on most draws."""
    from tweetsim.text.metrics import figures_from_rows

    return float(np.mean(worst_gain(figures_from_rows(new_rows, draws),
                                    {n: figures_from_rows(r, draws) for n, r in baseline_rows.items()})))


class TweetWriter:
    """A pool of known tweets + consensus selection + (optionally) the reranker and the kept edits."""

    def __init__(self, pool_table: pd.DataFrame, params: WriterConfig, context: pd.DataFrame | None = None,
                 embed_fn=None, reranker=None, kept_edits: list[str] = (), lm=None, length_bonus: float = 0.0,
                 score_scale: float = 1.0, consensus_mix: float = 0.0, consensus_scale: float = 1.0,
                 typicality_weight: float = 0.0, typicality_scale: float = 1.0):
        self.params = params
        self.pool = Pool(pool_table, params.pool, dict(params.utility),
                         context=context, embed_fn=embed_fn)
        self.selector = S.Selector(self.pool, params)
        self.habits = E.account_habits(self.pool.table)
        self.reranker, self.kept = reranker, list(kept_edits)
        # choice = (1 - mix) * score / score_scale + mix * consensus / consensus_scale
        #          + typicality_weight * typicality / typicality_scale + length_bonus * tokens,
        # set on val by `tune`: corpus BLEU's brevity penalty punishes tweets that run short of the real
        # ones; the reranker and consensus err on different rows; with nothing known of a brand, the
        # pool's generic tweets are the safest (ROUGE-L rewards a template most tweets share)
        self.length_bonus, self.score_scale = float(length_bonus), float(score_scale)
        self.consensus_mix, self.consensus_scale = float(consensus_mix), float(consensus_scale)
        self.typicality_weight, self.typicality_scale = float(typicality_weight), float(typicality_scale)
        self.lm = lm  # rows -> per row [(draft, mean log-prob)] (writer.lm.Drafter), or None

    @classmethod
    def load(cls, model_dir: str | Path, pool_table: pd.DataFrame, params: WriterConfig, context=None, embed_fn=None,
             selector: str = "reranked") -> "TweetWriter":
        """The writer of a `select_text` run (its writer.json and reranker.json) over `pool_table`."""
        if selector not in SELECTORS:
            raise ValueError(f"selector must be one of {SELECTORS}, got {selector!r}")
        d = Path(model_dir)
        if not (d / META_FILE).is_file():
            raise FileNotFoundError(f"no writer in {d} (run `dvc repro select_text`, or pass --writer-dir DIR)")
        meta = json.loads((d / META_FILE).read_text())
        stale = [k for k in ("reranker", "kept_edits", *RULE) if k not in meta]
        if stale:
            raise ValueError(f"{d / META_FILE}: no {', '.join(stale)} (written by an older select_text; rerun "
                             "`dvc repro select_text`)")
        model = None  # consensus: asked for, or the run trained no reranker (writer.reranker.enabled: false)
        if selector == "reranked" and meta["reranker"]:
            model = S.load_reranker(d / MODEL_FILE, int(params.reranker.num_threads))
        # the choice rule was tuned for the run's own scores: consensus alone, over a reranker's run, goes without
        tuned = (model is not None) == bool(meta["reranker"])
        rule = {k: meta[k] for k in RULE} if tuned else {}
        writer = cls(pool_table, params, context, embed_fn, model, meta["kept_edits"], **rule)
        if model is not None and meta.get("features") != writer.selector.feature_names:
            raise ValueError(f"{d / META_FILE}: its reranker was trained on other features than writer.reranker.feature_groups "
                             "gives (rerun `dvc repro select_text`)")
        return writer

    def save(self, model_dir: str | Path, info: dict) -> None:
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        if self.reranker is not None:
            S.save_reranker(self.reranker, d / MODEL_FILE)
        meta = {"reranker": self.reranker is not None, "kept_edits": self.kept, "features": self.selector.feature_names,
                "sources": list(SOURCES), **{k: getattr(self, k) for k in RULE}, **info}
        (d / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def scored(self, rows: pd.DataFrame, past_only=False, exclude_company=False, truths=None, drafts=None, progress=None):
        return self.selector.score(rows, past_only, exclude_company, truths, drafts, progress)

    def base_scores(self, scored: list[S.Scored]) -> list[np.ndarray]:
        """Per row, a score per candidate: the reranker's where there is one, else consensus."""
        if self.reranker is None:
            return [s.consensus for s in scored]
        return S.rerank_scores(self.reranker, scored)

    def ranking(self, scored: list[S.Scored], base: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """The scores the writer chooses by (see __init__); without a reranker, base is consensus."""
        base = self.base_scores(scored) if base is None else base
        n_tok, typ = S.FEATURES.index("n_tokens"), S.FEATURES.index("typicality")
        mix = self.consensus_mix if self.reranker is not None else 0.0
        return [(1 - mix) * b / self.score_scale + mix * s.consensus / self.consensus_scale
                + self.typicality_weight * np.nan_to_num(s.features[:, typ]) / self.typicality_scale
                + self.length_bonus * s.features[:, n_tok] for b, s in zip(base, scored)]

    def tune(self, rows: pd.DataFrame, scored: list[S.Scored], base: list[np.ndarray], grid: dict,
             edit_names, baselines: dict[str, list[str]], resamples: int = 200, seed: int = 0) -> dict:
        """On val rows (with their real tweets): the choice rule, then each edit of `edit_names` in
        order, each judged by `resampled_worst_gain` over `baselines` ({name: val texts}, e.g.
        retrieval and the most typical tweet) on `resamples` bootstrap draws of the val rows (seeded).
        The rule: every combination of `grid` ({"consensus_mix": [...], "typicality_weight": [...],
        "length_bonus": [...]}), the best taken (ties: the best mean gain; then the earlier, i.e.
        smaller, values).
        An edit is kept only where it raises that (or, equal, the mean gain). Returns every figure tried."""
        from tweetsim.text.metrics import TargetScorer

        refs = rows["content"].astype(str).tolist()
        target = TargetScorer(refs)  # every (row, text) scored once over all the trials below
        names = list(baselines)
        against = dict(zip(names, target.figures([baselines[n] for n in names], per_row=True)))
        draws = np.random.default_rng(seed).integers(0, len(refs), size=(max(int(resamples), 1), len(refs)))
        if int(resamples) <= 0:  # no resampling: the val rows as they are
            draws = np.arange(len(refs))[None]

        def texts(kept):
            return S.edited(self.pool, rows, scored, S.choose(scored, self.ranking(scored, base)), kept, self.habits)

        def judged(f):
            rows = f.pop("rows")
            return {**f, "worst_gain": float(worst_gain(f, against)),
                    "resampled_worst_gain": resampled_worst_gain(rows, {n: b["rows"] for n, b in against.items()}, draws),
                    "mean_gain": float(np.mean([gain(f, b) for b in against.values()]))}

        self.score_scale = float(np.std(np.concatenate(base))) or 1.0
        self.consensus_scale = float(np.std(np.concatenate([s.consensus for s in scored]))) or 1.0
        typ = np.concatenate([s.features[:, S.FEATURES.index("typicality")] for s in scored])
        self.typicality_scale = float(np.nanstd(typ)) if np.isfinite(typ).any() and np.nanstd(typ) > 0 else 1.0
        knobs = ("consensus_mix", "typicality_weight", "length_bonus")
        values = {k: sorted({0.0, *map(float, grid[k])}) for k in knobs}
        if self.reranker is None:
            values["consensus_mix"] = [0.0]
        combos = list(itertools.product(*values.values()))
        written = []
        for combo in combos:
            for k, v in zip(knobs, combo):
                setattr(self, k, v)
            written.append(texts([]))
        tried = {c: judged(f) for c, f in zip(combos, target.figures(written, per_row=True))}
        chosen = max(combos, key=lambda c: (tried[c]["resampled_worst_gain"], tried[c]["mean_gain"]))  # first of ties: smaller values
        for k, v in zip(knobs, chosen):
            setattr(self, k, v)
        best = tried[chosen]
        out = {"baselines_val": {n: {k: v for k, v in b.items() if k != "rows"} for n, b in against.items()},
               "rule": {"chosen": dict(zip(knobs, chosen)),
                        "val": {" ".join(f"{k}={v}" for k, v in zip(knobs, c)): f for c, f in tried.items()}}}
        for name in edit_names:
            if name not in E.EDITS:
                raise ValueError(f"writer.edits: unknown edit {name!r} (known: {E.EDITS})")
            trial = judged(target.figures([texts(self.kept + [name])], per_row=True)[0])
            key = ("resampled_worst_gain", "mean_gain")
            out[name] = {**trial, "kept": tuple(trial[k] for k in key) > tuple(best[k] for k in key)}
            if out[name]["kept"]:
                self.kept.append(name)
                best = trial
        return out

    def edit_effects(self, rows: pd.DataFrame, scored: list[S.Scored], base: list[np.ndarray], edit_names) -> dict:
        """On held-out rows (with their real tweets): what each edit of `edit_names` adds to the served
        choice on its own, {edit: {kept, gain: {metric: with it - without it}}}: the kept edits with
        that one toggled, so a kept edit's gain is what removing it would lose."""
        from tweetsim.text.metrics import TargetScorer

        if not len(rows):
            return {}
        picks = S.choose(scored, self.ranking(scored, base))
        variants = [self.kept, *([k for k in self.kept if k != n] if n in self.kept else [*self.kept, n] for n in edit_names)]
        served, *toggled = TargetScorer(rows["content"].astype(str).tolist()).figures(
            [S.edited(self.pool, rows, scored, picks, v, self.habits) for v in variants])
        return {n: {"kept": n in self.kept,
                    "gain": {m: float(served[m] - f[m]) if n in self.kept else float(f[m] - served[m]) for m in TARGETS}}
                for n, f in zip(edit_names, toggled)}

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
