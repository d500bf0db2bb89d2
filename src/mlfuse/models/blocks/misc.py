"""Patch embedding and stochastic depth (common §2.7)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OverlapPatchEmbed(nn.Module):
    """Restormer's ``OverlapPatchEmbed``: one conv3x3 in->embed (key ``proj``; no bias in the family)."""

    def __init__(self, in_c: int = 1, embed_dim: int = 64, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, 1, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016; timm's ``drop_path``): identity in eval mode.

    In training, one ``torch.rand([B, 1, ..., 1])`` per call from the global torch RNG,
    ``mask = floor((1 - p) + u)``, output ``x / (1 - p) * mask``. The draw order is the call order,
    which is what SFDFuse's train-mode reference depends on.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
        return x.div(keep) * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
