#!/usr/bin/env bash
# What a change does to the headline metrics, with the CPU taken out: the base revision's pipeline and
# this working tree's, both reproduced on this machine, their metrics/headline.json compared.
# usage: bash scripts/review.sh [BASE_REV]   (default: main)
# The base runs in a git worktree sharing this checkout's DVC cache, so a stage whose command, deps and
# params are unchanged is restored from DVC's run cache in the second run instead of computed again,
# and an unchanged pipeline prints "No headline metric changed.". Markdown on stdout; dvc's log on stderr.
set -euo pipefail
base=${1:-main}
root=$(git rev-parse --show-toplevel)
cd "$root"
work=$(mktemp -d)
cleanup() { git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
sha=$(git rev-parse --verify "$base^{commit}")
git worktree add -q --detach "$work/base" "$sha"
cache=$(dvc cache dir)
for shared in .venv .cache; do  # the environment and the content-keyed model and embedding caches
  [ -e "$shared" ] && ln -s "$root/$shared" "$work/base/$shared"
done
(cd "$work/base" && dvc cache dir --local "$cache" && dvc repro >&2)
dvc repro >&2
echo "## Headline metrics: base ${sha:0:8} -> this tree, both reproduced on this machine"
echo
python scripts/headline_diff.py "$work/base/metrics/headline.json" metrics/headline.json
