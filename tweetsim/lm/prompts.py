"""Product-neutral verbalisation: a row's fields as text lines, and a user turn in a chat template.

Each product words its own prompt from these lines: the tweet writer's in tweetsim.writer.prompts,
the behaviour LM's in tweetsim.likes.prompts. Lines whose value is unknown are left out:

    Brand: nike                                  header_lines
    Account: @nikestore
    Date: 2021-05-03, Monday
    Media: 1 video (31 s, 12,344 views)          media_lines
    Media description: a man running on a track
    Text in the media: JUST DO IT

Prompts are rendered with the chat template of the chosen model's tokenizer (a plain `### role`
layout where a tokenizer has none).
"""

from __future__ import annotations

import math

import pandas as pd

FALLBACK_TEMPLATE = ("{% for m in messages %}### {{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
                     "{% if add_generation_prompt %}### assistant\n{% endif %}")


def clip(text, n: int) -> str | None:
    """`text` on one line (runs of whitespace as one space), cut to n characters with '…'; None when empty or unknown."""
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


def header_lines(row) -> list[str]:
    """Who posted and when (a dict or Series of tweets.parquet columns): Brand, Account, Date."""
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
    return lines


def media_lines(row, max_field_chars: int = 280) -> list[str]:
    """What the media holds: the Media line always, then the caption and OCR text where known."""
    lines = [f"Media: {media_phrase(row)}"]
    for col, label in (("caption", "Media description"), ("ocr_text", "Text in the media")):
        value = clip(row.get(col), max_field_chars)
        if value:
            lines.append(f"{label}: {value}")
    return lines


def render(tok, user: str, system: str) -> str:
    """The prompt string in the tokenizer's chat template, ending with the assistant header."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    template = None if getattr(tok, "chat_template", None) else FALLBACK_TEMPLATE
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)
