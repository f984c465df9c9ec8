"""A real local HTTP/1.1 server for fetch tests and the fetch benchmark.

Routes (GET):
  /img/<name>            an image from `images` (bytes, content type by extension)
  /missing/...           404
  /html                  200 text/html (not an image)
  /slow                  sleeps `slow_s` before answering (exceeds a small read timeout)
  /truncated             Content-Length 4000 but only 100 bytes, then closes
  /big                   honest Content-Length above any small max_bytes (body never sent)
  /big-nolength          no Content-Length, streams `big_bytes` bytes then closes
  /flaky/<key>           503 on the first request for <key>, then a PNG image
  /always503             503 every time
Every request is counted per path in `server.hits` (thread-safe), so tests can assert that a
rerun sent nothing for finished URLs.
"""

from __future__ import annotations

import io
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_png(seed: int, size: int = 32) -> bytes:
    """A deterministic random-noise RGB PNG (noise does not compress: bytes ~ 3*size*size)."""
    from PIL import Image

    rnd = random.Random(seed)
    im = Image.frombytes("RGB", (size, size), rnd.randbytes(3 * size * size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_jpeg(seed: int, size: int = 32) -> bytes:
    from PIL import Image

    im = Image.new("RGB", (size, size), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a CDN would
    # Headers and body go out in separate writes; with Nagle on, keep-alive requests stall
    # ~40 ms on the client's delayed ACK, which would make the server, not the fetcher, the
    # bottleneck.
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str, length: int | None = None,
              close: bool = False):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv: LocalServer = self.server.owner
        path = self.path.split("?")[0]
        with srv.lock:
            srv.hits[path] += 1
            nth = srv.hits[path]
        if srv.latency_s:
            time.sleep(srv.latency_s)
        try:
            if path.startswith("/img/") and path[5:] in srv.images:
                name = path[5:]
                ctype = "image/jpeg" if name.endswith((".jpg", ".jpeg")) else "image/png"
                self._send(200, srv.images[name], ctype)
            elif path == "/html":
                self._send(200, b"<html><body>gone</body></html>", "text/html; charset=utf-8")
            elif path == "/slow":
                time.sleep(srv.slow_s)
                self._send(200, srv.png, "image/png")
            elif path == "/truncated":
                self._send(200, srv.png[:100], "image/png", length=4000, close=True)
            elif path == "/big":
                self._send(200, b"", "image/png", length=srv.big_bytes, close=True)
            elif path == "/big-nolength":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                block = b"\0" * 65536
                for _ in range(srv.big_bytes // len(block) + 1):
                    self.wfile.write(block)
            elif path.startswith("/flaky/"):
                if nth == 1:
                    self._send(503, b"busy", "text/plain")
                else:
                    self._send(200, srv.png, "image/png")
            elif path == "/always503":
                self._send(503, b"busy", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeouts, size cap)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # client hang-ups are expected here
        pass


class LocalServer:
    """Start with `.start()`, stop with `.stop()`; `url(path)` builds absolute URLs."""

    def __init__(self, images: dict[str, bytes] | None = None, *, slow_s: float = 1.0,
                 big_bytes: int = 300_000, latency_s: float = 0.0):
        self.images = images or {}
        self.slow_s, self.big_bytes, self.latency_s = slow_s, big_bytes, latency_s
        self.png = make_png(999)
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> "LocalServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset_hits(self) -> None:
        with self.lock:
            self.hits.clear()
