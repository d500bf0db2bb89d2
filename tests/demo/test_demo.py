"""`mlfuse demo`'s HTTP API without a browser: a real server on port 0 in a thread, real requests."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import mlfuse.inference.fuse
from mlfuse.cli.main import build_parser
from mlfuse.demo.server import DemoServer, is_loopback, warn_if_exposed
from mlfuse.metrics import evaluate
from mlfuse.registry import create_model, get_card, list_models

ROOT = Path(__file__).resolve().parents[2]
POST = {"X-Requested-With": "mlfuse-demo"}


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def request(url: str, data: bytes | dict | None = None, headers: dict | None = None,
            method: str | None = None) -> tuple[int, dict | bytes]:
    """(status, JSON object or raw bytes) for one request; HTTP errors are returned, not raised."""
    hdrs = dict(headers or {})
    if isinstance(data, dict):
        data = json.dumps(data).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, body, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(body) if ctype.startswith("application/json") else body


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, sample_pair) -> Path:
    """A --data folder: one test set (vi/ir, two pairs) and a train set that must not be offered."""
    root = tmp_path_factory.mktemp("data")
    vis, ir = sample_pair
    for split in ("test", "train"):
        for sub, img in (("vi", vis), ("ir", ir)):
            (root / "set" / split / sub).mkdir(parents=True)
            for name, crop in (("a1", img[:64, :96]), ("a2", img[64:128, :96])):
                PILImage.fromarray(crop).save(root / "set" / split / sub / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, random_weights: Path) -> Iterator[DemoServer]:
    with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse cache isolation is per test
        mp.setenv("MLFUSE_CACHE_DIR", str(tmp_path_factory.mktemp("demo_cache")))
        srv = DemoServer("127.0.0.1", 0, data=data_dir, weights={"mlfuse": str(random_weights)},
                         max_upload_mb=0.5, max_megapixels=0.2).start()
        try:
            yield srv
        finally:
            srv.close()
    assert not srv.scratch.exists(), "the scratch folder must be removed on close"


@pytest.fixture(scope="module")
def info(server: DemoServer) -> dict:
    status, body = request(server.url + "api/info")
    assert status == 200
    return body


def upload(server: DemoServer, name: str, body: bytes) -> tuple[int, dict]:
    return request(server.url + "api/images", body, {**POST, "X-Filename": name,
                                                     "Content-Type": "application/octet-stream"})


def wait_done(server: DemoServer, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = request(f"{server.url}api/jobs/{job_id}")
        assert status == 200, job
        if job["state"] == "done":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not done after {timeout} s: {job}")


def test_page_and_static_files_come_from_the_package(server: DemoServer) -> None:
    status, page = request(server.url)
    assert status == 200 and b"<title>mlfuse demo</title>" in page
    assert not re.search(rb"(src|href)=\"https?:", page), "no external resource"
    for name in ("app.js", "style.css"):
        status, body = request(f"{server.url}static/{name}")
        assert status == 200 and body
        assert b"http://" not in body and b"https://" not in body
    for bad in ("static/state.py", "static/..%2Fstate.py", "nothing"):
        assert request(server.url + bad)[0] == 404


def test_every_registered_method_is_listed_and_those_without_weights_say_why(info: dict) -> None:
    methods = {m["name"]: m for m in info["methods"]}
    assert sorted(methods) == list_models()
    for name, m in methods.items():
        card = get_card(name)
        if not card.needs_weights:
            assert m["available"] and m["weights"] == [{"id": "none", "label": "no weights needed"}]
        elif name == "mlfuse":  # the packaged default, and the file given with --weights mlfuse=FILE
            assert m["available"]
            ids = [w["id"] for w in m["weights"]]
            assert "file" in ids and card.default_weights in ids
        elif card.default_weights is None and not any(r.startswith(name) for r in ("mlfuse-own-v1",)):
            assert not m["available"], name
            assert f"--weights {name}=FILE" in m["reason"]
    assert {p["name"] for p in info["profiles"]} >= {"cddfuse", "tang", "paper", "vifb"}


def test_pairs_offer_the_sample_and_only_test_pairs_of_data(server: DemoServer, info: dict, sample_pair) -> None:
    keys = {p["key"]: p for p in info["pairs"]}
    assert keys["sample"]["group"] == "bundled"
    data = [p for p in info["pairs"] if p["group"] != "bundled"]
    assert [(p["group"], p["label"]) for p in data] == [("set/test", "a1"), ("set/test", "a2")]
    status, pair = request(server.url + "api/pairs", {"pair": "sample"}, POST)
    assert status == 200
    assert (pair["structural"]["width"], pair["structural"]["height"]) == (384, 288)
    assert pair["structural"]["color"] and not pair["functional"]["color"]
    status, png = request(server.url + pair["functional"]["url"].lstrip("/"))
    assert status == 200 and np.array_equal(np.asarray(PILImage.open(io.BytesIO(png))), sample_pair[1])
    status, body = request(server.url + "api/pairs", {"pair": "../../etc/passwd"}, POST)
    assert status == 404 and "unknown pair" in body["error"]


def test_upload_decoded_like_mlfuse_fuse_and_bad_input_is_one_readable_line(server: DemoServer,
                                                                             sample_pair) -> None:
    vis = sample_pair[0][:100, :120]
    status, img = upload(server, "v%C3%A9.png", _png(vis))
    assert status == 200, img
    assert (img["name"], img["width"], img["height"], img["color"], img["bits"]) == ("vé.png", 120, 100, True, 8)
    u16 = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30)
    status, img16 = upload(server, "deep.png", _png(u16))
    assert status == 200 and img16["bits"] == 16 and not img16["color"]
    status, body = upload(server, "notes.txt", b"not an image at all")
    assert status == 400 and body["error"] == "notes.txt: not an image file (format not recognised)"
    status, body = upload(server, "cut.png", _png(vis)[:200])
    assert status == 400 and body["error"].startswith("cut.png: truncated or corrupt image")
    status, body = upload(server, "big.bin", b"\0" * (600 * 1024))  # limit: 0.5 MB
    assert status == 413 and "over this demo's upload limit of 0.5 MB" in body["error"]
    big = np.zeros((500, 420), np.uint8)  # 0.21 MP > 0.2 MP, small file
    status, body = upload(server, "huge.png", _png(big))
    assert status == 413 and "huge.png: 420x500 pixels" in body["error"] and "--max-megapixels" in body["error"]
    ihdr = struct.pack(">IIBBBBB", 30000, 20000, 8, 0, 0, 0, 0)  # a PNG header claiming 600 megapixels
    chunks = ((b"IHDR", ihdr), (b"IDAT", zlib.compress(b"")))
    bomb = b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
                                          for t, d in chunks)
    status, body = upload(server, "bomb.png", bomb)
    assert status == 413 and body["error"].startswith("bomb.png: image too large (")
    assert "up to 0.2 megapixels" in body["error"]
    status, body = request(server.url + "api/images", _png(vis), {"X-Filename": "x.png"})
    assert status == 403, "a POST without the page's header (e.g. from another site's form) is refused"
    status, body = request(server.url + "api/info", headers={"Host": "attacker.example:80"})
    assert status == 403 and "loopback" in body["error"]


def test_two_methods_fused_timed_downloadable_and_scored(server: DemoServer, sample_pair) -> None:
    vis, ir = sample_pair
    s = upload(server, "vis.png", _png(vis[:96, :128]))[1]
    f = upload(server, "ir.png", _png(ir[:96, :128]))[1]
    status, job = request(server.url + "api/jobs", {"structural": s["id"], "functional": f["id"],
                                                   "methods": ["average", {"name": "max", "weights": "none"}],
                                                   "color": "ycbcr"}, POST)
    assert status == 200 and job["total"] == 2
    job = wait_done(server, job["id"])
    assert [r["method"] for r in job["results"]] == ["average", "max"]
    fused = {}
    for r in job["results"]:
        assert "error" not in r and r["time_s"] > 0 and r["download"] == f"vis_{r['method']}.png"
        status, png = request(server.url + r["url"].lstrip("/"))
        assert status == 200
        fused[r["method"]] = np.asarray(PILImage.open(io.BytesIO(png)))
        expected = mlfuse.inference.fuse.fuse_pair(create_model(r["method"]), vis[:96, :128], ir[:96, :128])
        np.testing.assert_array_equal(fused[r["method"]], expected)  # the same pipeline as `mlfuse fuse`
    status, table = request(f"{server.url}api/jobs/{job['id']}/metrics?profile=tang&slow=0")
    assert status == 200 and table["profile"] == "tang"
    names = [m["name"] for m in table["metrics"]]
    assert "FMI_pixel" not in names and "FMI_pixel" in table["skipped_slow"] and "Nabf" in names
    for method, row in table["rows"].items():
        want = evaluate(fused[method], ir[:96, :128], vis[:96, :128], "tang", slow=False)
        for m in names:
            assert row[m] == pytest.approx(want[m], rel=1e-12, abs=1e-12)
    for m in table["metrics"]:
        vals = {k: row[m["name"]] for k, row in table["rows"].items()}
        pick = max if m["higher_is_better"] else min
        assert table["best"][m["name"]] == [k for k, v in vals.items() if v == pick(vals.values())]
    assert set(table["times"]) == {"average", "max"}


def test_mismatched_pair_and_bad_requests_are_refused_with_a_reason(server: DemoServer, sample_pair) -> None:
    vis, ir = sample_pair
    s = upload(server, "a.png", _png(vis[:60, :80]))[1]
    f = upload(server, "b.png", _png(ir[:50, :70]))[1]
    body = {"structural": s["id"], "functional": f["id"], "methods": ["average"]}
    status, err = request(server.url + "api/jobs", body, POST)
    assert status == 400 and err["error"].startswith("size mismatch: a.png is 80x60 but b.png is 70x50 (W x H)")
    f2 = upload(server, "c.png", _png(ir[:60, :80]))[1]
    for methods, msg in ((["nope"], "unknown method 'nope'"), ([], "choose at least one method"),
                         ([{"name": "average", "weights": "/etc/passwd"}], "unknown weights"),
                         (["average", "average"], "chosen twice")):
        status, err = request(server.url + "api/jobs", {**body, "functional": f2["id"], "methods": methods}, POST)
        assert status == 400 and msg in err["error"], err
    disabled = next(n for n in list_models() if get_card(n).needs_weights and n != "mlfuse")
    status, err = request(server.url + "api/jobs", {**body, "functional": f2["id"], "methods": [disabled]}, POST)
    assert status == 400 and "no weights" in err["error"]
    assert request(server.url + "api/jobs", b"{not json", POST)[0] == 400
    assert request(server.url + "api/jobs/unknown")[0] == 404


def test_concurrent_jobs_queue_one_forward_at_a_time(server: DemoServer, sample_pair,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    spans: list[tuple[float, float]] = []
    real = mlfuse.inference.fuse.fuse_images

    def slow_fuse(*args, **kwargs):
        t0 = time.monotonic()
        time.sleep(0.2)
        out = real(*args, **kwargs)
        spans.append((t0, time.monotonic()))
        return out

    monkeypatch.setattr(mlfuse.inference.fuse, "fuse_images", slow_fuse)
    vis, ir = sample_pair
    s = upload(server, "v.png", _png(vis[:32, :32]))[1]
    f = upload(server, "i.png", _png(ir[:32, :32]))[1]
    body = {"structural": s["id"], "functional": f["id"], "methods": ["average", "max"]}
    answers: list[dict] = []

    def submit() -> None:
        answers.append(request(server.url + "api/jobs", body, POST)[1])

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    running = None  # progress while a method runs: which one, how far, for how long
    for _ in range(200):
        states = [request(f"{server.url}api/jobs/{a['id']}")[1] for a in answers]
        running = next((j for j in states if j["state"] == "running" and j["current"]), None)
        if running:
            break
        time.sleep(0.01)
    assert running and running["current"] in ("average", "max") and running["current_elapsed_s"] >= 0
    assert running["total"] == 2 and running["done"] in (0, 1)
    jobs = [wait_done(server, a["id"]) for a in answers]
    assert all(len(j["results"]) == 2 and all("error" not in r for r in j["results"]) for j in jobs)
    assert len(spans) == 6
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans)), spans
    assert max(a["queue_position"] for a in answers) >= 1


def test_everything_written_stays_in_the_scratch_folder(tmp_path: Path, data_dir: Path, sample_pair,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(p for p in data_dir.rglob("*"))
    with DemoServer("127.0.0.1", 0, data=data_dir).start() as srv:
        scratch = srv.scratch
        assert scratch.is_dir() and scratch != tmp_path
        s = upload(srv, "v.png", _png(sample_pair[0][:32, :32]))[1]
        f = request(srv.url + "api/pairs", {"pair": "data0:a1"}, POST)[1]["functional"]
        assert f["name"] == "a1.png"
        f = upload(srv, "i.png", _png(sample_pair[1][:32, :32]))[1]
        job = request(srv.url + "api/jobs", {"structural": s["id"], "functional": f["id"],
                                             "methods": ["average"]}, POST)[1]
        wait_done(srv, job["id"])
        assert any(scratch.rglob("average.png"))
    assert not scratch.exists()
    assert list(tmp_path.iterdir()) == [] and sorted(data_dir.rglob("*")) == before


def test_cli_options_warning_and_weights_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["demo", "--host", "0.0.0.0", "--port", "8123", "--open", "--data", "d",
                                      "--weights", "cddfuse=a.pth", "--weights", "emma=b.pth"])
    assert (args.host, args.port, args.open, args.data) == ("0.0.0.0", 8123, True, "d")
    from mlfuse.cli.demo import parse_weights

    assert parse_weights(args.weights) == {"cddfuse": "a.pth", "emma": "b.pth"}
    with pytest.raises(Exception, match="expected NAME=FILE"):
        parse_weights(["cddfuse"])
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    warn_if_exposed("127.0.0.1")
    assert capsys.readouterr().err == ""
    warn_if_exposed("0.0.0.0")
    assert "WARNING: listening on 0.0.0.0" in capsys.readouterr().err
    with pytest.raises(Exception, match="no such file"):
        DemoServer(weights={"cddfuse": "missing.pth"})


def _readme_demo_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Demo", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_demo_command_serves_the_page_and_cleans_up_on_ctrl_c(tmp_path: Path) -> None:
    (command,) = _readme_demo_commands()
    section = (ROOT / "README.md").read_text().split("## Demo", 1)[1].split("\n## ", 1)[0]
    shots = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", section)
    assert shots and all((ROOT / s).is_file() for s in shots), "the README shows the browser test's screenshot"
    argv = shlex.split(command)
    assert argv[:2] == ["mlfuse", "demo"]
    env = {**os.environ, "MLFUSE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    # as from a terminal: SIGINT at its default, whatever this test process inherited (a non-interactive
    # shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen([sys.executable, "-m", "mlfuse", *argv[1:]], stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = scratch = None
        for line in proc.stderr:
            if m := re.search(r"serving on (http://127\.0\.0\.1:\d+/)", line):
                url = m.group(1)
            if m := re.search(r"scratch folder (\S+) \(removed on exit\)", line):
                scratch = Path(m.group(1))
                break
        assert url and scratch and scratch.is_dir()
        status, page = request(url)
        assert status == 200 and b"mlfuse demo" in page
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert "stopped" in proc.stderr.read()
        assert not scratch.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
