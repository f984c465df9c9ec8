"""bench/bench_scale.py's replicated data set: K distinct-named copies with distinct texts, captions
files still named after their tweet file, and download's loader reading K times the rows."""

import importlib.util

import pandas as pd

from conftest import ROOT, SAMPLE
from tweetsim.data.load import discover, load_sources


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "bench_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_replicate_k_copies(tmp_path, sample_table):
    k = 2
    counts = _bench().replicate(SAMPLE, tmp_path, k)
    inv = discover(tmp_path)
    assert counts == {"tweet_files": len(inv.tweets), "caption_files": len(inv.captions), "side_tables": 2}
    assert len(inv.stats) == len(inv.profiles) == 1  # side tables once: the copies share the accounts
    stems = [p.stem for p in inv.tweets]
    assert len(stems) == len(set(stems)) == k * len(discover(SAMPLE).tweets)
    for cap in inv.captions:  # each captions file still joins to its own copy's tweet file
        owners = [s for s in stems if cap.stem.startswith(f"{s}_captions")]
        assert len(owners) == 1 and owners[0].split("_")[0] == cap.stem.split("_")[0]

    table, rejects, total = load_sources(tmp_path)
    assert len(rejects) == 0 and total == len(table) == k * len(sample_table)
    assert table["caption"].notna().sum() == k * sample_table["caption"].notna().sum()
    copy0 = table[table["source"].str.startswith("copy0_")].reset_index(drop=True)
    copy1 = table[table["source"].str.startswith("copy1_")].reset_index(drop=True)
    # copy 0 is the source as download reads it (csv instead of xlsx changes no value)
    pd.testing.assert_frame_equal(copy0.assign(source=copy0["source"].str.removeprefix("copy0_")),
                                  sample_table.reset_index(drop=True))
    # copy 1: every text marked (no text shared with copy 0), ids shifted, the rest unchanged
    assert not set(copy1["content"].dropna()) & set(copy0["content"].dropna())
    assert (copy1["content"].dropna() == copy0["content"].dropna() + " copy1").all()
    assert (copy1["caption"].dropna() == copy0["caption"].dropna() + " copy1").all()
    assert (copy1["id"] == copy0["id"] + _bench().ID_STRIDE).all()
    same = ["date", "likes", "username", "company", "n_media", "followers"]
    pd.testing.assert_frame_equal(copy1[same], copy0[same])


def test_peak_memory_counts_forked_pages_once_and_separate_processes_each(tmp_path):
    """run_stage's peak: a forked child sharing its parent's 200 MiB adds little (PSS), two processes
    holding 150 MiB each add up. Measured from a small driver process: a stage's ru_maxrss starts at
    the RSS of the process that forks it (the bench, ~0.2 GB; pytest, over 1 GB in the full suite)."""
    import json
    import subprocess
    import sys

    alloc = "b = b'x' * ({mib} * 2**20); import time; time.sleep(3)"  # long enough that the two processes of `apart` overlap on busy cores
    forked = ("import os, time; b = b'x' * (200 * 2**20); pid = os.fork(); time.sleep(3); "
              "os._exit(0) if pid == 0 else os.waitpid(pid, 0)")
    apart = f'{sys.executable} -c "{alloc.format(mib=150)}" & {sys.executable} -c "{alloc.format(mib=150)}"; wait'
    driver = f"""
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("bench_scale", {str(ROOT / "bench" / "bench_scale.py")!r})
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
tmp = Path({str(tmp_path)!r})
print(json.dumps([mod.run_stage(c, tmp, None, tmp / f"{{i}}.log")[1] for i, c in enumerate(json.loads(sys.argv[1]))]))
"""
    out = subprocess.run([sys.executable, "-c", driver, json.dumps([f'{sys.executable} -c "{forked}"', apart])],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    shared, apart_peak = json.loads(out.stdout.strip().splitlines()[-1])
    assert 200 <= shared < 300, shared  # RSS summed over the two processes would give over 400
    assert apart_peak >= 300, apart_peak
