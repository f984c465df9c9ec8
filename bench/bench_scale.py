"""The pipeline at the size of the real data: each stage's wall time, peak memory and rows/s on K
copies of the official files, with 2 CPU cores in mind (the official data is about 300,000 tweets).

usage: python bench/bench_scale.py [--k 1 8] [--stages download split ...] [--source DIR] [--keep] [--out PATH]
(--out: the JSON of the run, default bench/results/bench_scale.json)

The data set: K copies of the files of `--source` (default ../shared/data/adobe, from the repo root;
`download.exclude` of params.yaml applies), written as CSV to a temp folder (the xlsx reader would
dominate download at scale; cells are the loader's own text cells, so dates and media parse the
same). Copy k's files are named `copy{k}_<name>.csv`, a tweet file's captions file keeping the
`<tweet file>_captions*.csv` name that download joins by. Account statistics and profiles are
copied once: download joins them by username (a repeated username is dropped, not an error) and
the copies share the accounts. Copies k >= 1 differ from copy 0 in two ways, every other cell kept:
- " copy{k}" is appended to every text (content, captions): the embedding code may cache by text
  content, and identical copies would then be nearly free and hide the real cost;
- ids get + k * 10,000,000 (captions files too): download drops a labelled tweet that repeats
  (same id, date, likes, username, content) in another file, and the content-simulation files
  have no content, so without it their copies would be dropped as repeats.
8 copies of the shared data are about 290,000 rows.

What is measured, per K, in a fresh workspace (a `git clone` of the committed repo in a temp
folder; its git-ignored .cache/ starts empty, so every result cache and converted model is cold):
params.yaml is this repo's with only `download.source` changed, each stage's `cmd` as DVC expands
it (foreach/matrix included, asked of DVC's own stage graph) is run as a plain subprocess in DAG
order (not through `dvc repro`: no DVC cache, no hashing of outputs in the time), and for each:
- wall seconds of the command;
- peak RSS in MiB: the largest of the largest single process of its tree (os.wait4's ru_maxrss, which
  starts at the RSS of the process that forks the stage: the bench's own ~0.2 GB)
  and the tree's memory polled every 0.2 s (psutil), for stages that start helper processes: the
  sum of each process's RSS, or, once several processes are over 64 MiB (forked workers), of their
  PSS, where a page shared by forked processes counts once (split among them);
- rows/s: rows of data/tweets.parquet / wall seconds;
- scale: (wall at K / wall at the smallest K) / (K / smallest K): 1.0 is linear, above is super-linear.
`--stages` runs the named stages and every stage they depend on (those are timed too); a name
without `@` names all its foreach/matrix items. The LM stages run capped by their own params.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ID_STRIDE = 10_000_000  # above every id of the official files (the training file's go to 300,000)


def replicate(source, dest, k: int, exclude=()) -> dict:
    """Write k copies of `source`'s files into `dest` (see the module docstring); returns file counts."""
    from tweetsim.data.load import _to_int, discover, read_table

    inv = discover(source, exclude)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for side in inv.stats + inv.profiles:
        shutil.copyfile(side, dest / side.name)
    for path in inv.tweets + inv.captions:
        df = read_table(path)
        texts = [c for c in ("content", "caption", "captions") if c in df.columns]
        for i in range(k):
            out = df.copy()
            if i:
                for c in texts:
                    out[c] = [v if v is None else f"{v} copy{i}" for v in out[c]]
                out["id"] = [_shift(v, i, _to_int) for v in out["id"]]
            out.to_csv(dest / f"copy{i}_{path.stem}.csv", index=False)
    return {"tweet_files": k * len(inv.tweets), "caption_files": k * len(inv.captions),
            "side_tables": len(inv.stats) + len(inv.profiles)}


def _shift(value, k, to_int):
    try:
        return to_int(value) + k * ID_STRIDE
    except ValueError:  # an unparsable id stays as it is: download rejects it in every copy alike
        return value


def stage_order(repo: Path, wanted: list[str] | None) -> list[tuple[str, str]]:
    """(name, cmd) of the stages to run, in DAG order; ties in dvc.yaml order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        graph = r.index.graph  # edges go from a stage to the stages it depends on
        pos = {s: i for i, s in enumerate(r.index.stages)}
        stages = [s for s in graph.nodes if s.cmd]
        if wanted:
            named = [s for s in stages if any(s.name == w or s.name.startswith(w + "@") for w in wanted)]
            missing = [w for w in wanted if not any(s.name == w or s.name.startswith(w + "@") for s in named)]
            if missing:
                sys.exit(f"bench_scale: no stage {missing}; stages: {sorted(s.name for s in stages)}")
            keep = set(named).union(*(nx.descendants(graph, s) for s in named))
            stages = [s for s in stages if s in keep]
        order = nx.lexicographical_topological_sort(graph.subgraph(stages).reverse(), key=lambda s: pos.get(s, 0))
        return [(s.name, s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd)) for s in order]


def run_stage(cmd: str, cwd: Path, env: dict, log: Path) -> tuple[float, float]:
    """Run one command; returns (wall seconds, peak RSS MiB). Exits with the log's tail on failure."""
    try:
        import psutil
    except ImportError:
        psutil = None
    peak, done = [0], threading.Event()
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        # own process group: an interrupted bench stops the stage's whole tree with it
        p = subprocess.Popen(cmd, shell=True, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

        def poll():  # the tree's memory, for stages whose work runs in child processes
            wait = 0.2
            while psutil and not done.wait(wait):
                try:
                    t = time.perf_counter()
                    procs = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
                    rss = {q: q.memory_info().rss for q in procs if q.is_running()}
                    big = [q for q, m in rss.items() if m > 64 * 2**20]
                    # PSS, not RSS, once several processes are big (forked workers): they share their
                    # parent's pages, which RSS would count once per process. PSS reads every page
                    # table (~50 ms for a torch process), so it is read only then, and the poll backs
                    # off to keep its cost under a tenth of a core: the bench must not slow the stage.
                    if len(big) > 1:
                        rss.update({q: q.memory_full_info().pss for q in big})
                    peak[0] = max(peak[0], sum(rss.values()))
                    wait = max(0.2, 10 * (time.perf_counter() - t))
                except psutil.Error:
                    pass

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)  # ru_maxrss: largest process of the tree (KiB on Linux)
        except BaseException:
            os.killpg(p.pid, signal.SIGTERM)
            raise
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        watcher.join()
    if p.returncode:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        sys.exit(f"bench_scale: `{cmd}` failed ({p.returncode}); log {log}:\n" + "\n".join(tail))
    return wall, max(usage.ru_maxrss / 1024, peak[0] / 2**20)


def bench_one(k: int, source: Path, stages: list[str] | None, keep: bool) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix=f"bench_scale_k{k}_"))
    repo = work / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    t = time.perf_counter()
    counts = replicate(source, work / "data", k, params["download"].get("exclude") or ())
    print(f"K={k}: {counts} written to {work / 'data'} in {time.perf_counter() - t:.1f} s", flush=True)
    params["download"]["source"] = str(work / "data")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert not (repo / ".cache").exists(), "a fresh clone has no result caches"
    env = {**os.environ, "PYTHONPATH": str(repo), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    (work / "logs").mkdir()
    rows, n = [], 0
    try:
        for name, cmd in stage_order(repo, stages):
            wall, rss = run_stage(cmd, repo, env, work / "logs" / f"{name}.log")
            if name == "download":
                import pyarrow.parquet as pq

                n = pq.read_metadata(repo / "data" / "tweets.parquet").num_rows
            rows.append({"k": k, "stage": name, "rows": n, "wall_s": round(wall, 2),
                         "rows_per_s": round(n / wall, 1), "peak_rss_mib": round(rss)})
            print(f"K={k} {name:28s} {wall:9.1f} s {rss:8.0f} MiB {n / wall:10.1f} rows/s", flush=True)
    finally:
        if keep:
            print(f"K={k}: workspace kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> tuple[str, list[dict]]:
    """Markdown table, with each K's total (sum of walls, largest peak) and the scaling figure."""
    k0 = min(r["k"] for r in rows)
    out = []
    for k in sorted({r["k"] for r in rows}):
        mine = [r for r in rows if r["k"] == k]
        out += mine + [{"k": k, "stage": "(total)", "rows": mine[0]["rows"],
                        "wall_s": round(sum(r["wall_s"] for r in mine), 2),
                        "rows_per_s": round(mine[0]["rows"] / sum(r["wall_s"] for r in mine), 1),
                        "peak_rss_mib": max(r["peak_rss_mib"] for r in mine)}]
    base = {r["stage"]: r["wall_s"] for r in out if r["k"] == k0}
    for r in out:
        r["scale"] = round(r["wall_s"] / base[r["stage"]] / (r["k"] / k0), 2) if base.get(r["stage"]) else None
    lines = ["| K | stage | rows | wall s | rows/s | peak RSS MiB | scale vs K=%d |" % k0, "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['k']} | {r['stage']} | {r['rows']} | {r['wall_s']:.1f} | {r['rows_per_s']:.1f} | "
              f"{r['peak_rss_mib']} | {'' if r['scale'] is None else r['scale']} |" for r in out]
    return "\n".join(lines), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--stages", nargs="+", default=None, help="these stages and everything they depend on")
    ap.add_argument("--source", default=str(ROOT / ".." / "shared" / "data" / "adobe"))
    ap.add_argument("--keep", action="store_true", help="keep each K's workspace (clone, data, logs)")
    from _results import add_out, write

    add_out(ap, "bench_scale")
    args = ap.parse_args()
    source = Path(args.source) if Path(args.source).is_absolute() else ROOT / args.source
    if not source.exists():
        sys.exit(f"bench_scale: --source {source}: no such file or folder")
    rows = [r for k in sorted(set(args.k)) for r in bench_one(k, source.resolve(), args.stages, args.keep)]
    text, out = table(rows)
    print("\n" + text)
    write(args.out, {"source": str(source), "k": sorted(set(args.k)), "rows": out})


if __name__ == "__main__":
    main()
