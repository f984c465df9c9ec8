"""Fetch tweet images into a content-addressed store, resumably, with one status per URL.

Why each choice:
- requests, one Session per worker thread: Sessions are not documented thread-safe, and a
  per-thread Session still keeps its connections alive across that thread's requests (HTTP
  keep-alive is most of the speed on many small files). urllib3's own retries are off
  (`max_retries=0`) so this module counts attempts and classifies every failure itself.
- A thread pool (`concurrency`) bounds the open sockets and the memory in flight; a semaphore
  per host (`per_host`) keeps us polite to one CDN host even when the pool is larger, and is held
  only while a request runs, never during a backoff sleep.
- `(connect_timeout, read_timeout)`: a dead host fails fast at connect, a slow one per read.
- Retries with exponential backoff (`backoff * 2**k`) only on what may heal: timeouts,
  connection errors, truncated bodies, 5xx, 408 and 429. A 404 (any other 4xx), a non-image or a
  too-large body is permanent: retrying costs time and cannot change the answer.
- Size cap: a Content-Length above `max_bytes` is refused before reading, and the body is
  streamed and aborted as soon as it passes `max_bytes` (servers may omit or lie about length).
- Truncation: a body shorter than its Content-Length (urllib3 raises IncompleteRead, or the count
  is short) is `truncated`, retried, never stored.
- Image check: Pillow `Image.open().verify()` on the downloaded file (checks the header and,
  for PNG, every chunk CRC) so HTML error pages served with 200 become `not_image`.
- Store `<store_dir>/<sha[:2]>/<sha256>`: identical images shared by many tweets are stored
  once, names never collide, and the two-char fan-out keeps directories small. Bytes stream to
  a temp file in `<store_dir>/.tmp` (same filesystem) and are `os.replace`d into place, so a
  crash never leaves a half-written file under a valid name.
- Journal `<manifest>.journal.jsonl`: one JSON line per finished URL, written and flushed by the
  main thread as results arrive, so an interrupted run loses only what was in flight. A rerun
  skips URLs that are `ok` with their file present (same size) and permanent failures (unless
  `refetch_failed=True`); transient failures are tried again. The last line per URL wins; a
  torn last line is ignored.
- The final manifest is a CSV sorted by URL without timestamps; every field is a pure function of
  what the servers answered, so identical answers give byte-identical manifests. Error messages
  are templated (no object addresses, no wall-clock times).
- Duplicate URLs are fetched once (the first kind seen is kept).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import threading
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

import pandas as pd

COLUMNS = ["url", "kind", "status", "sha256", "path", "bytes", "content_type", "attempts", "error"]
KINDS = ("Photo", "Video", "Gif")
USER_AGENT = "tweetsim-fetch/0.1 (research; python-requests)"
CHUNK = 64 * 1024

# Statuses that a later run may turn into `ok`; everything else is permanent for that URL.
TRANSIENT = {"timeout", "connection_error", "truncated"}
RETRY_HTTP = {408, 425, 429}  # plus every 5xx


def is_transient(status: str) -> bool:
    if status in TRANSIENT:
        return True
    if status.startswith("http_"):
        code = int(status[5:])
        return code >= 500 or code in RETRY_HTTP
    return False


def _empty_row(url: str, kind: str, status: str, error: str = "", attempts: int = 0) -> dict:
    return {"url": url, "kind": kind, "status": status, "sha256": "", "path": "", "bytes": 0,
            "content_type": "", "attempts": attempts, "error": error}


def _norm_url(u) -> str:
    if u is None or (isinstance(u, float) and math.isnan(u)):
        return ""
    return str(u).strip()


def dedup_urls(urls: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Distinct URLs in first-seen order, each with the first kind seen; kinds are validated."""
    seen: dict[str, str] = {}
    for i, pair in enumerate(urls):
        try:
            u, kind = pair
        except (TypeError, ValueError):
            raise ValueError(f"urls[{i}]: expected a (url, kind) pair, got {pair!r}") from None
        if kind not in KINDS:
            raise ValueError(f"urls[{i}] ({u!r}): kind {kind!r} is not one of {KINDS}")
        seen.setdefault(_norm_url(u), kind)
    return list(seen.items())


def _frame(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    for c in ("bytes", "attempts"):  # an empty cell (a hand-made manifest) is 0
        df[c] = df[c].replace("", 0).fillna(0).astype("int64")
    for c in set(COLUMNS) - {"bytes", "attempts"}:
        df[c] = df[c].fillna("").astype(str)
    return df.sort_values("url", kind="stable").reset_index(drop=True)


def manifest_not_fetched(urls: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """The manifest when fetching is off: one `not_fetched` row per distinct URL."""
    return _frame(_empty_row(u, k, "not_fetched") for u, k in dedup_urls(urls))


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    """Write the manifest CSV atomically (sorted by url, fixed columns, `\\n` line ends)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    _frame(df.to_dict("records")).to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)


def read_manifest(path: Path, required: Iterable[str] = COLUMNS) -> pd.DataFrame:
    """The manifest at `path` (the one reader of it); columns other than `required` may be absent
    (a hand-made manifest of url, status, sha256, path) and are then empty."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(required) - set(df.columns)
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {sorted(missing)}")
    return _frame(df.to_dict("records"))


def journal_path_for(manifest_path: Path) -> Path:
    manifest_path = Path(manifest_path)
    return manifest_path.with_name(manifest_path.stem + ".journal.jsonl")


def read_journal(path: Path) -> dict[str, dict]:
    """Last row per URL; unparsable lines (a line torn by a crash) are skipped."""
    rows: dict[str, dict] = {}
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and set(COLUMNS) <= set(row):
                rows[row["url"]] = {c: row[c] for c in COLUMNS}
    return rows


def summarize(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts().sort_index()
    parts = ", ".join(f"{s}={n}" for s, n in counts.items())
    mb = df.loc[df["status"] == "ok", "bytes"].sum() / 1e6
    return f"media: {len(df)} distinct urls ({parts}); {mb:.1f} MB stored"


# ---------------------------------------------------------------------------------------------
# one URL


@dataclass(frozen=True)
class _Cfg:
    store_dir: Path
    tmp_dir: Path
    connect_timeout: float
    read_timeout: float
    retries: int
    backoff: float
    max_bytes: int
    per_host: int


class _Fail(Exception):
    def __init__(self, status: str, error: str, content_type: str = ""):
        super().__init__(status, error)
        self.status, self.error, self.content_type = status, error, content_type


_ADDR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>:?\s*")
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\"()>]*")
_INCOMPLETE = re.compile(r"(\d+) bytes read, (\d+) more expected")


def _clean(exc: BaseException) -> str:
    """A deterministic one-line message: errno text if any, else the class and message without
    object addresses."""
    text = str(exc)
    m = _ERRNO.search(text)
    if m:
        return m.group(0).strip()
    text = _ADDR.sub("", text)
    return f"{type(exc).__name__}: {text}"[:200]


class _Fetcher:
    def __init__(self, cfg: _Cfg, stop: threading.Event):
        import requests
        from requests.adapters import HTTPAdapter

        self._requests, self._adapter_cls = requests, HTTPAdapter
        self.cfg, self.stop = cfg, stop
        self._local = threading.local()
        self._sessions: list = []
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._made_dirs: set[Path] = set()
        # requests re-reads proxy settings from os.environ on every request when trust_env is
        # on (~15% of the per-file time here). Without proxies in the environment, turn it off
        # and read the CA bundle once instead, as requests would.
        self._trust_env = bool(urllib.request.getproxies())
        self._ca_bundle = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                           or True)

    def session(self):
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._requests.Session()
            adapter = self._adapter_cls(pool_connections=32, pool_maxsize=4, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.headers["User-Agent"] = USER_AGENT
            if not self._trust_env:
                s.trust_env = False
                s.verify = self._ca_bundle
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def host_sem(self, netloc: str) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._hosts.get(netloc)
            if sem is None:
                sem = self._hosts[netloc] = threading.BoundedSemaphore(self.cfg.per_host)
            return sem

    def close(self) -> None:
        for s in self._sessions:
            s.close()

    def fetch(self, url: str, kind: str) -> dict:
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            ok = False
        if not ok:
            return _empty_row(url, kind, "invalid_url",
                              "empty url" if not url else "not an absolute http(s) url")
        attempts, fail = 0, None
        for k in range(self.cfg.retries + 1):
            if k:
                if self.stop.wait(self.cfg.backoff * 2 ** (k - 1)):
                    break  # run interrupted: give up quietly, nothing is journaled
            if self.stop.is_set():
                break
            attempts += 1
            try:
                with self.host_sem(parts.netloc.lower()):
                    row = self._attempt(url, kind)
                row["attempts"] = attempts
                return row
            except _Fail as f:
                fail = f
                if not is_transient(f.status):
                    break
        if fail is None:  # stopped before the first attempt
            fail = _Fail("connection_error", "interrupted")
        row = _empty_row(url, kind, fail.status, fail.error, attempts)
        row["content_type"] = fail.content_type
        return row

    def _attempt(self, url: str, kind: str) -> dict:
        rq, cfg = self._requests, self.cfg
        try:
            resp = self.session().get(url, stream=True,
                                      timeout=(cfg.connect_timeout, cfg.read_timeout))
        except rq.exceptions.ConnectTimeout:
            raise _Fail("timeout", f"connect timeout ({cfg.connect_timeout}s)") from None
        except rq.exceptions.ReadTimeout:
            raise _Fail("timeout", f"read timeout ({cfg.read_timeout}s)") from None
        except (rq.exceptions.InvalidURL, rq.exceptions.MissingSchema,
                rq.exceptions.InvalidSchema) as e:
            raise _Fail("invalid_url", _clean(e)) from None
        except rq.exceptions.RequestException as e:
            raise _Fail("connection_error", _clean(e)) from None
        with resp:
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if resp.status_code != 200:
                raise _Fail(f"http_{resp.status_code}", resp.reason or "", ctype)
            length = _content_length(resp)
            if length is not None and length > cfg.max_bytes:
                raise _Fail("too_large", f"content-length {length} > max_bytes {cfg.max_bytes}",
                            ctype)
            return self._stream_to_store(resp, url, kind, ctype, length)

    def _stream_to_store(self, resp, url, kind, ctype, length) -> dict:
        rq, cfg = self._requests, self.cfg
        h, n = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=cfg.tmp_dir, prefix="dl-")
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    for chunk in resp.iter_content(CHUNK):
                        n += len(chunk)
                        if n > cfg.max_bytes:
                            raise _Fail("too_large", f"body exceeds max_bytes {cfg.max_bytes}",
                                        ctype)
                        h.update(chunk)
                        out.write(chunk)
                except rq.exceptions.ChunkedEncodingError as e:  # urllib3 IncompleteRead
                    m = _INCOMPLETE.search(str(e))
                    got = f"{n + int(m.group(1))} of {n + int(m.group(1)) + int(m.group(2))}" \
                        if m else f"{n}"
                    raise _Fail("truncated", f"connection closed after {got} bytes", ctype) from None
                except rq.exceptions.ConnectionError as e:  # requests wraps ReadTimeoutError
                    if "timed out" in str(e).lower():
                        raise _Fail("timeout", f"read timeout ({cfg.read_timeout}s) in body",
                                    ctype) from None
                    raise _Fail("connection_error", _clean(e), ctype) from None
                except rq.exceptions.RequestException as e:
                    raise _Fail("connection_error", _clean(e), ctype) from None
            encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
            if length is not None and not encoded and n != length:
                raise _Fail("truncated", f"got {n} of {length} bytes", ctype)
            mime = _image_mime(tmp)
            if mime is None:
                raise _Fail("not_image", f"{n} bytes, content-type {ctype or 'none'}", ctype)
            sha = h.hexdigest()
            dest = cfg.store_dir / sha[:2] / sha
            if dest.parent not in self._made_dirs:  # mkdir is a slow syscall on overlay fs
                dest.parent.mkdir(parents=True, exist_ok=True)
                self._made_dirs.add(dest.parent)
            os.replace(tmp, dest)
            tmp = None
        finally:
            if tmp is not None:
                os.unlink(tmp)
        return {"url": url, "kind": kind, "status": "ok", "sha256": sha,
                "path": dest.relative_to(cfg.store_dir.parent).as_posix(), "bytes": n,
                "content_type": mime, "attempts": 0, "error": ""}


def _content_length(resp) -> int | None:
    try:
        v = int(resp.headers.get("Content-Length", ""))
        return v if v >= 0 else None
    except ValueError:
        return None


def _image_mime(path: str) -> str | None:
    """The image's MIME type from Pillow, or None when the bytes are not a readable image."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
    except Exception:  # Pillow raises many kinds (UnidentifiedImageError, SyntaxError, OSError)
        return None
    return Image.MIME.get(fmt, f"image/{(fmt or 'unknown').lower()}")


# ---------------------------------------------------------------------------------------------
# the whole run


def fetch_media(urls: list[tuple[str, str]], store_dir: Path, manifest_path: Path, *,
                concurrency: int = 16, per_host: int = 8, connect_timeout: float = 5.0,
                read_timeout: float = 10.0, retries: int = 3, backoff: float = 0.5,
                max_bytes: int = 20_000_000, progress: bool = True, refetch_failed: bool = False,
                journal_path: Path | None = None,
                on_result: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Fetch each distinct URL into `store_dir`, journal results as they arrive, write the sorted
    CSV manifest at `manifest_path` and return it as a DataFrame (columns `COLUMNS`).

    `urls` are (url, kind) pairs, kind in Photo/Video/Gif (for Video/Gif the URL is the
    thumbnail). A rerun skips what is `ok` with its file present, and permanent failures unless
    `refetch_failed`. `on_result(row)` is called after each journaled row (tests use it to
    interrupt a run). `path` in the manifest is relative to `store_dir.parent`.
    """
    if concurrency < 1 or per_host < 1 or retries < 0:
        raise ValueError("concurrency and per_host must be >= 1, retries >= 0")
    from tqdm.auto import tqdm

    store_dir, manifest_path = Path(store_dir), Path(manifest_path)
    journal_path = Path(journal_path) if journal_path else journal_path_for(manifest_path)
    tmp_dir = store_dir / ".tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for stale in tmp_dir.glob("dl-*"):  # temp files of a crashed run (one writer per store)
        stale.unlink()
    journal_path.parent.mkdir(parents=True, exist_ok=True)

    wanted = dedup_urls(urls)
    done = read_journal(journal_path)
    results: dict[str, dict] = {}
    todo: list[tuple[str, str]] = []
    for url, kind in wanted:
        prev = done.get(url)
        if prev is not None and _still_valid(prev, store_dir, refetch_failed):
            results[url] = {**prev, "kind": kind}
        else:
            todo.append((url, kind))

    cfg = _Cfg(store_dir, tmp_dir, connect_timeout, read_timeout, retries, backoff, max_bytes,
               per_host)
    stop = threading.Event()
    fetcher = _Fetcher(cfg, stop)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fetch")
    bar = tqdm(total=len(todo), unit="file", desc="fetch media", disable=not progress)
    try:
        _end_with_newline(journal_path)  # a torn last line must not swallow the next one
        with open(journal_path, "a", encoding="utf-8") as journal:
            # Submit lazily (at most 2x the pool) so an interrupted run has little queued work.
            it = iter(todo)
            pending = set()

            def top_up():
                while len(pending) < 2 * concurrency:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    pending.add(pool.submit(fetcher.fetch, *nxt))

            top_up()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    row = fut.result()
                    journal.write(json.dumps(row, sort_keys=True) + "\n")
                    journal.flush()
                    results[row["url"]] = row
                    bar.update(1)
                    if on_result is not None:
                        on_result(row)
                top_up()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        fetcher.close()
        bar.close()

    _compact_journal(journal_path, read_journal(journal_path))
    try:
        tmp_dir.rmdir()
    except OSError:
        pass
    df = _frame(results[u] for u, _ in wanted)
    write_manifest(df, manifest_path)
    return df


def _still_valid(prev: dict, store_dir: Path, refetch_failed: bool) -> bool:
    status = prev["status"]
    if status == "ok":
        f = store_dir.parent / prev["path"]
        return f.is_file() and f.stat().st_size == int(prev["bytes"])
    if status == "not_fetched":
        return False
    return not refetch_failed and not is_transient(status)


def _end_with_newline(path: Path) -> None:
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


def _compact_journal(path: Path, rows: dict[str, dict]) -> None:
    """Rewrite the journal with one line per URL (sorted) so it does not grow across reruns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for url in sorted(rows):
            f.write(json.dumps(rows[url], sort_keys=True) + "\n")
    os.replace(tmp, path)
