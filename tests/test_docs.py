"""The docs stay a description of the project as it is: no history in prose (git log and CHANGELOG.md
keep it), and every relative link of README.md and docs/ resolves."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what history reads like: issue numbers, sessions, "was X before", the run or default of before, dates of runs
HISTORY = re.compile(
    r"\bissues? #?\d+|\bthe issue'?s?\b|\(issue[:)]"
    r"|\b(?:this|that|the|a|previous|last|next|earlier|later) session\b|\bsession (?:before|had|left)\b"
    r"|\bwas\b(?:[^.\n]|\.\d){0,60}\bbefore\b|\bthe (?:run|commit|change|lock|session) before\b"
    r"|\bdefault until\b|\bwas the default\b|\buntil now\b|\bno longer\b(?! than)|\bpreviously\b|\bformerly\b"
    r"|\bsince the \w+ (?:used to|was|trains on)\b|\b(?:ran|did) before the\b|\b202[5-9]-\d\d-\d\d\b", re.I)

SCANNED = re.compile(r"\.(py|md|ya?ml|sh|toml|txt|html|js|cfg)$|^\.ci/run$")
NOT_PROSE = {
    "CHANGELOG.md",            # the one place for what changed
    "tests/test_docs.py",      # the patterns themselves
    "tests/hostile_cases.yaml",  # hostile inputs, not prose
}
# files whose prose other work is rewriting now; each listed with the markers it still has, and
# removed from here once clean (test_pending_files_are_still_pending says when)
PENDING: dict[str, int] = {}  # file -> history markers it may still hold (none now)


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if SCANNED.search(f) and not f.startswith("data/sample/") and f not in NOT_PROSE]


def _hits(path: str) -> list[str]:
    text = (ROOT / path).read_text(errors="replace")
    return [f"{path}:{i}: {m.group(0)!r} in {line.strip()[:120]}"
            for i, line in enumerate(text.splitlines(), 1) for m in HISTORY.finditer(line)]


def test_no_history_in_prose():
    files = _tracked()
    assert "README.md" in files and "tweetsim/apps/cli.py" in files
    hits = [h for f in files if f not in PENDING for h in _hits(f)]
    assert not hits, "history in prose (say what and why; git log keeps the history):\n" + "\n".join(hits)


def test_pending_files_are_still_pending():
    for f, n in PENDING.items():
        assert len(_hits(f)) <= n, f"{f} has more history markers than when it was listed: {_hits(f)}"
        assert _hits(f), f"{f} is clean now: remove it from PENDING"


@pytest.mark.parametrize("line, hit", [
    ("Against issue 4's targets", True), ("the session before measured 89-91", True),
    ("(the default until 2026-12-05, at 48 tokens)", True), ("The run before (28392f6) took", True),
    ("the table was 0.882 before the change", True), ("one ONNX Runtime session per worker", False),
    ("requests, one Session per worker thread", False), ("an interval no longer than the range", False),
    ("--start \"2024-05-06 09:00\"", False),
])
def test_history_pattern(line, hit):
    assert bool(HISTORY.search(line)) == hit


# ---- links ----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "results" / "full" / "README.md"]


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+\s+(.*)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in _links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title here\n[ok](#title-here) [bad](nope.md) [web](https://example.com)\n```\n[x](y)\n```\n")
    assert _links(page) == ["#title-here", "nope.md"]
    assert _anchors(page) == {"title-here"}


def test_readme_is_short_and_keeps_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "bash scripts/setup.sh && . .venv/bin/activate && dvc repro\n" in text
    assert "bash scripts/setup.sh && . .venv/bin/activate && python -m pytest -q\n" in text


# ---- measured figures: rendered from bench/results/*.json, never typed --------------------------

# a rate, a latency, a memory size or a speed-up: what a bench measures (a target such as "under 2 s"
# or a parameter is not one of these)
MEASURED = re.compile(
    r"\d[\d,]*(?:\.\d+)? ?(?:texts|rows|images|img|posts|tweets|files|tokens|prompts|requests)/s\b"
    r"|\d(?:\.\d+)? ?(?:ms|MiB|GiB|GB|MB/s|s/step)\b|\d+(?:\.\d+)?x (?:faster|slower)\b|\d(?:\.\d+)? ?s (?:a|per) post\b", re.I)
GENERATED = re.compile(r"<!-- table:[\w-]+ -->.*?<!-- /table -->", re.S)  # scripts/readme_tables.py's blocks


def _typed_figures(path: str, text: str) -> list[str]:
    lines = GENERATED.sub("<!-- generated -->", text).splitlines()
    return [f"{path}: {m.group(0)!r} in {line.strip()[:120]}" for line in lines for m in MEASURED.finditer(line)]


def test_no_measured_figure_is_typed_in_the_docs():
    pages = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]
    hits = [h for p in pages for h in _typed_figures(p, (ROOT / p).read_text())]
    assert not hits, ("measured figures typed by hand: a bench writes them to bench/results/<bench>.json and "
                      "scripts/readme_tables.py renders them into a <!-- table:NAME --> block:\n" + "\n".join(hits))


@pytest.mark.parametrize("line, hit", [
    ("batched: 371.2 rows/s", True), ("1,285 texts/s", True), ("a 2.5 ms wait", True), ("peak 812 MiB", True),
    ("37x faster than int8", True), ("1.23 s a post", True), ("0.42 s/step with the prefix", True),
    ("target under 2 s a request", False), ("`--latency-ms 20`", False), ("the 80% range", False),
    ("k 10, shrink 20", False), ("<!-- table:bench-x -->\n900 rows/s\n<!-- /table -->", False),
])
def test_measured_pattern(line, hit):
    assert bool(_typed_figures("x.md", line)) == hit


def test_readme_gives_the_development_loop_and_the_slow_marker_is_registered():
    import tomllib

    assert 'python -m pytest -q -m "not slow"' in (ROOT / "README.md").read_text()
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in options["markers"]) and "--strict-markers" in options["addopts"]


# ---- the package count ----------------------------------------------------------------------

NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen".split()


def test_docs_state_the_package_count_and_list_every_package():
    """README.md and docs/DESIGN.md say how many packages the library has, in words, and list each one."""
    pkgs = sorted(p.name for p in (ROOT / "tweetsim").iterdir() if (p / "__init__.py").is_file())
    pages = {"README.md": (r"the library: (\w+) packages", r"── {}/ "),
             "docs/DESIGN.md": (r"The library `tweetsim/` is (\w+) packages", r"\| `{}` \|")}
    for page, (count, listed) in pages.items():
        text = (ROOT / page).read_text()
        m = re.search(count, text)
        assert m, f"{page}: no sentence matching {count!r} states the package count"
        assert m.group(1) == NUMBERS[len(pkgs)], f"{page} says {m.group(1)} packages; tweetsim/ has {len(pkgs)}: {pkgs}"
        missing = [p for p in pkgs if not re.search(listed.format(p), text)]
        assert not missing, f"{page} does not list the packages {missing}"
