"""`tweetsim predict-likes`: likes for an official behaviour-simulation file, from the bucket models
(default) or the behaviour LM (`--model lm`)."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tweetsim.apps import io
from tweetsim.data.load import InputError, read_official
from tweetsim.likes import behaviour_lm as B
from tweetsim.likes import explain as ex
from tweetsim.likes import features as F
from tweetsim.likes.router import load_likes_model, routes_of_last
from tweetsim.lm.config import BehaviourLMConfig


def cli(argv: list[str]) -> int:
    # --model lm: the image-conditioned behaviour LM (lm_cli below); bucket (default): the bucket models.
    model_arg = next((a for a in argv if a == "--model" or a.startswith("--model=")), None)
    if model_arg is not None:
        i = argv.index(model_arg)
        choice = model_arg.split("=", 1)[1] if "=" in model_arg else (argv[i + 1] if i + 1 < len(argv) else "")
        argv = argv[:i] + argv[i + (1 if "=" in model_arg else 2):]
        if choice == "lm":
            return lm_cli(argv)
        if choice != "bucket":
            print(f"predict-likes: --model {choice!r}: choose bucket (default) or lm", file=sys.stderr)
            return 2
    ap = argparse.ArgumentParser(prog="tweetsim predict-likes",
                                 description="Predict likes for an official behaviour-simulation file (xlsx, csv or parquet).")
    ap.add_argument("--input", required=True, help="id, date, content, username, media, inferred company (only id required)")
    ap.add_argument("--output", required=True, help="CSV written with columns id,likes,likes_low,likes_high,route,route_reason,"
                    "status,reason (likes_low..likes_high: the nominal 80%% range; route: which model answered the row "
                    "(account | brand | new_brand) and why), one row per input row, input order")
    ap.add_argument("--two-columns", action="store_true", help="write the challenge's id,likes only (problems on stderr)")
    ap.add_argument("--models-of", default=None, metavar="REGIME",
                    help="use that regime's models (fitted on its train rows) for every row instead of the router over "
                    "the deploy fit's routes (every labelled row)")
    ap.add_argument("--chunk-size", type=io.positive_int, default=1000, help="rows predicted at a time (bounds memory)")
    ap.add_argument("--models", default="models", help="folder of the trained artefacts (default: models)")
    ap.add_argument("--threads", type=io.positive_int, default=2)
    ap.add_argument("--explain", action="store_true", help="add a column `explain`: per row, JSON of each factor's "
                    "contribution in log1p likes and the bias (tweetsim.likes.explain); they sum to log1p(likes)")
    args = ap.parse_args(argv)
    try:
        output = io.check_output(args.output, args.input)
        rows, rejects = read_official(args.input)
    except (InputError, io.OutputError) as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 2
    if args.explain and args.two_columns:
        print("predict-likes: --explain adds a column to the default format; --two-columns writes id,likes only", file=sys.stderr)
        return 2
    io.report("predict-likes", rejects, "predicted without it")
    t0 = time.perf_counter()
    try:
        predictor = load_likes_model(args.models, args.threads, args.models_of)
        if not predictor.intervals and not args.two_columns:
            raise FileNotFoundError(f"{args.models}: these models have no intervals file (likes_low, likes_high): "
                                    "rerun `dvc repro combine_likes deploy_likes`, or use --two-columns")
    except FileNotFoundError as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    # the input rows are each other's context (features.context_features): a chunk sees the others as known rows
    known, valid = predictor.context, rows[rows["id"].notna()]
    ctx = F.context_rows(valid).set_axis(valid.index)

    def predict_chunk(chunk: pd.DataFrame) -> list:
        predictor.context = pd.concat([known, ctx.drop(chunk.index)], ignore_index=True)
        if args.two_columns:
            return np.rint(predictor.predict(chunk)).astype(np.int64).tolist()
        if args.explain:
            likes, factors = predictor.explain(chunk)
            low, high = predictor.ranges  # set by the same prediction
        else:
            likes, low, high = predictor.predict_with_range(chunk)
        # the range is rounded outwards, so low <= likes <= high holds for the written integers too
        high = [int(h) if np.isfinite(h) else None for h in np.ceil(high)]
        out = [np.rint(likes).astype(np.int64).tolist(), np.floor(low).astype(np.int64).tolist(), high,
               *routes_of_last(predictor, len(chunk))]
        return list(zip(*out, ex.to_json(factors))) if args.explain else list(zip(*out))

    try:
        columns = ["likes", "likes_low", "likes_high", "route", "route_reason"] + (["explain"] if args.explain else [])
        stats = io.run_chunked(rows, rejects, predict_chunk, output, columns, args.two_columns,
                               args.chunk_size, "predict-likes")
    except io.OutputError as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 130 if isinstance(e, io.Interrupted) else 2
    finally:
        predictor.context = known
    print(f"predict-likes: {io.summary(stats)} -> {output} (load {t1 - t0:.1f}s, predict {stats['seconds']:.1f}s, "
          f"{len(rejects)} cell problems reported; models: "
          f"{'regime ' + args.models_of if args.models_of else 'router over the deploy fit (routes: ' + ', '.join(predictor.routes) + ')'})")
    return 0


def lm_cli(argv: list[str]) -> int:
    """`tweetsim predict-likes --model lm`: the behaviour LM of `--regime` (default: the first
    trained), falling back to the bucket model (models/likes bundle) where an answer is unparsable."""
    ap = argparse.ArgumentParser(prog="tweetsim predict-likes --model lm")
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--models", default="models")
    ap.add_argument("--media", default="data/media", help="media folder with manifest.csv (images used where fetched)")
    ap.add_argument("--regime", default=None)
    ap.add_argument("--threads", type=io.positive_int, default=2)
    ap.add_argument("--two-columns", action="store_true", help="write the challenge's id,likes only (problems on stderr)")
    args = ap.parse_args(argv)
    try:
        output = io.check_output(args.output, args.input)
    except io.OutputError as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    root = Path(args.models) / B.NAME
    regimes = B.trained_regimes(args.models)
    regime = args.regime or (regimes[0] if regimes else None)
    if regime is None or not (root / regime / "state.json").is_file():
        print(f"predict-likes: no behaviour LM under {root}/{regime or '<regime>'}: run `dvc repro train_behaviour_lm`",
              file=sys.stderr)
        return 2
    try:
        rows, rejects = read_official(args.input)
    except InputError as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 2
    io.report("predict-likes", rejects, "predicted without it")
    for col in ("company", "username"):
        rows[col] = rows[col].fillna("").astype(str) if col in rows else ""
    todo = rows[rows["id"].notna()]  # a row whose id is not valid is not answered (status rejected)
    answers, has, used, fb_name = pd.Series(dtype=np.int64), np.zeros(0, bool), np.zeros(0, bool), "bucket model"
    if len(todo):
        tok, model, state = B.load(root / regime)
        p = BehaviourLMConfig.from_params(state["params"])
        tables = B.load_history(root / regime)
        enc = B.VisionEncoder(p.vision.backend, p.vision.clip_model, batch_size=int(p.vision.batch_size))
        feats, has, _ = B.image_features(todo, args.media, enc, int(p.vision.max_images), progress=False)
        examples = B.make_examples(tok, todo, B.history(todo, tables=tables), feats, has, int(p.max_length),
                                   max_field_chars=int(p.max_field_chars))
        fallback = np.full(len(todo), float(state["train_median"]))
        try:
            fallback = load_likes_model(args.models, args.threads).predict(todo)
        except FileNotFoundError as e:
            fb_name = "train median"
            print(f"predict-likes: WARNING bucket model unavailable ({e}); unparsable answers take the train median",
                  file=sys.stderr)
        likes, _, used = B.predict(model, tok, examples, fallback, int(p.eval_batch_size), int(p.max_new_tokens),
                                   progress=False, constrain=bool(p.constrain))
        answers = pd.Series(np.rint(likes).astype(np.int64), index=todo.index)
    stats = io.run_chunked(rows, rejects, lambda chunk: answers[chunk.index].tolist(), output, "likes", args.two_columns,
                           max(len(rows), 1), "predict-likes")  # one chunk: the LM has answered every row already
    print(f"predict-likes --model lm ({regime}): {io.summary(stats)} -> {output}; {int(has.sum())} with an image, "
          f"{int((~has).sum())} text only; {int(used.sum())} unparsable answers took the {fb_name}")
    return 0
