"""`tweetsim best-time`: one post's predicted likes at every hour of the next 7 days; the best slots."""

import argparse
import sys
import time

from tweetsim.apps import io
from tweetsim.data.load import InputError, parse_date, read_official
from tweetsim.likes.besttime import best_time, describe, distinct, first_slot, swing
from tweetsim.likes.router import load_likes_model


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tweetsim best-time",
                                 description="Predicted likes of one post at every hour of the next 7 days (UTC); prints the best slots.")
    ap.add_argument("--input", required=True, help="a file of the official format (xlsx, csv or parquet) holding the post")
    ap.add_argument("--id", default=None, help="which row of the file (by id) when it holds several")
    ap.add_argument("--top", type=int, default=5, help="slots printed (default 5)")
    ap.add_argument("--start", default=None, help="first slot (UTC, e.g. '2024-05-06 09:00'; default: the next whole "
                    "hour after the post's date, or after now when it has none)")
    ap.add_argument("--output", default=None, help="CSV of the whole curve (slot,date,weekday,hour,likes,log1p_likes)")
    ap.add_argument("--models", default="models", help="folder of the trained artefacts (default: models)")
    ap.add_argument("--threads", type=io.positive_int, default=2)
    args = ap.parse_args(argv)
    try:
        output = io.check_output(args.output, args.input) if args.output else None
        rows, rejects = read_official(args.input)
        start = None if args.start is None else first_slot(start=parse_date(args.start))  # the files' date rule
    except (InputError, io.OutputError) as e:
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
    io.report("best-time", rejects[rejects["row"] == rows["row"].iloc[0]], "treated as unknown")
    if args.top < 1:
        print("best-time: --top must be at least 1", file=sys.stderr)
        return 2
    try:
        router = load_likes_model(args.models, args.threads)
    except FileNotFoundError as e:
        print(f"best-time: {e}", file=sys.stderr)
        return 2
    route, why, predictor = router.pick(rows)
    t0 = time.perf_counter()
    try:
        curve, best = best_time(predictor, rows, start, args.top)
    except ValueError as e:  # the week of slots outside the dates pandas can hold (years 1677-2262)
        print(f"best-time: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    if output is not None:
        io.write_frame(curve.assign(date=curve["date"].dt.strftime("%Y-%m-%d %H:%M"), log1p_likes=curve["log1p_likes"].round(4),
                                    **{c: curve[c].round(1) for c in ("likes", "likes_low", "likes_high") if c in curve}),
                       output)
    print(f"best-time: id {rows['id'].iloc[0]}, {len(curve)} hourly slots from {curve['date'].iloc[0]:%Y-%m-%d %H:00} UTC "
          f"({seconds:.2f}s; route {route}: {why}); median slot {curve['likes'].median():,.0f} likes; best:")
    for line in describe(best):
        print(f"  {line}")
    shares = swing(predictor) if hasattr(predictor, "regs") else ()  # a tree model's contributions
    if len(shares):
        print("best-time: what moves across the slots: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v >= 0.005))
    note = distinct(curve, best)
    if note:
        print(f"best-time: {note}")
    if args.output:
        print(f"best-time: curve -> {args.output}")
    return 0
