"""Images per second for the caption and ocr stages on 2 CPU threads, the stage's batched path
against one image at a time, measured in one run on the same generated image files.

usage: python bench/bench_media.py [--n-ocr 16] [--n-cap 32] [--batch 16] [--threads 2] [--workers 2] [--repeat 1]
                                  [--out FILE] (the JSON of the run, default bench/results/bench_media.json)

Targets: OCR >= 2 images/s at 960 px; batched captioning >= 2x one-by-one.

What each side does (both read the files from disk, decoding included, with `--threads` CPU threads):
- caption, stage path: `caption.run_model` exactly as the stage runs it (no result cache): batches
  of `--batch`, the next batch decoded on a background thread while the model runs, each batch
  cut into small slices that `--workers` threads run side by side, threads // workers torch
  threads each.
  One-by-one: a loop that reads one file and runs the same model object (same weights, layout and
  inference_mode) on that one image with all `--threads` torch threads.
- "same, one-by-one on 1 torch thread": the stage path again against that loop on 1 torch thread
  (on a busy machine it can beat the 2-thread loop; the smaller ratio is the one to quote).
- caption, model only, one slice: the model on whole batches of already-decoded images with all
  threads, against the same images one at a time: what batching alone buys.
- ocr: `ocr.ocr_images` as the stage runs it (batches of 8 files, an EnginePool of `--workers`
  engines with threads // workers onnxruntime threads each) against one engine with all threads
  reading and OCR-ing one file per call.
Each figure is the best of `--repeat` timed passes after one warm-up pass (the CPU is shared); the
CPU seconds of that pass are printed too, since other processes inflate them far less than wall time.
"""

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from _results import add_out, write

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = "sale new launch today summit free shipping offer limited edition learn more join us live".split()


def ocr_files(n: int, folder: Path) -> list[Path]:
    paths = []
    for i, im in enumerate(ocr_images(n)):
        paths.append(folder / f"ocr{i}.png")
        im.save(paths[-1])
    return paths


def ocr_images(n: int, seed: int = 0) -> list[Image.Image]:
    """960x540 banners with 2-4 lines of words, like promotional tweet images."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = Image.new("RGB", (960, 540), tuple(int(v) for v in rng.integers(200, 256, 3)))
        d = ImageDraw.Draw(im)
        for j in range(int(rng.integers(2, 5))):
            text = " ".join(rng.choice(WORDS, int(rng.integers(2, 4)))).upper()
            d.text((40, 40 + 120 * j), text, fill=(0, 0, 0), font=ImageFont.truetype(FONT, int(rng.integers(36, 64))))
        out.append(im)
    return out


def photo_files(n: int, folder: Path, seed: int = 1) -> list[Path]:
    """Smooth random 640x480 JPEGs (decoded by the stage as it would decode real photos)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((640, 480), Image.Resampling.BICUBIC)
        p = folder / f"{i}.jpg"
        im.save(p, quality=90)
        paths.append(p)
    return paths


CPU = {}  # label -> CPU seconds of the best pass (this process, all threads)


def best(fn, repeat: int, key: str = "") -> float:
    """Best wall time of `repeat` passes after a warm-up; also records the CPU time of that pass,
    which contention from other processes inflates far less than the wall time."""
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    wall, cpu = min(runs)
    CPU[key] = cpu
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-ocr", type=int, default=16)
    ap.add_argument("--n-cap", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    add_out(ap, "bench_media")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from tweetsim.vision import caption as cap
    from tweetsim.vision import images as imgs
    from tweetsim.config.params import load_params
    from tweetsim.vision import ocr
    from tweetsim.vision.config import CaptionConfig, OcrConfig

    shipped = load_params(Path(__file__).resolve().parents[1] / "params.yaml")

    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'benchmark':42s} {'batched img/s':>14s} {'one-by-one img/s':>17s} {'ratio':>7s}", flush=True)

    def report(label, b, s, n):
        cb, cs = n / CPU["b"], n / CPU["s"]
        rows.append({"benchmark": label.strip(), "images": n, "batched_per_s": round(b, 2), "one_by_one_per_s": round(s, 2),
                     "ratio": round(b / s, 2), "batched_per_cpu_s": round(cb, 2), "one_by_one_per_cpu_s": round(cs, 2)})
        print(f"{label:42s} {b:14.2f} {s:17.2f} {b / s:7.2f}x   per CPU-second: {cb:.2f} vs {cs:.2f} ({cb / cs:.2f}x)", flush=True)

    # ---- captioning (EfficientNet-Lite0: caption + embedding in one pass), files read from disk
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_files(args.n_cap, Path(tmp))
        model = cap.EfficientNetLite0(device="cpu")
        read = lambda p: imgs.read_frames(p, frames=1, max_side=1024)[0]  # noqa: E731
        pics = [read(p) for p in paths]
        jobs = {str(i): p for i, p in enumerate(paths)}
        params = replace(CaptionConfig.from_params(shipped["caption"]), batch_size=args.batch, workers=args.workers,
                         frames=1, max_side=1024)

        def cap_stage():
            res, err = cap.run_model(model, jobs, params, imgs.ResultCache(None), progress=False)
            assert len(res) == len(paths) and not err

        def cap_single_e2e():
            for p in paths:
                model.run([read(p)])

        def cap_batched_model():
            for i in range(0, len(pics), args.batch):
                model.run(pics[i : i + args.batch])

        def cap_single_model():
            for im in pics:
                model.run([im])

        n = len(paths)
        tb, ts = best(cap_stage, args.repeat, "b"), best(cap_single_e2e, args.repeat, "s")
        report(f"caption effnet-lite0, stage path ({args.workers} threads)", n / tb, n / ts, n)
        # a 2-thread one-by-one loop suffers most from other processes on the cores: also compare
        # against the one-by-one loop on 1 thread, and count the smaller ratio
        torch.set_num_threads(1)
        ts1 = best(cap_single_e2e, args.repeat, "s")
        torch.set_num_threads(args.threads)
        report("  same, one-by-one on 1 torch thread", n / tb, n / ts1, n)
        tb2, ts2 = best(cap_batched_model, args.repeat, "b"), best(cap_single_model, args.repeat, "s")
        report("caption effnet-lite0, model only, 1 slice", n / tb2, n / ts2, n)

    # ---- OCR at 960 px, PNG files read from disk
    with tempfile.TemporaryDirectory() as tmp:
        paths = ocr_files(args.n_ocr, Path(tmp))
        jobs = {str(i): p for i, p in enumerate(paths)}
        for name in ("paddleocr", "rapidocr"):
            params = replace(OcrConfig.from_params(shipped["ocr"]), backend=name, limit_side_len=960, num_threads=args.threads,
                             workers=args.workers, model_dir=str(Path(tmp) / "pm"), batch_size=8, frames=1, max_side=0)
            pool = ocr.load_backend(params)
            single = ocr.load_backend(replace(params, workers=1))

            def ocr_stage():
                res, err, _ = ocr.ocr_images(jobs, params, imgs.ResultCache(None), backend=pool, progress=False)
                assert len(res) == len(paths) and not err

            def ocr_single():
                for p in paths:
                    single.run(imgs.read_frames(p))

            n = len(paths)
            report(f"ocr {name} 960x540, stage path ({args.workers} engines)", n / best(ocr_stage, args.repeat, "b"),
                   n / best(ocr_single, args.repeat, "s"), n)

    print(f"(threads={args.threads}, workers={args.workers}, caption batch={args.batch}, ocr batch=8; targets: OCR >= 2 img/s, "
          f"batched captioning >= 2x one-by-one. On a shared machine the wall-clock rates understate what 2 free "
          f"cores give; images per CPU-second is a floor for that: 2 threads fully used give up to twice it)")
    write(args.out, {"threads": args.threads, "workers": args.workers, "caption_batch": args.batch, "ocr_batch": 8,
                     "repeat": args.repeat, "rows": rows})


if __name__ == "__main__":
    main()
