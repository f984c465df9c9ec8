"""Image files for the caption and ocr stages: which file belongs to which tweet, reading and
validating it, frames of animated files, a result cache, and a shard's rows and the merge of
shard outputs (which shard, the shard param and argument, and the file names: tweetsim.data.shards).

Both stages work on the same unit: the distinct image files (content-addressed by sha256) that the
download stage fetched for the tweets' `image_urls`. Videos and GIFs are represented by their
thumbnail; when the stored file is itself animated (a GIF/APNG/WebP with several frames), up to
`frames` frames spread evenly over it are used.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageSequence

from tweetsim.data.fetch import read_manifest as read_manifest_table
from tweetsim.data.shards import ShardError, shard_of, shard_paths

# Bump when a change in reading or in a backend's post-processing alters cached results.
CACHE_VERSION = 1

# Reason codes used in the outputs' `status` column.
NO_MEDIA = "no_media"  # the tweet has no media item
NO_IMAGE_FILE = "no_image_file"  # an item exists but no fetched file (manifest status not ok)
UNREADABLE = "unreadable"  # every file of the row failed to decode
OK = "ok"


class ImageError(Exception):
    """A file that exists but cannot be used; str(e) is the reason written to the rejects file."""


@dataclass
class Item:
    """One media item of one tweet."""

    index: int  # position in the tweet's image_urls
    kind: str  # Photo | Video | Gif
    url: str | None
    sha256: str | None = None  # set when a fetched file exists
    path: Path | None = None
    missing: str | None = None  # why there is no file (manifest status), when path is None


@dataclass
class Row:
    source: str
    id: int
    caption: str | None  # precomputed caption from the input, if any
    items: list[Item] = field(default_factory=list)

    @property
    def files(self) -> list[Item]:
        return [it for it in self.items if it.path is not None]


# ---------------------------------------------------------------- manifest and rows
def read_manifest(media_dir: str | Path) -> dict[str, dict]:
    """url -> manifest row, from `<media_dir>/manifest.csv` (download's contract). Missing manifest
    is an error: the download stage always writes one, even with fetching off."""
    path = Path(media_dir) / "manifest.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: media manifest not found (written by the download stage)")
    table = read_manifest_table(path, required=("url", "status", "sha256", "path"))
    return {r["url"]: r for r in table.to_dict("records")}


def _kinds(media) -> list[str]:
    if media is None or (isinstance(media, float) and media != media):
        return []
    out = []
    for m in media:
        k = m.get("kind") if isinstance(m, dict) else None
        out.append(str(k) if k else "Photo")
    return out


def build_rows(tweets, manifest: dict[str, dict], media_dir: str | Path) -> list[Row]:
    """One Row per tweet, sorted by (source, id), with each media item resolved to a file.

    The manifest's `path` is looked up relative to `media_dir` (`data/media`, where the fetcher
    writes `store/..`) and, failing that, to its parent (`data/`, for `media/store/..` paths)."""
    media_dir = Path(media_dir)
    rows = []
    for rec in tweets[["source", "id", "image_urls", "media", "caption"]].itertuples(index=False):
        urls = [] if rec.image_urls is None or isinstance(rec.image_urls, float) else [str(u) if u else None for u in rec.image_urls]
        kinds = _kinds(rec.media)
        cap = rec.caption if isinstance(rec.caption, str) and rec.caption.strip() else None
        row = Row(source=str(rec.source), id=int(rec.id), caption=cap)
        for i, url in enumerate(urls):
            kind = kinds[i] if i < len(kinds) else "Photo"
            it = Item(index=i, kind=kind, url=url)
            m = manifest.get(url) if url else None
            if not url:
                it.missing = "item has no image url"
            elif m is None:
                it.missing = "url not in manifest"
            elif m.get("status") != "ok":
                err = (m.get("error") or "").strip()
                it.missing = f"manifest status {m.get('status')}" + (f" ({err})" if err else "")
            else:
                rel = m.get("path") or ""
                found = next((p for p in (media_dir / rel, media_dir.parent / rel) if rel and p.is_file()), None)
                if found is None:
                    it.missing = f"manifest says ok but file {media_dir / rel} is absent"
                else:
                    it.path = found
                    it.sha256 = m.get("sha256") or file_sha256(found)
            row.items.append(it)
        rows.append(row)
    rows.sort(key=lambda r: (r.source, r.id))
    return rows


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- sharding (the rest: tweetsim.data.shards)
def select_shard(rows: list[Row], shards: int, shard: int) -> list[Row]:
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"bad sharding: shard={shard} shards={shards} (need 0 <= shard < shards)")
    if shards == 1:
        return rows
    return [r for r in rows if shard_of(r.source, r.id, shards) == shard]


def merge_shards(tables: list, key=("source", "id"), schema=None):
    """Concatenate shard outputs (pyarrow tables, same schema) into one table sorted by key; a key
    present in two shards is an error. Sorting makes the merge independent of shard order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pa.concat_tables(tables)
    if schema is not None:  # parquet renames list children on read; restore the writer's schema
        t = t.cast(schema)
    keys = list(zip(*(t.column(k).to_pylist() for k in key)))
    if len(set(keys)) != len(keys):
        seen = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise ValueError(f"shards overlap: key {dup} appears in more than one shard")
    # one chunk, as a single run writes it, so the merged file is byte-identical to that run's
    return t.take(pc.sort_indices(t, sort_keys=[(k, "ascending") for k in key])).combine_chunks()


# ---------------------------------------------------------------- reading
def read_frames(path: str | Path, frames: int = 1, max_side: int = 0, max_pixels: int = 200_000_000) -> list[Image.Image]:
    """Decode a file into RGB frames (1 for a still image, up to `frames` spread over an animation),
    each downscaled so its longer side is at most `max_side` (0 = keep). Raises ImageError with the
    reason for an empty, truncated, corrupt or oversized file."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageError(f"cannot stat file: {e}") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = max_pixels
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ImageError(f"image too large: {w}x{h} pixels > max_pixels {max_pixels}")
                # frames looked at: at most MAX_FRAMES, and no more than MAX_TOTAL_PIXELS decoded in all
                n = _frames_up_to(im, max(1, min(MAX_FRAMES, MAX_TOTAL_PIXELS // max(w * h, 1))))
                picks = _spread(n, max(1, frames))
                out = []
                if n == 1:
                    if max_side and im.format == "JPEG":
                        im.draft("RGB", (max_side, max_side))  # decode at reduced scale: much faster
                    out.append(_finish(im, max_side))
                else:
                    for i, fr in enumerate(ImageSequence.Iterator(im)):
                        if i in picks:
                            out.append(_finish(fr, max_side))
                        if i >= picks[-1]:
                            break
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image too large: {e}") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image file (unidentified format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"corrupt image: {type(e).__name__}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default
    if not out:
        raise ImageError("no decodable frame")
    return out


# frames of an animation looked at: its frames are spread over the first MAX_FRAMES. Pillow's n_frames
# decodes every frame to count them, so a 1x1 GIF of 400,000 frames held a request for seconds.
MAX_FRAMES = 1000
# pixels decoded across an animation's frames: seeking a GIF decodes every frame it passes, so a few
# large frames cost as much as many small ones (a 36-megapixel GIF is looked at in its first 2 frames)
MAX_TOTAL_PIXELS = 100_000_000


def _frames_up_to(im: Image.Image, cap: int) -> int:
    """How many frames `im` has, counting no further than `cap` (then left on frame 0)."""
    if not getattr(im, "is_animated", False):
        return 1
    n = 1
    try:
        while n < cap:
            im.seek(n)
            n += 1
    except EOFError:
        pass
    im.seek(0)
    return n


def _spread(n: int, k: int) -> list[int]:
    """k frame indices spread evenly over n frames (first and middles, deterministic)."""
    if k >= n:
        return list(range(n))
    return sorted({int((i + 0.5) * n / k) for i in range(k)})


def _finish(im: Image.Image, max_side: int) -> Image.Image:
    im.load()
    if im.mode in ("RGBA", "LA", "P", "PA") or "transparency" in im.info:
        # flatten transparency on white: text on transparent PNGs stays visible
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    rgb = im.convert("RGB")
    if rgb.width < 2 or rgb.height < 2:
        raise ImageError(f"degenerate image size {rgb.width}x{rgb.height}")
    if max_side and max(rgb.size) > max_side:
        rgb = rgb.copy()
        rgb.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return rgb


# ---------------------------------------------------------------- cache
def cache_key(sha256: str, backend_id: str, params: dict) -> str:
    """Key of one image's result: the file's hash, the backend (model identity) and every param
    that changes the result, plus CACHE_VERSION. Batch size, sharding and paths are not in it."""
    blob = json.dumps({"v": CACHE_VERSION, "sha": sha256, "backend": backend_id, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResultCache:
    """One small JSON file per key under `root/<key[:2]>/`. Writes are atomic (tempfile + rename),
    so shards on several processes may share a cache folder. `root=None` disables caching."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root else None
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.root is None:
            self.misses += 1
            return None
        p = self._path(key)
        try:
            with open(p, encoding="utf-8") as f:
                val = json.load(f)
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError):
            # a damaged entry is recomputed, never trusted
            self.misses += 1
            return None
        self.hits += 1
        return val

    def put(self, key: str, value: dict) -> None:
        if self.root is None:
            return
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, sort_keys=True)
        os.replace(tmp, p)


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


# ---------------------------------------------------------------- reporting
def missing_summary(rows: list[Row]) -> tuple[int, dict[str, int]]:
    """How many rows have media items but no readable file path, and the reasons counted per item."""
    n = 0
    reasons: dict[str, int] = {}
    for r in rows:
        if r.items and not r.files:
            n += 1
        for it in r.items:
            if it.path is None:
                key = it.missing.split(" (")[0] if it.missing else "unknown"
                reasons[key] = reasons.get(key, 0) + 1
    return n, dict(sorted(reasons.items(), key=lambda kv: -kv[1]))


def loud_missing(stage: str, rows: list[Row]) -> str | None:
    """The LOUD message when rows have media but no image file (e.g. fetching off on the sample)."""
    n, reasons = missing_summary(rows)
    if not n:
        return None
    why = ", ".join(f"{k}: {v} items" for k, v in reasons.items())
    bar = "!" * 78
    return (
        f"{bar}\n{stage}: {n} of {len(rows)} rows have media but NO image file, so no model ran on them.\n"
        f"  why: {why}.\n"
        f"  (with download.fetch_media off, or dead URLs, nothing is fetched; set download.fetch_media\n"
        f"   and re-run download to process real images)\n{bar}"
    )


def write_rejects(path: str | Path, records: list[dict]) -> None:
    """One line per unreadable/corrupt file occurrence: source,id,item,url,path,reason (sorted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["source", "id", "item", "url", "path", "reason"]
    records = sorted(records, key=lambda r: (r["source"], r["id"], r["item"]))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in records:
            w.writerow({c: r.get(c) for c in cols})


def merge_rejects(parts: list[Path], out: str | Path) -> None:
    """Join shard rejects files (missing ones are an error) into one sorted file."""
    records = []
    for p in parts:
        if not Path(p).exists():
            raise FileNotFoundError(f"{p}: shard rejects file missing")
        with open(p, newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                r["id"], r["item"] = int(r["id"]), int(r["item"])
                records.append(r)
    write_rejects(out, records)


def merge_files(tables: list[Path], rejects: list[Path], out: Path, rejects_out: Path, schema):
    """Join part files (tables and their rejects) into `out` and `rejects_out`, as one run writes them."""
    import pyarrow.parquet as pq

    table = merge_shards([pq.read_table(p) for p in tables], schema=schema)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    merge_rejects(list(rejects), rejects_out)
    return table


def merge_shard_outputs(data: Path, stage: str, stem: str, rejects_stem: str, shards: int, n_tweets: int,
                        schema) -> str:
    """`--merge`: data/shards/<stage>/<stem>-K.parquet (+ rejects), K = 0..N-1, into data/<stem>.parquet
    and data/<rejects_stem>.csv, checking that each file holds only its shard's tweets (a file left
    by a run with another N is named) and that every tweet is there once."""
    import pyarrow.parquet as pq

    data = Path(data)
    parts, rejects = zip(*(shard_paths(data, stage, stem, rejects_stem, k) for k in range(shards)))
    missing = [str(p) for p in parts + rejects if not p.exists()]
    if missing:
        raise ShardError(f"{stage} --merge: missing shard outputs {missing} (run {stage}_shard@K for each)")
    for k, part in enumerate(parts):
        keys = pq.read_table(part, columns=["source", "id"]).to_pydict()
        stray = next(((s, i) for s, i in zip(keys["source"], keys["id"]) if shard_of(s, i, shards) != k), None)
        if stray:
            raise ShardError(f"{stage} --merge: {part} holds tweet {stray} of another shard: it was written "
                             f"with other {stage}.shards than {list(range(shards))}; re-run {stage}_shard@{k}")
    table = merge_files(list(parts), list(rejects), data / f"{stem}.parquet", data / f"{rejects_stem}.csv", schema)
    if table.num_rows != n_tweets:
        raise ShardError(f"{stage} --merge: shards hold {table.num_rows} rows but tweets.parquet has {n_tweets}")
    return f"{stage}: merged {shards} shards -> {data / f'{stem}.parquet'} ({table.num_rows} rows)"


class Processes:
    """The processes of one run. Under `accelerate launch --num_processes P` (or torchrun: WORLD_SIZE
    > 1) process i takes rows i, i+P, ... of the run's sorted rows (by position: a split by the key's
    hash would give a shard's rows all to one process when P and N share a factor), writes its part,
    and process 0 merges the parts into the run's output. A plain run is one process that writes it."""

    def __init__(self):
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from datetime import timedelta

            import torch
            from accelerate import PartialState

            # gloo on CPU, nccl on GPUs; a long timeout: processes wait at the barrier for the slowest
            self.state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(hours=24))
        self.index = self.state.process_index if self.state else 0
        self.count = self.state.num_processes if self.state else 1

    @property
    def device(self) -> str | None:
        """This process's GPU under a launch on a CUDA machine (cuda:<local rank>), else None."""
        return str(self.state.device) if self.state and self.state.device.type == "cuda" else None

    def take(self, rows: list) -> list:
        return rows[self.index::self.count]

    def label(self, shard: int | None, shards: int) -> str:
        """What this run covers, for the stage's summary line."""
        what = "all rows" if shard is None else f"shard {shard} of {shards}"
        return what + (f", process {self.index} of {self.count}" if self.count > 1 else "")

    def write(self, table, rejects: list[dict], out: Path, rejects_out: Path, schema) -> None:
        import pyarrow.parquet as pq

        out.parent.mkdir(parents=True, exist_ok=True)
        if self.count == 1:
            pq.write_table(table, out)
            write_rejects(rejects_out, rejects)
            return
        parts = [out.with_name(f".{out.stem}-part{i}-of-{self.count}.parquet") for i in range(self.count)]
        rej_parts = [p.with_suffix(".csv") for p in parts]
        pq.write_table(table, parts[self.index])
        write_rejects(rej_parts[self.index], rejects)
        self.state.wait_for_everyone()
        if self.index == 0:
            merge_files(parts, rej_parts, out, rejects_out, schema)
            for p in parts + rej_parts:
                p.unlink()
        self.state.wait_for_everyone()  # no process ends before the output exists


def readable_items(r: "Row", errors: dict, reasons: list, rejects: list) -> list:
    """A row's items whose file was read; each other item adds a reason, and an unreadable file
    also a rejects record (caption and ocr report rows the same way)."""
    ok = []
    for it in r.items:
        if it.path is None:
            reasons.append(f"item {it.index}: {it.missing}")
        elif it.sha256 in errors:
            reasons.append(f"item {it.index}: {errors[it.sha256]}")
            rejects.append({"source": r.source, "id": r.id, "item": it.index, "url": it.url,
                            "path": str(it.path), "reason": errors[it.sha256]})
        else:
            ok.append(it)
    return ok


def row_status(r: "Row", n_read: int) -> str:
    if not r.items:
        return NO_MEDIA
    if n_read:
        return OK
    return UNREADABLE if r.files else NO_IMAGE_FILE
