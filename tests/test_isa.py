"""The CPU kernels held to AVX2 (tweetsim/config/isa.py): every switch set before its library loads,
a value the user set kept, and every stage script importing tweetsim.pipeline.stage before numpy."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tweetsim.config import isa

ROOT = Path(__file__).resolve().parents[1]


def test_hold_sets_each_switch_keeps_the_users_and_names_a_library_loaded_too_late():
    env = {"MKL_CBWR": "AUTO"}
    assert isa.hold(env, modules={}) == []
    assert env == {**isa.AVX2_CAPS, "MKL_CBWR": "AUTO"}
    assert isa.hold({}, modules={"numpy": object()}) == ["numpy"] == isa.late()
    assert isa.hold(dict(isa.AVX2_CAPS), modules={"numpy": object()}) == []  # set before the process started


@pytest.mark.parametrize("script", sorted((ROOT / "stages").glob("*.py")), ids=lambda p: p.name)
def test_a_stage_imports_the_stage_entry_first(script):
    first = next(n for n in ast.parse(script.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom)))
    assert isinstance(first, ast.ImportFrom) and first.module == "tweetsim.pipeline.stage", script.name


def test_a_process_that_imports_the_entry_first_runs_avx2_kernels():
    """In a fresh process without the variables: numpy's dispatch, OpenBLAS, PyTorch and oneDNN all on AVX2."""
    env = {k: v for k, v in os.environ.items() if k not in isa.AVX2_CAPS}
    code = ("import tweetsim.pipeline.stage, numpy, torch\n"
            "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "print(f.get('X86_V4', False), torch.backends.cpu.get_cpu_capability(), torch.ops.mkldnn._is_mkldnn_bf16_supported())\n")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OPENBLAS_VERBOSE": "2"}, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "AVX2", "False"], out.stdout
    assert "Core: Haswell" in out.stdout + out.stderr
