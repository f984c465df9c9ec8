"""Regenerate the README's result tables that report the sample's figures, from the metrics files.

Each generated table sits between `<!-- table:NAME -->` and `<!-- /table -->` (NAME one of
tweetsim/apps/report.py's TABLES, from the sample's metrics/, or FULL_TABLES, from results/full/: the
metrics of the run on all the shared data); everything else in the README is left alone, including
the tables marked `<!-- hand-written: ... -->`, whose figures come from runs that no committed
metrics file holds.

usage: python scripts/readme_tables.py [--check] [--readme README.md] [--params params.yaml] [--metrics metrics] [--full results/full]
  --check: write nothing; exit 1 and show the difference when the README's tables are not what the
  metrics files say (tests/test_report.py runs this).
"""

import argparse
import difflib
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too

from tweetsim.apps import report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README differs; write nothing")
    ap.add_argument("--readme", default=ROOT / "README.md", type=Path)
    ap.add_argument("--params", default=ROOT / "params.yaml", type=Path)
    ap.add_argument("--metrics", default=ROOT / "metrics", type=Path)
    ap.add_argument("--full", default=ROOT / "results" / "full", type=Path, help="metrics of the run on all the shared data")
    a = ap.parse_args(argv)
    # plain YAML, not tweetsim.params.load_params: only a few keys are read, and the script stays
    # usable on a params file of another commit
    params = yaml.safe_load(a.params.read_text())
    old = a.readme.read_text()
    try:
        new = report.render_tables(old, params, report.load_metrics(a.metrics), report.load_metrics(a.full))
    except (ValueError, KeyError) as e:
        print(f"readme_tables: {e}", file=sys.stderr)
        return 2
    if new == old:
        print(f"readme_tables: {a.readme.name} tables match {a.metrics}/")
        return 0
    if a.check:
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                   f"{a.readme.name} (committed)", f"{a.readme.name} (from {a.metrics}/)"))
        print(f"readme_tables: {a.readme.name} differs from the metrics files: run python scripts/readme_tables.py",
              file=sys.stderr)
        return 1
    a.readme.write_text(new)
    print(f"readme_tables: {a.readme.name} tables rewritten from {a.metrics}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
