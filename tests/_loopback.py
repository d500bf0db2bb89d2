"""A loopback HTTP server (127.0.0.1 only) for download tests: serves files with Range support, and
misbehaves on request: 404, a connection dropped mid-body, an endless body, a stall, a trickle."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Loopback:
    """``files``: path -> bytes. ``drop_after``: path -> byte count after which the first GET of that path
    closes the connection (Content-Length announced in full). ``requests``: (path, Range header) seen."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.stop = threading.Event()
        self.url = ""

    def add(self, path: str, data: bytes) -> str:
        self.files["/" + path.lstrip("/")] = data
        return f"{self.url}/{path.lstrip('/')}"


def _handler(state: Loopback) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, length: int | None, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            if length is not None:
                self.send_header("Content-Length", str(length))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()

        def _slowly(self, chunk: bytes, pause: float, limit_s: float = 10.0) -> None:
            """Write ``chunk`` every ``pause`` seconds until the client goes away (or ``limit_s``)."""
            end = time.monotonic() + limit_s
            try:
                while not state.stop.is_set() and time.monotonic() < end:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if pause:
                        state.stop.wait(pause)
            except OSError:
                pass

        def do_GET(self) -> None:
            path, rng = self.path, self.headers.get("Range")
            state.requests.append((path, rng))
            if path == "/silent":  # accepts the request, never answers
                state.stop.wait(10)
                return
            if path == "/endless":  # no Content-Length, never ends
                self._send(200, None)
                self._slowly(b"\0" * 65536, 0.0)
            elif path == "/endless-announced":  # announces 10 GB
                self._send(200, 10 * 1024**3)
                self._slowly(b"\0" * 65536, 0.0)
            elif path.startswith("/stall"):  # a few bytes, then silence
                self._send(200, 1 << 20)
                self._slowly(b"x" * 100, 10.0, limit_s=10.0)
            elif path.startswith("/trickle"):  # one byte every 0.1 s
                self._send(200, 1 << 20)
                self._slowly(b"x", 0.1)
            elif path in state.files:
                data = state.files[path]
                start = 0
                if rng and (m := re.fullmatch(r"bytes=(\d+)-", rng)):
                    start = int(m.group(1))
                    if start >= len(data):
                        self._send(416, 0)
                        return
                    self._send(206, len(data) - start, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                else:
                    self._send(200, len(data))
                body = data[start:]
                cut = state.drop_after.pop(path, None)
                try:
                    self.wfile.write(body if cut is None else body[:cut])
                    self.wfile.flush()
                except OSError:
                    pass
                if cut is not None:
                    self.close_connection = True
            else:
                self._send(404, 0)

    return Handler


@contextmanager
def loopback_server() -> Iterator[Loopback]:
    state = Loopback()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
