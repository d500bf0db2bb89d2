"""`mlfuse weights fetch` against a small HTTP server on 127.0.0.1 (good and corrupted copies)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

import mlfuse
from mlfuse.cli.main import main
from mlfuse.errors import MLFuseError
from mlfuse.weights.store import fetch, get_release, release_path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, official_weights: Path):
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(official_weights, root / "model_fuse.pth")
    data = bytearray(official_weights.read_bytes())
    data[1000] ^= 0xFF
    (root / "corrupted.pth").write_bytes(bytes(data))
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_verifies_and_caches(server: str, official_weights: Path) -> None:
    path = fetch("mlfuse-paper", f"{server}/model_fuse.pth", quiet=True)
    assert path == release_path("mlfuse-paper")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == get_release("mlfuse-paper").sha256
    assert path.read_bytes() == official_weights.read_bytes()
    # a second fetch uses the verified cache, even with a dead URL
    assert fetch("mlfuse-paper", f"{server}/gone.pth", quiet=True) == path
    # and the release name now resolves to it
    model = mlfuse.create_model("mlfuse", weights="mlfuse-paper")
    assert model.weights_source == str(path)


def test_fetch_refuses_a_corrupted_download(server: str) -> None:
    with pytest.raises(MLFuseError) as err:
        fetch("mlfuse-paper", f"{server}/corrupted.pth", quiet=True)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and "9b3133d6" in msg and "file not saved" in msg
    folder = release_path("mlfuse-paper").parent
    assert not any(folder.iterdir()), "nothing may be left behind"


def test_fetch_errors_are_one_line(server: str, capsys) -> None:
    assert main(["weights", "fetch", "mlfuse-paper", "--url", f"{server}/missing.pth", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlfuse: error: cannot download mlfuse-paper") and "\n" not in err
    assert main(["weights", "fetch", "no-such-release"]) == 2
    assert "unknown weights 'no-such-release'" in capsys.readouterr().err


def test_fetch_cli_then_list(server: str, capsys) -> None:
    assert main(["weights", "fetch", "mlfuse-paper", "--url", f"{server}/model_fuse.pth", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(release_path("mlfuse-paper"))
    assert main(["weights", "list"]) == 0
    assert "mlfuse-paper: cached" in capsys.readouterr().out


def test_corrupted_cache_entry_is_replaced(server: str) -> None:
    dest = release_path("mlfuse-paper")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"stale")
    path = fetch("mlfuse-paper", f"{server}/model_fuse.pth", quiet=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("9b3133d6")
