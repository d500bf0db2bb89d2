"""The ``mlfuse demo`` HTTP server: the standard library's threading HTTP server, one static page.

API (JSON unless noted; every POST must carry ``X-Requested-With: mlfuse-demo``, which a form or
image on another site cannot send, and the ``Host`` header must name this server, which stops DNS
rebinding):

* ``GET /api/info``: methods (weights options, or why disabled), metric profiles, pairs, limits.
* ``POST /api/images`` (body: the file's bytes; ``X-Filename``: its URL-encoded name): decode an
  upload; answers the image's id, size and preview URL, or ``{"error": "one line"}``.
* ``POST /api/pairs`` ``{"pair": key}``: load a bundled sample or ``--data`` test pair.
* ``POST /api/jobs`` ``{"structural", "functional", "methods": [{"name", "weights"}], "color"}``: queue
  a fusion job; ``GET /api/jobs/ID``: its progress and results; ``GET /api/jobs/ID/METHOD.png``: a
  result; ``GET /api/jobs/ID/metrics?profile=P&slow=0|1``: the metrics table.
* ``GET /api/images/ID.png``: an 8-bit preview of a source.

Nothing is sent anywhere else; the page loads no external resource (its Content-Security-Policy
forbids it).
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import shutil
import socket
import sys
import tempfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from mlfuse.demo.state import DemoError, DemoState
from mlfuse.errors import MLFuseError

STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_DRAIN_LIMIT = 256 * 2**20  # an oversize upload up to this is read and dropped, so the browser sees the answer


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "mlfuse-demo"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:  # quiet: errors only, unless --verbose
        if self.server.verbose:
            super().log_message(format, *args)

    # -- replies -----------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: object, status: int = 200) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode(), "application/json")

    def _error(self, message: str, status: int = 400) -> None:
        self._json({"error": message}, status)

    def _file(self, path: Path, ctype: str = "image/png", download: str | None = None) -> None:
        extra = {"Content-Disposition": f'attachment; filename="{download}"'} if download else None
        try:
            body = path.read_bytes()
        except OSError:
            return self._error("that file is no longer on the server", 404)
        self._send(200, body, ctype, extra)

    # -- checks ------------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.server.loopback_only and not is_loopback(name):
            self._error(f"this demo answers only to a loopback address, not to Host '{host}'", 403)
            return False
        return True

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error("a Content-Length header is required", HTTPStatus.LENGTH_REQUIRED)
            return None
        n, limit = int(length), self.server.state.max_upload_bytes
        if n > limit:
            while 0 < n <= _DRAIN_LIMIT:
                chunk = self.rfile.read(min(n, 1 << 20))
                n = n - len(chunk) if chunk else 0
            self.close_connection = True
            name = unquote(self.headers.get("X-Filename", "")) or "the upload"
            self._error(f"{name}: {int(length) / 2**20:.1f} MB is over this demo's upload limit of "
                        f"{limit / 2**20:g} MB (start it with --max-upload-mb N to allow more)", 413)
            return None
        return self.rfile.read(n)

    # -- routes ------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        state = self.server.state
        try:
            if not parts:
                return self._static("index.html")
            if parts[0] == "static" and len(parts) == 2:
                return self._static(parts[1])
            if parts == ["api", "info"]:
                return self._json(self.server.info())
            if len(parts) == 3 and parts[:2] == ["api", "images"] and parts[2].endswith(".png"):
                return self._file(state.image(parts[2][:-4]).preview)
            if len(parts) >= 3 and parts[:2] == ["api", "jobs"]:
                job = state.job(parts[2])
                if len(parts) == 3:
                    return self._json(state.status(job))
                if len(parts) == 4 and parts[3] == "metrics":
                    q = parse_qs(url.query)
                    profile = q.get("profile", ["cddfuse"])[0]
                    slow = q.get("slow", ["0"])[0] in ("1", "true")
                    return self._json(state.metrics(job, profile, slow))
                if len(parts) == 4 and parts[3].endswith(".png"):
                    method = parts[3][:-4]
                    download = next((r["download"] for r in job.results if r["method"] == method), None)
                    dl = parse_qs(url.query).get("download", ["0"])[0] == "1"
                    return self._file(state.result_path(job, method), download=download if dl else None)
            return self._error(f"no such page: {url.path}", 404)
        except DemoError as exc:
            return self._error(str(exc), exc.status)
        except MLFuseError as exc:
            return self._error(str(exc))

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        if self.headers.get("X-Requested-With") != "mlfuse-demo":
            self.close_connection = True
            return self._error("POST requests must come from the demo page (X-Requested-With: mlfuse-demo)", 403)
        path = urlsplit(self.path).path
        state = self.server.state
        body = self._body()
        if body is None:
            return
        try:
            if path == "/api/images":
                name = unquote(self.headers.get("X-Filename", "")) or "upload"
                return self._json(state.upload(name, body).info())
            try:
                data = json.loads(body or b"{}")
            except json.JSONDecodeError:
                return self._error("the request body is not JSON")
            if not isinstance(data, dict):
                return self._error("the request body must be a JSON object")
            if path == "/api/pairs":
                s, f = state.load_pair(str(data.get("pair", "")))
                return self._json({"structural": s.info(), "functional": f.info()})
            if path == "/api/jobs":
                methods = data.get("methods")
                if not isinstance(methods, list):
                    return self._error("'methods' must be a list")
                job = state.submit(str(data.get("structural", "")), str(data.get("functional", "")), methods,
                                   str(data.get("color", "ycbcr")))
                return self._json(state.status(job))
            return self._error(f"no such endpoint: {path}", 404)
        except DemoError as exc:
            return self._error(str(exc), exc.status)
        except MLFuseError as exc:
            return self._error(str(exc))

    def _static(self, name: str) -> None:
        if name not in STATIC:
            return self._error(f"no such file: {name}", 404)
        body = importlib.resources.files("mlfuse.demo").joinpath("static", name).read_bytes()
        self._send(200, body, STATIC[name])


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    state: DemoState
    loopback_only: bool
    verbose: bool
    info_cache: dict | None = None

    def info(self) -> dict:
        if self.info_cache is None:
            from mlfuse import __version__
            from mlfuse.metrics import PROFILES

            state = self.state
            self.info_cache = {
                "version": __version__,
                "methods": [m.info() for m in state.methods.values()],
                "profiles": [{"name": p.name, "reference": p.reference,
                              "metrics": [{"name": m.name, "higher_is_better": m.higher_is_better, "slow": m.slow}
                                          for m in p.metrics]} for p in PROFILES.values()],
                "pairs": [{"key": k, "group": v["group"], "label": v["label"]} for k, v in state.pairs.items()],
                "colors": ["ycbcr", "gray", "paper"],
                "limits": {"max_upload_bytes": state.max_upload_bytes, "max_pixels": state.max_pixels},
            }
        return self.info_cache


class DemoServer:
    """A running demo: ``with DemoServer(port=0) as srv: ... srv.url ...``; ``serve_forever()``
    blocks, ``start()`` serves from a background thread (tests). ``close()`` stops it and removes
    the scratch folder, the only place it writes to."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, data: str | Path | None = None,
                 weights: dict[str, str] | None = None, max_upload_mb: float = 20.0,
                 max_megapixels: float = 16.0, device: str = "auto", verbose: bool = False) -> None:
        if not max_upload_mb > 0 or not max_megapixels > 0:
            raise MLFuseError("--max-upload-mb and --max-megapixels must be positive")
        self.scratch = Path(tempfile.mkdtemp(prefix="mlfuse-demo-"))
        self._thread: threading.Thread | None = None
        try:
            self.state = DemoState(self.scratch, data=Path(data) if data else None, weights=weights,
                                   max_upload_bytes=int(max_upload_mb * 2**20),
                                   max_pixels=int(max_megapixels * 1e6), device=device)
            server_class = type("_DemoHTTPServer", (_HTTPServer,),
                                {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
            try:
                self.httpd = server_class((host, port), _Handler)
            except OSError as exc:
                raise MLFuseError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        except BaseException:
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        self.httpd.state = self.state
        self.httpd.loopback_only = is_loopback(host)
        self.httpd.verbose = verbose
        self.host = host

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> DemoServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mlfuse-demo-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        self.state.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def warn_if_exposed(host: str) -> None:
    """The warning printed when the demo listens on more than this machine."""
    if not is_loopback(host):
        print(f"mlfuse demo: WARNING: listening on {host}: anyone who can reach this machine on the network can "
              "upload images and run models here (no login, no encryption). Use the default --host 127.0.0.1 "
              "unless you mean it.", file=sys.stderr)
