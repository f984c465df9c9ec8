"""evaluate: score every model's test predictions per regime -> metrics/likes.json, metrics/text.json,
metrics/likes_text_rows.json (the likes models on the test rows with tweet text and on those without),
and metrics/headline.json: the served models and their baselines only, the review-sized view (tweetsim/pipeline/report.py).

Likes models are scored on the test rows with likes; a model with a range (`pred_low, pred_high`)
also gets its coverage and median width (high / low) there. Text models, per regime: `all_rows` scores
the models that wrote every test row with content on all of them; `shared_rows` scores every
listed model on the rows all of them wrote (the LMs write a capped draw), so all are compared on
the same rows; `n` says how many. The n-gram scores run in `evaluate.workers` forked processes.
usage: python stages/evaluate.py [params.yaml] [data] [metrics]
"""

from tweetsim.pipeline.stage import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.pipeline import report
from tweetsim.pipeline.report import MIXED, SERVED_LIKES
from tweetsim.config.parallel import forked_map
from tweetsim.config.params import StageError, load_params
from tweetsim.data.schema import read_tweets
from tweetsim.likes.timeeffect import served_time_effect
from tweetsim.text import embed
from tweetsim.text.runtime import EncoderConfig
from tweetsim.likes.metrics import interval_metrics, likes_metrics
from tweetsim.text.metrics import CorpusScorer, embedding_cosine, to_json_safe


def _predictions(data: Path, kind: str, name: str) -> pd.DataFrame:
    path = data / "predictions" / kind / f"{name}.parquet"
    if not path.exists():
        raise StageError(f"evaluate: {path} is missing: evaluate.{kind}_models names '{name}' but no stage wrote it")
    return pd.read_parquet(path)


def _scores(m: pd.DataFrame, threshold, nominal: float) -> dict:
    """likes_metrics (high/low against each row's regime's `threshold`) and the range's coverage and width."""
    y, pred = m["likes"].astype(float), m["pred_likes"].astype(float)
    t = np.broadcast_to(np.asarray(threshold, float), len(m))
    out = likes_metrics(y, pred, float(np.median(t)))
    out["high_low_accuracy"] = float(np.mean((y.to_numpy() > t) == (pred.to_numpy() > t)))
    if "pred_low" in m:  # the model's conformal range (nominal: interval.coverage)
        r = interval_metrics(y, m["pred_low"].astype(float), m["pred_high"].astype(float))
        out.update({"interval_nominal": nominal, "interval_coverage": r["coverage"], "interval_width_ratio_median": r["width_ratio_median"]})
    return out


def _served(likes_res: dict, served: list[pd.DataFrame], nominal: float) -> None:
    """The router's backtest by route within each regime, and every regime's test rows together (MIXED),
    each row judged high or low against its own regime's training median."""
    both = pd.concat(served, ignore_index=True)
    for regime, part in both.groupby("regime", sort=True):
        likes_res[regime][SERVED_LIKES]["routes"] = {
            route: _scores(rows, rows["threshold"].to_numpy(), nominal) for route, rows in part.groupby("route", sort=True)}
    likes_res[MIXED] = {SERVED_LIKES: {**_scores(both, both["threshold"].to_numpy(), nominal),
                                       "routes": {route: _scores(rows, rows["threshold"].to_numpy(), nominal)
                                                  for route, rows in both.groupby("route", sort=True)}}}


def _text_jobs(refs: pd.DataFrame, preds: dict[str, pd.DataFrame]) -> dict:
    """{block: {model: (references, written)}}: `all_rows`: the models that predicted every test row
    with content, on all of them; `shared_rows`: every model on the rows all of them predicted (the
    LMs are capped to a draw)."""
    keys = refs.set_index(["source", "id"]).index
    covered = {n: keys.isin(p.set_index(["source", "id"]).index) for n, p in preds.items()}
    blocks = {"all_rows": [n for n in preds if covered[n].all()], "shared_rows": list(preds)}
    shared = np.logical_and.reduce(list(covered.values())) if preds else np.ones(len(refs), bool)
    out = {}
    for block, names in blocks.items():
        rows = refs if block == "all_rows" else refs[shared]
        if block == "shared_rows" and len(blocks["all_rows"]) == len(preds):
            continue  # every model covers every row: the same table twice
        out[block] = {}
        for name in names:
            m = rows.merge(preds[name], on=["source", "id"], how="left")
            out[block][name] = (m["content"].astype(str).tolist(), m["pred_content"].fillna("").astype(str).tolist())
    return out


def _score_texts(jobs: dict, encode, workers: int) -> dict:
    """text_metrics of every (regime, block, model) in `jobs`. The n-gram scores (pure Python, the
    stage's slow part at 300,000 tweets) come from one CorpusScorer per (regime, block), whose
    models share the references' side and every (row, text) they both wrote, its rows split over
    `workers` forked processes; each pair is scored on its own, so the figures do not depend on the
    number of workers. The embedding cosine is computed here, where the encoder and its cache are."""
    out = {r: {b: {} for b in blocks} for r, blocks in jobs.items()}
    for r, blocks in jobs.items():
        for b, models in blocks.items():
            if not models:
                continue
            refs = next(iter(models.values()))[0]
            if any(pair[0] != refs for pair in models.values()):
                raise ValueError(f"evaluate: the text models of {r}/{b} are not scored on the same rows")
            hyp_lists = [hyps for _, hyps in models.values()]
            scorer = CorpusScorer(refs)  # built before the fork: the workers share it
            chunks = [c for c in np.array_split(np.arange(len(refs)), max(1, workers)) if len(c)]
            parts = list(forked_map(lambda rows: [[scorer.pair(i, h[i]) for i in rows] for h in hyp_lists], chunks, workers))
            for m, (name, pair) in enumerate(models.items()):
                lex = scorer.figures([p for part in parts for p in part[m]])
                out[r][b][name] = {**lex, "embedding_cosine": embedding_cosine(*pair, encode)}
    return out


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p, data = params["evaluate"], Path(data_dir)
    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    likes_preds = {m: _predictions(data, "likes", m) for m in p["likes_models"]}
    text_preds = {m: _predictions(data, "text", m) for m in p["text_models"]}
    enc = EncoderConfig.from_params(params["encoder"])
    encode = embed.embedder(p["embed_model"], enc)
    likes_res, text_jobs, text_rows_res, served = {}, {}, {}, []
    nominal = float(params["interval"]["coverage"])
    for regime in params["split"]["regimes"]:
        side = table[regime]
        train_median = float(table.loc[(side == "train") & table["likes"].notna(), "likes"].astype(float).median())
        test = table[(side == "test") & table["likes"].notna()][["source", "id", "likes", "content"]]
        has_text = (test["content"].fillna("").astype(str).str.strip() != "").to_numpy()
        likes_res[regime], text_rows_res[regime] = {}, {}
        for name, pred in likes_preds.items():
            m = test.merge(pred[pred["regime"] == regime], on=["source", "id"], how="left")
            if m["pred_likes"].isna().any():
                raise StageError(f"evaluate: model '{name}' has no prediction for {m['pred_likes'].isna().sum()} "
                                 f"test rows of regime {regime}")
            likes_res[regime][name] = _scores(m, train_median, nominal)
            if name == SERVED_LIKES:
                served.append(m.assign(regime=regime, threshold=train_median))
            text_rows_res[regime][name] = {k: likes_metrics(m.loc[sel, "likes"].astype(float), m.loc[sel, "pred_likes"].astype(float),
                                                            train_median) if sel.any() else {"n": 0}
                                           for k, sel in (("with_text", has_text), ("without_text", ~has_text))}
        refs = table[(side == "test") & table["content"].notna()][["source", "id", "content"]]
        text_jobs[regime] = _text_jobs(refs, {n: pr[pr["regime"] == regime] for n, pr in text_preds.items()})
    if served:
        _served(likes_res, served, nominal)
        for regime, effect in served_time_effect(served, table).items():  # the time effect's backtest (likes/timeeffect.py)
            likes_res[regime][SERVED_LIKES]["time_effect"] = effect
    text_res = _score_texts(text_jobs, encode, int(p["workers"]))
    for regime in params["split"]["regimes"]:
        print(f"evaluate {regime}: " + "; ".join(
            f"{n} log1p-RMSE {r['rmse_log1p']:.3f} hi/lo {r['high_low_accuracy']:.3f}"
            + (f" range coverage {r['interval_coverage']:.3f} width x{r['interval_width_ratio_median']:.1f}" if "interval_coverage" in r else "")
            for n, r in likes_res[regime].items())
            + " | " + "; ".join(f"{n} ROUGE-L {r['rougeL']:.3f} CIDEr {r['cider']:.3f}" for n, r in text_res[regime]["all_rows"].items()))
    out = Path(metrics_dir)
    out.mkdir(exist_ok=True)
    headline = report.headline(params, likes_res, text_res)
    for name, res in (("headline", headline), ("likes", likes_res), ("text", text_res), ("likes_text_rows", text_rows_res)):
        (out / f"{name}.json").write_text(json.dumps(to_json_safe(res), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
