"""Tabular features for the likes models: account / brand history, side statistics, media, text, date.

History leakage is the trap here: a training row's account history must come from
that account's *earlier* training rows only (time-ordered, shifted), never from a set that holds
the row's own likes. Rows being predicted use every row of the account whose likes are known by
then (likes/fit.py regime_history: val rows the training rows, test rows train + val; the CLI's input
every row with likes).

`acct_*_likes` and `followers` are side columns of tweets.parquet computed by the organisers over
the full 300K training file (account statistics, scraped profiles). They are used as features:
they are known before any tweet in our test splits is predicted, and they are what a deployed
model would have. For the 200 training-file rows they include the row's own likes (1 of ~120
tweets an account on average), a small optimistic bias (docs/likes.md, "Leakage rules").

Context features (`acct_ctx_*`, `brand_ctx_*`) describe an account's and a brand's tweets without
their likes (how many, how many with video, their video views), over every known tweet and the rows
being predicted; see context_features.
"""

import re

import numpy as np
import pandas as pd

LEVELS = {"username": "acct", "company": "brand"}
HIST_STATS = ("n", "mean", "median", "last5", "days_since")
SIDE_COLUMNS = ["followers", "acct_avg_likes", "acct_median_likes", "acct_mode_likes", "acct_max_likes", "acct_min_likes"]
LIKE_STATS = [c for c in SIDE_COLUMNS if c.startswith("acct_")]  # the organisers' likes of the account: its likes history
EPOCH = pd.Timestamp("2018-01-01", tz="UTC")


def log_likes(likes) -> np.ndarray:
    return np.log1p(np.asarray(likes, dtype=float))


def history_table(train: pd.DataFrame, level: str) -> pd.DataFrame:
    """Per `level` value: the summary over *all* given training rows (for rows being predicted)."""
    t = train.assign(_y=log_likes(train["likes"])).sort_values(["date", "source", "id"], kind="stable")
    g = t.groupby(level, sort=True)
    return pd.DataFrame({"n": g.size().astype(float), "mean": g["_y"].mean(), "median": g["_y"].median(),
                         "last5": g["_y"].apply(lambda s: s.iloc[-5:].mean()), "last_date": g["date"].max()})


def shifted_history(train: pd.DataFrame, level: str) -> pd.DataFrame:
    """For each training row (index kept): its `level`'s history over strictly earlier rows only."""
    t = train.assign(_y=log_likes(train["likes"])).sort_values([level, "date", "source", "id"], kind="stable")
    g = t.groupby(level, sort=False)["_y"]
    out = pd.DataFrame(index=t.index)
    out["n"] = g.cumcount().astype(float)
    out["mean"] = g.transform(lambda s: s.expanding().mean().shift())
    out["median"] = g.transform(lambda s: s.expanding().median().shift())
    out["last5"] = g.transform(lambda s: s.rolling(5, min_periods=1).mean().shift())
    prev = t.groupby(level, sort=False)["date"].shift()
    out["days_since"] = (t["date"] - prev).dt.total_seconds() / 86400.0
    return out.loc[train.index]


def history_features(rows: pd.DataFrame, train: pd.DataFrame | None = None, tables: dict | None = None) -> pd.DataFrame:
    """History columns `<acct|brand>_hist_<stat>` for `rows`.

    With `train` given and `rows` being exactly those training rows: shifted (earlier rows only).
    Otherwise from `tables` ({level: history_table(...)}): all training rows of the account/brand.
    """
    out = pd.DataFrame(index=rows.index)
    for level, prefix in LEVELS.items():
        if train is not None:
            h = shifted_history(train, level)
        else:
            tab = tables[level]
            keys = rows[level].astype(str)
            h = pd.DataFrame({s: keys.map(tab[s]) for s in ("n", "mean", "median", "last5")}, index=rows.index)
            h["n"] = h["n"].fillna(0.0)
            last = keys.map(tab["last_date"])
            h["days_since"] = (pd.to_datetime(rows["date"], utc=True) - pd.to_datetime(last, utc=True)).dt.total_seconds() / 86400.0
        for s in HIST_STATS:
            out[f"{prefix}_hist_{s}"] = h[s].astype(float).to_numpy()
    return out


def crossfit_history(train: pd.DataFrame, folds: int, seed: int) -> pd.DataFrame:
    """history_features of training rows as a predicted row gets them: from every *other* training
    row of the account / brand (any date), taken from the rows of the other `folds` - 1 seeded
    random folds, so a row's own likes never enter its history (train_like_classifier.history_crossfit_regimes)."""
    fold = np.random.default_rng(seed).permutation(len(train)) % int(folds)
    parts = []
    for f in range(int(folds)):
        rest = train[fold != f]
        parts.append(history_features(train[fold == f], tables={lv: history_table(rest, lv) for lv in LEVELS}))
    return pd.concat(parts).loc[train.index]


def known_splits_for_test(test_history: list[str] | None) -> list[str]:
    """The labelled splits a test row's account history may use (`train_like_classifier.test_history`):
    [train] or [train, val] (null or empty: [train]); anything holding test rows is refused."""
    splits = set(test_history or ["train"])
    if not splits <= {"train", "val"} or "train" not in splits:
        raise ValueError(f"train_like_classifier.test_history must be [train] or [train, val], not {sorted(splits)}")
    return sorted(splits)


def hide_history(hist: pd.DataFrame, levels=tuple(LEVELS)) -> pd.DataFrame:
    """`hist` (history_features) as for rows of accounts and brands never seen: n = 0, the rest NaN;
    `levels`: only those levels' columns (e.g. ("username",): a new account of a known brand).

    For regimes whose predicted rows have no history by construction (a held-out brand): kept on
    training rows, the trees and the classifier learn from history what a test row never has, and
    a test row looks like a brand's first tweet. Measured with a global XGBoost over the features
    and the context features, unseen brand, log1p-RMSE with training history / without: 1.96 / 1.80
    on the sample, 1.52 / 1.53 on all shared data (no gain there; kept as the consistent choice)."""
    out = hist.copy()
    prefixes = tuple(f"{LEVELS[lv]}_hist_" for lv in levels)
    for c in out.columns:
        if c.startswith(prefixes):
            out[c] = 0.0 if c.endswith("_hist_n") else np.nan
    return out


CONTEXT_STATS = ("n", "video_frac", "n_views", "views_median", "views_mean", "views_max")


def context_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The label-free part of `rows` that the context features pool: username, company, date, whether
    the tweet has a video and its log1p views. Likes are never read."""
    n = len(rows)
    col = lambda c: rows[c].fillna("").astype(str).to_numpy() if c in rows else np.full(n, "")  # noqa: E731
    date = pd.to_datetime(rows["date"], utc=True).to_numpy() if "date" in rows else np.full(n, np.datetime64("NaT"))
    return pd.DataFrame({"username": col("username"), "company": col("company"), "date": date,
                         "video": (np.nan_to_num(_numeric(rows, "n_video")) > 0).astype(float) * np.ones(n),
                         "log_views": np.log1p(np.clip(_numeric(rows, "video_views"), 0, None)) * np.ones(n)})


def context_features(rows: pd.DataFrame, known: pd.DataFrame | None = None) -> pd.DataFrame:
    """Columns `<acct|brand>_ctx_<stat>` for `rows`: what the account's and the brand's tweets look like
    over every known tweet (`known`: context_rows of all tweets, labelled or not) and `rows` themselves.

    No likes are involved, so the rows being predicted (an official test file, a held-out brand) count
    too: their video views say how large the audience is before any like is seen. That is the one
    signal an unseen brand without followers or like statistics has (all shared data, unseen-brand
    regime, a global XGBoost: log1p-RMSE 2.61 -> 1.52, a constant scoring 2.98). A tweet known twice
    (same account and date, e.g. an input file already in `known`) counts once; an empty username
    or brand gets none. The rows of one call are each other's context: a tweet predicted alone can
    get another value than within its file.
    """
    new = context_rows(rows)
    pool = new
    if known is not None and len(known):
        near = known["username"].isin(set(new["username"])) | known["company"].isin(set(new["company"]))
        pool = pd.concat([known[near], new], ignore_index=True)
    dup = pool.duplicated(["username", "date"]) & pool["date"].notna()
    pool = pool[~dup]
    out = pd.DataFrame(index=rows.index)
    for level, prefix in LEVELS.items():
        g = pool[pool[level] != ""].groupby(level, sort=True)
        tab = pd.DataFrame({"n": g.size().astype(float), "video_frac": g["video"].mean(), "n_views": g["log_views"].count().astype(float),
                            "views_median": g["log_views"].median(), "views_mean": g["log_views"].mean(), "views_max": g["log_views"].max()})
        keys = pd.Series(new[level].to_numpy(), index=rows.index)
        for s in CONTEXT_STATS:
            v = keys.map(tab[s]).astype(float)
            out[f"{prefix}_ctx_{s}"] = (v.fillna(0.0) if s in ("n", "n_views") else v).to_numpy()
    return out


def hide_like_stats(table: pd.DataFrame) -> pd.DataFrame:
    """`table` without the organisers' like statistics (all rows blanked).

    In the unseen-brand regime a held-out brand must have no likes history; yet the organisers'
    statistics, computed over the 300K training file, exist for every brand that file holds, so
    a held-out brand of the unseen-period file would bring its history in. They are blanked on the
    training rows too: kept there, "no statistics" would mean "a row of the unseen-brand file" to
    the trees, a confound (measured on all shared data, a global XGBoost scored log1p-RMSE 2.80
    with the statistics on training rows only, 2.61 with none). Followers stay: a public profile
    is known for a new brand too."""
    out = table.copy()
    for c in LIKE_STATS:
        if c in out:
            out[c] = np.nan
    return out


def side_stats_table(table: pd.DataFrame) -> pd.DataFrame:
    """username -> organiser statistics (first known value), so the CLI can look them up."""
    cols = [c for c in SIDE_COLUMNS if c in table.columns]
    t = table[["username", *cols]].dropna(subset=cols, how="all")
    return t.groupby("username", sort=True)[cols].first()


def fill_side_stats(rows: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Fill null side columns of `rows` from the username lookup `stats`."""
    rows = rows.copy()
    for c in stats.columns:
        looked = rows["username"].map(stats[c])
        rows[c] = rows[c].astype(float).fillna(looked) if c in rows else looked
    return rows


def blank_text(rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` without their tweet text (train_like_classifier.use_text: false): the classifier's line,
    the embedding and the text statistics then see none; captions and OCR text stay."""
    rows = rows.copy()
    rows["content"] = None
    return rows


def _joined(rows: pd.DataFrame, cols: tuple[str, ...]) -> list[str]:
    parts = [rows[c].fillna("").astype(str) if c in rows else pd.Series("", index=rows.index) for c in cols]
    return [" ".join(p for p in ps if p).strip() for ps in zip(*parts)]


def text_of(rows: pd.DataFrame) -> list[str]:
    """Tweet text and media caption / OCR where known, as one string (`embed_text: joined`)."""
    return _joined(rows, ("content", "caption", "ocr_text"))


EMBED_TEXTS = ("joined", "content", "content+media")


def texts_to_embed(rows: pd.DataFrame, mode: str) -> list[list[str]]:
    """The strings embedded for the head and the PCA features, one list per vector a row gets
    (`train_like_classifier.embed_text`): joined: text_of; content: the tweet text alone, the
    string evaluate and the writer embed (at the same max_length the embedding cache serves them);
    content+media: that, and the caption + OCR string apart."""
    if mode not in EMBED_TEXTS:
        raise ValueError(f"train_like_classifier.embed_text: unknown {mode!r} ({' | '.join(EMBED_TEXTS)})")
    if mode == "joined":
        return [text_of(rows)]
    content = _joined(rows, ("content",))
    return [content] if mode == "content" else [content, _joined(rows, ("caption", "ocr_text"))]


_UPPER = re.compile(r"[A-Z]")
_NONASCII = re.compile(r"[^\x00-\x7f]")


def _strings(rows: pd.DataFrame, col: str) -> list[str]:
    return rows[col].fillna("").astype(str).tolist() if col in rows else [""] * len(rows)


def _numeric(rows: pd.DataFrame, col: str):
    return pd.to_numeric(rows[col], errors="coerce").astype(float).to_numpy() if col in rows else np.nan


CYCLES = {"hour": 24, "dayofweek": 7}  # base_features' clock columns and their periods
TIME_FEATURES = ("raw", "cyclic", "both")


def time_columns(mode: str) -> list[str]:
    """The clock columns of base_features the trees leave out under `regress_within_bucket.xgb.time_features`:
    raw: the hour and weekday numbers only; cyclic: their sine and cosine only (hour 23 and hour 0, Sunday and
    Monday are neighbours: a split takes an arc of the clock, never a cut between 23 h and 0 h alone); both:
    none left out."""
    if mode not in TIME_FEATURES:
        raise ValueError(f"regress_within_bucket.xgb.time_features: unknown {mode!r} ({' | '.join(TIME_FEATURES)})")
    raw, cyclic = list(CYCLES), [f"{c}_{t}" for c in CYCLES for t in ("sin", "cos")]
    return {"raw": cyclic, "cyclic": raw, "both": []}[mode]


def base_features(rows: pd.DataFrame) -> pd.DataFrame:
    """Row-local features: side statistics, media, text statistics, date (the hour and weekday both as
    numbers and on the circle: time_columns picks which the trees read).

    Text counts loop over plain str (one pass per count, as pandas' .str methods do, without their
    per-call overhead, which dominated a one-row call); columns are gathered in a dict and framed once."""
    f = {}
    for c in SIDE_COLUMNS:
        f[f"log_{c}"] = np.log1p(np.clip(_numeric(rows, c), 0, None))
    for c in ("n_media", "n_photo", "n_video", "n_gif", "n_mentions", "n_hashtags", "n_hyperlinks", "video_duration"):
        f[c] = _numeric(rows, c)
    f["log_video_views"] = np.log1p(_numeric(rows, "video_views"))
    content, caption = _strings(rows, "content"), _strings(rows, "caption")
    chars = np.array([len(s) for s in content], dtype=float)
    f["has_content"] = (chars > 0).astype(float)
    f["content_chars"] = chars
    f["content_words"] = np.array([len(s.split()) for s in content], dtype=float)
    f["content_upper_frac"] = np.array([len(_UPPER.findall(s)) for s in content], dtype=float) / np.clip(chars, 1, None)
    f["content_exclaim"] = np.array([s.count("!") for s in content], dtype=float)
    f["content_question"] = np.array([s.count("?") for s in content], dtype=float)
    f["content_nonascii"] = np.array([len(_NONASCII.findall(s)) for s in content], dtype=float)
    f["caption_chars"] = np.array([len(s) for s in caption], dtype=float)
    d = pd.to_datetime(rows["date"], utc=True) if "date" in rows else pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]")
    f["year"] = d.dt.year.astype(float).to_numpy()
    f["month"] = d.dt.month.astype(float).to_numpy()
    f["dayofweek"] = d.dt.day_of_week.astype(float).to_numpy()
    f["hour"] = d.dt.hour.astype(float).to_numpy()
    f["days"] = ((d - EPOCH).dt.total_seconds() / 86400.0).to_numpy()
    for name, period in CYCLES.items():  # hour 23 next to hour 0, Sunday next to Monday (time_columns)
        angle = 2 * np.pi * f[name] / period
        f[f"{name}_sin"], f[f"{name}_cos"] = np.sin(angle), np.cos(angle)
    return pd.DataFrame({k: np.broadcast_to(np.asarray(v, dtype=float), len(rows)) for k, v in f.items()},
                        index=rows.index).astype(float)


def rows_dot(X: np.ndarray, W: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """X @ W.T computed row by row (an elementwise product and a sum, in chunks to bound memory), not by
    BLAS: a one-row call (gemv) and a batch (gemm) round differently, and a row's features must not
    depend on the batch it came in (predict-likes one tweet at a time equals the batch)."""
    X, W = np.asarray(X), np.asarray(W)
    if not len(X):
        return np.zeros((0, W.shape[0]), np.result_type(X, W))
    return np.concatenate([(X[i : i + chunk, None, :] * W[None]).sum(-1) for i in range(0, len(X), chunk)])


class TextPCA:
    """Sentence embeddings reduced to a few components fitted on training rows (the raw 384-d
    vectors overfit the trees)."""

    def __init__(self, n_components: int):
        self.k = int(n_components)
        self.mean = None
        self.components = None

    def fit(self, vecs: np.ndarray) -> "TextPCA":
        from sklearn.decomposition import PCA

        # the exact SVD: deterministic, and scikit-learn makes each component's largest loading positive
        pca = PCA(min(self.k, *vecs.shape), svd_solver="full").fit(vecs)
        self.mean, self.components = pca.mean_, pca.components_.astype(np.float32)
        return self

    def transform(self, vecs: np.ndarray) -> pd.DataFrame:
        # k = 0: no components, whatever the vectors (the head's embeddings are there without PCA features)
        z = rows_dot(vecs - self.mean, self.components) if self.k and self.components is not None and len(vecs) else np.zeros((len(vecs), 0))
        return pd.DataFrame(z, columns=[f"emb_pc{i}" for i in range(z.shape[1])]).astype(float)

    def save(self, path) -> None:
        empty = np.zeros((0, 0), np.float32)  # k = 0 (no embedding features): still a loadable file
        np.savez(path, mean=np.zeros(0, np.float32) if self.mean is None else self.mean,
                 components=empty if self.components is None else self.components, k=self.k)

    @classmethod
    def load(cls, path) -> "TextPCA":
        z = np.load(path)
        pca = cls(int(z["k"]))
        pca.mean, pca.components = z["mean"], z["components"]
        return pca
