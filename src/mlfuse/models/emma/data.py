"""Training data of EMMA's pseudo-sensing networks (``dataprocessing/MSRS_AiAv.py``; ``shared/specs/emma.md`` §3.1).

Each item pairs a patch of a *fused* image (the network input) with the same patch of one source image
(the target: infrared for A_i, visible for A_v). The authors fed the results of two other methods
(DIDFuse and AUIF) on MSRS train, which they did not publish (quirk 9). mlfuse makes the inputs itself:
every **generator** is either a registered method (``{"model": NAME, "weights": ..., "task": ...}``; a
classical method, MLFuse with mlfuse's weights, CDDFuse with a checkpoint, ...) fused in grey with its
own output rule, or a folder of existing fused results (``{"dir": PATH}``, files named by pair stem).
Every source pair contributes one input/target set per generator, generator-major as the authors' loop.

* Target: the authors' GRAY rule, ``round(0.299 R + 0.587 G + 0.114 B) / 255`` (OpenCV grey, rounded —
  not the CDDFuse Y channel); a grey file is value / 255.
* Patches: ``size`` x ``size`` windows on the stride grid anchored at the top-left, row-major; a pair is
  dropped if either patch is low-contrast (common §4 rule, all-zero patches kept unless ``reject_blank``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from mlfuse.data.gray import luma_float32
from mlfuse.data.io import read_image
from mlfuse.data.pairs import Pair
from mlfuse.errors import InputError
from mlfuse.progress import bar_disabled
from mlfuse.train.patches import grid, is_low_contrast

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def gray_rounded(path: str | Path) -> np.ndarray:
    """float32 H x W in [0, 1] by the authors' ``image_read_cv2(path, 'GRAY')`` (common §6.1):
    ``round(0.299 R + 0.587 G + 0.114 B)`` (half to even) / 255 for colour, value / max for grey."""
    img = read_image(path)
    a = img.pixels.astype(np.float32)
    if img.is_color:
        a = np.round(luma_float32(a, "rgb"))  # the "cv2" convention of mlfuse.data.gray, on any bit depth
    return (a / np.float32(img.maxval)).astype(np.float32)


#: the keys of a generator spec that fuses with a registered method
GENERATOR_KEYS = frozenset({"model", "weights", "task", "output_rule"})


def generator_name(spec: Mapping[str, Any]) -> str:
    """A short label of a generator spec (for logs and error messages)."""
    return f"dir:{spec['dir']}" if "dir" in spec else f"model:{spec.get('model')}"


def fused_images(spec: Mapping[str, Any], pairs: Sequence[Pair], device: str = "auto",
                 quiet: bool = True) -> list[np.ndarray]:
    """The generator's grey fused image (float32 in [0, 1]) of every pair, in order."""
    if "dir" in spec:
        folder = Path(spec["dir"])
        out = []
        for p in pairs:
            found = [folder / f"{p.name}{ext}" for ext in IMAGE_EXTS if (folder / f"{p.name}{ext}").is_file()]
            if not found:
                raise InputError(f"generator {folder}: no fused image for pair '{p.name}'")
            out.append(gray_rounded(found[0]))
        return out
    if "model" not in spec:
        raise InputError(f"generator {dict(spec)!r}: give 'model' (a registered method) or 'dir' (fused results)")
    unknown = sorted(set(spec) - GENERATOR_KEYS)
    if unknown:
        hint = " ('output' is now 'output_rule')" if "output" in unknown else ""
        raise InputError(f"generator {dict(spec)!r}: unknown key(s) {', '.join(unknown)}{hint} "
                         f"(known: {', '.join(sorted(GENERATOR_KEYS))})")
    from mlfuse.models.registry import create_model, get_card
    from mlfuse.runtime import resolve_device

    kwargs = {"task": spec["task"]} if spec.get("task") else {}
    weights = spec.get("weights", "default")
    if not get_card(spec["model"]).needs_weights:
        weights = None
    model = create_model(spec["model"], weights=weights, device=resolve_device(device), **kwargs)
    out = []
    for p in tqdm(pairs, desc=f"fuse ({spec['model']})", unit="pair", disable=bar_disabled(quiet)):
        fused = model.fuse(p.structural, p.functional, color="gray", output_rule=spec.get("output_rule"))
        out.append(fused.astype(np.float32) / np.float32(255))
    return out


class PseudoSensingPatches(Dataset):
    """Kept (fused patch, source patch) pairs for A_i (``target="ir"``) or A_v (``target="vis"``).

    Items: ``{"input": 1 x s x s, "target": 1 x s x s, "index"}`` float32. Everything is decided at
    construction (no randomness); the trainer shuffles.
    """

    TARGETS = ("ir", "vis")

    def __init__(self, pairs: Sequence[Pair], generators: Sequence[Mapping[str, Any]], target: str,
                 size: int = 128, stride: int = 200, *, threshold: float = 0.1, reject_blank: bool = False,
                 device: str = "auto", quiet: bool = True) -> None:
        if target not in self.TARGETS:
            raise InputError(f"pseudo-sensing target '{target}': choose from {', '.join(self.TARGETS)}")
        if not pairs:
            raise InputError("training set is empty")
        if not generators:
            raise InputError("no generator of fused images: set 'generators' (a registered method or a folder)")
        self.size, self.stride = int(size), int(stride)
        self.patches: list[tuple[np.ndarray, np.ndarray]] = []
        self.candidates = 0
        targets = [gray_rounded(p.functional if target == "ir" else p.structural) for p in pairs]
        for spec in generators:
            for pair, fused, tgt in zip(pairs, fused_images(spec, pairs, device, quiet), targets, strict=True):
                if fused.shape != tgt.shape:
                    raise InputError(f"{generator_name(spec)}: fused '{pair.name}' is {fused.shape[1]}x"
                                     f"{fused.shape[0]}, its source {tgt.shape[1]}x{tgt.shape[0]}")
                for top in grid(tgt.shape[0], self.size, self.stride):
                    for left in grid(tgt.shape[1], self.size, self.stride):
                        self.candidates += 1
                        pi = fused[top:top + self.size, left:left + self.size]
                        pt = tgt[top:top + self.size, left:left + self.size]
                        if is_low_contrast(pi, threshold, reject_blank) or is_low_contrast(pt, threshold, reject_blank):
                            continue
                        self.patches.append((pi.copy(), pt.copy()))
        if not self.patches:
            raise InputError(f"no {self.size}x{self.size} pseudo-sensing patch passed the contrast filter "
                             f"({self.candidates} windows)")

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pi, pt = self.patches[index]
        return {"input": torch.from_numpy(pi)[None], "target": torch.from_numpy(pt)[None],
                "index": torch.tensor(index, dtype=torch.int64)}
