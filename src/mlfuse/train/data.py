"""Training data from plain folders: dataset entries -> sorted pairs; seeded, resumable randomness.

A dataset entry is ``{"root": DIR, "dirs": [structural, functional] (optional), "names": SPEC
(optional), "repeat": N (optional)}``; pairing follows ``mlfuse fuse --root`` (same stem, natural
order). ``names`` restricts the entry to listed stems: a list, or ``{"csv": FILE, "column": COL,
"where": {COL: VALUE}}`` (e.g. the 180 DIDFuse training names of RoadScene). Entries are concatenated
in order, the way the MLFuse authors mix RoadScene and Harvard pairs into one training set.
``repeat`` (default 1) lists each of the entry's pairs N times per epoch, i.e. N crops per pair per
epoch, each its own seeded crop: it sets the mixture of the entries without changing their pairs
(the MLFuse authors' set was about half RoadScene, half medical; spec ``mlfuse.md`` section 8).

Every random choice of an item is a pure function of ``(seed, epoch, index)`` (:func:`item_rng`), so
a resumed run or a run split across DDP ranks draws exactly what an uninterrupted single process does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mlfuse.data.color import pil_luma
from mlfuse.data.io import read_image
from mlfuse.data.pairs import Pair, find_modality_dirs, pair_folders, read_names
from mlfuse.errors import InputError


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of item ``index`` in ``epoch``: independent of rank, worker and resume point."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


def _names_filter(spec: Any, origin: str) -> set[str] | None:
    if spec is None:
        return None
    if isinstance(spec, list | tuple):
        return {str(n) for n in spec}
    if isinstance(spec, Mapping) and "csv" in spec:
        return set(read_names(Path(spec["csv"]), spec.get("column", "name"), dict(spec.get("where", {}))))
    raise InputError(f"{origin}: 'names' must be a list of stems or {{csv=..., column=..., where={{...}}}}")


def collect_pairs(entries: Sequence[Mapping[str, Any]], *, what: str = "data") -> list[Pair]:
    """All pairs of the dataset entries, entry by entry, each in natural order.

    Unpaired files are an error here (a training set should be clean); a names filter that names a
    stem missing from the folders is an error too.
    """
    pairs: list[Pair] = []
    for i, entry in enumerate(entries):
        origin = f"{what}[{i}] ({entry.get('root')})"
        if "root" not in entry:
            raise InputError(f"{what}[{i}]: needs 'root'")
        repeat = entry_repeat(entry, origin)
        if repeat != 1 and what != "data":
            raise InputError(f"{origin}: 'repeat' weights training data only, not {what} pairs")
        dirs = entry.get("dirs")
        s_dir, f_dir = find_modality_dirs(entry["root"], tuple(dirs) if dirs else None)
        pairing = pair_folders(s_dir, f_dir)
        if pairing.problems():
            raise InputError(f"{origin}: {len(pairing.problems())} unpaired file(s), first: {pairing.problems()[0]}")
        wanted = _names_filter(entry.get("names"), origin)
        chosen = pairing.pairs if wanted is None else [p for p in pairing.pairs if p.name in wanted]
        if wanted is not None:
            missing = wanted - {p.name for p in pairing.pairs}
            if missing:
                raise InputError(f"{origin}: {len(missing)} listed name(s) not found, e.g. {sorted(missing)[0]}")
        if not chosen:
            raise InputError(f"{origin}: no pairs")
        pairs.extend(chosen * repeat)
    return pairs


def entry_repeat(entry: Mapping[str, Any], origin: str = "data") -> int:
    """The entry's ``repeat`` (crops per pair per epoch), an integer >= 1 (default 1)."""
    repeat = entry.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise InputError(f"{origin}: 'repeat' must be a whole number >= 1 (crops per pair per epoch), got {repeat!r}")
    return repeat


def load_gray_u8(path: Path) -> np.ndarray:
    """8-bit luma as PIL's 'L' conversion (ITU-R 601 weights), what the authors' loaders feed;
    16-bit images are scaled to 8 bits."""
    img = read_image(path)
    if img.is_color:
        return pil_luma(img.pixels)
    if img.maxval == 255:
        return img.pixels.astype(np.uint8)
    return np.rint(img.pixels.astype(np.float64) * (255.0 / img.maxval)).astype(np.uint8)


class PairCropDataset(Dataset):
    """Same random ``crop`` x ``crop`` window of both images (and of any extra per-pair maps).

    Items: ``{"structural", "functional", **extras}``, each 1 x crop x crop float32 in [0, 1].
    ``extras``: name -> function(structural_u8, functional_u8) -> H x W uint8 (e.g. the VSM of the
    functional image), computed once per pair and kept in memory. Images smaller than the crop are
    reflect-padded. Decoded images are cached per process (``cache=True``).
    """

    def __init__(self, pairs: Sequence[Pair], crop: int, seed: int, *, extras: Mapping[str, Any] | None = None,
                 cache: bool = True) -> None:
        if not pairs:
            raise InputError("training set is empty")
        self.pairs = list(pairs)
        self.crop = int(crop)
        self.seed = int(seed)
        self.epoch = 0
        self.extras = dict(extras or {})
        self.cache = cache
        self._store: dict[tuple[Path, Path], dict[str, np.ndarray]] = {}  # per pair (repeats share it)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def preload(self, *, quiet: bool = True) -> None:
        """Decode every pair and compute its extras now (kept when ``cache``), so that forked DataLoader
        workers inherit them instead of each recomputing them every epoch."""
        if not self.cache:
            return
        from tqdm import tqdm

        for i in tqdm(range(len(self.pairs)), desc="load training pairs", disable=quiet, leave=False):
            self._arrays(i)

    def __len__(self) -> int:
        return len(self.pairs)

    def _arrays(self, index: int) -> dict[str, np.ndarray]:
        p = self.pairs[index]
        key = (p.structural, p.functional)
        if key in self._store:
            return self._store[key]
        s, f = load_gray_u8(p.structural), load_gray_u8(p.functional)
        if s.shape != f.shape:
            raise InputError(f"{p.structural} and {p.functional}: sizes differ ({s.shape[1]}x{s.shape[0]} vs "
                             f"{f.shape[1]}x{f.shape[0]})")
        arrays = {"structural": s, "functional": f}
        for name, fn in self.extras.items():
            arrays[name] = fn(s, f)
        if self.cache:
            self._store[key] = arrays
        return arrays

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        arrays = self._arrays(index)
        h, w = arrays["structural"].shape
        c = self.crop
        ph, pw = max(0, c - h), max(0, c - w)
        rng = item_rng(self.seed, self.epoch, index)
        top = int(rng.integers(0, max(h, c) - c + 1))
        left = int(rng.integers(0, max(w, c) - c + 1))
        out = {}
        for name, a in arrays.items():
            if ph or pw:
                a = np.pad(a, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
            window = a[top:top + c, left:left + c].astype(np.float32) / np.float32(255)
            out[name] = torch.from_numpy(np.ascontiguousarray(window))[None]
        return out
