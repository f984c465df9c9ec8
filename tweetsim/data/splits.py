"""Train / val / test assignment under three regimes.

- random: each row by a seeded hash of its key.
- unseen_brand: whole companies by a seeded hash of the company name, so no company is on two sides.
- unseen_time: by date, at the cut-offs in params (val from `val_from`, test from `test_from`).
Hashing (not a shuffled order) keeps a row's split stable when other rows are added or removed.
"""

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tweetsim.config.params import ParamsError, section_config


class SplitError(ParamsError, ValueError):
    """split params that cannot split the rows: the stage's one line (config.params.StageError)."""

REGIMES = ("random", "unseen_brand", "unseen_time")


@dataclass(frozen=True)
class Fractions:
    """`split.random` / `split.unseen_brand`: the val and test fractions (of rows / of companies)."""

    val: float
    test: float

    def sides(self, u: np.ndarray) -> np.ndarray:
        """The side of each unit number `u` (in [0, 1)): test below `test`, val in the next `val`, else train."""
        if not (0 <= self.val and 0 <= self.test and self.val + self.test < 1):
            raise SplitError(f"split fractions val={self.val}, test={self.test} must be >= 0 and sum below 1")
        return np.where(u < self.test, "test", np.where(u < self.test + self.val, "val", "train"))


@dataclass(frozen=True)
class TimeCuts:
    """`split.unseen_time`: val from `val_from`, test from `test_from` (dates, UTC)."""

    val_from: str
    test_from: str

    def sides(self, dates: pd.Series) -> np.ndarray:
        """The side of each date: test from `test_from`, val from `val_from`, else train."""
        val_from, test_from = pd.Timestamp(self.val_from, tz="UTC"), pd.Timestamp(self.test_from, tz="UTC")
        if not val_from < test_from:
            raise SplitError(f"split.unseen_time: val_from {val_from} must come before test_from {test_from}")
        if dates.isna().any():
            raise SplitError("split.unseen_time: some rows have no date")
        return np.where(dates >= test_from, "test", np.where(dates >= val_from, "val", "train"))


@section_config("split")
class SplitConfig:
    """params.yaml `split`."""

    seed: int
    regimes: list
    random: Fractions
    unseen_brand: Fractions
    unseen_time: TimeCuts


def _unit(keys, seed: int) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) for each key."""
    out = np.empty(len(keys))
    for i, k in enumerate(keys):
        h = hashlib.sha256(f"{seed}:{k}".encode()).digest()
        out[i] = int.from_bytes(h[:8], "big") / 2**64
    return out


def assign(table: pd.DataFrame, params: SplitConfig) -> pd.DataFrame:
    """Return `source,id` and one column per regime in params.regimes."""
    seed = int(params.seed)
    out = table[["source", "id"]].copy()
    for regime in params.regimes:
        if regime not in REGIMES:
            raise SplitError(f"split.regimes: unknown regime {regime!r} (known: {', '.join(REGIMES)})")
        cfg = getattr(params, regime)
        if regime == "random":
            keys = [f"{s}/{i}" for s, i in zip(table["source"], table["id"])]
            out[regime] = cfg.sides(_unit(keys, seed))
        elif regime == "unseen_brand":
            companies = sorted(table["company"].unique())
            side = dict(zip(companies, cfg.sides(_unit(companies, seed))))
            out[regime] = table["company"].map(side).to_numpy()
        elif regime == "unseen_time":
            out[regime] = cfg.sides(table["date"])
    return out


def summary(splits: pd.DataFrame, table: pd.DataFrame) -> dict:
    """Counts per regime and side, of all rows, rows with likes and rows with content."""
    has_likes = table["likes"].notna().to_numpy()
    has_text = table["content"].notna().to_numpy()
    res = {}
    for regime in [c for c in splits.columns if c not in ("source", "id")]:
        res[regime] = {
            side: {"rows": int((splits[regime] == side).sum()),
                   "with_likes": int(((splits[regime] == side).to_numpy() & has_likes).sum()),
                   "with_content": int(((splits[regime] == side).to_numpy() & has_text).sum())}
            for side in ("train", "val", "test")
        }
    return res
