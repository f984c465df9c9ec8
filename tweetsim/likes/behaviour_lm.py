"""Likes from one language model that sees the image (GIT-LLM / LCBM style).

    image files --frozen vision encoder--> pooled feature (mean over the tweet's images)
                --trainable projection (linear | MLP)--> N prefix embeddings
    [prefix][chat-templated prompt: metadata + account history + tweet + caption + OCR][answer]
                --causal LM with LoRA (tweetsim.lm.model)--> "high, about 1200 likes"

- Vision encoder (`vision.backend`): `clip` (CLIP image features, where the weights load offline;
  otherwise EfficientNet-Lite0 stands in, said loudly), `efficientnet_lite0` (default: the pooled
  1280-d features of tweetsim.vision.caption's backbone), `tiny-random` (tests). It is frozen, so each
  row's feature is computed once, before training.
- A row without a readable image file gets no prefix: its prefix positions are masked out of
  attention, so it is exactly the text-only model on its caption text. Which rows had an image is
  counted and printed.
- Prompt and answer words (the user turn, "high, about 1200 likes", their parser): tweetsim.likes.prompts.
- Target: the likes rounded to 2 significant digits and LCBM's high/low word (threshold: the
  regime's training median unless set), loss on the answer only (prompt positions = IGNORE).
- Decoding: greedy; with `constrain` the answer follows the template (high / low chosen by the
  model's score, ', about ' forced, then only digits, ' likes', end of turn), then `parse_likes`; an answer without a like count never raises: the row takes the
  fallback prediction (the bucket model) and is counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tweetsim.config.params import from_section
from tweetsim.likes import features as F
# the prompt and the answer's words (tweetsim.likes.prompts), re-exported as B.<name>
from tweetsim.likes.prompts import (IMAGE_LINE, NO_IMAGE_LINE, QUESTION, SYSTEM, parse_likes,  # noqa: F401
                                    render, round_sig, user_prompt, verbalise_likes)
from tweetsim.lm import model as llm
from tweetsim.lm.save import save_adapter, save_tokenizer
# the vision side and the prefix model are shared with the tweet writer; re-exported as B.<name>
from tweetsim.lm.prefix import (PrefixLM, Projector, TinyRandomEncoder, VisionEncoder, attach, collate,  # noqa: F401
                                   image_features)

NAME = "behaviour_lm"  # model name in evaluate.likes_models and the predictions file


# ------------------------------------------------------------------------------------- history

def history(rows: pd.DataFrame, train: pd.DataFrame | None = None, tables: dict | None = None) -> list[dict]:
    """features.history_features as one dict per row (shifted for training rows: features.history_features)."""
    h = F.history_features(rows, train=train, tables=tables)
    return h.to_dict("records")


# ---------------------------------------------------------------------------------------- model

def load_base(p: dict, for_training: bool):
    """(tokenizer, LM) from params `model` / `quantization`, via tweetsim.lm.model."""
    q = llm.check_quantization(p["quantization"])
    path = llm.resolve_model(p["model"]["name"], p["model"]["cache_dir"])
    return llm.load_tokenizer(path), llm.load_model(path, q, p["model"]["dtype"], for_training=for_training)


def build_model(p: dict, feat_dim: int, seed: int = 13):
    tok, base = load_base(p, for_training=True)
    return tok, attach(llm.add_lora(base, **p["lora"]), feat_dim, p["projection"], seed)


# ------------------------------------------------------------------------------------- examples

def encode(tok, prompt: str, answer: str | None, max_length: int) -> dict:
    """Token ids (and labels with the prompt masked when `answer` is given); prompt cut from the left."""
    if answer is None:
        ids = tok(prompt, add_special_tokens=False)["input_ids"][-max_length:]
        return {"input_ids": ids}
    return llm.encode_example(tok, prompt, answer, max_length)


# -------------------------------------------------------------------------------------- training

@dataclass
class TrainConfig:
    """The training loop's settings: section `train_behaviour_lm` of params.yaml (its values and comments are the defaults)."""

    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    projection_lr: float
    warmup_steps: int
    max_length: int
    seed: int
    log_every: int
    num_threads: int
    save_every: int  # checkpoint period (steps) when a checkpoint_dir is given; 0: only at the end

    @classmethod
    def from_params(cls, p: dict) -> "TrainConfig":
        # the other keys of the section are read by the stage and the model's loading
        return from_section(cls, "train_behaviour_lm", p, ignore=(
            "model", "quantization", "lora", "vision", "projection", "regimes", "fallback_model", "high_threshold",
            "max_field_chars", "max_train_examples", "max_eval_rows", "eval_batch_size", "max_new_tokens", "constrain",
            "resume", "checkpoint_dir", "progress"))


def train(model: PrefixLM, tok, examples: list[dict], cfg: TrainConfig, live_dir: str | Path | None = None,
          progress: bool = True, checkpoint_dir: str | Path | None = None, resume: bool = True) -> dict:
    """Instruction-tune LoRA + projection (tweetsim.lm.train's Trainer); returns steps, seconds_per_step, final_loss,
    losses, resumed_from, projection_grad_norm (of the first step run: the image path is really trained when > 0).
    Checkpoints (LoRA, projector, optimizer, scheduler, RNG) as tweetsim.lm.model's, in `checkpoint_dir`: an interrupted
    run resumes, a finished one starts over."""
    import shutil

    from tweetsim.lm import train as trainloop

    trainloop.set_seed(cfg.seed)
    if not examples:
        raise ValueError("train_behaviour_lm: no training example")
    groups = [{"params": [p for p in model.lm.parameters() if p.requires_grad], "lr": cfg.lr},
              {"params": list(model.projector.parameters()), "lr": cfg.projection_lr}]
    args = trainloop.training_args(checkpoint_dir or trainloop.scratch_dir(), steps=cfg.steps, batch_size=cfg.batch_size,
                                   grad_accum=cfg.grad_accum, lr=cfg.lr, seed=cfg.seed, max_grad_norm=1.0,
                                   save_every=cfg.save_every if checkpoint_dir else None, log_every=cfg.log_every,
                                   progress=progress, num_threads=cfg.num_threads)
    trainer = trainloop.LoopTrainer(model=model, args=args, train_dataset=list(examples),
                                    data_collator=lambda b: collate(b, tok.pad_token_id),
                                    lr_lambda=trainloop.warmup_cosine(cfg.warmup_steps, cfg.steps), param_groups=groups,
                                    grad_probe=model.projector)
    if live_dir is not None:
        trainer.add_callback(trainloop.LiveCallback(live_dir, trainer))
    res = trainloop.run(trainer, checkpoint_dir, resume)
    if not checkpoint_dir:
        shutil.rmtree(args.output_dir, ignore_errors=True)
    losses = res["losses"]
    return {"steps": cfg.steps, "resumed_from": res["resumed_from"], "seconds_per_step": res["seconds_per_step"],
            "losses": losses, "final_loss": float(np.mean(losses[-5:])), "projection_grad_norm": trainer.first_grad_norm}


def save(model: PrefixLM, tok, folder: str | Path, state: dict, history_tables: dict[str, pd.DataFrame]) -> None:
    """adapter/ (LoRA + tokenizer), projector.pt, state.json (what loading and prompting need), and
    history_<level>.parquet (the account and brand history a new row's prompt is built from)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_adapter(model.lm, folder / "adapter")
    save_tokenizer(tok, folder / "adapter")
    torch.save(model.projector.state_dict(), folder / "projector.pt")
    (folder / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    for level, table in history_tables.items():
        table.to_parquet(folder / f"history_{level}.parquet")


def load_history(folder: str | Path) -> dict[str, pd.DataFrame]:
    return {lv: pd.read_parquet(Path(folder) / f"history_{lv}.parquet") for lv in F.LEVELS}


def trained_regimes(models: str | Path) -> list[str]:
    root = Path(models) / NAME
    return sorted(d.name for d in root.glob("*") if (d / "state.json").is_file()) if root.is_dir() else []


def load(folder: str | Path):
    """(tokenizer, PrefixLM in eval mode, state) from a `save`d folder."""
    from peft import PeftModel

    folder = Path(folder)
    state = json.loads((folder / "state.json").read_text())
    p = state["params"]
    _, base = load_base(p, for_training=False)
    tok = llm.load_tokenizer(str(folder / "adapter"))
    lm = PeftModel.from_pretrained(base, str(folder / "adapter"))
    proj = Projector(state["feat_dim"], base.config.hidden_size, int(p["projection"]["n_prefix"]), p["projection"]["kind"])
    proj.load_state_dict(torch.load(folder / "projector.pt", map_location="cpu"))
    proj.to(lm.get_input_embeddings().weight.device)
    return tok, PrefixLM(lm, proj).eval(), state


# ------------------------------------------------------------------------------------ prediction

@dataclass
class Grammar:
    """The answer template as decoding constraints: `word_first` (first token of high / low, whose
    logits choose the word), `prefix` (tokens of 'high, about ' / 'low, about ', forced), and
    `number` (what may follow: digit tokens, the tokens of ' likes', end of turn)."""

    word_first: dict
    prefix: dict
    number: list


def answer_grammar(tok) -> Grammar:
    word_first, prefix, number = {}, {}, set()
    for word, threshold in (("high", 0.0), ("low", 1e12)):
        for v in (5000, 7, 1200):
            ids = tok(verbalise_likes(v, threshold), add_special_tokens=False)["input_ids"]
            k = max(i for i in range(len(ids) + 1) if not any(c.isdigit() for c in tok.decode(ids[:i])))
            prefix.setdefault(word, ids[:k])  # tokenised exactly as in training (the whole answer at once)
            number |= {t for t in ids[k:] if not any(c.isdigit() for c in tok.decode([t]))}  # ' likes'
        word_first[word] = prefix[word][0]
    for tid in range(len(tok)):
        piece = tok.decode([tid]).strip()
        if piece.isdigit() and piece.isascii():
            number.add(tid)
    for t in (tok.eos_token_id, tok.convert_tokens_to_ids(llm.end_of_turn(tok))):
        if isinstance(t, int) and t >= 0:
            number.add(t)
    return Grammar(word_first, prefix, sorted(number))


class AllowOnly:
    """Logits processor: every token outside `ids` gets -inf (constrained decoding)."""

    def __init__(self, ids: list[int]):
        self.ids = torch.tensor(ids, dtype=torch.long)

    def __call__(self, input_ids, scores):
        mask = torch.full_like(scores, float("-inf"))
        mask[:, self.ids.to(scores.device)] = 0
        return scores + mask


@torch.inference_mode()
def generate_answers(model: PrefixLM, tok, examples: list[dict], batch_size: int = 16, max_new_tokens: int = 10,
                     progress: bool = True, constrain: bool = True) -> list[str]:
    """Greedy answers, one per example (prompt ids + feat + has_image), in order.

    With `constrain` the answer follows the template: high or low (whichever first token the model
    scores higher, LCBM's two-way choice), then ', about ' forced, then only digits, ' likes' and
    end of turn. Free decoding otherwise (the parser and the fallback handle what comes out)."""
    from tqdm.auto import tqdm
    from transformers import LogitsProcessorList

    gram = answer_grammar(tok) if constrain else None
    procs = LogitsProcessorList([AllowOnly(gram.number)] if constrain else [])
    model.eval()
    dev = model.lm.get_input_embeddings().weight.device
    order = np.argsort([len(e["input_ids"]) for e in examples], kind="stable")  # less padding
    out: list[str] = [""] * len(examples)
    eos = [t for t in {tok.eos_token_id, tok.convert_tokens_to_ids(llm.end_of_turn(tok))} if isinstance(t, int) and t >= 0]

    def run(batch_examples):
        b = {k: v.to(dev) for k, v in collate(batch_examples, tok.pad_token_id, left=True).items()}
        return model.build(b["input_ids"], b["attention_mask"], b["feats"], b["has_image"])

    for s in tqdm(range(0, len(order), batch_size), desc="behaviour_lm predict", disable=not progress):
        idx = order[s:s + batch_size]
        batch = [examples[i] for i in idx]
        heads = [""] * len(idx)
        if constrain:
            built = run(batch)
            pos = (built["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
            last = model.lm(**built, position_ids=pos).logits[:, -1].float()
            words = ["high" if last[j, gram.word_first["high"]] >= last[j, gram.word_first["low"]] else "low" for j in range(len(idx))]
            batch = [{**e, "input_ids": list(e["input_ids"]) + gram.prefix[w]} for e, w in zip(batch, words)]
            heads = [tok.decode(gram.prefix[w]) for w in words]
        gen = model.lm.generate(**run(batch), max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                pad_token_id=tok.pad_token_id, logits_processor=procs)
        for i, head, row in zip(idx, heads, gen):
            out[i] = (head + tok.decode(row, skip_special_tokens=True)).strip()
    return out


def predict(model: PrefixLM, tok, examples: list[dict], fallback: np.ndarray, batch_size: int = 16,
            max_new_tokens: int = 10, progress: bool = True, constrain: bool = True) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(likes, raw answers, used_fallback mask): an unparsable answer takes `fallback[i]`."""
    answers = generate_answers(model, tok, examples, batch_size, max_new_tokens, progress, constrain)
    parsed = [parse_likes(a) for a in answers]
    used = np.array([v is None for v in parsed], bool)
    likes = np.array([fallback[i] if v is None else v for i, v in enumerate(parsed)], float)
    return likes, answers, used


def make_examples(tok, rows: pd.DataFrame, hists: list[dict], feats: np.ndarray, has: np.ndarray, max_length: int,
                  answers: list[str] | None = None, max_field_chars: int = 280) -> list[dict]:
    out = []
    for i, row in enumerate(rows.to_dict("records")):
        prompt = render(tok, user_prompt(row, hists[i], bool(has[i]), max_field_chars))
        ex = encode(tok, prompt, None if answers is None else answers[i], max_length)
        ex.update(feat=feats[i], has_image=bool(has[i]))
        out.append(ex)
    return out
