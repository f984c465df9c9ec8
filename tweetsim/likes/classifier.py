"""The like-bucket classifier: bucketing, the verbalised prompt of a tweet, fine-tuning and inference.

Two kinds (`train_like_classifier.classifier`): `head` (default), EmbeddingHead below, a logistic
regression on the sentence embedding of the tweet's text and media text; and `finetune`: a transformer
sequence classifier (default: the packaged all-MiniLM-L6-v2; `distilbert-base-uncased`
or any hub id / folder by params; `tiny-random` builds a tiny randomly initialised BERT for tests)
reads one line per tweet and predicts its like bucket (log-spaced edges from params). Training runs
on transformers' Trainer (tweetsim.lm.train), seeded: class-weighted cross-entropy, linear
warm-up/decay, evaluation on val every `eval_every` steps, the best weights kept, early stop
(EarlyStoppingCallback) after `patience` evaluations without gain.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tweetsim.likes.config import ClassifierConfig

TINY = "tiny-random"
MODES = ("head", "finetune")  # train_like_classifier.classifier
HEAD_FILE = "head.npz"  # the EmbeddingHead in a classifier folder (instead of a transformer)


def bucketize(likes, edges) -> np.ndarray:
    """Bucket index of each like count: bucket i is [edges[i], edges[i+1]), the last is open."""
    edges = np.asarray(edges, dtype=float)
    if len(edges) < 2 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bucket edges must start at 0 and increase strictly: {list(edges)}")
    return np.searchsorted(edges, np.asarray(likes, dtype=float), side="right") - 1


def crossfit_folds(groups, labels, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each row for cross-fitting: every row of a group (an account) in one fold, so
    no account's rows predict themselves; buckets spread over the folds as evenly as the groups allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups, labels = np.asarray(groups), np.asarray(labels)
    if len(np.unique(groups)) < k:
        raise ValueError(f"cross-fitting: {len(np.unique(groups))} accounts among the training rows, fewer than "
                         f"train_like_classifier.crossfit_folds = {k}")
    fold = np.full(len(groups), -1)
    for f, (_, held) in enumerate(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(groups, labels, groups)):
        fold[held] = f
    return fold


def _fmt_count(x: float) -> str:
    x = float(x)
    return f"{x / 1e6:.1f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def verbalise(rows: pd.DataFrame, hist: pd.DataFrame | None = None, max_chars: int = 600,
              ctx: pd.DataFrame | None = None) -> list[str]:
    """One prompt line per row. Short structured fields come first so truncation cuts free text.

    `hist` (features.history_features) adds what the account typically gets, the strongest single
    signal; for training rows it must be the shifted history (earlier rows only). `ctx`
    (features.context_features) adds the account's typical video views, the audience of an account
    without likes history.
    """
    out = []
    cols = rows.columns
    for i, (ix, r) in enumerate(rows.iterrows()):
        parts = []
        parts.append(f"brand: {r['company'] or 'unknown'}" if "company" in cols and pd.notna(r["company"]) else "brand: unknown")
        parts.append(f"account: @{r['username']}" if "username" in cols and pd.notna(r["username"]) and r["username"] else "account: unknown")
        d = r["date"] if "date" in cols else None
        if d is not None and pd.notna(d):
            parts.append(f"date: {d:%Y-%m %a %Hh}")
        if hist is not None and hist.at[ix, "acct_hist_n"] > 0:
            parts.append(f"account median likes: {_fmt_count(math.expm1(hist.at[ix, 'acct_hist_median']))} "
                         f"over {int(hist.at[ix, 'acct_hist_n'])} tweets")
        elif "acct_median_likes" in cols and pd.notna(r["acct_median_likes"]):
            parts.append(f"account median likes: {_fmt_count(r['acct_median_likes'])}")
        if "followers" in cols and pd.notna(r["followers"]):
            parts.append(f"followers: {_fmt_count(r['followers'])}")
        if ctx is not None and ctx.at[ix, "acct_ctx_n_views"] > 0:
            parts.append(f"account video views: {_fmt_count(round(math.expm1(ctx.at[ix, 'acct_ctx_views_median'])))} "
                         f"median over {int(ctx.at[ix, 'acct_ctx_n_views'])} videos")
        kinds = [f"{int(r[c])} {c[2:]}" for c in ("n_photo", "n_video", "n_gif") if c in cols and pd.notna(r[c]) and r[c]]
        parts.append("media: " + (", ".join(kinds) if kinds else "none"))
        if "video_views" in cols and pd.notna(r["video_views"]):
            parts.append(f"video views: {_fmt_count(r['video_views'])}")
        for col, name in (("content", "text"), ("caption", "image"), ("ocr_text", "image text")):
            if col in cols and pd.notna(r[col]) and str(r[col]).strip():
                parts.append(f"{name}: {' '.join(str(r[col]).split())}")
        out.append(" | ".join(parts)[:max_chars])
    return out


def load_classifier(name: str | None, num_labels: int, seed: int = 0):
    """(tokenizer, model). name: null/'minilm' = packaged MiniLM; 'tiny-random'; or a hub id/folder."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification

    from tweetsim.text.embed import default_model_path

    torch.manual_seed(seed)
    if name in (None, "", "minilm"):
        name = default_model_path()
    if name == TINY:
        tok = AutoTokenizer.from_pretrained(default_model_path())
        cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512, num_labels=num_labels)
        return tok, BertForSequenceClassification(cfg)
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_labels, ignore_mismatched_sizes=True)
    return tok, model


def class_weights(labels: np.ndarray, num_labels: int, max_weight: float = 10.0) -> np.ndarray:
    """Inverse-frequency weights (balanced), capped; classes absent from training get 0."""
    counts = np.bincount(labels, minlength=num_labels).astype(float)
    w = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 0.0)
    return np.minimum(w, max_weight)


def _batches(tok, texts, max_length, batch_size):
    for i in range(0, len(texts), batch_size):
        yield i, tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def predict_proba(tok, model, texts: list[str], max_length: int, batch_size: int = 64, dtype: str | None = None,
                  encoder=None) -> np.ndarray:
    """Bucket probabilities (n, K). `encoder` (text.runtime.EncoderConfig): an ONNX runtime runs the model's
    export, each text on its own; None or torch: batched torch in `dtype`."""
    import torch

    if encoder is not None and encoder.onnx and len(texts):
        from tweetsim.text import runtime

        return runtime.run(runtime.model_file(model, "classify", encoder.runtime, encoder.cache_dir), tok, list(texts),
                           max_length, encoder.workers)
    model.eval()
    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
    out = []
    from tweetsim.text.embed import inference_autocast

    with torch.inference_mode(), inference_autocast(dtype):
        for _, batch in _batches(tok, [texts[i] for i in order], max_length, batch_size):
            out.append(torch.softmax(model(**batch).logits.float(), -1).numpy())
    if not out:
        return np.zeros((0, model.config.num_labels), np.float32)
    probs = np.empty((len(texts), out[0].shape[1]), np.float32)
    probs[order] = np.concatenate(out)
    return probs


def train_classifier(train_texts, train_labels, val_texts, val_labels, p: ClassifierConfig, num_labels: int, live=None,
                     progress: bool = True):
    """Fine-tune (tweetsim.lm.train's Trainer); returns (tokenizer, best model, history list of dicts, the step of
    the kept checkpoint: the first evaluation with the lowest val weighted loss, else train loss). `p`:
    params train_like_classifier (likes.config.ClassifierConfig). Early stopping: transformers'
    EarlyStoppingCallback on that score."""
    import shutil

    import torch
    from transformers import EarlyStoppingCallback, TrainerCallback

    from tweetsim.lm import train as trainloop

    seed = int(p.seed)
    trainloop.set_seed(seed)
    torch.set_num_threads(int(p.num_threads))
    tok, model = load_classifier(p.model_name, num_labels, seed)
    train_labels = np.asarray(train_labels, dtype=int)
    val_labels = np.asarray(val_labels, dtype=int)
    weights = torch.tensor(class_weights(train_labels, num_labels, p.max_class_weight) if p.class_weights
                           else np.ones(num_labels), dtype=torch.float32)
    steps, bs, L = int(p.max_steps), int(p.batch_size), int(p.max_length)
    warm = max(1, int(steps * float(p.warmup_ratio)))
    # evaluate on a fixed, seeded subset of val: the full val split would cost more than training
    vsel = np.sort(np.random.default_rng(seed).permutation(len(val_texts))[: int(p.max_eval_rows)])
    vtexts, vlabels = [val_texts[i] for i in vsel], val_labels[vsel]
    score_key = "val_weighted_loss" if len(vtexts) else "train_loss"
    history: list[dict] = []

    def evaluate(trainer) -> dict:
        """One history record: train loss since the last evaluation, val metrics; logged to DVCLive as before."""
        done = history[-1]["step"] if history else 0
        rec = {"step": trainer.state.global_step,
               "train_loss": float(np.mean(trainer.step_losses[done - trainer.state.global_step:]))}
        if len(vtexts):
            probs = predict_proba(tok, trainer.model, vtexts, L, int(p.eval_batch_size))
            lp = np.log(np.clip(probs[np.arange(len(vlabels)), vlabels], 1e-9, 1))
            rec["val_loss"] = float(-np.mean(lp))
            rec["val_accuracy"] = float(np.mean(probs.argmax(1) == vlabels))
            w = weights.numpy()[vlabels]
            rec["val_weighted_loss"] = float(-(w * lp).sum() / max(w.sum(), 1e-9))
        trainer.model.train()
        history.append(rec)
        if live is not None:
            live.step = rec["step"]
            for k, v in rec.items():
                if k != "step":
                    live.log_metric(k, v)
            live.next_step()
        return {k: v for k, v in rec.items() if k != "step"}

    class KeepBest(TrainerCallback):
        """The weights of the best evaluation, in memory (no checkpoint on disk)."""

        best, step, state = math.inf, steps, None

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            score = metrics[f"eval_{score_key}"]
            if score < self.best - 1e-6:
                self.best, self.step = score, state.global_step
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    data = [{"text": t, "label": int(y)} for t, y in zip(train_texts, train_labels)]

    def collate(batch):
        enc = tok([b["text"] for b in batch], padding=True, truncation=True, max_length=L, return_tensors="pt")
        return {**enc, "labels": torch.tensor([b["label"] for b in batch])}

    eval_every = min(int(p.eval_every), steps)
    args = trainloop.training_args(trainloop.scratch_dir(), steps=steps, batch_size=bs, lr=float(p.learning_rate),
                                   weight_decay=float(p.weight_decay), seed=seed, max_grad_norm=1.0,
                                   log_every=eval_every, eval_every=eval_every, metric=score_key, progress=progress)
    keep = KeepBest()
    trainer = trainloop.LoopTrainer(model=model, args=args, train_dataset=data, eval_dataset=data[:1], data_collator=collate,
                                    lr_lambda=trainloop.warmup_linear(warm, steps),
                                    loss_fn=torch.nn.CrossEntropyLoss(weight=weights), evaluate_fn=evaluate,
                                    callbacks=[keep, EarlyStoppingCallback(int(p.patience), 1e-6)])
    try:
        trainer.train()
    finally:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    if keep.state is not None:
        model.load_state_dict(keep.state)
    model.eval()
    return tok, model, history, keep.step


class EmbeddingHead:
    """The like-bucket classifier as a linear head on the sentence embeddings of a tweet (fit.embed_rows:
    its text, or its text and media text, per `embed_text`): multinomial logistic regression (scikit-learn) on standardised vectors,
    class-weighted as the fine-tuned one. `train_like_classifier.classifier: head`.

    Why: the fine-tuned classifier reads every labelled row once per regime through its own
    transformer (three passes over 150,000 lines at 300,000 tweets, most of train_like_classifier's
    time), and learns from a few hundred lines on CPU. The head needs one encoder pass per distinct
    text, shared through the embedding cache with every stage that embeds and with the PCA features,
    and it learns from every training row."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray):
        self.coef, self.intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, num_labels: int, p: ClassifierConfig) -> "EmbeddingHead":
        from sklearn.linear_model import LogisticRegression

        X, y = np.asarray(X, np.float64), np.asarray(y, int)
        mu, sd = X.mean(0), X.std(0) + 1e-6
        w = class_weights(y, num_labels, p.max_class_weight) if p.class_weights else np.ones(num_labels)
        coef, icpt = np.zeros((num_labels, X.shape[1])), np.full(num_labels, -np.inf)  # a bucket absent from training: p = 0
        present = np.unique(y)
        if len(present) == 1:
            icpt[present[0]] = 0.0
        else:
            Xd, yd, sw = distinct_rows(X, y, w[y])
            lr = LogisticRegression(C=float(p.head_c), max_iter=1000).fit((Xd - mu) / sd, yd, sample_weight=sw)
            w_, b_ = lr.coef_, lr.intercept_
            if len(present) == 2:  # scikit-learn's binary model is one logit, of the second class against the first
                w_, b_ = np.vstack([np.zeros_like(w_), w_]), np.concatenate([[0.0], b_])
            coef[lr.classes_] = w_ / sd  # the standardisation folded into the weights
            icpt[lr.classes_] = b_ - coef[lr.classes_] @ mu
        return cls(coef, icpt)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from tweetsim.likes.features import rows_dot

        z = rows_dot(np.asarray(X, np.float64), self.coef) + self.intercept  # not BLAS: see rows_dot
        z = np.exp(z - z.max(1, keepdims=True))
        return (z / z.sum(1, keepdims=True)).astype(np.float32)

    def save(self, path) -> None:
        np.savez(path, coef=self.coef, intercept=self.intercept)

    @classmethod
    def load(cls, path) -> "EmbeddingHead":
        with np.load(path) as z:
            return cls(z["coef"], z["intercept"])


def distinct_rows(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct (vector, label) pair once, in order of first appearance, with its rows' summed weights.

    Why: a weighted log-loss over n copies of a row is the same objective as one row of n times the
    weight, and scikit-learn scales its penalty by the summed weights, so the fit is the same model;
    at 300,000 tweets the rows without text share one vector (10^5 copies) and LBFGS paid for each
    copy on every iteration. With no duplicates the arrays come back as given (same bytes, same fit)."""
    keys = np.ascontiguousarray(np.column_stack([X, y]))
    keys = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    sums = np.bincount(inverse.ravel(), weights=w, minlength=len(first))[order]
    keep = first[order]
    return X[keep], y[keep], sums


def head_probs(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray, tr: np.ndarray, p: ClassifierConfig,
               num_labels: int) -> tuple[EmbeddingHead, np.ndarray, int]:
    """(the head fitted on the training rows, every row's probabilities, folds used). The training rows'
    probabilities are out of fold (`crossfit_folds` folds of accounts, as the gate and the trees then
    see on new rows); the other rows' come from the full head."""
    head = EmbeddingHead.fit(emb[tr], labels[tr], num_labels, p)
    probs = head.predict_proba(emb)
    idx = np.flatnonzero(tr)
    k = min(int(p.crossfit_folds or 0), len(np.unique(groups[idx])))
    if k < 2:
        print(f"train_like_classifier: NOTE {len(np.unique(groups[idx]))} account(s) among the training rows: "
              "their head probabilities are in-sample")
        return head, probs, 0
    fold = crossfit_folds(groups[idx], labels[idx], k, int(p.seed))
    for f in range(k):
        probs[idx[fold == f]] = EmbeddingHead.fit(emb[idx[fold != f]], labels[idx[fold != f]], num_labels, p
                                                  ).predict_proba(emb[idx[fold == f]])
    return head, probs, k
