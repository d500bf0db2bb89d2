"""Training patches of the CDDFuse family, cut on the fly from plain folders (no HDF5 step).

What the authors' ``dataprocessing.py`` does (``shared/specs/common-cddfuse-family.md`` §4):

* visible image -> float32 RGB / 255 -> ``Y = 0.299 R + 0.587 G + 0.114 B`` in float32 (not rounded);
  a grey visible image is its value / 255; infrared -> float32 / 255 (a colour infrared file uses the
  same Y formula);
* a fixed grid of ``size`` x ``size`` windows with ``stride`` in both directions anchored at the
  top-left (rows 0, stride, ... while the window fits; the same for columns), row-major;
* a pair of windows is kept only if neither is low-contrast: with p10, p90 the 10th/90th
  percentiles (numpy, linear), ``(p90 - p10) / p90 < 0.1`` is low contrast. An all-zero window gives
  0/0 = NaN, which compares false, so the authors **keep** it; ``reject_blank=True`` drops it.

There is no randomness: the patch list is a pure function of the pairs and the settings, so any
shuffling is the trainer's (seeded). Items are ``{"structural": VIS, "functional": IR, "index": i}``,
the images 1 x size x size float32 — the authors' ``(VIS, IR)`` order; the item index lets a recipe
seed per-step randomness (e.g. DropPath) reproducibly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mlfuse.data.gray import luma_float32
from mlfuse.data.io import read_image
from mlfuse.data.pairs import Pair
from mlfuse.errors import InputError
from mlfuse.progress import bar_disabled


def authors_gray(path: str | Path) -> np.ndarray:
    """float32 H x W in [0, 1] as the authors' data script: RGB -> ``0.299 R + 0.587 G + 0.114 B`` on
    the float32 /255 channels (in that summation order), grey -> value / max."""
    img = read_image(path)
    scale = np.float32(img.maxval)
    a = img.pixels.astype(np.float32) / scale
    if img.is_color:
        return luma_float32(a, "rgb")
    return a


def grid(length: int, size: int, stride: int) -> list[int]:
    """Window starts along one axis: 0, stride, 2 stride, ... while the window fits (none if it never does)."""
    return list(range(0, length - size + 1, stride))


def is_low_contrast(patch: np.ndarray, threshold: float = 0.1, reject_blank: bool = False) -> bool:
    """``(p90 - p10) / p90 < threshold`` (numpy linear percentiles). A patch with p90 = 0 gives NaN
    (0/0) or -inf: the authors' comparison keeps it, ``reject_blank`` calls it low-contrast."""
    p10, p90 = np.percentile(patch, 10), np.percentile(patch, 90)
    if p90 == 0:
        return bool(reject_blank)
    return bool((p90 - p10) / p90 < threshold)


@dataclass(frozen=True)
class PatchRef:
    pair: int
    top: int
    left: int


class PatchDataset(Dataset):
    """All kept ``size`` x ``size`` patch pairs of ``pairs`` (natural pair order, row-major windows).

    The patch list is found once at construction (every image is read once). ``cache=True`` keeps the
    kept patches in memory (128 KiB per pair of 128 x 128 float32 patches; about 0.85 GB for the whole
    MSRS training set); otherwise items re-read their two images.
    """

    def __init__(self, pairs: Sequence[Pair], size: int = 128, stride: int = 200, *, threshold: float = 0.1,
                 reject_blank: bool = False, cache: bool = True, quiet: bool = True) -> None:
        if not pairs:
            raise InputError("training set is empty")
        self.pairs = list(pairs)
        self.size, self.stride = int(size), int(stride)
        self.threshold, self.reject_blank = float(threshold), bool(reject_blank)
        self.cache = cache
        self.refs: list[PatchRef] = []
        self.candidates = 0
        self._patches: list[tuple[np.ndarray, np.ndarray]] = []
        for i, _ in enumerate(tqdm(self.pairs, desc="patches", unit="pair", disable=bar_disabled(quiet))):
            vis, ir = self._read(i)
            for top in grid(vis.shape[0], self.size, self.stride):
                for left in grid(vis.shape[1], self.size, self.stride):
                    self.candidates += 1
                    pv, pi = self._cut(vis, top, left), self._cut(ir, top, left)
                    if self._low(pi) or self._low(pv):
                        continue
                    self.refs.append(PatchRef(i, top, left))
                    if cache:
                        self._patches.append((pv.copy(), pi.copy()))
        if not self.refs:
            raise InputError(f"no {self.size}x{self.size} training patch passed the contrast filter "
                             f"(from {len(self.pairs)} pairs, {self.candidates} windows; images must be at "
                             f"least {self.size} pixels in both directions)")

    def _low(self, patch: np.ndarray) -> bool:
        return is_low_contrast(patch, self.threshold, self.reject_blank)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self.pairs[index]
        vis, ir = authors_gray(pair.structural), authors_gray(pair.functional)
        if vis.shape != ir.shape:
            raise InputError(f"{pair.structural} and {pair.functional}: sizes differ "
                             f"({vis.shape[1]}x{vis.shape[0]} vs {ir.shape[1]}x{ir.shape[0]})")
        return vis, ir

    def _cut(self, img: np.ndarray, top: int, left: int) -> np.ndarray:
        return img[top:top + self.size, left:left + self.size]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.cache:
            pv, pi = self._patches[index]
        else:
            ref = self.refs[index]
            vis, ir = self._read(ref.pair)
            pv, pi = self._cut(vis, ref.top, ref.left), self._cut(ir, ref.top, ref.left)
        return {"structural": torch.from_numpy(np.ascontiguousarray(pv))[None],
                "functional": torch.from_numpy(np.ascontiguousarray(pi))[None],
                "index": torch.tensor(index, dtype=torch.int64)}
