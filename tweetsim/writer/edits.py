"""Light, safe edits of a chosen tweet. Each is applied only where the stage measured that it
raises the validation metrics of its regime (`select_text` records which ones in writer.json).

- `placeholders`: the account's habits with `<hyperlink>` and `<mention>`: a placeholder most of
  the account's tweets carry (share >= HIGH) is appended when missing; one it almost never uses
  (share <= LOW) is removed. Accounts without a known tweet are left alone.
- `brand`: a candidate written by another brand gets the row's brand name and account handle in
  place of its own (the unseen-brand case, where no tweet of the brand exists).
- `pool_placeholders`: for an account without a known tweet (an unseen brand's), the habits of the
  whole pool instead (ROUGE-L and BLEU-1 count a `<hyperlink>` most tweets end with).
- `dates`: the candidate's weekday names, month names and years moved to the row's date, each kept
  at its distance from the candidate's own date ("this Friday" written on a Wednesday becomes the
  weekday two days after the row's); a candidate or row without a date is left alone.
"""

from __future__ import annotations

import re

import pandas as pd

from tweetsim.text.metrics import PLACEHOLDERS

EDITS = ("placeholders", "brand", "pool_placeholders", "dates")
HIGH, LOW = 0.7, 0.05
POOL = ""  # account_habits' key for the whole pool's habits
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_WEEKDAY = re.compile(rf"\b({'|'.join(WEEKDAYS)})\b", re.IGNORECASE)
# months capitalised or upper case only ("march on", "may I"), and "May" only beside a number
_MONTH = re.compile(rf"\b(?:{'|'.join(m for m in MONTHS if m != 'May')}|May(?=\s+\d)|(?<=\d\s)May)\b"
                    rf"|\b(?:{'|'.join(m.upper() for m in MONTHS)})\b")
_YEAR = re.compile(r"(?<![\w.,])(?:19|20)\d\d(?![\w.,]\d|\d)")


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


def _cased(word: str, like: str) -> str:
    return word.upper() if like.isupper() else word.lower() if like.islower() else word


def dates(text: str, cand_date, row_date) -> str:
    """Move the candidate's calendar words from its date to the row's (module docstring); a year is
    moved only within a year of the candidate's own, so a founding year or an anniversary stays."""
    cand, row = pd.Timestamp(cand_date) if cand_date is not None else pd.NaT, pd.Timestamp(row_date) if row_date is not None else pd.NaT
    if pd.isna(cand) or pd.isna(row):
        return text
    days, years = row.weekday() - cand.weekday(), row.year - cand.year
    months = 12 * years + row.month - cand.month

    def weekday(m: re.Match) -> str:
        return _cased(WEEKDAYS[(WEEKDAYS.index(m.group(0).capitalize()) + days) % 7], m.group(0))

    def month(m: re.Match) -> str:
        return _cased(MONTHS[(MONTHS.index(m.group(0).capitalize()) + months) % 12], m.group(0))

    def year(m: re.Match) -> str:
        y = int(m.group(0))
        return str(y + years) if abs(y - cand.year) <= 1 else m.group(0)

    return _YEAR.sub(year, _MONTH.sub(month, _WEEKDAY.sub(weekday, text)))


def apply(text: str, kept: list[str], habits: dict | None, cand_company, cand_user, row_company, row_user,
          pool_habits: dict | None = None, cand_date=None, row_date=None) -> str:
    """`habits`: the row's account's (None when it has no known tweet); `pool_habits`: the pool's;
    `cand_date`, `row_date`: the candidate's and the row's dates (None: unknown)."""
    for name in kept:
        if name not in EDITS:
            raise ValueError(f"unknown edit {name!r} (known: {EDITS})")
        if name == "placeholders":
            text = placeholders(text, habits)
        elif name == "pool_placeholders":
            text = placeholders(text, pool_habits) if not habits else text
        elif name == "dates":
            text = dates(text, cand_date, row_date)
        else:
            text = brand(text, cand_company, cand_user, row_company, row_user)
    return text
