"""build_prompts: per regime, instruction examples (prompt in the model's chat template, tweet as completion).

Writes data/prompts.parquet: `regime,source,id,split,user,prompt,completion` for every row with
content (train rows to learn from, val/test rows to generate for). Exemplar tweets come from the
regime's training split only (tweetsim.writer.prompts documents the format).
usage: python stages/build_prompts.py [params.yaml] [data]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tweetsim.text import embed
from tweetsim.text.runtime import EncoderConfig
from tweetsim.lm import model as llm
from tweetsim.text.retrieval import Retriever
from tweetsim.config.params import load_params
from tweetsim.data.sides import join_from
from tweetsim.writer.prompts import build_examples
from tweetsim.data.schema import read_tweets


def _memo(encode):
    """Embed each distinct caption once across regimes (the same rows come back in every regime)."""
    cache = {}

    def fn(texts):
        new = sorted({t for t in texts if t not in cache})
        if new:
            cache.update(zip(new, encode(new)))
        return np.stack([cache[t] for t in texts])

    return fn


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data") -> None:
    params = load_params(params_path)
    p, m = params["build_prompts"], params["train_llm"]["model"]
    data = Path(data_dir)
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    table = join_from(table, data)
    tok = llm.load_tokenizer(llm.resolve_model(m["name"], m["cache_dir"]))
    enc = EncoderConfig.from_params(params["encoder"])
    embed_fn = _memo(embed.embedder(p["embed_model"], enc)) if p["caption_similarity"] else None
    parts = []
    for regime in tqdm(params["split"]["regimes"], desc="build_prompts"):
        side = table[regime]
        rows = table[table["content"].notna() & side.isin(["train", "val", "test"])].sort_values(["source", "id"])
        retriever = Retriever(table[side == "train"], embed_fn) if p["exemplars"] > 0 else None
        ex = build_examples(rows, tok, retriever, k=p["exemplars"], max_field_chars=p["max_field_chars"])
        parts.append(pd.DataFrame({"regime": regime, "source": rows["source"].to_numpy(), "id": rows["id"].to_numpy(),
                                   "split": rows[regime].to_numpy(), "user": ex["user"].to_numpy(),
                                   "prompt": ex["prompt"].to_numpy(), "completion": rows["content"].to_numpy()}))
    out = pd.concat(parts, ignore_index=True)
    out.to_parquet(data / "prompts.parquet", index=False)
    counts = out.groupby(["regime", "split"]).size()
    print("build_prompts: " + "; ".join(f"{r}: " + ", ".join(f"{s} {counts[r].get(s, 0)}" for s in ("train", "val", "test"))
                                        for r in params["split"]["regimes"])
          + f" (k={p['exemplars']} exemplars, template of {m['name']})")


if __name__ == "__main__":
    main(*sys.argv[1:])
