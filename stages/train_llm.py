"""train_llm: LoRA fine-tuning of the causal LM named in params, per regime, loss on the completion only.

Reads data/prompts.parquet (train rows of each regime), writes the adapter to models/llm/<regime>/
(and models/llm/<regime>/merged/ with `merge: true`), training curves to dvclive/train_llm/<regime>/,
and metrics/train_llm.json. Checkpoints live under `checkpoint_dir` keyed by a fingerprint of the
model, params and data, so an interrupted run resumes where it stopped and a changed run starts over.
With `image_prefix.enabled`, each row's image (data/media manifest) becomes prefix embeddings in
front of the prompt (tweetsim.lm.prefix); rows without a readable image are text-only, counted
in the metrics and in models/llm/<regime>/image_prefix.json beside projector.pt.
Several GPUs: `accelerate launch --config_file configs/accelerate/multi_gpu.yaml stages/train_llm.py`.
usage: python stages/train_llm.py [params.yaml] [data] [models] [metrics]
"""

from tweetsim.apps.entry import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from tweetsim.lm import prefix as IP
from tweetsim.lm import model as llm
from tweetsim.lm import train as trainloop
from tweetsim.config.params import load_params
from tweetsim.data.schema import read_tweets

MAIN = int(os.environ.get("RANK", "0")) == 0  # under `accelerate launch`, one process writes the files


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    p = params["train_llm"]
    quant = llm.check_quantization(p["quantization"])  # fail before any loading
    ip = p["image_prefix"]
    cfg = llm.TrainConfig.from_params({**p, "projection_lr": ip["projection_lr"]})
    base = llm.resolve_model(p["model"]["name"], p["model"]["cache_dir"])
    prompts = pd.read_parquet(Path(data_dir) / "prompts.parquet")
    regimes = p["regimes"] or params["split"]["regimes"]
    enc, media = None, None
    if ip["enabled"]:
        v = ip["vision"]
        enc = IP.VisionEncoder(v["backend"], v.get("clip_model"), batch_size=int(v["batch_size"]))
        media = read_tweets(Path(data_dir) / "tweets.parquet")[["source", "id", "image_urls", "media"]]
    report = {}
    for regime in regimes:
        train = prompts[(prompts["regime"] == regime) & (prompts["split"] == "train")].sort_values(["source", "id"])
        if p.get("max_train_examples"):
            train = train.sample(n=min(len(train), p["max_train_examples"]), random_state=cfg.seed).sort_values(["source", "id"])
        if train.empty:
            raise SystemExit(f"train_llm: regime {regime} has no training row with content in {data_dir}/prompts.parquet")
        trainloop.set_seed(cfg.seed)
        tok = llm.load_tokenizer(base)
        examples = llm.encode_examples(tok, train["prompt"].tolist(), train["completion"].tolist(), cfg.max_length)
        model = llm.add_lora(llm.load_model(base, quant, p["model"]["dtype"], for_training=True), **p["lora"])
        images, meta = {}, None
        if enc is not None:
            feats, has, why = IP.image_features(train.merge(media, on=["source", "id"], how="left"), Path(data_dir) / "media",
                                                enc, int(ip["vision"]["max_images"]), progress=False, desc="train_llm images")
            for ex, f, h in zip(examples, feats, has):
                ex.update(feat=f, has_image=bool(h))
            model = IP.attach(model, enc.dim, ip["projection"], cfg.seed)
            images = {"train_with_image": int(has.sum()), "train_text_only": int((~has).sum()), "train_no_image_reasons": why}
            meta = {"vision": ip["vision"], "vision_id": enc.id, **images}
            if not has.any():
                print(IP.no_images_notice("train_llm", regime, why, "tests/test_image_writer.py"))
        keyed = {"model": p["model"]["name"], "quant": quant, "lora": p["lora"], "data": llm.fingerprint([{k: ex[k] for k in ("input_ids", "labels")} for ex in examples]),
                 "format": trainloop.CHECKPOINT_FORMAT}  # checkpoints of another training loop never resume
        keyed["cfg"] = {k: v for k, v in cfg.__dict__.items() if enc is not None or k != "projection_lr"}
        if enc is not None:
            keyed.update(image_prefix=ip, images=llm.fingerprint([ex["feat"] for ex in examples]))
        key = llm.fingerprint(keyed)
        out = Path(models_dir) / "llm" / regime
        for stale in (IP.PROJECTOR_FILE, IP.META_FILE):  # a text-only run must not leave an old projector behind
            (out / stale).unlink(missing_ok=True)
        res = llm.train_lora(model, tok, examples, cfg, out, checkpoint_dir=Path(p["checkpoint_dir"]) / f"{regime}-{key}",
                             live_dir=Path("dvclive") / "train_llm" / regime, resume=p["resume"], image_meta=meta)
        if p["merge"] and MAIN:
            llm.merge_adapter(base, out, out / "merged", p["model"]["dtype"])
            for f in (IP.PROJECTOR_FILE, IP.META_FILE):  # the merged writer keeps its image projector
                if (out / f).is_file():
                    shutil.copy2(out / f, out / "merged" / f)
        n_prompt_tokens = sum(lab.count(llm.IGNORE) for lab in (e["labels"] for e in examples))
        n_tokens = sum(len(e["input_ids"]) for e in examples)
        report[regime] = {"train_examples": len(examples), "epochs": cfg.steps * cfg.batch_size * cfg.grad_accum / len(examples),
                          "completion_token_fraction": 1 - n_prompt_tokens / n_tokens, **images, **res}
        with_img = f" ({images['train_with_image']} with an image)" if images else ""
        print(f"train_llm {regime}: {len(examples)} examples{with_img}, {cfg.steps} steps ({report[regime]['epochs']:.2f} epochs), "
              f"{res['seconds_per_step']:.2f} s/step, final loss {res['final_loss']:.3f} -> {out}")
    if not MAIN:
        return
    Path(metrics_dir).mkdir(exist_ok=True)
    # seconds_per_step is machine-dependent: kept out of the metrics file so reruns are byte-identical
    stable = {r: {k: v for k, v in d.items() if k not in ("seconds_per_step", "resumed_from")} for r, d in report.items()}
    (Path(metrics_dir) / "train_llm.json").write_text(json.dumps(stable, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
