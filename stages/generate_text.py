"""generate_text: per regime, write tweets for test rows with the fine-tuned model and the base model.

Both models get the same prompts (data/prompts.parquet) and decoding params, on the same rows
(at most `generate.max_eval_rows` per regime and split, chosen by a seeded draw, so evaluate
compares them on the rows every text model shares). Writes data/predictions/text/llm_lora.parquet
and data/predictions/text/llm_base.parquet (`regime,source,id,pred_content`) and
metrics/generate.json (rows and generated tokens per regime). An adapter trained with
`train_llm.image_prefix` (projector.pt beside it) writes each row conditioned on its image
(data/media manifest; rows without one text-only, counted); llm_base stays the text-only base.
usage: python stages/generate_text.py [params.yaml] [data] [models] [metrics]
"""

from tweetsim.apps.entry import stage  # first: it holds the CPU kernels to AVX2 before numpy loads

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from tweetsim.lm import prefix as IP
from tweetsim.lm import model as llm
from tweetsim.lm.generate import GenConfig, generate
from tweetsim.config.params import load_params
from tweetsim.data.schema import read_tweets


@stage
def main(params_path: str = "params.yaml", data_dir: str = "data", models_dir: str = "models", metrics_dir: str = "metrics") -> None:
    params = load_params(params_path)
    g, t = params["generate"], params["train_llm"]
    cfg = GenConfig.from_params(g)
    quant = llm.check_quantization(t["quantization"])
    if not torch.cuda.is_available():
        torch.set_num_threads(t["num_threads"])
    base_path = llm.resolve_model(t["model"]["name"], t["model"]["cache_dir"])
    tok = llm.load_tokenizer(base_path)
    prompts = pd.read_parquet(Path(data_dir) / "prompts.parquet")
    regimes = t["regimes"] or params["split"]["regimes"]
    base = llm.load_model(base_path, quant, t["model"]["dtype"]).eval()
    preds = {"llm_lora": [], "llm_base": []}
    report = {}
    for regime in regimes:
        rows = prompts[(prompts["regime"] == regime) & prompts["split"].isin(g["splits"])].sort_values(["split", "source", "id"])
        if g["max_eval_rows"]:
            rows = pd.concat([d.sample(n=min(len(d), g["max_eval_rows"]), random_state=cfg.seed)
                              for _, d in rows.groupby("split", sort=True)]).sort_values(["split", "source", "id"])
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(base, str(Path(models_dir) / "llm" / regime)).eval()
        writer, meta = IP.with_projector(tuned, Path(models_dir) / "llm" / regime)
        report[regime] = {"rows": len(rows)}
        feats = has = None
        if meta is not None:
            tweets = read_tweets(Path(data_dir) / "tweets.parquet")[["source", "id", "image_urls", "media"]]
            feats, has, why = IP.image_features(rows.merge(tweets, on=["source", "id"], how="left"), Path(data_dir) / "media",
                                                IP.encoder_for(meta), int(meta["vision"]["max_images"]), progress=False)
            report[regime].update(rows_with_image=int(has.sum()), rows_text_only=int((~has).sum()), no_image_reasons=why)
            print(f"generate_text {regime}: image-conditioned writer, {int(has.sum())} of {len(rows)} rows with an image ({why})")
        for name, model in (("llm_lora", writer), ("llm_base", None)):
            if model is None:  # the same weights with the adapter switched off: the base model
                with tuned.disable_adapter():
                    texts, stats = generate(tuned, tok, rows["prompt"].tolist(), cfg, progress=True)
            else:
                texts, stats = generate(model, tok, rows["prompt"].tolist(), cfg, progress=True, feats=feats, has_image=has)
            preds[name].append(pd.DataFrame({"regime": regime, "source": rows["source"].to_numpy(),
                                             "id": rows["id"].to_numpy(), "pred_content": texts}))
            report[regime][f"{name}_new_tokens"] = stats["new_tokens"]
            report[regime][f"{name}_empty"] = sum(not s for s in texts)
            print(f"generate_text {regime} {name}: {len(texts)} rows, {stats['new_tokens']} tokens, "
                  f"{stats['new_tokens'] / max(stats['seconds'], 1e-9):.1f} tokens/s")
        base = tuned.unload()  # take the adapter out again: the next regime starts from the clean base
    out = Path(data_dir) / "predictions" / "text"
    out.mkdir(parents=True, exist_ok=True)
    for name, parts in preds.items():
        pd.concat(parts, ignore_index=True).to_parquet(out / f"{name}.parquet", index=False)
    Path(metrics_dir).mkdir(exist_ok=True)
    (Path(metrics_dir) / "generate.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print("generate_text: " + "; ".join(f"{r}: {d['rows']} rows" for r, d in report.items()) + f" -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
