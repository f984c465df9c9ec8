"""Input and output of the file commands (`tweetsim predict-likes`, `tweetsim generate`).

- `check_output` runs before any work: it refuses an output that resolves to the input file, a
  folder, or a place that cannot be written (`OutputError`, one line).
- `run_chunked` answers the rows chunk by chunk (bounded memory: one chunk's features or prompts at
  a time), with a tqdm bar on stderr, and appends each chunk to a temporary file beside the output
  that is renamed onto it only at the end: an interrupted run leaves the output as it was (the
  rows done stay in `.<name>.partial`, which the next run overwrites).
- Every input row gets one output row, in input order. Default columns: `id, <value>, status,
  reason`; `status` is `ok` (every cell read), `partial` (answered with the unreadable cells named
  in `reason` treated as unknown) or `rejected` (not answered: the id is not a valid id; empty
  value). `two_columns=True` writes the challenge's `id, <value>` only (problems go to stderr).
  `value` may be a list of column names (`likes, likes_low, likes_high`): `answer` then gives one
  tuple per row (or, with two_columns, which keeps the first column, the first value alone).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

OK, PARTIAL, REJECTED = "ok", "partial", "rejected"


class OutputError(ValueError):
    pass


class Interrupted(OutputError):
    """Ctrl-C during run_chunked: the output was not written; the message says where the rows done are."""


def check_output(output: str | Path, input_path: str | Path) -> Path:
    """The output path, checked before any work: not the input, not a folder, writable."""
    out, src = Path(output), Path(input_path)
    if out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src)):
        raise OutputError(f"--output {output} is the input file; choose another name (the input is never overwritten)")
    if out.is_dir():
        raise OutputError(f"--output {output} is a folder; give a file name")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".check"):
            pass
    except OSError as e:
        raise OutputError(f"--output {output}: cannot write in {out.parent}: {e.strerror or e}") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise OutputError(f"--output {output}: the file exists and is not writable")
    return out


def row_status(rows: pd.DataFrame, rejects: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(status, reason) per row of tweetsim.data.load.read_official's table, from its rejects."""
    reasons: dict[int, list[str]] = {}
    for r in rejects.itertuples():
        reasons.setdefault(int(r.row), []).append(f"{r.field}: {r.reason}")
    status, reason = [], []
    for row_no, id_ in zip(rows["row"], rows["id"]):
        why = reasons.get(int(row_no), [])
        status.append(REJECTED if pd.isna(id_) else PARTIAL if why else OK)
        reason.append("; ".join(why))
    return status, reason


def report(prog: str, rejects: pd.DataFrame, kept: str) -> None:
    """One stderr line per problem cell: file, row, field, reason, and what was done."""
    for r in rejects.itertuples():
        done = "row not answered" if r.field == "id" and "duplicate" not in str(r.reason) else kept
        print(f"{prog}: WARNING {r.source} row {r.row} id {r.id}: {r.field}: {r.reason} ({done})", file=sys.stderr)


def run_chunked(rows: pd.DataFrame, rejects: pd.DataFrame, answer: Callable[[pd.DataFrame], list],
                output: Path, value: str | list[str], two_columns: bool = False, chunk_size: int = 1000,
                desc: str = "rows") -> dict:
    """Answer `rows` (read_official's table) with `answer(chunk) -> one value per chunk row`, for the
    rows with a valid id, chunk by chunk; write the CSV atomically. Returns counts and rows/s.
    `value` a list of column names: `answer` gives one tuple of that many values per row."""
    status, reason = row_status(rows, rejects)
    rows = rows.assign(_status=status, _reason=reason)
    tmp = output.parent / f".{output.name}.partial"
    t0 = time.perf_counter()
    try:
        _write_chunks(rows, answer, tmp, value, two_columns, chunk_size, desc)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {output} not written; the rows done so far are in {tmp}") from None
    os.replace(tmp, output)
    seconds = time.perf_counter() - t0
    counts = pd.Series(status, dtype=object).value_counts()
    return {"rows": len(rows), **{k: int(counts.get(k, 0)) for k in (OK, PARTIAL, REJECTED)},
            "seconds": seconds, "rows_per_s": len(rows) / max(seconds, 1e-9)}


def _write_chunks(rows, answer, tmp: Path, value, two_columns: bool, chunk_size: int, desc: str) -> None:
    from tqdm import tqdm

    names = [value] if isinstance(value, str) else list(value)
    with open(tmp, "w", encoding="utf-8", newline="") as f, \
            tqdm(total=len(rows), desc=desc, unit="row", file=sys.stderr, mininterval=1.0) as bar:
        columns = ["id", *(names[:1] if two_columns else names)] + ([] if two_columns else ["status", "reason"])
        pd.DataFrame(columns=columns).to_csv(f, index=False)
        chunk_size = max(int(chunk_size), 1)
        for start in range(0, len(rows), chunk_size):
            chunk = rows.iloc[start:start + chunk_size]
            todo = chunk[chunk["_status"] != REJECTED]
            got = list(answer(todo)) if len(todo) else []
            if len(got) != len(todo):
                raise RuntimeError(f"{desc}: {len(got)} answers for {len(todo)} rows")
            ids = [iid if pd.isna(i) else int(i) for i, iid in zip(chunk["id"], chunk["input_id"])]
            frame = pd.DataFrame({"id": ids})
            for k, name in enumerate(names[:1] if two_columns else names):
                values = pd.Series([None] * len(chunk), index=chunk.index, dtype=object)
                values.loc[todo.index] = [g[k] if isinstance(g, tuple) else g for g in got] if len(names) > 1 else got
                frame[name] = values.to_numpy()
            if not two_columns:
                frame["status"], frame["reason"] = chunk["_status"].to_numpy(), chunk["_reason"].to_numpy()
            frame.to_csv(f, index=False, header=False)
            f.flush()
            bar.update(len(chunk))


def summary(stats: dict) -> str:
    """The counts part of a command's summary line."""
    return (f"{stats['rows']} rows: {stats[OK]} ok, {stats[PARTIAL]} partial, {stats[REJECTED]} rejected; "
            f"{stats['rows_per_s']:.1f} rows/s")
