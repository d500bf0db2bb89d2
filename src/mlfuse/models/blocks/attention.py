"""Channel ("transposed") self-attention of Restormer (MDTA, common §2.2) and CDDFuse's Lite
attention (AttentionBase, common §2.3).

Both attend over channels, not pixels: for h heads of c' = C/h channels, the attention matrix is
c' x c' per head, so the cost is linear in H*W (Zamir et al., "Restormer", CVPR 2022, eq. 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.inference import streaming


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, C, H, W) -> (B, heads, C/heads, H*W), channel index = head * C/heads + j."""
    b, c, h, w = x.shape
    return x.reshape(b, heads, c // heads, h * w)


def l2_channel_attention(q: Tensor, k: Tensor, v: Tensor, temperature: Tensor, heads: int,
                         op: nn.Module | None = None) -> Tensor:
    """``softmax(normalize(q) normalize(k)^T * temperature) v`` per head, back to (B, C, H, W).

    q, k, v: (B, C, H, W); q and k are L2-normalised along H*W (``F.normalize``, eps 1e-12);
    ``temperature``: (heads, 1, 1). Softmax over the last axis. ``op``: the calling module, which
    lets a tiled pass compute the whole-image sums in streaming passes
    (:mod:`mlfuse.inference.streaming`); the untiled arithmetic is the authors'.
    """
    if op is not None and streaming.active():
        return streaming.streamed_channel_attention(op, q, k, v, temperature, heads)
    b, c, h, w = q.shape
    q = F.normalize(split_heads(q, heads), dim=-1)
    k = F.normalize(split_heads(k, heads), dim=-1)
    attn = (q @ k.transpose(-2, -1)) * temperature
    attn = attn.softmax(dim=-1)
    return (attn @ split_heads(v, heads)).reshape(b, c, h, w)


class MDTA(nn.Module):
    """Multi-Dconv-head transposed attention (Restormer ``Attention``; common §2.2).

    ``qkv = dw3x3(conv1x1 C->3C (x))`` (zero padding), chunk into q, k, v, channel attention per head,
    then ``project_out`` (conv1x1). Keys: ``temperature`` [heads,1,1], ``qkv``, ``qkv_dwconv``,
    ``project_out``. ``bias`` applies to all three convolutions (False in CDDFuse/SFDFuse/SMFNet).
    """

    STREAMING_OP = True

    def __init__(self, dim: int, num_heads: int = 8, bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, 1, 1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def qkv_maps(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The q, k, v maps (B, C, H, W) before normalisation (used by cross-attention variants)."""
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        return q, k, v

    def forward(self, x: Tensor) -> Tensor:
        if streaming.active():  # tiled: the qkv map computed once over the passes
            return self.project_out(streaming.streamed_qkv_attention(
                self, x, lambda t: self.qkv_dwconv(self.qkv(t)), self.temperature, self.num_heads))
        q, k, v = self.qkv_maps(x)
        return self.project_out(l2_channel_attention(q, k, v, self.temperature, self.num_heads, self))


class AttentionBase(nn.Module):
    """CDDFuse's Lite attention (common §2.3): MDTA with a **full** 3x3 conv 3C->3C as second qkv
    convolution (zero padding) and other names: ``scale`` [heads,1,1], ``qkv1`` (1x1), ``qkv2`` (3x3),
    ``proj`` (1x1). ``qkv2`` dominates the cost of CDDFuse, SFDFuse and SMFNet (331,776 weights at C=64).
    """

    STREAMING_OP = True

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv1 = nn.Conv2d(dim, dim * 3, 1, bias=qkv_bias)
        self.qkv2 = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, bias=qkv_bias)
        self.proj = nn.Conv2d(dim, dim, 1, bias=qkv_bias)

    def forward(self, x: Tensor) -> Tensor:
        if streaming.active():  # tiled: the qkv map computed once over the passes
            return self.proj(streaming.streamed_qkv_attention(self, x, lambda t: self.qkv2(self.qkv1(t)),
                                                              self.scale, self.num_heads))
        q, k, v = self.qkv2(self.qkv1(x)).chunk(3, dim=1)
        return self.proj(l2_channel_attention(q, k, v, self.scale, self.num_heads, self))
