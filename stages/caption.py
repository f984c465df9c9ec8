"""caption: tweet media -> data/captions.parquet (caption + image embedding per tweet),
data/caption_rejects.csv (one line per unreadable or corrupt image file).

usage: python stages/caption.py [params.yaml] [data] [--shard K | --merge]

Without a flag the run covers every tweet. `--shard K` covers shard K of the N in caption.shards
([0, ..., N-1]) and writes data/shards/caption/captions-K.parquet (dvc.yaml's caption_shard@K);
`--merge` joins the N files into data/captions.parquet, byte-identical to a run without a flag.
Under `accelerate launch --num_processes P` the P processes split the run's rows, each on its own
GPU where CUDA exists, and the first one writes the run's output (tweetsim.vision.images.Processes).
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from dataclasses import replace
from pathlib import Path

from tweetsim.vision import caption as cap
from tweetsim.vision import images as imgs
from tweetsim.config.params import section
from tweetsim.vision.config import CaptionConfig
from tweetsim.data.schema import read_tweets
from tweetsim.data.shards import shard_count, shard_flag, shard_paths


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", *flags: str) -> None:
    p = section("caption", params_path)
    data = Path(data_dir)
    shards = shard_count(p["shards"], "caption.shards")
    tweets = read_tweets(data / "tweets.parquet")
    if "--merge" in flags:
        print(imgs.merge_shard_outputs(data, "caption", "captions", "caption_rejects", shards, len(tweets), cap.schema()))
        return

    shard = shard_flag(flags, shards, "caption.shards")
    procs = imgs.Processes()
    rows = imgs.build_rows(tweets, imgs.read_manifest(data / "media"), data / "media")
    rows = procs.take(rows if shard is None else imgs.select_shard(rows, shards, shard))
    cfg = CaptionConfig.from_params(p)
    if procs.device and p["device"] == "auto":
        cfg = replace(cfg, device=procs.device)
    loud = imgs.loud_missing("caption", rows)
    if loud:
        print(loud, file=sys.stderr, flush=True)
    cap.set_threads(p["num_threads"])
    if any(r.files for r in rows):
        captioner, embedder = cap.load_models(cfg)
    else:
        captioner = embedder = None
        print("caption: no image file in this run, so no model was loaded; captions come from the input only",
              file=sys.stderr, flush=True)
    cache = imgs.ResultCache(p["cache_dir"])
    records, rejects, counts = cap.caption_rows(rows, cfg, captioner, embedder, cache, progress=p["progress"])

    if shard is None:
        out, rej = data / "captions.parquet", data / "caption_rejects.csv"
    else:
        out, rej = shard_paths(data, "caption", "captions", "caption_rejects", shard)
    procs.write(cap.to_arrow(records), rejects, out, rej, cap.schema())
    n_img = sum(r["n_images_read"] for r in records)
    print(f"caption: {len(records)} rows -> {out} ({procs.label(shard, shards)}); captions: {counts['model']} from "
          f"{captioner.name if captioner else 'no model'}, {counts['precomputed']} precomputed, {counts['none']} none; "
          f"{n_img} images read, {len(rejects)} unreadable -> {rej}; embeddings from "
          f"{embedder.name if embedder else 'none (no image)'}; cache {cache.hits} hits / {cache.misses} misses")


if __name__ == "__main__":
    main(*sys.argv[1:])
