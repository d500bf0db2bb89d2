"""`mlfuse weights fetch` against a loopback HTTP server (127.0.0.1): verification by git blob id / sha256,
the cache record, resume, and hostile servers (404, endless body, stall, trickle, dropped connection,
SIGTERM). The real URLs cannot be reached here: each test points a release at the loopback server and
computes the blob id of the file it serves. Timeouts are passed small so each case takes well under 2 s."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import mlfuse
from mlfuse.cli.main import main
from mlfuse.errors import MLFuseError
from mlfuse.weights import store
from mlfuse.weights.store import WeightsRelease, fetch, get_release, git_blob_id, release_path, release_state
from tests._loopback import Loopback, loopback_server

ROOT = Path(__file__).resolve().parents[2]
DATA = bytes(range(256)) * 2000  # 512,000 bytes: several read blocks


@pytest.fixture
def server():
    with loopback_server() as srv:
        yield srv


def _test_release(monkeypatch: pytest.MonkeyPatch, url: str, data: bytes = DATA, **kw: object) -> WeightsRelease:
    rel = WeightsRelease(name="test-weights", url=url, sha256="", blob=git_blob_id(data), filename="w.pth",
                         model="mlfuse", **kw)
    monkeypatch.setitem(store._RELEASES, rel.name, rel)
    return rel


def _leftovers() -> list[str]:
    folder = release_path("test-weights").parent
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_blob_id_is_git_hash_object(tmp_path: Path) -> None:
    f = tmp_path / "x.bin"
    f.write_bytes(DATA)
    out = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("git is not installed")
    assert git_blob_id(DATA) == out.stdout.strip() == store.digests(f)[1]


def test_fetch_verifies_by_blob_id_records_sha256_and_uses_umask(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.add("w.pth", DATA))
    old = os.umask(0o027)
    try:
        path = fetch("test-weights", quiet=True)
    finally:
        os.umask(old)
    assert path.read_bytes() == DATA and path == release_path("test-weights")
    assert path.stat().st_mode & 0o777 == 0o640  # the umask's mode, not mkstemp's 0600
    rec = json.loads((path.parent / "release.json").read_text())
    assert rec["sha256"] == store.sha256_of(path) and rec["blob"] == git_blob_id(DATA) and rec["size"] == len(DATA)
    assert release_state("test-weights") == "cached" and _leftovers() == ["release.json", "w.pth"]
    # cached: a second fetch does not download (the URL is dead now)
    n = len(server.requests)
    server.files.clear()
    assert fetch("test-weights", quiet=True) == path and len(server.requests) == n
    # an altered cache entry is caught by the recorded sha256 before use
    path.write_bytes(DATA[:-1] + b"?")
    with pytest.raises(MLFuseError, match=r"do not match their verified digest.*--force"):
        store.verified_path("test-weights")
    # ... and replaced by the next fetch, never used
    server.add("w.pth", DATA)
    assert fetch("test-weights", quiet=True).read_bytes() == DATA
    # a cache entry without its record (fetched by an older mlfuse) is verified once and recorded
    (path.parent / "release.json").unlink()
    assert release_state("test-weights") == "cached" and (path.parent / "release.json").is_file()


def test_the_authors_mlfuse_checkpoint_verifies_with_the_declared_digests(server: Loopback, official_weights,
                                                                           capsys) -> None:
    """The real file and the registry's own blob id, size and sha256 (no override): fetch, record, load."""
    url = server.add("model_fuse.pth", official_weights.read_bytes())
    assert main(["weights", "fetch", "mlfuse-paper", "--url", url, "-q"]) == 0
    path = release_path("mlfuse-paper")
    assert capsys.readouterr().out.strip() == str(path)
    rec = json.loads((path.parent / "release.json").read_text())
    rel = get_release("mlfuse-paper")
    assert (rec["blob"], rec["sha256"], rec["size"]) == (rel.blob, rel.sha256, rel.size)
    model = mlfuse.create_model("mlfuse", weights="mlfuse-paper")
    assert model.weights_source == str(path)
    assert model.state_dict()["inc_edg.double_conv.1.num_batches_tracked"].item() == 13_527


def test_wrong_blob_id_is_one_line_and_leaves_nothing(server: Loopback, monkeypatch, capsys) -> None:
    _test_release(monkeypatch, server.add("w.pth", DATA[:-1] + b"!"))
    assert main(["weights", "fetch", "test-weights", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "git blob id mismatch" in err and f"{server.url}/w.pth" in err
    assert "file not saved" in err and _leftovers() == []


def test_404_and_unknown_release_are_one_line(server: Loopback, monkeypatch, capsys) -> None:
    _test_release(monkeypatch, server.url + "/missing.pth")
    assert main(["weights", "fetch", "test-weights", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mlfuse: error: cannot download test-weights from {server.url}/missing.pth: HTTP 404 Not Found"
    assert _leftovers() == []
    assert main(["weights", "fetch", "no-such-release"]) == 2
    assert "unknown weights 'no-such-release'" in capsys.readouterr().err


def test_offline_error_suggests_a_file_url(monkeypatch, tmp_path: Path, capsys) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _test_release(monkeypatch, f"http://127.0.0.1:{port}/w.pth")
    assert main(["weights", "fetch", "test-weights", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--url file:///path/to/w.pth" in err and f"127.0.0.1:{port}/w.pth" in err
    # and the offline route works: a local copy through --url file://
    copy = tmp_path / "w.pth"
    copy.write_bytes(DATA)
    monkeypatch.setenv("MLFUSE_PROGRESS", "1")  # a bar, as on a terminal
    assert main(["weights", "fetch", "test-weights", "--url", copy.as_uri()]) == 0
    assert release_path("test-weights").read_bytes() == DATA
    assert "fetch test-weights" in capsys.readouterr().err
    assert main(["weights", "fetch", "test-weights", "--force", "--url", (tmp_path / "nope").as_uri(), "-q"]) == 2
    assert "No such file" in capsys.readouterr().err


def test_endless_body_is_capped(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.url + "/endless", max_bytes=256 * 1024)
    t = time.monotonic()
    with pytest.raises(MLFuseError, match=r"more than the 262,144 bytes expected; stopped, file not saved"):
        fetch("test-weights", quiet=True, timeout=2)
    assert time.monotonic() - t < 3 and _leftovers() == []


def test_announced_size_beyond_the_release_is_refused_up_front(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.url + "/endless-announced", size=len(DATA))
    with pytest.raises(MLFuseError, match=r"announces 10,737,418,240 bytes, more than the 512,000 expected"):
        fetch("test-weights", quiet=True, timeout=2)
    assert _leftovers() == []
    # a release without a known size still has a cap
    assert get_release("cddfuse-ivf").download_cap == 20 << 20
    assert WeightsRelease("x", "u", "s", "f").download_cap == store.DEFAULT_MAX_BYTES


def test_stalled_body_times_out(server: Loopback, monkeypatch, capsys) -> None:
    _test_release(monkeypatch, server.url + "/stall")
    t = time.monotonic()
    assert main(["weights", "fetch", "test-weights", "--timeout", "0.4", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no data for 0.4 s (stalled after 100 bytes); file not saved" in err and "\n" not in err
    assert time.monotonic() - t < 3 and _leftovers() == []


def test_silent_server_times_out(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.url + "/silent")
    t = time.monotonic()
    with pytest.raises(MLFuseError, match=r"/silent: no answer within 0.3 s"):
        fetch("test-weights", quiet=True, timeout=0.3)
    assert time.monotonic() - t < 3 and _leftovers() == []


def test_a_source_ignoring_range_restarts_from_zero(monkeypatch, tmp_path: Path) -> None:
    copy = tmp_path / "w.pth"  # file:// answers every request with the whole file
    copy.write_bytes(DATA)
    _test_release(monkeypatch, copy.as_uri())
    part = release_path("test-weights").with_name("w.pth.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA[:1000])
    assert fetch("test-weights", quiet=True).read_bytes() == DATA  # not DATA[:1000] + DATA
    assert _leftovers() == ["release.json", "w.pth"]


def test_trickle_hits_the_total_deadline(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.url + "/trickle")
    t = time.monotonic()
    with pytest.raises(MLFuseError, match=r"not finished within the 0.8 s deadline \(\d+ bytes received\)"):
        fetch("test-weights", quiet=True, timeout=1.0, deadline=0.8)
    assert time.monotonic() - t < 3 and _leftovers() == []


def test_dropped_connection_keeps_the_part_and_resumes(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.add("w.pth", DATA))
    server.drop_after["/w.pth"] = 200_000
    with pytest.raises(MLFuseError, match=r"connection lost after 200,000 of 512,000 bytes; .* resume"):
        fetch("test-weights", quiet=True, timeout=2)
    assert _leftovers() == ["w.pth.part"]
    path = fetch("test-weights", quiet=True, timeout=2)
    assert path.read_bytes() == DATA and _leftovers() == ["release.json", "w.pth"]
    assert server.requests[-1] == ("/w.pth", "bytes=200000-")  # only the rest was asked for


def test_stale_parts_are_cleaned_or_restarted(server: Loopback, monkeypatch) -> None:
    rel = _test_release(monkeypatch, server.add("w.pth", DATA))
    folder = release_path("test-weights").parent
    folder.mkdir(parents=True)
    (folder / ".w.pth.k3j2h1.part").write_bytes(b"left by an older mlfuse")  # mkstemp name, never resumable
    (folder / "w.pth.part").write_bytes(b"garbage of another file")  # resumed, fails, restarted from 0
    assert fetch("test-weights", quiet=True).read_bytes() == DATA
    assert _leftovers() == ["release.json", "w.pth"]
    assert [r for _, r in server.requests] == ["bytes=23-", None]
    # a part larger than the release can be is discarded before asking for more
    monkeypatch.setitem(store._RELEASES, rel.name, dataclasses.replace(rel, size=len(DATA)))
    (folder / "w.pth.part").write_bytes(b"\0" * (len(DATA) + 1))
    assert fetch("test-weights", quiet=True, force=True).read_bytes() == DATA
    assert server.requests[-1] == ("/w.pth", None)


def test_a_second_fetch_of_the_same_release_waits_its_turn(server: Loopback, monkeypatch) -> None:
    _test_release(monkeypatch, server.add("w.pth", DATA))
    folder = release_path("test-weights").parent
    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is fetching it
        with pytest.raises(MLFuseError, match="another mlfuse process is fetching test-weights"):
            fetch("test-weights", quiet=True)
    finally:
        os.close(fd)
    assert fetch("test-weights", quiet=True).read_bytes() == DATA


def test_sigterm_removes_the_partial_file(server: Loopback, monkeypatch, capsys) -> None:
    """SIGTERM while the body stalls: the .part is removed, one line, exit status 130 (as Ctrl-C)."""
    _test_release(monkeypatch, server.url + "/stall")
    part = release_path("test-weights").with_name("w.pth.part")

    def terminate_when_bytes_arrived() -> None:
        end = time.monotonic() + 20
        while not (part.is_file() and part.stat().st_size) and time.monotonic() < end:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=terminate_when_bytes_arrived)
    killer.start()
    assert main(["weights", "fetch", "test-weights", "--timeout", "30", "-q"]) == 130
    killer.join()
    assert capsys.readouterr().err.strip() == "mlfuse: interrupted"
    assert not part.exists() and _leftovers() == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler was only there while fetching
