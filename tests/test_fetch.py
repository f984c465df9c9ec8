"""tweetsim.data.fetch against a real HTTP server on 127.0.0.1 (tests/httpserver.py)."""

import hashlib
import json
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httpserver import LocalServer, make_jpeg, make_png  # noqa: E402

from tweetsim.data import fetch  # noqa: E402

# Tiny timeouts so the whole file runs in seconds; /slow sleeps well past READ_TIMEOUT.
FAST = dict(concurrency=4, per_host=2, connect_timeout=0.5, read_timeout=0.3, retries=2,
            backoff=0.01, max_bytes=100_000, progress=False)


@pytest.fixture
def server():
    images = {f"p{i}.png": make_png(i) for i in range(6)}
    images.update({f"j{i}.jpg": make_jpeg(i) for i in range(3)})
    images["copy.png"] = images["p0.png"]  # same bytes under another URL
    srv = LocalServer(images, slow_s=1.0, big_bytes=300_000).start()
    yield srv
    srv.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def all_cases(srv):
    """(url, kind, expected status) for every status the fetcher can give."""
    return [
        (srv.url("/img/p0.png"), "Photo", "ok"),
        (srv.url("/img/p1.png"), "Photo", "ok"),
        (srv.url("/img/j0.jpg"), "Video", "ok"),
        (srv.url("/img/copy.png"), "Gif", "ok"),
        (srv.url("/missing/a.png"), "Photo", "http_404"),
        (srv.url("/always503"), "Photo", "http_503"),
        (srv.url("/flaky/x"), "Photo", "ok"),
        (srv.url("/slow"), "Photo", "timeout"),
        (srv.url("/truncated"), "Photo", "truncated"),
        (srv.url("/html"), "Photo", "not_image"),
        (srv.url("/big"), "Photo", "too_large"),
        (srv.url("/big-nolength"), "Photo", "too_large"),
        (f"http://127.0.0.1:{closed_port()}/x.png", "Photo", "connection_error"),
        ("not a url", "Photo", "invalid_url"),
        ("ftp://example.com/a.png", "Photo", "invalid_url"),
        ("", "Photo", "invalid_url"),
        ("http://[::1/x.png", "Photo", "invalid_url"),
        ("http://exa mple.com:notaport/x.png", "Photo", "invalid_url"),
    ]


# For tests that count the server's hits on healthy URLs: on loaded cores a request can outlast
# FAST's 0.3 s read timeout and be retried, which would count twice.
COUNTED = dict(read_timeout=30.0)


def run(pairs, tmp_path, **kw):
    store = tmp_path / "media" / "store"
    manifest = tmp_path / "media" / "manifest.csv"
    return fetch.fetch_media(pairs, store, manifest, **{**FAST, **kw}), store, manifest


def test_every_status_and_store_layout(server, tmp_path):
    cases = all_cases(server)
    df, store, manifest = run([(u, k) for u, k, _ in cases], tmp_path)
    assert list(df.columns) == fetch.COLUMNS
    got = dict(zip(df["url"], df["status"]))
    assert got == {u: s for u, _, s in cases}
    assert list(df["url"]) == sorted(df["url"])

    by = df.set_index("url")
    # content-addressed store: <store>/<sha[:2]>/<sha>, bytes identical to what was served
    for name in ("p0.png", "p1.png", "j0.jpg"):
        row = by.loc[server.url(f"/img/{name}")]
        body = server.images[name]
        sha = hashlib.sha256(body).hexdigest()
        assert row["sha256"] == sha and row["bytes"] == len(body)
        assert row["path"] == f"store/{sha[:2]}/{sha}"
        assert (store.parent / row["path"]).read_bytes() == body
    assert by.loc[server.url("/img/j0.jpg"), "content_type"] == "image/jpeg"
    # the same bytes under two URLs are stored once
    assert by.loc[server.url("/img/copy.png"), "sha256"] == by.loc[server.url("/img/p0.png"), "sha256"]
    stored = [p for p in store.rglob("*") if p.is_file()]
    assert len(stored) == df.loc[df.status == "ok", "sha256"].nunique() == 4
    assert not (store / ".tmp").exists()  # no temp files left behind

    # retries: transient failures retried (1 + retries attempts), permanent ones not
    assert by.loc[server.url("/flaky/x"), "attempts"] == 2
    assert server.hits["/flaky/x"] == 2
    assert by.loc[server.url("/always503"), "attempts"] == 3 == server.hits["/always503"]
    assert by.loc[server.url("/truncated"), "attempts"] == 3
    assert by.loc[server.url("/slow"), "attempts"] == 3
    assert by.loc[server.url("/missing/a.png"), "attempts"] == 1 == server.hits["/missing/a.png"]
    assert server.hits["/html"] == 1 and server.hits["/big"] == 1
    assert by.loc["not a url", "attempts"] == 0
    # failures carry a reason and no stored file
    failed = df[df.status != "ok"]
    assert (failed["error"] != "").all() and (failed["sha256"] == "").all()
    assert (failed["path"] == "").all() and (failed["bytes"] == 0).all()
    assert "read timeout" in by.loc[server.url("/slow"), "error"]
    assert "100 of 4000" in by.loc[server.url("/truncated"), "error"]
    assert by.loc[server.url("/html"), "content_type"] == "text/html"

    # the CSV on disk is the returned frame
    back = fetch.read_manifest(manifest)
    pd.testing.assert_frame_equal(back, df)


def test_duplicates_fetched_once(server, tmp_path):
    u = server.url("/img/p2.png")
    df, _, _ = run([(u, "Photo"), (u, "Video"), (u, "Photo")], tmp_path, **COUNTED)
    assert len(df) == 1 and df.loc[0, "kind"] == "Photo" and df.loc[0, "status"] == "ok"
    assert server.hits["/img/p2.png"] == 1


def test_rerun_refetches_nothing_and_manifest_is_deterministic(server, tmp_path):
    cases = all_cases(server)
    pairs = [(u, k) for u, k, _ in cases]
    df1, store, manifest = run(pairs, tmp_path)
    first = manifest.read_bytes()
    server.reset_hits()
    df2, _, _ = run(list(reversed(pairs)), tmp_path)
    # ok rows and permanent failures are not asked again; transient failures are
    assert server.hits["/img/p0.png"] == server.hits["/flaky/x"] == 0
    assert server.hits["/missing/a.png"] == server.hits["/html"] == server.hits["/big"] == 0
    assert server.hits["/always503"] == 3 and server.hits["/truncated"] == 3
    assert manifest.read_bytes() == first  # byte-identical manifest
    pd.testing.assert_frame_equal(df1, df2)

    # a fresh run into another directory gives the same bytes too
    _, _, manifest3 = run(pairs, tmp_path / "again")
    assert manifest3.read_bytes() == first

    # refetch_failed asks permanent failures again
    server.reset_hits()
    run(pairs, tmp_path, refetch_failed=True)
    assert server.hits["/missing/a.png"] == 1 and server.hits["/img/p0.png"] == 0

    # a stored file that disappeared is fetched again
    p0 = store.parent / df1.set_index("url").loc[server.url("/img/p0.png"), "path"]
    p0.unlink()
    server.reset_hits()
    run(pairs, tmp_path)
    assert server.hits["/img/p0.png"] == 1 and p0.exists()


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_without_refetching(server, tmp_path):
    pairs = [(server.url(f"/img/p{i}.png"), "Photo") for i in range(6)]
    pairs += [(server.url(f"/img/j{i}.jpg"), "Photo") for i in range(3)]
    seen = []

    def boom(row):
        seen.append(row["url"])
        if len(seen) == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(pairs, tmp_path, concurrency=1, on_result=boom, **COUNTED)
    journal = tmp_path / "media" / "manifest.journal.jsonl"
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [r["url"] for r in lines] == seen and len(seen) == 4
    assert not (tmp_path / "media" / "manifest.csv").exists()
    # a crash mid-write leaves a torn last line: it must be ignored, not fatal
    with open(journal, "a") as f:
        f.write('{"url": "http://torn')

    server.reset_hits()
    df, _, _ = run(pairs, tmp_path, **COUNTED)
    assert (df["status"] == "ok").all() and len(df) == 9
    for u in seen:  # finished before the interruption: not requested again
        assert server.hits[u.split(str(server.port))[1]] == 0
    assert sum(server.hits.values()) == 9 - 4
    # the journal is compacted to one line per URL
    assert len(journal.read_text().splitlines()) == 9


def test_run_on_half_then_all(server, tmp_path):
    pairs = [(server.url(f"/img/p{i}.png"), "Photo") for i in range(6)]
    run(pairs[:3], tmp_path, **COUNTED)
    server.reset_hits()
    df, _, manifest = run(pairs, tmp_path, **COUNTED)
    assert sum(server.hits.values()) == 3 and (df["status"] == "ok").all()
    assert len(pd.read_csv(manifest)) == 6


def test_per_host_limit_is_respected(tmp_path):
    # Every request takes 0.1 s; with per_host=2 the server must never see more than 2 at once.
    images = {f"p{i}.png": make_png(i) for i in range(8)}
    srv = LocalServer(images, latency_s=0.1)
    active, peak = [0], [0]
    orig = srv._httpd.RequestHandlerClass.do_GET

    class Counting(srv._httpd.RequestHandlerClass):
        def do_GET(self):
            with srv.lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                orig(self)
            finally:
                with srv.lock:
                    active[0] -= 1

    srv._httpd.RequestHandlerClass = Counting
    srv.start()
    try:
        pairs = [(srv.url(f"/img/p{i}.png"), "Photo") for i in range(8)]
        df, _, _ = run(pairs, tmp_path, concurrency=8, per_host=2)
    finally:
        srv.stop()
    assert (df["status"] == "ok").all()
    assert peak[0] == 2


def test_manifest_not_fetched():
    df = fetch.manifest_not_fetched([("http://b/x.jpg", "Photo"), ("http://a/y.jpg", "Video"),
                                     ("http://b/x.jpg", "Gif")])
    assert list(df.columns) == fetch.COLUMNS
    assert list(df["url"]) == ["http://a/y.jpg", "http://b/x.jpg"]
    assert list(df["kind"]) == ["Video", "Photo"]
    assert (df["status"] == "not_fetched").all() and (df["attempts"] == 0).all()


def test_bad_kind_is_named():
    with pytest.raises(ValueError, match=r"urls\[1\].*'Audio'"):
        fetch.manifest_not_fetched([("http://a/x", "Photo"), ("http://a/y", "Audio")])


def test_not_fetched_rows_are_fetched_when_fetching_turns_on(server, tmp_path):
    pairs = [(server.url("/img/p3.png"), "Photo")]
    manifest = tmp_path / "media" / "manifest.csv"
    fetch.write_manifest(fetch.manifest_not_fetched(pairs), manifest)
    assert fetch.read_manifest(manifest)["status"].tolist() == ["not_fetched"]
    df, _, _ = run(pairs, tmp_path)
    assert df["status"].tolist() == ["ok"]
