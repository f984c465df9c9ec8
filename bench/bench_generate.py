"""Benchmark the tweet writer: generated tokens/s batched against one by one (same run, same prompts),
seconds per LoRA step, peak memory.

usage: python bench/bench_generate.py [--params params.yaml] [--prompts data/prompts.parquet]
                                      [--n 16] [--batch 16] [--new-tokens 32] [--steps 3] [--out FILE]
(--out: the JSON of the run, default bench/results/bench_generate.json)
Needs data/prompts.parquet (dvc repro build_prompts). Run by hand, not by CI.
"""

import argparse
import dataclasses
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from _results import add_out, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tweetsim.lm import model as llm  # noqa: E402
from tweetsim.lm.config import LLMConfig  # noqa: E402
from tweetsim.lm.generate import GenConfig, generate  # noqa: E402
from tweetsim.config.params import load_params  # noqa: E402


def peak_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prompts", default="data/prompts.parquet")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    add_out(ap, "bench_generate")
    args = ap.parse_args()
    p = load_params(args.params)
    t, g = LLMConfig.from_params(p["train_llm"]), GenConfig.from_params(p["generate"])
    if not torch.cuda.is_available():
        torch.set_num_threads(t.num_threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = llm.resolve_model(t.model.name, t.model.cache_dir)
    tok = llm.load_tokenizer(base)
    prompts = pd.read_parquet(args.prompts)
    rows = prompts[prompts["split"] == "test"].sort_values(["regime", "source", "id"]).head(args.n)
    model = llm.load_model(base, llm.check_quantization(t.quantization), t.model.dtype).to(device).eval()
    texts = rows["prompt"].tolist()
    gen = replace(g, max_new_tokens=args.new_tokens)
    generate(model, tok, texts[:2], replace(gen, batch_size=2))  # warm-up
    _, b = generate(model, tok, texts, replace(gen, batch_size=args.batch))
    one = {"new_tokens": 0, "seconds": 0.0}
    for x in texts:
        _, s = generate(model, tok, [x], replace(gen, batch_size=1))
        one = {k: one[k] + s[k] for k in one}
    tps_b, tps_1 = b["new_tokens"] / b["seconds"], one["new_tokens"] / one["seconds"]
    print(f"generation ({t.model.name}, {device}, {len(texts)} prompts, max {args.new_tokens} new tokens): "
          f"batched (batch {args.batch}) {tps_b:.1f} tokens/s, one by one {tps_1:.1f} tokens/s, ratio {tps_b / tps_1:.2f}x")

    # seconds per LoRA step at the params' batch size and sequence length
    train = prompts[prompts["split"] == "train"].head(t.batch_size * (args.steps + 1))
    examples = llm.encode_examples(tok, train["prompt"].tolist(), train["completion"].tolist(), t.max_length)
    model = llm.add_lora(llm.load_model(base, "none", t.model.dtype, for_training=True), **dataclasses.asdict(t.lora))
    cfg = replace(llm.TrainConfig.of(t), steps=args.steps + 1, save_every=0)
    out = Path(".cache") / "bench_adapter"
    t0 = time.perf_counter()
    res = llm.train_lora(model, tok, examples, cfg, out)
    print(f"LoRA (r={t.lora.rank}, batch {cfg.batch_size} x {cfg.max_length} tokens, {device}): "
          f"{res['seconds_per_step']:.2f} s/step over {cfg.steps} steps (first included; total {time.perf_counter() - t0:.1f} s)")
    print(f"peak memory: {peak_mb():.0f} MiB ({'CUDA allocated' if device == 'cuda' else 'process max RSS'})")
    write(args.out, {"model": t.model.name, "device": device, "prompts": len(texts), "new_tokens": args.new_tokens,
                     "batch": args.batch, "tokens_per_s_batched": round(tps_b, 1), "tokens_per_s_one_by_one": round(tps_1, 1),
                     "ratio_batched_one": round(tps_b / tps_1, 2), "lora_rank": t.lora.rank,
                     "lora_batch": cfg.batch_size, "lora_max_length": cfg.max_length, "lora_steps": cfg.steps,
                     "lora_s_per_step": round(res["seconds_per_step"], 2), "peak_mib": round(peak_mb())})


if __name__ == "__main__":
    main()
