"""The web app: `tweetsim serve` starts a page on 127.0.0.1 for real-time inference.

A marketer fills in brand, account, date and time, an optional image and an optional draft; the
page shows the draft's predicted likes with the like-bucket probabilities, the caption and OCR
text of the image, and N generated drafts, each with its own predicted likes, best first.

The models sit behind one seam, `Services` (likes, writer, captioner, OCR), so the app and its
tests run on small fakes and `tweetsim serve` on the artefacts `dvc repro` produced. They are
loaded once (at start, or on the first request with `create_app(factory)`) and reused by every
request; inference runs under one lock (torch models are not made for concurrent calls).

Every form row goes through `tweetsim.data.load.normalise`, the loader of the official files, so the
models see exactly the schema they were trained on (an uploaded image is one Photo item).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tweetsim.apps.io import positive_int
from tweetsim.vision.config import CaptionConfig, OcrConfig
from tweetsim.likes.explain import top_reasons

DEFAULT_PORT = 8501
MAX_UPLOAD_MB = 10         # larger request bodies are refused before they are read
MAX_PIXELS = 40_000_000    # a decoded image above this is refused (decompression-bomb guard)
MAX_DRAFTS = 8             # generated drafts a request may ask for
# uploads decoded at once: each decode may hold MAX_PIXELS of RGB (120 MB at 40 megapixels), so eight
# concurrent uploads must not decode together; the others wait here, not under the inference lock
DECODE_SLOTS = threading.BoundedSemaphore(2)
# longer side of the copy of a large upload that captioning and OCR read (their own reads would
# decode the full upload again, under the one inference lock every request waits on)
MODEL_SIDE = 2048
DRAFT_TEMPERATURE = 0.8    # drafts are sampled: greedy decoding would give N identical ones
DRAFT_TOP_P = 0.95
SOURCE = "app"             # the `source` of form rows (the key is (source, id))


class FormError(ValueError):
    """Bad input: shown on the page next to the form, never as a traceback."""


# ---------------------------------------------------------------- the seam
@dataclass
class Services:
    """What the app needs from the models. Any component may be None, with the reason in `missing`.

    predict_likes(table) -> (likes [n], bucket probabilities [n, K]), for rows in the normalised schema
    explain(table) -> per row, {factor: contribution in log1p likes, "bias": ...} (tweetsim.likes.explain)
    best_time(table) -> (curve, best) for the table's first row (tweetsim.likes.besttime.best_time)
    generate(table, n) -> up to n distinct tweets for the metadata of the table's one row
    caption(path) -> a description of the image file; ocr(path) -> the text found in it
    """

    predict_likes: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None
    bucket_labels: list[str] = field(default_factory=list)
    generate: Callable[[pd.DataFrame, int], list[str]] | None = None
    caption: Callable[[Path], str] | None = None
    ocr: Callable[[Path], str] | None = None
    explain: Callable[[pd.DataFrame], list[dict]] | None = None
    best_time: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]] | None = None
    missing: dict[str, str] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)  # component -> what was loaded (shown in the footer)


def bucket_labels(edges) -> list[str]:
    """[0, 10, 100] -> ['0–9', '10–99', '100+'] (lower edges, the last bucket open)."""
    edges = [int(e) for e in edges]
    out = [f"{lo:,}–{hi - 1:,}" for lo, hi in zip(edges, edges[1:])]
    return out + [f"{edges[-1]:,}+"] if edges else []


# ---------------------------------------------------------------- real services (dvc repro artefacts)
class LikesService:
    """The router over the deploy fit's routes (tweetsim.likes.router), or `models_of`'s regime: likes and
    the bucket probabilities they were mixed with; `ranges`: the last call's (low, high), None without
    intervals; `routes`: the last call's (route, why) of each row."""

    def __init__(self, models_dir: str | Path, num_threads: int = 2, models_of: str | None = None):
        from tweetsim.likes.router import load_likes_model

        self.predictor = load_likes_model(models_dir, num_threads, models_of)
        self.labels = bucket_labels(self.predictor.state.edges)
        self.ranges: tuple[np.ndarray, np.ndarray] | None = None
        self.routes: tuple[list[str], list[str]] | None = None

    def __call__(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        from tweetsim.likes.router import routes_of_last

        likes, probs = self.predictor.predict_with_probs(table)
        self.ranges = self.predictor.ranges if self.predictor.intervals else None
        self.routes = routes_of_last(self.predictor, len(table))
        return np.asarray(likes, dtype=float), np.asarray(probs, dtype=float)

    def explain(self, table: pd.DataFrame) -> list[dict]:
        return self.predictor.explain(table)[1].to_dict("records")

    def best_time(self, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        from tweetsim.likes.besttime import best_time

        return best_time(self.predictor, table.iloc[:1], top=3)


class WriterService:
    """The tweet writer of `tweetsim generate` (tweetsim.writer.writers.Writer); N drafts are N samples of
    the same prompt."""

    def __init__(self, params: dict, adapter: Path | None, pool: Path | None, temperature: float = DRAFT_TEMPERATURE,
                 top_p: float = DRAFT_TOP_P):
        from tweetsim.writer.writers import Writer
        from tweetsim.lm.generate import GenConfig

        self.writer = Writer(params, adapter, pool)
        self.cfg = replace(GenConfig.from_params(params["generate"]), temperature=temperature, top_p=top_p, num_candidates=1)
        self.name = self.writer.name

    def __call__(self, table: pd.DataFrame, n: int) -> list[str]:
        from tweetsim.lm.generate import generate

        if n <= 0:
            return []
        prompt = self.writer.prompts(table.iloc[:1])[0]
        texts, _ = generate(self.writer.model, self.writer.tok, [prompt] * n, replace(self.cfg, batch_size=n))
        return list(dict.fromkeys(t for t in texts if t))


class SelectWriterService:
    """The default tweet writer of `tweetsim generate` (tweetsim.writer): N drafts are the N best
    distinct candidates of the post's pool, by the reranker (or consensus)."""

    def __init__(self, params: dict, writer_dir: Path, pool: Path | None, adapter: Path | None):
        from tweetsim.writer.writers import select_writer

        self.writer = select_writer(params, writer_dir, pool if pool is not None else "none", adapter=adapter)
        kind = "reranker" if self.writer.reranker is not None else "consensus"
        self.name = (f"tweetsim.writer ({kind}, {writer_dir}, edits: {', '.join(self.writer.kept) or 'none'}; "
                     f"pool {len(self.writer.pool.texts)} tweets)")

    def __call__(self, table: pd.DataFrame, n: int) -> list[str]:
        return [text for text, _ in self.writer.drafts(table, n)] if n > 0 else []


class CaptionService:
    """The caption stage's captioner (params `caption`) on one file, as the stage words it."""

    def __init__(self, params: CaptionConfig):
        from tweetsim.vision import caption

        caption.set_threads(params.num_threads)
        # the app needs no image embedding: skip CLIP
        self.captioner, _ = caption.load_models(replace(params, embedding="backbone"))
        self.params = params
        self.name = getattr(self.captioner, "id", self.captioner.name)

    def __call__(self, path: Path) -> str:
        from tweetsim.vision import caption
        from tweetsim.vision import images as imgs

        frames = imgs.read_frames(path, frames=int(self.params.frames), max_side=int(self.params.max_side),
                                  max_pixels=int(self.params.max_pixels))
        text = caption.merge_frames(self.captioner.run(frames)).get("caption", "")
        if self.captioner.name == caption.EfficientNetLite0.name:  # as caption_rows prefixes it
            text = f"{caption.KIND_PREFIX['Photo']} {text}"
        return text.strip()


class OcrService:
    """The ocr stage's backend (params `ocr`) on one file; lines joined as in data/ocr.parquet."""

    def __init__(self, params: OcrConfig):
        from tweetsim.vision import ocr

        self.backend = ocr.load_backend(params)
        self.params = params
        self.name = self.backend.id

    def __call__(self, path: Path) -> str:
        from tweetsim.vision import images as imgs
        from tweetsim.vision import ocr

        frames = imgs.read_frames(path, frames=int(self.params.frames), max_side=int(self.params.max_side),
                                  max_pixels=int(self.params.max_pixels))
        lines = ocr.merge_frames(self.backend.run(frames))
        return "\n".join(ln["text"] for ln in lines)


def load_services(models: str | Path = "models", params_path: str | Path = "params.yaml",
                  pool: str | Path | None = "data/tweets.parquet", adapter: str | Path | None = None,
                  base_model: bool = False, threads: int = 2, log=print, writer: str = "select",
                  models_of: str | None = None) -> Services:
    """Every model from the artefacts of `dvc repro`; a component that cannot load is left out and
    its reason shown on the page (the rest of the app still works)."""
    from tweetsim.config.params import load_params
    from tweetsim.lm.generate import GenConfig
    from tweetsim.writer.config import WriterConfig

    params = load_params(params_path)
    adapter_regime = GenConfig.from_params(params["generate"]).adapter_regime
    cli_regime = WriterConfig.from_params(params["writer"]).cli_regime
    models = Path(models)
    s = Services()
    adapter_dir = None if base_model else Path(adapter or models / "llm" / adapter_regime)
    steps = [
        ("likes", lambda: LikesService(models, threads, models_of)),
        ("writer", (lambda: SelectWriterService(params, models / "writer" / cli_regime, Path(pool) if pool else None,
                                                models / "llm" / adapter_regime)) if writer == "select" else
                   (lambda: WriterService(params, adapter_dir, Path(pool) if pool else None))),
        ("caption", lambda: CaptionService(CaptionConfig.from_params(params["caption"]))),
        ("ocr", lambda: OcrService(OcrConfig.from_params(params["ocr"]))),
    ]
    for name, make in steps:
        t0 = time.perf_counter()
        try:
            svc = make()
        except Exception as e:  # noqa: BLE001 (any loading failure: say which component and why, keep serving)
            s.missing[name] = f"{type(e).__name__}: {e}"
            log(f"tweetsim serve: {name} model NOT loaded: {s.missing[name]}")
            continue
        if name == "likes":
            s.predict_likes, s.bucket_labels, s.explain, s.best_time = svc, svc.labels, svc.explain, svc.best_time
            b = svc.predictor.bundle
            s.info[name] = (f"{models}/likes/bundle.json (regime {models_of})" if models_of else
                            f"{models}/likes/deploy (routes {', '.join(b['routes'])}, each fitted on all {b.get('n_rows', '?')} labelled rows)")
        elif name == "writer":
            s.generate, s.info[name] = svc, svc.name
        else:
            setattr(s, name, svc)
            s.info[name] = svc.name
        log(f"tweetsim serve: {name} model loaded in {time.perf_counter() - t0:.1f}s ({s.info[name]})")
    return s


# ---------------------------------------------------------------- one request
@dataclass
class Form:
    brand: str = ""
    account: str = ""
    date: str = ""
    time: str = "12:00"
    draft: str = ""
    n: int = 3


def parse_form(values, max_drafts: int = MAX_DRAFTS) -> tuple[Form, pd.Timestamp]:
    """Validate the form fields; FormError names the field."""
    f = Form(brand=" ".join(str(values.get("brand", "")).split()), account=str(values.get("account", "")).strip(),
             date=str(values.get("date", "")).strip(), time=str(values.get("time", "")).strip() or "12:00",
             draft=str(values.get("draft", "")).strip())
    n_raw = str(values.get("n", "3")).strip() or "0"
    problems = []
    if not f.brand:
        problems.append("Brand: required (the company the account tweets for, e.g. nike).")
    elif len(f.brand) > 100:
        problems.append("Brand: at most 100 characters.")
    f.account = f.account.lstrip("@")
    if f.account and (len(f.account) > 50 or any(c.isspace() for c in f.account)):
        problems.append("Account: a Twitter handle (letters, digits, underscore; no spaces).")
    if len(f.draft) > 2000:
        problems.append("Draft: at most 2000 characters.")
    try:
        f.n = int(n_raw)
        if not 0 <= f.n <= max_drafts:
            raise ValueError
    except ValueError:
        problems.append(f"Drafts: a whole number from 0 to {max_drafts}, got {n_raw!r}.")
    when = None
    if not f.date:
        problems.append("Date: required.")
    elif not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", f.date):  # one reading only: no time, offset or day/month guess here
        problems.append(f"Date: cannot read {f.date!r}: write the day as YYYY-MM-DD (the time goes in Time).")
    elif not re.fullmatch(r"([01]?[0-9]|2[0-3]):[0-5][0-9]", f.time):
        problems.append(f"Time: cannot read {f.time!r}: write it as HH:MM, 00:00 to 23:59 (UTC).")
    else:
        from tweetsim.data.load import parse_date  # the official files' date rule: a calendar date, 2006 to 2099

        try:
            when = parse_date(f"{f.date} {f.time}")
        except ValueError as e:
            problems.append(f"Date and time: cannot read {f.date!r} {f.time!r}: {e} (use YYYY-MM-DD and HH:MM).")
    if problems:
        raise FormError(" ".join(problems))
    return f, when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")


def check_image(data: bytes, max_bytes: int, max_pixels: int):
    """Decode an upload once (through tweetsim.vision.images, as the pipeline reads media) and return
    (sha256, its first frame); FormError says why a file is refused."""
    from tweetsim.vision import images as imgs

    if not data:
        raise FormError("Image: the file is empty (0 bytes).")
    if len(data) > max_bytes:
        raise FormError(f"Image: the file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB.")
    with DECODE_SLOTS, tempfile.NamedTemporaryFile(suffix=".img") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            frame = imgs.read_frames(tmp.name, frames=1, max_side=0, max_pixels=max_pixels)[0]
        except imgs.ImageError as e:
            raise FormError(f"Image: {e}.") from None
    return hashlib.sha256(data).hexdigest(), frame


def _animated(data: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return bool(getattr(im, "is_animated", False))


def thumbnail_uri(path: Path, side: int = 360) -> str:
    from PIL import Image

    with Image.open(path) as im:
        im.seek(0)
        im = im.convert("RGB")
        im.thumbnail((side, side))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def build_table(form: Form, when: pd.Timestamp, sha: str | None, contents: list[str | None],
                caption: str | None, ocr_text: str | None) -> pd.DataFrame:
    """One row per content (the same post metadata), through the official loader's normalisation."""
    from tweetsim.data.load import normalise
    from tweetsim.data.schema import pa_roundtrip

    media = f"[Photo(previewUrl='upload:{sha}', fullUrl='upload:{sha}')]" if sha else "[]"
    df = pd.DataFrame({"id": [str(i) for i in range(len(contents))], "date": when.isoformat(), "content": contents,
                       "username": form.account or None, "media": media, "inferred company": form.brand})
    rows, rejects = normalise(df.astype(object).where(df.notna(), None), SOURCE, "form", required=("id",))
    if rejects:  # cannot happen with the values built above; a loud failure beats a silent one
        raise RuntimeError(f"form row rejected by the loader: {rejects}")
    table = pa_roundtrip(rows)
    table["caption"] = caption or None
    table["ocr_text"] = ocr_text or None
    return table


@dataclass
class Result:
    form: Form
    errors: list[str] = field(default_factory=list)    # bad input: the request did not run
    notes: list[str] = field(default_factory=list)     # a component missing or failing: the rest ran
    image: dict | None = None                          # thumbnail, size, caption, ocr
    post: dict | None = None                           # the user's draft (or the post without text): likes, buckets
    drafts: list[dict] = field(default_factory=list)   # generated: text, likes, bucket, best first
    timings: dict[str, float] = field(default_factory=dict)
    drafts_tried: bool = False                         # the writer ran (an empty list then means it wrote nothing)
    best_time: dict | None = None                      # the post's 168-slot curve (chart geometry) and best slots


def run_request(services: Services, lock: threading.Lock, values, upload: bytes | None,
                max_bytes: int, max_pixels: int, max_drafts: int = MAX_DRAFTS) -> Result:
    """The page's work for one submitted form."""
    try:
        form, when = parse_form(values, max_drafts)
    except FormError as e:
        n = str(values.get("n", "")).strip()
        return Result(form=Form(**{k: str(values.get(k, "")) for k in ("brand", "account", "date", "time", "draft")},
                                n=int(n) if n.isdigit() else 0), errors=[str(e)])
    res = Result(form=form)
    sha = None
    with tempfile.TemporaryDirectory(prefix="tweetsim-app-") as tmp:
        path = Path(tmp) / "upload"
        if upload is not None:
            try:
                sha, frame = check_image(upload, max_bytes, max_pixels)
            except FormError as e:
                res.errors.append(str(e))
                return res
            w, h = frame.size
            with DECODE_SLOTS:
                # a large or animated upload: the models get a still copy of its first frame, at most
                # MODEL_SIDE, made here outside their lock (an animation's frames are re-read by each model)
                if max(w, h) > MODEL_SIDE or _animated(upload):
                    frame.thumbnail((MODEL_SIDE, MODEL_SIDE))
                    frame.save(path, "PNG")
                else:
                    path.write_bytes(upload)
                del frame
                uri = thumbnail_uri(path)
            res.image = {"uri": uri, "size": f"{w}×{h}", "caption": None, "ocr": None}
        with lock:
            if res.image is not None:
                for key in ("caption", "ocr"):
                    fn = getattr(services, key)
                    if fn is None:
                        res.notes.append(f"{key}: model not loaded ({services.missing.get(key, 'not configured')})")
                        continue
                    res.image[key] = _step(res, key, lambda: fn(path))
            caption, ocr_text = (res.image or {}).get("caption"), (res.image or {}).get("ocr")
            drafts: list[str] = []
            if form.n and services.generate is None:
                res.notes.append(f"drafts: writer not loaded ({services.missing.get('writer', 'not configured')})")
            elif form.n:
                meta = build_table(form, when, sha, [None], caption, ocr_text)
                drafts = _step(res, "generate", lambda: services.generate(meta, form.n)) or []
                res.drafts_tried = True
            if services.predict_likes is None:
                res.notes.append(f"likes: model not loaded ({services.missing.get('likes', 'not configured')})")
                res.drafts = [{"text": d, "likes": None, "probs": None} for d in drafts]
                return res
            table = build_table(form, when, sha, [form.draft or None, *drafts], caption, ocr_text)
            out = _step(res, "predict_likes", lambda: services.predict_likes(table))
            ranges = getattr(services.predict_likes, "ranges", None)  # (low, high) of that call, before the calls below predict again
            routes = getattr(services.predict_likes, "routes", None)  # (route, why) of each row of that call
            # the post's reasons and best time: its row alone (the drafts share its date and context)
            factors = slots = None
            if out is not None and services.explain is not None:
                factors = _step(res, "explain", lambda: services.explain(table.iloc[:1]))
            if out is not None and services.best_time is not None:
                slots = _step(res, "best_time", lambda: services.best_time(table.iloc[:1]))
    if out is None:
        res.drafts = [{"text": d, "likes": None, "probs": None} for d in drafts]
        return res
    likes, probs = np.asarray(out[0], dtype=float), np.asarray(out[1], dtype=float)
    labels = services.bucket_labels or [f"bucket {k}" for k in range(probs.shape[1])]
    res.post = {"text": form.draft or None, "likes": int(round(likes[0])), "buckets": list(zip(labels, probs[0].tolist())),
                "top": labels[int(np.argmax(probs[0]))], **_range(ranges, 0),
                "reasons": top_reasons(factors[0]) if factors else [],
                **({"route": routes[0][0], "route_reason": routes[1][0]} if routes else {})}
    if slots is not None:
        from tweetsim.likes.besttime import chart

        curve, best = slots
        res.best_time = {"chart": chart(curve, best), "best": [{"when": f"{r.date:%a %d %b, %H:00}", "likes": int(round(r.likes))}
                                                               for r in best.itertuples()]}
    res.drafts = sorted(({"text": d, "likes": int(round(likes[i + 1])), "top": labels[int(np.argmax(probs[i + 1]))],
                          "p_top": float(probs[i + 1].max()), **_range(ranges, i + 1)} for i, d in enumerate(drafts)),
                        key=lambda d: -d["likes"])
    return res


def _range(ranges, i: int) -> dict:
    """{'low', 'high'} of row i, rounded outwards as predict-likes writes them ({} without a range)."""
    if ranges is None:
        return {}
    low, high = float(ranges[0][i]), float(ranges[1][i])
    return {"low": int(np.floor(low)), "high": int(np.ceil(high)) if np.isfinite(high) else None}


def _step(res: Result, name: str, fn):
    """Run one model call; a failure becomes a note on the page (and a traceback on the console)."""
    t0 = time.perf_counter()
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        res.notes.append(f"{name} failed: {type(e).__name__}: {e}")
        return None
    finally:
        res.timings[name] = time.perf_counter() - t0


# ---------------------------------------------------------------- Flask
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # the names the app answers to: it binds 127.0.0.1


def _hostname(netloc: str) -> str:
    """The host of a `Host` header or an origin's netloc, without the port ('[::1]:8501' -> '::1')."""
    from urllib.parse import urlsplit

    return (urlsplit(f"//{netloc}").hostname or "").lower()


def foreign_request(host: str, origin: str | None, referer: str | None, allowed=LOCAL_HOSTS) -> str | None:
    """Why a request must be refused, or None: a Host header not naming this machine (a page's DNS
    rebinding), or a POST whose Origin (else Referer) is another site (a page in the user's browser
    posting to the app). A client that sends neither, as curl does, is not a browser page."""
    from urllib.parse import urlsplit

    if _hostname(host) not in allowed:
        return f"requests for host {host!r} are refused: this app answers {', '.join(allowed)} only"
    source = origin or referer
    if source is not None and (urlsplit(source).hostname or "").lower() not in allowed:
        return f"a form posted from {source!r} is refused: only this app's own page may post to it"
    return None


def create_app(services: Services | Callable[[], Services], max_upload_mb: float = MAX_UPLOAD_MB,
               max_pixels: int = MAX_PIXELS, max_drafts: int = MAX_DRAFTS, default_drafts: int = 3,
               allowed_hosts=LOCAL_HOSTS):
    """The Flask app. `services` is a Services, or a factory called once, on the first request that
    needs the models (the result is cached for the life of the app). Requests for another host name,
    and posts from another site's page, are refused (403) before any work."""
    from flask import Flask, render_template, request
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    app = Flask(__name__)
    max_bytes = int(max_upload_mb * 1e6)
    # the form fields travel with the file: leave them room beyond the file limit
    app.config["MAX_CONTENT_LENGTH"] = max_bytes + 64 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = 64 * 1024  # each text field (a draft is at most 2000 characters)
    lock, load_lock = threading.Lock(), threading.Lock()
    cache: dict[str, Services] = {}

    def get_services() -> Services:
        with load_lock:
            if "s" not in cache:
                cache["s"] = services() if callable(services) and not isinstance(services, Services) else services
            return cache["s"]

    app.extensions["tweetsim_services"] = get_services

    def page(result: Result | None = None, status: int = 200, errors: list[str] | None = None):
        form = result.form if result else Form(date=pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d"), n=default_drafts)
        s = cache.get("s")
        return render_template("index.html", form=form, result=result, errors=errors or (result.errors if result else []),
                               max_drafts=max_drafts, max_upload_mb=max_upload_mb,
                               info=(s.info if s else {}), missing=(s.missing if s else {})), status

    @app.before_request
    def same_machine_only():
        why = foreign_request(request.host, request.headers.get("Origin") if request.method == "POST" else None,
                              request.headers.get("Referer") if request.method == "POST" else None, allowed_hosts)
        if why is not None:
            return page(errors=[f"403 Forbidden: {why}."], status=403)
        return None

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def submit():
        f = request.files.get("image")
        upload = f.read() if f is not None and f.filename else None
        t0 = time.perf_counter()
        result = run_request(get_services(), lock, request.form, upload, max_bytes, max_pixels, max_drafts)
        result.timings["total"] = time.perf_counter() - t0
        return page(result, 400 if result.errors else 200)

    @app.get("/healthz")
    def healthz():
        s = get_services()
        return {"loaded": sorted(s.info), "missing": s.missing}

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        if (request.content_length or 0) > app.config["MAX_CONTENT_LENGTH"]:
            return page(errors=[f"Image: the upload is larger than the {max_upload_mb:g} MB limit."], status=413)
        return page(errors=["Form: a text field is larger than 64 KB (a draft is at most 2000 characters)."], status=413)

    @app.errorhandler(HTTPException)
    def http_error(e):
        return page(errors=[f"{e.code} {e.name}: {e.description}"], status=e.code)

    @app.errorhandler(Exception)
    def crash(e):  # the console gets the traceback, the page a sentence
        traceback.print_exc(file=sys.stderr)
        return page(errors=[f"Internal error ({type(e).__name__}: {e}); the server log has the details."], status=500)

    return app


def _bounded(kind, low, high):
    """argparse type: a `kind` number from low to high."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not from {low:g} to {high:g}")
        return value

    return parse


def cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="tweetsim serve", description="Start the web app on 127.0.0.1 (real-time inference).")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free)")
    ap.add_argument("--models", default="models", help="folder of the trained artefacts (default: models)")
    ap.add_argument("--models-of", default=None, metavar="REGIME",
                    help="likes: that regime's models instead of the deploy fit (models/likes/deploy)")
    ap.add_argument("--params", default="params.yaml", help="params file (caption, ocr, train_llm, generate, build_prompts)")
    ap.add_argument("--pool", default="data/tweets.parquet", help="tweets the writer chooses from (or, --writer lm, "
                    "retrieves exemplars from; 'none': no exemplars)")
    ap.add_argument("--writer", choices=("select", "lm"), default="select",
                    help="drafts: the best distinct candidates of the post's pool (default) or samples of the LM")
    ap.add_argument("--adapter", default=None, help="LoRA adapter folder (default models/llm/<generate.adapter_regime>)")
    ap.add_argument("--base-model", action="store_true", help="write drafts with the base model, no adapter")
    ap.add_argument("--drafts", type=_bounded(int, 0, MAX_DRAFTS), default=3, help="drafts the form asks for by default")
    ap.add_argument("--max-upload-mb", type=_bounded(float, 0.001, 1000), default=MAX_UPLOAD_MB)
    ap.add_argument("--threads", type=positive_int, default=2)
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error(f"argument --port: {args.port} is not a port number (0 to 65535)")
    from werkzeug.serving import make_server

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    t0 = time.perf_counter()
    app = create_app(lambda: load_services(args.models, args.params, None if args.pool == "none" else args.pool, args.adapter,
                                           args.base_model, args.threads, writer=args.writer, models_of=args.models_of),
                     max_upload_mb=args.max_upload_mb, default_drafts=args.drafts)
    import socket

    try:  # the port first: a port in use is said before the models load (werkzeug would exit with its own lines)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", args.port))
    except OSError as e:
        print(f"tweetsim serve: cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    try:
        services = app.extensions["tweetsim_services"]()  # load now, not on the first request
    except BaseException:
        server.server_close()
        raise
    missing = f"; NOT loaded: {', '.join(services.missing)}" if services.missing else ""
    print(f"tweetsim serve: http://127.0.0.1:{server.server_port}/ (models loaded in {time.perf_counter() - t0:.1f}s"
          f"{missing}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
