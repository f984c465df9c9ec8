"""The two tweet writers as the command and the web app load them: `Writer`, the language model
(base model of params.yaml + the adapter of a regime, exemplars retrieved from a pool as in training),
and `select_writer`, tweetsim.writer.tweet_writer.TweetWriter with the reranker and edits that select_text kept."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)


class Writer:
    """The tweet writer as `tweetsim generate` and the web app use it: the base model of params.yaml
    (+ a LoRA adapter, or none for the base model), loaded once, with exemplars retrieved from the
    rows with content of `pool` as in training."""

    def __init__(self, params: dict, adapter: Path | None, pool: Path | str | pd.DataFrame | None):
        """`params`: the loaded params.yaml (its train_llm, build_prompts and encoder sections, typed)."""
        import torch

        from tweetsim.lm import model as llm
        from tweetsim.lm.config import LLMConfig, PromptsConfig

        t, bp = LLMConfig.from_params(params["train_llm"]), PromptsConfig.from_params(params["build_prompts"])
        quant = llm.check_quantization(t.quantization)  # QuantizationUnavailable before any loading
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no adapter in {adapter} (run `dvc repro train_llm`, pass --adapter DIR, "
                                    "or --base-model to use the model without fine-tuning)")
        self.k, self.max_field_chars = int(bp.exemplars), int(bp.max_field_chars)
        self.retriever = None
        given = isinstance(pool, pd.DataFrame)  # a table (the pipeline's training split) or a tweets.parquet path
        if (given or (pool is not None and str(pool) != "none" and Path(pool).is_file())) and self.k > 0:
            from tweetsim.text import embed
            from tweetsim.text.runtime import EncoderConfig
            from tweetsim.text.retrieval import Retriever
            from tweetsim.data.schema import read_tweets

            tweets = pool if given else read_tweets(pool)
            if tweets["content"].notna().any():
                enc = EncoderConfig.from_params(params["encoder"])
                self.retriever = Retriever(tweets, embed.embedder(bp.embed_model, enc, bp.caption_similarity))
        if self.retriever is None and self.k > 0:
            logger.warning(f"no exemplar pool ({'table' if given else pool}): prompts carry no earlier tweet, unlike training")
        if not torch.cuda.is_available():
            torch.set_num_threads(int(t.num_threads))
        base = llm.resolve_model(t.model.name, t.model.cache_dir)
        self.tok = llm.load_tokenizer(str(adapter) if adapter is not None else base)
        self.model = (llm.load_adapter(base, adapter, quant, t.model.dtype) if adapter is not None
                      else llm.load_model(base, quant, t.model.dtype).eval())
        self.image_meta, self.encoder = None, None
        if adapter is not None:  # an image-prefix adapter: PrefixLM + the vision encoder it was trained on
            from tweetsim.lm import prefix as IP

            self.model, self.image_meta = IP.with_projector(self.model, adapter)
            if self.image_meta is not None:
                self.encoder = IP.encoder_for(self.image_meta)
        self.name = t.model.name + ("" if adapter is None else f" + {adapter}") + \
            (" (image-conditioned)" if self.image_meta else "")

    def images(self, rows: pd.DataFrame, media_dir: str | Path) -> tuple:
        """(feats, has_image, reasons) for an image-conditioned writer, (None, None, {}) otherwise."""
        if self.encoder is None:
            return None, None, {}
        from tweetsim.lm.prefix import image_features

        return image_features(rows, media_dir, self.encoder, int(self.image_meta["vision"]["max_images"]), progress=False)

    def prompts(self, rows: pd.DataFrame) -> list[str]:
        from tweetsim.writer.prompts import build_examples

        # the pool's own rows must not retrieve themselves: give the input rows a source of their own
        query = rows.assign(source="__input__" + rows["source"].astype(str))
        return build_examples(query, self.tok, self.retriever, k=self.k,
                              max_field_chars=self.max_field_chars)["prompt"].tolist()


def load_pool(pool: str | Path) -> pd.DataFrame:
    """The rows of `pool` (a tweets.parquet), with data/captions.parquet's captions where it lies beside it."""
    from tweetsim.data.sides import join_from
    from tweetsim.data.schema import read_tweets

    path = Path(pool)
    if str(pool) == "none" or not path.is_file():
        raise FileNotFoundError(f"the writer's pool {pool} does not exist (run `dvc repro download`, or pass --pool FILE)")
    table = join_from(read_tweets(path), path.parent)
    if not (table["content"].notna() & (table["content"].astype(str).str.strip() != "")).any():
        raise ValueError(f"the writer's pool {pool} has no row with content: there is nothing to choose from")
    return table


def select_writer(params: dict, writer_dir: str | Path, pool: str | Path, selector: str = "reranked",
                  context: pd.DataFrame | None = None, adapter: str | Path | None = None):
    """tweetsim.writer.tweet_writer.TweetWriter over every row with content of `pool`, with the reranker and the
    kept edits of `writer_dir`; brand profiles also see `context` (the rows to be written). With
    `writer.lm.candidates` > 0, the LM (the adapter folder `adapter`) adds its drafts to every pool.
    `params`: the loaded params.yaml (its writer and encoder sections, typed)."""
    from tweetsim.text import embed
    from tweetsim.text.runtime import EncoderConfig
    from tweetsim.writer.config import WriterConfig
    from tweetsim.writer.tweet_writer import TweetWriter

    p = WriterConfig.from_params(params["writer"])
    table = load_pool(pool)
    if context is not None:
        context = pd.concat([table, context], ignore_index=True)
    embed_fn = embed.embedder(p.embed_model, EncoderConfig.from_params(params["encoder"]), p.caption_similarity)
    writer = TweetWriter.load(writer_dir, table, p, context=context, embed_fn=embed_fn, selector=selector)
    if int(p.lm.candidates) > 0:  # the LM's drafts join each pool
        if adapter is None:
            raise ValueError("writer.lm.candidates > 0: the LM's drafts need its adapter folder (models/llm/<regime>)")
        writer.lm = lm_drafter(params, Path(adapter), table[table["content"].notna()])
    return writer


def lm_drafter(params: dict, adapter: str | Path, pool: pd.DataFrame):
    """The fine-tuned LM (`adapter`) as a candidate source: tweetsim.writer.lm.Drafter with its
    exemplars retrieved from `pool`, sampling as `writer.lm` says (the one place it is built)."""
    from tweetsim.lm.generate import GenConfig
    from tweetsim.writer.config import WriterConfig
    from tweetsim.writer.lm import Drafter

    return Drafter(Writer(params, Path(adapter), pool), WriterConfig.from_params(params["writer"]).lm,
                   GenConfig.from_params(params["generate"]))
