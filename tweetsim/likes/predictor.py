"""The Predictor: loads the behaviour models that `dvc repro` trained (likes/artefacts.py) once and
predicts likes, their range and bucket probabilities for normalised rows."""

import time
from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes import features as F
from tweetsim.likes.artefacts import FeatureState, model_paths, route_paths
from tweetsim.likes.classifier import HEAD_FILE, EmbeddingHead, predict_proba, verbalise
from tweetsim.likes.config import InferenceConfig
from tweetsim.likes.fit import embed_strings, tabular


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
    """Loads one set of trained likes models once; predicts likes for normalised rows
    (tweetsim.data.load.read_official): regime `models_of`'s models under `models_dir`, or the route
    fitted in `folder` (likes/deploy.py; likes/router.py routes rows between such folders)."""

    def __init__(self, models_dir: str | Path | None = None, num_threads: int = 2, models_of: str | None = None,
                 folder: Path | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tweetsim.likes.intervals import Intervals
        from tweetsim.likes.lookalike import LookAlike
        from tweetsim.likes.regressor import BucketGate, BucketRegressor

        if (models_of is None) == (folder is None):
            raise ValueError("Predictor: give a regime (models_of) or a route folder, one of them")
        self.bundle, paths = route_paths(Path(folder)) if folder is not None else model_paths(Path(models_dir), models_of)
        # a route's recipe: history levels and the organisers' like statistics blanked on every row
        self.hide = tuple(self.bundle.get("hide") or ())
        self.hide_like_stats = bool(self.bundle.get("hide_like_stats"))
        self.num_threads = num_threads
        torch.set_num_threads(num_threads)
        folder = paths["classifier"]
        self.state = FeatureState.load(folder, self.bundle.get("history", "all"))
        # the bucket probabilities: a head on the sentence embedding (classifier: head), else the fine-tuned transformer
        self.head = EmbeddingHead.load(folder / HEAD_FILE) if (folder / HEAD_FILE).exists() else None
        if self.head is None:
            self.tok = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        self.regs = [BucketRegressor.load(stem) for stem in paths["regressors"]]
        self.gate = BucketGate.load(paths["gate"]) if self.bundle.get("gate") == "tabular" else None
        self.intervals = Intervals.load(paths["intervals"]) if paths.get("intervals") else None
        self.lookalike = LookAlike.load(paths["lookalike"]) if paths.get("lookalike") else None
        self.ranges: tuple[np.ndarray, np.ndarray] | None = None  # (low, high) of the last call
        self.p = InferenceConfig.from_bundle(self.bundle["params"])  # the classifier's inference params
        self.timings: dict[str, float] = {}
        self.last: dict[str, np.ndarray] = {}  # the last call's gate probabilities and bucket log predictions
        self.overlap = True  # batched calls: the classifier and the sentence encoder side by side (_side_by_side)

    @property
    def context(self) -> pd.DataFrame:
        """The known tweets' context rows (features.context_rows) that the input rows are pooled with."""
        return self.state.context

    @context.setter
    def context(self, rows: pd.DataFrame) -> None:
        self.state.context = rows

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.predict_with_probs(rows)[0]

    def explain(self, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
        """(likes, factors): likes/explain.py's explain of `rows`."""
        from tweetsim.likes.explain import explain

        return explain(self, rows, context)

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
        clock = time.perf_counter
        t0 = clock()
        rows = F.fill_side_stats(rows.reset_index(drop=True), self.state.side_stats)
        if self.hide_like_stats:
            rows = F.hide_like_stats(rows)
        if not self.p.use_text:  # trained without the tweet text
            rows = F.blank_text(rows)
        for col in ("company", "username"):
            rows[col] = rows[col].fillna("").astype(str) if col in rows else ""
        if "ocr_text" not in rows:
            rows["ocr_text"] = None
        hist = F.history_features(rows, tables=self.state.tables)
        if self.hide:
            hist = F.hide_history(hist, self.hide)
        ctx = F.context_features(rows, self.state.context) if context is None else context.reset_index(drop=True)
        with_emb = self.head is not None or (self.state.pca.components is not None and self.state.pca.k)
        to_embed = F.texts_to_embed(rows, self.p.embed_text) if with_emb else []
        embed = (lambda: embed_strings(to_embed, self.p)) if with_emb else (lambda: np.zeros((len(rows), 0)))
        if self.head is not None:  # one encoder pass: the head reads the embedding the PCA features read
            t1 = clock()
            emb, t_emb = _timed(embed)
            probs, t_cls = _timed(lambda: self.head.predict_proba(emb))
            return self._finish(rows, hist, ctx, emb, probs, t0, t1, t_cls, t_emb)
        texts = verbalise(rows, hist, int(self.p.max_chars), ctx)
        t1 = clock()
        classify = lambda: predict_proba(self.tok, self.model, texts, self.state.max_length,  # noqa: E731
                                         int(self.p.eval_batch_size), self.p.inference_dtype, self.p.encoder)
        # torch: side by side only when both passes have work (best-time: 168 lines, one text to embed); the
        # ONNX runtime already runs each pass on `encoder.workers` sessions side by side
        if self.overlap and not self.p.encoder.onnx and self.num_threads >= 2 and min(len(rows), len(set(zip(*to_embed)))) > SMALL_CALL_ROWS:
            (probs, t_cls), (emb, t_emb) = _side_by_side(classify, embed)
        else:
            (probs, t_cls), (emb, t_emb) = _timed(classify), _timed(embed)
        return self._finish(rows, hist, ctx, emb, probs, t0, t1, t_cls, t_emb)

    def _finish(self, rows, hist, ctx, emb, probs, t0, t1, t_cls, t_emb):
        """The trees' features, the gate, the mixture and the ranges of `_predict`."""
        from tweetsim.likes.regressor import combine

        clock = time.perf_counter
        t3 = clock()
        X = tabular(rows, hist, ctx, emb, self.state.pca, probs)
        if self.lookalike is not None:  # a route fitted with the look-alike brands' level (likes/lookalike.py)
            X = X.assign(**self.lookalike.features(rows).set_axis(X.index))
        t4 = clock()
        self.last_features = X
        if self.gate is not None:
            probs = self.gate.predict(X)
        z = np.stack([r.predict_log(X) for r in self.regs], 1)
        smear = np.array([r.meta["smearing"] for r in self.regs])
        likes = combine(probs, z, smear, self.bundle["final"], bool(self.bundle["smearing"]))
        self.last = {"probs": np.asarray(probs, dtype=float), "z": z}
        if self.intervals is not None:
            self.ranges = self.intervals.apply(likes, probs, z)
        # classifier and embedding: each pass's own seconds (they overlap when run side by side)
        self.timings = {"features": (t1 - t0) + (t4 - t3), "classifier": t_cls, "embedding": t_emb, "trees": clock() - t4}
        return likes, np.asarray(probs, dtype=float)

