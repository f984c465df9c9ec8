"""Text transformer inference on 2 CPU cores: the PyTorch paths (`encoder.runtime: torch`) against the
ONNX Runtime paths (tweetsim/text/runtime.py), on the same texts, in one run.

- sentence encoder (packaged all-MiniLM-L6-v2) on N distinct tweet texts of `--tweets`, at
  max_length 128 (baselines, build_prompts, the writer, evaluate) and 48 (the like features):
  torch float32 batched, torch bfloat16 batched (train_like_classifier.inference_dtype), ONNX float32 and ONNX int8, each text on its own in
  `workers` sessions; cosine of each to torch float32 (mean and min);
- the embedding cache: the same texts again from embeddings.sqlite in a fresh process memo;
- the static table (embed_model static: model2vec distilled from the same MiniLM, no transformer pass):
  texts/s, and how well it keeps MiniLM's neighbourhoods (its vectors live in their own 256-d space, so
  not a cosine to float32 but the Spearman correlation of the texts' pairwise similarities with float32's);
- the like classifier (`--classifier`, a trained models/like_classifier/<regime>) on the rows'
  verbalised prompts (48 tokens): torch bfloat16 batched against ONNX int8; the largest change in a
  bucket probability and the share of rows whose most likely bucket is unchanged.
Every path is timed cold (no memo, an empty cache folder); the export itself is timed apart.
usage: python bench/bench_encoder.py [--tweets data/tweets.parquet] [--n 2000] [--classifier models/like_classifier/random]
                                     [--out FILE] (the JSON of the run, default bench/results/bench_encoder.json)
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from _results import add_out, write
from tweetsim.likes.classifier import predict_proba, verbalise
from tweetsim.text import embed, runtime
from tweetsim.text.runtime import EncoderConfig


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tweets", default="data/tweets.parquet")
    ap.add_argument("--n", type=int, default=2000, help="distinct texts (all of them if fewer)")
    ap.add_argument("--classifier", default="models/like_classifier/random")
    ap.add_argument("--workers", type=int, default=2)
    add_out(ap, "bench_encoder")
    a = ap.parse_args()
    torch.set_num_threads(2)
    rows = pd.read_parquet(a.tweets)
    texts = rows["content"].dropna().astype(str).drop_duplicates()
    texts = texts.sample(min(a.n, len(texts)), random_state=0).tolist()
    print(f"{len(texts)} distinct tweet texts from {a.tweets}; torch {torch.__version__} on {torch.get_num_threads()} "
          f"threads, ONNX Runtime {a.workers} sessions x 1 thread\n")
    cache = Path(tempfile.mkdtemp(prefix="bench_encoder_"))
    _, t_exp = timed(lambda: [runtime.export(embed._load(embed.default_model_path())[1], "embed", rt, cache)
                              for rt in ("onnx", "onnx-int8")])
    _, t_dist = timed(lambda: embed.encode(["warm"], "static", encoder=EncoderConfig("onnx-int8", a.workers, str(cache), 0)))
    print(f"export + quantisation of the sentence encoder: {t_exp:.1f} s; distillation of the static table: "
          f"{t_dist:.1f} s (each once per model; cached)\n")
    fig = {"texts": len(texts), "workers": a.workers, "export_s": round(t_exp, 1), "distill_s": round(t_dist, 1), "rows": []}

    def row(name, L, dt, **more):
        fig["rows"].append({"path": name, "max_length": L, "texts_per_s": round(len(texts) / dt),
                            "x_torch_float32": round(res["torch float32"][1] / dt, 2),
                            "x_torch_bfloat16": round(res["torch bfloat16"][1] / dt, 2), **more})

    print("| path | max_length | texts/s | x torch float32 | x torch bfloat16 | cosine to float32 mean / min |")
    print("|---|---|---|---|---|---|")
    for L in (128, 48):
        res = {}
        for name, kw in [("torch float32", {"dtype": "float32"}), ("torch bfloat16", {"dtype": "bfloat16"}),
                         ("onnx float32", {"encoder": EncoderConfig("onnx", a.workers, str(cache), 0)}),
                         ("onnx int8", {"encoder": EncoderConfig("onnx-int8", a.workers, str(cache), 0)})]:
            embed.clear_cache()
            res[name] = timed(lambda: embed.encode(texts, max_length=L, **kw))
        ref = res["torch float32"][0]
        for name, (vec, dt) in res.items():
            cos = (vec * ref).sum(1)
            rate = len(texts) / dt
            row(name, L, dt, cosine_mean=round(float(cos.mean()), 4), cosine_min=round(float(cos.min()), 4))
            print(f"| {name} | {L} | {rate:.0f} | {res['torch float32'][1] / dt:.2f} | {res['torch bfloat16'][1] / dt:.2f} "
                  f"| {cos.mean():.4f} / {cos.min():.4f} |")
        embed.clear_cache()
        again, dt = timed(lambda: embed.encode(texts, max_length=L, encoder=EncoderConfig("onnx-int8", a.workers, str(cache), 0)))
        assert again.tobytes() == res["onnx int8"][0].tobytes()
        row("onnx int8, from the cache", L, dt, identical=True)
        print(f"| onnx int8, from the cache | {L} | {len(texts) / dt:.0f} | {res['torch float32'][1] / dt:.1f} "
              f"| {res['torch bfloat16'][1] / dt:.1f} | identical bytes |")
        embed.clear_cache()
        stat, dt = timed(lambda: embed.encode(texts, "static", max_length=L, encoder=EncoderConfig("onnx-int8", a.workers, str(cache), 0)))
        iu = np.triu_indices(min(len(texts), 1000), 1)
        rho = spearmanr((stat[:1000] @ stat[:1000].T)[iu], (ref[:1000] @ ref[:1000].T)[iu]).statistic
        row("static table (model2vec)", L, dt, spearman_to_float32=round(float(rho), 3))
        print(f"| static table (model2vec) | {L} | {len(texts) / dt:.0f} | {res['torch float32'][1] / dt:.1f} "
              f"| {res['torch bfloat16'][1] / dt:.1f} | pairwise similarities' Spearman to float32 {rho:.3f} |")
    folder = Path(a.classifier)
    if not (folder / "config.json").exists():
        print(f"\nno classifier at {folder}: run `dvc repro train_like_classifier` for the classifier rows")
        write(a.out, fig)
        return
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()
    prompts = verbalise(rows.sample(min(a.n, len(rows)), random_state=0))
    runtime.export(model, "classify", "onnx-int8", cache)
    want, t_bf = timed(lambda: predict_proba(tok, model, prompts, 48, 64, "bfloat16"))
    got, t_i8 = timed(lambda: predict_proba(tok, model, prompts, 48, 64, encoder=EncoderConfig("onnx-int8", a.workers, str(cache), 0)))
    print(f"\nlike classifier ({folder}), {len(prompts)} prompts at 48 tokens: torch bfloat16 {len(prompts) / t_bf:.0f}/s, "
          f"ONNX int8 {len(prompts) / t_i8:.0f}/s ({t_bf / t_i8:.2f}x); largest probability change "
          f"{np.abs(got - want).max():.3f}, same most likely bucket on {np.mean(got.argmax(1) == want.argmax(1)):.1%} of rows")
    fig["classifier"] = {"folder": str(folder), "prompts": len(prompts), "torch_bfloat16_per_s": round(len(prompts) / t_bf),
                         "onnx_int8_per_s": round(len(prompts) / t_i8), "ratio": round(t_bf / t_i8, 2),
                         "largest_probability_change": round(float(np.abs(got - want).max()), 3),
                         "same_bucket": round(float(np.mean(got.argmax(1) == want.argmax(1))), 4)}
    write(a.out, fig)


if __name__ == "__main__":
    main()
