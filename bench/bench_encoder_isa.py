"""The encoder's CPU-proof settings (docs/reproducibility.md), in one run on the same texts:
ONNX float32, int8 with 8-bit weights and int8 with 7-bit weights (the default, `reduce_range`):
texts/s in 2 one-thread sessions (best of 2 passes) and cosine to float32; then the default's vectors
rounded to 2^-bits (encoder.round_bits): cosine to the unrounded vector, the share of texts whose
nearest other text is unchanged, and the largest change of a pairwise similarity.
usage: python bench/bench_encoder_isa.py [--tweets data/tweets.parquet] [--n 600] [--cache DIR] [--out FILE]
(--cache: where the exports are kept, default a fresh temporary folder; --out: the JSON of the run,
default bench/results/bench_encoder_isa.json)
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic

from _results import add_out, write
from tweetsim.text import embed, runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tweets", default="data/tweets.parquet")
    ap.add_argument("--n", type=int, default=600, help="distinct texts (all of them if fewer)")
    ap.add_argument("--cache", default=None, help="export folder (default: a temporary one)")
    add_out(ap, "bench_encoder_isa")
    a = ap.parse_args()
    texts = pd.read_parquet(a.tweets)["content"].dropna().astype(str).drop_duplicates().head(a.n).tolist()
    tok, model = embed._load(embed.default_model_path())
    with tempfile.TemporaryDirectory() as scratch:
        tmp = a.cache or scratch
        fp32 = runtime.export(model, "embed", "onnx", tmp)
        w7 = runtime.export(model, "embed", "onnx-int8", tmp)
        w8 = w7.with_name("model-int8-w8.onnx")
        if not w8.exists():
            quantize_dynamic(str(fp32), str(w8), per_channel=True, weight_type=QuantType.QInt8)
        files = {"onnx float32": fp32, "onnx int8, 8-bit weights": w8, "onnx int8, 7-bit weights": w7}
        vecs, best = {}, {}
        for _ in range(2):
            for name, path in files.items():
                t0 = time.perf_counter()
                vecs[name] = runtime.run(path, tok, texts, 128, 2)
                best[name] = min(best.get(name, np.inf), time.perf_counter() - t0)
    ref = vecs["onnx float32"]
    print(f"{len(texts)} texts")
    figures = {"texts": len(texts), "max_length": 128, "sessions": 2, "paths": {}, "round_bits": {}}
    for name, v in vecs.items():
        cos = (v * ref).sum(1)
        figures["paths"][name] = {"texts_per_s": round(len(texts) / best[name], 1),
                                  "cosine_mean": round(float(cos.mean()), 4), "cosine_min": round(float(cos.min()), 4)}
        print(f"{name}: {len(texts) / best[name]:.1f} texts/s, cosine to float32 mean {cos.mean():.4f} min {cos.min():.4f}")
    v = vecs["onnx int8, 7-bit weights"]
    s0 = v @ v.T
    np.fill_diagonal(s0, -2.0)  # a text is not its own neighbour
    for bits in (6, 8, 10, 12):
        r = runtime.rounded(v, bits)
        cos = (r * v).sum(1) / np.linalg.norm(r, axis=1) / np.linalg.norm(v, axis=1)
        s = r @ r.T
        np.fill_diagonal(s, -2.0)
        off = ~np.eye(len(v), dtype=bool)
        same, change = float((s.argmax(1) == s0.argmax(1)).mean()), float(np.abs(s - s0)[off].max())
        figures["round_bits"][bits] = {"min_cosine": round(float(cos.min()), 6), "nearest_unchanged": round(same, 4),
                                       "largest_similarity_change": float(f"{change:.2g}")}
        print(f"round_bits {bits}: min cosine to unrounded {cos.min():.6f}, nearest text unchanged "
              f"{same:.1%}, largest similarity change {change:.2g}")
    write(a.out, figures)


if __name__ == "__main__":
    main()
