"""End to end: `dvc repro` in a temporary copy of the repo, then `dvc exp run -S` with a changed
param, and `dvc metrics diff` must report the change."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stages_helper import one_regime_deploy, override

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", ".dvc/cache", ".dvc/tmp", ".cache", "models", "dvclive", "data/media", "data/predictions",
        ".pytest_cache", "metrics"}
# Small settings so the whole DAG runs in a few minutes on 2 cores: one regime, a couple of
# optimiser steps per model, a handful of generated rows.
TINY = {
    "split.regimes": ["unseen_time"],
    "train_like_classifier.max_steps": 2,
    "train_like_classifier.eval_every": 1,
    "train_like_classifier.max_eval_rows": 16,
    "regress_within_bucket.xgb.n_estimators": 30,
    "regress_within_bucket.cli_regime": "unseen_time",
    **one_regime_deploy("unseen_time"),
    "train_llm.steps": 2,
    "train_llm.batch_size": 2,
    "build_prompts.caption_similarity": False,
    "train_llm.max_length": 96,
    "generate.max_eval_rows": 4,
    "generate.max_new_tokens": 12,
    "train_behaviour_lm.steps": 2,
    "train_behaviour_lm.max_eval_rows": 4,
    "train_behaviour_lm.regimes": ["unseen_time"],
    "writer.caption_similarity": False,
    "writer.reranker.max_train_queries": 300,
    "writer.reranker.n_estimators": 30,
    "writer.pool.typical_sample": 300,
}


def run(cmd, cwd, **kw):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def copy_repo(dst: Path) -> None:
    def ignore(dirpath, names):
        rel = Path(dirpath).relative_to(ROOT)
        return [n for n in names if (rel / n).as_posix() in SKIP or n == "__pycache__" or n.endswith(".parquet")]

    shutil.copytree(ROOT, dst, ignore=ignore)


@pytest.mark.slow  # the whole DAG: minutes
def test_repro_then_experiment_changes_metrics(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    params = override(yaml.safe_load((repo / "params.yaml").read_text()), TINY)
    # share the converted SmolLM2 folder with the checkout instead of converting it again (70 s)
    params["train_llm"]["model"]["cache_dir"] = params["train_behaviour_lm"]["model"]["cache_dir"] = str(ROOT / ".cache" / "models")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"], repo)
    out = run(["dvc", "repro"], repo, timeout=1200)
    assert "download:" in out and "evaluate" in out
    likes = json.loads((repo / "metrics" / "likes.json").read_text())
    assert set(likes) == {*params["split"]["regimes"], "mixed"}  # mixed: every regime's test rows through the router
    assert {"median", "account_median", "served"} <= set(likes["unseen_time"]) and set(likes["mixed"]) == {"served"}
    text = json.loads((repo / "metrics" / "text.json").read_text())["unseen_time"]
    assert {"retrieval", "consensus_recent", "consensus", "reranked", "oracle", "typical"} == set(text["all_rows"])
    assert {"llm_lora", "llm_base", "reranked"} <= set(text["shared_rows"])
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"], repo)
    assert "up to date" in run(["dvc", "repro"], repo)  # a no-op repro runs nothing
    run(["dvc", "exp", "run", "-S", "split.unseen_time.test_from=2022-06-01"], repo, timeout=1200)
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo))
    changed = {k for f in diff.values() for k, v in f.items() if v.get("diff")}
    # fewer test rows after the later cut-off (text models are compared on a capped set of rows)
    assert {"unseen_time.median.n", "unseen_time.account_median.n", "unseen_time.all_rows.reranked.n"} <= changed, diff
