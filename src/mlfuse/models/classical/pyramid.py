"""Laplacian-pyramid fusion.

Pyramid: Burt, Adelson, "The Laplacian pyramid as a compact image code", IEEE Trans. Communications
31(4) 1983 (5-tap generating kernel [1 4 6 4 1] / 16, REDUCE = blur + 2x subsample, EXPAND =
2x upsample + blur). Fusion rule: Burt, Adelson, "Merging images through pattern decomposition",
Proc. SPIE 575 (1985): per coefficient the detail of larger magnitude, the top (base) level averaged.

Any size: the blur is a normalised convolution (zero outside the image, divided by the kernel mass
inside it), so odd sizes, thin images and 1 x 1 need no padding rule; a REDUCE of n samples gives
ceil(n / 2). Reconstruction inverts the decomposition exactly (up to float64 rounding), so a pair
of identical images comes back unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlfuse.models.classical.base import ClassicalFusion, max_abs, separable_filter

_KERNEL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0


def _norm_blur(x: Tensor, mask: Tensor) -> Tensor:
    """Blur ``x`` (zero where ``mask`` is 0) with the separable kernel, normalised by the blurred mask."""
    return separable_filter(x, _KERNEL, "zero") / separable_filter(mask, _KERNEL, "zero")


def reduce(x: Tensor) -> Tensor:
    """Burt-Adelson REDUCE: blur, keep every second row and column (size ceil(n / 2))."""
    ones = x.new_ones((1, 1, *x.shape[-2:]))
    return _norm_blur(x, ones)[..., ::2, ::2]


def expand(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Burt-Adelson EXPAND to ``size``: samples placed on even positions, gaps interpolated."""
    up = x.new_zeros(x.shape[:-2] + size)
    up[..., ::2, ::2] = x
    mask = x.new_zeros((1, 1, *size))
    mask[..., ::2, ::2] = 1.0
    return _norm_blur(up, mask)


def laplacian_pyramid(x: Tensor, levels: int) -> list[Tensor]:
    """``levels`` detail layers (finest first) and the base (Gaussian top) last; fewer levels when
    the image cannot be halved that often."""
    out = []
    for _ in range(levels):
        if max(x.shape[-2:]) <= 1:
            break
        small = reduce(x)
        out.append(x - expand(small, tuple(x.shape[-2:])))
        x = small
    out.append(x)
    return out


def reconstruct(pyramid: list[Tensor]) -> Tensor:
    x = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        x = detail + expand(x, tuple(detail.shape[-2:]))
    return x


class LaplacianPyramidFusion(ClassicalFusion):
    """Laplacian pyramid fusion: max-abs details, averaged base; ``levels`` detail layers (default 4)."""

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        if levels < 0:
            raise ValueError(f"levels must be >= 0, got {levels}")
        self.levels = int(levels)

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        ps = laplacian_pyramid(structural, self.levels)
        pf = laplacian_pyramid(functional, self.levels)
        fused = [max_abs(s, f) for s, f in zip(ps[:-1], pf[:-1], strict=True)]
        fused.append((ps[-1] + pf[-1]) * 0.5)
        return reconstruct(fused)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
