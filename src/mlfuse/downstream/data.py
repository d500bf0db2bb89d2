"""Downstream data sets read as published (spec ``downstream.md`` §2), with one-line label errors.

Layouts (found under ``--data ROOT``):

* **MSRS** and any split folder pair: ``ROOT/{train,test}/{vi,ir}/<name>.png`` (modality folders
  as ``mlfuse fuse --root`` recognises them), segmentation masks in ``{split}/Segmentation_labels/``
  (or ``masks/``), detection labels as YOLO text in ``{split}/labels/`` or in the published MSRS
  detection pack ``ROOT/labels/detection/<set>/{split}/`` (set ``fusion``, ``infrared`` or
  ``visible``).
* **M3FD**: ``ROOT/{Ir,Vis,Annotation}`` (any case; ``ir``/``vi`` too), Pascal VOC XML boxes; the
  split is the shipped seeded 8:1:1 file :data:`M3FD_SPLIT` unless one is given.
* **Flat folder pair**: ``ROOT/{vi,ir}`` plus ``labels/`` (YOLO) or ``masks/`` (PNG); the split is a
  file given by the user or a seeded 8:1:1 split of the names (:func:`split_names`).

Classes: ``ROOT/classes.txt`` (detection) and ``ROOT/seg_classes.txt`` (segmentation), one name a
line, else the published lists (MSRS's 9 segmentation classes, MSRS's 3 or M3FD's 6 detection
classes). Masks hold class indices; 255 is ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from mlfuse.data.io import read_image
from mlfuse.data.pairs import find_modality_dirs, list_images, natural_key
from mlfuse.downstream.metrics import Detections
from mlfuse.errors import InputError, MLFuseError

MSRS_SEG_CLASSES = ("unlabelled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")
MSRS_DET_CLASSES = ("person", "bicycle", "car")
#: TarDAL's loader order
M3FD_DET_CLASSES = ("People", "Car", "Bus", "Lamp", "Motorcycle", "Truck")
IGNORE_INDEX = 255
#: the shipped M3FD split (names of the 4,200 pairs, seeded 8:1:1), named in every result
M3FD_SPLIT = "m3fd_split_seed0.txt"
M3FD_NAMES = tuple(f"{i:05d}" for i in range(4200))
TASKS = ("seg", "det")


@dataclass
class Item:
    """One labelled pair: the two sources and the label file."""

    name: str
    visible: Path
    infrared: Path
    label: Path


@dataclass
class DownstreamData:
    """A data set ready for one task: train/test items, class names and how it was read."""

    task: str
    layout: str
    root: Path
    classes: tuple[str, ...]
    train: list[Item] = field(default_factory=list)
    test: list[Item] = field(default_factory=list)
    split: str = ""
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- label readers


def read_yolo(path: Path, width: int, height: int, num_classes: int, tolerance: float = 1e-3) -> Detections:
    """YOLO text (``class cx cy w h`` normalised, whitespace-separated, last newline optional) -> boxes
    in pixels. A class out of range, a bad line or a box outside the image raises one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read labels ({exc})") from None
    boxes, classes = [], []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 5:
                raise ValueError
            cls = int(fields[0])
            cx, cy, w, h = (float(f) for f in fields[1:])
        except ValueError:
            raise InputError(f"{path}:{n}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if not 0 <= cls < num_classes:
            raise InputError(f"{path}:{n}: class {cls} out of range 0..{num_classes - 1}")
        x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        if w <= 0 or h <= 0 or min(x0, y0) < -tolerance or max(x1, y1) > 1 + tolerance:
            raise InputError(f"{path}:{n}: box {cx:g} {cy:g} {w:g} {h:g} lies outside the image (normalised 0..1)")
        boxes.append([max(x0, 0) * width, max(y0, 0) * height, min(x1, 1) * width, min(y1, 1) * height])
        classes.append(cls)
    return Detections(np.array(boxes).reshape(-1, 4), classes)


def read_voc(path: Path, classes: tuple[str, ...], width: int, height: int) -> Detections:
    """Pascal VOC XML (M3FD ``Annotation/*.xml``): absolute pixel corners -> boxes; an unknown class
    name or a box outside the image raises one line."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise InputError(f"{path}: cannot read VOC annotation ({exc})") from None
    lower = {c.lower(): i for i, c in enumerate(classes)}
    boxes, cls = [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name.lower() not in lower:
            raise InputError(f"{path}: class '{name}' is not one of {', '.join(classes)}")
        bb = obj.find("bndbox")
        try:
            x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
        except (AttributeError, TypeError, ValueError):
            raise InputError(f"{path}: object '{name}' has no valid bndbox") from None
        if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0 or x1 > width + 1 or y1 > height + 1:
            raise InputError(f"{path}: box {x0:g},{y0:g},{x1:g},{y1:g} of '{name}' lies outside the "
                             f"{width}x{height} image")
        boxes.append([x0, y0, min(x1, width), min(y1, height)])
        cls.append(lower[name.lower()])
    return Detections(np.array(boxes).reshape(-1, 4), cls)


def read_mask(path: Path, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """A class-index PNG of the image's size (H, W); wrong size or an index >= ``num_classes`` (other
    than the ignore value 255) raises one line."""
    img = read_image(path)
    if img.is_color:
        raise InputError(f"{path}: mask must be a single-channel class-index image, got colour")
    m = img.pixels
    if m.shape != tuple(size):
        raise InputError(f"{path}: mask is {m.shape[1]}x{m.shape[0]} but the image is {size[1]}x{size[0]} (W x H)")
    bad = (m >= num_classes) & (m != IGNORE_INDEX)
    if bad.any():
        raise InputError(f"{path}: class index {int(m[bad].max())} out of range 0..{num_classes - 1} "
                         f"(255 = ignore)")
    return m.astype(np.int64)


def load_target(data: DownstreamData, item: Item, size: tuple[int, int]) -> np.ndarray | Detections:
    """The item's label for the data set's task, checked against the image size (H, W)."""
    h, w = size
    if data.task == "seg":
        return read_mask(item.label, size, len(data.classes))
    if item.label.suffix.lower() == ".xml":
        return read_voc(item.label, data.classes, w, h)
    return read_yolo(item.label, w, h, len(data.classes))


# --------------------------------------------------------------------------- splits


def split_names(names: list[str] | tuple[str, ...], seed: int = 0,
                fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """A seeded train/val/test split: a permutation of the naturally sorted names cut at 8:1:1 (at least
    one test name from two names on)."""
    names = sorted(set(names), key=natural_key)
    perm = np.random.default_rng(seed).permutation(len(names))
    n = len(names)
    n_test = max(1, round(fractions[2] * n)) if n >= 2 else 0  # small sets still get a test pair
    n_val = min(round(fractions[1] * n), max(0, n - n_test - 1))
    n_train = n - n_val - n_test
    pick = [names[i] for i in perm]
    return {"train": sorted(pick[:n_train], key=natural_key),
            "val": sorted(pick[n_train:n_train + n_val], key=natural_key),
            "test": sorted(pick[n_train + n_val:], key=natural_key)}


def format_split(split: dict[str, list[str]], header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    for part in ("train", "val", "test"):
        lines += [f"{part} {n}" for n in split[part]]
    return "\n".join(lines) + "\n"


def read_split(path: Path) -> dict[str, list[str]]:
    """A split file: ``<part> <name>`` a line (part = train, val or test), ``#`` comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read split file ({exc.strerror or exc})") from None
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        part, _, name = line.partition(" ")
        if part not in out or not name.strip():
            raise InputError(f"{path}:{n}: expected 'train|val|test NAME', got {line!r}")
        out[part].append(Path(name.strip()).stem)
    if not out["train"] or not out["test"]:
        raise InputError(f"{path}: the split needs train and test names")
    return out


def shipped_split(name: str = M3FD_SPLIT) -> tuple[dict[str, list[str]], str]:
    """The split file shipped in the package and its display name."""
    ref = resources.files("mlfuse.downstream") / "splits" / name
    with resources.as_file(ref) as p:
        return read_split(Path(p)), f"mlfuse/downstream/splits/{name}"


# --------------------------------------------------------------------------- layouts


def _child(root: Path, *names: str) -> Path | None:
    if not root.is_dir():
        return None
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for n in names:
        if n.lower() in children:
            return children[n.lower()]
    return None


def _classes(root: Path, task: str, default: tuple[str, ...]) -> tuple[str, ...]:
    candidates = ([root / "seg_classes.txt"] if task == "seg"
                  else [root / "classes.txt", root / "labels" / "detection" / "classes.txt"])
    for f in candidates:
        if f.is_file():
            names = []
            for line in f.read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if parts:  # "0 person" (the MSRS pack) or "person"
                    names.append(" ".join(parts[1:]) if len(parts) > 1 and parts[0].isdigit() else " ".join(parts))
            if names:
                return tuple(names)
    return default


def _items(vi_dir: Path, ir_dir: Path, label_dir: Path | None, suffix: str, names: list[str] | None,
           problems: list[str], what: str) -> list[Item]:
    vis, vdup = list_images(vi_dir)
    irs, idup = list_images(ir_dir)
    problems += list(vdup.values()) + list(idup.values())
    wanted = names if names is not None else sorted(set(vis) | set(irs), key=natural_key)
    out, missing = [], []
    for n in wanted:
        if n not in vis or n not in irs:
            missing.append(n)
            continue
        label = label_dir / f"{n}{suffix}" if label_dir is not None else None
        if label is None or not label.is_file():
            problems.append(f"{label or vi_dir / n}: no {what} label for pair '{n}'; pair left out")
            continue
        out.append(Item(n, vis[n], irs[n], label))
    if missing:
        problems.append(f"{vi_dir.parent}: {len(missing)} listed pair(s) without both images: "
                        f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    return out


def _m3fd_stem(name: str, present: set[str]) -> str:
    """A split name as this copy of M3FD spells it: ``00471`` is also found as ``M3FD_00471``."""
    if name in present:
        return name
    for alt in (f"M3FD_{name}", name.removeprefix("M3FD_")):
        if alt in present:
            return alt
    return name


def open_dataset(root: str | Path, task: str, *, split_file: str | Path | None = None,
                 label_set: str = "fusion", seed: int = 0) -> DownstreamData:
    """Find the layout under ``root`` and list the train/test items for ``task`` (``seg`` | ``det``)."""
    if task not in TASKS:
        raise MLFuseError(f"unknown task '{task}' (choose from {', '.join(TASKS)})")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    what = "mask" if task == "seg" else "box"
    problems: list[str] = []
    annotation = _child(root, "Annotation", "Annotations")
    train_dir, test_dir = _child(root, "train"), _child(root, "test")
    if annotation is not None and task == "det":  # M3FD
        vi, ir = _child(root, "Vis", "vi", "visible"), _child(root, "Ir", "ir", "infrared")
        if vi is None or ir is None:
            raise InputError(f"{root}: M3FD layout needs Vis/ and Ir/ beside Annotation/")
        if split_file is not None:
            split, split_name = read_split(Path(split_file)), str(split_file)
        else:
            split, split_name = shipped_split()
        data = DownstreamData(task, "m3fd", root, _classes(root, task, M3FD_DET_CLASSES), split=split_name)
        present = set(list_images(vi)[0])
        split = {k: [_m3fd_stem(n, present) for n in v] for k, v in split.items()}
        if not present & set(split["test"]):
            raise InputError(f"{vi}: none of the test names of split {split_name} is here (it lists names like "
                             f"{split['test'][0]}); give the split of this copy with --split FILE")
        data.train = _items(vi, ir, annotation, ".xml", split["train"], problems, what)
        data.test = _items(vi, ir, annotation, ".xml", split["test"], problems, what)
    elif train_dir is not None and test_dir is not None:  # MSRS and folder pairs split into train/test
        default = MSRS_SEG_CLASSES if task == "seg" else MSRS_DET_CLASSES
        data = DownstreamData(task, "split-folders", root, _classes(root, task, default),
                              split=f"{root.name}/train, {root.name}/test (as published)")
        for part, d in (("train", train_dir), ("test", test_dir)):
            vi, ir = find_modality_dirs(d)
            if task == "seg":
                labels = _child(d, "Segmentation_labels", "masks", "labels_seg")
                suffix = ".png"
            else:
                labels = _child(d, "labels")
                pack = root / "labels" / "detection" / label_set / part
                if labels is None and pack.is_dir():
                    labels = pack
                suffix = ".txt"
            if labels is None:
                raise InputError(f"{d}: no {what} labels (expected "
                                 + ("Segmentation_labels/ or masks/)" if task == "seg" else
                                    f"labels/ or {root}/labels/detection/{label_set}/{part}/)"))
            setattr(data, part, _items(vi, ir, labels, suffix, None, problems, what))
    else:  # a flat folder pair
        vi, ir = find_modality_dirs(root)
        labels = _child(root, "masks", "Segmentation_labels") if task == "seg" else _child(root, "labels")
        if labels is None:
            raise InputError(f"{root}: no {what} labels folder ({'masks/' if task == 'seg' else 'labels/'})")
        default = MSRS_SEG_CLASSES if task == "seg" else MSRS_DET_CLASSES
        all_names = sorted(set(list_images(vi)[0]) & set(list_images(ir)[0]), key=natural_key)
        if split_file is not None:
            split, split_name = read_split(Path(split_file)), str(split_file)
        else:
            split, split_name = split_names(all_names, seed), f"seeded 8:1:1 split of the names (seed {seed})"
        data = DownstreamData(task, "folder", root, _classes(root, task, default), split=split_name)
        suffix = ".png" if task == "seg" else ".txt"
        data.train = _items(vi, ir, labels, suffix, split["train"], problems, what)
        data.test = _items(vi, ir, labels, suffix, split["test"], problems, what)
    data.problems = problems
    if not data.test:
        raise InputError(f"{root}: no labelled test pairs found for '{task}'"
                         + (f" ({problems[0]})" if problems else ""))
    return data
