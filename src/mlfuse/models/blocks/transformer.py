"""Pre-norm transformer blocks of the CDDFuse family (common §2.5)."""

from __future__ import annotations

from torch import Tensor, nn

from mlfuse.inference import streaming
from mlfuse.models.blocks.attention import MDTA, AttentionBase
from mlfuse.models.blocks.feedforward import GDFN, LiteMlp
from mlfuse.models.blocks.norm import LayerNorm


class RestormerBlock(nn.Module):
    """Restormer ``TransformerBlock``: ``x = x + attn(LN1 x)``; ``x = x + ffn(LN2 x)``.

    ``attn`` is :class:`MDTA`; ``ffn`` defaults to :class:`GDFN` (CDDFuse) and can be any module
    mapping C -> C channels (SFDFuse passes its PixelShuffle feed-forward). Keys ``norm1``, ``attn``,
    ``norm2``, ``ffn``.
    """

    def __init__(self, dim: int, num_heads: int = 8, ffn_expansion_factor: float = 2.0, bias: bool = False,
                 bias_free_norm: bool = False, ffn: nn.Module | None = None) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, bias_free_norm)
        self.attn = MDTA(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, bias_free_norm)
        self.ffn = ffn if ffn is not None else GDFN(dim, ffn_expansion_factor, bias)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class LiteBlock(nn.Module):
    """CDDFuse ``BaseFeatureExtraction`` (Lite-transformer block): ``x = x + AttentionBase(LN1 x)``;
    ``x = x + LiteMlp(LN2 x)``. Keys ``norm1``, ``attn``, ``norm2``, ``mlp``; CDDFuse uses dim 64,
    8 heads, Mlp expansion 1. ``mlp_padding_mode`` is ``"reflect"`` in EMMA.
    """

    def __init__(self, dim: int, num_heads: int = 8, ffn_expansion_factor: float = 1.0, qkv_bias: bool = False,
                 mlp_padding_mode: str = "zeros") -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = AttentionBase(dim, num_heads, qkv_bias)
        self.norm2 = LayerNorm(dim)
        self.mlp = LiteMlp(dim, ffn_expansion_factor=ffn_expansion_factor, padding_mode=mlp_padding_mode)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
