"""Discrete-wavelet-transform fusion (PyWavelets).

Li, Manjunath, Mitra, "Multisensor image fusion using the wavelet transform", Graphical Models and
Image Processing 57(3) 1995: decompose both sources with a 2-D DWT, fuse coefficient by
coefficient, invert. Rule here: the detail coefficient of larger magnitude (Li et al.'s
"choose-max", without their area-based activity and consistency check), approximation averaged.

Any size: ``mode='symmetric'`` boundary extension, as many levels as PyWavelets allows for the
image (``dwt_max_level``, 0 for tiny images: then the result is the average), output cropped back
to the input size. The transform is perfectly reconstructing, so identical sources come back.
"""

from __future__ import annotations

import numpy as np
import pywt
import torch
from torch import Tensor

from mlfuse.models.classical.base import ClassicalFusion


def dwt_fuse(structural: np.ndarray, functional: np.ndarray, wavelet: str = "db2", levels: int = 3,
             mode: str = "symmetric") -> np.ndarray:
    """Fuse two float64 H x W arrays in the wavelet domain (see the module docstring)."""
    h, w = structural.shape
    wav = pywt.Wavelet(wavelet)
    level = min(levels, pywt.dwt_max_level(min(h, w), wav.dec_len))
    cs = pywt.wavedec2(structural, wav, mode=mode, level=level)
    cf = pywt.wavedec2(functional, wav, mode=mode, level=level)
    fused = [(cs[0] + cf[0]) * 0.5]
    for ds, df in zip(cs[1:], cf[1:], strict=True):
        fused.append(tuple(np.where(np.abs(b) > np.abs(a), b, a) for a, b in zip(ds, df, strict=True)))
    return pywt.waverec2(fused, wav, mode=mode)[:h, :w]


class DWTFusion(ClassicalFusion):
    """DWT fusion: ``wavelet`` (default ``db2``), ``levels`` (default 3), max-abs details, mean approximation."""

    onnx_unsupported = "its wavelet transform runs in PyWavelets (NumPy), outside the PyTorch graph an exporter traces"

    def __init__(self, wavelet: str = "db2", levels: int = 3, mode: str = "symmetric") -> None:
        super().__init__()
        pywt.Wavelet(wavelet)  # unknown names fail here, not on the first image
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        self.wavelet, self.levels, self.mode = wavelet, int(levels), mode

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        s = structural.detach().cpu().numpy()
        f = functional.detach().cpu().numpy()
        out = np.stack([dwt_fuse(s[i, 0], f[i, 0], self.wavelet, self.levels, self.mode)
                        for i in range(s.shape[0])])[:, None]
        return torch.from_numpy(np.ascontiguousarray(out)).to(structural)

    def extra_repr(self) -> str:
        return f"wavelet={self.wavelet!r}, levels={self.levels}, mode={self.mode!r}"
