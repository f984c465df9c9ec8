"""Batched tweet generation: decoding params, candidates, post-processing.

Prompts are sorted by length and generated in left-padded batches (less padding, one forward pass
for many rows), then put back in input order. Post-processing keeps only the new tokens (the prompt
is stripped), stops at the end of the assistant turn (end-of-turn / eos token, or a new chat-turn
marker if the model runs on), and trims whitespace. With `num_candidates > 1` greedy decoding
becomes beam search (best beam kept) and sampling keeps the candidate with the highest mean token
log-probability.

An prefix.PrefixLM writer is conditioned on each row's image feature (`feats`, `has_image`):
the prefix embeddings go in front of the prompt as `inputs_embeds`; rows without an image (or all
rows when no feature is given) have it masked out and come out as from the text-only model.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from tweetsim.config.params import section_config

TURN_MARKERS = ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "<|endoftext|>", "</s>", "### ")


@section_config("generate")
class GenConfig:
    """Section `generate` of params.yaml (its values and comments are the defaults)."""

    max_new_tokens: int
    batch_size: int
    temperature: float           # 0: greedy
    top_p: float
    repetition_penalty: float    # greedy SmolLM2 loops on emoji without it
    num_candidates: int
    seed: int
    max_prompt_tokens: int       # longer prompts are cut from the left
    splits: list                 # generate_text: the splits of each regime written
    max_eval_rows: int | None    # generate_text: rows per regime and split (a seeded draw; null: all)
    adapter_regime: str          # the adapter `tweetsim generate` and the web app load by default


def stop_token_ids(tok) -> list[int]:
    ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    vocab = tok.get_vocab()
    for m in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|im_start|>"):
        if m in vocab:
            ids.add(vocab[m])
    return sorted(ids)


def postprocess(text: str) -> str:
    """Cut at the first chat-turn marker (the model running on past its tweet), trim."""
    cut = len(text)
    for m in TURN_MARKERS:
        i = text.find(m)
        if i != -1:
            cut = min(cut, i)
    return text[:cut].strip()


def _decode(tok, new_ids: torch.Tensor, stops: set[int]) -> str:
    ids = new_ids.tolist()
    for j, t in enumerate(ids):
        if t in stops:
            ids = ids[:j]
            break
    return postprocess(tok.decode(ids, skip_special_tokens=True))


@torch.no_grad()
def generate(model, tok, prompts: list[str], cfg: GenConfig, progress: bool = False,
             feats: np.ndarray | None = None, has_image: np.ndarray | None = None,
             all_candidates: bool = False) -> tuple[list, dict]:
    """Tweets for prompts (chat-templated strings), in input order; plus {'new_tokens', 'seconds'}.
    `feats` [n, dim] / `has_image` [n]: image features for a PrefixLM writer (ignored otherwise).
    `all_candidates`: per prompt, every one of the `num_candidates` sequences as (text, mean token
    log-probability), instead of the best one's text."""
    from tqdm.auto import tqdm

    if not prompts:
        return [], {"new_tokens": 0, "seconds": 0.0}
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    prefix = hasattr(model, "projector")
    if prefix:
        if feats is None:  # no image given: every row text-only
            feats = np.zeros((len(prompts), model.projector.norm.normalized_shape[0]), np.float32)
            has_image = np.zeros(len(prompts), bool)
        feats, has_image = torch.as_tensor(np.asarray(feats, np.float32)), torch.as_tensor(np.asarray(has_image, bool))
    lm = model.lm if prefix else model
    old_side = (tok.padding_side, tok.truncation_side)
    tok.padding_side = tok.truncation_side = "left"  # a cut prompt must keep its end: the assistant header
    stops = stop_token_ids(tok)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str | None] = [None] * len(prompts)
    n_new, t0 = 0, time.perf_counter()
    n = max(1, cfg.num_candidates)
    sample = cfg.temperature > 0
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, repetition_penalty=cfg.repetition_penalty,
                  pad_token_id=tok.pad_token_id, eos_token_id=stops, num_return_sequences=n)
    if sample:
        kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                      output_scores=n > 1 or all_candidates, return_dict_in_generate=True)
    elif all_candidates:
        raise ValueError("generate(all_candidates=True) needs sampling (temperature > 0)")
    else:
        kwargs.update(do_sample=False, num_beams=n, return_dict_in_generate=True)
    try:
        for s in tqdm(range(0, len(order), cfg.batch_size), desc="generate", disable=not progress):
            idx = order[s:s + cfg.batch_size]
            enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False,
                      truncation=True, max_length=cfg.max_prompt_tokens).to(device)
            if prefix:
                enc = _with_prefix(model, enc, feats[idx], has_image[idx], tok.pad_token_id)
            res = lm.generate(**enc, **kwargs)
            seqs = res.sequences[:, enc["input_ids"].shape[1]:]
            n_new += int(sum(_n_real(row, stops) for row in seqs))
            if sample and (n > 1 or all_candidates):
                scores = lm.compute_transition_scores(res.sequences, res.scores, normalize_logits=True)
                valid = ~torch.isin(seqs, torch.tensor(stops + [tok.pad_token_id], device=seqs.device))
                mean_lp = (scores.masked_fill(~valid, 0).sum(1) / valid.sum(1).clamp(min=1)).view(len(idx), n)
                best = mean_lp.argmax(1)
            else:
                best = torch.zeros(len(idx), dtype=torch.long)  # beams come out best first
            seqs = seqs.view(len(idx), n, -1)
            for j, i in enumerate(idx):
                if all_candidates:
                    out[i] = [(_decode(tok, seqs[j, c], set(stops)), float(mean_lp[j, c])) for c in range(n)]
                else:
                    out[i] = _decode(tok, seqs[j, int(best[j])], set(stops))
    finally:
        tok.padding_side, tok.truncation_side = old_side
    return out, {"new_tokens": n_new, "seconds": time.perf_counter() - t0}


def _with_prefix(model, enc, feats, has_image, pad_id: int) -> dict:
    """generate() inputs with the image prefix: inputs_embeds [prefix][left-padded prompt], its mask, and
    input_ids padded to the same length. The prefix positions hold pad_id, a token padding already puts
    in every batched prompt, so repetition_penalty (which reads input_ids) sees what text-only sees."""
    b = model.build(enc["input_ids"], enc["attention_mask"], feats, has_image)
    n = b["inputs_embeds"].shape[1] - enc["input_ids"].shape[1]
    ids = torch.cat([torch.full((len(feats), n), pad_id, dtype=enc["input_ids"].dtype, device=enc["input_ids"].device),
                     enc["input_ids"]], 1)
    return {"input_ids": ids, **b}


def _n_real(row: torch.Tensor, stops: list[int]) -> int:
    """Generated tokens up to and including the first stop token (the rest is padding)."""
    hit = torch.isin(row, torch.tensor(stops, device=row.device)).nonzero()
    return int(hit[0, 0]) + 1 if len(hit) else len(row)
