#!/usr/bin/env bash
# Wall time and peak memory of a cold `dvc repro` and of a no-op one, in a fresh copy of the repo.
# usage: bash bench/bench_repro.sh [extra -S overrides are not supported: edit params.yaml first]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$root" "$work/repo"
cp "$root/params.yaml" "$work/repo/params.yaml"
cd "$work/repo"
rm -f dvc.lock
measure() {  # prints "label wall_s peak_MiB" using GNU time over the whole process tree
  /usr/bin/time -f "%e %M" -o "$work/time.txt" dvc repro -q > "$work/$1.log" 2>&1
  read -r wall kib < "$work/time.txt"
  echo "$1: wall ${wall}s, peak RSS $((kib / 1024)) MiB (largest single process)"
}
measure cold
measure noop
echo "logs in $work"
