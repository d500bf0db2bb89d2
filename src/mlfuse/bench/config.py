"""What a bench run is made of: methods (with a weights choice), datasets (modality folders, an
optional names filter), metric profiles, figures, efficiency settings. Given on the command line
or in a TOML / JSON file, whose relative paths are read from the file's folder.

Method specs: ``[LABEL=]MODEL[:WEIGHTS]``. WEIGHTS is ``default`` (the model card's, also when
omitted), a release name (``mlfuse-paper``) or its short form (``paper`` for ``mlfuse-paper``), or a
checkpoint file. A release can be pointed at a local file (``weights_files``), checked against the
release's sha256: ``mlfuse:paper`` then runs the authors' checkpoint without fetching it.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mlfuse.data.pairs import read_names
from mlfuse.errors import MLFuseError
from mlfuse.registry import get_card


@dataclass(frozen=True)
class MethodSpec:
    """One row of the tables: a registered model, its weights choice and constructor arguments."""

    label: str
    model: str
    weights: str = "default"
    kwargs: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, kwargs: dict | None = None) -> MethodSpec:
        """``[LABEL=]MODEL[:WEIGHTS]``; the label defaults to the text without ``LABEL=``."""
        text = text.strip()
        label, sep, spec = text.partition("=")
        if not sep or ":" in label or "/" in label:  # '=' inside a weights path, not a label
            label, spec = "", text
        model, _, weights = spec.partition(":")
        if not model:
            raise MLFuseError(f"method '{text}': expected [LABEL=]MODEL[:WEIGHTS], e.g. mlfuse:paper")
        card = get_card(model)  # unknown models fail here with the list of known ones
        weights = weights or "default"
        if not card.needs_weights and weights != "default":
            raise MLFuseError(f"method '{text}': model '{model}' takes no weights")
        if not label:
            label = model if weights == "default" else f"{model}:{_short(weights)}"
        return cls(label=label, model=model, weights=weights, kwargs=dict(kwargs or {}))


def _short(weights: str) -> str:
    return Path(weights).stem if ("/" in weights or "\\" in weights or "." in weights) else weights


@dataclass(frozen=True)
class DatasetSpec:
    """A folder with two modality sub-folders (paired as in ``mlfuse fuse --root``), optionally
    restricted to some pair names."""

    name: str
    root: Path
    subdirs: tuple[str, str] | None = None
    names: tuple[str, ...] | None = None
    display: str | None = None  # the root as the user wrote it (shown on the page)


@dataclass(frozen=True)
class FigureSpec:
    """A comparison figure: one pair of one dataset, optionally with a zoomed inset
    ``(x, y, w, h)`` in source pixels."""

    dataset: str
    pair: str | None = None  # None: the first pair of the dataset
    inset: tuple[int, int, int, int] | None = None


@dataclass
class BenchConfig:
    methods: list[MethodSpec]
    datasets: list[DatasetSpec]
    out: Path
    cache: Path | None = None  # None: <mlfuse cache>/bench
    profiles: list[str] = field(default_factory=lambda: ["cddfuse"])
    metrics: dict[str, list[str]] = field(default_factory=dict)  # profile -> subset
    slow: bool = True  # False: skip the slow metrics (FMI)
    weights_files: dict[str, Path] = field(default_factory=dict)  # release name -> local file
    figures: list[FigureSpec] | None = None  # None: the first pair of every dataset
    tile: int = 256  # figure tile height in pixels
    efficiency: bool = True
    size: tuple[int, int] = (480, 640)  # efficiency input size (H, W)
    # memory and time per megapixel: each network at these sizes, run as `--tile auto` would (untiled when
    # its estimate fits the tile budget, else in tiles that fit it), one forward each in a fresh process
    scaling_sizes: list[tuple[int, int]] = field(default_factory=list)
    tile_budget_mb: float | None = None  # the scaling runs' tile budget (None: mlfuse's default)
    repeats: int = 5
    isolate: bool = True  # efficiency: a fresh process per method (peak RSS per method)
    device: str = "auto"
    threads: int | None = None
    color: str = "ycbcr"
    precision: str = "fp32"
    title: str = "mlfuse bench"
    command: str | None = None  # the command that regenerates the page (shown on it)
    notes: list[str] = field(default_factory=list)


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise MLFuseError(f"size '{text}': expected HxW, e.g. 480x640")
    return int(m.group(1)), int(m.group(2))


def parse_inset(text: str) -> tuple[int, int, int, int]:
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) != 4 or not all(p.isdigit() for p in parts) or int(parts[2]) < 1 or int(parts[3]) < 1:
        raise MLFuseError(f"inset '{text}': expected X,Y,W,H in source pixels, e.g. 100,80,64,48")
    x, y, w, h = (int(p) for p in parts)
    return x, y, w, h


def parse_figure(text: str) -> FigureSpec:
    """``DATASET[:PAIR][@X,Y,W,H]``."""
    spec, _, inset = text.partition("@")
    dataset, _, pair = spec.partition(":")
    if not dataset:
        raise MLFuseError(f"figure '{text}': expected DATASET[:PAIR][@X,Y,W,H]")
    return FigureSpec(dataset, pair or None, parse_inset(inset) if inset else None)


def parse_subdirs(text: str) -> tuple[str, str]:
    names = [n.strip() for n in text.replace("/", ",").split(",")]
    if len(names) != 2 or not all(names):
        raise MLFuseError(f"subdirs '{text}': expected STRUCTURAL,FUNCTIONAL, e.g. mri,ct")
    return names[0], names[1]


def _path(base: Path, value: str | Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


_DATASET_KEYS = {"name", "root", "subdirs", "names", "names_file", "names_column", "names_where", "display"}


def _dataset(entry: dict, base: Path) -> DatasetSpec:
    if not isinstance(entry, dict) or "name" not in entry or "root" not in entry:
        raise MLFuseError(f"dataset entry {entry!r}: needs 'name' and 'root'")
    unknown = sorted(set(entry) - _DATASET_KEYS)
    if unknown:
        raise MLFuseError(f"dataset '{entry['name']}': unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_DATASET_KEYS))})")
    names = None
    if "names" in entry:
        names = tuple(Path(str(n)).stem for n in entry["names"])
    elif "names_file" in entry:
        names = read_names(_path(base, entry["names_file"]), entry.get("names_column"), entry.get("names_where"))
    subdirs = entry.get("subdirs")
    if isinstance(subdirs, str):
        subdirs = parse_subdirs(subdirs)
    elif subdirs is not None:
        subdirs = tuple(subdirs)
    root = _path(base, entry["root"])
    return DatasetSpec(str(entry["name"]), root, subdirs, names, entry.get("display") or _relative(root))


def _relative(path: Path) -> str:
    """``path`` as seen from the working directory (how the page shows a config's dataset roots)."""
    try:
        return os.path.relpath(path.resolve(), Path.cwd())
    except ValueError:  # another drive on Windows
        return str(path)


def _figure(entry: str | dict) -> FigureSpec:
    if isinstance(entry, str):
        return parse_figure(entry)
    if not isinstance(entry, dict) or "dataset" not in entry or set(entry) - {"dataset", "pair", "inset"}:
        raise MLFuseError(f"figure entry {entry!r}: a string DATASET[:PAIR][@X,Y,W,H] or a table with "
                          "'dataset' and optional 'pair', 'inset' = [x, y, w, h]")
    inset = entry.get("inset")
    return FigureSpec(str(entry["dataset"]), entry.get("pair"),
                      parse_inset(",".join(map(str, inset))) if inset is not None else None)


def _method(entry: str | dict, base: Path) -> MethodSpec:
    if isinstance(entry, str):
        spec = MethodSpec.parse(entry)
    elif not isinstance(entry, dict) or "spec" not in entry:
        raise MLFuseError(f"method entry {entry!r}: a string MODEL[:WEIGHTS] or a table with 'spec'")
    else:
        spec = MethodSpec.parse(entry["spec"], entry.get("kwargs"))
        if "label" in entry:
            spec = MethodSpec(str(entry["label"]), spec.model, spec.weights, spec.kwargs)
    if names_weights_file(spec, base):  # a checkpoint file, like every other path of the file: from its folder
        spec = MethodSpec(spec.label, spec.model, os.path.normpath(_path(base, spec.weights)), spec.kwargs)
    return spec


def names_weights_file(spec: MethodSpec, base: Path) -> bool:
    """Whether a config's method names a checkpoint file (read from the config's folder ``base``) rather than
    ``default``, a release of its model (full or short name) or a release installed under another name: a
    path with a folder in it, or a bare name that is a file in ``base``."""
    w = spec.weights
    card = get_card(spec.model)
    if w == "default" or card.release_named(w):
        return False
    return "/" in w or "\\" in w or Path(w).is_absolute() or (base / w).is_file()


_KEYS = {"methods", "datasets", "out", "cache", "profiles", "profile", "metrics", "slow", "weights_files",
         "figures", "tile", "efficiency", "size", "repeats", "isolate", "device", "threads", "color",
         "precision", "title", "command", "notes", "scaling_sizes", "tile_budget"}


def load_config(path: str | Path) -> BenchConfig:
    """Read a TOML (``.toml``) or JSON file; relative paths are relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise MLFuseError(f"{path}: no such config file")
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
        else:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MLFuseError(f"{path}: not a valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} "
                          f"config ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise MLFuseError(f"{path}: the config must be a table/object at the top level")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise MLFuseError(f"{path}: unknown config key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    base = path.resolve().parent
    profiles = doc.get("profiles", doc.get("profile", ["cddfuse"]))
    cfg = BenchConfig(
        methods=[_method(m, base) for m in doc.get("methods", [])],
        datasets=[_dataset(d, base) for d in doc.get("datasets", [])],
        out=_path(base, doc.get("out", "bench")),
        cache=_path(base, doc["cache"]) if "cache" in doc else None,
        profiles=[profiles] if isinstance(profiles, str) else list(profiles),
        metrics={k: list(v) for k, v in doc.get("metrics", {}).items()},
        slow=bool(doc.get("slow", True)),
        weights_files={k: _path(base, v) for k, v in doc.get("weights_files", {}).items()},
        figures=None if "figures" not in doc else [_figure(f) for f in doc["figures"]],
        tile=int(doc.get("tile", 256)),
        efficiency=bool(doc.get("efficiency", True)),
        size=parse_size(doc.get("size", "480x640")),
        scaling_sizes=[parse_size(s) for s in doc.get("scaling_sizes", [])],
        tile_budget_mb=float(doc["tile_budget"]) if doc.get("tile_budget") is not None else None,
        repeats=int(doc.get("repeats", 5)),
        isolate=bool(doc.get("isolate", True)),
        device=str(doc.get("device", "auto")),
        threads=int(doc["threads"]) if doc.get("threads") is not None else None,
        color=str(doc.get("color", "ycbcr")),
        precision=str(doc.get("precision", "fp32")),
        title=str(doc.get("title", "mlfuse bench")),
        command=doc.get("command"),
        notes=[str(n) for n in doc.get("notes", [])],
    )
    return cfg


def check_config(cfg: BenchConfig) -> None:
    """Refuse an unusable configuration before any work (one line each)."""
    if not cfg.methods:
        raise MLFuseError("no methods to bench (give --method or 'methods' in the config)")
    if not cfg.datasets:
        raise MLFuseError("no datasets to bench (give --dataset NAME=ROOT or 'datasets' in the config)")
    for kind, items in (("method label", [m.label for m in cfg.methods]), ("dataset", [d.name for d in cfg.datasets])):
        dup = sorted({x for x in items if items.count(x) > 1})
        if dup:
            raise MLFuseError(f"{kind} given twice: {', '.join(dup)} (labels must be unique; use LABEL=SPEC)")
    from mlfuse.metrics.profiles import get_profile

    for name in cfg.profiles:
        prof = get_profile(name)
        for m in cfg.metrics.get(name, []):
            prof.metric(m)
    if cfg.repeats < 1:
        raise MLFuseError(f"repeats must be >= 1, got {cfg.repeats}")
    from mlfuse.inference.fuse import FuseOptions

    FuseOptions(color=cfg.color, precision=cfg.precision)  # a bad colour or precision: one line, up front
    if cfg.tile_budget_mb is not None and not (math.isfinite(cfg.tile_budget_mb) and cfg.tile_budget_mb > 0):
        raise MLFuseError(f"tile_budget must be a positive number of megabytes, got {cfg.tile_budget_mb}")
    if cfg.tile < 16:
        raise MLFuseError(f"tile must be >= 16 pixels, got {cfg.tile}")
    known = {d.name for d in cfg.datasets}
    for fig in cfg.figures or []:
        if fig.dataset not in known:
            raise MLFuseError(f"figure for unknown dataset '{fig.dataset}' (datasets: {', '.join(sorted(known))})")
