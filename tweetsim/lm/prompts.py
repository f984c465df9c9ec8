"""Instruction examples for the tweet writer: metadata verbalised into one documented prompt format.

The prompt (user turn) lists, one field a line, what is known about the post; lines whose value is
unknown are left out; the completion (assistant turn) is the tweet exactly as the data has it,
`<hyperlink>` and `<mention>` placeholders included:

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
chosen model's tokenizer (a plain `### role` layout where a tokenizer has none).
"""

from __future__ import annotations

import math

import pandas as pd

SYSTEM = "You write tweets for brands. Given the post's details, reply with the tweet text only."
FALLBACK_TEMPLATE = ("{% for m in messages %}### {{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}### assistant\n{% endif %}")


def _clip(text, n: int) -> str | None:
    if text is None or (not isinstance(text, str) and pd.isna(text)):
        return None
    s = " ".join(str(text).split())
    if not s:
        return None
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def media_phrase(row) -> str:
    """'no media', '2 photos', '1 video (31 s, 12,344 views)', '1 photo and 1 GIF'."""
    parts = []
    for col, word in (("n_photo", "photo"), ("n_video", "video"), ("n_gif", "GIF")):
        n = int(row.get(col) or 0) if pd.notna(row.get(col)) else 0
        if n:
            parts.append(f"{n} {word}{'s' if n > 1 else ''}")
    if not parts:
        return "no media"
    extra = []
    dur, views = row.get("video_duration"), row.get("video_views")
    if dur is not None and pd.notna(dur):
        extra.append(f"{float(dur):.0f} s")
    if views is not None and pd.notna(views) and math.isfinite(float(views)):  # an infinite count says nothing
        extra.append(f"{int(views):,} views")
    return " and ".join(parts) + (f" ({', '.join(extra)})" if extra else "")


def verbalise(row, exemplars: list[tuple[str, str]] = (), max_field_chars: int = 280) -> str:
    """The user turn for one row (a dict or Series of tweets.parquet columns + caption/ocr_text).

    exemplars: (who, text) pairs, e.g. ("@nikestore", "Step into spring. <hyperlink>").
    """
    lines = []
    company, user = row.get("company"), row.get("username")
    if company:
        lines.append(f"Brand: {company}")
    if user:
        lines.append(f"Account: @{user}")
    date = row.get("date")
    if date is not None and pd.notna(date):
        date = pd.Timestamp(date)
        lines.append(f"Date: {date:%Y-%m-%d}, {date:%A}")
    likes = row.get("likes")
    if likes is not None and pd.notna(likes):
        lines.append(f"Target likes: {int(likes)}")
    lines.append(f"Media: {media_phrase(row)}")
    for col, label in (("caption", "Media description"), ("ocr_text", "Text in the media")):
        value = _clip(row.get(col), max_field_chars)
        if value:
            lines.append(f"{label}: {value}")
    for who, text in exemplars:
        lines.append(f"Earlier tweet by {who}: {_clip(text, max_field_chars)}")
    lines.append("Write the tweet.")
    return "\n".join(lines)


def render(tok, user: str, system: str = SYSTEM) -> str:
    """The prompt string in the tokenizer's chat template, ending with the assistant header."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    template = None if getattr(tok, "chat_template", None) else FALLBACK_TEMPLATE
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)


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
