"""The tweet writer's prompt: instruction examples in one documented format.

The prompt (user turn) lists, one field a line, what is known about the post (tweetsim.lm.prompts'
neutral lines, with the target likes); lines whose value is unknown are left out; the completion
(assistant turn) is the tweet exactly as the data has it, `<hyperlink>` and `<mention>` placeholders
included:

    Brand: nike
    Account: @nikestore
    Date: 2021-05-03, Monday
    Target likes: 1204
    Media: 1 video (31 s, 12,344 views)
    Media description: a man running on a track
    Text in the media: JUST DO IT
    Earlier tweet by @nikestore: Step into spring. <hyperlink>
    Write the tweet.

The system turn is SYSTEM below. Exemplars (k, default 1) are tweets of the same account, else the
same brand, else any, retrieved from the regime's *training* split only with the retrieval
baseline's `Retriever` (closest caption, else most recent before the date): the model starts from
what retrieval finds and learns to adapt it. Prompts are rendered with the chat template of the
chosen model's tokenizer (tweetsim.lm.prompts.render).
"""

from __future__ import annotations

import pandas as pd

from tweetsim.lm import prompts as P

SYSTEM = "You write tweets for brands. Given the post's details, reply with the tweet text only."
INSTRUCTION = "Write the tweet."


def verbalise(row, exemplars: list[tuple[str, str]] = (), max_field_chars: int = 280) -> str:
    """The user turn for one row (a dict or Series of tweets.parquet columns + caption/ocr_text).

    exemplars: (who, text) pairs, e.g. ("@nikestore", "Step into spring. <hyperlink>").
    """
    lines = P.header_lines(row)
    likes = row.get("likes")
    if likes is not None and pd.notna(likes):
        lines.append(f"Target likes: {int(likes)}")
    lines += P.media_lines(row, max_field_chars)
    for who, text in exemplars:
        lines.append(f"Earlier tweet by {who}: {P.clip(text, max_field_chars)}")
    lines.append(INSTRUCTION)
    return "\n".join(lines)


def render(tok, user: str, system: str = SYSTEM) -> str:
    """The prompt string in the tokenizer's chat template (the writer's system turn unless given)."""
    return P.render(tok, user, system)


def exemplars_for(rows: pd.DataFrame, retriever, k: int) -> list[list[tuple[str, str]]]:
    """k exemplar (who, text) pairs per row from a `tweetsim.text.retrieval.Retriever` over training rows."""
    if k <= 0 or retriever is None:
        return [[] for _ in range(len(rows))]
    pool = retriever.pool
    out = []
    for user, company, found in zip(rows["username"], rows["company"], retriever.retrieve(rows, k=k)):
        pairs = []
        for i in found:
            p_user, p_company = pool.at[i, "username"], pool.at[i, "company"]
            who = f"@{p_user}" if p_user == user or p_company != company else f"@{p_user} (same brand)"
            pairs.append((who, pool.at[i, "content"]))
        out.append(pairs)
    return out


def build_examples(rows: pd.DataFrame, tok, retriever=None, k: int = 1, max_field_chars: int = 280,
                   system: str = SYSTEM) -> pd.DataFrame:
    """One prompt per row: columns user (the verbalisation) and prompt (chat-templated), in row order."""
    ex = exemplars_for(rows, retriever, k)
    users = [verbalise(r, e, max_field_chars) for r, e in zip(rows.to_dict("records"), ex)]
    return pd.DataFrame({"user": users, "prompt": [render(tok, u, system) for u in users]}, index=rows.index)
