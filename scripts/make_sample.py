"""Build the embedded sample `data/sample/` from the shared challenge files (run once, by hand).

Whole companies are drawn at random from each official file (capped per company) so that the
sample keeps what the models learn from: several tweets per account, many brands, both periods.
Side tables keep only the rows of the sampled files and accounts. Usage:
    python scripts/make_sample.py ../shared/data/adobe data/sample
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROWS_PER_FILE = 1200
MAX_PER_COMPANY = 120
SEED = 2023


def sample_companies(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    companies = sorted(df["inferred company"].astype(str).unique())
    rng.shuffle(companies)
    picked, n = [], 0
    for c in companies:
        rows = df[df["inferred company"].astype(str) == c]
        if len(rows) > MAX_PER_COMPANY:
            rows = rows.sample(MAX_PER_COMPANY, random_state=int(rng.integers(1 << 31)))
        picked.append(rows)
        n += len(rows)
        if n >= ROWS_PER_FILE:
            break
    return pd.concat(picked).sort_index()


def main(src: str, dst: str) -> None:
    src, dst = Path(src), Path(dst)
    rng = np.random.default_rng(SEED)
    kept_ids, users = {}, set()
    for path in sorted((src / "official").glob("*.xlsx")):
        df = pd.read_excel(path, dtype=object)
        out = sample_companies(df, rng)
        (dst / "official").mkdir(parents=True, exist_ok=True)
        out.to_excel(dst / "official" / path.name, index=False)
        kept_ids[path.stem] = set(out["id"].astype(int))
        users |= set(out["username"].astype(str))
        print(f"{path.name}: {len(out)} of {len(df)} rows, {out['inferred company'].nunique()} companies")
    for path in sorted((src / "captions").glob("*.csv")):
        owner = next(s for s in kept_ids if path.stem.startswith(f"{s}_captions"))
        cap = pd.read_csv(path, dtype=str, keep_default_na=False)
        cap = cap[cap["id"].astype(int).isin(kept_ids[owner])]
        (dst / "captions").mkdir(parents=True, exist_ok=True)
        cap.to_csv(dst / "captions" / path.name, index=False)
    train = pd.read_csv(src / "train_rows" / "train_rows_200_with_captions.csv", dtype=str, keep_default_na=False)
    (dst / "train_rows").mkdir(parents=True, exist_ok=True)
    train.to_csv(dst / "train_rows" / "train_rows_200_with_captions.csv", index=False)
    users |= set(train["username"])
    for name in ("train_user_likes_stats.csv", "user_profiles.csv"):
        acc = pd.read_csv(src / "accounts" / name, dtype=str, keep_default_na=False)
        acc = acc[acc["username"].isin(users)]
        (dst / "accounts").mkdir(parents=True, exist_ok=True)
        acc.to_csv(dst / "accounts" / name, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:3])
