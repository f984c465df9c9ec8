"""Reading the official challenge files (xlsx, csv, parquet) into one normalised, typed table.

Three kinds of tweet file share one schema: behaviour-simulation files (no likes),
content-simulation files (no content) and training files (all seven columns). Side tables join by
key: captions by (file, id), account statistics and profiles by username. A row that cannot be
parsed is rejected with its file, row, field and reason; nothing is dropped silently.
"""

import logging
import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tweetsim.data.media import INT64_MAX, MediaParseError, parse_media, summarise
from tweetsim.data.schema import SCHEMA, STATS_COLUMNS, pa_roundtrip, read_tweets, write_tweets  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

SUFFIXES = (".xlsx", ".csv", ".parquet")
REQUIRED = ("id", "date", "username", "media", "inferred company")
OPTIONAL = ("likes", "content")
MENTION = re.compile(r"<mention>|@\w+")
HASHTAG = re.compile(r"#\w+")
LINK = re.compile(r"<hyperlink>|https?://\S+")

REJECT_COLUMNS = ["source", "row", "id", "field", "reason"]
# dates outside this window are rejected: Twitter began in March 2006, and pyarrow's nanosecond
# timestamps end in 2262 (a typo like 3000-01-01 must be a reject, not a crash)
DATE_MIN, DATE_MAX = pd.Timestamp("2006-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC")


class InputError(ValueError):
    """A file that cannot be read at all (missing, empty, missing column, unknown layout).
    `rejects`: the rows rejected so far (download writes them before it exits)."""

    def __init__(self, message: str, rejects: pd.DataFrame | None = None):
        super().__init__(message)
        self.rejects = rejects


def read_table(path: str | Path) -> pd.DataFrame:
    """Read any supported file as text cells (None where empty), so that parsing is ours."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            short = _short_lines(path, len(df.columns), len(df))
        elif suffix == ".xlsx":
            sheets = pd.read_excel(path, dtype=object, engine="openpyxl", sheet_name=None)
            first, *others = list(sheets)
            if others:  # only the first sheet is a table of tweets: say which are left out
                logger.warning("%s: reading sheet %r only; %d other sheet(s) ignored: %s", path, first, len(others),
                            ", ".join(repr(o) for o in others))
            # Excel holds numbers as doubles, and pandas hands integral ones back as ints: above 2**53
            # such an int is a rounded double (an id's last digits lost); as a float, _to_int refuses it
            df = sheets[first].map(lambda v: float(v) if type(v) is int and abs(v) > 2**53 else v)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise InputError(f"{path}: unsupported file type '{suffix}' (use {', '.join(SUFFIXES)})")
    except InputError:
        raise
    except Exception as e:  # a corrupt file: say which and why, not a library traceback
        raise InputError(f"{path}: cannot read as {suffix[1:]}: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.loc[:, [c for c in df.columns if not c.startswith("Unnamed:")]]
    df = df.astype(object).where(df.notna(), None).replace({"": None})
    df.attrs["short_lines"] = short if suffix == ".csv" else {}
    return df


def _short_lines(path: Path, n_columns: int, n_rows: int) -> dict[int, str]:
    """{row position: reason} for the CSV records with fewer fields than the header (a truncated
    line, a cut-off file): pandas fills their missing cells with blanks without a word."""
    import csv

    csv.field_size_limit(2**31 - 1)  # pandas reads any cell size; the reader's 128 KB default would refuse files it reads
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        counts = [len(r) for r in csv.reader(f) if r][1:]
    if len(counts) != n_rows:  # the two parsers disagree on the records: leave the check to pandas' own
        return {}
    return {i: f"truncated line: {n} of {n_columns} fields (is the file cut off?)"
            for i, n in enumerate(counts) if n < n_columns}


def _header(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        return [str(c).strip() for c in pd.read_csv(path, nrows=0).columns]
    if path.suffix.lower() == ".parquet":
        return list(pq.read_schema(path).names)
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        first = next(wb.active.iter_rows(max_row=1, values_only=True), ())
    finally:
        wb.close()
    return [str(c).strip() for c in first if c is not None]


@dataclass
class Inventory:
    tweets: list[Path] = field(default_factory=list)
    captions: list[Path] = field(default_factory=list)
    stats: list[Path] = field(default_factory=list)
    profiles: list[Path] = field(default_factory=list)


def classify(path: Path) -> str:
    try:
        cols = set(_header(path))
    except Exception as e:
        raise InputError(f"{path}: cannot read header: {e}") from None
    if {"id", "caption"} <= cols and len(cols) <= 3:
        return "captions"
    if {"username", "Median"} <= cols:
        return "stats"
    if {"username", "followers_count"} <= cols:
        return "profiles"
    return "tweets"


def discover(sources, exclude=()) -> Inventory:
    """Files named by `download.source`: a file, a directory (searched recursively), or a list."""
    paths: list[Path] = []
    for s in [sources] if isinstance(sources, (str, Path)) else sources:
        p = Path(s)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.suffix.lower() in SUFFIXES and q.is_file())
        elif p.is_file():
            paths.append(p)
        else:
            raise InputError(f"download.source: {s}: no such file or directory")
    inv = Inventory()
    for p in paths:
        if any(fnmatch.fnmatch(p.as_posix(), pat) or fnmatch.fnmatch(p.name, pat) for pat in exclude):
            continue
        getattr(inv, classify(p)).append(p)
    if not inv.tweets:
        raise InputError(f"download.source: no tweet file among {[str(p) for p in paths]}")
    return inv


def _show(value) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def _to_int(value) -> int:
    """A count or id: a whole number from 0 to int64's maximum (digits, or an integral number); else ValueError."""
    if value is None:
        raise ValueError("empty")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"not a non-negative integer: {value!r}")
    if isinstance(value, (int, np.integer)):
        v = int(value)
    elif isinstance(value, (float, np.floating)):
        if not (math.isfinite(value) and float(value).is_integer()):
            raise ValueError(f"not a non-negative integer: {_show(value)}")
        if abs(value) > 2**53:  # a float there has lost its last digits: the number written is not known
            raise ValueError(f"{value:.0f} is stored as a floating-point number above 2**53, whose last digits are lost; "
                             "store it as text")
        v = int(value)
    else:
        m = re.fullmatch(r"\+?([0-9]+)(\.0*)?", str(value).strip())
        if not m:
            raise ValueError(f"not a non-negative integer: {_show(value)}")
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > 19:
            raise ValueError(f"out of range (0 to {INT64_MAX}): a {len(digits)}-digit number")
        v = int(digits)
    if not 0 <= v <= INT64_MAX:
        raise ValueError(f"out of range (0 to {INT64_MAX}): {_show(value)}")
    return v


def _to_date(value) -> pd.Timestamp:
    """A calendar date (naive ones are UTC) from DATE_MIN to DATE_MAX; relative words ('now', 'today') are refused."""
    if value is None:
        raise ValueError("empty")
    if isinstance(value, (bool, int, float, np.number)):
        raise ValueError(f"a number, not a date: {_show(value)}")
    if isinstance(value, str) and not re.search(r"[0-9]{4}", value):
        raise ValueError(f"not a calendar date: {_show(value)} (e.g. 2021-05-03 14:30; relative words are refused)")
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}", value.strip()):
        raise ValueError(f"a year, not a date: {_show(value)} (e.g. 2021-05-03 14:30)")
    m = re.match(r"\s*([0-9]{1,2})[/.-]([0-9]{1,2})[/.-][0-9]{2,4}\b", value) if isinstance(value, str) else None
    if m and int(m.group(1)) <= 12 and int(m.group(2)) <= 12 and m.group(1) != m.group(2):
        raise ValueError(f"ambiguous date {_show(value)}: day/month or month/day? write it as YYYY-MM-DD")
    try:
        ts = pd.Timestamp(value)
        if pd.isna(ts):
            raise ValueError
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        inside = DATE_MIN <= ts < DATE_MAX
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"unparsable date {_show(value)}") from None
    if not inside:
        raise ValueError(f"date {_show(value)} outside {DATE_MIN:%Y-%m-%d} to {DATE_MAX:%Y-%m-%d}")
    return ts.as_unit("ns")


parse_count, parse_date = _to_int, _to_date  # the rules for other readers (the web app's form)


def _text_counts(content) -> dict:
    s = content or ""
    return {"n_mentions": len(MENTION.findall(s)), "n_hashtags": len(HASHTAG.findall(s)),
            "n_hyperlinks": len(LINK.findall(s))}


def normalise(df: pd.DataFrame, source: str, path: str, required=REQUIRED) -> tuple[pd.DataFrame, list[dict]]:
    """Parse each row into the schema; return (rows, rejects). `required` columns must exist.

    Every cell is parsed or rejected with (file, row, field, reason): ids and likes are whole numbers
    from 0 to int64's maximum, dates lie in [DATE_MIN, DATE_MAX), media go through tweetsim.data.media.
    Missing optional columns become nulls. With `required=("id",)` (the CLIs, the web app) every
    row is kept, in input order: an unparsable date or media becomes unknown (null date / no
    media) and an unparsable id a null id, each still reported in rejects, so that every input
    row gets an answer.
    """
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; has {list(df.columns)}")
    keep_bad = tuple(required) != REQUIRED
    rows, rejects, seen = [], [], set()
    # the CLIs keep a row whatever it lacks, and say so on each row: a column the file does not have
    absent = [c for c in REQUIRED if c not in df.columns] if keep_bad else []
    caption_col = "captions" if "captions" in df.columns else "caption" if "caption" in df.columns else None
    short = df.attrs.get("short_lines", {})
    for i, rec in enumerate(df.to_dict("records")):
        row_no = i + 2  # the spreadsheet row a person would look at (header is row 1)
        out, problems = {"source": source}, [("line", short[i])] if i in short else []
        try:
            out["id"] = _to_int(rec.get("id"))
        except ValueError as e:
            rejects.append({"source": path, "row": row_no, "id": _cell(rec.get("id")), "field": "id", "reason": str(e)})
            if not keep_bad:
                continue
            out["id"] = None
        problems += [(c, "no such column in the file: treated as unknown") for c in absent]
        for name, parse, default in (("date", _to_date, pd.NaT), ("likes", _to_int, None)):
            value = rec.get(name)
            if value is None and (name == "likes" or keep_bad):
                if name == "date" and "date" not in absent:
                    problems.append(("date", "empty: treated as unknown"))
                out[name] = default
                continue
            try:
                out[name] = parse(value)
            except ValueError as e:
                problems.append((name, str(e)))
                out[name] = default
        try:
            items = parse_media(rec.get("media"))
        except MediaParseError as e:
            problems.append(("media", str(e)))
            items = []
        out["content"] = None if rec.get("content") is None else str(rec["content"])
        for col, name in (("username", "username"), ("inferred company", "company")):
            value = rec.get(col)
            if value is None and col not in absent:
                problems.append((col, "empty" + (": treated as unknown" if keep_bad else "")))
            out[name] = "" if value is None else str(value).strip()
        if out["id"] is not None and (source, out["id"]) in seen:
            problems.append(("id", f"duplicate id {out['id']} in {path}"))
        for fld, reason in problems:
            rejects.append({"source": path, "row": row_no, "id": out["id"], "field": fld, "reason": reason})
        if problems and not keep_bad:
            continue
        seen.add((source, out["id"]))
        out["media"] = items
        out.update(summarise(items))
        out.update(_text_counts(out["content"]))
        out["caption"] = None if caption_col is None or rec.get(caption_col) is None else str(rec[caption_col])
        rows.append(out)
    table = pd.DataFrame(rows)
    for col in ("id", "likes"):  # whole numbers with a null among them: Int64, as float64 would round those above 2**53
        if len(table) and (table[col].dtype == object or table[col].dtype.kind == "f"):
            table[col] = pd.array([r[col] for r in rows], dtype="Int64")
    return table, rejects


def _cell(value):
    """A raw cell as a rejects file shows it (long ones shortened)."""
    if value is None:
        return None
    s = str(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _join_captions(table: pd.DataFrame, caption_files: list[Path]) -> pd.DataFrame:
    """Fill `caption` from caption files named `<tweet file stem>_captions*.csv`; earlier names win."""
    for path in sorted(caption_files, key=lambda p: (p.stem.endswith("_short"), p.name)):
        cap = read_table(path)
        for col in ("id", "caption"):
            if col not in cap.columns:
                raise InputError(f"{path}: missing column {col!r}")
        owners = [s for s in table["source"].unique() if path.stem.startswith(f"{s}_captions")]
        if not owners:
            logger.warning(f"download: {path} matches no tweet file (expected <stem>_captions*.csv); not joined")
            continue
        cap = cap.dropna(subset=["id", "caption"])
        lookup = {}
        for i, c in zip(cap["id"], cap["caption"]):
            try:
                lookup[(owners[0], _to_int(i))] = str(c)
            except ValueError:  # a caption whose id cannot be a tweet's: nothing to join it to
                continue
        keys = list(zip(table["source"], table["id"]))
        found = pd.Series([lookup.get(k) for k in keys], index=table.index, dtype=object)
        table["caption"] = table["caption"].where(table["caption"].notna(), found)
    return table


def _join_accounts(table: pd.DataFrame, stats: list[Path], profiles: list[Path]) -> pd.DataFrame:
    for col in [*STATS_COLUMNS.values(), "followers"]:
        table[col] = np.nan
    for path in stats:
        st = read_table(path).drop_duplicates("username").set_index("username")
        for src, dst in STATS_COLUMNS.items():
            if src in st.columns:
                vals = _finite(st[src])
                table[dst] = table[dst].fillna(table["username"].map(vals))
    for path in profiles:
        pr = read_table(path).drop_duplicates("username").set_index("username")
        vals = _finite(pr["followers_count"])
        table["followers"] = table["followers"].fillna(table["username"].map(vals))
    return table


def _finite(values: pd.Series) -> pd.Series:
    """Numbers of a side table; text, infinities and negatives become unknown."""
    v = pd.to_numeric(values, errors="coerce").astype(float)
    return v.where(np.isfinite(v) & (v >= 0))


def load_sources(sources, exclude=()) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """All tweet files of `sources`, side tables joined. Returns (table, rejects, rows read)."""
    inv = discover(sources, exclude)
    stems = [p.stem for p in inv.tweets]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"download.source: two tweet files share the name {dup}: the row key (file, id) would clash")
    parts, rejects, total, errors = [], [], 0, []
    for path in inv.tweets:  # a file that cannot be read is one reject line; the others are still read
        try:
            df = read_table(path)
            total += len(df)
            rows, bad = normalise(df, path.stem, str(path))
        except InputError as e:
            errors.append(str(e))
            missing = re.findall(r"'([^']+)'", str(e).split("; has ")[0]) if "missing column" in str(e) else []
            rejects += [{"source": str(path), "row": 1, "id": None, "field": c, "reason": "missing column"} for c in missing] \
                or [{"source": str(path), "row": None, "id": None, "field": "file", "reason": str(e)}]
            continue
        rejected = {r["row"] for r in bad}
        rows["_row"] = [n for n in range(2, len(df) + 2) if n not in rejected]
        parts.append(rows)
        rejects += bad
    if errors:
        raise InputError(errors[0] + (f" (and {len(errors) - 1} more file problems)" if len(errors) > 1 else ""),
                         pd.DataFrame(rejects, columns=REJECT_COLUMNS))
    table = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else pd.DataFrame(columns=SCHEMA.names)
    table, again = _drop_repeated_tweets(table, {p.stem: str(p) for p in inv.tweets})
    rejects += again
    table = _join_captions(table.drop(columns="_row", errors="ignore"), inv.captions)
    table = _join_accounts(table, inv.stats, inv.profiles)
    table = table.sort_values(["source", "id"], kind="stable").reset_index(drop=True)
    return table, pd.DataFrame(rejects, columns=REJECT_COLUMNS), total


def _drop_repeated_tweets(table: pd.DataFrame, paths: dict) -> tuple[pd.DataFrame, list[dict]]:
    """A labelled tweet given in two files (same id, date, likes, account and text; ids alone are
    per-file row numbers in some files) is one tweet: keep the first file's row.

    Kept twice it would sit on both sides of a split and leak its likes into the test rows.
    Unlabelled rows (the official test inputs) are each answered, so they all stay.
    """
    if not len(table):
        return table, []
    labelled = table[table["likes"].notna() & table["id"].notna()]
    key = pd.Series([repr(t) for t in zip(*(labelled[c] for c in ("id", "date", "likes", "username", "content")))],
                    index=labelled.index)
    first = labelled[~key.duplicated()].set_index(key[~key.duplicated()])
    again = labelled[key.duplicated()]
    again_keys = key[key.duplicated()]
    rejects = [{"source": paths[src], "row": int(row), "id": i, "field": "id",
                "reason": f"the same labelled tweet (id, date, likes, username, content) as "
                          f"{paths[first.at[k, 'source']]} row {int(first.at[k, '_row'])}; kept there only"}
               for src, row, i, k in zip(again["source"], again["_row"], again["id"], again_keys)]
    return table.drop(index=again.index).reset_index(drop=True), rejects


def read_official(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One official-format file for the CLIs: every row kept, in input order, problems reported.

    Only `id` is required; missing optional columns (date, media, content, likes, ...) are nulls.
    The table has one row per input row and two more columns: `row` (the spreadsheet row) and
    `input_id` (the id cell as written; `id` is null where it is not a valid id).
    """
    path = Path(path)
    df = read_table(path)
    rows, rejects = normalise(df, path.stem, str(path), required=("id",))
    assert len(rows) == len(df), "normalise(required=('id',)) keeps every row"
    table = pa_roundtrip(_join_accounts(rows, [], []))
    table["row"] = np.arange(2, len(df) + 2)
    table["input_id"] = ["" if v is None else str(v) for v in (df["id"] if len(df) else [])]
    return table, pd.DataFrame(rejects, columns=REJECT_COLUMNS)
