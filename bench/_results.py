"""What every bench writes beside what it prints: bench/results/<bench>.json with the CPU (model, ISA
flags, cores), the load average at the start and at the end of the run, the command line, the commit
and the bench's figures. scripts/readme_tables.py renders the docs' bench blocks from these files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
_START_LOAD = os.getloadavg()  # the bench imports this module first thing: the load it started under


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
    wanted = sorted({f for f in (flags.group(1).split() if flags else []) if f.startswith(("avx", "amx", "fma"))})
    return {"model": name.group(1).strip() if name else "unknown", "isa_flags": wanted, "cores": os.cpu_count()}


def commit() -> str:
    """HEAD, with "+dirty" when a tracked file that can run differs from it (the figures then come from
    uncommitted code); Markdown, tests and bench results do not run in a bench."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md", ":!tests",
                            ":!bench/results"], capture_output=True, text=True).stdout
    return head + ("+dirty" if dirty.strip() else "")


def load_average() -> dict:
    """The 1, 5 and 15 minute load averages when the bench started and now."""
    return {"start": [round(x, 2) for x in _START_LOAD], "end": [round(x, 2) for x in os.getloadavg()]}


def add_out(ap, bench: str) -> None:
    """The `--out` option of an argparse parser: where the run's JSON goes."""
    ap.add_argument("--out", default=str(RESULTS / f"{bench}.json"), help="the run's JSON (default %(default)s)")


def write(out: str | Path, figures: dict) -> None:
    """Write the run's JSON: context, then `figures` (every figure the bench printed, by name)."""
    result = {"cpu": cpu(), "load_average": load_average(),
              "argv": ["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]], "commit": commit(),
              "figures": figures}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"results written to {out}")


def pop_out(argv: list[str], bench: str) -> tuple[list[str], str]:
    """For a bench with a positional command line: `--out FILE` taken out of argv, else the default."""
    argv = list(argv)
    if "--out" in argv:
        i = argv.index("--out")
        if i + 1 == len(argv):
            sys.exit("--out needs a file")
        return argv[:i] + argv[i + 2:], argv[i + 1]
    return argv, str(RESULTS / f"{bench}.json")
