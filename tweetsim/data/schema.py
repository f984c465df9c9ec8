"""The normalised tweet table: its typed schema, and writing / reading it (data/tweets.parquet)."""

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

STATS_COLUMNS = {"Average": "acct_avg_likes", "Median": "acct_median_likes", "Mode": "acct_mode_likes",
                 "Max": "acct_max_likes", "Min": "acct_min_likes"}
_variant = pa.struct([("content_type", pa.string()), ("url", pa.string()), ("bitrate", pa.int64())])
MEDIA_TYPE = pa.list_(pa.struct([
    ("kind", pa.string()), ("preview_url", pa.string()), ("full_url", pa.string()),
    ("thumbnail_url", pa.string()), ("variants", pa.list_(_variant)),
    ("duration", pa.float64()), ("views", pa.float64()),
]))
SCHEMA = pa.schema([
    ("source", pa.string()), ("id", pa.int64()), ("date", pa.timestamp("ns", tz="UTC")),
    ("likes", pa.int64()), ("content", pa.string()), ("username", pa.string()), ("company", pa.string()),
    ("media", MEDIA_TYPE), ("n_media", pa.int64()), ("n_photo", pa.int64()), ("n_video", pa.int64()),
    ("n_gif", pa.int64()), ("video_duration", pa.float64()), ("video_views", pa.float64()),
    ("image_urls", pa.list_(pa.string())), ("n_mentions", pa.int64()), ("n_hashtags", pa.int64()),
    ("n_hyperlinks", pa.int64()), ("caption", pa.string()), ("followers", pa.float64()),
    *[(c, pa.float64()) for c in STATS_COLUMNS.values()],
])


def to_arrow(table: pd.DataFrame) -> pa.Table:
    cols = {}
    for f in SCHEMA:
        values = table[f.name] if f.name in table.columns else pd.Series([None] * len(table), dtype=object)
        if pa.types.is_timestamp(f.type):
            cols[f.name] = pa.array(pd.to_datetime(values, utc=True), type=f.type)
        elif pa.types.is_list(f.type):
            cols[f.name] = pa.array([list(v) if v is not None else [] for v in values], type=f.type)
        else:
            cols[f.name] = pa.array([None if pd.isna(v) else v for v in values], type=f.type)
    return pa.table(cols, schema=SCHEMA)


def pa_roundtrip(table: pd.DataFrame) -> pd.DataFrame:
    """Give an in-memory table exactly the dtypes that read_tweets returns."""
    return to_arrow(table).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def write_tweets(table: pd.DataFrame, path: str | Path) -> None:
    pq.write_table(to_arrow(table), path)


def read_tweets(path: str | Path) -> pd.DataFrame:
    """The normalised table: likes as nullable Int64, date tz-aware UTC, media as lists of dicts."""
    return pq.read_table(path).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
