"""Regenerate the result tables of README.md and docs/*.md from the committed files that hold them.

Each generated table sits between `<!-- table:NAME -->` and `<!-- /table -->`: NAME one of
tweetsim/pipeline/tables.py's TABLES (rendered from the sample's metrics/), FULL_TABLES (from
results/full/: the metrics of the run on all the shared data) or the hostile-input tables of
docs/reliability.md (`hostile-*`, from tests/hostile_cases.yaml, the suite tests/test_hostile.py runs).
Every table has a block in one file at least; everything outside the blocks is left alone.

usage: python scripts/readme_tables.py [--check] [--readme README.md] [--docs docs] [--params params.yaml] [--metrics metrics] [--full results/full]
  --check: write nothing; exit 1 and show the difference when a table is not what its file says
  (tests/test_report.py runs this).
"""

import argparse
import difflib
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too

from tweetsim.pipeline.tables import load_metrics, render_files  # noqa: E402


HOSTILE = ROOT / "tests" / "hostile_cases.yaml"
SPECIAL = {"VIEWS_400_DIGITS": "views=<400 digits>", "VIEWS_5000_DIGITS": "views=<5,000 digits>",
           "MINUS_100K": "100,000 `-` before a number", "MEDIA_1MB": "a 1 MB cell", "LONG_101": "101 characters",
           "LONG_3000": "3,000 characters", "LONG_1MB": "1 MB of text"}


def _code(value) -> str:
    """A cell of the table: the input as written, in backticks (placeholders described in words)."""
    if value is None:
        return "empty"
    value = str(value)
    if value in SPECIAL:
        return SPECIAL[value]
    value = value if len(value) <= 70 else value[:67] + "..."
    return "`" + value.replace("|", "\\|").replace("`", "'") + "`"


def hostile_tables(cases: dict) -> dict[str, str]:
    """docs/reliability.md's tables, one per part of the suite."""
    rows = ["| field | bad cell | predict-likes, generate (both writers) | best-time --id | download |", "|---|---|---|---|---|"]
    for c in cases["cells"]:
        best = "exit 2: `0 rows with id 12`" if c["status"] == "rejected" else f"exit 0, `WARNING ... {c['reason']}...`"
        rows.append(f"| {c['field']} | {_code(c['cell'])} | `{c['status']}`, reason `{c['reason']}...` | {best} | "
                    f"{'row to rejects.csv' if c.get('download') else 'kept'} |")
    tables = {"hostile-cells": "\n".join(rows)}
    rows = ["| file | exit | rows' status | message |", "|---|---|---|---|"]
    for c in cases["files"]:
        what = c["name"].replace("_", " ") + (f" (`{c['column']}`)" if c.get("column") else "")
        rows.append(f"| {what} | {c['exit']} | {', '.join(c.get('statuses', [])) or '-'} | {_code(c['message'])} |")
    tables["hostile-files"] = "\n".join(rows)
    rows = ["| command line (`tweetsim ...`) | exit | message |", "|---|---|---|"]
    for c in cases["options"]:
        rows.append(f"| {_code(' '.join(c['argv']))} | {c['exit']} | {_code(c['message'])} |")
    tables["hostile-options"] = "\n".join(rows)
    rows = ["| `dvc exp run -S` | the stage's one line (exit 1) |", "|---|---|"]
    for c in cases["params"]:
        rows.append(f"| {_code(c['edit'])} | {_code(c['message'])} |")
    tables["hostile-params"] = "\n".join(rows)
    rows = ["| web request | HTTP | message on the page |", "|---|---|---|"]
    for c in cases["web"]:
        what = "; ".join([*(f"{k} {_code(v)}" for k, v in c.get("form", {}).items()),
                          *(f"upload: {c['upload'].replace('_', ' ')}" for _ in [0] if "upload" in c),
                          *(f"header {k}: {_code(v)}" for k, v in c.get("headers", {}).items())])
        rows.append(f"| {what} | {c['http']} | {_code(c['message'])} |")
    tables["hostile-web"] = "\n".join(rows)
    return tables


def render_docs(text: str, tables: dict[str, str]) -> str:
    for name, table in tables.items():
        start, end = f"<!-- table:{name} -->", "<!-- /table -->"
        if start not in text:
            raise ValueError(f"no {start} marker")
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"
    return text


def render_all(texts: dict[str, str], params: dict, metrics: dict, full: dict, cases: dict) -> dict[str, str]:
    """Every file's text with its tables rendered; each table must have a block somewhere."""
    hostile = hostile_tables(cases)
    texts = {k: v for k, v in texts.items()}
    placed = set()
    for name, text in texts.items():
        for table in hostile:
            if f"<!-- table:{table} -->" in text:
                placed.add(table)
                text = render_docs(text, {table: hostile[table]})
        texts[name] = text
    if set(hostile) - placed:
        raise ValueError(f"no <!-- table:NAME --> block for {sorted(set(hostile) - placed)}")
    # the hostile blocks are filled: hide them from render_files, which knows only its own tables
    masked = {k: _mask(v, hostile) for k, v in texts.items()}
    rendered = render_files(masked, params, metrics, full)
    return {k: _unmask(rendered[k], hostile) for k in texts}


def _mask(text: str, names) -> str:
    for name in names:
        text = text.replace(f"<!-- table:{name} -->", f"<!-- hostile:{name} -->")
    return text


def _unmask(text: str, names) -> str:
    for name in names:
        text = text.replace(f"<!-- hostile:{name} -->", f"<!-- table:{name} -->")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a table differs; write nothing")
    ap.add_argument("--readme", default=ROOT / "README.md", type=Path)
    ap.add_argument("--docs", default=None, type=Path, help="folder of the docs pages (default: docs/ beside the README)")
    ap.add_argument("--params", default=ROOT / "params.yaml", type=Path)
    ap.add_argument("--metrics", default=ROOT / "metrics", type=Path)
    ap.add_argument("--full", default=ROOT / "results" / "full", type=Path, help="metrics of the run on all the shared data")
    a = ap.parse_args(argv)
    docs = a.docs or a.readme.parent / "docs"
    files = [a.readme, *sorted(docs.glob("*.md"))]
    # plain YAML, not tweetsim.params.load_params: only a few keys are read, and the script stays
    # usable on a params file of another commit
    params = yaml.safe_load(a.params.read_text())
    old = {str(f): f.read_text() for f in files}
    try:
        new = render_all(old, params, load_metrics(a.metrics), load_metrics(a.full),
                         yaml.safe_load(HOSTILE.read_text()))
    except (ValueError, KeyError) as e:
        print(f"readme_tables: {e}", file=sys.stderr)
        return 2
    stale = [f for f in old if new[f] != old[f]]
    if not stale:
        print(f"readme_tables: the tables of {len(files)} files match {a.metrics}/, {a.full}/ and {HOSTILE.name}")
        return 0
    if a.check:
        for f in stale:
            sys.stdout.writelines(difflib.unified_diff(old[f].splitlines(True), new[f].splitlines(True),
                                                       f"{f} (committed)", f"{f} (from the committed sources)"))
        print(f"readme_tables: {len(stale)} files differ from their sources: run python scripts/readme_tables.py",
              file=sys.stderr)
        return 1
    for f in stale:
        Path(f).write_text(new[f])
    print(f"readme_tables: tables rewritten in {', '.join(Path(f).name for f in stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
