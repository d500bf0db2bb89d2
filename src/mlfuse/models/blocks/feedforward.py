"""Gated feed-forward networks of the CDDFuse family (common §2.4)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class GDFN(nn.Module):
    """Restormer's gated-Dconv feed-forward (``FeedForward``; common §2.4).

    hidden h = int(C * expansion): conv1x1 C->2h (``project_in``), depthwise 3x3 on 2h (``dwconv``),
    ``GELU(x1) * x2`` with x1, x2 = chunk(2), conv1x1 h->C (``project_out``).
    """

    def __init__(self, dim: int, ffn_expansion_factor: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class LiteMlp(nn.Module):
    """CDDFuse's Lite-transformer ``Mlp`` (common §2.4).

    hidden h = int(in * expansion): conv1x1 in->2h (``project_in``); **grouped** 3x3 conv 2h->2h with
    groups = h (weight [2h, 2, 3, 3]: output group g mixes channels 2g, 2g+1) (``dwconv``);
    ``GELU(x1) * x2``; conv1x1 h->out (``project_out``). ``padding_mode`` of ``dwconv``: ``"zeros"``
    in CDDFuse/SFDFuse, ``"reflect"`` in EMMA; ``out_features`` defaults to ``in_features`` (EMMA sets it).
    """

    def __init__(self, in_features: int, hidden_features: int | None = None, ffn_expansion_factor: float = 1.0,
                 bias: bool = False, out_features: int | None = None, padding_mode: str = "zeros") -> None:
        super().__init__()
        hidden = hidden_features if hidden_features is not None else int(in_features * ffn_expansion_factor)
        self.project_in = nn.Conv2d(in_features, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, 1, 1, groups=hidden, bias=bias, padding_mode=padding_mode)
        self.project_out = nn.Conv2d(hidden, out_features or in_features, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)
