"""ocr stage: known text read exactly by both backends, corrupt / animated / very large / blank
files, missing files, the cache (cold and warm), sharding and merge. Also holds the media fixture
builder that tests/test_caption.py reuses."""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont

from stages_helper import SHIPPED, stage, write_params
from tweetsim.data.shards import ShardError, shard_count, shard_flag, shard_of
from tweetsim.vision import images as imgs
from tweetsim.vision import ocr
from tweetsim.vision.config import OcrConfig

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core
if not FONT.exists():
    pytest.skip(f"{FONT} missing: install the Debian package fonts-dejavu-core", allow_module_level=True)

TEXTS = ["Hello World 2024", "SALE 50 OFF TODAY", "Adobe Summit"]


def text_image(text: str, size=(640, 160), font_size=40, pos=(30, 50)) -> Image.Image:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).text(pos, text, fill="black", font=ImageFont.truetype(str(FONT), font_size))
    return im


def gif_bytes(texts: list[str]) -> bytes:
    import io

    frames = [text_image(t).convert("P") for t in texts]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def to_bytes(im: Image.Image, fmt: str = "PNG") -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def make_dataset(root: Path, items: list[dict]) -> Path:
    """Write data/tweets.parquet + data/media/{manifest.csv,store/..} per the download contract.

    items: dicts with id, kind (Photo|Video|Gif), data (bytes or None = not fetched), caption (opt),
    source (opt). One media item per tweet unless `urls` gives several (list of (kind, bytes))."""
    data = root / "data"
    store = data / "media" / "store"
    store.mkdir(parents=True, exist_ok=True)
    rows, manifest = [], {}
    for it in items:
        parts = it.get("parts") or [(it.get("kind", "Photo"), it.get("data"))]
        urls, media = [], []
        for j, (kind, blob) in enumerate(parts):
            url = f"https://pbs.example/{it.get('source', 'src')}/{it['id']}/{j}.img" if blob is not None else f"https://dead.example/{it['id']}/{j}.jpg"
            if blob is not None:
                url = "https://pbs.example/" + hashlib.sha256(blob).hexdigest()[:16]  # same bytes, same url
            urls.append(url)
            media.append({"kind": kind, "preview_url": None, "full_url": url if kind == "Photo" else None,
                          "thumbnail_url": url if kind != "Photo" else None, "variants": [], "duration": None, "views": None})
            if blob is None:
                manifest[url] = {"url": url, "kind": kind, "status": "not_fetched", "sha256": "", "path": ""}
            else:
                sha = hashlib.sha256(blob).hexdigest()
                dest = store / sha[:2] / sha
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(blob)
                manifest[url] = {"url": url, "kind": kind, "status": "ok", "sha256": sha, "path": f"store/{sha[:2]}/{sha}"}
        rows.append({"source": it.get("source", "src"), "id": it["id"], "image_urls": urls, "media": media,
                     "caption": it.get("caption")})
    pd.DataFrame(rows).to_parquet(data / "tweets.parquet", index=False)
    with open(data / "media" / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["url", "kind", "status", "sha256", "path", "bytes", "content_type", "attempts", "error"])
        w.writeheader()
        for m in manifest.values():
            w.writerow(m)
    return data


@pytest.fixture(scope="module")
def paddle(tmp_path_factory):
    return ocr.load_backend(OcrConfig.from_params({**SHIPPED["ocr"], "backend": "paddleocr",
                                                   "model_dir": str(tmp_path_factory.mktemp("pmodels")), "num_threads": 2}))


def test_prepare_paddle_models_writes_inference_yml_outside_site_packages(tmp_path):
    import yaml

    dirs = ocr.prepare_paddle_models(tmp_path)
    for name, d in dirs.items():
        assert d.parent == tmp_path and (d / "inference.onnx").exists()
        meta = yaml.safe_load((d / "inference.yml").read_text())
        assert meta["Global"]["model_name"] == name
    chars = yaml.safe_load((dirs[ocr.REC_NAME] / "inference.yml").read_text())["PostProcess"]["character_dict"]
    assert len(chars) > 1000 and "A" in chars and "7" in chars
    before = (dirs[ocr.DET_NAME] / "inference.yml").stat().st_mtime_ns
    ocr.prepare_paddle_models(tmp_path)  # idempotent: an unchanged file is not rewritten
    assert (dirs[ocr.DET_NAME] / "inference.yml").stat().st_mtime_ns == before


def test_paddleocr_reads_known_text_exactly_and_blank_is_empty(paddle):
    out = paddle.run([text_image(t) for t in TEXTS] + [Image.new("RGB", (300, 200), "white")])
    assert [[ln["text"] for ln in lines] for lines in out[:3]] == [[t] for t in TEXTS]
    assert all(0.9 < lines[0]["score"] <= 1 and len(lines[0]["box"]) == 8 for lines in out[:3])
    assert out[3] == []  # no text is a result, not an error


def test_engine_pool_equals_one_engine_in_input_order(paddle):
    assert isinstance(paddle, ocr.EnginePool) and len(paddle.engines) == 2  # workers: 2 is the default
    ims = [text_image(t, pos=(30 + 40 * i, 50)) for i, t in enumerate(TEXTS + TEXTS[::-1])] + [Image.new("RGB", (300, 200), "white")]
    one = paddle.engines[0]
    got = paddle.run(ims)
    assert got == [one.run([im])[0] for im in ims]  # same lines, scores and boxes, same order
    assert [lines[0]["text"] for lines in got[:6]] == TEXTS + TEXTS[::-1]


def test_rapidocr_backend_reads_known_text_exactly():
    rapid = ocr.load_backend(OcrConfig.from_params({**SHIPPED["ocr"], "backend": "rapidocr"}))
    out = rapid.run([text_image(t) for t in TEXTS] + [Image.new("RGB", (300, 200), "white")])
    assert [[ln["text"] for ln in lines] for lines in out[:3]] == [[t] for t in TEXTS]
    assert out[3] == []


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend"):
        ocr.load_backend(OcrConfig.from_params({**SHIPPED["ocr"], "backend": "tesseract"}))
    with pytest.raises(ValueError, match="ocr.workers"):
        ocr.load_backend(OcrConfig.from_params({**SHIPPED["ocr"], "backend": "rapidocr", "workers": 0}))


def test_read_frames_reasons(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "junk").write_bytes(b"not an image at all")
    png = to_bytes(text_image("x"))
    (tmp_path / "trunc").write_bytes(png[: len(png) // 2])
    (tmp_path / "big").write_bytes(to_bytes(Image.new("RGB", (400, 300))))
    with pytest.raises(imgs.ImageError, match="empty"):
        imgs.read_frames(tmp_path / "empty")
    with pytest.raises(imgs.ImageError, match="not an image"):
        imgs.read_frames(tmp_path / "junk")
    with pytest.raises(imgs.ImageError, match="corrupt"):
        imgs.read_frames(tmp_path / "trunc")
    with pytest.raises(imgs.ImageError, match="too large"):
        imgs.read_frames(tmp_path / "big", max_pixels=1000)
    (tmp_path / "anim").write_bytes(gif_bytes(["one", "two", "three", "four"]))
    assert len(imgs.read_frames(tmp_path / "anim", frames=2)) == 2
    assert len(imgs.read_frames(tmp_path / "anim", frames=9)) == 4
    assert max(imgs.read_frames(tmp_path / "big", max_side=100)[0].size) == 100


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocrdata")
    png = [to_bytes(text_image(t)) for t in TEXTS]
    big = text_image("BIG TEXT", size=(7000, 5000), font_size=700, pos=(500, 2000))
    items = [
        {"id": 1, "data": png[0]},
        {"id": 2, "data": png[1], "source": "other"},
        {"id": 3, "parts": [("Photo", png[2]), ("Video", None)]},  # one file, one not fetched
        {"id": 4, "data": png[0][: len(png[0]) // 2]},  # corrupt (truncated)
        {"id": 5, "kind": "Gif", "data": gif_bytes(["GIF ONE", "GIF TWO"])},
        {"id": 6, "data": to_bytes(big, "JPEG")},
        {"id": 7, "data": to_bytes(Image.new("RGB", (320, 240), "white"))},  # no text
        {"id": 8, "data": None},  # not fetched
        {"id": 9, "data": png[0]},  # same file as id 1: read once
    ]
    return make_dataset(root, items)


def run_stage(data: Path, tmp: Path, flags=(), **over) -> None:
    params = write_params(tmp, **{"ocr.cache_dir": str(tmp / "cache"), "ocr.model_dir": str(tmp / "pm"),
                                  "ocr.progress": False, "ocr.frames": 2, **over})
    stage("ocr").main(str(params), str(data), *flags)


@pytest.mark.slow  # the stage run four times, sharded and merged
def test_ocr_stage_end_to_end_cache_and_shards(dataset, tmp_path, capsys):
    run_stage(dataset, tmp_path)
    err = capsys.readouterr()
    assert "NO image file" in err.err and "1 of 9 rows" in err.err  # id 8; id 3 has one file
    out = pq.read_table(dataset / "ocr.parquet").to_pandas().set_index(["source", "id"])
    assert list(out.index) == sorted(out.index) and len(out) == 9
    t = out["ocr_text"]
    assert t[("src", 1)] == TEXTS[0] and t[("other", 2)] == TEXTS[1] and t[("src", 9)] == TEXTS[0]
    assert t[("src", 3)] == TEXTS[2] and "not_fetched" in out.loc[("src", 3), "reason"]
    assert out.loc[("src", 4), "status"] == "unreadable" and pd.isna(t[("src", 4)])
    assert t[("src", 5)].split("\n") == ["GIF ONE", "GIF TWO"]  # both frames read
    assert t[("src", 6)] == "BIG TEXT"
    assert t[("src", 7)] == "" and out.loc[("src", 7), "status"] == "ok"
    assert out.loc[("src", 8), "status"] == "no_image_file" and pd.isna(t[("src", 8)])
    lines = out.loc[("src", 1), "ocr_lines"]
    assert len(lines) == 1 and lines[0]["text"] == TEXTS[0] and len(lines[0]["box"]) == 8
    rejects = pd.read_csv(dataset / "ocr_rejects.csv")
    assert rejects[["source", "id"]].values.tolist() == [["src", 4]] and "corrupt" in rejects.reason[0]
    assert "6 images read" in err.out and "cache 0 hits / 7 misses" in err.out
    first = (dataset / "ocr.parquet").read_bytes()

    run_stage(dataset, tmp_path)  # warm: everything from the cache, byte-identical output
    assert "cache 6 hits / 1 misses" in capsys.readouterr().out
    assert (dataset / "ocr.parquet").read_bytes() == first

    rejects_first = (dataset / "ocr_rejects.csv").read_bytes()
    for shards in ([0], [0, 1]):  # ocr_shard@K then the ocr merge
        for k in shards:
            run_stage(dataset, tmp_path, ("--shard", str(k)), **{"ocr.shards": shards})
        run_stage(dataset, tmp_path, ("--merge",), **{"ocr.shards": shards})
        assert (dataset / "ocr.parquet").read_bytes() == first
        assert (dataset / "ocr_rejects.csv").read_bytes() == rejects_first
    sizes = [pq.read_metadata(dataset / "shards" / "ocr" / f"ocr-{k}.parquet").num_rows for k in range(2)]
    assert sum(sizes) == 9 and min(sizes) > 0


def test_merge_rejects_overlapping_shards():
    import pyarrow as pa

    t = pa.table({"source": ["a"], "id": [1]})
    with pytest.raises(ValueError, match="overlap"):
        imgs.merge_shards([t, t])
    with pytest.raises(ValueError, match="bad sharding"):
        imgs.select_shard([], 2, 2)
    assert shard_of("src", 1, 4) == shard_of("src", 1, 4)  # stable


def test_shard_param_and_argument():
    assert shard_count([0, 1, 2], "ocr.shards") == 3
    with pytest.raises(ShardError, match=r"ocr.shards must list the shard indices 0..N-1 in order.*got \(0, 1\)"):
        shard_count((0, 1), "ocr.shards")
    assert shard_flag((), 3, "ocr.shards") is None and shard_flag(("--shard", "2"), 3, "ocr.shards") == 2
    for flags in (("--shard",), ("--shard", "3"), ("--shard", "-1")):
        with pytest.raises(ShardError, match=r"--shard '.*': ocr.shards lists shards 0..2"):
            shard_flag(flags, 3, "ocr.shards")


def test_cache_ignores_damaged_entries(tmp_path):
    cache = imgs.ResultCache(tmp_path)
    key = imgs.cache_key("ab" * 32, "x", {"a": 1})
    assert key != imgs.cache_key("ab" * 32, "x", {"a": 2}) != imgs.cache_key("ab" * 32, "y", {"a": 1})
    cache.put(key, {"lines": []})
    assert cache.get(key) == {"lines": []}
    (tmp_path / key[:2] / f"{key}.json").write_text("{broken")
    assert cache.get(key) is None and cache.misses == 1
    v = np.arange(5, dtype=np.float32) / 7
    assert np.array_equal(imgs.decode_vector(imgs.encode_vector(v)), v)
