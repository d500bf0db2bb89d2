"""Guided filtering fusion (GFF).

Li, Kang, Hu, "Image fusion with guided filtering", IEEE Transactions on Image Processing 22(7)
2013, 2864-2875, section III, with the authors' released parameters and border conventions:

1. two-scale decomposition: base B_n = I_n * Z (31 x 31 mean filter, replicated borders), detail
   D_n = I_n - B_n (eq. 1-2);
2. saliency S_n = |I_n * L| * g (3 x 3 Laplacian, then an 11 x 11 Gaussian with sigma 5; eq. 3);
3. initial weights P_n = 1 where S_n is the largest (the first source on ties, as MATLAB's ``max``);
4. weights refined by guided filtering with the source as guide: W^B = G_{r1,eps1}(P_n, I_n),
   W^D = G_{r2,eps2}(P_n, I_n), r1 = 45, eps1 = 0.3, r2 = 7, eps2 = 1e-6 (eq. 5-6); clipped to
   [0, 1] and quantised to 1/255 as the authors' code does, then normalised to sum to 1;
5. F = sum_n W^B_n B_n + W^D_n D_n (eq. 7-8).

Identical sources give P = (1, 0), weights (1, 0), hence F = B + D = I.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mlfuse.models.classical.base import ClassicalFusion, gaussian_filter, guided_filter, mean_filter, pad2d

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)


def _weight(guide: Tensor, p: Tensor, r: int, eps: float) -> Tensor:
    w = guided_filter(guide, p, r, eps).clamp(0.0, 1.0)
    return torch.floor(w * 255.0 + 0.5) / 255.0 + 1e-12  # the authors' uint8(W * 255) / 255 + 1e-12


class GuidedFilterFusion(ClassicalFusion):
    """GFF (Li, Kang, Hu, TIP 2013); parameters default to the paper's r1=45, eps1=0.3, r2=7, eps2=1e-6."""

    onnx_unsupported = ("its guided filters run in float64 (exact cumulative sums) and onnxruntime has no float64 "
                        "convolution")

    def __init__(self, r1: int = 45, eps1: float = 0.3, r2: int = 7, eps2: float = 1e-6, base_size: int = 31) -> None:
        super().__init__()
        if base_size < 1 or base_size % 2 == 0:
            raise ValueError(f"base_size must be odd and >= 1, got {base_size}")
        self.r1, self.eps1, self.r2, self.eps2, self.base_size = int(r1), float(eps1), int(r2), float(eps2), base_size

    def saliency(self, x: Tensor) -> Tensor:
        """|Laplacian| smoothed by an 11 x 11, sigma 5 Gaussian (replicated borders)."""
        lap = F.conv2d(pad2d(x, 1, 1, "replicate"), _LAPLACIAN.to(x).view(1, 1, 3, 3)).abs()
        return gaussian_filter(lap, sigma=5.0, radius=5, mode="replicate")

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        p_s = (self.saliency(structural) >= self.saliency(functional)).to(structural)
        p_f = 1.0 - p_s
        wb = [_weight(structural, p_s, self.r1, self.eps1), _weight(functional, p_f, self.r1, self.eps1)]
        wd = [_weight(structural, p_s, self.r2, self.eps2), _weight(functional, p_f, self.r2, self.eps2)]
        sum_b, sum_d = wb[0] + wb[1], wd[0] + wd[1]
        out = torch.zeros_like(structural)
        for img, b_w, d_w in zip((structural, functional), wb, wd, strict=True):
            base = mean_filter(img, self.base_size)
            out = out + (b_w / sum_b) * base + (d_w / sum_d) * (img - base)
        return out

    def extra_repr(self) -> str:
        return f"r1={self.r1}, eps1={self.eps1}, r2={self.r2}, eps2={self.eps2}, base_size={self.base_size}"
