"""ocr: text in tweet media -> data/ocr.parquet (text, boxes and confidence per tweet),
data/ocr_rejects.csv (one line per unreadable or corrupt image file).

usage: python stages/ocr.py [params.yaml] [data] [--shard K | --merge]

Shards (ocr.shards, data/shards/ocr/ocr-K.parquet, then `--merge`) and `accelerate launch` work as
in stages/caption.py; OCR runs on the CPU, so several processes only split the rows.
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

from tweetsim.vision import images as imgs
from tweetsim.vision import ocr
from tweetsim.config.params import section
from tweetsim.vision.config import OcrConfig
from tweetsim.data.schema import read_tweets
from tweetsim.data.shards import shard_count, shard_flag, shard_paths


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", *flags: str) -> None:
    p = section("ocr", params_path)
    data = Path(data_dir)
    shards = shard_count(p["shards"], "ocr.shards")
    tweets = read_tweets(data / "tweets.parquet")
    if "--merge" in flags:
        print(imgs.merge_shard_outputs(data, "ocr", "ocr", "ocr_rejects", shards, len(tweets), ocr.schema()))
        return

    shard = shard_flag(flags, shards, "ocr.shards")
    procs = imgs.Processes()
    rows = imgs.build_rows(tweets, imgs.read_manifest(data / "media"), data / "media")
    rows = procs.take(rows if shard is None else imgs.select_shard(rows, shards, shard))
    loud = imgs.loud_missing("ocr", rows)
    if loud:
        print(loud, file=sys.stderr, flush=True)
    jobs = {it.sha256: it.path for r in rows for it in r.files}
    cache = imgs.ResultCache(p["cache_dir"])
    if jobs:
        results, errors, backend = ocr.ocr_images(jobs, OcrConfig.from_params(p), cache, progress=p["progress"])
    else:
        backend, results, errors = None, {}, {}
        print("ocr: no image file in this run, so the OCR engine was not loaded; ocr_text is null on every row",
              file=sys.stderr, flush=True)
    records, rejects = ocr.build_table(rows, results, errors, backend)

    if shard is None:
        out, rej = data / "ocr.parquet", data / "ocr_rejects.csv"
    else:
        out, rej = shard_paths(data, "ocr", "ocr", "ocr_rejects", shard)
    procs.write(ocr.to_arrow(records), rejects, out, rej, ocr.schema())
    with_text = sum(1 for r in records if r["ocr_text"])
    print(f"ocr: {len(records)} rows -> {out} ({procs.label(shard, shards)}); {len(jobs) - len(errors)} images read "
          f"by {backend or 'no engine'}, {with_text} rows with text, {len(rejects)} unreadable -> {rej}; "
          f"cache {cache.hits} hits / {cache.misses} misses")


if __name__ == "__main__":
    main(*sys.argv[1:])
