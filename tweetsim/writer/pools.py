"""Candidate pools: for each row, the tweets it may know that could stand in for its own.

A `Pool` indexes the rows with content a row may draw on (the regime's training split in the
pipeline; every row with content in the CLI). For one row its candidates are, each recorded with
where it came from (`SOURCES`):

- `account`: the same account's tweets, the `account_window` nearest in time;
- `brand`: the brand's tweets by other accounts, the `brand_window` nearest in time;
- `caption`: the `caption_k` tweets whose media caption is closest to the row's (sentence
  embeddings; only where both sides have a caption);
- `similar_brand`: when neither the account nor the brand has a tweet in the pool (an unseen
  brand), the `similar_brand_window` latest tweets of each of the `similar_brands` brands that look
  most alike: media mix, median video views and likes, posting hour, number of tweets, and the
  words of its name, its accounts' handles and its media captions (`similar_text_weight`: a club's
  handle says "FC" and its captions show a pitch), over every known row of the brand (with content
  or not, the rows being written included: content simulation gives their metadata);
- `typical`: the `typical_k` most typical tweets of the pool (highest mean utility against a seeded
  sample of it), in every pool; when nothing else is found (no account, brand or caption), the
  `global_k` most typical: the widest pool.

Never the row itself; with `past_only` (the unseen-period regime) only tweets dated before the
row; with `exclude_company` none of the row's own brand (the unseen-brand regime's training rows,
so that their pools look like those of a held-out brand).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from tweetsim.config.params import section_config
from tweetsim.writer import textsim

SOURCES = ("account", "brand", "caption", "similar_brand", "typical", "lm")
KINDS = ("none", "photo", "video", "gif")
REPLY_WORDS = re.compile(r"\b(dm|sorry|apolog\w*|please|thanks for|reach out|let us know)\b", re.IGNORECASE)


@section_config("writer.pool")
class PoolConfig:
    account_window: int
    brand_window: int
    caption_k: int
    similar_brands: int
    similar_brand_window: int
    similar_text_weight: float
    global_k: int
    typical_k: int
    typical_sample: int
    seed: int


def media_kind(table: pd.DataFrame) -> np.ndarray:
    """Index into KINDS per row: video > GIF > photo > none (the item that shapes the tweet most)."""
    def count(col):
        return pd.to_numeric(table[col], errors="coerce").fillna(0).to_numpy() if col in table else np.zeros(len(table))
    kind = np.zeros(len(table), np.int64)
    kind[count("n_photo") > 0] = 1
    kind[count("n_gif") > 0] = 3
    kind[count("n_video") > 0] = 2
    return kind


def _num(table: pd.DataFrame, col: str) -> np.ndarray:
    if col not in table:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[col], errors="coerce").astype(float).to_numpy()


def _date_ns(table: pd.DataFrame) -> np.ndarray:
    """int64 ns since the epoch, NaT as the int64 minimum (callers test `has_date`)."""
    return pd.to_datetime(table["date"], utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)


NAT = np.iinfo(np.int64).min


def row_meta(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """What selection compares between a row and a candidate: date, media kind, video, hour, likes."""
    dates = _date_ns(table)
    ts = pd.to_datetime(table["date"], utc=True)
    return {"date": dates, "has_date": dates != NAT, "kind": media_kind(table),
            "log_views": np.log1p(np.clip(_num(table, "video_views"), 0, None)),
            "duration": _num(table, "video_duration"),
            "hour": ts.dt.hour.astype(float).to_numpy(), "weekday": ts.dt.day_of_week.astype(float).to_numpy(),
            "log_likes": np.log1p(np.clip(_num(table, "likes"), 0, None))}


def brand_profiles(context: pd.DataFrame) -> pd.DataFrame:
    """One row per company: media mix, median log video views / log likes, mean posting hour (as
    a point on the clock), log number of tweets. Label-free but for likes, which content
    simulation gives as an input."""
    t = context[context["company"].notna()]
    meta = row_meta(t)
    frame = pd.DataFrame({"company": t["company"].to_numpy(), "log_views": meta["log_views"],
                          "log_likes": meta["log_likes"],
                          "hour_sin": np.sin(meta["hour"] / 24 * 2 * np.pi), "hour_cos": np.cos(meta["hour"] / 24 * 2 * np.pi)})
    for i, k in enumerate(KINDS):
        frame[f"share_{k}"] = (meta["kind"] == i).astype(float)
    g = frame.groupby("company", sort=True)
    prof = pd.concat([g[[f"share_{k}" for k in KINDS]].mean(), g[["log_views", "log_likes"]].median(),
                      g[["hour_sin", "hour_cos"]].mean(), np.log1p(g.size()).rename("log_n")], axis=1)
    return prof.fillna(prof.median()).fillna(0.0)


_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")


def name_words(*names) -> str:
    """Lowercased words of brand names and handles, camel case split: "CheetahsRugby" -> "cheetahs rugby"."""
    return " ".join(w.lower() for n in names if isinstance(n, str) for w in _WORDS.findall(n))


def brand_texts(context: pd.DataFrame) -> pd.DataFrame:
    """Per company, what is known of it besides its tweets: `names` (its name and its accounts'
    handles, as words) and `captions` (its rows' media captions)."""
    t = context[context["company"].notna()]
    caps = t["caption"] if "caption" in t else pd.Series(None, index=t.index)
    g = pd.DataFrame({"company": t["company"].to_numpy(), "username": t["username"].to_numpy(),
                      "caption": caps.to_numpy()}).groupby("company", sort=True)
    names = g["username"].agg(lambda u: sorted({x for x in u if isinstance(x, str)}))
    return pd.DataFrame({"names": [name_words(c, *u) for c, u in names.items()],
                         "captions": g["caption"].agg(lambda c: " ".join(x for x in c if isinstance(x, str)))},
                        index=names.index)


class Pool:
    """The rows with content a row may draw on, indexed by account, brand, time and caption."""

    def __init__(self, table: pd.DataFrame, cfg: PoolConfig, weights: dict[str, float], context: pd.DataFrame | None = None,
                 embed_fn=None, space: textsim.TextSpace | None = None):
        pool = table[table["content"].notna() & (table["content"].astype(str).str.strip() != "")]
        pool = pool.sort_values(["date", "source", "id"], kind="stable", na_position="first").reset_index(drop=True)
        if pool.empty:
            raise ValueError("the pool has no row with content")
        self.table, self.cfg = pool, cfg
        self.texts = pool["content"].astype(str).tolist()
        self.space = space or textsim.TextSpace(self.texts)
        self.enc = self.space.encode(self.texts)
        self.meta = row_meta(pool)
        self.key = {k: i for i, k in enumerate(zip(pool["source"], pool["id"]))}
        self.company = pool["company"].to_numpy(dtype=object)
        self.username = pool["username"].to_numpy(dtype=object)
        self.groups = {level: {k: np.asarray(v, np.int64) for k, v in pool.groupby(level, sort=True).indices.items()}
                       for level in ("username", "company")}
        self.embed_fn = embed_fn
        self.cap_ix, self.cap_vecs = np.zeros(0, np.int64), None
        if embed_fn is not None and "caption" in pool:
            has = pool["caption"].notna() & (pool["caption"].astype(str).str.strip() != "")
            self.cap_ix = np.flatnonzero(has.to_numpy())
            if len(self.cap_ix):
                self.cap_vecs = np.asarray(embed_fn(pool["caption"].iloc[self.cap_ix].astype(str).tolist()), np.float32)
        ctx = pool if context is None else pd.concat([pool, context[[c for c in pool.columns if c in context]]],
                                                     ignore_index=True).drop_duplicates(["source", "id"])
        prof = brand_profiles(ctx)
        self.scale = prof.std(ddof=0).replace(0, 1.0)
        self.profiles = prof / self.scale
        pool_brands = sorted(self.groups["company"])
        self.brand_names = np.array(pool_brands, dtype=object)
        self.brand_vecs = self.profiles.reindex(pool_brands).fillna(0.0).to_numpy()
        # look-alike brands by words too: a club's handle says "FC", its captions show pitches
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.brand_words = brand_texts(ctx)
        self._alike: dict = {}   # company -> its look-alike order (similar_brands)
        self.word_spaces = {}
        for col in ("names", "captions"):
            docs = self.brand_words[col]
            if docs.str.strip().ne("").any():
                vec = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b").fit(docs)
                self.word_spaces[col] = (vec, vec.transform(docs.reindex(pool_brands).fillna("")))
        self.typicality = self._typicality(weights)
        # what the reranker's extra signals read: the pool tweets' media words, reply look
        media = [" ".join(str(v) for v in (c, o) if isinstance(v, str) and v.strip())
                 for c, o in zip(pool.get("caption", [None] * len(pool)), pool.get("ocr_text", [None] * len(pool)))]
        self.has_media_text = np.array([bool(t) for t in media])
        self.media_enc = self.space.encode(media)
        self.starts_mention = np.array([t.lstrip().startswith("<mention>") for t in self.texts], float)
        self.reply_words = np.array([bool(REPLY_WORDS.search(t)) for t in self.texts], float)
        self.typical = np.argsort(-self.typicality, kind="stable")[: max(cfg.global_k, cfg.typical_k)]

    def _typicality(self, weights, chunk: int = 1000) -> np.ndarray:
        """Each pool tweet's mean utility against a seeded sample of the pool (itself left out): how
        much it looks like a tweet of this pool in general (a reranker feature; the top ones are the
        `typical` candidates)."""
        rng = np.random.default_rng(self.cfg.seed)
        n = len(self.texts)
        sample = np.sort(rng.choice(n, size=min(n, self.cfg.typical_sample), replace=False))
        ref = self.enc.rows(sample)
        comps = [k for k, w in weights.items() if w]
        out = np.zeros(n)
        for start in range(0, n, chunk):
            ix = np.arange(start, min(n, start + chunk))
            u = textsim.mix(textsim.similarity(self.enc.rows(ix), ref, comps), weights)
            u[ix[:, None] == sample[None, :]] = 0.0
            out[ix] = u.sum(axis=1) / np.maximum(len(sample) - np.isin(ix, sample), 1)
        return out

    def row_profile(self, row: dict, meta: dict[str, float]) -> np.ndarray:
        """The row's brand profile where its brand has known rows, else one built from the row alone."""
        company = row.get("company")
        if company is not None and company in self.profiles.index:
            return self.profiles.loc[company].to_numpy()
        one = {f"share_{k}": float(meta["kind"] == i) for i, k in enumerate(KINDS)}
        hour = meta["hour"]
        one.update(log_views=meta["log_views"], log_likes=meta["log_likes"],
                   hour_sin=np.sin(hour / 24 * 2 * np.pi) if hour == hour else np.nan,
                   hour_cos=np.cos(hour / 24 * 2 * np.pi) if hour == hour else np.nan, log_n=0.0)
        vec = pd.Series(one)[self.profiles.columns] / self.scale
        return vec.fillna(pd.Series(self.brand_vecs.mean(axis=0), index=self.profiles.columns)).to_numpy()

    def word_similarity(self, row: dict) -> np.ndarray:
        """Per pool brand, the mean TF-IDF cosine of its names and captions with the row's brand's
        (from every known row of the brand, else from the row alone)."""
        company = row.get("company")
        if company is not None and company in self.brand_words.index:
            known = self.brand_words.loc[company]
        else:
            known = {"names": name_words(company, row.get("username")), "captions": row.get("caption") or ""}
        sims = [np.asarray((space @ vec.transform([known[col]]).T).todense()).ravel()
                for col, (vec, space) in self.word_spaces.items()]
        return np.mean(sims, axis=0) if sims else np.zeros(len(self.brand_names))

    def similar_brands(self, row: dict, meta: dict[str, float]) -> np.ndarray:
        """Pool brand positions, most alike first: (1 - w) * the metadata profile's distance - w * the
        word similarity, each over its spread across the pool's brands (w: `similar_text_weight`).
        A known brand's order depends on the brand alone: computed once per brand (speed)."""
        company = row.get("company")
        known = company is not None and company in self.profiles.index and company in self.brand_words.index
        if known and company in self._alike:
            return self._alike[company]
        dist = np.linalg.norm(self.brand_vecs - self.row_profile(row, meta), axis=1)
        w = self.cfg.similar_text_weight
        if w <= 0:
            order = np.argsort(dist, kind="stable")
        else:
            sim = self.word_similarity(row)
            order = np.argsort((1 - w) * dist / (dist.std() or 1.0) - w * sim / (sim.std() or 1.0), kind="stable")
        if known:
            self._alike[company] = order
        return order

    def _nearest_in_time(self, ix: np.ndarray, date: int, k: int) -> np.ndarray:
        if len(ix) <= k or date == NAT:
            return ix[-k:] if k else ix[:0]
        gap = np.abs(self.meta["date"][ix].astype(np.float64) - float(date))
        return np.sort(ix[np.argsort(gap, kind="stable")[:k]])

    def caption_sims(self, qvecs: list) -> list:
        """Per query caption vector (or None), its cosine with every pool caption (order of `cap_ix`):
        one matrix product for all of them."""
        have = [i for i, q in enumerate(qvecs) if q is not None]
        out = [None] * len(qvecs)
        if have and self.cap_vecs is not None:
            sims = np.stack([qvecs[i] for i in have]) @ self.cap_vecs.T
            for j, i in enumerate(have):
                out[i] = sims[j]
        return out

    def candidates(self, row: dict, meta: dict[str, float], cap_sims: np.ndarray | None, past_only: bool,
                   exclude_company: bool) -> tuple[np.ndarray, np.ndarray]:
        """(pool indices, [n, len(SOURCES)] bool source flags) of one row's candidates.

        `row`: source, id, username, company; `meta`: the row's entries of `row_meta`; `cap_sims`: its
        caption's `caption_sims`, or None."""
        cfg, date = self.cfg, int(meta["date"])
        allowed = np.ones(len(self.texts), bool)
        me = self.key.get((row.get("source"), row.get("id")))
        if me is not None:
            allowed[me] = False
        if past_only and date != NAT:
            allowed &= self.meta["has_date"] & (self.meta["date"] < date)
        company = row.get("company")
        if exclude_company and company is not None:
            allowed &= self.company != company
        found: list[tuple[np.ndarray, int]] = []  # (pool indices, source) as found

        def add(ix, source):
            found.append((np.asarray(ix, np.int64), SOURCES.index(source)))

        user = row.get("username")
        acct = self.groups["username"].get(user, np.zeros(0, np.int64)) if user is not None else np.zeros(0, np.int64)
        acct = acct[allowed[acct]]
        add(self._nearest_in_time(acct, date, cfg.account_window), "account")
        brand = self.groups["company"].get(company, np.zeros(0, np.int64)) if company is not None else np.zeros(0, np.int64)
        brand = brand[allowed[brand]]
        if user is not None:
            brand = brand[self.username[brand] != user]
        add(self._nearest_in_time(brand, date, cfg.brand_window), "brand")
        k = min(cfg.caption_k, len(self.cap_ix))
        if cap_sims is not None and k:
            sims = np.where(allowed[self.cap_ix], cap_sims, -np.inf)
            # the k best allowed captions, ties in pool order: sort only those at or above the k-th value
            near = np.flatnonzero(sims >= np.partition(sims, len(sims) - k)[len(sims) - k])
            top = near[np.argsort(-sims[near], kind="stable")[:k]]
            add(self.cap_ix[top[np.isfinite(sims[top])]], "caption")
        if not len(acct) and not len(brand) and cfg.similar_brands:
            taken = 0
            for b in self.similar_brands(row, meta):
                name = self.brand_names[b]
                if exclude_company and name == company:
                    continue
                ix = self.groups["company"][name]
                ix = ix[allowed[ix]]
                if len(ix):
                    add(self._nearest_in_time(ix, date, cfg.similar_brand_window), "similar_brand")
                    taken += 1
                if taken >= cfg.similar_brands:
                    break
        typ = self.typical[allowed[self.typical]]
        add(typ[: cfg.typical_k], "typical")
        if not any(len(f) for f, _ in found):  # the widest pool
            add(typ[: cfg.global_k] if len(typ) else np.flatnonzero(allowed)[-cfg.global_k:], "typical")
        every = np.concatenate([f for f, _ in found])
        ix, where = np.unique(every, return_inverse=True)
        flags = np.zeros((len(ix), len(SOURCES)), bool)
        flags[where, np.repeat([src for _, src in found], [len(f) for f, _ in found])] = True
        return ix, flags
