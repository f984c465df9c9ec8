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

`--writer lm` writes with the language model instead. Prompts are built as in training (tweetsim.lm.prompts),
with exemplars retrieved from the rows with content of `--pool` (default data/tweets.parquet,
when it exists); the model is the base model of params.yaml plus the adapter of
`generate.adapter_regime` (models/llm/<regime>/), or the base model alone with --base-model.
An adapter trained with `train_llm.image_prefix` is conditioned on each row's image, read through
the `--media` manifest (rows whose image was not fetched are written from text alone, counted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tweetsim generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True, help="content-simulation file (xlsx, csv or parquet)")
    ap.add_argument("--output", required=True, help="CSV to write: id,content,status,reason (tweetsim.apps.io)")
    ap.add_argument("--two-columns", action="store_true", help="write the challenge's id,content only (problems on stderr)")
    ap.add_argument("--chunk-size", type=int, default=None,
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
    ap.add_argument("--batch-size", type=int, default=None, help="override generate.batch_size")
    ap.add_argument("--media", default="data/media",
                    help="media folder with manifest.csv (images used where fetched, for an image-prefix adapter)")
    return ap


class Writer:
    """The tweet writer as `tweetsim generate` and the web app use it: the base model of params.yaml
    (+ a LoRA adapter, or none for the base model), loaded once, with exemplars retrieved from the
    rows with content of `pool` as in training."""

    def __init__(self, params: dict, adapter: Path | None, pool: Path | str | pd.DataFrame | None, log=print):
        import torch

        from tweetsim.lm import model as llm

        t, bp = params["train_llm"], params["build_prompts"]
        quant = llm.check_quantization(t["quantization"])  # QuantizationUnavailable before any loading
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no adapter in {adapter} (run `dvc repro train_llm`, pass --adapter DIR, "
                                    "or --base-model to use the model without fine-tuning)")
        self.k, self.max_field_chars = int(bp["exemplars"]), int(bp["max_field_chars"])
        self.retriever = None
        given = isinstance(pool, pd.DataFrame)  # a table (the pipeline's training split) or a tweets.parquet path
        if (given or (pool is not None and str(pool) != "none" and Path(pool).is_file())) and self.k > 0:
            from tweetsim.text import embed
            from tweetsim.likes.baselines import Retriever
            from tweetsim.data.schema import read_tweets

            tweets = pool if given else read_tweets(pool)
            if tweets["content"].notna().any():
                embed_fn = (lambda texts: embed.encode(texts, bp["embed_model"])) if bp["caption_similarity"] else None
                self.retriever = Retriever(tweets, embed_fn)
        if self.retriever is None and self.k > 0:
            log(f"WARNING no exemplar pool ({'table' if given else pool}): prompts carry no earlier tweet, unlike training")
        if not torch.cuda.is_available():
            torch.set_num_threads(int(t.get("num_threads") or 2))
        base = llm.resolve_model(t["model"]["name"], t["model"]["cache_dir"])
        self.tok = llm.load_tokenizer(str(adapter) if adapter is not None else base)
        self.model = (llm.load_adapter(base, adapter, quant, t["model"]["dtype"]) if adapter is not None
                      else llm.load_model(base, quant, t["model"]["dtype"]).eval())
        self.image_meta, self.encoder = None, None
        if adapter is not None:  # an image-prefix adapter: PrefixLM + the vision encoder it was trained on
            from tweetsim.lm import prefix as IP

            self.model, self.image_meta = IP.with_projector(self.model, adapter)
            if self.image_meta is not None:
                self.encoder = IP.encoder_for(self.image_meta, log=log)
        self.name = t["model"]["name"] + ("" if adapter is None else f" + {adapter}") + \
            (" (image-conditioned)" if self.image_meta else "")

    def images(self, rows: pd.DataFrame, media_dir: str | Path) -> tuple:
        """(feats, has_image, reasons) for an image-conditioned writer, (None, None, {}) otherwise."""
        if self.encoder is None:
            return None, None, {}
        from tweetsim.lm.prefix import image_features

        return image_features(rows, media_dir, self.encoder, int(self.image_meta["vision"]["max_images"]), progress=False)

    def prompts(self, rows: pd.DataFrame) -> list[str]:
        from tweetsim.lm.prompts import build_examples

        # the pool's own rows must not retrieve themselves: give the input rows a source of their own
        query = rows.assign(source="__input__" + rows["source"].astype(str))
        return build_examples(query, self.tok, self.retriever, k=self.k,
                              max_field_chars=self.max_field_chars)["prompt"].tolist()


def load_pool(pool: str | Path) -> pd.DataFrame:
    """The rows of `pool` (a tweets.parquet), with data/captions.parquet's captions where it lies beside it."""
    from tweetsim.lm.prompts import join_side_tables
    from tweetsim.data.schema import read_tweets

    path = Path(pool)
    if str(pool) == "none" or not path.is_file():
        raise FileNotFoundError(f"the writer's pool {pool} does not exist (run `dvc repro download`, or pass --pool FILE)")
    table = join_side_tables(read_tweets(path), path.parent)
    if not (table["content"].notna() & (table["content"].astype(str).str.strip() != "")).any():
        raise ValueError(f"the writer's pool {pool} has no row with content: there is nothing to choose from")
    return table


def select_writer(params: dict, writer_dir: str | Path, pool: str | Path, selector: str = "reranked",
                  context: pd.DataFrame | None = None, adapter: str | Path | None = None):
    """tweetsim.writer.TweetWriter over every row with content of `pool`, with the reranker and the
    kept edits of `writer_dir`; brand profiles also see `context` (the rows to be written). With
    `writer.lm.candidates` > 0, the LM (`adapter`, default models/llm/<generate.adapter_regime>)
    adds its drafts to every pool."""
    from tweetsim.text import embed
    from tweetsim.writer import TweetWriter

    p = params["writer"]
    table = load_pool(pool)
    if context is not None:
        context = pd.concat([table, context], ignore_index=True)
    embed_fn = (lambda texts: embed.encode(texts, p["embed_model"])) if p["caption_similarity"] else None
    writer = TweetWriter.load(writer_dir, table, p, context=context, embed_fn=embed_fn, selector=selector)
    if int(p["lm"]["candidates"]) > 0:  # the LM's drafts join each pool
        adapter = Path("models") / "llm" / params["generate"]["adapter_regime"] if adapter is None else Path(adapter)
        writer.lm = lm_drafter(params, adapter, table[table["content"].notna()])
    return writer


def lm_drafter(params: dict, adapter: str | Path, pool: pd.DataFrame):
    """The fine-tuned LM (`adapter`) as a candidate source: tweetsim.writer.lm.Drafter with its
    exemplars retrieved from `pool`, sampling as `writer.lm` says (the one place it is built)."""
    from tweetsim.writer.lm import Drafter

    return Drafter(Writer(params, Path(adapter), pool), params["writer"]["lm"], params["generate"])


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from tweetsim.apps import io as io
    from tweetsim.lm import model as llm
    from tweetsim.lm.generate import GenConfig, generate
    from tweetsim.data.load import InputError, read_official
    from tweetsim.config.params import ParamsError, load_params

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
    g = params["generate"]
    adapter = None if args.base_model else Path(args.adapter or Path("models") / "llm" / g["adapter_regime"])
    try:
        writer = Writer(params, adapter, args.pool, log=lambda m: print(f"tweetsim generate: {m}", file=sys.stderr))
    except (llm.QuantizationUnavailable, FileNotFoundError) as e:
        print(f"tweetsim generate: {e}", file=sys.stderr)
        return 2
    cfg = GenConfig.from_params({**g, **({"batch_size": args.batch_size} if args.batch_size else {})})
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
    import time

    from tweetsim.apps import io as io

    writer_dir = Path(args.writer_dir or Path("models") / "writer" / params["writer"]["cli_regime"])
    t0 = time.perf_counter()
    try:
        writer = select_writer(params, writer_dir, args.pool, args.selector, context=rows)
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
