"""Images per second for the caption and ocr stages on 2 CPU threads, batched against one-by-one,
measured in one run on the same generated images.

usage: python bench/bench_media.py [--n-ocr 24] [--n-cap 64] [--batch 16] [--threads 2]

Targets (issue 3): OCR >= 2 images/s at 960 px; batched captioning >= 2x one-by-one.
Each figure is the best of `--repeat` timed passes after one warm-up pass (the CPU is shared).
"""

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = "sale new launch today summit free shipping offer limited edition learn more join us live".split()


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
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from tweetsim import caption as cap
    from tweetsim import images as imgs
    from tweetsim import ocr

    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'benchmark':42s} {'batched img/s':>14s} {'one-by-one img/s':>17s} {'ratio':>7s}", flush=True)

    def report(label, b, s, n):
        rows.append((label, b, s))
        cb, cs = n / CPU["b"], n / CPU["s"]
        print(f"{label:42s} {b:14.2f} {s:17.2f} {b / s:7.2f}x   per CPU-second: {cb:.2f} vs {cs:.2f} ({cb / cs:.2f}x)", flush=True)

    # ---- captioning (EfficientNet-Lite0: caption + embedding in one pass), files read from disk
    with tempfile.TemporaryDirectory() as tmp:
        paths = photo_files(args.n_cap, Path(tmp))
        model = cap.EfficientNetLite0(device="cpu")
        read = lambda p: imgs.read_frames(p, frames=1, max_side=1024)[0]  # noqa: E731
        pics = [read(p) for p in paths]

        def cap_batched_model():
            for i in range(0, len(pics), args.batch):
                model.run(pics[i : i + args.batch])

        def cap_single_model():
            for im in pics:
                model.run([im])

        def cap_batched_e2e():
            for i in range(0, len(paths), args.batch):
                model.run([read(p) for p in paths[i : i + args.batch]])

        def cap_single_e2e():
            for p in paths:
                model.run([read(p)])

        n = len(paths)
        tb, ts = best(cap_batched_model, args.repeat, "b"), best(cap_single_model, args.repeat, "s")
        report("caption efficientnet_lite0, model only", n / tb, n / ts, n)
        tb2, ts2 = best(cap_batched_e2e, args.repeat, "b"), best(cap_single_e2e, args.repeat, "s")
        report("caption efficientnet_lite0, read+model", n / tb2, n / ts2, n)

    # ---- OCR at 960 px
    ims = ocr_images(args.n_ocr)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("paddleocr", "rapidocr"):
            backend = ocr.load_backend({"backend": name, "limit_side_len": 960, "num_threads": args.threads,
                                        "model_dir": str(Path(tmp) / "pm")})
            bs = 8

            def ocr_batched():
                for i in range(0, len(ims), bs):
                    backend.run(ims[i : i + bs])

            def ocr_single():
                for im in ims:
                    backend.run([im])

            n = len(ims)
            report(f"ocr {name} 960x540", n / best(ocr_batched, args.repeat, "b"), n / best(ocr_single, args.repeat, "s"), n)

    print(f"(threads={args.threads}, caption batch={args.batch}, ocr batch=8; targets: OCR >= 2 img/s, "
          f"batched captioning >= 2x one-by-one. On a shared machine the wall-clock rates understate what 2 free "
          f"cores give; images per CPU-second is a floor for that: 2 threads fully used give up to twice it)")


if __name__ == "__main__":
    main()
