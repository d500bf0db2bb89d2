"""What the demo server knows and does, apart from HTTP: images, pairs, methods, and the job queue.

Everything the server writes goes under one scratch folder it owns (``root``); uploads are decoded
with :func:`mlfuse.data.io.read_image`, the reader ``mlfuse fuse`` uses, and fused with
:func:`mlfuse.inference.fuse.fuse_images`. One worker thread runs the jobs in arrival order, and one lock
(``compute``) makes sure that no two forwards, nor a forward and a metric computation, share the
CPU at once: the time shown for a method is its own.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
import queue
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from mlfuse.data.io import IMAGE_EXTENSIONS, Image, read_image, write_image
from mlfuse.data.pairs import FUNCTIONAL_DIR_NAMES, STRUCTURAL_DIR_NAMES, natural_key, pair_folders
from mlfuse.errors import InputError, MLFuseError

#: colour modes offered by the page (``mlfuse.data.color.COLOR_MODES``)
COLOR_CHOICES = ("ycbcr", "gray", "paper")
MAX_IMAGES = 200  # uploaded/selected images kept; older ones (and their files) are dropped
MAX_JOBS = 50  # finished jobs kept
MAX_MODELS = 4  # built models kept in memory
MAX_PAIRS_PER_SET = 1000
_SKIP_SET_PARTS = {"train", "val", "labels"}  # --data: only test pairs


class DemoError(MLFuseError):
    """A request the demo refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Stored:
    """One source image the page can use: its file (an upload kept in the scratch folder, or a bundled or
    ``--data`` file), decoded again with :func:`read_image` whenever a job needs its pixels, so memory
    holds only the images of the job that runs."""

    id: str
    name: str
    path: Path
    preview: Path
    size: tuple[int, int]  # (height, width)
    color: bool
    bits: int
    owned: Path | None = None  # the scratch folder to remove with it (uploads)

    def load(self) -> Image:
        try:
            image = read_image(self.path)
        except InputError as exc:
            raise DemoError(str(exc).replace(str(self.path), self.name)) from None
        return dataclasses.replace(image, source=self.name)

    def info(self) -> dict:
        h, w = self.size
        return {"id": self.id, "name": self.name, "width": w, "height": h, "color": self.color,
                "bits": self.bits, "url": f"/api/images/{self.id}.png"}


@dataclass
class MethodChoice:
    """One registered method as the page shows it: weight options, or why it is disabled."""

    name: str
    paper: str
    weights: dict[str, str | None]  # option id -> create_model weights argument
    labels: dict[str, str]  # option id -> label shown
    reason: str = ""

    def info(self) -> dict:
        return {"name": self.name, "paper": self.paper, "available": bool(self.weights), "reason": self.reason,
                "weights": [{"id": k, "label": self.labels[k]} for k in self.weights]}


@dataclass
class Job:
    """One Fuse request: the methods run one after another by the worker."""

    id: str
    structural: Stored
    functional: Stored
    methods: list[tuple[str, str]]  # (method, weights option id)
    color: str
    folder: Path
    state: str = "queued"  # queued | running | done
    current: str | None = None
    current_started: float = 0.0
    results: list[dict] = field(default_factory=list)
    fused: dict[str, Path] = field(default_factory=dict)  # method -> its result file
    metrics: dict[tuple[str, str, bool], dict[str, float]] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)


def find_data_sets(root: Path) -> list[tuple[str, Path, Path]]:
    """(label, structural dir, functional dir) for every folder under ``root`` (itself included, 4
    levels deep) that holds one structural and one functional sub-folder (``vi``/``ir``,
    ``mri``/``ct``, ... as ``mlfuse fuse --root``); train/val folders are skipped: the demo shows test pairs."""
    if not root.is_dir():
        raise MLFuseError(f"--data {root}: no such folder")
    found = []
    s_names, f_names = set(STRUCTURAL_DIR_NAMES), set(FUNCTIONAL_DIR_NAMES)

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                              key=lambda p: natural_key(p.name))
        except OSError:
            return
        s = [c for c in children if c.name.lower() in s_names]
        f = [c for c in children if c.name.lower() in f_names]
        if len(s) == 1 and len(f) == 1:
            label = folder.relative_to(root).as_posix() if folder != root else folder.name
            found.append((label, s[0], f[0]))
            return
        if depth < 4:
            for c in children:
                if c.name.lower() not in _SKIP_SET_PARTS:
                    walk(c, depth + 1)

    walk(root, 0)
    if not found:
        raise MLFuseError(f"--data {root}: no test pairs found (expected folders with two modality sub-folders, "
                          f"e.g. vi/ and ir/, or mri/ and ct/)")
    return found


def _preview(image: Image) -> np.ndarray:
    """8-bit pixels for the browser (16-bit scaled down; the pipeline itself keeps 16 bits)."""
    if image.maxval == 255:
        return image.pixels
    return np.rint(image.pixels.astype(np.float64) * (255.0 / image.maxval)).astype(np.uint8)


class DemoState:
    """The scratch folder, the images, the methods and the job worker of one demo server."""

    def __init__(self, root: Path, *, data: Path | None = None, weights: dict[str, str] | None = None,
                 max_upload_bytes: int = 20 * 2**20, max_pixels: int = 16 * 10**6, device: str = "auto") -> None:
        self.root = root
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.device_name = device
        self.compute = threading.Lock()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._images: collections.OrderedDict[str, Stored] = collections.OrderedDict()
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._models: collections.OrderedDict[tuple[str, str], object] = collections.OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stopping = False
        (root / "uploads").mkdir()
        (root / "results").mkdir()
        self.methods = self._method_choices(weights or {})
        self.pairs = self._pair_catalog(data)
        self._worker = threading.Thread(target=self._work, name="mlfuse-demo-worker", daemon=True)
        self._worker.start()

    # -- methods -----------------------------------------------------------------------------------

    @staticmethod
    def _method_choices(cli_weights: dict[str, str]) -> dict[str, MethodChoice]:
        from mlfuse.registry import get_card, list_models, resolve_weights
        from mlfuse.weights.store import release_state

        names = list_models()
        for name, path in cli_weights.items():
            if name not in names:
                raise MLFuseError(f"--weights {name}=...: unknown model '{name}' (available: {', '.join(names)})")
            if not Path(path).is_file():
                raise MLFuseError(f"--weights {name}={path}: no such file")
        out = {}
        for name in names:
            card = get_card(name)
            choice = MethodChoice(name, card.paper, {}, {})
            if not card.needs_weights:
                choice.weights["none"], choice.labels["none"] = None, "no weights needed"
                out[name] = choice
                continue
            if name in cli_weights:
                choice.weights["file"] = str(Path(cli_weights[name]).resolve())
                choice.labels["file"] = f"{Path(cli_weights[name]).name} (--weights)"
            for release in card.release_names:
                state = release_state(release)
                if state == "not fetched":
                    continue
                default = " (default)" if release == card.default_weights else ""
                choice.weights[release], choice.labels[release] = release, f"{release}{default} ({state})"
            if card.default_weights and card.default_weights not in card.release_names:
                try:
                    path = resolve_weights(card, "default")
                    choice.weights["default"], choice.labels["default"] = str(path), f"{path.name} (default)"
                except MLFuseError:
                    pass
            if not choice.weights:
                hint = f" or run `mlfuse weights fetch {card.release_names[0]}`" if card.releases else ""
                choice.reason = f"no weights: start the demo with --weights {name}=FILE{hint}"
            out[name] = choice
        return out

    def _model(self, name: str, option: str) -> tuple[object, float]:
        """The built model (cached) and the seconds it took to build now (0 when cached)."""
        from mlfuse.registry import create_model
        from mlfuse.runtime import resolve_device

        key = (name, option)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key], 0.0
        t0 = time.perf_counter()
        model = create_model(name, weights=self.methods[name].weights[option],
                             device=resolve_device(self.device_name))
        while len(self._models) >= MAX_MODELS:
            self._models.popitem(last=False)
        self._models[key] = model
        return model, time.perf_counter() - t0

    # -- images ------------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{next(self._ids)}-{os.urandom(4).hex()}"

    def _store(self, image: Image, name: str, path: Path, owned: Path | None = None) -> Stored:
        ident = self._new_id()
        preview = self.root / "uploads" / f"{ident}.png"
        write_image(_preview(image), preview)
        stored = Stored(ident, name, path, preview, image.size, image.is_color, 16 if image.maxval > 255 else 8,
                        owned)
        with self._lock:
            self._images[ident] = stored
            while len(self._images) > MAX_IMAGES:
                _, old = self._images.popitem(last=False)
                old.preview.unlink(missing_ok=True)
                if old.owned is not None:
                    shutil.rmtree(old.owned, ignore_errors=True)
        return stored

    def image(self, ident: str) -> Stored:
        with self._lock:
            if ident not in self._images:
                raise DemoError("that image is no longer on the server: choose it again", 404)
            return self._images[ident]

    def upload(self, name: str, body: bytes) -> Stored:
        """Decode uploaded bytes with ``mlfuse fuse``'s reader; errors name the user's file name."""
        name = os.path.basename(name.replace("\\", "/")) or "upload"
        suffix = Path(name).suffix.lower()
        folder = self.root / "uploads" / self._new_id()
        folder.mkdir()
        path = folder / f"source{suffix if suffix in IMAGE_EXTENSIONS else ''}"
        try:
            path.write_bytes(body)
            self.check_pixels(path, name)
            try:
                image = read_image(path)
            except InputError as exc:
                raise DemoError(str(exc).replace(str(path), name)) from None
            return self._store(image, name, path, owned=folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def check_pixels(self, path: Path, name: str) -> None:
        """Refuse an image above the pixel limit from its header, before decoding it."""
        limit = (f"this demo accepts up to {self.max_pixels / 1e6:g} megapixels; start it with --max-megapixels N "
                 "to allow more, or use `mlfuse fuse`, which tiles large images")
        try:
            with PILImage.open(path) as im:
                w, h = im.size
        except PILImage.DecompressionBombError as exc:  # so large that Pillow refuses even to open it
            raise DemoError(f"{name}: image too large ({str(exc).split('.')[0]}); {limit}", 413) from None
        except Exception:  # not an image: read_image below gives the one-line reason
            return
        if w * h > self.max_pixels:
            raise DemoError(f"{name}: {w}x{h} pixels ({w * h / 1e6:.1f} megapixels) is too large: {limit}", 413)

    # -- bundled and --data pairs ------------------------------------------------------------------

    def _pair_catalog(self, data: Path | None) -> dict[str, dict]:
        from mlfuse.data.sample import write_sample

        vis, ir = write_sample(self.root / "sample")
        catalog = {"sample": {"group": "bundled", "label": "sample: dusk street (mlfuse sample)",
                              "structural": vis, "functional": ir}}
        if data is not None:
            for k, (label, s_dir, f_dir) in enumerate(find_data_sets(Path(data))):
                for pair in pair_folders(s_dir, f_dir).pairs[:MAX_PAIRS_PER_SET]:
                    catalog[f"data{k}:{pair.name}"] = {"group": label, "label": pair.name,
                                                       "structural": pair.structural, "functional": pair.functional}
        return catalog

    def load_pair(self, key: str) -> tuple[Stored, Stored]:
        if key not in self.pairs:
            raise DemoError(f"unknown pair '{key}'", 404)
        entry = self.pairs[key]
        out = []
        for role in ("structural", "functional"):
            path = Path(entry[role])
            self.check_pixels(path, path.name)
            try:
                image = read_image(path)
            except InputError as exc:
                raise DemoError(str(exc)) from None
            out.append(self._store(image, path.name, path))
        return out[0], out[1]

    # -- jobs --------------------------------------------------------------------------------------

    def submit(self, structural: str, functional: str, methods: list, color: str) -> Job:
        s, f = self.image(structural), self.image(functional)
        if s.size != f.size:
            (sh, sw), (fh, fw) = s.size, f.size
            raise DemoError(f"size mismatch: {s.name} is {sw}x{sh} but {f.name} is {fw}x{fh} (W x H); "
                            "the two images of a pair must be registered and of the same size")
        if color not in COLOR_CHOICES:
            raise DemoError(f"unknown colour mode '{color}' (choose from {', '.join(COLOR_CHOICES)})")
        if not methods:
            raise DemoError("choose at least one method")
        chosen = []
        for item in methods:
            name = item.get("name") if isinstance(item, dict) else item
            option = item.get("weights") if isinstance(item, dict) else None
            if name not in self.methods:
                raise DemoError(f"unknown method '{name}' (available: {', '.join(self.methods)})")
            choice = self.methods[name]
            if not choice.weights:
                raise DemoError(f"{name}: {choice.reason}")
            option = option or next(iter(choice.weights))
            if option not in choice.weights:
                raise DemoError(f"{name}: unknown weights '{option}' (available: {', '.join(choice.weights)})")
            if any(m == name for m, _ in chosen):
                raise DemoError(f"{name} is chosen twice")
            chosen.append((name, option))
        ident = self._new_id()
        folder = self.root / "results" / ident
        folder.mkdir()
        job = Job(ident, s, f, chosen, color, folder)
        with self._lock:
            self._jobs[ident] = job
            done = [k for k, j in self._jobs.items() if j.state == "done"]
            for k in done[:max(0, len(self._jobs) - MAX_JOBS)]:
                shutil.rmtree(self._jobs.pop(k).folder, ignore_errors=True)
        self._queue.put(job)
        return job

    def job(self, ident: str) -> Job:
        with self._lock:
            if ident not in self._jobs:
                raise DemoError("no such job (the server was restarted, or it is too old)", 404)
            return self._jobs[ident]

    def status(self, job: Job) -> dict:
        with self._lock:
            ahead = sum(1 for j in self._jobs.values() if j.state != "done" and j.created < job.created)
            return {"id": job.id, "state": job.state, "queue_position": ahead if job.state == "queued" else 0,
                    "total": len(job.methods), "done": len(job.results), "current": job.current,
                    "current_elapsed_s": round(time.monotonic() - job.current_started, 2) if job.current else None,
                    "structural": job.structural.info(), "functional": job.functional.info(),
                    "color": job.color, "results": list(job.results)}

    def result_path(self, job: Job, method: str) -> Path:
        for r in job.results:
            if r["method"] == method and r.get("url"):
                return job.folder / f"{method}.png"
        raise DemoError(f"no result for '{method}' in this job", 404)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._stopping:
                return
            job.state = "running"
            try:
                sources = job.structural.load(), job.functional.load()
            except MLFuseError as exc:  # e.g. a --data file removed meanwhile
                job.results = [{"method": name, "error": str(exc)} for name, _ in job.methods]
                job.state = "done"
                continue
            for name, option in job.methods:
                if self._stopping:
                    break
                job.current, job.current_started = name, time.monotonic()
                job.results.append(self._run_one(job, name, option, *sources))
                job.current = None
            job.state = "done"

    def _run_one(self, job: Job, name: str, option: str, structural: Image, functional: Image) -> dict:
        from mlfuse.inference.fuse import FuseOptions, fuse_images

        entry: dict = {"method": name, "weights": self.methods[name].labels[option]}
        try:
            with self.compute:
                model, entry["load_s"] = self._model(name, option)
                t0 = time.perf_counter()
                fused = fuse_images(model, structural, functional, FuseOptions(color=job.color))
                entry["time_s"] = time.perf_counter() - t0
            path = write_image(fused, job.folder / f"{name}.png")
        except MLFuseError as exc:
            entry["error"] = str(exc)
            return entry
        except Exception as exc:  # one method failing must not stop the others
            traceback.print_exc(file=sys.stderr)
            entry["error"] = f"{name} failed: {type(exc).__name__}: {exc}".splitlines()[0]
            return entry
        job.fused[name] = path
        stem = Path(job.structural.name).stem
        entry.update(url=f"/api/jobs/{job.id}/{name}.png", download=f"{stem}_{name}.png")
        return entry

    def metrics(self, job: Job, profile: str, slow: bool) -> dict:
        """The profile's metrics for every finished result of ``job`` (cached), best value per metric."""
        from mlfuse.metrics import evaluate, get_profile

        prof = get_profile(profile)
        names = [m.name for m in prof.metrics if slow or not m.slow]
        rows, problems, sources = {}, [], None
        for name in [r["method"] for r in job.results if r["method"] in job.fused]:
            key = (name, profile, slow)
            if key not in job.metrics:
                try:
                    # the saved (lossless) result and the sources, decoded as `mlfuse eval` reads them
                    sources = sources or (job.functional.load().pixels, job.structural.load().pixels)
                    fused = read_image(job.fused[name]).pixels
                    with self.compute:
                        job.metrics[key] = evaluate(fused, *sources, prof, slow=slow)
                except MLFuseError as exc:
                    job.metrics[key] = {}
                    problems.append(f"{name}: {exc}")
            rows[name] = {m: _finite(job.metrics[key].get(m)) for m in names}
        best = {}
        for m in prof.metrics:
            vals = [(v, k) for k, row in rows.items() if (v := row.get(m.name)) is not None]
            if len(vals) > 1:
                top = max(v for v, _ in vals) if m.higher_is_better else min(v for v, _ in vals)
                best[m.name] = [k for v, k in vals if v == top]
        return {"profile": prof.name, "reference": prof.reference, "slow": slow,
                "metrics": [{"name": m.name, "higher_is_better": m.higher_is_better} for m in prof.metrics
                            if m.name in names],
                "skipped_slow": [m.name for m in prof.metrics if m.slow and not slow],
                "rows": rows, "best": best, "problems": problems,
                "times": {r["method"]: r.get("time_s") for r in job.results}}

    def close(self) -> None:
        """Stop the worker after the method it is running (queued work is dropped)."""
        self._stopping = True
        self._queue.put(None)
        self._worker.join(timeout=30)


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)
