"""Run the README's example commands on the sample's files and keep what they print and the first
lines of what they write, so that the README's example blocks are this output, not typed
(scripts/readme_tables.py renders them from bench/results/readme_examples.json).

usage: python scripts/readme_examples.py [--out bench/results/readme_examples.json]
Needs the artefacts of `dvc repro` (models/, data/tweets.parquet); runs from the repo root.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _results import add_out, write  # noqa: E402

OFFICIAL = "data/sample/official"
# name -> (arguments of `tweetsim`, the file it writes, shown as the README names it)
EXAMPLES = {
    "predict-likes": (["predict-likes", "--input", f"{OFFICIAL}/behaviour_simulation_test_time.xlsx"], "likes.csv"),
    "generate": (["generate", "--input", f"{OFFICIAL}/content_simulation_test_time.xlsx"], "tweets.csv"),
    "best-time": (["best-time", "--input", f"{OFFICIAL}/behaviour_simulation_test_time.xlsx", "--id", "9", "--top", "3"],
                  None),
}


def run(args: list[str], output: str | None, tmp: Path) -> dict:
    """The command line as the README shows it, the lines it prints (its own, no library warnings) and
    the first 3 lines of its output file."""
    real = [*args, "--output", str(tmp / output)] if output else args
    p = subprocess.run([sys.executable, "-m", "tweetsim", *real], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"})  # this checkout's code, no bars
    if p.returncode:
        sys.exit(f"tweetsim {' '.join(real)}: exit {p.returncode}\n{p.stderr[-2000:]}")
    name = args[0]
    printed = [line.replace(str(tmp) + "/", "") for line in (p.stdout + p.stderr).splitlines()
               if line.startswith((f"{name}:", f"tweetsim {name}:", "  "))]
    out = {"command": "tweetsim " + " ".join([*args, "--output", output] if output else args), "printed": printed}
    if output:
        out["head"] = {"command": f"head -3 {output}", "lines": (tmp / output).read_text().splitlines()[:3]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_out(ap, "readme_examples")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write(a.out, {name: run(args, output, Path(tmp)) for name, (args, output) in EXAMPLES.items()})


if __name__ == "__main__":
    main()
