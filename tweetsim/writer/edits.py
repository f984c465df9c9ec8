"""Light, safe edits of a chosen tweet. Each is applied only where the stage measured that it
raises the validation metrics of its regime (`select_text` records which ones in writer.json).

- `placeholders`: the account's habits with `<hyperlink>` and `<mention>`: a placeholder most of
  the account's tweets carry (share >= HIGH) is appended when missing; one it almost never uses
  (share <= LOW) is removed. Accounts without a known tweet are left alone.
- `brand`: a candidate written by another brand gets the row's brand name and account handle in
  place of its own (the unseen-brand case, where no tweet of the brand exists).
- `pool_placeholders`: for an account without a known tweet (an unseen brand's), the habits of the
  whole pool instead (ROUGE-L and BLEU-1 count a `<hyperlink>` most tweets end with).
"""

from __future__ import annotations

import re

from tweetsim.text.metrics import PLACEHOLDERS

EDITS = ("placeholders", "brand", "pool_placeholders")
HIGH, LOW = 0.7, 0.05
POOL = ""  # account_habits' key for the whole pool's habits


def account_habits(pool_table) -> dict[str, dict[str, float]]:
    """{username: {placeholder: share of its pool tweets containing it}}, and the whole pool's under POOL."""
    t = pool_table[pool_table["username"].notna()]
    content = t["content"].astype(str)
    shares = {p: content.str.contains(p, regex=False).groupby(t["username"].to_numpy()).mean() for p in PLACEHOLDERS}
    every = pool_table["content"].astype(str)
    return {**{u: {p: float(shares[p][u]) for p in PLACEHOLDERS} for u in shares[PLACEHOLDERS[0]].index},
            POOL: {p: float(every.str.contains(p, regex=False).mean()) if len(every) else 0.5 for p in PLACEHOLDERS}}


def placeholders(text: str, habits: dict[str, float] | None) -> str:
    if not habits:
        return text
    for p in PLACEHOLDERS:
        share = habits.get(p, 0.5)
        if share >= HIGH and p not in text:
            text = f"{text.rstrip()} {p}"
        elif share <= LOW and p in text:
            text = " ".join(text.replace(p, " ").split())
    return text


def brand(text: str, cand_company, cand_user, row_company, row_user) -> str:
    """Put the row's brand / handle in place of the candidate's when they differ."""
    def known(v):
        return isinstance(v, str) and v.strip() != ""

    if known(cand_company) and known(row_company) and cand_company.lower() != row_company.lower():
        text = re.sub(rf"(?<![\w@#]){re.escape(cand_company)}(?!\w)", row_company, text, flags=re.IGNORECASE)
    if known(cand_user) and known(row_user) and cand_user.lower() != row_user.lower():
        text = re.sub(rf"@{re.escape(cand_user)}(?!\w)", f"@{row_user}", text, flags=re.IGNORECASE)
    return text


def apply(text: str, kept: list[str], habits: dict | None, cand_company, cand_user, row_company, row_user,
          pool_habits: dict | None = None) -> str:
    """`habits`: the row's account's (None when it has no known tweet); `pool_habits`: the pool's."""
    for name in kept:
        if name not in EDITS:
            raise ValueError(f"unknown edit {name!r} (known: {EDITS})")
        if name == "placeholders":
            text = placeholders(text, habits)
        elif name == "pool_placeholders":
            text = placeholders(text, pool_habits) if not habits else text
        else:
            text = brand(text, cand_company, cand_user, row_company, row_user)
    return text
