"""The tweet-writing LM, one per regime: LoRA fine-tuning on the regime's training prompts (stage
train_llm) and the test rows written by the fine-tuned and the base model (stage generate_text).

Fine-tuning puts the loss on the completion only. Checkpoints live under `train_llm.checkpoint_dir`
keyed by a fingerprint of the model, params and data, so an interrupted run resumes where it stopped
and a changed run starts over. With `train_llm.image_prefix.enabled`, each row's image (the data/media
manifest) becomes prefix embeddings in front of the prompt (lm/prefix.py); rows without a readable
image are text-only, counted. Generation gives both models the same prompts, decoding params and rows
(at most `generate.max_eval_rows` per regime and split, a seeded draw); an adapter trained with an
image prefix writes each row conditioned on its image, the base model stays text-only.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pandas as pd
import torch

from tweetsim.config.params import StageError
from tweetsim.data.schema import read_tweets
from tweetsim.data.splits import SplitConfig
from tweetsim.lm import model as llm
from tweetsim.lm import prefix as IP
from tweetsim.lm.config import ImagePrefixConfig, LLMConfig
from tweetsim.lm.generate import GenConfig, generate

log = logging.getLogger(__name__)


def _train_rows(prompts: pd.DataFrame, regime: str, p: LLMConfig, seed: int, data: Path) -> pd.DataFrame:
    """The regime's training prompts in (source, id) order, a seeded draw of `max_train_examples` where set."""
    train = prompts[(prompts["regime"] == regime) & (prompts["split"] == "train")].sort_values(["source", "id"])
    if p.max_train_examples:
        train = train.sample(n=min(len(train), p.max_train_examples), random_state=seed).sort_values(["source", "id"])
    if train.empty:
        raise StageError(f"train_llm: regime {regime} has no training row with content in {data}/prompts.parquet")
    return train


def _with_images(model, examples: list[dict], train: pd.DataFrame, media: pd.DataFrame, enc, ip: ImagePrefixConfig, seed: int,
                 data: Path, regime: str) -> tuple:
    """The image prefix attached to `model` and each example's image feature: (model, counts, image_meta)."""
    feats, has, why = IP.image_features(train.merge(media, on=["source", "id"], how="left"), data / "media",
                                        enc, int(ip.vision.max_images), progress=False, desc="train_llm images")
    for ex, f, h in zip(examples, feats, has):
        ex.update(feat=f, has_image=bool(h))
    model = IP.attach(model, enc.dim, ip.projection, seed)
    images = {"train_with_image": int(has.sum()), "train_text_only": int((~has).sum()), "train_no_image_reasons": why}
    if not has.any():
        log.info(IP.no_images_notice("train_llm", regime, why, "tests/test_image_writer.py"))
    return model, images, {"vision": dataclasses.asdict(ip.vision), "vision_id": enc.id, **images}


def _train_regime(regime: str, train: pd.DataFrame, p: LLMConfig, cfg: llm.TrainConfig, quant, base: str, enc, media,
                  data: Path, models: Path, live: Path, main_process: bool) -> dict:
    """Fine-tune one regime's adapter into `models`/llm/<regime>/ (merged too with `merge`): its report entry."""
    from tweetsim.lm import train as trainloop

    ip = p.image_prefix
    trainloop.set_seed(cfg.seed)
    tok = llm.load_tokenizer(base)
    examples = llm.encode_examples(tok, train["prompt"].tolist(), train["completion"].tolist(), cfg.max_length)
    model = llm.add_lora(llm.load_model(base, quant, p.model.dtype, for_training=True), **dataclasses.asdict(p.lora))
    images, meta = {}, None
    if enc is not None:
        model, images, meta = _with_images(model, examples, train, media, enc, ip, cfg.seed, data, regime)
    keyed = {"model": p.model.name, "quant": quant, "lora": dataclasses.asdict(p.lora), "data": llm.fingerprint([{k: ex[k] for k in ("input_ids", "labels")} for ex in examples]),
             "format": trainloop.CHECKPOINT_FORMAT}  # checkpoints of another training loop never resume
    keyed["cfg"] = {k: v for k, v in cfg.__dict__.items() if enc is not None or k != "projection_lr"}
    if enc is not None:
        keyed.update(image_prefix=dataclasses.asdict(ip), images=llm.fingerprint([ex["feat"] for ex in examples]))
    key = llm.fingerprint(keyed)
    out = models / "llm" / regime
    for stale in (IP.PROJECTOR_FILE, IP.META_FILE):  # a text-only run must not leave an old projector behind
        (out / stale).unlink(missing_ok=True)
    res = llm.train_lora(model, tok, examples, cfg, out, checkpoint_dir=Path(p.checkpoint_dir) / f"{regime}-{key}",
                         live_dir=live / regime, resume=p.resume, image_meta=meta)
    if p.merge and main_process:
        llm.merge_adapter(base, out, out / "merged", p.model.dtype)
        for f in (IP.PROJECTOR_FILE, IP.META_FILE):  # the merged writer keeps its image projector
            if (out / f).is_file():
                shutil.copy2(out / f, out / "merged" / f)
    n_prompt_tokens = sum(lab.count(llm.IGNORE) for lab in (e["labels"] for e in examples))
    n_tokens = sum(len(e["input_ids"]) for e in examples)
    rep = {"train_examples": len(examples), "epochs": cfg.steps * cfg.batch_size * cfg.grad_accum / len(examples),
           "completion_token_fraction": 1 - n_prompt_tokens / n_tokens, **images, **res}
    with_img = f" ({images['train_with_image']} with an image)" if images else ""
    log.info(f"train_llm {regime}: {len(examples)} examples{with_img}, {cfg.steps} steps ({rep['epochs']:.2f} epochs), "
             f"{res['seconds_per_step']:.2f} s/step, final loss {res['final_loss']:.3f} -> {out}")
    return rep


def train_regimes(params: dict, data: Path, models: Path, live: Path = Path("dvclive") / "train_llm",
                  main_process: bool = True) -> dict:
    """The stage train_llm: per regime (`train_llm.regimes`, else split.regimes) the LoRA adapter trained on
    the regime's training prompts (`data`/prompts.parquet) into `models`/llm/<regime>/, its curves into
    `live`/<regime>/. Returns per regime its examples, epochs, completion token fraction, image counts and
    the training loop's figures."""
    p = LLMConfig.from_params(params["train_llm"])
    quant = llm.check_quantization(p.quantization)  # fail before any loading
    ip = p.image_prefix
    cfg = llm.TrainConfig.of(p)
    base = llm.resolve_model(p.model.name, p.model.cache_dir)
    prompts = pd.read_parquet(data / "prompts.parquet")
    enc, media = None, None
    if ip.enabled:
        v = ip.vision
        enc = IP.VisionEncoder(v.backend, v.clip_model, batch_size=int(v.batch_size))
        media = read_tweets(data / "tweets.parquet")[["source", "id", "image_urls", "media"]]
    return {regime: _train_regime(regime, _train_rows(prompts, regime, p, cfg.seed, data), p, cfg, quant, base, enc, media,
                                  data, models, live, main_process)
            for regime in p.regimes or SplitConfig.from_params(params["split"]).regimes}


def _eval_rows(prompts: pd.DataFrame, regime: str, g: GenConfig) -> pd.DataFrame:
    """The regime's prompts of `generate.splits`, at most `max_eval_rows` per split (a seeded draw)."""
    rows = prompts[(prompts["regime"] == regime) & prompts["split"].isin(g.splits)].sort_values(["split", "source", "id"])
    if g.max_eval_rows:
        rows = pd.concat([d.sample(n=min(len(d), g.max_eval_rows), random_state=g.seed)
                          for _, d in rows.groupby("split", sort=True)]).sort_values(["split", "source", "id"])
    return rows


def _generate_regime(regime: str, rows: pd.DataFrame, base, tok, cfg: GenConfig, data: Path, models: Path) -> tuple:
    """The regime's rows written by its adapter (with its images where it has a projector) and by the base
    model: ({model name: texts}, report entry, the base model with the adapter taken out again)."""
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(base, str(models / "llm" / regime)).eval()
    writer, meta = IP.with_projector(tuned, models / "llm" / regime)
    rep = {"rows": len(rows)}
    feats = has = None
    if meta is not None:
        tweets = read_tweets(data / "tweets.parquet")[["source", "id", "image_urls", "media"]]
        feats, has, why = IP.image_features(rows.merge(tweets, on=["source", "id"], how="left"), data / "media",
                                            IP.encoder_for(meta), int(meta["vision"]["max_images"]), progress=False)
        rep.update(rows_with_image=int(has.sum()), rows_text_only=int((~has).sum()), no_image_reasons=why)
        log.info(f"generate_text {regime}: image-conditioned writer, {int(has.sum())} of {len(rows)} rows with an image ({why})")
    texts = {}
    for name, model in (("llm_lora", writer), ("llm_base", None)):
        if model is None:  # the same weights with the adapter switched off: the base model
            with tuned.disable_adapter():
                texts[name], stats = generate(tuned, tok, rows["prompt"].tolist(), cfg, progress=True)
        else:
            texts[name], stats = generate(model, tok, rows["prompt"].tolist(), cfg, progress=True, feats=feats, has_image=has)
        rep[f"{name}_new_tokens"] = stats["new_tokens"]
        rep[f"{name}_empty"] = sum(not s for s in texts[name])
        log.info(f"generate_text {regime} {name}: {len(texts[name])} rows, {stats['new_tokens']} tokens, "
                 f"{stats['new_tokens'] / max(stats['seconds'], 1e-9):.1f} tokens/s")
    return texts, rep, tuned.unload()  # the next regime starts from the clean base


def generate_regimes(params: dict, data: Path, models: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """The stage generate_text: per regime (`train_llm.regimes`, else split.regimes) the rows of
    `data`/prompts.parquet written by the regime's adapter (`models`/llm/<regime>/, `llm_lora`) and by the
    base model (`llm_base`). Returns ({name: `regime,source,id,pred_content`}, per regime the rows,
    generated tokens, empty answers and image counts)."""
    cfg, t = GenConfig.from_params(params["generate"]), LLMConfig.from_params(params["train_llm"])
    quant = llm.check_quantization(t.quantization)
    if not torch.cuda.is_available():
        torch.set_num_threads(t.num_threads)
    base_path = llm.resolve_model(t.model.name, t.model.cache_dir)
    tok = llm.load_tokenizer(base_path)
    prompts = pd.read_parquet(data / "prompts.parquet")
    base = llm.load_model(base_path, quant, t.model.dtype).eval()
    preds, report = {"llm_lora": [], "llm_base": []}, {}
    for regime in t.regimes or SplitConfig.from_params(params["split"]).regimes:
        rows = _eval_rows(prompts, regime, cfg)
        texts, report[regime], base = _generate_regime(regime, rows, base, tok, cfg, data, models)
        for name in preds:
            preds[name].append(pd.DataFrame({"regime": regime, "source": rows["source"].to_numpy(),
                                             "id": rows["id"].to_numpy(), "pred_content": texts[name]}))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in preds.items()}, report
