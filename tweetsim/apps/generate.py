"""`tweetsim generate`: write a tweet for every row of an official content-simulation file.

    tweetsim generate --input content_simulation_test_time.xlsx --output tweets.csv

The input is parsed by `tweetsim.data.load.read_official` (id required; date, likes, username, media,
inferred company and caption optional: a missing column or unparsable cell becomes unknown, with
the problem printed). The output CSV has `id,content`, one row for every input row, in input order.

The default writer (`--writer select`, tweetsim.writer) chooses each row's tweet among candidates
from the rows with content of `--pool` (the account's, the brand's, caption neighbours, look-alike
brands for an unseen brand), with the reranker and edits of `select_text`'s run for
`writer.cli_regime` (models/writer/<regime>/; `--selector consensus` for consensus alone). A row
with no account, brand or date still gets a tweet from the widest pool; their count is printed.

`--writer lm` writes with the language model instead. Prompts are built as in training (tweetsim.writer.prompts),
with exemplars retrieved from the rows with content of `--pool` (default data/tweets.parquet,
when it exists); the model is the base model of params.yaml plus the adapter of
`generate.adapter_regime` (models/llm/<regime>/), or the base model alone with --base-model.
An adapter trained with `train_llm.image_prefix` is conditioned on each row's image, read through
the `--media` manifest (rows whose image was not fetched are written from text alone, counted).
"""

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from tweetsim.apps import io
from tweetsim.config.params import ParamsError, load_params
from tweetsim.data.load import InputError, read_official
from tweetsim.lm import model as llm
from tweetsim.lm.generate import GenConfig, generate
from tweetsim.writer.config import WriterConfig
from tweetsim.writer.writers import Writer, select_writer


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tweetsim generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="content-simulation file (xlsx, csv or parquet)")
    ap.add_argument("--output", required=True, help="CSV to write: id,content,status,reason (tweetsim.apps.io)")
    ap.add_argument("--two-columns", action="store_true", help="write the challenge's id,content only (problems on stderr)")
    ap.add_argument("--chunk-size", type=io.positive_int, default=None,
                    help="rows written at a time (bounds memory; default 512 with --writer select, 64 with --writer lm)")
    ap.add_argument("--params", default="params.yaml", help="params file (writer; for --writer lm train_llm, generate, build_prompts)")
    ap.add_argument("--writer", choices=("select", "lm"), default="select",
                    help="select: choose among candidate tweets (default); lm: the language model writes")
    ap.add_argument("--selector", choices=("reranked", "consensus"), default="reranked",
                    help="--writer select: the learned reranker (default) or consensus alone")
    ap.add_argument("--writer-dir", default=None, help="--writer select: models/writer/<writer.cli_regime> by default")
    ap.add_argument("--adapter", default=None, help="LoRA adapter folder (default models/llm/<generate.adapter_regime>)")
    ap.add_argument("--base-model", action="store_true", help="generate with the base model, no adapter")
    ap.add_argument("--pool", default="data/tweets.parquet",
                    help="tweets to choose from / retrieve exemplars from (rows with content); 'none': no exemplars (--writer lm)")
    ap.add_argument("--batch-size", type=io.positive_int, default=None, help="override generate.batch_size")
    ap.add_argument("--media", default="data/media",
                    help="media folder with manifest.csv (images used where fetched, for an image-prefix adapter)")
    return ap


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        output = io.check_output(args.output, args.input)
        params = load_params(args.params)
        rows, rejects = read_official(args.input)
    except (InputError, io.OutputError, ParamsError) as e:
        print(f"tweetsim generate: {e}", file=sys.stderr)
        return 2
    io.report("tweetsim generate", rejects, "treated as unknown")
    if args.writer == "select" and (args.adapter or args.base_model or args.batch_size):
        print("tweetsim generate: --adapter, --base-model and --batch-size are options of the LM: add --writer lm",
              file=sys.stderr)
        return 2
    if args.writer == "select":
        return _cli_select(args, params, rows, rejects, output)
    cfg = GenConfig.from_params(params["generate"])
    adapter = None if args.base_model else Path(args.adapter or Path("models") / "llm" / cfg.adapter_regime)
    try:
        writer = Writer(params, adapter, args.pool)
    except (llm.QuantizationUnavailable, FileNotFoundError) as e:
        print(f"tweetsim generate: {e}", file=sys.stderr)
        return 2
    if args.batch_size:
        cfg = replace(cfg, batch_size=args.batch_size)
    totals = {"new_tokens": 0, "seconds": 0.0, "with_image": 0, "text_only": 0, "why": {}}

    def write_chunk(chunk: pd.DataFrame) -> list[str]:
        feats, has, why = writer.images(chunk, args.media)
        texts, stats = generate(writer.model, writer.tok, writer.prompts(chunk), cfg, progress=False, feats=feats, has_image=has)
        totals["new_tokens"] += stats["new_tokens"]
        totals["seconds"] += stats["seconds"]
        if has is not None:
            totals["with_image"] += int(has.sum())
            totals["text_only"] += int((~has).sum())
            for k, v in why.items():
                totals["why"][k] = totals["why"].get(k, 0) + v
        return texts

    try:
        done = io.run_chunked(rows, rejects, write_chunk, output, "content", args.two_columns, args.chunk_size or 64, "generate")
    except io.OutputError as e:
        print(f"tweetsim generate: {e}", file=sys.stderr)
        return 130 if isinstance(e, io.Interrupted) else 2
    if writer.encoder is not None:
        print(f"tweetsim generate: {totals['with_image']} rows with an image, {totals['text_only']} text only {totals['why']}")
    print(f"tweetsim generate: {io.summary(done)} -> {output} ({len(rejects)} cell problems reported, "
          f"{totals['new_tokens'] / max(totals['seconds'], 1e-9):.1f} tokens/s, model {writer.name})")
    return 0


def _cli_select(args, params: dict, rows: pd.DataFrame, rejects: pd.DataFrame, output: Path) -> int:
    writer_dir = Path(args.writer_dir or Path("models") / "writer" / WriterConfig.from_params(params["writer"]).cli_regime)
    t0 = time.perf_counter()
    try:
        writer = select_writer(params, writer_dir, args.pool, args.selector, context=rows,
                               adapter=Path("models") / "llm" / GenConfig.from_params(params["generate"]).adapter_regime)
    except (FileNotFoundError, ValueError) as e:
        print(f"tweetsim generate: {e}", file=sys.stderr)
        return 2
    load_s = time.perf_counter() - t0
    widest = [0]

    def write_chunk(chunk: pd.DataFrame) -> list[str]:
        out = writer.write(chunk)
        widest[0] += int(out["widest"].sum())
        return out["content"].tolist()

    try:
        done = io.run_chunked(rows, rejects, write_chunk, output, "content", args.two_columns, args.chunk_size or 512,
                              "generate")
    except io.OutputError as e:
        print(f"tweetsim generate: {e}", file=sys.stderr)
        return 130 if isinstance(e, io.Interrupted) else 2
    unknown = {c: int((rows[c].isna() | (rows[c].astype(str).str.strip() == "")).sum()) for c in ("username", "company", "date")}
    print(f"tweetsim generate: {io.summary(done)} -> {output} ({len(rejects)} cell problems reported; rows without "
          f"account / brand / date: {unknown['username']} / {unknown['company']} / {unknown['date']}, "
          f"{widest[0]} written from the widest pool; {load_s:.1f}s load; writer {writer_dir} "
          f"({'reranker' if writer.reranker is not None else 'consensus'}, edits: {', '.join(writer.kept) or 'none'}), "
          f"pool {len(writer.pool.texts)} tweets from {args.pool})")
    return 0
