"""The on-disk cache of fused results and their metric values.

Layout: ``<root>/<dataset>-<sources key>/<label>-<method key>/`` holding ``<pair>.png`` (the fused
images), ``index.json`` (per pair: the signature of its two source files) and
``metrics-<profile>.json`` (per pair: metric values). ``method.json`` records what the key stands
for. The method key hashes the model name, its constructor arguments, the sha256 of its weights
file and the pipeline options (colour, output rule, precision): new weights or options get a new
folder, so a result is never reused for anything but what produced it. A result whose source files
changed (size or modification time) is recomputed, and its metric values dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from mlfuse.data.io import atomic_write
from mlfuse.data.pairs import Pair
from mlfuse.weights.store import cache_dir


def default_root() -> Path:
    return cache_dir() / "bench"


def slug(text: str) -> str:
    """A file-name-safe form of a label (``mlfuse:paper`` -> ``mlfuse_paper``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def digest(obj: object, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def source_signature(pair: Pair) -> list:
    out = []
    for p in (pair.structural, pair.functional):
        st = p.stat()
        out += [p.name, st.st_size, st.st_mtime_ns]
    return out


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}  # a missing or damaged index only costs a recomputation


def write_json(path: Path, doc: object) -> None:
    atomic_write(path, lambda fh: fh.write((json.dumps(doc, indent=1, allow_nan=True) + "\n").encode()),
                 overwrite=True)


class MethodCache:
    """Fused results and metric values of one method on one dataset."""

    def __init__(self, root: Path, dataset: str, sources: tuple[Path, Path], label: str, identity: dict) -> None:
        ds_key = digest([str(sources[0].resolve()), str(sources[1].resolve())], 8)
        self.dir = root / f"{slug(dataset)}-{ds_key}" / f"{slug(label)}-{digest(identity)}"
        self.identity = identity
        self.index = _read_json(self.dir / "index.json")
        self._metrics: dict[str, dict] = {}

    def fused_path(self, pair: Pair) -> Path:
        return self.dir / f"{pair.name}.png"

    def has(self, pair: Pair) -> bool:
        """A cached result exists and was made from the same source files."""
        return self.fused_path(pair).is_file() and self.index.get(pair.name) == source_signature(pair)

    def stored(self, pair: Pair) -> None:
        """Record that the result of ``pair`` was (re)written: its old metric values are dropped."""
        self.index[pair.name] = source_signature(pair)
        for f in self.dir.glob("metrics-*.json"):
            self.metrics(f.stem.removeprefix("metrics-"))
        for values in self._metrics.values():
            values.pop(pair.name, None)

    def save(self) -> None:
        """Write the index and every metric table touched."""
        write_json(self.dir / "method.json", self.identity)
        write_json(self.dir / "index.json", self.index)
        for profile, values in self._metrics.items():
            write_json(self.dir / f"metrics-{profile}.json", values)

    def metrics(self, profile: str) -> dict[str, dict[str, float]]:
        if profile not in self._metrics:
            self._metrics[profile] = _read_json(self.dir / f"metrics-{profile}.json")
        return self._metrics[profile]
