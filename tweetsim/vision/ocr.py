"""Text found in tweet media (OCR), fully offline.

Backends (params `ocr.backend`):
- `paddleocr` (default): PaddleOCR 3.x on the PP-OCRv6 small detection and recognition ONNX models
  that ship inside the `rapidocr` wheel, run by onnxruntime. PaddleOCR wants a model folder with an
  `inference.yml` the wheel lacks; `prepare_paddle_models` writes those folders under the project's
  cache dir (never into site-packages), with the recognition dictionary taken from the ONNX file's
  own metadata so it always matches the weights. Offline, PaddleOCR's default setup would try four
  model hosts and fail after ~33 s; naming the model folders avoids any download.
- `rapidocr`: the same ONNX models through rapidocr directly (the fallback).

Each image gives a list of lines `{text, score, box}` (box = 4 corner points, x0,y0,...,x3,y3 in
the pixels of the image as read); an image without text gives an empty list, which is a result.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tweetsim.vision import images as imgs
from tweetsim.vision.config import OcrConfig

DET_NAME = "PP-OCRv6_small_det"
REC_NAME = "PP-OCRv6_small_rec"
_WHEEL_FILES = {DET_NAME: "PP-OCRv6_det_small.onnx", REC_NAME: "PP-OCRv6_rec_small.onnx"}


def rapidocr_model_dir() -> Path:
    import rapidocr

    return Path(rapidocr.__file__).parent / "models"


def prepare_paddle_models(root: str | Path) -> dict[str, Path]:
    """Write `<root>/<model name>/{inference.onnx, inference.yml}` for PaddleOCR's onnxruntime engine.

    The ONNX file is linked (copied where links fail) from the rapidocr wheel; inference.yml is
    PaddleX's own metadata for that model name plus the character list from the ONNX metadata."""
    import onnxruntime as ort
    import yaml
    from paddlex.modules.base.utils.pdparams2safetensors.inference_meta import build_inference_meta

    root = Path(root)
    out = {}
    for name, fname in _WHEEL_FILES.items():
        src = rapidocr_model_dir() / fname
        if not src.is_file():
            raise FileNotFoundError(f"{src}: ONNX model missing from the rapidocr wheel (pip install rapidocr)")
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        onnx = d / "inference.onnx"
        if not onnx.exists() or onnx.resolve() != src.resolve():
            if onnx.is_symlink() or onnx.exists():
                onnx.unlink()
            try:
                os.symlink(src, onnx)
            except OSError:
                import shutil

                shutil.copyfile(src, onnx)
        meta = {"Global": {"model_name": name}}
        meta.update(build_inference_meta(name))
        if name == REC_NAME:
            sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
            chars = sess.get_modelmeta().custom_metadata_map.get("character")
            if not chars:
                raise ValueError(f"{src}: no 'character' list in the ONNX metadata")
            meta.setdefault("PostProcess", {})["character_dict"] = chars.splitlines()
        text = yaml.safe_dump(meta, allow_unicode=True, sort_keys=True)
        yml = d / "inference.yml"
        if not yml.exists() or yml.read_text(encoding="utf-8") != text:
            yml.write_text(text, encoding="utf-8")
        out[name] = d
    return out


def _bgr(im) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


def _box(poly) -> list[int]:
    return [int(round(float(v))) for v in np.asarray(poly).reshape(-1)[:8]]


class PaddleBackend:
    name = "paddleocr"

    def __init__(self, limit_side_len: int = 960, limit_type: str = "max", rec_batch_size: int = 8,
                 score_thresh: float = 0.5, model_root: str | Path = ".cache/paddleocr", num_threads: int = 2):
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        os.environ.setdefault("PADDLE_PDX_CACHE_HOME", str(Path(model_root) / "pdx_home"))
        from paddleocr import PaddleOCR

        dirs = prepare_paddle_models(model_root)
        self.id = backend_id("paddleocr")
        engine_cfg = {"intra_op_num_threads": int(num_threads)} if num_threads else None
        kwargs = dict(
            text_detection_model_name=DET_NAME, text_detection_model_dir=str(dirs[DET_NAME]),
            text_recognition_model_name=REC_NAME, text_recognition_model_dir=str(dirs[REC_NAME]),
            use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False,
            text_det_limit_side_len=int(limit_side_len), text_det_limit_type=limit_type,
            text_recognition_batch_size=int(rec_batch_size), text_rec_score_thresh=float(score_thresh),
            engine="onnxruntime", device="cpu",
        )
        try:
            self._ocr = PaddleOCR(**kwargs, engine_config=engine_cfg) if engine_cfg else PaddleOCR(**kwargs)
        except TypeError:  # older 3.x without engine_config
            self._ocr = PaddleOCR(**kwargs)

    def run(self, images: list) -> list[list[dict]]:
        if not images:
            return []
        out = []
        for res in self._ocr.predict([_bgr(im) for im in images]):
            texts, scores, polys = res["rec_texts"], res["rec_scores"], res["rec_polys"]
            out.append([{"text": str(t), "score": round(float(s), 4), "box": _box(p)}
                        for t, s, p in zip(texts, scores, polys) if str(t).strip()])
        return out


class RapidBackend:
    name = "rapidocr"

    def __init__(self, limit_side_len: int = 960, limit_type: str = "max", score_thresh: float = 0.5, num_threads: int = 2):
        from rapidocr import RapidOCR

        self.id = backend_id("rapidocr")
        params = {
            "Global.use_cls": False, "Global.log_level": "warning", "Global.text_score": float(score_thresh),
            "Det.limit_type": limit_type, "Det.limit_side_len": int(limit_side_len),
            "Det.model_path": str(rapidocr_model_dir() / _WHEEL_FILES[DET_NAME]),
            "Rec.model_path": str(rapidocr_model_dir() / _WHEEL_FILES[REC_NAME]),
        }
        if num_threads:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = int(num_threads)
        self._ocr = RapidOCR(params=params)

    def run(self, images: list) -> list[list[dict]]:
        out = []
        for im in images:  # rapidocr takes one image per call (it batches text lines inside)
            r = self._ocr(_bgr(im))
            if r.txts is None or r.boxes is None:
                out.append([])
                continue
            out.append([{"text": str(t), "score": round(float(s), 4), "box": _box(b)}
                        for t, s, b in zip(r.txts, r.scores, r.boxes) if str(t).strip()])
        return out


def backend_id(name: str) -> str:
    """The cache identity of backend `name` (ocr.backend), known without loading it."""
    if name == "paddleocr":
        return f"paddleocr:{DET_NAME}+{REC_NAME}"
    if name == "rapidocr":
        return f"rapidocr:{_WHEEL_FILES[DET_NAME]}+{_WHEEL_FILES[REC_NAME]}"
    raise ValueError(f"ocr.backend: unknown backend {name!r} (paddleocr | rapidocr)")


class EnginePool:
    """Several engines of one backend, each driven by its own thread with its own onnxruntime
    sessions. onnxruntime releases the GIL while a model runs, so N single-threaded engines keep N
    cores busy on N images; one engine with N intra-op threads splits each op across the cores and
    pays their synchronisation (measured: ~40% more CPU per image on 2 cores). Images go one at a
    time to whichever engine is free and results come back in input order; an image's result does
    not depend on its neighbours (recognition batches only that image's lines), so the output is
    identical to one engine's."""

    def __init__(self, engines: list):
        from concurrent.futures import ThreadPoolExecutor
        from queue import SimpleQueue

        self.engines = engines
        self.name, self.id = engines[0].name, engines[0].id
        self._free = SimpleQueue()
        for e in engines:
            self._free.put(e)
        self._pool = ThreadPoolExecutor(len(engines), thread_name_prefix="ocr")

    def _one(self, im) -> list[dict]:
        engine = self._free.get()
        try:
            return engine.run([im])[0]
        finally:
            self._free.put(engine)

    def run(self, images: list) -> list[list[dict]]:
        return list(self._pool.map(self._one, images))


def load_backend(params: OcrConfig):
    """The configured backend: `ocr.workers` engines side by side (an EnginePool) sharing the
    `ocr.num_threads` CPU threads, each with num_threads // workers onnxruntime threads."""
    name = params.backend
    if name not in ("paddleocr", "rapidocr"):
        raise ValueError(f"ocr.backend: unknown backend {name!r} (paddleocr | rapidocr)")
    workers = int(params.workers)
    if workers < 1:
        raise ValueError(f"ocr.workers: must be >= 1, got {workers}")
    threads = int(params.num_threads or 0)  # 0: onnxruntime's own default
    common = dict(limit_side_len=params.limit_side_len, limit_type=params.limit_type,
                  score_thresh=params.score_thresh, num_threads=max(1, threads // workers) if threads else 0)

    def make():
        if name == "paddleocr":
            return PaddleBackend(rec_batch_size=params.rec_batch_size,
                                 model_root=params.model_dir, **common)
        return RapidBackend(**common)

    return make() if workers == 1 else EnginePool([make() for _ in range(workers)])


def result_params(params: OcrConfig) -> dict:
    """The params that change an image's OCR result (part of the cache key)."""
    keys = ("limit_side_len", "limit_type", "score_thresh", "frames", "max_side", "max_pixels")
    return {k: getattr(params, k) for k in keys}


def merge_frames(per_frame: list[list[dict]]) -> list[dict]:
    """Lines of all frames of one file, each distinct text once (first frame where it appears)."""
    seen, out = set(), []
    for f, lines in enumerate(per_frame):
        for ln in lines:
            if ln["text"] not in seen:
                seen.add(ln["text"])
                out.append({**ln, "frame": f})
    return out


def ocr_images(jobs: dict[str, Path], params: OcrConfig, cache: imgs.ResultCache, backend=None, progress: bool = True):
    """OCR each distinct file (sha -> path), cached. The backend is loaded only when some file is not
    in the cache (a warm re-run starts no engine). Returns ({sha: lines}, {sha: error}, backend name)."""
    from tqdm import tqdm

    rp = result_params(params)
    bid = backend.id if backend is not None else backend_id(params.backend)
    results: dict[str, list[dict]] = {}
    errors: dict[str, str] = {}
    todo = []
    for sha in sorted(jobs):
        hit = cache.get(imgs.cache_key(sha, bid, rp))
        if hit is not None:
            results[sha] = hit["lines"]
        else:
            todo.append(sha)
    if todo and backend is None:
        backend = load_backend(params)
    name = params.backend if backend is None else backend.name
    bs = max(1, int(params.batch_size))
    bar = tqdm(total=len(todo), desc=f"ocr [{name}]", unit="img", disable=not progress)
    for i in range(0, len(todo), bs):
        batch, frames, owner = todo[i : i + bs], [], []
        for sha in batch:
            try:
                fr = imgs.read_frames(jobs[sha], frames=int(params.frames),
                                      max_side=int(params.max_side), max_pixels=int(params.max_pixels))
            except imgs.ImageError as e:
                errors[sha] = str(e)
                continue
            frames.extend(fr)
            owner.extend([sha] * len(fr))
        got = backend.run(frames)
        per: dict[str, list] = {}
        for sha, lines in zip(owner, got):
            per.setdefault(sha, []).append(lines)
        for sha, fl in per.items():
            lines = merge_frames(fl)
            results[sha] = lines
            cache.put(imgs.cache_key(sha, bid, rp), {"lines": lines})
        bar.update(len(batch))
    bar.close()
    return results, errors, name


def build_table(rows: list[imgs.Row], results: dict, errors: dict, backend_name: str):
    """One record per tweet, sorted by (source, id), plus the rejects (one per unreadable file)."""
    records, rejects = [], []
    for r in rows:
        texts, lines_out, reasons = [], [], []
        readable = imgs.readable_items(r, errors, reasons, rejects)
        n_read = len(readable)
        for it in readable:
            for ln in results[it.sha256]:
                texts.append(ln["text"])
                lines_out.append({"item": it.index, "frame": ln.get("frame", 0), "text": ln["text"],
                                  "score": ln["score"], "box": ln["box"]})
        status = imgs.row_status(r, n_read)
        records.append({
            "source": r.source, "id": r.id,
            "ocr_text": "\n".join(texts) if n_read else None,
            "ocr_lines": lines_out,
            "ocr_score": round(float(np.mean([ln["score"] for ln in lines_out])), 4) if lines_out else None,
            "n_images": len(r.items), "n_images_read": n_read,
            "status": status, "reason": "; ".join(reasons) or None,
            "ocr_backend": backend_name if n_read else None,
        })
    return records, rejects


def schema():
    import pyarrow as pa

    line = pa.struct([("item", pa.int32()), ("frame", pa.int32()), ("text", pa.string()),
                      ("score", pa.float32()), ("box", pa.list_(pa.int32()))])
    return pa.schema([
        ("source", pa.string()), ("id", pa.int64()), ("ocr_text", pa.string()), ("ocr_lines", pa.list_(line)),
        ("ocr_score", pa.float32()), ("n_images", pa.int32()), ("n_images_read", pa.int32()),
        ("status", pa.string()), ("reason", pa.string()), ("ocr_backend", pa.string()),
    ])


def to_arrow(records: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(records, schema=schema())
