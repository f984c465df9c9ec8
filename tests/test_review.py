"""scripts/review.sh on a tiny DVC project: the base revision and the working tree both reproduced
here, an unchanged pipeline shown as no change (its stage restored from the run cache, not run
again), a changed param shown as the metrics it moves; scripts/headline_diff.py's table."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("headline_diff", ROOT / "scripts" / "headline_diff.py")
hd = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hd)

FIT = """import sys, yaml
x = yaml.safe_load(open("params.yaml"))["x"]
open(sys.argv[1], "a").write("fit\\n")  # outside the repo: how often the stage really ran
open("model.txt", "w").write(str(x))
"""
EVAL = """import json
x = float(open("model.txt").read())
json.dump({"regime": {"model": {"rmse": x / 2, "acc": 0.5}}}, open("metrics/headline.json", "w"))
"""


def test_diff_names_changed_added_and_removed_metrics():
    base = {"r": {"m": {"a": 1.0, "b": 2.0}}, "old": 1}
    head = {"r": {"m": {"a": 1.0, "b": 2.2}}, "new": 3}
    assert hd.diff(base, base) == [] and hd.markdown([]) == "No headline metric changed."
    assert hd.diff(base, head) == [("new", "—", 3, "—"), ("old", 1, "—", "—"), ("r.m.b", 2.0, 2.2, "+10.00%")]
    assert "| r.m.b | 2.0 | 2.2 | +10.00% |" in hd.markdown(hd.diff(base, head))


def _run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("dvc", path=str(Path(sys.executable).parent)) is None, reason="dvc not installed")
def test_review_shows_no_change_for_an_unchanged_pipeline_and_the_change_of_a_param(tmp_path):
    repo, log = tmp_path / "repo", tmp_path / "fit.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    (repo / "scripts").mkdir(parents=True)
    (repo / "metrics").mkdir()
    (repo / "metrics" / ".gitkeep").touch()
    for name in ("review.sh", "headline_diff.py"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    (repo / "fit.py").write_text(FIT)
    (repo / "evaluate.py").write_text(EVAL)
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "dvc.yaml").write_text(f"""stages:
  fit:
    cmd: python fit.py {log}
    deps: [fit.py]
    params: [x]
    outs: [model.txt]
  evaluate:
    cmd: python evaluate.py
    deps: [evaluate.py, model.txt]
    metrics:
      - metrics/headline.json:
          cache: false
""")
    (repo / ".gitignore").write_text("/model.txt\n")
    _run(["git", "init", "-q", "-b", "main"], repo, env)
    _run(["dvc", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "base"], repo, env)

    out = _run(["bash", "scripts/review.sh", "main"], repo, env)
    assert "No headline metric changed." in out
    assert log.read_text().count("fit") == 1  # the working tree's run restored the base's fit from the run cache

    (repo / "params.yaml").write_text("x: 3\n")
    out = _run(["bash", "scripts/review.sh", "main"], repo, env)
    assert "| regime.model.rmse | 0.5 | 1.5 | +200.00% |" in out and "acc" not in out
    assert not list((repo / ".git" / "worktrees").glob("*"))  # the base's worktree removed
