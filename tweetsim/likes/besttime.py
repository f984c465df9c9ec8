"""Best time to post: one post's predicted likes at every hour of the next 7 days (UTC), and
the best slots.

The post is copied into 168 rows, one per hourly slot, and predicted in one predictor.Predictor
call. What depends on the date is recomputed for each slot by the Predictor's own feature code:
the date features (year, month, day of week, hour, days since 2018: features.base_features), the
days since the account's and the brand's previous known tweet (features.history_features), and
the classifier's line, which names the month, weekday and hour (classifier.verbalise). The context
features (features.context_features) are computed once for the post and given to every slot: the
168 copies are one tweet, and pooled they would count as 168 tweets of the account. The sentence
embedding does not depend on the date and is computed once (embed.encode memoises by text).
The command is apps/best_time.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

SLOTS = 7 * 24


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def first_slot(date=None, start=None) -> pd.Timestamp:
    """The first slot (UTC): `start` rounded up to a whole hour; else the next whole hour after the
    post's `date`; else the next whole hour from now."""
    if start is not None:
        return _utc(start).ceil("h")
    t = _utc(date) if date is not None and pd.notna(date) else pd.Timestamp.now(tz="UTC")
    return t.floor("h") + pd.Timedelta(hours=1)


def slot_rows(row: pd.DataFrame, start: pd.Timestamp, slots: int = SLOTS) -> pd.DataFrame:
    """`row` (one row) repeated at `slots` hourly dates from `start`."""
    if len(row) != 1:
        raise ValueError(f"best-time needs one post, got {len(row)} rows")
    out = pd.concat([row] * slots, ignore_index=True)
    try:
        out["date"] = pd.date_range(start, periods=slots, freq="h")
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        raise ValueError(f"the {slots} hourly slots from {start} go past the last date pandas can hold "
                         f"({pd.Timestamp.max:%Y-%m-%d %H:%M}); give an earlier --start") from None
    return out


def best_time(predictor, row: pd.DataFrame, start=None, top: int = 5, slots: int = SLOTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curve, best) for one post (`row`: one normalised row, tweetsim.data.load). curve: one row per
    hourly slot (slot, date, weekday, hour, likes, log1p_likes), in time order; best: its `top`
    rows with the most likes, most first (ties: the earlier slot). `predictor`: a Predictor, or the
    router (the post's route answers every slot: one account and brand at 168 dates)."""
    from tweetsim.likes import features as F

    row = row.reset_index(drop=True)
    if hasattr(predictor, "pick"):
        predictor = predictor.pick(row)[2]
    t0 = first_slot(row["date"].iloc[0] if "date" in row else None, start)
    ctx = F.context_features(row, predictor.state.context)
    rows = slot_rows(row, t0, slots)
    # the classifier in one batch: the slots' lines differ in the date only, so nothing is padded, and
    # one batch of 168 took 1.6x less CPU than batches of 64 (bfloat16, 2 threads; same predictions)
    before = predictor.p
    predictor.p = replace(before, eval_batch_size=max(int(before.eval_batch_size), slots))
    try:
        likes, _ = predictor.predict_with_probs(rows, context=pd.concat([ctx] * slots, ignore_index=True))
    finally:
        predictor.p = before
    likes = np.asarray(likes, dtype=float)
    curve = pd.DataFrame({"slot": np.arange(slots), "date": rows["date"], "weekday": rows["date"].dt.day_name().str[:3],
                          "hour": rows["date"].dt.hour, "likes": likes, "log1p_likes": np.log1p(likes)})
    if getattr(predictor, "ranges", None) is not None:  # the route's conformal 80% range of each slot's likes
        curve["likes_low"], curve["likes_high"] = (np.asarray(r, dtype=float) for r in predictor.ranges)
    best = curve.sort_values(["likes", "slot"], ascending=[False, True], kind="stable").head(top).reset_index(drop=True)
    return curve, best


# what may move across the slots: features of the slot's date, by the words the output uses
SLOT_GROUPS = {"hour": "hour of day", "hour_sin": "hour of day", "hour_cos": "hour of day", "dayofweek": "day of week",
               "dayofweek_sin": "day of week", "dayofweek_cos": "day of week", "acct_hist_days_since": "days since the last tweet",
               "brand_hist_days_since": "days since the last tweet", "year": "calendar date", "month": "calendar date",
               "days": "calendar date"}
CLASSIFIER = "the classifier's line (it names the month, weekday and hour)"
OTHER = "the post's other features, through the date"


def swing(predictor) -> pd.Series:
    """Which features move the last best_time curve, and their share of its swing: each feature's
    TreeSHAP contribution (likes/explain.py) across the slots, grouped as SLOT_GROUPS; a group's share
    is the variance of its contribution over the sum of the groups' variances (groups that do not
    vary are left out). The bucket probabilities' part goes to the classifier's line."""
    from tweetsim.likes.explain import BIAS, contributions

    def of(pred) -> pd.DataFrame:
        return contributions(pred.last_features, pred.regs, pred.gate, pred.bundle["final"], bool(pred.bundle["smearing"]))

    if hasattr(predictor, "weight") and hasattr(predictor, "other"):  # the brand route's blend of two models
        w = predictor.weight
        c = (w * of(predictor.own)).add((1 - w) * of(predictor.other), fill_value=0.0)
    else:
        c = of(predictor)
    cols = [k for k in c.columns if k != BIAS]
    # a feature that is the same on every slot still moves through its interactions with the slot's date
    group = [SLOT_GROUPS.get(k, CLASSIFIER if k.startswith("p_bucket") else OTHER) for k in cols]
    var = c[cols].T.groupby(group).sum().T.var(ddof=0)
    var = var[var > 1e-12]
    return (var / var.sum()).sort_values(ascending=False) if len(var) else var


def distinct(curve: pd.DataFrame, best: pd.DataFrame) -> str | None:
    """A sentence when the best slot cannot be told from the median slot: its likes inside the
    median slot's range (None when it is above it, or without ranges)."""
    if "likes_high" not in curve:
        return None
    median = curve.iloc[(curve["likes"] - curve["likes"].median()).abs().argsort().iloc[0]]
    if best["likes"].iloc[0] <= median["likes_high"]:
        return (f"the best slot ({best['likes'].iloc[0]:,.0f} likes) is inside the median slot's 80% range "
                f"({median['likes_low']:,.0f} to {median['likes_high']:,.0f}): the time of posting moves this post's "
                "likes less than one tweet's likes vary")
    return None


def chart(curve: pd.DataFrame, best: pd.DataFrame, width: int = 560, height: int = 150, pad: int = 22) -> dict:
    """The geometry of the web app's inline SVG: the curve as a polyline (log1p likes up), each slot's
    80% range as a band around it (when the curve has ranges), the best slots as dots, one tick per day."""
    y = curve["log1p_likes"].to_numpy(float)
    band = ("likes_low" in curve) and ("likes_high" in curve)
    ylo = np.log1p(curve["likes_low"].to_numpy(float)) if band else y
    yhi = np.log1p(curve["likes_high"].to_numpy(float)) if band else y
    lo, hi = float(min(y.min(), ylo.min())), float(max(y.max(), yhi.max()))
    span = hi - lo if hi > lo else 1.0
    n = len(curve)
    px = lambda i: pad + (width - 2 * pad) * i / max(n - 1, 1)  # noqa: E731
    py = lambda v: height - pad - (height - 2 * pad) * (v - lo) / span  # noqa: E731
    points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(y))
    area = " ".join([*(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(yhi)),
                     *(f"{px(i):.1f},{py(v):.1f}" for i, v in reversed(list(enumerate(ylo))))]) if band else ""
    # a tick at each midnight; the first slot too when its day has room for a label (12 hours or more)
    days = [{"x": round(px(i), 1), "label": f"{d:%a %d}"} for i, d in zip(curve["slot"], curve["date"])
            if d.hour == 0 or (i == 0 and d.hour <= 12)]
    dots = [{"x": round(px(int(r.slot)), 1), "y": round(py(float(r.log1p_likes)), 1), "rank": k + 1}
            for k, r in enumerate(best.itertuples())]
    return {"width": width, "height": height, "pad": pad, "points": points, "band": area, "days": days, "dots": dots,
            "top": float(np.expm1(hi)), "low": float(np.expm1(y.min())), "high": float(np.expm1(y.max())),
            "note": distinct(curve, best)}


def describe(best: pd.DataFrame) -> list[str]:
    rng = lambda r: f" (80% range {r.likes_low:,.0f} to {r.likes_high:,.0f})" if hasattr(r, "likes_low") else ""  # noqa: E731
    return [f"{r.date:%a %Y-%m-%d %H:00} UTC  {r.likes:,.0f} likes{rng(r)}" for r in best.itertuples()]
