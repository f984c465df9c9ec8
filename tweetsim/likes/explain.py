"""Reasons for a predicted like count: the tree models' per-row contributions, grouped into factors.

Everything is in log1p likes, the space the models and the metric work in: a factor's contribution
of +0.7 multiplies (likes + 1) by about e^0.7 = 2. For one row,

    log1p(likes) = bias + sum over factors of contribution

exactly (up to float32 rounding), in both final modes of regressor.combine:
- each bucket regressor's XGBoost `pred_contribs` (TreeSHAP) splits its log1p prediction into one
  value per feature plus its base value; the regressors' part of a feature is the sum over buckets
  of p_b * contrib_b (p: the gate's probabilities in mixture mode, one-hot on the gate's bucket in
  argmax mode);
- what is left depends on the bucket probabilities only: H(p) = sum_b p_b * base_b + log(p . s)
  (s: the smearing factors). In mixture mode with the tabular gate, H(p) - H(p0) (p0: the gate's
  probabilities at its own base value) is split over the gate's features by integrating along the
  straight path of the gate's logits from its base to the row's logits, each feature moving the
  logits by its own `pred_contribs` (integrated gradients; Gauss-Legendre, the small quadrature
  remainder stays in the bias). So the choice of bucket gets reasons too. With `gate: classifier`
  the probabilities are the classifier's, and H(p) - H(uniform) is the classifier's view.
- the bias holds the rest: H(p0) (or H(uniform)), the clipping of a bucket's prediction at 0 and of
  the likes at 0. In argmax mode the bucket choice is not differentiable and lands in the bias.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

# factor id -> the words the page and the CLI use
FACTORS = {
    "usual_likes": "the account's usual likes",
    "audience": "the brand's audience size",
    "video": "the video and its views",
    "media": "the media kind",
    "time": "the time of posting",
    "text": "the text and caption",
    "classifier": "the classifier's view",
}
BIAS = "bias"

# every feature column of behaviour.tabular, by name (features.base_features, history_features,
# context_features); a column missing here is an error (tests/test_explain.py checks a trained fixture)
_EXACT = {
    **{f"log_{c}": "usual_likes" for c in ("acct_avg_likes", "acct_median_likes", "acct_mode_likes", "acct_max_likes",
                                            "acct_min_likes")},
    **{f"{lv}_hist_{s}": "usual_likes" for lv in ("acct", "brand") for s in ("n", "mean", "median", "last5")},
    # days since the account's / brand's previous tweet: it moves with the posting date
    "acct_hist_days_since": "time", "brand_hist_days_since": "time",
    "log_followers": "audience",
    # the look-alike brands' likes level (likes/lookalike.py): what an unknown brand's audience is likely to be
    "lookalike_level": "audience", "lookalike_sim": "audience",
    **{f"{lv}_ctx_{s}": "audience" for lv in ("acct", "brand")
       for s in ("n", "video_frac", "n_views", "views_median", "views_mean", "views_max")},
    "n_video": "video", "video_duration": "video", "log_video_views": "video",
    "n_media": "media", "n_photo": "media", "n_gif": "media",
    "year": "time", "month": "time", "dayofweek": "time", "hour": "time", "days": "time",
    **{f"{c}_{t}": "time" for c in ("hour", "dayofweek") for t in ("sin", "cos")},
    **{c: "text" for c in ("n_mentions", "n_hashtags", "n_hyperlinks", "has_content", "content_chars", "content_words",
                           "content_upper_frac", "content_exclaim", "content_question", "content_nonascii", "caption_chars")},
}
_PATTERNS = [(re.compile(r"emb_pc\d+"), "text"), (re.compile(r"p_bucket\d+"), "classifier")]


def factor_of(column: str) -> str:
    if column in _EXACT:
        return _EXACT[column]
    for pat, factor in _PATTERNS:
        if pat.fullmatch(column):
            return factor
    raise KeyError(f"feature column {column!r} has no factor: add it to tweetsim/likes/explain.py _EXACT")


def _iteration_range(model) -> tuple[int, int]:
    # as XGBModel.predict: the early-stopped best iteration when there is one
    try:
        return 0, int(model.best_iteration) + 1
    except AttributeError:
        return 0, 0


def _contribs(booster, X: pd.DataFrame, features: list[str], iteration_range) -> np.ndarray:
    import xgboost as xgb

    from tweetsim.likes.regressor import feature_matrix

    names = list(features) if booster.feature_names is not None else None  # fitted on a DataFrame: names checked
    return booster.predict(xgb.DMatrix(feature_matrix(X, features), feature_names=names), pred_contribs=True,
                           iteration_range=iteration_range)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def contributions(X: pd.DataFrame, regs, gate, mode: str, smear: bool, nodes: int = 16) -> pd.DataFrame:
    """Per row of X (behaviour.tabular's matrix): one column per feature of the models, and `bias`,
    in log1p likes; each row sums to log1p of regressor.combine's likes for the same models."""
    n, K = len(X), len(regs)
    feats = list(dict.fromkeys([f for r in regs for f in r.features] + (list(gate.features) if gate is not None else [])))
    pos = {f: i for i, f in enumerate(feats)}
    C = np.zeros((n, K, len(feats)))
    base = np.zeros((n, K))
    for b, r in enumerate(regs):
        c = _contribs(r.model.get_booster(), X, r.features, _iteration_range(r.model)).astype(float)
        raw = c.sum(1)
        C[:, b, [pos[f] for f in r.features]] = c[:, :-1]
        base[:, b] = c[:, -1] + (np.clip(raw, 0, None) - raw)  # predict_log clips at 0: the difference is bias
    s = np.array([r.meta["smearing"] for r in regs], float) if smear else np.ones(K)
    out = np.zeros((n, len(feats)))
    if gate is not None:
        g = _contribs(gate.booster, X, gate.features, (0, gate.meta["best_iteration"] + 1)).astype(float)  # (n, K, F+1)
        probs = _softmax(g.sum(2))
    else:
        probs = X[[f"p_bucket{k}" for k in range(K)]].to_numpy(float)
    if mode == "argmax":
        w = np.eye(K)[probs.argmax(1)]
    elif mode == "mixture":
        w = probs
    else:
        raise ValueError(f"regress_within_bucket.final: unknown mode {mode!r} (argmax | mixture)")
    out += np.einsum("nk,nkf->nf", w, C)

    def H(p):  # the part of the log1p prediction that depends on the probabilities only
        return (p * base).sum(1) + np.log(p @ s)

    h = H(w)
    if mode == "mixture" and gate is not None:
        g0, dirs = g[:, :, -1], g[:, :, :-1]
        gpos = [pos[f] for f in gate.features]
        t, tw = np.polynomial.legendre.leggauss(nodes)
        attr = np.zeros((n, len(gate.features)))
        for tk, wk in zip((t + 1) / 2, tw / 2):
            p = _softmax(g0 + tk * dirs.sum(2))
            dh = base + s[None, :] / (p @ s)[:, None]        # dH/dp
            grad = p * (dh - (p * dh).sum(1, keepdims=True))  # dH/dlogits (softmax Jacobian)
            attr += wk * np.einsum("nk,nkf->nf", grad, dirs)
        out[:, gpos] += attr
        bias = h - attr.sum(1)  # = H(p0) + the quadrature remainder
    elif mode == "mixture":
        ref = np.full((n, K), 1.0 / K)
        out[:, [pos[f"p_bucket{k}"] for k in range(K)]] += ((h - H(ref)) / K)[:, None]
        bias = H(ref)
    else:
        bias = h
    total = out.sum(1) + bias
    bias = bias + (np.maximum(total, 0) - total)  # combine clips the likes at 0, i.e. log1p at 0
    frame = pd.DataFrame(out, columns=feats, index=X.index)
    frame[BIAS] = bias
    return frame


def by_factor(contrib: pd.DataFrame) -> pd.DataFrame:
    """contributions() summed into FACTORS (every factor a column, in FACTORS' order) and `bias`."""
    cols = [c for c in contrib.columns if c != BIAS]
    groups = pd.Series([factor_of(c) for c in cols], index=cols)
    out = pd.DataFrame({f: contrib[groups.index[groups == f]].sum(axis=1) for f in FACTORS}, index=contrib.index)
    out[BIAS] = contrib[BIAS]
    return out


def explain(predictor, rows: pd.DataFrame, context: pd.DataFrame | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """(likes, factors): predictor.Predictor's likes for `rows` and their by_factor() contributions
    from the same call (the same feature matrix)."""
    likes, _ = predictor.predict_with_probs(rows, context=context)
    X = predictor.last_features
    c = contributions(X, predictor.regs, predictor.gate, predictor.bundle["final"], bool(predictor.bundle["smearing"]))
    return likes, by_factor(c).reset_index(drop=True)


def to_json(factors: pd.DataFrame, digits: int = 4) -> list[str]:
    """One JSON object per row: factor -> contribution in log1p likes, and `bias`."""
    return [json.dumps({k: round(float(v), digits) for k, v in row.items()}) for row in factors.to_dict("records")]


def top_reasons(row: dict, k: int = 3) -> list[dict]:
    """The k factors of one row (a by_factor() record) with the largest contributions in absolute
    value: {factor, words ("+ the account's usual likes"), value (log1p), times (e^value)}."""
    items = sorted(((f, float(v)) for f, v in row.items() if f in FACTORS and abs(float(v)) > 0), key=lambda fv: -abs(fv[1]))
    return [{"factor": f, "value": v, "times": float(np.exp(v)), "sign": "+" if v > 0 else "−",
             "words": f"{'+' if v > 0 else '−'} {FACTORS[f]}"} for f, v in items[:k]]
