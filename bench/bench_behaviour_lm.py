"""Benchmark of the behaviour LM (tweetsim.likes.behaviour_lm), measured in one run, on this machine.

Prints: seconds per training step (LoRA + projection, image prefix vs text only), predictions per
second (batched vs one by one), and the frozen vision encoder's images per second. Then the same
prefix for the tweet writer (train_llm.image_prefix: tweetsim.lm.model.train_lora's loop, train_llm's
batch and max_length, tweet completions): s/step and generated tokens/s, image prefix vs text only.
Run by hand: python bench/bench_behaviour_lm.py [params.yaml] [data] [--steps 4] [--rows 32] [--only likes|writer]
    [--out FILE] (the JSON of the run, default bench/results/bench_behaviour_lm.json)
Uses data/tweets.parquet rows with likes (real prompts) and generated images for the encoder; the
LM is the params' model (SmolLM2-135M by default).
"""

import argparse
import os
import sys
import time
import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from _results import add_out, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tweetsim.likes import behaviour_lm as B  # noqa: E402
from tweetsim.lm.config import BehaviourLMConfig, LLMConfig, PromptsConfig  # noqa: E402
from tweetsim.lm import prefix as IP  # noqa: E402
from tweetsim.lm import model as llm  # noqa: E402
from tweetsim.lm.generate import GenConfig, generate  # noqa: E402
from tweetsim.config.params import load_params  # noqa: E402
from tweetsim.data.sides import join_from  # noqa: E402
from tweetsim.data.schema import read_tweets  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("params", nargs="?", default="params.yaml")
    ap.add_argument("data", nargs="?", default="data")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--only", choices=["likes", "writer"], default=None)
    add_out(ap, "bench_behaviour_lm")
    args = ap.parse_args()
    params = load_params(args.params)
    p = BehaviourLMConfig.from_params(params["train_behaviour_lm"])
    torch.set_num_threads(int(p.num_threads))
    from PIL import Image

    enc = B.VisionEncoder(p.vision.backend, p.vision.clip_model, batch_size=int(p.vision.batch_size))
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(16)]
    enc.encode(ims[:2])
    t = time.perf_counter()
    feats16 = enc.encode(ims)
    enc_ips = len(ims) / (time.perf_counter() - t)

    table = read_tweets(Path(args.data) / "tweets.parquet")
    table = join_from(table[table["likes"].notna()].sort_values(["source", "id"]).head(200), args.data)
    table = table.sample(n=min(args.rows, len(table)), random_state=0)
    n = len(table)
    feats = feats16[np.arange(n) % len(feats16)]
    fig = {"rows": n, "steps": args.steps}
    if args.only != "writer":
        fig["likes"] = likes_bench(p, args, enc, table, feats)
    if args.only != "likes":
        fig["writer"] = writer_bench(params, args, enc, table, feats)
    print(f"vision encoder: {enc_ips:.1f} images/s (640x480, batch {p.vision.batch_size})")
    fig.update(vision_images_per_s=round(enc_ips, 1), vision_batch=p.vision.batch_size)
    write(args.out, fig)


def likes_bench(p, args, enc, table, feats) -> dict:
    n = len(table)
    tok, model = B.build_model(p, enc.dim)
    answers = [B.verbalise_likes(v, 100) for v in table["likes"].astype(float)]
    cfg = replace(B.TrainConfig.of(p), steps=args.steps, warmup_steps=1)
    res = {}
    for name, has in (("image prefix", np.ones(n, bool)), ("text only", np.zeros(n, bool))):
        ex = B.make_examples(tok, table, [{}] * n, feats, has, cfg.max_length, answers, int(p.max_field_chars))
        res[name] = B.train(model, tok, ex, cfg, progress=False)["seconds_per_step"]
    ex = B.make_examples(tok, table, [{}] * n, feats, np.arange(n) % 2 == 0, cfg.max_length, None, int(p.max_field_chars))
    mean_len = np.mean([len(e["input_ids"]) for e in ex])
    t = time.perf_counter()
    B.generate_answers(model, tok, ex, int(p.eval_batch_size), int(p.max_new_tokens), progress=False)
    batched = n / (time.perf_counter() - t)
    k = min(8, n)
    t = time.perf_counter()
    B.generate_answers(model, tok, ex[:k], 1, int(p.max_new_tokens), progress=False)
    single = k / (time.perf_counter() - t)
    print(f"model {p.model.name}, vision {enc.id} ({enc.dim}-d), {p.projection.n_prefix} prefix tokens, "
          f"batch {cfg.batch_size}, max_length {cfg.max_length}, prompt tokens mean {mean_len:.0f}, threads {p.num_threads}")
    print(f"train: {res['image prefix']:.2f} s/step with image prefix, {res['text only']:.2f} s/step text only "
          f"(ratio {res['image prefix'] / res['text only']:.2f}) over {args.steps} steps")
    print(f"predict: {batched:.2f} rows/s batched (batch {p.eval_batch_size}, {n} rows), {single:.2f} rows/s one by one "
          f"({k} rows): batched/single {batched / single:.2f}x; max_new_tokens {p.max_new_tokens}")
    return {"model": p.model.name, "vision": enc.id, "s_per_step_image_prefix": round(res["image prefix"], 2),
            "s_per_step_text_only": round(res["text only"], 2),
            "ratio_image_text": round(res["image prefix"] / res["text only"], 2), "rows_per_s_batched": round(batched, 2),
            "rows_per_s_one_by_one": round(single, 2), "one_by_one_rows": k, "ratio_batched_single": round(batched / single, 2)}


def writer_bench(params, args, enc, table, feats) -> dict:
    """The writer (train_llm params) with and without the image prefix, on the same prompts."""
    from tweetsim.writer.prompts import render, verbalise

    t = LLMConfig.from_params(params["train_llm"])
    ip = t.image_prefix
    path = llm.resolve_model(t.model.name, t.model.cache_dir)
    tok = llm.load_tokenizer(path)
    n = len(table)
    max_field_chars = PromptsConfig.from_params(params["build_prompts"]).max_field_chars
    prompts = [render(tok, verbalise(r, (), int(max_field_chars))) for r in table.to_dict("records")]
    completions = table["content"].fillna("New drop <hyperlink>").tolist()
    cfg = replace(llm.TrainConfig.of(t), steps=args.steps, warmup_steps=1, save_every=0)
    lm = llm.add_lora(llm.load_model(path, "none", t.model.dtype, for_training=True), **dataclasses.asdict(t.lora))
    model = IP.attach(lm, enc.dim, ip.projection, cfg.seed)
    gcfg = replace(GenConfig.from_params(params["generate"]), max_new_tokens=24)
    k = min(8, n)
    res = {}
    warm = [dict(llm.encode_example(tok, pr, c, cfg.max_length), feat=f, has_image=True) for pr, c, f in zip(prompts, completions, feats)]
    llm.train_lora(model, tok, warm, replace(cfg, steps=1), Path("/tmp/bench_writer_adapter"))  # first-step costs out of both
    for name, has in (("image prefix", np.ones(n, bool)), ("text only", np.zeros(n, bool))):
        ex = [dict(llm.encode_example(tok, pr, c, cfg.max_length), feat=f, has_image=bool(h))
              for pr, c, f, h in zip(prompts, completions, feats, has)]
        step = llm.train_lora(model, tok, ex, cfg, Path("/tmp/bench_writer_adapter"))["seconds_per_step"]
        model.eval()
        _, g = generate(model, tok, prompts[:k], gcfg, feats=feats[:k], has_image=has[:k])
        res[name] = (step, g["new_tokens"] / g["seconds"])
    (si, gi), (st, gt) = res["image prefix"], res["text only"]
    print(f"writer {t.model.name}: {ip.projection.n_prefix} prefix tokens, batch {cfg.batch_size}, "
          f"max_length {cfg.max_length}, {args.steps} steps; generation {k} rows, batch {gcfg.batch_size}, 24 new tokens max")
    print(f"writer train: {si:.2f} s/step with image prefix, {st:.2f} s/step text only (ratio {si / st:.2f})")
    print(f"writer generate: {gi:.1f} tokens/s with image prefix, {gt:.1f} text only (ratio {gi / gt:.2f})")
    return {"model": t.model.name, "s_per_step_image_prefix": round(si, 2), "s_per_step_text_only": round(st, 2),
            "ratio_step": round(si / st, 2), "tokens_per_s_image_prefix": round(gi, 1), "tokens_per_s_text_only": round(gt, 1),
            "ratio_tokens": round(gi / gt, 2), "generate_rows": k}


if __name__ == "__main__":
    main()
