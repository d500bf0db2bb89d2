"""Named weight releases: where they live on disk, and fetching them with verification.

A release is declared beside its model (or, for the authors' checkpoints, in
:mod:`mlfuse.weights.releases`) with the model and task it belongs to and a digest: a sha256, or the
git blob id the authors' repository publishes for the file (``git hash-object``: the SHA-1 of
``b"blob <size>\\0" + content``). A *packaged* release (weights this project trained) ships inside the
package as safetensors with a model card beside it, so it works offline. A *downloadable* one has a
URL (the raw file at a pinned commit): :func:`fetch` downloads it into the user cache
(``$MLFUSE_CACHE_DIR`` or ``$XDG_CACHE_HOME/mlfuse`` or ``~/.cache/mlfuse``) as ``<file>.part``,
verifies it and only then renames it into place, and records its sha256 in ``release.json`` beside it,
so every later use is checked against that record.

Fetching is hardened against hostile or broken servers (issue 14): the body is capped at the release's
known size (else its ``max_bytes``, else :data:`DEFAULT_MAX_BYTES`), a stall timeout and a total deadline
apply, SIGTERM/SIGHUP/Ctrl-C remove the partial file, and every failure is one line with the URL. A
connection that drops mid-body keeps the ``.part`` (run the command again to resume with an HTTP Range
request); a ``.part`` left by a killed run is resumed, or discarded when it cannot belong to the release.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.resources
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlfuse.errors import MLFuseError

#: download cap for a release that declares neither its exact size nor a ``max_bytes``
DEFAULT_MAX_BYTES = 1 << 30
#: seconds without a single byte before a download is abandoned
DEFAULT_STALL_TIMEOUT = 60.0
#: seconds a whole download may take
DEFAULT_DEADLINE = 1800.0
_RECORD = "release.json"


@dataclass(frozen=True)
class WeightsRelease:
    """A checkpoint: its file name, digest(s) and either a public URL (downloaded into the cache) or
    ``packaged``, its path inside the ``mlfuse`` package (shipped, nothing to fetch).

    ``sha256`` and/or ``blob`` (git blob id) must be given; a downloaded file must match every one given.
    ``model``: the registered method the weights belong to (empty: the card that lists the release).
    ``tasks``: the ``task`` values the weights are meant for, the first one the default (empty: any).
    ``size``: exact size in bytes when known; ``max_bytes``: a download cap when it is not.
    ``source`` and ``trained_on`` describe the release for ``mlfuse models`` and the README's zoo table.
    """

    name: str
    url: str
    sha256: str
    filename: str
    description: str = ""
    packaged: str = ""
    model: str = ""
    tasks: tuple[str, ...] = ()
    blob: str = ""
    size: int | None = None
    max_bytes: int | None = None
    source: str = ""
    trained_on: str = ""

    @property
    def task(self) -> str | None:
        """The task the weights are built for by default (``None``: the model's own default)."""
        return self.tasks[0] if self.tasks else None

    @property
    def download_cap(self) -> int:
        return self.size or self.max_bytes or DEFAULT_MAX_BYTES


_RELEASES: dict[str, WeightsRelease] = {}


def register_release(release: WeightsRelease) -> WeightsRelease:
    """Declare a release, once (a second one of the same name is an error). Every shipped release is
    declared in :mod:`mlfuse.weights.releases`, which ``mlfuse/weights/__init__.py`` imports, so the
    table is complete whenever this module is in use."""
    if not (release.sha256 or release.blob):
        raise ValueError(f"release '{release.name}' declares neither a sha256 nor a git blob id")
    if release.name in _RELEASES:
        raise ValueError(f"release '{release.name}' declared twice")
    _RELEASES[release.name] = release
    return release


def declared_releases() -> list[WeightsRelease]:
    """The declared releases (not those installed into the cache), sorted by name."""
    return [_RELEASES[k] for k in sorted(_RELEASES)]


def get_release(name: str) -> WeightsRelease:
    """A registered release, or one installed into the cache by ``mlfuse weights package``."""
    if name in _RELEASES:
        return _RELEASES[name]
    local = _installed_release(name)
    if local is not None:
        return local
    known = ", ".join(sorted(_RELEASES)) or "none"
    raise MLFuseError(f"unknown weights '{name}' (known: {known})")


def is_release(name: object) -> bool:
    """True if ``name`` names a registered or installed release (never raises)."""
    if not isinstance(name, str) or not name or "/" in name or os.sep in name:
        return False
    return name in _RELEASES or _installed_release(name) is not None


def list_releases() -> list[WeightsRelease]:
    """Registered releases, then those installed into the cache, each sorted by name."""
    regs = declared_releases()
    root = cache_dir() / "weights"
    local = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.name not in _RELEASES and (rel := _installed_release(d.name)) is not None:
                local.append(rel)
    return regs + local


def cache_dir() -> Path:
    """The user cache root for downloaded weights."""
    if env := os.environ.get("MLFUSE_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlfuse"


def _release_dir(name: str) -> Path:
    return cache_dir() / "weights" / name


def release_path(name: str) -> Path:
    """Where release ``name`` is (or would be) stored: inside the package, or in the cache."""
    rel = get_release(name)
    if rel.packaged:
        return Path(str(importlib.resources.files("mlfuse").joinpath(rel.packaged)))
    return _release_dir(rel.name) / rel.filename


def _read_record(name: str) -> dict | None:
    try:
        rec = json.loads((_release_dir(name) / _RECORD).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _installed_release(name: str) -> WeightsRelease | None:
    """A release ``mlfuse weights package`` installed into the cache (``release.json`` with ``local``)."""
    rec = _read_record(name)
    if not rec or not rec.get("local") or rec.get("name") != name:
        return None
    try:
        return WeightsRelease(name=name, url="", sha256=str(rec["sha256"]), filename=str(rec["filename"]),
                              description=str(rec.get("description", "installed by mlfuse weights package")),
                              model=str(rec.get("model", "")), size=int(rec["size"]),
                              source=str(rec.get("source", "")), trained_on=str(rec.get("trained_on", "")))
    except (KeyError, TypeError, ValueError):
        return None


def release_state(name: str) -> str:
    """``"packaged"`` (shipped with mlfuse), ``"cached"`` (fetched and verified) or ``"not fetched"``."""
    rel = get_release(name)
    if rel.packaged:
        return "packaged"
    rec = _read_record(name)
    path = release_path(name)
    if path.is_file() and rec and _record_matches(rel, rec) and rec.get("size") == path.stat().st_size:
        return "cached"
    if path.is_file() and rec is None:  # fetched by an mlfuse without records: verify it once, record it
        with contextlib.suppress(MLFuseError, OSError):
            verified_path(name)
            return "cached"
    return "not fetched"


def _record_matches(rel: WeightsRelease, rec: dict) -> bool:
    return ((not rel.blob or rec.get("blob") == rel.blob) and (not rel.sha256 or rec.get("sha256") == rel.sha256)
            and isinstance(rec.get("sha256"), str))


def model_card_path(name: str) -> Path | None:
    """The Markdown model card shipped beside a packaged release (``<file>.md``), if any."""
    rel = get_release(name)
    if not rel.packaged:
        return None
    card = release_path(name).with_suffix(".md")
    return card if card.is_file() else None


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def digests(path: str | Path, chunk: int = 1 << 20) -> tuple[str, str]:
    """``(sha256, git blob id)`` of a file in one pass; the blob id is what ``git hash-object`` prints."""
    size = os.path.getsize(path)
    sha, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            sha.update(block)
            blob.update(block)
    return sha.hexdigest(), blob.hexdigest()


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data``: SHA-1 of ``b"blob <size>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def find_release_by_digest(sha256: str, blob: str) -> WeightsRelease | None:
    """The registered release whose published digest equals a file's (``None`` if none does)."""
    for rel in _RELEASES.values():
        if (rel.blob and rel.blob == blob) or (rel.sha256 and rel.sha256 == sha256):
            return rel
    return None


def _mismatch(rel: WeightsRelease, sha: str, blob: str) -> str | None:
    """What does not match ``rel``'s digests (``None`` when all given ones match)."""
    if rel.blob and blob != rel.blob:
        return f"git blob id mismatch: expected {rel.blob}, got {blob}"
    if rel.sha256 and sha != rel.sha256:
        return f"sha256 mismatch: expected {rel.sha256}, got {sha}"
    return None


def check_file(path: str | Path, name: str) -> str:
    """Verify a local copy of release ``name`` by its digests; returns its sha256, else one-line error."""
    rel = get_release(name)
    sha, blob = digests(path)
    if (why := _mismatch(rel, sha, blob)) is not None:
        raise MLFuseError(f"{path}: not the file of release {name} ({why})")
    return sha


def verified_path(name: str) -> Path:
    """The file of release ``name``, checked before use: a packaged file against its sha256, a cached one
    against the sha256 recorded when it was fetched and verified. One-line error if absent or altered."""
    rel = get_release(name)
    path = release_path(name)
    if rel.packaged:
        if not path.is_file():
            raise MLFuseError(f"{path}: packaged weights {name} missing from this installation (reinstall mlfuse)")
        if sha256_of(path) != rel.sha256:
            raise MLFuseError(f"{path}: packaged weights {name} fail their sha256 check (reinstall mlfuse)")
        return path
    if not path.is_file():
        from mlfuse.errors import WeightsNotFoundError

        how = f"(downloads {rel.url}; offline: add --url file:///path/to/{rel.filename})" if rel.url else ""
        raise WeightsNotFoundError(f"weights '{name}' are not in the cache: run `mlfuse weights fetch {name}` "
                                   f"{how}".rstrip())
    rec = _read_record(name)
    if rec is None or not _record_matches(rel, rec):  # fetched by an older mlfuse, or the record was lost
        sha, blob = digests(path)
        if _mismatch(rel, sha, blob) is None:
            _write_record(rel, path, sha, blob, url="")
            return path
    elif sha256_of(path) == rec["sha256"]:
        return path
    raise MLFuseError(f"{path}: cached weights {name} do not match their verified digest (altered or damaged): "
                      f"run `mlfuse weights fetch {name} --force`")


def _write_record(rel: WeightsRelease, path: Path, sha: str, blob: str, url: str, **extra: object) -> None:
    rec = {"name": rel.name, "filename": path.name, "size": path.stat().st_size, "sha256": sha, "blob": blob,
           "url": url, "model": rel.model, "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
    tmp = path.parent / f".{_RECORD}.tmp"
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp, path.parent / _RECORD)


def install_local(path: str | Path, name: str, model: str, *, description: str = "", trained_on: str = "",
                  overwrite: bool = False) -> Path:
    """Copy a weights file into the cache as release ``name`` (what ``mlfuse weights package`` does), so
    ``create_model(model, weights=name)`` finds it. Refuses the name of a registered release."""
    import shutil

    if name in _RELEASES:
        raise MLFuseError(f"release name '{name}' is taken by a registered release; choose another --name")
    src = Path(path)
    folder = _release_dir(name)
    dest = folder / src.name
    if (folder / _RECORD).exists() and not overwrite:
        raise MLFuseError(f"{folder}: release '{name}' is already installed (pass --overwrite to replace it)")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{src.name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    sha, blob = digests(dest)
    rel = WeightsRelease(name=name, url="", sha256=sha, filename=dest.name, model=model)
    _write_record(rel, dest, sha, blob, url="", local=True, description=description, trained_on=trained_on)
    return dest


# --------------------------------------------------------------------------------------------- fetching

class _Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP during a download: unwinds like Ctrl-C, so the partial file is removed."""


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception while downloading (main thread only), so the ``finally``
    that removes the ``.part`` runs; the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated(f"signal {signum}")

    sigs = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _folder_lock(folder: Path, name: str) -> Iterator[None]:
    """Exclusive lock on the release's cache folder: two fetches of one release never share a ``.part``."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MLFuseError(f"{folder}: another mlfuse process is fetching {name} right now; wait for it") from None
        yield
    finally:
        os.close(fd)


class _KeepPart(MLFuseError):
    """A download that stopped early but whose bytes are good so far: the ``.part`` stays for resuming."""


def fetch(name: str, url: str | None = None, *, force: bool = False, quiet: bool = False,
          timeout: float = DEFAULT_STALL_TIMEOUT, deadline: float = DEFAULT_DEADLINE) -> Path:
    """Download release ``name`` (from ``url`` if given: a mirror or a ``file://`` copy) into the cache,
    verify it (git blob id and/or sha256), record its sha256 and return its path. An already verified
    file is not downloaded again. ``timeout``: seconds without data before giving up (stall);
    ``deadline``: seconds for the whole download."""
    rel = get_release(name)
    if rel.packaged:  # shipped with mlfuse: nothing to download, but still check it is intact
        return verified_path(name)
    if not rel.url and not url:
        raise MLFuseError(f"release {name} has no download URL (installed locally); nothing to fetch")
    dest = release_path(name)
    if not force and release_state(name) == "cached":
        with contextlib.suppress(MLFuseError):
            return verified_path(name)
    src = url or rel.url
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MLFuseError(f"{dest.parent}: cannot create the weights cache ({exc.strerror or exc})") from None
    with _folder_lock(dest.parent, name):
        for stale in dest.parent.glob(f".{rel.filename}.*.part"):  # temp names of older mlfuse versions
            stale.unlink(missing_ok=True)
        part = dest.with_name(dest.name + ".part")
        resumed = part.is_file() and part.stat().st_size > 0
        try:
            _download(rel, src, part, quiet=quiet, stall=timeout, deadline=deadline)
            sha, blob = digests(part)
            why = _mismatch(rel, sha, blob)
            if why is not None and resumed:  # the kept bytes came from another file: start over once
                part.unlink()
                _download(rel, src, part, quiet=quiet, stall=timeout, deadline=deadline)
                sha, blob = digests(part)
                why = _mismatch(rel, sha, blob)
            if why is not None:
                raise MLFuseError(f"cannot use {name} from {src}: {why}; file not saved")
            dest.unlink(missing_ok=True)
            (dest.parent / _RECORD).unlink(missing_ok=True)
            os.replace(part, dest)
            _write_record(rel, dest, sha, blob, url=src)
        except _KeepPart:
            raise
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    return dest


def _download(rel: WeightsRelease, src: str, part: Path, *, quiet: bool, stall: float, deadline: float) -> None:
    """Stream ``src`` into ``part`` (appending with a Range request if ``part`` holds bytes already)."""
    from tqdm import tqdm

    from mlfuse.progress import show_bars

    cap = rel.download_cap
    offset = part.stat().st_size if part.is_file() else 0
    if offset > cap:
        part.unlink()
        offset = 0
    start = time.monotonic()
    headers = {"User-Agent": "mlfuse", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    hint = f" (offline? download {rel.filename} elsewhere and run `mlfuse weights fetch {rel.name} " \
           f"--url file:///path/to/{rel.filename}`)"
    with _signals_unwind():
        try:
            resp = urllib.request.urlopen(urllib.request.Request(src, headers=headers), timeout=stall)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # the kept part is already whole (or foreign): start over
                part.unlink()
                return _download(rel, src, part, quiet=quiet, stall=stall, deadline=deadline)
            raise MLFuseError(f"cannot download {rel.name} from {src}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, TimeoutError):
                reason = f"no answer within {stall:g} s"
            remote = not src.startswith("file:")
            raise MLFuseError(f"cannot download {rel.name} from {src}: {reason}" + (hint if remote else "")) from None
        with resp:
            status = getattr(resp, "status", None) or 200
            if offset and not (status == 206 and str(resp.headers.get("Content-Range", ""))
                               .startswith(f"bytes {offset}-")):
                offset = 0  # the server ignored the Range request: take the whole body from the start
            length = resp.headers.get("Content-Length")
            try:
                total = offset + int(length) if length is not None else None
            except ValueError:
                total = None
            if total is not None and total > cap:
                raise MLFuseError(f"cannot download {rel.name} from {src}: the server announces {total:,} bytes, "
                                  f"more than the {cap:,} expected; file not saved")
            if rel.size and total is not None and total != rel.size:
                raise MLFuseError(f"cannot download {rel.name} from {src}: the server announces {total:,} bytes, "
                                  f"the release has {rel.size:,}; file not saved")
            read = getattr(resp, "read1", None) or resp.read
            got = offset
            show = show_bars(quiet)  # on a terminal only (or MLFUSE_PROGRESS=1)
            with open(part, "ab" if offset else "wb", buffering=0) as out, \
                    tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=f"fetch {rel.name}",
                         disable=not show, leave=False) as bar:
                while True:
                    if time.monotonic() - start > deadline:
                        raise MLFuseError(f"cannot download {rel.name} from {src}: not finished within the "
                                          f"{deadline:g} s deadline ({got:,} bytes received); file not saved")
                    try:
                        block = read(1 << 16)
                    except TimeoutError:
                        raise MLFuseError(f"cannot download {rel.name} from {src}: no data for {stall:g} s "
                                          f"(stalled after {got:,} bytes); file not saved") from None
                    except (http.client.IncompleteRead, ConnectionError) as exc:
                        raise _KeepPart(f"cannot download {rel.name} from {src}: connection lost after {got:,} "
                                        f"bytes ({type(exc).__name__}); the partial file {part} is kept: run "
                                        "the same command again to resume") from None
                    if not block:
                        break
                    got += len(block)
                    if got > cap:
                        raise MLFuseError(f"cannot download {rel.name} from {src}: more than the {cap:,} bytes "
                                          "expected; stopped, file not saved")
                    out.write(block)
                    bar.update(len(block))
                os.fsync(out.fileno())
            if total is not None and got < total:
                raise _KeepPart(f"cannot download {rel.name} from {src}: connection lost after {got:,} of "
                                f"{total:,} bytes; the partial file {part} is kept: run the same command again "
                                "to resume")
    return None
