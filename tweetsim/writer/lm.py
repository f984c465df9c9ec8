"""The language model's drafts as candidates (`writer.lm.candidates` > 0): n samples per row from
the fine-tuned writer, prompted with retrieved exemplars as in training (tweetsim.writer.prompts), each
with its mean token log-probability (a reranker feature). Off by default: on 2 CPU cores the
135M writer samples ~50 tokens/s, so a draft costs about a second, where selection costs ~5 ms.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from tweetsim.lm.generate import GenConfig, generate
from tweetsim.writer.prompts import build_examples
from tweetsim.writer.config import DraftConfig


class Drafter:
    """`lm_writer`: tweetsim.writer.writers.Writer (model, tokenizer, exemplar retriever over the pool).
    Prompts are built as in training; a row of the pool never gets itself as exemplar."""

    def __init__(self, lm_writer, p: DraftConfig, gen: GenConfig):
        """`p`: params writer.lm; `gen`: params generate, whose sampling `p` overrides."""
        self.lm, self.n = lm_writer, int(p.candidates)
        self.cfg = replace(gen, temperature=float(p.temperature), top_p=float(p.top_p), num_candidates=self.n)

    def __call__(self, rows: pd.DataFrame) -> list[list[tuple[str, float]]]:
        if not len(rows):
            return []
        prompts = build_examples(rows, self.lm.tok, self.lm.retriever, k=self.lm.k,
                                 max_field_chars=self.lm.max_field_chars)["prompt"].tolist()
        out, _ = generate(self.lm.model, self.lm.tok, prompts, self.cfg, all_candidates=True)
        drafts = []
        for cands in out:
            seen: dict[str, float] = {}
            for text, lp in cands:
                if text and text not in seen:
                    seen[text] = lp
            drafts.append(list(seen.items()))
        return drafts
