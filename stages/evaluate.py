"""evaluate: score every model's test predictions per regime -> metrics/likes.json, metrics/text.json.

Likes models are scored on the test rows with likes; text models on the test rows with content
that every listed text model predicted (a model may cap its rows, so all are compared on the
same rows; `n` says how many).
usage: python stages/evaluate.py [params.yaml] [data] [metrics]
"""

import json
import sys
from pathlib import Path

import pandas as pd

from tweetsim import embed
from tweetsim.schema import read_tweets
from tweetsim.metrics import likes_metrics, text_metrics, to_json_safe
from tweetsim.params import load_params


def _predictions(data: Path, kind: str, name: str) -> pd.DataFrame:
    path = data / "predictions" / kind / f"{name}.parquet"
    if not path.exists():
        raise SystemExit(f"evaluate: {path} is missing: evaluate.{kind}_models names '{name}' but no stage wrote it")
    return pd.read_parquet(path)


def main(params_path: str = "params.yaml", data_dir: str = "data", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p, data = params["evaluate"], Path(data_dir)
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    likes_preds = {m: _predictions(data, "likes", m) for m in p["likes_models"]}
    text_preds = {m: _predictions(data, "text", m) for m in p["text_models"]}
    encode = lambda texts: embed.encode(texts, p["embed_model"])  # noqa: E731
    likes_res, text_res = {}, {}
    for regime in params["split"]["regimes"]:
        side = table[regime]
        train_median = float(table.loc[(side == "train") & table["likes"].notna(), "likes"].astype(float).median())
        test = table[(side == "test") & table["likes"].notna()][["source", "id", "likes"]]
        likes_res[regime] = {}
        for name, pred in likes_preds.items():
            m = test.merge(pred[pred["regime"] == regime], on=["source", "id"], how="left")
            if m["pred_likes"].isna().any():
                raise SystemExit(f"evaluate: model '{name}' has no prediction for {m['pred_likes'].isna().sum()} "
                                 f"test rows of regime {regime}")
            likes_res[regime][name] = likes_metrics(m["likes"].astype(float), m["pred_likes"].astype(float), train_median)
        refs = table[(side == "test") & table["content"].notna()][["source", "id", "content"]]
        for name, pred in text_preds.items():
            refs = refs.merge(pred.loc[pred["regime"] == regime, ["source", "id"]], on=["source", "id"])
        text_res[regime] = {}
        for name, pred in text_preds.items():
            m = refs.merge(pred[pred["regime"] == regime], on=["source", "id"], how="left")
            hyps = m["pred_content"].fillna("").astype(str).tolist()
            text_res[regime][name] = text_metrics(m["content"].astype(str).tolist(), hyps, encode=encode)
        print(f"evaluate {regime}: " + "; ".join(
            f"{n} log1p-RMSE {r['rmse_log1p']:.3f} hi/lo {r['high_low_accuracy']:.3f}" for n, r in likes_res[regime].items())
            + " | " + "; ".join(f"{n} ROUGE-L {r['rougeL']:.3f} CIDEr {r['cider']:.3f}" for n, r in text_res[regime].items()))
    out = Path(metrics_dir)
    out.mkdir(exist_ok=True)
    for name, res in (("likes", likes_res), ("text", text_res)):
        (out / f"{name}.json").write_text(json.dumps(to_json_safe(res), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
