"""Input and output of the file commands (`tweetsim predict-likes`, `tweetsim generate`, `tweetsim best-time`).

- `check_output` runs before any work: it refuses an output that resolves to the input file (same
  path, a link or a hard link to it), a folder, or a place that cannot be written, and takes an
  exclusive lock on the output (`.<name>.lock` beside it, held until the process ends), so a second
  run on the same output refuses at once instead of mixing its rows in (`OutputError`, one line).
- `run_chunked` answers the rows chunk by chunk (bounded memory: one chunk's features or prompts at
  a time), with a tqdm bar on stderr, and appends each chunk to a temporary file of its own beside
  the output (`.<name>.<random>.partial`) that is renamed onto it only at the end: an interrupted
  run leaves the output as it was and says where the rows done are. `write_frame` writes a whole
  table the same way (best-time's curve).
- Every input row gets one output row, in input order. Default columns: `id, <value>, status,
  reason`; `status` is `ok` (every cell read), `partial` (answered with the unreadable cells named
  in `reason` treated as unknown) or `rejected` (not answered: the id is not a valid id; empty
  value). `two_columns=True` writes the challenge's `id, <value>` only (problems go to stderr).
  `value` may be a list of column names (`likes, likes_low, likes_high`): `answer` then gives one
  tuple per row (or, with two_columns, which keeps the first column, the first value alone).
"""

from __future__ import annotations

import fcntl
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


_LOCKS: dict[Path, int] = {}  # output -> the open lock file's descriptor, held until the process ends


def _lock(out: Path, shown: str) -> None:
    """An exclusive, non-blocking lock on `out` for this process (flock on `.<name>.lock` beside it)."""
    key = out.resolve()
    if key in _LOCKS:
        return
    path = out.parent / f".{out.name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise OutputError(f"--output {shown}: another run is writing it (lock {path}); wait for it to finish "
                          "or choose another --output") from None
    _LOCKS[key] = fd


def release(output: str | Path) -> None:
    """Give the lock on `output` back (tests; a process's locks go with it anyway)."""
    fd = _LOCKS.pop(Path(output).resolve(), None)
    if fd is not None:
        os.close(fd)


def check_output(output: str | Path, input_path: str | Path | None) -> Path:
    """The output path, checked before any work: not the input, not a folder, writable; locked for
    this process (a second run on it refuses)."""
    out, src = Path(output), Path(input_path) if input_path is not None else None
    if src is not None and (out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src))):
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
    _lock(out, str(output))
    return out


def _partial(output: Path) -> Path:
    """A temporary file of this run's own beside `output` (never shared with another run)."""
    fd, name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    os.close(fd)
    return Path(name)


def write_frame(frame: pd.DataFrame, output: Path) -> None:
    """`frame` as CSV at `output` (checked by check_output), written beside it and renamed onto it."""
    tmp = _partial(output)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (--threads)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


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
    tmp = _partial(output)
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
