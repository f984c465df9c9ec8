"""The behaviour LM's prompt: likes prediction as text (LCBM style).

The user turn is tweetsim.lm.prompts' neutral lines (who posted, when, the media; never the likes:
they are the answer), the account's typical likes from earlier training rows, the tweet text, whether
an image is attached, and the question. The answer is the likes rounded to 2 significant digits with
LCBM's high/low word, "high, about 1200 likes"; `parse_likes` reads a generated one back.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from tweetsim.lm import prompts as P

SYSTEM = ("You predict the engagement of brand tweets. Given the tweet and its details, answer with "
          "high or low and the number of likes it will get.")
QUESTION = "How many likes will this tweet get?"
IMAGE_LINE = "Image: attached"
NO_IMAGE_LINE = "Image: none (text only)"


# ------------------------------------------------------------------------------ likes <-> words

def round_sig(x: float, sig: int = 2) -> int:
    """Round a like count to `sig` significant digits (1234 -> 1200, 7 -> 7, 0 -> 0)."""
    x = float(x)
    if x <= 0 or not math.isfinite(x):
        return 0
    digits = sig - int(math.floor(math.log10(x))) - 1
    return int(round(x, min(digits, 0)))


def verbalise_likes(likes: float, threshold: float) -> str:
    """'high, about 1200 likes' / 'low, about 7 likes'."""
    word = "high" if float(likes) > threshold else "low"  # as evaluate's high/low: above the train median
    return f"{word}, about {round_sig(likes)} likes"


_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)\s*([kKmM](?![a-zA-Z]))?")


_BARE = re.compile(r"^\s*(?:(?:high|low)\W+)?(?:about\s+)?" + _NUM.pattern + r"\s*[.!]?\s*$", re.I)
_WITH_WORD = re.compile(_NUM.pattern + r"\s*likes?\b", re.I)


def parse_likes(text: str | None) -> float | None:
    """The like count of a generated answer: a number followed by 'like(s)' ('about 1,200 likes',
    '1.2k likes'), or an answer that is only a number ('high, about 1200', '12M'); None otherwise
    ('The tweet is 1.' names no like count), and the caller falls back. Never raises."""
    if not isinstance(text, str):
        return None
    m = _WITH_WORD.search(text) or _BARE.match(text)
    if m is None:
        return None
    try:
        value = float(m.group(1).replace(",", ""))
    except ValueError:
        return None
    value *= {"k": 1e3, "m": 1e6}.get((m.group(2) or "").lower(), 1.0)
    return value if math.isfinite(value) and value < 1e12 else None


# ------------------------------------------------------------------------------------- prompts

def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def user_prompt(row: dict, hist: dict | None, has_image: bool, max_field_chars: int = 280) -> str:
    """The user turn: tweetsim.lm.prompts' metadata lines (no likes: they are the answer), the
    account's typical likes from earlier training rows, the tweet text, and the question."""
    lines = P.header_lines(row) + P.media_lines(row, max_field_chars)
    if hist and hist.get("acct_hist_n", 0) > 0 and pd.notna(hist.get("acct_hist_median")):
        lines.append(f"Account median likes: {_fmt(math.expm1(hist['acct_hist_median']))} "
                     f"over {int(hist['acct_hist_n'])} earlier tweets")
    elif hist and hist.get("brand_hist_n", 0) > 0 and pd.notna(hist.get("brand_hist_median")):
        lines.append(f"Brand median likes: {_fmt(math.expm1(hist['brand_hist_median']))} "
                     f"over {int(hist['brand_hist_n'])} earlier tweets")
    text = P.clip(row.get("content"), max_field_chars)
    if text:
        lines.append(f"Tweet: {text}")
    lines.append(IMAGE_LINE if has_image else NO_IMAGE_LINE)
    lines.append(QUESTION)
    return "\n".join(lines)


def render(tok, user: str, system: str = SYSTEM) -> str:
    """The prompt string in the tokenizer's chat template (the behaviour LM's system turn unless given)."""
    return P.render(tok, user, system)
