"""download: official files -> data/tweets.parquet, data/rejects.csv, data/media/ (manifest + store).

usage: python stages/download.py [params.yaml] [data]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import sys
from pathlib import Path

import pandas as pd

from tweetsim.data.load import REJECT_COLUMNS, InputError, load_sources, write_tweets
from tweetsim.data.media import image_url
from tweetsim.config.params import section


@stage
def main(params_path: str = "params.yaml", out_dir: str = "data") -> None:
    p = section("download", params_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        table, rejects, total = load_sources(p["source"], p["exclude"])
    except InputError as e:  # a file that cannot be used: its line in rejects.csv, then one line and exit
        (e.rejects if e.rejects is not None else pd.DataFrame(columns=REJECT_COLUMNS)).to_csv(out / "rejects.csv", index=False)
        sys.exit(f"download: {e}; see {out / 'rejects.csv'}")
    rejects.to_csv(out / "rejects.csv", index=False)
    bad_rows = rejects.drop_duplicates(["source", "row"]).shape[0]
    fraction = bad_rows / max(total, 1)
    if fraction > p["max_reject_fraction"]:
        sys.exit(f"download: {bad_rows} of {total} rows rejected ({fraction:.1%}) > max_reject_fraction "
                 f"{p['max_reject_fraction']:.1%}; see {out / 'rejects.csv'}")
    write_tweets(table, out / "tweets.parquet")

    # One manifest row per distinct image URL; the kind tells videos/GIFs (thumbnails) from photos.
    urls = sorted({(image_url(m), m["kind"]) for items in table["media"] for m in items})
    media = out / "media"
    media.mkdir(exist_ok=True)
    from tweetsim.data import fetch

    if p["fetch_media"]:
        manifest = fetch.fetch_media(urls, media / "store", media / "manifest.csv", **p["fetch"])
        counts = manifest["status"].value_counts().to_dict()
    else:
        manifest = fetch.manifest_not_fetched(urls)
        fetch.write_manifest(manifest, media / "manifest.csv")
        counts = {"not_fetched": len(manifest)}
        print(f"download: media fetching is OFF (download.fetch_media=false): {len(urls)} image URLs listed, "
              "none fetched; caption/ocr will find no image files")
    print(f"download: {len(table)} rows from {table['source'].nunique()} files "
          f"({table['likes'].notna().sum()} with likes, {table['content'].notna().sum()} with content, "
          f"{table['caption'].notna().sum()} with captions); {bad_rows} rows rejected ({fraction:.2%}) -> "
          f"{out / 'rejects.csv'}; media: {counts}")


if __name__ == "__main__":
    main(*sys.argv[1:])
