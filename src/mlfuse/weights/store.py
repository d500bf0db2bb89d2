"""Named weight releases: where they live on disk, and fetching them with sha256 verification.

A release is declared beside its model in the registry with a sha256. A *packaged* release (e.g.
``mlfuse-cpu16``, weights this project trained) ships inside the package as safetensors with a
model card beside it, so it works offline. A *downloadable* one (e.g. ``mlfuse-paper``, the MLFuse
authors' checkpoint) has a URL: ``fetch`` downloads it into the user cache
(``$MLFUSE_CACHE_DIR`` or ``$XDG_CACHE_HOME/mlfuse`` or ``~/.cache/mlfuse``), verifies the hash
while streaming, and only then renames the temp file into place: a mismatch leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from mlfuse.errors import MLFuseError


@dataclass(frozen=True)
class WeightsRelease:
    """A checkpoint: its file name, expected sha256 and either a public URL (downloaded into the
    cache) or ``packaged``, its path inside the ``mlfuse`` package (shipped, nothing to fetch)."""

    name: str
    url: str
    sha256: str
    filename: str
    description: str = ""
    packaged: str = ""


_RELEASES: dict[str, WeightsRelease] = {}


def register_release(release: WeightsRelease) -> WeightsRelease:
    _RELEASES[release.name] = release
    return release


def get_release(name: str) -> WeightsRelease:
    import mlfuse.models  # noqa: F401  (each model package registers its releases)

    try:
        return _RELEASES[name]
    except KeyError:
        known = ", ".join(sorted(_RELEASES)) or "none"
        raise MLFuseError(f"unknown weights '{name}' (known: {known})") from None


def list_releases() -> list[WeightsRelease]:
    import mlfuse.models  # noqa: F401

    return [_RELEASES[k] for k in sorted(_RELEASES)]


def cache_dir() -> Path:
    """The user cache root for downloaded weights."""
    if env := os.environ.get("MLFUSE_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlfuse"


def release_path(name: str) -> Path:
    """Where release ``name`` is (or would be) stored: inside the package, or in the cache."""
    rel = get_release(name)
    if rel.packaged:
        return Path(str(importlib.resources.files("mlfuse").joinpath(rel.packaged)))
    return cache_dir() / "weights" / rel.name / rel.filename


def release_state(name: str) -> str:
    """``"packaged"`` (shipped with mlfuse), ``"cached"`` (fetched) or ``"not fetched"``."""
    if get_release(name).packaged:
        return "packaged"
    return "cached" if release_path(name).is_file() else "not fetched"


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


def fetch(name: str, url: str | None = None, *, force: bool = False, quiet: bool = False,
          timeout: float = 60.0) -> Path:
    """Download release ``name`` (from ``url`` if given: a mirror or a ``file://`` copy) into the
    cache, verify its sha256 and return its path. An already verified file is not downloaded again."""
    rel = get_release(name)
    dest = release_path(name)
    if rel.packaged:  # shipped with mlfuse: nothing to download, but still check it is intact
        if not dest.is_file():
            raise MLFuseError(f"{dest}: packaged weights {name} missing from this installation (reinstall mlfuse)")
        if sha256_of(dest) != rel.sha256:
            raise MLFuseError(f"{dest}: packaged weights {name} fail their sha256 check (reinstall mlfuse)")
        return dest
    if dest.is_file() and not force:
        if sha256_of(dest) == rel.sha256:
            return dest
        dest.unlink()  # a corrupted cache entry is replaced, never used
    src = url or rel.url
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{rel.filename}.", suffix=".part", dir=dest.parent)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                resp = urllib.request.urlopen(src, timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise MLFuseError(f"cannot download {name} from {src}: {reason}") from None
            with resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {name}",
                          disable=quiet, leave=False) as bar:
                    while block := resp.read(1 << 16):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
        got = h.hexdigest()
        if got != rel.sha256:
            raise MLFuseError(
                f"sha256 mismatch for {name} from {src}: expected {rel.sha256}, got {got}; file not saved"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
