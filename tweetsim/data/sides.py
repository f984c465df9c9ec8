"""The side tables of the media stages joined onto tweets: one rule for every consumer, so the
classifier, the writer and the behaviour LM see the same caption and OCR text for a tweet."""

from pathlib import Path

import pandas as pd


def join_side_tables(table: pd.DataFrame, captions: str | Path | None, ocr: str | Path | None) -> pd.DataFrame:
    """`caption` from the captions file where it has a non-empty one (else the tweet's own), and
    `ocr_text` from the OCR file; a path that is None or does not exist is skipped. The files are
    keyed by (source, id); a repeated key is an error (the join would repeat tweets)."""
    table = table.copy()
    if "caption" not in table:
        table["caption"] = None
    if captions is not None and Path(captions).is_file():
        cap = _keyed(pd.read_parquet(captions, columns=["source", "id", "caption"]), captions).rename(columns={"caption": "_cap"})
        table = table.merge(cap, on=["source", "id"], how="left")
        have = table["_cap"].notna() & (table["_cap"].astype(str) != "")
        table["caption"] = table["_cap"].where(have, table["caption"])
        table = table.drop(columns="_cap")
    if ocr is not None and Path(ocr).is_file():
        o = _keyed(pd.read_parquet(ocr, columns=["source", "id", "ocr_text"]), ocr)
        table = table.drop(columns="ocr_text", errors="ignore").merge(o, on=["source", "id"], how="left")
    if "ocr_text" not in table:
        table["ocr_text"] = None
    return table


def _keyed(side: pd.DataFrame, path) -> pd.DataFrame:
    dup = side.duplicated(["source", "id"], keep=False)
    if dup.any():
        first = side[dup].iloc[0]
        raise ValueError(f"{path}: {int(dup.sum())} rows repeat a (source, id) key, e.g. ({first['source']}, {first['id']})")
    return side


def join_from(table: pd.DataFrame, data_dir: str | Path) -> pd.DataFrame:
    """join_side_tables with the media stages' files in `data_dir` (captions.parquet, ocr.parquet)."""
    data = Path(data_dir)
    return join_side_tables(table, data / "captions.parquet", data / "ocr.parquet")
