"""Per-regime fitting of the behaviour models: the classifier's lines and probabilities, the history
and context features, the trees' feature table (stages train_like_classifier and deploy_likes)."""

from pathlib import Path

import numpy as np
import pandas as pd

from tweetsim.likes import features as F
from tweetsim.likes.artefacts import FeatureState, write_training
from tweetsim.likes.classifier import HEAD_FILE, bucketize, head_probs, predict_proba, verbalise
from tweetsim.likes.config import ClassifierConfig, InferenceConfig
from tweetsim.lm.save import save_tokenizer
from tweetsim.text.runtime import EncoderConfig


def head_mode(cfg: ClassifierConfig | InferenceConfig) -> bool:
    """Whether the bucket probabilities come from classifier.EmbeddingHead (`classifier: head`), not a
    fine-tuned transformer."""
    from tweetsim.likes.classifier import MODES

    if cfg.classifier not in MODES:
        raise ValueError(f"train_like_classifier.classifier: unknown {cfg.classifier!r} ({' | '.join(MODES)})")
    return cfg.classifier == "head"


def embed_texts(texts: list[str], inf: InferenceConfig) -> np.ndarray:
    """The sentence embeddings of `texts` at the like features' model and max_length."""
    from tweetsim.text import embed

    return embed.encode(texts, inf.embed_model, max_length=int(inf.embed_max_length),
                        dtype=inf.inference_dtype or "float32", encoder=inf.encoder)


def embed_strings(texts: list[list[str]], inf: InferenceConfig) -> np.ndarray:
    """features.texts_to_embed's lists embedded and set side by side: each row's vectors."""
    return np.hstack([embed_texts(t, inf) for t in texts])


def embed_rows(rows: pd.DataFrame, inf: InferenceConfig) -> np.ndarray:
    """What the PCA features and the head read of each row: the embeddings of its strings
    (features.texts_to_embed of `embed_text`), side by side."""
    if int(inf.embed_components) <= 0 and not head_mode(inf):
        return np.zeros((len(rows), 0), np.float32)
    return embed_strings(F.texts_to_embed(rows, inf.embed_text), inf)


def tabular(rows: pd.DataFrame, hist: pd.DataFrame, ctx: pd.DataFrame, emb: np.ndarray, pca: F.TextPCA,
            probs: np.ndarray) -> pd.DataFrame:
    """The regressors' feature matrix (row order of `rows`)."""
    X = pd.concat([F.base_features(rows).reset_index(drop=True), hist.reset_index(drop=True), ctx.reset_index(drop=True),
                   pca.transform(emb).reset_index(drop=True)], axis=1)
    for k in range(probs.shape[1]):
        X[f"p_bucket{k}"] = probs[:, k].astype(float)
    return X


def regime_history(table: pd.DataFrame, regime: str, clf: ClassifierConfig,
                   hide: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict]:
    """(history features of every row of `table`, the history tables a test row's come from).

    A training row's history comes from earlier training rows (in `history_crossfit_regimes`: from
    the other folds' training rows, features.crossfit_history), a val row's from the training rows
    (val early-stops the models), a test row's from the labelled splits in `test_history` (default
    train and val: all likes known before the test rows are predicted; in the unseen-period regime
    this closes the six months between the training period and the test period). Regimes in
    `hide_history` get none on any row; `hide`: levels (features.LEVELS) blanked on every row besides
    (a route's recipe, likes/router.py)."""
    side = table[regime].to_numpy()
    tr, va = side == "train", side == "val"
    known = table[np.isin(side, F.known_splits_for_test(clf.test_history))]
    train = table[tr]
    tables = {lv: F.history_table(train, lv) for lv in F.LEVELS}
    tables_test = {lv: F.history_table(known, lv) for lv in F.LEVELS}
    own = (F.crossfit_history(train, clf.history_folds, clf.seed) if regime in (clf.history_crossfit_regimes or [])
           else F.history_features(train, train=train))
    hist = pd.concat([own, F.history_features(table[va], tables=tables),
                      F.history_features(table[~tr & ~va], tables=tables_test)]).loc[table.index]
    if regime in (clf.hide_history or []):
        hist = F.hide_history(hist)
    elif hide:
        hist = F.hide_history(hist, hide)
    return hist, tables_test


def account_groups(table: pd.DataFrame, level: str = "username") -> np.ndarray:
    """The cross-fitting group of each row: its account (or its brand, `level` company); a row without
    one is a group of its own."""
    key = table[level].fillna("").astype(str).to_numpy() if level in table else np.full(len(table), "")
    return np.where(key != "", "@" + key, np.char.add("row:", np.arange(len(table)).astype(str)))


def crossfit_probs(texts: list[str], labels: np.ndarray, groups: np.ndarray, tr: np.ndarray, va: np.ndarray,
                   clf: ClassifierConfig, enc: EncoderConfig, num_labels: int, folds: int, progress: bool = True) -> np.ndarray:
    """Out-of-fold bucket probabilities of the training rows (tr) from `folds` classifiers, each trained
    on the other folds' accounts (classifier.crossfit_folds) with the full model's params and val rows.
    The gate and the bucket trees then learn from probabilities like those they get on new rows."""
    from tweetsim.likes.classifier import crossfit_folds, train_classifier

    idx, vidx = np.flatnonzero(tr), np.flatnonzero(va)
    fold = crossfit_folds(groups[idx], labels[idx], folds, int(clf.seed))
    out = np.zeros((len(idx), num_labels), np.float32)
    for f in range(folds):
        fit, held = idx[fold != f], fold == f
        tok, model, _, _ = train_classifier([texts[i] for i in fit], labels[fit], [texts[i] for i in vidx], labels[vidx],
                                         clf, num_labels, None, progress)
        out[held] = predict_proba(tok, model, [texts[i] for i in idx[held]], int(clf.max_length),
                                  int(clf.eval_batch_size), clf.inference_dtype, enc)
    return out


def _finetune(table, hist, ctx, labels, tr, va, regime, clf: ClassifierConfig, enc: EncoderConfig, K, live, progress):
    """The fine-tuned transformer's (tokenizer, model, history, kept step, probabilities, cross-fit folds)."""
    from tweetsim.likes.classifier import train_classifier

    texts = verbalise(table, hist, int(clf.max_chars), ctx)
    tok, model, history, kept = train_classifier([texts[i] for i in np.flatnonzero(tr)], labels[tr],
                                                 [texts[i] for i in np.flatnonzero(va)], labels[va], clf, K, live, progress)
    folds = int(clf.crossfit_folds or 0) if regime in (clf.crossfit_regimes or []) else 0
    own = ~tr if folds > 1 else np.ones(len(texts), bool)  # cross-fitted: the full model predicts val and test only
    probs = np.zeros((len(texts), K), np.float32)
    probs[own] = predict_proba(tok, model, [texts[i] for i in np.flatnonzero(own)], int(clf.max_length),
                               int(clf.eval_batch_size), clf.inference_dtype, enc)
    if folds > 1:
        probs[tr] = crossfit_probs(texts, labels, account_groups(table), tr, va, clf, enc, K, folds, progress)
    return tok, model, history, kept, probs, folds


def _head_record(probs: np.ndarray, labels: np.ndarray, va: np.ndarray, clf: ClassifierConfig, live=None) -> dict:
    """The head's one history record (step 0): its val loss and accuracy, weighted as the fine-tuned one's."""
    from tweetsim.likes.classifier import class_weights

    rec = {"step": 0}
    if va.any():
        lp = np.log(np.clip(probs[va, labels[va]], 1e-9, 1))
        w = class_weights(labels[va], probs.shape[1], clf.max_class_weight)[labels[va]]
        rec.update(val_loss=float(-lp.mean()), val_accuracy=float(np.mean(probs[va].argmax(1) == labels[va])),
                   val_weighted_loss=float(-(w * lp).sum() / max(w.sum(), 1e-9)))
    if live is not None:
        live.step = 0
        for k, v in rec.items():
            if k != "step":
                live.log_metric(k, v)
        live.next_step()
    return rec


def fit_regime(table: pd.DataFrame, regime: str, clf: ClassifierConfig, enc: EncoderConfig, out: Path, emb: np.ndarray,
               side_stats: pd.DataFrame, context: pd.DataFrame, live=None, progress: bool = True, hide: tuple[str, ...] = (),
               hide_like_stats: bool = False, crossfit_level: str = "username") -> tuple[pd.DataFrame, dict]:
    """Train the regime's classifier; return the feature table of its rows with likes, and a summary.

    `table`: rows with likes, the regime's side column, in a fixed order; `clf`: params train_like_classifier,
    `enc`: the inference runtime (params encoder); `emb`: the rows' embeddings (embed_rows);
    `context`: features.context_rows of every known tweet, labelled or not. History: regime_history.
    `hide`: history levels blanked on every row, `hide_like_stats`: the organisers' like statistics too
    (a route that serves rows of new accounts or brands learns from rows that look like them);
    `crossfit_level`: the groups of the training rows' out-of-fold head probabilities (company: no brand's
    rows predict themselves, as for a new brand's rows).
    """
    edges = clf.bucket_edges
    side = table[regime].to_numpy()
    tr = side == "train"
    va = side == "val"
    if regime in (clf.hide_like_stats or []) or hide_like_stats:
        table = F.hide_like_stats(table)
    hist, tables_test = regime_history(table, regime, clf, hide)
    ctx = F.context_features(table, context)
    labels = bucketize(table["likes"].astype(float), edges)
    K = len(edges)
    folder = out / regime
    if head_mode(clf):
        head, probs, folds = head_probs(emb, labels, account_groups(table, crossfit_level), tr, clf, K)
        history, kept = [_head_record(probs, labels, va, clf, live)], 0
        folder.mkdir(parents=True, exist_ok=True)
        head.save(folder / HEAD_FILE)
    else:
        tok, model, history, kept, probs, folds = _finetune(table, hist, ctx, labels, tr, va, regime, clf, enc, K, live, progress)
        model.save_pretrained(folder, safe_serialization=True)
        save_tokenizer(tok, folder)
    pca = F.TextPCA(int(clf.embed_components)).fit(emb[tr]) if int(clf.embed_components) > 0 else F.TextPCA(0)
    X = tabular(table, hist, ctx, emb, pca, probs)
    state = FeatureState(edges, clf.max_length, pca, tables_test, side_stats, context, list(X.columns))
    tables_all = {lv: F.history_table(table, lv) for lv in F.LEVELS}
    state.save(folder, tables_all)
    meta = pd.DataFrame({"regime": regime, "source": table["source"].to_numpy(), "id": table["id"].to_numpy(),
                         "side": side, "likes": table["likes"].astype(float).to_numpy(), "bucket": labels})
    pred = probs.argmax(1)  # training rows: out-of-fold where cross-fitted
    # the step whose checkpoint was kept (early stopping on val): the deploy fit trains this many steps
    write_training(folder, kept, history[-1]["step"] if history else 0)
    summary = {"steps": history[-1]["step"] if history else 0, "history": history, "crossfit_folds": folds if folds > 1 else 0,
               "train_accuracy": float(np.mean(pred[tr] == labels[tr])) if tr.any() else None,
               "test_accuracy": float(np.mean(pred[side == "test"] == labels[side == "test"])) if (side == "test").any() else None,
               "val_accuracy": float(np.mean(pred[va] == labels[va])) if va.any() else None}
    return pd.concat([meta, X], axis=1), summary

