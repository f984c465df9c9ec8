"""Choosing a tweet from a row's candidate pool: consensus (MBR) selection, the learned reranker's
features and labels, and the writer that puts pools, selection and edits together.

Consensus: each candidate j is a pseudo-reference with weight w_j (its recency and how well its
metadata matches the row: media kind, video views and duration, hour, weekday, likes); candidate i scores the
weighted mean utility E_i = sum_{j != i} w_j U(i, j) / sum_{j != i} w_j, times w_i ** own_weight.
U is the params' mix of textsim components. The argmax is the `consensus` choice: the tweet most
like the others an account would post at that time with that media (minimum Bayes risk under U).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from tweetsim.config.parallel import forked_map
from tweetsim.writer import edits as E
from tweetsim.writer import textsim
from tweetsim.writer.config import MatchConfig, RerankerConfig, WriterConfig
from tweetsim.writer.pools import NAT, SOURCES, Pool

logger = logging.getLogger(__name__)

DAY_NS = 86_400 * 10**9
EXPECTED = ("unigram", "bigram", "rougeL", "cider")  # expected similarities given to the reranker
FEATURES = (["consensus", "consensus_rank", "weight", "consensus_account", "typicality"]
            + [f"e_{c}" for c in EXPECTED]
            + ["log_days", "after_row", "kind_match", "d_log_views", "d_log_duration", "d_hour", "same_weekday", "d_log_likes",
               "caption_sim", "same_account", "account_recency_rank", "caption_rank"] + [f"src_{s}" for s in SOURCES]
            + ["n_tokens", "n_hyperlink", "n_mention", "n_hashtag", "pool_size", "lm_logprob"])


def match_weights(meta: dict, cm: dict, p: MatchConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each candidate's weight for the row (exp of minus its penalties) and the raw distances.

    meta: the row's `row_meta` entries; cm: the candidates' `row_meta` arrays; p: writer.match."""
    n = len(cm["date"])
    both_dated = cm["has_date"] & (meta["date"] != NAT)
    days = np.where(both_dated, np.abs(cm["date"].astype(np.float64) - float(meta["date"])) / DAY_NS, np.nan)
    after = np.where(both_dated, (cm["date"] > meta["date"]).astype(float), np.nan)
    kind_match = (cm["kind"] == meta["kind"]).astype(float)
    both_video = (cm["kind"] == 2) & (meta["kind"] == 2)
    d_views = np.where(both_video, np.abs(cm["log_views"] - meta["log_views"]), np.nan)
    d_duration = np.where(both_video, np.abs(np.log1p(cm["duration"]) - np.log1p(meta["duration"])), np.nan)
    d_hour = np.abs(cm["hour"] - meta["hour"])
    d_hour = np.minimum(d_hour, 24 - d_hour)
    same_wd = (cm["weekday"] == meta["weekday"]).astype(float)
    same_wd[np.isnan(cm["weekday"]) | np.isnan(np.full(n, meta["weekday"]))] = np.nan
    d_likes = np.abs(cm["log_likes"] - meta["log_likes"])
    penalty = (np.nan_to_num(days, nan=0.0) / float(p.recency_halflife_days) * np.log(2)
               + float(p.kind) * (1 - kind_match) + float(p.views) * np.nan_to_num(d_views)
               + float(p.duration) * np.nan_to_num(d_duration)
               + float(p.hour) * np.nan_to_num(d_hour) / 12 + float(p.weekday) * np.nan_to_num(1 - same_wd)
               + float(p.likes) * np.nan_to_num(d_likes))
    return np.exp(-penalty), {"days": days, "after": after, "kind_match": kind_match, "d_views": d_views,
                              "d_duration": d_duration,
                              "d_hour": d_hour, "same_weekday": same_wd, "d_likes": d_likes}


def consensus(sims: dict[str, np.ndarray], w: np.ndarray, utility: dict, own_weight: float,
              refs: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(score per candidate, {component: weighted expected similarity}) for a square pool; `refs`
    (bool) limits the pseudo-references to some candidates (all by default)."""
    n = len(w)
    if n == 1:
        return np.ones(1), {c: np.ones(1) for c in sims}
    ref = np.tile(w if refs is None else w * refs, (n, 1))
    np.fill_diagonal(ref, 0.0)
    denom = ref.sum(axis=1)
    denom[denom <= 0] = 1.0
    expect = {c: (m * ref).sum(axis=1) / denom for c, m in sims.items()}
    total = sum(float(v) for v in utility.values())
    score = sum(float(utility[c]) * expect[c] for c in utility if float(utility[c])) / total
    return score * np.power(w, own_weight), expect


@dataclass
class Scored:
    """One row's pool: candidate texts, their origin, the features and the consensus choice."""
    texts: list[str]
    pool_ix: np.ndarray          # index into the Pool's table, -1 for LM drafts
    flags: np.ndarray            # [n, len(SOURCES)]
    features: np.ndarray         # [n, len(FEATURES)]
    consensus: np.ndarray        # [n]
    label: np.ndarray | None = None   # [n] the candidate's text metric against the real tweet


def _counts(texts: list[str]) -> np.ndarray:
    """[n, 3]: placeholders and hashtags per text (reranker features)."""
    return np.array([[t.count("<hyperlink>"), t.count("<mention>"), t.count("#")] for t in texts], float).reshape(-1, 3)


def share_pools(records: list[dict], metas: list[dict], cands: list[np.ndarray], share: float,
                has_drafts: list[bool]) -> list[list[int]]:
    """Groups of rows (indices) whose candidates' similarities are computed once, together: rows of
    one account in date order, a group growing while its union of candidates stays within `share`
    times its largest pool (so the shared matrix costs at most share² a pool's). share < 1, or a
    row with LM drafts: every row alone."""
    if share < 1:
        return [[r] for r in range(len(cands))]
    order = sorted(range(len(cands)), key=lambda r: (str(records[r].get("username")), str(records[r].get("company")),
                                                     int(metas[r]["date"]), r))
    groups, cur, union, largest = [], [], np.zeros(0, np.int64), 0
    for r in order:
        if has_drafts[r]:
            groups.append([r])
            continue
        grown = np.union1d(union, cands[r])
        big = max(largest, len(cands[r]))
        if cur and len(grown) <= share * big:
            cur.append(r)
            union, largest = grown, big
        else:
            if cur:
                groups.append(cur)
            cur, union, largest = [r], cands[r], len(cands[r])
    if cur:
        groups.append(cur)
    return groups


@dataclass
class _Job:
    """What `Selector.score` hands `Selector._groups`: per row, its candidates and inputs."""
    records: list
    metas: list
    cands: list
    cap: list
    drafts: list | None
    truth: textsim.Encoded | None
    media: list | None = None    # per row, its media words encoded (None: it has none)


CHUNK_ROWS = 256   # rows a worker scores per task: big enough that passing the results back is cheap


def _chunks(groups: list[list[int]]) -> list[list[list[int]]]:
    """Consecutive runs of `groups` of about CHUNK_ROWS rows each."""
    chunks, cur, n = [], [], 0
    for g in groups:
        cur.append(g)
        n += len(g)
        if n >= CHUNK_ROWS:
            chunks.append(cur)
            cur, n = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def _rank(x: np.ndarray) -> np.ndarray:
    """0 for the smallest value, 1 for the next (ties in order), NaN where x is NaN."""
    out = np.full(len(x), np.nan)
    ok = np.flatnonzero(~np.isnan(x))
    out[ok[np.argsort(x[ok], kind="stable")]] = np.arange(len(ok))
    return out


# ---------------------------------------------------------------- signals consensus ignores (feature groups)
EXTRA = {  # group -> its columns; writer.reranker.feature_groups names the groups the reranker gets
    "time": ["signed_log_days", "days_to_newest", "newest_rank"],
    "campaign": ["short_unigram", "short_bigram", "short_minus_long"],
    "media_text": ["row_media_unigram", "media_media_unigram"],
    "likes": ["row_log_likes", "cand_log_likes", "signed_d_log_likes"],
    "clock": ["row_weekday", "row_hour", "cand_weekday", "cand_hour"],
    "reply": ["starts_mention", "reply_words"],
}
SHORT_WINDOW = 10   # the account's candidates nearest the row: what it is posting about now


def media_text(rec: dict) -> str:
    """The words a row's media shows: caption and OCR text."""
    return " ".join(str(rec.get(k)) for k in ("caption", "ocr_text") if isinstance(rec.get(k), str) and rec.get(k).strip())


def extra_features(pool: Pool, rec: dict, m: dict, ix: np.ndarray, flags: np.ndarray, groups, media_enc=None) -> np.ndarray:
    """[n, sum of the groups' columns] for one row's candidates (pool indices ix; -1: a draft, NaN).
    Only the row's own metadata and media text and the candidates' (already time-respecting) are used."""
    n, ok = len(ix), ix >= 0
    at = np.maximum(ix, 0)
    cols = []
    days = np.full(n, np.nan)
    dated = ok & pool.meta["has_date"][at] & (m["date"] != NAT)
    days[dated] = (float(m["date"]) - pool.meta["date"][at][dated].astype(np.float64)) / DAY_NS
    for g in groups:
        if g == "time":
            newest = np.nanmin(np.abs(days)) if np.isfinite(days).any() else np.nan
            cols += [np.sign(days) * np.log1p(np.abs(days)), np.abs(days) - newest, _rank(np.abs(days)) / max(n, 1)]
        elif g == "campaign":
            acct = np.flatnonzero(flags[:, SOURCES.index("account")] & ok)
            out = np.full((n, 3), np.nan)
            if len(acct) > 1:
                near = acct[np.argsort(np.abs(np.nan_to_num(days[acct], nan=1e12)), kind="stable")[:SHORT_WINDOW]]
                s = textsim.similarity(pool.enc.rows(at), pool.enc.rows(at[near]), ["unigram", "bigram"])
                self_pair = at[:, None] == at[near][None, :]
                k = np.maximum((~self_pair).sum(axis=1), 1)
                su, sb = [np.where(self_pair, 0.0, s[c]).sum(axis=1) / k for c in ("unigram", "bigram")]
                sl = textsim.similarity(pool.enc.rows(at), pool.enc.rows(at[acct]), ["unigram"])["unigram"]
                self_l = at[:, None] == at[acct][None, :]
                long = np.where(self_l, 0.0, sl).sum(axis=1) / np.maximum((~self_l).sum(axis=1), 1)
                out = np.column_stack([su, sb, su - long])
                out[~ok] = np.nan
            cols += list(out.T)
        elif g == "media_text":
            row_u = np.full(n, np.nan)
            if media_enc is not None:
                row_u = textsim.similarity(pool.enc.rows(at), media_enc, ["unigram"])["unigram"][:, 0]
                mm = textsim.similarity(pool.media_enc.rows(at), media_enc, ["unigram"])["unigram"][:, 0]
                mm[~pool.has_media_text[at]] = np.nan
            else:
                mm = np.full(n, np.nan)
            row_u[~ok], mm[~ok] = np.nan, np.nan
            cols += [row_u, mm]
        elif g == "likes":
            cl = np.where(ok, pool.meta["log_likes"][at], np.nan)
            cols += [np.full(n, m["log_likes"]), cl, cl - m["log_likes"]]
        elif g == "clock":
            cols += [np.full(n, m["weekday"]), np.full(n, m["hour"]),
                     np.where(ok, pool.meta["weekday"][at], np.nan), np.where(ok, pool.meta["hour"][at], np.nan)]
        elif g == "reply":
            cols += [np.where(ok, pool.starts_mention[at], np.nan), np.where(ok, pool.reply_words[at], np.nan)]
        else:
            raise ValueError(f"writer.reranker.feature_groups: unknown group {g!r} (known: {list(EXTRA)})")
    return np.column_stack(cols) if cols else np.zeros((n, 0))


class Selector:
    """Pools + consensus features for rows; `label_weights` also scores candidates against the truth."""

    def __init__(self, pool: Pool, params: WriterConfig):
        self.pool, self.p = pool, params
        self.utility = {k: float(v) for k, v in params.utility.items()}
        unknown = set(self.utility) - set(textsim.COMPONENTS)
        if unknown:
            raise ValueError(f"writer.utility: unknown component(s) {sorted(unknown)}; known: {textsim.COMPONENTS}")
        self.components = [c for c, v in self.utility.items() if v]
        self.cap_pos = np.full(len(pool.texts), -1, np.int64)
        self.cap_pos[pool.cap_ix] = np.arange(len(pool.cap_ix))
        self.counts = _counts(pool.texts)
        self.groups = list(params.reranker.feature_groups)
        unknown = set(self.groups) - set(EXTRA)
        if unknown:
            raise ValueError(f"writer.reranker.feature_groups: unknown group(s) {sorted(unknown)}; known: {list(EXTRA)}")
        self.feature_names = list(FEATURES) + [c for g in self.groups for c in EXTRA[g]]

    def _qvecs(self, rows: pd.DataFrame) -> list:
        if self.pool.cap_vecs is None or "caption" not in rows:
            return [None] * len(rows)
        has = (rows["caption"].notna() & (rows["caption"].astype(str).str.strip() != "")).to_numpy()
        if not has.any():
            return [None] * len(rows)
        it = iter(np.asarray(self.pool.embed_fn(rows.loc[has, "caption"].astype(str).tolist()), np.float32))
        return [next(it) if h else None for h in has]

    def score(self, rows: pd.DataFrame, past_only: bool = False, exclude_company: bool = False,
              truths: list[str] | None = None, drafts: list[list[tuple[str, float]]] | None = None,
              progress: str | None = None) -> list[Scored]:
        """Each row's candidates and features. `drafts`: per row (text, mean token log-prob) from the LM;
        `progress`: a tqdm bar (on stderr) with this description.

        Rows whose pools overlap (an account's rows near in time share most of their candidates) are
        scored in groups: the similarities of the group's union of candidates are computed once and
        each row takes its block (`share_pools`, writer.share_pools; the same numbers as row by row, fewer pairs)."""
        from tqdm.auto import tqdm

        from tweetsim.writer.pools import row_meta

        pool = self.pool
        meta = row_meta(rows)
        qvecs = self._qvecs(rows)
        truth_enc = pool.space.encode(truths) if truths is not None else None
        records = rows[[c for c in ("source", "id", "username", "company", "caption", "ocr_text") if c in rows]].to_dict("records")
        records = [{k: (None if v is None or v == "" or (not isinstance(v, str) and pd.isna(v)) else v) for k, v in rec.items()}
                   for rec in records]
        metas = [{k: v[r] for k, v in meta.items()} for r in range(len(rows))]
        cands, cap = [], []  # per row: (pool indices, source flags); the candidates' caption similarity
        for start in range(0, len(rows), 1024):  # caption similarities a block of rows at a time (memory)
            block = range(start, min(len(rows), start + 1024))
            for r, sims in zip(block, pool.caption_sims([qvecs[r] for r in block])):
                ix, flags = pool.candidates(records[r], metas[r], sims, past_only, exclude_company)
                cands.append((ix, flags))
                c = np.full(len(ix), np.nan)
                if sims is not None:
                    pos = self.cap_pos[ix]
                    c[pos >= 0] = sims[pos[pos >= 0]]
                cap.append(c)
        out: list[Scored | None] = [None] * len(rows)
        bar = tqdm(total=len(rows), desc=progress, disable=progress is None, mininterval=5)
        groups = share_pools(records, metas, [ix for ix, _ in cands], float(self.p.share_pools),
                             [bool(drafts is not None and drafts[r]) for r in range(len(rows))])
        # A row's Scored depends on its own group only: the same, bit for bit, whatever writer.workers is.
        media = None
        if "media_text" in self.groups:
            words = [media_text(rec) for rec in records]
            menc = pool.space.encode(words)
            media = [menc.rows([r]) if w else None for r, w in enumerate(words)]
        job = _Job(records, metas, cands, cap, drafts, truth_enc, media)
        for part in forked_map(partial(self._groups, job), _chunks(groups), int(self.p.workers)):
            for r, scored in part:
                out[r] = scored
            bar.update(len(part))
        bar.close()
        return out

    def _groups(self, job: "_Job", groups: list[list[int]]) -> list[tuple[int, Scored]]:
        """(row, Scored) for the rows of `groups`; a group's similarities are computed once, on the union of its pools."""
        got = []
        for group in groups:
            union = np.unique(np.concatenate([job.cands[r][0] for r in group]))
            shared = textsim.similarity(*(2 * [self.pool.enc.rows(union)]), self.components) if len(group) > 1 else None
            for r in group:
                ix, flags = job.cands[r]
                sims = None
                if shared is not None:
                    pos = np.searchsorted(union, ix)
                    sims = {c: m[np.ix_(pos, pos)] for c, m in shared.items()}
                got.append((r, self._features(job.records[r], job.metas[r], ix, flags, sims, job.cap[r],
                                              job.drafts[r] if job.drafts is not None else None,
                                              job.truth.rows([r]) if job.truth is not None else None,
                                              job.media[r] if job.media is not None else None)))
        return got

    def _features(self, rec: dict, m: dict, ix: np.ndarray, flags: np.ndarray, sims: dict | None, cap: np.ndarray,
                  drafts: list[tuple[str, float]] | None, truth: textsim.Encoded | None, media=None) -> Scored:
        """One row's Scored: its candidates (with the LM's drafts appended), their `FEATURES` and the
        consensus; `sims`: the candidates' similarities if already computed; `cap`: their caption
        similarity to the row's; `truth`: the real tweet."""
        pool = self.pool
        texts = [pool.texts[i] for i in ix]
        lengths = pool.enc.lengths[ix]
        enc = pool.enc.rows(ix) if sims is None or drafts or truth is not None else None
        cm = {k: v[ix] for k, v in pool.meta.items()}
        lm_logprob = np.full(len(ix), np.nan)
        if drafts:
            d_texts = [t for t, _ in drafts]
            enc = textsim.Encoded.stack([enc, pool.space.encode(d_texts)])
            texts += d_texts
            ix = np.concatenate([ix, np.full(len(d_texts), -1)])
            fl = np.zeros((len(d_texts), len(SOURCES)), bool)
            fl[:, SOURCES.index("lm")] = True
            flags = np.vstack([flags, fl])
            lm_logprob = np.concatenate([lm_logprob, [lp for _, lp in drafts]])
            lengths, cap = enc.lengths, np.concatenate([cap, np.full(len(d_texts), np.nan)])
            # a draft is written for this row: its metadata is the row's own
            cm = {k: np.concatenate([cm[k], np.full(len(d_texts), m[k])]) for k in cm}
            sims = None
        w, dist = match_weights(m, cm, self.p.match)
        if sims is None:
            sims = textsim.similarity(enc, enc, self.components)
        own = float(self.p.match.own_weight)
        cons, expect = consensus(sims, w, self.utility, own)
        acct = flags[:, SOURCES.index("account")]
        cons_acct = consensus(sims, w, self.utility, own, acct)[0] if acct.sum() > 1 else np.full(len(ix), np.nan)
        typicality = np.where(ix >= 0, pool.typicality[np.maximum(ix, 0)], np.nan)
        rank = np.empty(len(cons))
        rank[np.argsort(-cons, kind="stable")] = np.arange(len(cons))
        same_acct = np.where(ix < 0, 1.0, (pool.username[np.maximum(ix, 0)] == rec.get("username")).astype(float))
        counts = np.vstack([self.counts[ix[ix >= 0]], _counts(texts[int((ix >= 0).sum()):])])
        # ranks within the row's pool, which trees cannot derive from one candidate's values: the
        # account's tweet nearest in time and the closest caption are what retrieval would pick
        recency_rank = _rank(np.where((same_acct == 1) & (ix >= 0), dist["days"], np.nan))
        caption_rank = _rank(-cap)
        feats = np.column_stack([
            cons, rank / max(len(cons), 1), w, cons_acct, typicality, *[expect.get(c, np.full(len(ix), np.nan)) for c in EXPECTED],
            np.log1p(dist["days"]), dist["after"], dist["kind_match"], dist["d_views"], dist["d_duration"], dist["d_hour"],
            dist["same_weekday"], dist["d_likes"], cap, same_acct, recency_rank, caption_rank,
            flags.astype(float), lengths, counts, np.full(len(ix), float(len(ix))), lm_logprob])
        if self.groups:
            feats = np.hstack([feats, extra_features(pool, rec, m, ix, flags, self.groups, media)])
        label = self.label(enc, truth) if truth is not None else None
        return Scored(texts, ix, flags, feats, cons, label)

    def label(self, enc: textsim.Encoded, truth: textsim.Encoded) -> np.ndarray:
        """Each candidate's text metric against the real tweet: the mix `reranker.label_weights`."""
        lw = {k: float(v) for k, v in self.p.reranker.label_weights.items()}
        sims = textsim.similarity(enc, truth, [k for k, v in lw.items() if v])
        return textsim.mix(sims, lw)[:, 0]


# ---------------------------------------------------------------- the learned reranker
GRADES = 31  # xgboost's ranking objectives take integer relevance grades 0..31
OBJECTIVES = ("reg:squarederror", "rank:ndcg", "rank:pairwise")


def grades(label: np.ndarray) -> np.ndarray:
    """The label (a weighted mean of similarities in [0, 1]) as an integer grade 0..GRADES."""
    return np.clip(np.floor(label * GRADES + 1e-9), 0, GRADES).astype(np.int64)


def _stack(scored: list[Scored]):
    feats = np.vstack([s.features for s in scored])
    qid = np.repeat(np.arange(len(scored)), [len(s.texts) for s in scored])
    return feats, qid


def train_reranker(train: list[Scored], val: list[Scored], p: RerankerConfig):
    """A gradient-boosted reranker on the training rows' pools, early-stopped on the val rows (a
    seeded draw of `max_val_queries` of them);
    returns its xgboost Booster. `p`: params writer.reranker; `p.objective`: `reg:squarederror` predicts
    each candidate's label (pointwise), `rank:ndcg` is LambdaMART on the label as grades 0..31 (linear
    gain, NDCG@1).
    Pools of one candidate carry no ranking signal and are left out."""
    import xgboost as xgb

    if p.objective not in OBJECTIVES:
        raise ValueError(f"writer.reranker.objective: {p.objective!r} is not one of {OBJECTIVES}")
    train = [s for s in train if len(s.texts) > 1]
    val = [s for s in val if len(s.texts) > 1]
    cap = p.max_val_queries
    if cap and len(val) > cap:  # a seeded draw, in order: early stopping scores every val candidate each round
        val = [val[i] for i in np.sort(np.random.default_rng(int(p.seed)).choice(len(val), int(cap), replace=False))]
    if not train:
        raise ValueError("reranker: no training row has a pool of two or more candidates")
    ranking = p.objective.startswith("rank:")
    target = grades if ranking else (lambda y: y)
    x, q = _stack(train)
    y = target(np.concatenate([s.label for s in train]))
    common = {**p.xgb_params(), "early_stopping_rounds": int(p.early_stopping_rounds) if val else None}
    if ranking:
        extra = {"ndcg_exp_gain": False} if p.objective == "rank:ndcg" else {}
        model = xgb.XGBRanker(objective=p.objective, eval_metric="ndcg@1", **extra,
                              lambdarank_pair_method="topk", lambdarank_num_pair_per_sample=int(p.pairs_per_sample),
                              **common)
    else:
        model = xgb.XGBRegressor(objective=p.objective, **common)
    kw = {}
    if val:
        xv, qv = _stack(val)
        kw = {"eval_set": [(xv, target(np.concatenate([s.label for s in val])))], **({"eval_qid": [qv]} if ranking else {})}
    model.fit(x, y, **({"qid": q} if ranking else {}), verbose=False, **kw)
    booster = model.get_booster()
    logger.info(f"reranker ({p.objective}): {len(train)} training pools ({len(y)} candidates), {len(val)} val pools, "
        f"best iteration {booster.best_iteration if val else int(p.n_estimators) - 1}")
    return booster


def rerank_scores(booster, scored: list[Scored]) -> list[np.ndarray]:
    """The reranker's score of every candidate, per row (trees up to the early-stopping best)."""
    import xgboost as xgb

    if not scored:
        return []
    x, _ = _stack(scored)
    best = booster.attr("best_iteration")
    pred = booster.predict(xgb.DMatrix(x, nthread=1), iteration_range=(0, int(best) + 1) if best is not None else (0, 0))
    return np.split(pred, np.cumsum([len(s.texts) for s in scored])[:-1])


def save_reranker(booster, path) -> None:
    booster.save_model(str(path))


def load_reranker(path, num_threads: int = 2):
    import xgboost as xgb

    booster = xgb.Booster(model_file=str(path))
    booster.set_param({"nthread": int(num_threads)})
    return booster


# ---------------------------------------------------------------- choosing and editing
def choose(scored: list[Scored], scores: list[np.ndarray] | None = None) -> list[int]:
    """Index of the chosen candidate per row: highest reranker score, else highest consensus
    (ties: the earlier candidate, i.e. the older tweet)."""
    return [int(np.argmax(s.consensus if scores is None else sc)) for s, sc in zip(scored, scores or [None] * len(scored))]


def edited(pool: Pool, rows: pd.DataFrame, scored: list[Scored], picks: list[int], kept: list[str],
           habits: dict) -> list[str]:
    """The chosen texts with the kept edits applied."""
    users, companies = pool.table["username"].to_numpy(), pool.table["company"].to_numpy()
    row_dates = pd.to_datetime(rows["date"], utc=True) if "date" in rows else pd.Series(pd.NaT, index=rows.index)
    out = []
    for (user, company), row_date, s, k in zip(rows[["username", "company"]].itertuples(index=False, name=None), row_dates, scored, picks):
        i = s.pool_ix[k]
        # the candidate's date from the pool's parsed dates (row_meta), not parsed again per call
        cd = pd.Timestamp(int(pool.meta["date"][i]), tz="UTC") if i >= 0 and pool.meta["has_date"][i] else None
        cu, cc = (users[i], companies[i]) if i >= 0 else (user, company)
        out.append(E.apply(s.texts[k], kept, habits.get(user) if isinstance(user, str) and user != E.POOL else None,
                           cc, cu, company, user, habits.get(E.POOL), cd, row_date))
    return out
