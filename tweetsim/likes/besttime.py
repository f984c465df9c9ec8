"""Best time to post: one post's predicted likes at every hour of the next 7 days (UTC), and
`tweetsim best-time`.

The post is copied into 168 rows, one per hourly slot, and predicted in one behaviour.Predictor
call. What depends on the date is recomputed for each slot by the Predictor's own feature code:
the date features (year, month, day of week, hour, days since 2018: features.base_features), the
days since the account's and the brand's previous known tweet (features.history_features), and
the classifier's line, which names the month, weekday and hour (likemodel.verbalise). The context
features (features.context_features) are computed once for the post and given to every slot: the
168 copies are one tweet, and pooled they would count as 168 tweets of the account. The sentence
embedding does not depend on the date and is computed once (embed.encode memoises by text).
"""

from __future__ import annotations

import argparse
import sys
import time

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
    out["date"] = pd.date_range(start, periods=slots, freq="h")
    return out


def best_time(predictor, row: pd.DataFrame, start=None, top: int = 5, slots: int = SLOTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curve, best) for one post (`row`: one normalised row, tweetsim.data.load). curve: one row per
    hourly slot (slot, date, weekday, hour, likes, log1p_likes), in time order; best: its `top`
    rows with the most likes, most first (ties: the earlier slot)."""
    from tweetsim.likes import features as F

    row = row.reset_index(drop=True)
    t0 = first_slot(row["date"].iloc[0] if "date" in row else None, start)
    ctx = F.context_features(row, predictor.state.context)
    rows = slot_rows(row, t0, slots)
    # the classifier in one batch: the slots' lines differ in the date only, so nothing is padded, and
    # one batch of 168 took 1.6x less CPU than batches of 64 (bfloat16, 2 threads; same predictions)
    batch = predictor.p["eval_batch_size"]
    predictor.p["eval_batch_size"] = max(int(batch), slots)
    try:
        likes, _ = predictor.predict_with_probs(rows, context=pd.concat([ctx] * slots, ignore_index=True))
    finally:
        predictor.p["eval_batch_size"] = batch
    likes = np.asarray(likes, dtype=float)
    curve = pd.DataFrame({"slot": np.arange(slots), "date": rows["date"], "weekday": rows["date"].dt.day_name().str[:3],
                          "hour": rows["date"].dt.hour, "likes": likes, "log1p_likes": np.log1p(likes)})
    best = curve.sort_values(["likes", "slot"], ascending=[False, True], kind="stable").head(top).reset_index(drop=True)
    return curve, best


def chart(curve: pd.DataFrame, best: pd.DataFrame, width: int = 560, height: int = 150, pad: int = 22) -> dict:
    """The geometry of the web app's inline SVG: the curve as a polyline (log1p likes up), the best
    slots as dots, one tick per day."""
    y = curve["log1p_likes"].to_numpy(float)
    lo, hi = float(y.min()), float(y.max())
    span = hi - lo if hi > lo else 1.0
    n = len(curve)
    px = lambda i: pad + (width - 2 * pad) * i / max(n - 1, 1)  # noqa: E731
    py = lambda v: height - pad - (height - 2 * pad) * (v - lo) / span  # noqa: E731
    points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(y))
    # a tick at each midnight; the first slot too when its day has room for a label (12 hours or more)
    days = [{"x": round(px(i), 1), "label": f"{d:%a %d}"} for i, d in zip(curve["slot"], curve["date"])
            if d.hour == 0 or (i == 0 and d.hour <= 12)]
    dots = [{"x": round(px(int(r.slot)), 1), "y": round(py(float(r.log1p_likes)), 1), "rank": k + 1}
            for k, r in enumerate(best.itertuples())]
    return {"width": width, "height": height, "pad": pad, "points": points, "days": days, "dots": dots,
            "low": float(np.expm1(lo)), "high": float(np.expm1(hi))}


def describe(best: pd.DataFrame) -> list[str]:
    return [f"{r.date:%a %Y-%m-%d %H:00} UTC  {r.likes:,.0f} likes" for r in best.itertuples()]


def cli(argv: list[str]) -> int:
    from tweetsim.data.load import InputError, read_official

    ap = argparse.ArgumentParser(prog="tweetsim best-time",
                                 description="Predicted likes of one post at every hour of the next 7 days (UTC); prints the best slots.")
    ap.add_argument("--input", required=True, help="a file of the official format (xlsx, csv or parquet) holding the post")
    ap.add_argument("--id", default=None, help="which row of the file (by id) when it holds several")
    ap.add_argument("--top", type=int, default=5, help="slots printed (default 5)")
    ap.add_argument("--start", default=None, help="first slot (UTC, e.g. '2024-05-06 09:00'; default: the next whole "
                    "hour after the post's date, or after now when it has none)")
    ap.add_argument("--output", default=None, help="CSV of the whole curve (slot,date,weekday,hour,likes,log1p_likes)")
    ap.add_argument("--models", default="models", help="folder of the trained artefacts (default: models)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        rows, rejects = read_official(args.input)
        start = None if args.start is None else first_slot(start=args.start)
    except InputError as e:
        print(f"best-time: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"best-time: --start {args.start!r}: {e}", file=sys.stderr)
        return 2
    rows = rows[rows["id"].notna()]
    if args.id is not None:
        rows = rows[rows["id"].astype(str) == str(args.id)]
    if len(rows) != 1:
        which = f"with id {args.id}" if args.id is not None else "with a valid id (give --id when the file holds several)"
        print(f"best-time: {args.input}: {len(rows)} rows {which}; one post is needed", file=sys.stderr)
        return 2
    if args.top < 1:
        print("best-time: --top must be at least 1", file=sys.stderr)
        return 2
    from tweetsim.likes.predictor import Predictor

    try:
        predictor = Predictor(args.models, args.threads)
    except FileNotFoundError as e:
        print(f"best-time: {e}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    curve, best = best_time(predictor, rows, start, args.top)
    seconds = time.perf_counter() - t0
    if args.output:
        curve.assign(date=curve["date"].dt.strftime("%Y-%m-%d %H:%M"), likes=curve["likes"].round(1),
                     log1p_likes=curve["log1p_likes"].round(4)).to_csv(args.output, index=False)
    print(f"best-time: id {rows['id'].iloc[0]}, {len(curve)} hourly slots from {curve['date'].iloc[0]:%Y-%m-%d %H:00} UTC "
          f"({seconds:.2f}s); median slot {curve['likes'].median():,.0f} likes; best:")
    for line in describe(best):
        print(f"  {line}")
    if args.output:
        print(f"best-time: curve -> {args.output}")
    return 0
