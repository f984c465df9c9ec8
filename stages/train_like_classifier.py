"""train_like_classifier: per regime, fit the like-bucket classifier (`classifier`: a head on the sentence
embeddings, or a transformer fine-tuned on verbalised tweets) and write the regressors' feature table
(tabular features + the classifier's bucket probabilities).

Writes models/like_classifier/<regime>/ (model + feature state), data/likes/features.parquet
(`regime,source,id,side,likes,bucket` + features, every row with likes), dvclive/like_classifier/<regime>/
(training curves) and metrics/like_classifier.json.
usage: python stages/train_like_classifier.py [params.yaml] [data] [models] [dvclive/like_classifier] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

import pandas as pd

from tweetsim.likes import features as F
from tweetsim.data.sides import join_side_tables
from tweetsim.likes.artefacts import Layout
from tweetsim.likes.config import ClassifierConfig, InferenceConfig
from tweetsim.likes.fit import embed_rows, fit_regime
from tweetsim.text.runtime import EncoderConfig
from tweetsim.config.params import load_params
from tweetsim.data.schema import read_tweets


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models",
         live_dir: str = "dvclive/like_classifier", metrics_dir: str = "metrics") -> None:
    from dvclive import Live

    params = load_params(params_path)
    p = params["train_like_classifier"]
    clf, enc = ClassifierConfig.from_params(p), EncoderConfig.from_params(params["encoder"])
    data = Path(data_dir)
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    cap, ocr = data / "captions.parquet", data / "ocr.parquet"
    for path, on, instead in ((cap, p["use_captions"], "the tweets' own caption column only"), (ocr, p["use_ocr"], "no OCR text")):
        if on and not path.exists():
            print(f"train_like_classifier: NOTE {path} not found: using {instead}")
    table = join_side_tables(table, cap if p["use_captions"] else None, ocr if p["use_ocr"] else None)
    if not p["use_text"]:
        table = F.blank_text(table)
    side_stats = F.side_stats_table(table)
    context = F.context_rows(table)  # every tweet, with likes or not: the context features read no likes
    sup = table[table["likes"].notna()].sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    emb = embed_rows(sup, InferenceConfig.of(clf, enc))
    blank = int((sup["content"].fillna("").astype(str).str.strip() == "").sum()) if p["embed_text"] == "content" else 0
    if p["classifier"] == "head" and blank > len(sup) // 2:
        print(f"train_like_classifier: NOTE {blank} of {len(sup)} rows with likes have no tweet text: with embed_text "
              "content they share one vector, and the head's bucket accuracy says so (the trees still read their media "
              "and history; embed_text content+media embeds their caption and OCR text too, at an encoder pass each)")
    out = Layout(Path(models_dir)).classifiers
    parts, summary = [], {}
    for regime in params["split"]["regimes"]:
        with Live(dir=str(Path(live_dir) / regime), save_dvc_exp=False, dvcyaml=False) as live:
            feats, s = fit_regime(sup, regime, clf, enc, out, emb, side_stats, context, live=live, progress=p["progress"])
        parts.append(feats)
        summary[regime] = {k: v for k, v in s.items() if k != "history"}
        how = f"{s['steps']} steps" if p["classifier"] == "finetune" else f"embedding head, {s['crossfit_folds']} folds"
        print(f"train_like_classifier {regime}: {int((feats['side'] == 'train').sum())} training rows, {how}, "
              f"bucket accuracy val {s['val_accuracy']}, test {s['test_accuracy']}")
    (data / "likes").mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(data / "likes" / "features.parquet", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "like_classifier.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
