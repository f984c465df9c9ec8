"""Benchmark tweetsim.data.fetch.fetch_media against a local HTTP/1.1 server (run by hand).

    python bench/bench_fetch.py [--n 500] [--kb 50] [--latency-ms 20] [--out FILE]

The server runs in its own process (so it does not share the GIL with the fetcher) and serves
`--n` distinct random-noise PNGs of about `--kb` KB. Measured in one run, printed as ratios:
  cold     pool fetch with the default settings (concurrency 16, per_host 8) into an empty store
  warm     the same call again: a resume, nothing is refetched (server request count checked)
  serial   concurrency=1, per_host=1, cold, into another empty store
  latency  the pool and the serial fetch again with `--latency-ms` added server-side per request,
           a stand-in for a network round trip (where the pool matters most)
Target: at least 50 files/s cold. --out: the JSON of the run, default bench/results/bench_fetch.json.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _results import add_out, write  # noqa: E402
from httpserver import LocalServer, make_png  # noqa: E402

from tweetsim.data.fetch import fetch_media, summarize  # noqa: E402


def serve(n: int, side: int, latency_s: float, conn) -> None:
    images = {f"b{i}.png": make_png(10_000 + i, side) for i in range(n)}
    srv = LocalServer(images, latency_s=latency_s).start()
    conn.send((srv.port, sum(map(len, images.values()))))
    # Report the request count whenever asked; stop on None.
    while (msg := conn.recv()) is not None:
        with srv.lock:
            conn.send(sum(srv.hits.values()))
    srv.stop()


class Server:
    def __init__(self, n: int, side: int, latency_s: float):
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=serve, args=(n, side, latency_s, child),
                                                    daemon=True)
        self.proc.start()
        self.port, self.total_bytes = self.conn.recv()
        self.n = n

    def urls(self):
        return [(f"http://127.0.0.1:{self.port}/img/b{i}.png", "Photo") for i in range(self.n)]

    def hits(self) -> int:
        self.conn.send("hits")
        return self.conn.recv()

    def stop(self):
        self.conn.send(None)
        self.proc.join(5)


def timed(urls, root: Path, **kw) -> tuple[float, object]:
    t = time.perf_counter()
    df = fetch_media(urls, root / "store", root / "manifest.csv", progress=False, **kw)
    return time.perf_counter() - t, df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--kb", type=float, default=50)
    ap.add_argument("--latency-ms", type=float, default=20)
    add_out(ap, "bench_fetch")
    a = ap.parse_args()
    side = int((a.kb * 1024 / 3) ** 0.5)  # noise PNG ~ 3*side^2 bytes
    work = Path(tempfile.mkdtemp(prefix="bench_fetch_"))
    try:
        srv = Server(a.n, side, 0.0)
        mb = srv.total_bytes / 1e6
        urls = srv.urls()
        print(f"{a.n} distinct PNGs, {srv.total_bytes / a.n / 1024:.1f} KB each, {mb:.1f} MB")

        cold, df = timed(urls, work / "pool")
        assert (df["status"] == "ok").all(), summarize(df)
        h0 = srv.hits()
        warm, df2 = timed(urls, work / "pool")
        refetched = srv.hits() - h0
        assert refetched == 0 and df2.equals(df), f"warm run refetched {refetched} urls"
        serial, df3 = timed(urls, work / "serial", concurrency=1, per_host=1)
        assert (df3["status"] == "ok").all()
        srv.stop()

        print(f"cold   pool (16 threads, 8/host): {cold:6.2f} s  {a.n / cold:7.1f} files/s "
              f"{mb / cold:6.1f} MB/s")
        print(f"warm   resume (0 refetched)     : {warm:6.2f} s  {a.n / warm:7.1f} files/s "
              f"-> cold/warm = {cold / warm:.1f}x")
        print(f"cold   serial (1 thread)        : {serial:6.2f} s  {a.n / serial:7.1f} files/s "
              f"-> pool/serial = {serial / cold:.2f}x")
        print(f"target >= 50 files/s cold: {'met' if a.n / cold >= 50 else 'NOT MET'}")
        fig = {"files": a.n, "kb_each": round(srv.total_bytes / a.n / 1024, 1), "mb": round(mb, 1),
               "cold_pool_files_per_s": round(a.n / cold, 1), "cold_pool_mb_per_s": round(mb / cold, 1),
               "warm_files_per_s": round(a.n / warm, 1), "ratio_cold_warm": round(cold / warm, 1),
               "cold_serial_files_per_s": round(a.n / serial, 1), "ratio_pool_serial": round(serial / cold, 2),
               "target_files_per_s": 50, "target_met": a.n / cold >= 50}

        if a.latency_ms > 0:
            srv = Server(a.n, side, a.latency_ms / 1000)
            urls = srv.urls()
            lp, df = timed(urls, work / "lat_pool")
            assert (df["status"] == "ok").all()
            ls, df = timed(urls, work / "lat_serial", concurrency=1, per_host=1)
            assert (df["status"] == "ok").all()
            srv.stop()
            print(f"+{a.latency_ms:g} ms/request: pool {lp:6.2f} s ({a.n / lp:6.1f} files/s), "
                  f"serial {ls:6.2f} s ({a.n / ls:6.1f} files/s) -> pool/serial = {ls / lp:.2f}x")
            fig["latency"] = {"ms_per_request": a.latency_ms, "pool_files_per_s": round(a.n / lp, 1),
                              "serial_files_per_s": round(a.n / ls, 1), "ratio_pool_serial": round(ls / lp, 2)}
        write(a.out, fig)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
