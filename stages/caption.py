"""caption: tweet media -> data/captions.parquet (caption + image embedding per tweet),
data/caption_rejects.csv (one line per unreadable or corrupt image file).

usage: python stages/caption.py [params.yaml] [data] [--shard K] [--merge]

With caption.shards = N > 1 each run (one machine / GPU, `--shard K` overriding caption.shard)
writes data/shards/captions-K-of-N.parquet; `--merge` then joins the N files into
data/captions.parquet, sorted by (source, id), checking that every tweet appears exactly once.
"""

import sys
from pathlib import Path

import pyarrow.parquet as pq

from tweetsim.vision import caption as cap
from tweetsim.vision import images as imgs
from tweetsim.config.params import section
from tweetsim.data.schema import read_tweets
from tweetsim.apps.entry import stage


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", *flags: str) -> None:
    p = section("caption", params_path)
    data = Path(data_dir)
    shards, shard = int(p["shards"]), int(p["shard"])
    if "--shard" in flags:
        shard = int(flags[flags.index("--shard") + 1])
    tweets = read_tweets(data / "tweets.parquet")
    if "--merge" in flags:
        print(imgs.merge_shard_outputs(data, "caption", "captions", "caption_rejects", shards, len(tweets), cap.schema()))
        return

    rows = imgs.select_shard(imgs.build_rows(tweets, imgs.read_manifest(data / "media"), data / "media"), shards, shard)
    loud = imgs.loud_missing("caption", rows)
    if loud:
        print(loud, file=sys.stderr, flush=True)
    cap.set_threads(p["num_threads"])
    if any(r.files for r in rows):
        captioner, embedder = cap.load_models(p)
    else:
        captioner = embedder = None
        print("caption: no image file in this run, so no model was loaded; captions come from the input only",
              file=sys.stderr, flush=True)
    cache = imgs.ResultCache(p["cache_dir"])
    records, rejects, counts = cap.caption_rows(rows, p, captioner, embedder, cache, progress=p["progress"])

    if shards > 1:
        out, rej = imgs.shard_paths(data, "captions", "caption_rejects", shard, shards)
    else:
        out, rej = data / "captions.parquet", data / "caption_rejects.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(cap.to_arrow(records), out)
    imgs.write_rejects(rej, rejects)
    n_img = sum(r["n_images_read"] for r in records)
    print(f"caption: {len(records)} rows -> {out} (shard {shard}/{shards}); captions: {counts['model']} from "
          f"{captioner.name if captioner else 'no model'}, {counts['precomputed']} precomputed, {counts['none']} none; "
          f"{n_img} images read, {len(rejects)} unreadable -> {rej}; embeddings from "
          f"{embedder.name if embedder else 'none (no image)'}; cache {cache.hits} hits / {cache.misses} misses")


if __name__ == "__main__":
    main(*sys.argv[1:])
