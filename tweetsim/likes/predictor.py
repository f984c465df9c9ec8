"""Behaviour simulation end to end: the per-regime feature state, training glue, the final
predictor that loads what `dvc repro` trained, and `tweetsim predict-likes`.

Artefacts (all under `models/`, DVC outputs):
- `like_classifier/<regime>/`: the fine-tuned classifier (HF folder), `state.json` (bucket edges,
  max_length, feature names), `pca.npz`, `history_{username,company}.parquet` (the rows of the regime
  that a test row's history comes from: `test_history`), `history_all_{username,company}.parquet`
  (every row with likes: what the CLI uses as an account's history), `side_stats.parquet` (organiser
  statistics by username), `context_rows.parquet` (every known tweet's account, brand, date and video
  views: features.context_features pools the input rows with them).
- `like_regressor/<lower edge>/<regime>.{ubj,json}`: the bucket's XGBoost and its metadata.
- `likes/bundle.json`: the final mode and smearing of the regimes' models (`--models-of REGIME`);
  `likes/gate/<regime>.*`, `likes/intervals/<regime>.json` (conformal ranges, tweetsim/likes/intervals.py).
- `likes/deploy/`: the deploy fit (tweetsim/likes/deploy.py, stage deploy_likes) that the CLI and the web app
  load by default: `classifier/` (as like_classifier/<regime>/), `regressor/<edge>.*`, `gate.*`,
  `intervals.json`, `bundle.json` (with the paths of those, relative to `models/`).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes import features as F
from tweetsim.lm.save import save_tokenizer
from tweetsim.likes.classifier import bucketize, predict_proba, verbalise


def attach_media_text(table: pd.DataFrame, captions: Path | None, ocr: Path | None) -> pd.DataFrame:
    """Captions from data/captions.parquet where present (else the tweets' own caption column), and
    ocr_text from data/ocr.parquet, when those files exist."""
    table = table.copy()
    if captions is not None and Path(captions).exists():
        cap = pd.read_parquet(captions, columns=["source", "id", "caption"]).rename(columns={"caption": "_cap"})
        table = table.merge(cap, on=["source", "id"], how="left")
        table["caption"] = table["_cap"].where(table["_cap"].notna() & (table["_cap"].astype(str) != ""), table["caption"])
        table = table.drop(columns="_cap")
    if ocr is not None and Path(ocr).exists():
        o = pd.read_parquet(ocr, columns=["source", "id", "ocr_text"])
        table = table.merge(o, on=["source", "id"], how="left")
    if "ocr_text" not in table:
        table["ocr_text"] = None
    return table


def embed_texts(texts: list[str], p: dict) -> np.ndarray:
    if int(p["embed_components"]) <= 0:
        return np.zeros((len(texts), 0), np.float32)
    from tweetsim.text import embed

    return embed.encode(texts, p.get("embed_model"), max_length=int(p["embed_max_length"]),
                        dtype=p.get("inference_dtype") or "float32")


class FeatureState:
    """Everything needed to featurise rows of one regime outside training."""

    def __init__(self, edges, max_length, pca, tables, side_stats, context, feature_names=None):
        self.edges, self.max_length, self.pca = list(edges), int(max_length), pca
        self.tables, self.side_stats, self.context, self.feature_names = tables, side_stats, context, feature_names

    def save(self, folder: Path, tables_all: dict | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.pca.save(folder / "pca.npz")
        for level, tab in self.tables.items():
            tab.to_parquet(folder / f"history_{level}.parquet")
        for level, tab in (tables_all or {}).items():
            tab.to_parquet(folder / f"history_all_{level}.parquet")
        self.side_stats.to_parquet(folder / "side_stats.parquet")
        self.context.to_parquet(folder / "context_rows.parquet", index=False)
        (folder / "state.json").write_text(json.dumps({"edges": self.edges, "max_length": self.max_length,
                                                        "features": self.feature_names}, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, history: str = "all") -> "FeatureState":
        st = json.loads((folder / "state.json").read_text())
        prefix = "history_all_" if history == "all" else "history_"
        tables = {lv: pd.read_parquet(folder / f"{prefix}{lv}.parquet") for lv in F.LEVELS}
        return cls(st["edges"], st["max_length"], F.TextPCA.load(folder / "pca.npz"), tables,
                   pd.read_parquet(folder / "side_stats.parquet"), pd.read_parquet(folder / "context_rows.parquet"), st["features"])


def tabular(rows: pd.DataFrame, hist: pd.DataFrame, ctx: pd.DataFrame, emb: np.ndarray, pca: F.TextPCA,
            probs: np.ndarray) -> pd.DataFrame:
    """The regressors' feature matrix (row order of `rows`)."""
    X = pd.concat([F.base_features(rows).reset_index(drop=True), hist.reset_index(drop=True), ctx.reset_index(drop=True),
                   pca.transform(emb).reset_index(drop=True)], axis=1)
    for k in range(probs.shape[1]):
        X[f"p_bucket{k}"] = probs[:, k].astype(float)
    return X


def regime_history(table: pd.DataFrame, regime: str, p: dict) -> tuple[pd.DataFrame, dict]:
    """(history features of every row of `table`, the history tables a test row's come from).

    A training row's history comes from earlier training rows (in `history_crossfit_regimes`: from
    the other folds' training rows, features.crossfit_history), a val row's from the training rows
    (val early-stops the models), a test row's from the labelled splits in `test_history` (default
    train and val: all likes known before the test rows are predicted; in the unseen-period regime
    this closes the six months between the training period and the test period). Regimes in
    `hide_history` get none on any row."""
    side = table[regime].to_numpy()
    tr, va = side == "train", side == "val"
    known = table[np.isin(side, F.known_splits_for_test(p))]
    train = table[tr]
    tables = {lv: F.history_table(train, lv) for lv in F.LEVELS}
    tables_test = {lv: F.history_table(known, lv) for lv in F.LEVELS}
    own = (F.crossfit_history(train, p["history_folds"], p["seed"]) if regime in (p.get("history_crossfit_regimes") or [])
           else F.history_features(train, train=train))
    hist = pd.concat([own, F.history_features(table[va], tables=tables),
                      F.history_features(table[~tr & ~va], tables=tables_test)]).loc[table.index]
    if regime in (p.get("hide_history") or []):
        hist = F.hide_history(hist)
    return hist, tables_test


def account_groups(table: pd.DataFrame) -> np.ndarray:
    """The cross-fitting group of each row: its account; a row without one is a group of its own."""
    user = table["username"].fillna("").astype(str).to_numpy() if "username" in table else np.full(len(table), "")
    return np.where(user != "", "@" + user, np.char.add("row:", np.arange(len(table)).astype(str)))


def crossfit_probs(texts: list[str], labels: np.ndarray, groups: np.ndarray, tr: np.ndarray, va: np.ndarray, p: dict,
                   num_labels: int, folds: int, progress: bool = True) -> np.ndarray:
    """Out-of-fold bucket probabilities of the training rows (tr) from `folds` classifiers, each trained
    on the other folds' accounts (likemodel.crossfit_folds) with the full model's params and val rows.
    The gate and the bucket trees then learn from probabilities like those they get on new rows."""
    from tweetsim.likes.classifier import crossfit_folds, train_classifier

    idx, vidx = np.flatnonzero(tr), np.flatnonzero(va)
    fold = crossfit_folds(groups[idx], labels[idx], folds, int(p["seed"]))
    out = np.zeros((len(idx), num_labels), np.float32)
    for f in range(folds):
        fit, held = idx[fold != f], fold == f
        tok, model, _, _ = train_classifier([texts[i] for i in fit], labels[fit], [texts[i] for i in vidx], labels[vidx],
                                         p, num_labels, None, progress)
        out[held] = predict_proba(tok, model, [texts[i] for i in idx[held]], int(p["max_length"]),
                                  int(p["eval_batch_size"]), p.get("inference_dtype"))
    return out


def fit_regime(table: pd.DataFrame, regime: str, p: dict, out: Path, emb: np.ndarray, side_stats: pd.DataFrame,
               context: pd.DataFrame, live=None, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Train the regime's classifier; return the feature table of its rows with likes, and a summary.

    `table`: rows with likes, the regime's side column, in a fixed order; `emb`: their embeddings;
    `context`: features.context_rows of every known tweet, labelled or not. History: regime_history.
    """
    from tweetsim.likes.classifier import train_classifier

    edges = p["bucket_edges"]
    side = table[regime].to_numpy()
    tr = side == "train"
    va = side == "val"
    if regime in (p.get("hide_like_stats") or []):
        table = F.hide_like_stats(table)
    hist, tables_test = regime_history(table, regime, p)
    ctx = F.context_features(table, context)
    texts = verbalise(table, hist, int(p["max_chars"]), ctx)
    labels = bucketize(table["likes"].astype(float), edges)
    K = len(edges)
    tok, model, history, kept = train_classifier([texts[i] for i in np.flatnonzero(tr)], labels[tr],
                                           [texts[i] for i in np.flatnonzero(va)], labels[va], p, K, live, progress)
    folds = int(p.get("crossfit_folds") or 0) if regime in (p.get("crossfit_regimes") or []) else 0
    own = ~tr if folds > 1 else np.ones(len(texts), bool)  # cross-fitted: the full model predicts val and test only
    probs = np.zeros((len(texts), K), np.float32)
    probs[own] = predict_proba(tok, model, [texts[i] for i in np.flatnonzero(own)], int(p["max_length"]),
                               int(p["eval_batch_size"]), p.get("inference_dtype"))
    if folds > 1:
        probs[tr] = crossfit_probs(texts, labels, account_groups(table), tr, va, p, K, folds, progress)
    pca = F.TextPCA(int(p["embed_components"])).fit(emb[tr]) if emb.shape[1] else F.TextPCA(0)
    X = tabular(table, hist, ctx, emb, pca, probs)
    state = FeatureState(edges, p["max_length"], pca, tables_test, side_stats, context, list(X.columns))
    folder = out / regime
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(tok, folder)
    tables_all = {lv: F.history_table(table, lv) for lv in F.LEVELS}
    state.save(folder, tables_all)
    meta = pd.DataFrame({"regime": regime, "source": table["source"].to_numpy(), "id": table["id"].to_numpy(),
                         "side": side, "likes": table["likes"].astype(float).to_numpy(), "bucket": labels})
    pred = probs.argmax(1)
    # the step whose checkpoint was kept (early stopping on val): the deploy fit trains this many steps
    (folder / "training.json").write_text(json.dumps({"best_step": kept,
                                                      "steps_run": history[-1]["step"] if history else 0}, indent=2) + "\n")
    summary = {"steps": history[-1]["step"] if history else 0, "history": history, "crossfit_folds": folds if folds > 1 else 0,
               "train_accuracy": float(np.mean(pred[tr] == labels[tr])) if tr.any() else None,
               "test_accuracy": float(np.mean(pred[side == "test"] == labels[side == "test"])) if (side == "test").any() else None,
               "val_accuracy": float(np.mean(pred[va] == labels[va])) if va.any() else None}
    return pd.concat([meta, X], axis=1), summary


def model_paths(models: Path, models_of: str | None) -> tuple[dict, dict]:
    """(bundle, paths: classifier folder, regressor stems, gate stem or None, intervals file or None) of
    the deploy fit (models_of None) or of regime `models_of`'s models."""
    if models_of is None:
        path = models / "likes" / "deploy" / "bundle.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `dvc repro deploy_likes` first "
                                    "(or pass --models-of REGIME for a regime's models)")
        bundle = json.loads(path.read_text())
        paths = {k: (models / v if isinstance(v, str) else [models / x for x in v]) if v else None
                 for k, v in bundle["paths"].items()}
        return bundle, paths
    path = models / "likes" / "bundle.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro` (stage combine_likes) first")
    bundle = {**json.loads(path.read_text()), "regime": models_of}
    if not (models / "like_classifier" / models_of / "state.json").exists():
        raise FileNotFoundError(f"{models / 'like_classifier' / models_of} is missing: --models-of {models_of} "
                                "is not a trained regime (split.regimes)")
    intervals = models / "likes" / "intervals" / f"{models_of}.json"
    return bundle, {"classifier": models / "like_classifier" / models_of,
                    "regressors": [models / "like_regressor" / str(e) / models_of for e in bundle["edges"]],
                    "gate": models / "likes" / "gate" / models_of if bundle.get("gate") == "tabular" else None,
                    "intervals": intervals if intervals.exists() else None}


# Calls of at most this many rows (a web request: the draft and up to 8 generated ones) run on one
# thread: a one-row call gains nothing from a second thread for its small matrices and, measured with
# the 2 cores busy, ran about 10x slower on two (each step waits for the slower thread). Predictions
# do not depend on the thread count (checked by bench/bench_predict_likes.py and tests/test_likes.py).
SMALL_CALL_ROWS = 9


def _timed(fn):
    t0 = time.perf_counter()
    return fn(), time.perf_counter() - t0


def _side_by_side(first, second):
    """Run two transformer passes at once, one torch thread each, instead of one after the other on two.
    Their matrices (48 tokens, MiniLM) are too small for two threads to share one op well, and a busy
    core stalls every op of a two-thread pass; measured in bench/bench_predict_likes.py. torch runs
    each op in the calling thread when it has one intra-op thread, and the results do not depend on
    the thread count."""
    import threading

    import torch

    before, out = torch.get_num_threads(), {}
    torch.set_num_threads(1)
    try:
        def run_second():
            try:
                out["second"] = _timed(second)
            except BaseException as e:  # re-raised in the caller's thread below
                out["error"] = e

        worker = threading.Thread(target=run_second)
        worker.start()
        try:
            first_result = _timed(first)
        finally:
            worker.join()
    finally:
        torch.set_num_threads(before)
    if "error" in out:
        raise out["error"]
    return first_result, out["second"]


class Predictor:
    """Loads the trained artefacts once; predicts likes for normalised rows (tweetsim.data.load.read_official).
    Default: the deploy fit (models/likes/deploy); `models_of`: that regime's models."""

    def __init__(self, models_dir: str | Path = "models", num_threads: int = 2, models_of: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tweetsim.likes.intervals import Intervals
        from tweetsim.likes.regressor import BucketGate, BucketRegressor

        self.bundle, paths = model_paths(Path(models_dir), models_of)
        self.num_threads = num_threads
        torch.set_num_threads(num_threads)
        folder = paths["classifier"]
        self.state = FeatureState.load(folder, self.bundle.get("history", "all"))
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.regs = [BucketRegressor.load(stem) for stem in paths["regressors"]]
        self.gate = BucketGate.load(paths["gate"]) if self.bundle.get("gate") == "tabular" else None
        self.intervals = Intervals.load(paths["intervals"]) if paths.get("intervals") else None
        self.ranges: tuple[np.ndarray, np.ndarray] | None = None  # (low, high) of the last call
        self.p = self.bundle["params"]
        self.timings: dict[str, float] = {}
        self.overlap = True  # batched calls: the classifier and the sentence encoder side by side (_side_by_side)

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.predict_with_probs(rows)[0]

    def predict_with_range(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(likes, low, high): the point prediction and its conformal range (low <= likes <= high)."""
        if self.intervals is None:
            raise FileNotFoundError("no intervals file with these models: rerun `dvc repro combine_likes deploy_likes`")
        likes = self.predict_with_probs(rows)[0]
        return (likes, *self.ranges)

    def _set_threads(self, n: int) -> None:
        import torch

        torch.set_num_threads(n)
        for m in [*self.regs, *([self.gate] if self.gate is not None else [])]:
            m.set_threads(n)

    def predict_with_probs(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(likes (n,), bucket probabilities (n, K)): the probabilities the likes were mixed with (the
        tabular gate's, else the classifier's); each row sums to 1. `self.timings` then holds the
        seconds of this call by step (features, classifier, embedding, trees), `self.last_features`
        the trees' feature matrix (tweetsim.likes.explain reads it). `context`: the rows' context features
        (features.context_features), instead of pooling them with each other (best-time: one post
        at 168 dates is one tweet, not 168)."""
        small = len(rows) <= SMALL_CALL_ROWS
        if small:
            self._set_threads(1)
        try:
            return self._predict(rows, context)
        finally:
            if small:
                self._set_threads(self.num_threads)

    def _predict(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        from tweetsim.likes.regressor import combine

        clock = time.perf_counter
        t0 = clock()
        rows = F.fill_side_stats(rows.reset_index(drop=True), self.state.side_stats)
        if not self.p.get("use_text", True):  # trained without the tweet text
            rows = F.blank_text(rows)
        for col in ("company", "username"):
            rows[col] = rows[col].fillna("").astype(str) if col in rows else ""
        if "ocr_text" not in rows:
            rows["ocr_text"] = None
        hist = F.history_features(rows, tables=self.state.tables)
        ctx = F.context_features(rows, self.state.context) if context is None else context.reset_index(drop=True)
        texts = verbalise(rows, hist, int(self.p["max_chars"]), ctx)
        t1 = clock()
        classify = lambda: predict_proba(self.tok, self.model, texts, self.state.max_length,  # noqa: E731
                                         int(self.p["eval_batch_size"]), self.p.get("inference_dtype"))
        with_emb = self.state.pca.components is not None and self.state.pca.k
        to_embed = F.text_of(rows) if with_emb else []
        embed = (lambda: embed_texts(to_embed, self.p)) if with_emb else (lambda: np.zeros((len(rows), 0)))
        # side by side only when both passes have work (best-time: 168 lines, one text to embed)
        if self.overlap and self.num_threads >= 2 and min(len(rows), len(set(to_embed))) > SMALL_CALL_ROWS:
            (probs, t_cls), (emb, t_emb) = _side_by_side(classify, embed)
        else:
            (probs, t_cls), (emb, t_emb) = _timed(classify), _timed(embed)
        t3 = clock()
        X = tabular(rows, hist, ctx, emb, self.state.pca, probs)
        t4 = clock()
        self.last_features = X
        if self.gate is not None:
            probs = self.gate.predict(X)
        z = np.stack([r.predict_log(X) for r in self.regs], 1)
        smear = np.array([r.meta["smearing"] for r in self.regs])
        likes = combine(probs, z, smear, self.bundle["final"], bool(self.bundle["smearing"]))
        if self.intervals is not None:
            self.ranges = self.intervals.apply(likes, probs, z, X["brand_hist_n"].to_numpy() if "brand_hist_n" in X else None)
        # classifier and embedding: each pass's own seconds (they overlap when run side by side)
        self.timings = {"features": (t1 - t0) + (t4 - t3), "classifier": t_cls, "embedding": t_emb, "trees": clock() - t4}
        return likes, np.asarray(probs, dtype=float)


def cli(argv: list[str]) -> int:
    # --model lm: the image-conditioned behaviour LM (tweetsim.likes.behaviour_lm, issue 7); bucket (default): below.
    # Imported by name, as tweetsim.apps.cli does, so the stages importing this module do not depend on the LM's code.
    model_arg = next((a for a in argv if a == "--model" or a.startswith("--model=")), None)
    if model_arg is not None:
        i = argv.index(model_arg)
        choice = model_arg.split("=", 1)[1] if "=" in model_arg else (argv[i + 1] if i + 1 < len(argv) else "")
        argv = argv[:i] + argv[i + (1 if "=" in model_arg else 2):]
        if choice == "lm":
            import importlib

            return importlib.import_module("tweetsim.likes.behaviour_lm").cli(argv)
        if choice != "bucket":
            print(f"predict-likes: --model {choice!r}: choose bucket (default) or lm", file=sys.stderr)
            return 2
    import importlib

    from tweetsim.data.load import InputError, read_official

    io = importlib.import_module("tweetsim.apps.io")  # by name: the stages importing this module do not depend on it
    ap = argparse.ArgumentParser(prog="tweetsim predict-likes",
                                 description="Predict likes for an official behaviour-simulation file (xlsx, csv or parquet).")
    ap.add_argument("--input", required=True, help="id, date, content, username, media, inferred company (only id required)")
    ap.add_argument("--output", required=True, help="CSV written with columns id,likes,likes_low,likes_high,status,reason "
                    "(likes_low..likes_high: the nominal 80%% range), one row per input row, input order")
    ap.add_argument("--two-columns", action="store_true", help="write the challenge's id,likes only (problems on stderr)")
    ap.add_argument("--models-of", default=None, metavar="REGIME",
                    help="use that regime's models (fitted on its train rows) instead of the deploy fit (every labelled row)")
    ap.add_argument("--chunk-size", type=int, default=1000, help="rows predicted at a time (bounds memory)")
    ap.add_argument("--models", default="models", help="folder of the trained artefacts (default: models)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--explain", action="store_true", help="add a column `explain`: per row, JSON of each factor's "
                    "contribution in log1p likes and the bias (tweetsim.likes.explain); they sum to log1p(likes)")
    args = ap.parse_args(argv)
    try:
        output = io.check_output(args.output, args.input)
        rows, rejects = read_official(args.input)
    except (InputError, io.OutputError) as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 2
    if args.explain and args.two_columns:
        print("predict-likes: --explain adds a column to the default format; --two-columns writes id,likes only", file=sys.stderr)
        return 2
    io.report("predict-likes", rejects, "predicted without it")
    t0 = time.perf_counter()
    try:
        predictor = Predictor(args.models, args.threads, args.models_of)
        if predictor.intervals is None and not args.two_columns:
            raise FileNotFoundError(f"{args.models}: these models have no intervals file (likes_low, likes_high): "
                                    "rerun `dvc repro combine_likes deploy_likes`, or use --two-columns")
    except FileNotFoundError as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    # the input rows are each other's context (features.context_features): a chunk sees the others as known rows
    known, valid = predictor.state.context, rows[rows["id"].notna()]
    ctx = F.context_rows(valid).set_axis(valid.index)

    def predict_chunk(chunk: pd.DataFrame) -> list:
        predictor.state.context = pd.concat([known, ctx.drop(chunk.index)], ignore_index=True)
        if args.two_columns:
            return np.rint(predictor.predict(chunk)).astype(np.int64).tolist()
        if args.explain:
            ex = importlib.import_module("tweetsim.likes.explain")  # by name, as cliio
            likes, factors = ex.explain(predictor, chunk)
            low, high = predictor.ranges  # set by the same prediction
        else:
            likes, low, high = predictor.predict_with_range(chunk)
        # the range is rounded outwards, so low <= likes <= high holds for the written integers too
        high = [int(h) if np.isfinite(h) else None for h in np.ceil(high)]
        out = [np.rint(likes).astype(np.int64).tolist(), np.floor(low).astype(np.int64).tolist(), high]
        return list(zip(*out, ex.to_json(factors))) if args.explain else list(zip(*out))

    try:
        columns = ["likes", "likes_low", "likes_high"] + (["explain"] if args.explain else [])
        stats = io.run_chunked(rows, rejects, predict_chunk, output, columns, args.two_columns,
                               args.chunk_size, "predict-likes")
    except io.OutputError as e:
        print(f"predict-likes: {e}", file=sys.stderr)
        return 130 if isinstance(e, io.Interrupted) else 2
    finally:
        predictor.state.context = known
    print(f"predict-likes: {io.summary(stats)} -> {output} (load {t1 - t0:.1f}s, predict {stats['seconds']:.1f}s, "
          f"{len(rejects)} cell problems reported; models: "
          f"{'regime ' + args.models_of if args.models_of else 'deploy fit on every labelled row'})")
    return 0
