"""A stage's shards: which shard a tweet is in, the `<stage>.shards` param and the `--shard K`
argument of a stage's command line, and the files a shard run writes.

A stage run with `--shard K` covers the tweets whose key hashes to K of the N shards that
`<stage>.shards` ([0, ..., N-1]) lists, and writes data/shards/<stage>/<stem>-K.parquet; the stage's
`--merge` joins the N files (tweetsim.vision.images.merge_shard_outputs for the image stages).
"""

from __future__ import annotations

import zlib
from pathlib import Path

from tweetsim.config.params import StageError


class ShardError(StageError):
    """A shard param, a `--shard` argument or shard outputs that cannot be used: the stage's one line."""


def shard_of(source: str, id_: int, shards: int) -> int:
    """Stable shard of a tweet key (crc32, same on every machine and Python run)."""
    return zlib.crc32(f"{source}\t{int(id_)}".encode()) % shards


def shard_count(shards, param: str) -> int:
    """N from a `<stage>.shards` param, which must be exactly [0, 1, ..., N-1]: dvc.yaml's matrix
    stage iterates over the list itself (DVC's interpolation has no range()), so it is the one place
    N is set."""
    if not isinstance(shards, list) or not shards or any(type(k) is not int for k in shards) \
            or shards != list(range(len(shards))):
        raise ShardError(f"params: {param} must list the shard indices 0..N-1 in order, e.g. [0] for one run "
                         f"or [0, 1, 2] for 3 shards; got {shards!r}")
    return len(shards)


def shard_flag(flags: tuple, shards: int, param: str) -> int | None:
    """The K of `--shard K` among a stage's arguments (None without the flag: the run covers every
    row), checked against N."""
    if "--shard" not in flags:
        return None
    i = flags.index("--shard") + 1
    value = flags[i] if i < len(flags) else ""
    if not value.isdigit() or int(value) >= shards:
        raise ShardError(f"--shard {value!r}: {param} lists shards 0..{shards - 1}")
    return int(value)


def shard_paths(data: Path, stage: str, stem: str, rejects_stem: str, shard: int) -> tuple[Path, Path]:
    """(table, rejects) file of shard K: data/shards/<stage>/<stem>-K.parquet and <rejects_stem>-K.csv,
    the outs of dvc.yaml's <stage>_shard@K and what the merge reads. The folder holds one stage's
    shards only: it is the merge stage's dep."""
    folder = Path(data) / "shards" / stage
    return folder / f"{stem}-{shard}.parquet", folder / f"{rejects_stem}-{shard}.csv"
