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

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tweetsim.config.params import StageError
from tweetsim.data.splits import SplitConfig
from tweetsim.likes import features as F
# the prompt and the answer's words (tweetsim.likes.prompts), re-exported as B.<name>
from tweetsim.likes.prompts import (IMAGE_LINE, NO_IMAGE_LINE, QUESTION, SYSTEM, parse_likes,  # noqa: F401
                                    render, round_sig, user_prompt, verbalise_likes)
from tweetsim.lm import model as llm
from tweetsim.lm.config import BehaviourLMConfig, LoopConfig
from tweetsim.lm.save import save_adapter, save_tokenizer
# the vision side and the prefix model are shared with the tweet writer; re-exported as B.<name>
from tweetsim.lm.prefix import (PrefixLM, Projector, TinyRandomEncoder, VisionEncoder, attach, collate,  # noqa: F401
                                   image_features, no_images_notice)

log = logging.getLogger(__name__)

NAME = "behaviour_lm"  # model name in evaluate.likes_models and the predictions file


# ------------------------------------------------------------------------------------- history

def history(rows: pd.DataFrame, train: pd.DataFrame | None = None, tables: dict | None = None) -> list[dict]:
    """features.history_features as one dict per row (shifted for training rows: features.history_features)."""
    h = F.history_features(rows, train=train, tables=tables)
    return h.to_dict("records")


# ---------------------------------------------------------------------------------------- model

def load_base(p: BehaviourLMConfig, for_training: bool):
    """(tokenizer, LM) from params `model` / `quantization`, via tweetsim.lm.model."""
    q = llm.check_quantization(p.quantization)
    path = llm.resolve_model(p.model.name, p.model.cache_dir)
    return llm.load_tokenizer(path), llm.load_model(path, q, p.model.dtype, for_training=for_training)


def build_model(p: BehaviourLMConfig, feat_dim: int, seed: int = 13):
    tok, base = load_base(p, for_training=True)
    return tok, attach(llm.add_lora(base, **dataclasses.asdict(p.lora)), feat_dim, p.projection, seed)


# ------------------------------------------------------------------------------------- examples

def encode(tok, prompt: str, answer: str | None, max_length: int) -> dict:
    """Token ids (and labels with the prompt masked when `answer` is given); prompt cut from the left."""
    if answer is None:
        ids = tok(prompt, add_special_tokens=False)["input_ids"][-max_length:]
        return {"input_ids": ids}
    return llm.encode_example(tok, prompt, answer, max_length)


# -------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """The training loop's settings: section `train_behaviour_lm` of params.yaml (its values and comments are the defaults)."""

    projection_lr: float

    @classmethod
    def from_params(cls, p: dict) -> "TrainConfig":
        """From section `train_behaviour_lm` (checked whole, as likes.config.BehaviourLMConfig)."""
        return cls.of(BehaviourLMConfig.from_params(p))

    @classmethod
    def of(cls, p: BehaviourLMConfig) -> "TrainConfig":
        return cls(**{f.name: getattr(p, f.name) for f in dataclasses.fields(cls)})


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
    p = BehaviourLMConfig.from_params(state["params"])
    _, base = load_base(p, for_training=False)
    tok = llm.load_tokenizer(str(folder / "adapter"))
    lm = PeftModel.from_pretrained(base, str(folder / "adapter"))
    proj = Projector(state["feat_dim"], base.config.hidden_size, int(p.projection.n_prefix), p.projection.kind)
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


# ------------------------------------------------------------------------------- the stage's run

def _cap(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))


def _labelled_table(data: Path) -> pd.DataFrame:
    """Every row with likes and its splits, media text joined, in (source, id) order."""
    from tweetsim.data.schema import read_tweets
    from tweetsim.data.sides import join_from

    table = read_tweets(data / "tweets.parquet").merge(pd.read_parquet(data / "splits.parquet"), on=["source", "id"])
    table = table[table["likes"].notna()].sort_values(["source", "id"]).reset_index(drop=True)
    table = join_from(table, data)
    for col in ("company", "username"):
        table[col] = table[col].fillna("").astype(str)
    return table


def _fallback_predictions(data: Path, p: BehaviourLMConfig) -> pd.DataFrame:
    path = data / "predictions" / "likes" / f"{p.fallback_model}.parquet"
    if not path.is_file():
        raise StageError(f"train_behaviour_lm: fallback predictions {path} are missing "
                         f"(train_behaviour_lm.fallback_model={p.fallback_model!r}: run its stage first)")
    return pd.read_parquet(path)


def _train_regime(regime: str, table: pd.DataFrame, ev: np.ndarray, fallback: np.ndarray, train_median: float,
                  p: BehaviourLMConfig, cfg: TrainConfig, enc, data: Path, models: Path, live: Path, main_process: bool) -> tuple:
    """Train the LM of one regime on its train rows, save it (the main process) and predict a seeded cap
    of its val and test rows (`ev`): (positions in `ev` answered, their likes, the report's entries)."""
    from tweetsim.lm import train as trainloop
    from tweetsim.likes.metrics import likes_metrics

    side = table[regime].to_numpy()
    tr = _cap(np.flatnonzero(side == "train"), p.max_train_examples, cfg.seed)
    train_rows = table[side == "train"]
    tables = {lv: F.history_table(train_rows, lv) for lv in F.LEVELS}
    hist_tr = history(train_rows, train=train_rows)  # shifted: earlier rows only
    hist_tr = [hist_tr[i] for i in np.searchsorted(np.flatnonzero(side == "train"), tr)]
    rows_tr = table.iloc[tr]
    threshold = float(p.high_threshold) if p.high_threshold is not None else train_median
    feats, has, why = image_features(rows_tr, data / "media", enc, int(p.vision.max_images), progress=p.progress)
    answers = [verbalise_likes(v, threshold) for v in rows_tr["likes"].astype(float)]
    trainloop.set_seed(cfg.seed)
    tok, model = build_model(p, enc.dim, cfg.seed)
    examples = make_examples(tok, rows_tr, hist_tr, feats, has, cfg.max_length, answers, int(p.max_field_chars))
    # checkpoints keyed by every param and the encoded data: only an identical interrupted run resumes
    key = llm.fingerprint({"p": p.to_params(), "vision": enc.id, "format": trainloop.CHECKPOINT_FORMAT, "data": llm.fingerprint(
        [{"ids": e["input_ids"], "labels": e["labels"], "feat": e["feat"]} for e in examples])})
    ckpt = Path(p.checkpoint_dir) / f"{regime}-{key}" if p.checkpoint_dir else None
    res = train(model, tok, examples, cfg, live_dir=live / regime, progress=p.progress, checkpoint_dir=ckpt,
                resume=bool(p.resume))
    if main_process:
        # history: every row with likes, the account history the CLI uses
        save(model, tok, models / NAME / regime, {"params": p.to_params(), "feat_dim": enc.dim, "vision": enc.id, "threshold": threshold,
                                                  "train_median": train_median, "regime": regime},
             {lv: F.history_table(table, lv) for lv in F.LEVELS})
    # predict: a seeded cap per split keeps CPU cost bounded; the rest keep the fallback
    pick = np.concatenate([_cap(np.flatnonzero(side[ev] == s), p.max_eval_rows, cfg.seed) for s in ("val", "test")])
    rows_ev = table.iloc[ev[pick]]
    f_ev, h_ev, why_ev = image_features(rows_ev, data / "media", enc, int(p.vision.max_images), progress=p.progress)
    ex_ev = make_examples(tok, rows_ev, history(rows_ev, tables=tables), f_ev, h_ev, cfg.max_length,
                          max_field_chars=int(p.max_field_chars))
    likes, raw, used = predict(model, tok, ex_ev, fallback[pick], int(p.eval_batch_size), int(p.max_new_tokens),
                               progress=p.progress, constrain=bool(p.constrain))
    is_test = side[ev[pick]] == "test"
    y = table.iloc[ev[pick]]["likes"].astype(float).to_numpy()
    rep = {
        "train_examples": len(examples), "train_with_image": int(has.sum()), "train_text_only": int((~has).sum()),
        "train_no_image_reasons": why, "final_loss": res["final_loss"], "threshold": threshold,
        "projection_grad_norm_step1": res["projection_grad_norm"],
        "lm_answered_rows": int(len(pick)), "lm_with_image": int(h_ev.sum()), "lm_text_only": int((~h_ev).sum()),
        "unparsable_answers_took_fallback": int(used.sum()),
        "rows_not_answered_by_lm_took_fallback": int(len(ev) - len(pick)),
        "answered_test_rows": {"lm": likes_metrics(y[is_test], likes[is_test], train_median),
                               p.fallback_model: likes_metrics(y[is_test], fallback[pick][is_test], train_median)}
        if is_test.sum() > 1 else None,
        "example_answers": raw[:3]}
    if int(has.sum() + h_ev.sum()) == 0:
        log.info(no_images_notice("train_behaviour_lm", regime, f"train: {why}; predicted: {why_ev}", "tests/test_behaviour_lm.py"))
    log.info(f"train_behaviour_lm {regime}: {len(examples)} train rows ({int(has.sum())} with image), {cfg.steps} steps, "
             f"{res['seconds_per_step']:.2f} s/step, loss {res['final_loss']:.3f}; LM answered {len(pick)} of {len(ev)} "
             f"val+test rows ({int(h_ev.sum())} with image), {int(used.sum())} unparsable -> {p.fallback_model}; "
             f"{len(ev) - len(pick)} rows not answered -> {p.fallback_model}")
    return pick, likes, rep


def train_stage(params: dict, data: Path, models: Path, live: Path = Path("dvclive") / "train_behaviour_lm",
                main_process: bool = True) -> tuple[pd.DataFrame, dict]:
    """The stage train_behaviour_lm: per trained regime (`train_behaviour_lm.regimes` within split.regimes)
    the LM trained on its train rows with likes, saved to `models`/behaviour_lm/<regime>/ (by the main
    process) and asked for a seeded cap of its val and test rows. Every val+test row with likes of every
    regime gets a prediction: the rows the LM did not answer, or answered unparsably, take the fallback
    model's. Returns (predictions `regime,source,id,pred_likes`, per regime the counts and figures of
    metrics/train_behaviour_lm.json)."""
    p = BehaviourLMConfig.from_params(params["train_behaviour_lm"])
    llm.check_quantization(p.quantization)  # fail before any loading
    cfg = TrainConfig.of(p)
    all_regimes = SplitConfig.from_params(params["split"]).regimes
    trained = [r for r in (p.regimes or all_regimes) if r in all_regimes]
    table = _labelled_table(data)
    fb_all = _fallback_predictions(data, p)
    enc = VisionEncoder(p.vision.backend, p.vision.clip_model, batch_size=int(p.vision.batch_size))
    preds, report = [], {}
    for regime in all_regimes:
        side = table[regime].to_numpy()
        train_median = float(table.loc[side == "train", "likes"].astype(float).median())
        ev = np.flatnonzero(np.isin(side, ["val", "test"]))
        fb = table.iloc[ev][["source", "id"]].merge(fb_all[fb_all["regime"] == regime], on=["source", "id"], how="left")
        fallback = fb["pred_likes"].to_numpy(float)
        no_fb = int(np.isnan(fallback).sum())
        fallback = np.where(np.isnan(fallback), train_median, fallback)  # fallback of the fallback: counted
        pred = fallback.copy()
        rep = {"eval_rows": int(len(ev)), "fallback_missing_rows_took_train_median": no_fb}
        if regime in trained:
            pick, likes, got = _train_regime(regime, table, ev, fallback, train_median, p, cfg, enc, data, models, live,
                                             main_process)
            pred[pick] = likes
            rep.update(got)
        else:
            rep.update({"lm_answered_rows": 0, "rows_not_answered_by_lm_took_fallback": int(len(ev))})
            log.info(f"train_behaviour_lm {regime}: NOT TRAINED (not in train_behaviour_lm.regimes): all {len(ev)} val+test "
                     f"rows carry the {p.fallback_model} prediction under the name {NAME}")
        report[regime] = rep
        preds.append(pd.DataFrame({"regime": regime, "source": table.iloc[ev]["source"].to_numpy(),
                                   "id": table.iloc[ev]["id"].to_numpy(), "pred_likes": pred}))
    return pd.concat(preds).sort_values(["regime", "source", "id"]).reset_index(drop=True), report
