"""Shared base of the classical (parameter-free) fusion methods and the filters they use.

Every classical method is a :class:`ClassicalFusion` module: no weights, any input size (down to
1 x 1), computed in float64 so box/guided filters built on cumulative sums stay exact to ~1e-12.
The filters reproduce MATLAB's border conventions (``'replicate'``, ``'symmetric'``) by index
padding, which, unlike ``torch.nn.functional.pad(mode="reflect")``, works for pads wider than the
image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.models.base import FusionModel

PAD_MODES = ("replicate", "symmetric", "zero")


class ClassicalFusion(FusionModel):
    """A parameter-free method: subclasses implement :meth:`fuse_tensors` on float64 B x 1 x H x W.

    ``flops_counted = False``: torch's FLOP counter sees only matrix multiplications and
    convolutions, while these methods are elementwise, cumulative-sum or NumPy / PyWavelets work,
    so a count would be a meaningless near-zero; efficiency tables report none.
    """

    flops_counted = False

    def __init__(self) -> None:
        super().__init__()
        # The fusion pipeline takes the device from the module's first parameter: this empty one
        # (0 elements, not trained) carries it, so parameter counts stay 0.
        self.register_parameter("device_anchor", nn.Parameter(torch.empty(0), requires_grad=False))

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        raise NotImplementedError

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        """Raw fused image, same dtype as the inputs (B x 1 x H x W, inputs in [0, 1])."""
        out = self.fuse_tensors(structural.to(torch.float64), functional.to(torch.float64))
        return out.to(structural.dtype)

    def forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        return self.fusion_forward(structural, functional)


def max_abs(a: Tensor, b: Tensor) -> Tensor:
    """Coefficient-wise choose-max rule: the coefficient of larger magnitude (``a`` on ties)."""
    return torch.where(b.abs() > a.abs(), b, a)


def _pad_index(n: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    idx = torch.arange(-before, n + after, device=device)
    if mode == "replicate":
        return idx.clamp(0, n - 1)
    if mode == "symmetric":  # MATLAB 'symmetric': mirror including the edge sample, periodic in 2n
        idx = idx % (2 * n)
        return torch.where(idx >= n, 2 * n - 1 - idx, idx)
    raise ValueError(f"unknown padding mode '{mode}' (choose from {', '.join(PAD_MODES)})")


def pad2d(x: Tensor, ry: int, rx: int, mode: str = "replicate") -> Tensor:
    """Pad the last two dims by ``ry`` rows and ``rx`` columns each side; any pad width."""
    if mode == "zero":
        return F.pad(x, (rx, rx, ry, ry))
    h, w = x.shape[-2:]
    x = x.index_select(-2, _pad_index(h, ry, ry, mode, x.device))
    return x.index_select(-1, _pad_index(w, rx, rx, mode, x.device))


def separable_filter(x: Tensor, kernel: Tensor, mode: str = "replicate") -> Tensor:
    """Correlate B x 1 x H x W with the outer product ``kernel ⊗ kernel`` (odd length), borders
    extended by ``mode`` (MATLAB ``imfilter(x, k' * k, mode)``).

    Computed as one multiply-add per tap and direction on shifted views: for float64 this is much
    faster on CPU than ``conv2d``, which has no vectorised float64 kernel.
    """
    r = kernel.numel() // 2
    taps = kernel.tolist()
    h, w = x.shape[-2:]
    xp = pad2d(x, r, 0, mode)
    rows = xp[..., 0:h, :] * taps[0]
    for t in range(1, len(taps)):
        rows.add_(xp[..., t:t + h, :], alpha=taps[t])
    xp = pad2d(rows, 0, r, mode)
    out = xp[..., :, 0:w] * taps[0]
    for t in range(1, len(taps)):
        out.add_(xp[..., :, t:t + w], alpha=taps[t])
    return out


def gaussian_kernel(sigma: float, radius: int) -> Tensor:
    """1-D normalised Gaussian on ``-radius..radius`` (MATLAB ``fspecial('gaussian')`` is its outer
    product with itself)."""
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def gaussian_filter(x: Tensor, sigma: float, radius: int | None = None, mode: str = "replicate") -> Tensor:
    """Gaussian blur; radius defaults to ``round(3 sigma)`` (window ``2 round(3 sigma) + 1``)."""
    radius = math.floor(3 * sigma + 0.5) if radius is None else radius
    return separable_filter(x, gaussian_kernel(sigma, radius), mode)


def mean_filter(x: Tensor, size: int, mode: str = "replicate") -> Tensor:
    """Mean over a ``size`` x ``size`` window (odd), borders extended by ``mode`` (MATLAB
    ``imfilter(x, fspecial('average', size), mode)``)."""
    return separable_filter(x, torch.full((size,), 1.0 / size, dtype=torch.float64), mode)


def _box_sum_1d(x: Tensor, r: int, dim: int) -> Tensor:
    """Sums over ``i - r .. i + r`` clipped to ``0 .. n - 1`` along ``dim``: the cumulative sum
    c (c[k] = sum of the first k samples), extended by r zeros before and r copies of c[n] after,
    read at the two window ends."""
    n = x.shape[dim]
    zeros_shape = list(x.shape)
    zeros_shape[dim] = r + 1
    c = torch.cumsum(x, dim)
    tail_shape = list(x.shape)
    tail_shape[dim] = r
    c = torch.cat([x.new_zeros(zeros_shape), c, c.narrow(dim, n - 1, 1).expand(tail_shape)], dim)
    return c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)


def _window_counts(n: int, r: int, like: Tensor) -> Tensor:
    i = torch.arange(n, device=like.device)
    return ((i + r + 1).clamp(max=n) - (i - r).clamp(min=0)).to(like.dtype)


def box_mean(x: Tensor, r: int) -> Tensor:
    """Mean over the (2r+1)^2 window clipped to the image (He et al.'s ``boxfilter(x, r) / N``)."""
    h, w = x.shape[-2:]
    s = _box_sum_1d(_box_sum_1d(x, r, -2), r, -1)
    return s / (_window_counts(h, r, x)[:, None] * _window_counts(w, r, x)[None, :])


def guided_filter(guide: Tensor, src: Tensor, r: int, eps: float) -> Tensor:
    """Gray guided filter: He, Sun, Tang, "Guided image filtering", ECCV 2010 / IEEE TPAMI 35(6)
    2013, Algorithm 1: q = mean(a) I + mean(b), a = cov(I, p) / (var(I) + eps), b = mean(p) - a mean(I),
    means over (2r+1)^2 windows clipped at the borders."""
    mean_i = box_mean(guide, r)
    mean_p = box_mean(src, r)
    cov_ip = box_mean(guide * src, r) - mean_i * mean_p
    var_i = box_mean(guide * guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * guide + box_mean(b, r)
