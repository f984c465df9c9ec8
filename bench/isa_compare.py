"""Does a stage's output depend on the CPU's instruction set? Run the sample pipeline twice, cold, in
two scratch clones of this repo on this machine: once with every library on its native kernels, once
with the libraries that have a runtime switch held to AVX2 (an AVX2-only CPU, emulated), then compare
the two dvc.lock files stage by stage.

The switches (all read when the library starts): oneDNN ONEDNN_MAX_CPU_ISA, MKL MKL_CBWR, PyTorch's own
kernels ATEN_CPU_CAPABILITY, OpenBLAS (numpy, scipy, scikit-learn) OPENBLAS_CORETYPE, numpy's ufuncs
NPY_DISABLE_CPU_FEATURES. ONNX Runtime has none (MLAS picks its kernels from cpuid), so its int8 and
fp32 paths run the same kernels on both sides here: this comparison cannot see them.

Each clone gets a fresh DVC cache and a fresh `.cache` (encoder exports, embeddings, the static table,
checkpoints), sharing only the converted LM weights (.cache/models), so no output can be restored from
a run made under the other setting.

usage: python bench/isa_compare.py [--work /tmp/isa_compare] [--side native|avx2 ...] [--set KEY=YAML ...]
                                   [--share PART ...] [--compare-only] [--out bench/results/isa_compare.json]
--set edits both clones' params.yaml alike (e.g. train_llm.steps=2 for a shorter run on busy cores).
Writes the JSON named by --out: the CPU, each side's environment and per-stage wall times, the stages
whose outputs differ (first one named), and the relative drift of every headline metric.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from _results import commit, cpu, load_average

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from headline_diff import flat  # noqa: E402  the review's flattening of headline.json, one key a metric

CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE",
        "NPY_DISABLE_CPU_FEATURES")


def native_env() -> dict:
    """Each switch set to what the library picks on its own here (explicit, so that no default applies)."""
    clean = {k: v for k, v in os.environ.items() if k not in CAPS}
    py = str(ROOT / ".venv" / "bin" / "python")
    aten = subprocess.run([py, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"], env=clean,
                          capture_output=True, text=True, check=True).stdout.strip().lower()
    blas = subprocess.run([py, "-c", "import numpy"], env={**clean, "OPENBLAS_VERBOSE": "2"}, capture_output=True,
                          text=True, check=True)
    blas = blas.stdout + blas.stderr
    core = re.search(r"Core: (\S+)", blas)
    env = {"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "ALL", "MKL_CBWR": "AUTO", "ATEN_CPU_CAPABILITY": aten,
           "NPY_DISABLE_CPU_FEATURES": ""}
    if core:
        env["OPENBLAS_CORETYPE"] = core.group(1)
    return env


def avx2_env() -> dict:
    from tweetsim.config.isa import AVX2_CAPS

    return dict(AVX2_CAPS)


def clone(work: Path, side: str, overrides: list[str], share: list[str]) -> Path:
    repo = work / side
    if repo.exists():
        shutil.rmtree(repo)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())  # a local params edit is what is compared
    for item in overrides:
        key, value = item.split("=", 1)
        *path, last = key.split(".")
        node = params
        for k in path:
            node = node[k]
        if last not in node:
            raise SystemExit(f"--set {item}: no key {key} in params.yaml")
        node[last] = yaml.safe_load(value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (repo / ".cache").mkdir()
    for part in ["models", *share]:  # this checkout's .cache parts the run may reuse
        (repo / ".cache" / part).parent.mkdir(parents=True, exist_ok=True)
        (repo / ".cache" / part).symlink_to((ROOT / ".cache" / part).resolve())
    return repo


def repro(repo: Path, env: dict, log: Path) -> dict:
    """`dvc repro` in `repo` under `env`; per-stage wall seconds from the times its 'Running stage' lines appear."""
    full = {k: v for k, v in os.environ.items() if k not in CAPS}
    full.update(env)
    full["PATH"] = f"{repo / '.venv' / 'bin'}:{full['PATH']}"
    full["PYTHONPATH"] = str(repo)  # the clone's code, not the venv's editable install
    full.pop("VIRTUAL_ENV", None)
    full["PYTHONUNBUFFERED"] = "1"  # dvc's lines as they come, for the per-stage times
    t0 = time.monotonic()
    marks: list[tuple[str, float]] = []
    with open(log, "w") as f:
        p = subprocess.Popen(["dvc", "repro"], cwd=repo, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        for line in p.stdout:
            f.write(line)
            m = re.match(r"Running stage '([^']+)'", line)
            if m:
                marks.append((m.group(1), time.monotonic() - t0))
        rc = p.wait()
    total = time.monotonic() - t0
    if rc:
        raise SystemExit(f"dvc repro failed in {repo} (rc {rc}): see {log}")
    ends = [t for _, t in marks[1:]] + [total]
    return {"wall_s": round(total, 1), "stages_s": {s: round(e - t, 1) for (s, t), e in zip(marks, ends)}}


def outs(lock: dict) -> dict[str, dict[str, str]]:
    """stage -> {out path: md5} in dvc.lock's order (dvc.yaml's)."""
    return {name: {o["path"]: o.get("md5", "") for o in st.get("outs", [])} for name, st in lock["stages"].items()}


def compare(a: Path, b: Path) -> dict:
    la, lb = outs(yaml.safe_load((a / "dvc.lock").read_text())), outs(yaml.safe_load((b / "dvc.lock").read_text()))
    stages, first = {}, None
    for name in la:
        differ = sorted(p for p in la[name] if la[name][p] != lb.get(name, {}).get(p))
        stages[name] = {"identical": not differ, "differing_outs": differ}
        if differ and first is None:
            first = name
    ha, hb = (flat(json.loads((r / "metrics" / "headline.json").read_text())) for r in (a, b))
    drift = {}
    for k in sorted(ha):
        x, y = ha[k], hb.get(k)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x != y:
            drift[k] = {"native": x, "avx2": y, "rel": round(abs(y - x) / abs(x), 6) if x else None}
    return {"first_differing_stage": first, "differing_stages": [s for s, v in stages.items() if not v["identical"]],
            "stages": stages, "headline_changed": drift,
            "max_headline_rel_drift": max((v["rel"] or 0 for v in drift.values()), default=0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/isa_compare")
    ap.add_argument("--side", action="append", choices=["native", "avx2"], help="run only these sides (default both)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="a params.yaml value, both sides")
    ap.add_argument("--share", action="append", default=[], metavar="PART",
                    help="a .cache part to reuse besides models (encoder/onnx, encoder/static: the data-independent exports)")
    ap.add_argument("--compare-only", action="store_true",
                    help="run nothing: compare the two clones already in --work (their runs kept from --out)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "isa_compare.json"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    envs = {"native": native_env(), "avx2": avx2_env()}
    result = {"cpu": cpu(), "argv": ["python", "bench/isa_compare.py", *sys.argv[1:]], "params_set": args.set,
              "shared_cache": ["models", *args.share],
              "commit": commit(), "env": envs, "runs": {}}
    prev = Path(args.out)
    if args.compare_only:  # the runs' own context (CPU, load, commit, command) stays as they wrote it
        if not prev.exists():
            raise SystemExit(f"--compare-only: no {prev} with the runs")
        result = json.loads(prev.read_text())
    elif prev.exists():
        result["runs"] = json.loads(prev.read_text()).get("runs", {})
    for side in [] if args.compare_only else args.side or ["native", "avx2"]:
        repo = clone(work, side, args.set, args.share)
        print(f"{side}: dvc repro in {repo} ...", flush=True)
        result["runs"][side] = repro(repo, envs[side], work / f"{side}.log")
        print(f"{side}: {result['runs'][side]['wall_s']} s", flush=True)
    if not args.compare_only:
        result["load_average"] = load_average()
    if all((work / s / "dvc.lock").exists() for s in ("native", "avx2")):
        result["comparison"] = compare(work / "native", work / "avx2")
    prev.parent.mkdir(parents=True, exist_ok=True)
    prev.write_text(json.dumps(result, indent=1) + "\n")
    c = result.get("comparison", {})
    print(f"first differing stage: {c.get('first_differing_stage')}; differing: {c.get('differing_stages')}; "
          f"max headline drift {c.get('max_headline_rel_drift')}")


if __name__ == "__main__":
    sys.exit(main())
