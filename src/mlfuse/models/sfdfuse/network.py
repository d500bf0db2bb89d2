"""SFDFuse ("Spatial and Frequency Feature Decomposition for Visible and Infrared Image Fusion";
authors' code zxp771/SFDFuse at cdb349b, first upload 87a5829).

Written from ``shared/specs/sfdfuse.md`` section 1: CDDFuse (:mod:`mlfuse.models.cddfuse`) with a fixed
Haar-wavelet branch, MetaFormer ConvFormer blocks, detail-enhanced convolutions (DEConv, from DEA-Net)
inside the INN coupling nodes, cross-attention feature-interaction blocks (FIB) and a content-guided
attention fusion (CGAFusion, from DEA-Net) at the decoder input. The sub-networks are attributes named
after the authors' checkpoint keys (``DIDF_Encoder``, ``DIDF_Decoder_Phase``, ``BaseFuseLayer``,
``DetailFuseLayer``); modules that own weights but are never called (``reduce_channel`` and ``fusion2``
of the decoder) are constructed so that the authors' files load with ``strict=True``.

The published code does not run as is (spec "State of the published code"); this port computes what
it computes once those gaps are bridged without changing arithmetic, which is how the reference data
were made. Odd heights/widths lose their last row/column inside the network, as in the authors' code;
the mlfuse pipeline instead reflect-pads to even sizes and crops back (card ``size_multiple=2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.inference import streaming
from mlfuse.inference.tiling import TileSpec
from mlfuse.models.base import FusionModel
from mlfuse.models.blocks import (
    DetailFeatureExtraction,
    DropPath,
    InvertedResidualBlock,
    LayerNorm,
    LiteBlock,
    OverlapPatchEmbed,
    RestormerBlock,
)
from mlfuse.models.blocks.attention import MDTA, split_heads
from mlfuse.models.blocks.checkpoints import AuthorsLayoutMixin


def crop_even(x: Tensor) -> Tensor:
    """Drop the last row if H is odd and the last column if W is odd (the authors' encoder/decoder)."""
    h, w = x.shape[-2:]
    return x[..., : h - h % 2, : w - w % 2]


# --------------------------------------------------------------------------------------- feed-forwards
class FeedForwardOut(nn.Module):
    """``FeedForward_out`` ("GCNN"; spec §1.1): conv1x1 C->4C, PixelShuffle(2), x1, x2 = chunk(2),
    ``dw7x7(x1) * GELU(x2)``, PixelUnshuffle(2), conv1x1 2C->C. Keys ``project_in``, ``dwconv``, ``project_out``."""

    def __init__(self, dim: int = 64, ffn_expansion_factor: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden // 4, hidden // 4, 7, 1, 3, groups=hidden // 4, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = F.pixel_shuffle(self.project_in(x), 2).chunk(2, dim=1)
        x = self.dwconv(x1) * F.gelu(x2)
        return self.project_out(F.pixel_unshuffle(x, 2))


class FeedForwardDuals(nn.Module):
    """``FeedForward_Duals`` ("DsGFF"; spec §1.1): conv1x1 C->4C, PixelShuffle(2), x1, x2 = chunk(2),
    ``Mish(dw3x3_dilation2(x2)) * dw5x5(x1)``, PixelUnshuffle(2), conv1x1 2C->C.
    Keys ``project_in``, ``dwconv_5``, ``dwconv_dilated2_1``, ``project_out``."""

    def __init__(self, dim: int = 64, ffn_expansion_factor: float = 2.0, bias: bool = False) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        q = hidden // 4
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv_5 = nn.Conv2d(q, q, 5, 1, 2, groups=q, bias=bias)
        self.dwconv_dilated2_1 = nn.Conv2d(q, q, 3, 1, 2, dilation=2, groups=q, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = F.pixel_shuffle(self.project_in(x), 2).chunk(2, dim=1)
        x = F.mish(self.dwconv_dilated2_1(x2)) * self.dwconv_5(x1)
        return self.project_out(F.pixel_unshuffle(x, 2))


def restormer_block(dim: int = 64, heads: int = 8) -> nn.Module:
    """SFDFuse's Restormer TransformerBlock: MDTA + :class:`FeedForwardOut` (keys ``norm1, attn, norm2, ffn``)."""
    return RestormerBlock(dim, heads, ffn=FeedForwardOut(dim))


# --------------------------------------------------------------------------------------- ConvFormer
class StarReLU(nn.Module):
    """``s * ReLU(x)^2 + b`` with learnable scalars ``scale`` (init 1) and ``bias`` (init 0) (MetaFormer)."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale_value * torch.ones(1))
        self.bias = nn.Parameter(bias_value * torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.relu(x) ** 2 + self.bias


class SepConv(nn.Module):
    """MetaFormer separable-conv token mixer with an internal residual:
    ``pwconv2(dw7x7(StarReLU(pwconv1 y))) + y`` (spec §1.1)."""

    def __init__(self, dim: int = 64, expansion_ratio: float = 2.0, kernel_size: int = 7) -> None:
        super().__init__()
        med = int(expansion_ratio * dim)
        self.pwconv1 = nn.Conv2d(dim, med, 1, bias=False)
        self.act1 = StarReLU()
        self.dwconv = nn.Conv2d(med, med, kernel_size, padding=kernel_size // 2, groups=med, bias=False)
        self.act2 = nn.Identity()
        self.pwconv2 = nn.Conv2d(med, dim, 1, bias=False)

    def forward(self, y: Tensor) -> Tensor:
        return self.pwconv2(self.act2(self.dwconv(self.act1(self.pwconv1(y))))) + y


class MlpHead(nn.Module):
    """fc1 conv1x1 C->4C, SquaredReLU, channel LayerNorm(4C), (dropout 0), fc2 conv1x1 4C->C; no biases."""

    def __init__(self, dim: int = 64, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.norm = LayerNorm(hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.norm(F.relu(self.fc1(x)) ** 2))


class ConvFormer(nn.Module):
    """MetaFormer ConvFormer block (Yu et al., "MetaFormer Baselines for Vision", 2022) as SFDFuse uses it:
    ``x = x + DropPath(ls1 * SepConv(LN1 x))``; ``x = x + DropPath(ls2 * MlpHead(LN2 x))``, layer scales
    init 1e-5, one DropPath(0.1) module called twice (two RNG draws per forward in training)."""

    def __init__(self, dim: int = 64, drop_path: float = 0.1, layer_scale_init_value: float = 1e-5) -> None:
        super().__init__()
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.norm1 = LayerNorm(dim)
        self.token_mixer = SepConv(dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = LayerNorm(dim)
        self.mlp = MlpHead(dim)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        ls1 = self.layer_scale_1.unsqueeze(-1).unsqueeze(-1)
        ls2 = self.layer_scale_2.unsqueeze(-1).unsqueeze(-1)
        x = x + self.drop_path(ls1 * self.token_mixer(self.norm1(x)))
        return x + self.drop_path(ls2 * self.mlp(self.norm2(x)))


# --------------------------------------------------------------------------------------- DEConv
class _Wrapped(nn.Module):
    """Holds one conv as ``conv`` (the authors' ``Conv2d_cd/hd/vd/ad`` wrappers, keys ``conv.*``)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv


_ANGULAR_PERM = [3, 0, 1, 6, 4, 2, 7, 8, 5]


class DEConv(nn.Module):
    """Detail-enhanced convolution (Chen et al., DEA-Net, IEEE TIP 2024; spec §1.1): five parallel 3x3
    convolutions (central, horizontal, vertical, angular difference and vanilla), all with bias, merged
    into one kernel ``K1 + K2 + K3 + K4 + W5`` (bias ``b1 + ... + b5``, summed left to right) at every
    forward, then one zero-padded conv. Keys ``conv1_{1..4}.conv.*`` and ``conv1_5.*``; ``conv1_2`` and
    ``conv1_3`` hold Conv1d weights [C, C, 3]."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.conv1_1 = _Wrapped(nn.Conv2d(dim, dim, 3, padding=1, bias=True))
        self.conv1_2 = _Wrapped(nn.Conv1d(dim, dim, 3, padding=1, bias=True))
        self.conv1_3 = _Wrapped(nn.Conv1d(dim, dim, 3, padding=1, bias=True))
        self.conv1_4 = _Wrapped(nn.Conv2d(dim, dim, 3, padding=1, bias=True))
        self.conv1_5 = nn.Conv2d(dim, dim, 3, padding=1, bias=True)

    def merged(self) -> tuple[Tensor, Tensor]:
        """The merged 3x3 kernel [C, C, 3, 3] and bias [C]."""
        w1 = self.conv1_1.conv.weight
        co, ci = w1.shape[:2]
        w1 = w1.reshape(co, ci, 9)
        k1 = torch.cat([w1[:, :, :4], (w1[:, :, 4] - w1.sum(2)).unsqueeze(2), w1[:, :, 5:]], dim=2)
        v2 = self.conv1_2.conv.weight
        zero = torch.zeros_like(v2[:, :, :1])
        # horizontal: left column (t0, t3, t6) = v, right column (t2, t5, t8) = -v
        k2 = torch.stack([v2[:, :, 0], zero[:, :, 0], -v2[:, :, 0], v2[:, :, 1], zero[:, :, 0], -v2[:, :, 1],
                          v2[:, :, 2], zero[:, :, 0], -v2[:, :, 2]], dim=2)
        v3 = self.conv1_3.conv.weight
        # vertical: top row (t0, t1, t2) = v, bottom row (t6, t7, t8) = -v
        k3 = torch.cat([v3, torch.zeros_like(v3), -v3], dim=2)
        w4 = self.conv1_4.conv.weight.reshape(co, ci, 9)
        k4 = w4 - 1.0 * w4[:, :, _ANGULAR_PERM]
        shape = (co, ci, 3, 3)
        k = k1.reshape(shape) + k2.reshape(shape) + k3.reshape(shape) + k4.reshape(shape) + self.conv1_5.weight
        b = (self.conv1_1.conv.bias + self.conv1_2.conv.bias + self.conv1_3.conv.bias + self.conv1_4.conv.bias
             + self.conv1_5.bias)
        return k, b

    def forward(self, x: Tensor) -> Tensor:
        k, b = self.merged()
        return F.conv2d(x, k, b, stride=1, padding=1)


def deconv_bottleneck(channels: int = 32) -> nn.Module:
    """SFDFuse's InvertedResidualBlock 32->32, expansion 2, with a DEConv(64) as mixer (keys 0, 2.*, 4)."""
    return InvertedResidualBlock(channels, channels, 2, mixer=DEConv(channels * 2))


# --------------------------------------------------------------------------------------- Haar
class HaarWavelet(nn.Module):
    """``WTConv2d`` as SFDFuse uses it: a fixed one-level Haar (PyWavelets 'db1') analysis by a grouped
    stride-2 conv. ``wt_filter`` / ``iwt_filter`` [4C,1,2,2] are frozen parameters (entries
    +-float32(1/sqrt 2)^2 = +-0.49999997, order LL, LH, HL, HH per channel); ``iwt_filter`` is never used.
    Returns the sub-bands (LL, LH, HL, HH), each (B, C, H/2, W/2)."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        s = torch.tensor(2.0**-0.5, dtype=torch.float32)
        lo = torch.stack([s, s])
        hi = torch.stack([s, -s])  # PyWavelets db1 dec_hi reversed
        bank = torch.stack([lo[None] * lo[:, None], lo[None] * hi[:, None], hi[None] * lo[:, None],
                            hi[None] * hi[:, None]])  # (4, 2, 2): [row, col]
        bank = bank[:, None].repeat(channels, 1, 1, 1)
        self.wt_filter = nn.Parameter(bank.clone(), requires_grad=False)
        self.iwt_filter = nn.Parameter(bank.clone(), requires_grad=False)
        self.channels = channels

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, c, h, w = x.shape
        y = F.conv2d(x, self.wt_filter, stride=2, groups=c).reshape(b, c, 4, h // 2, w // 2)
        return y[:, :, 0], y[:, :, 1], y[:, :, 2], y[:, :, 3]


# --------------------------------------------------------------------------------------- FIB
class CrossAttention(MDTA):  # STREAMING_OP (inherited): one streaming.reduce per call
    """Two-way channel cross-attention (spec §1.1); :class:`MDTA`'s qkv / projection weights (and keys), shared
    by both inputs: ``out12 = softmax(q_b k_a^T T) v_a + q_b``, ``out21 = softmax(q_a k_b^T T) v_b + q_a``
    (q normalised), returns ``((P(out12) + P(out21)) + a) + b``."""

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv_maps(x)
        h = self.num_heads
        return F.normalize(split_heads(q, h), dim=-1), F.normalize(split_heads(k, h), dim=-1), split_heads(v, h)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if streaming.active():
            return self._streamed(a, b)
        n, c, h, w = a.shape
        q_a, k_a, v_a = self._qkv(a)
        q_b, k_b, v_b = self._qkv(b)
        out12 = ((q_b @ k_a.transpose(-2, -1)) * self.temperature).softmax(dim=-1) @ v_a + q_b
        out21 = ((q_a @ k_b.transpose(-2, -1)) * self.temperature).softmax(dim=-1) @ v_b + q_a
        p12 = self.project_out(out12.reshape(n, c, h, w))
        p21 = self.project_out(out21.reshape(n, c, h, w))
        return ((p12 + p21) + a) + b

    def _streamed(self, a: Tensor, b: Tensor) -> Tensor:
        """:meth:`forward` on a window of a tiled pass (:mod:`mlfuse.inference.streaming`): both attention
        matrices and the norms of q_a, q_b (also added to the outputs) from whole-image sums."""
        n, c, h, w = a.shape
        heads = self.num_heads
        q_a, k_a, v_a = self.qkv_maps(a)
        q_b, k_b, v_b = self.qkv_maps(b)

        def sums(qa: Tensor, ka: Tensor, qb: Tensor, kb: Tensor) -> tuple[Tensor, ...]:
            g_ba, nq_b, nk_a = streaming.attention_sums(qb, ka, heads)
            g_ab, nq_a, nk_b = streaming.attention_sums(qa, kb, heads)
            return g_ba, nq_b, nk_a, g_ab, nq_a, nk_b

        stats = streaming.reduce(self, sums, q_a, k_a, q_b, k_b)
        if stats is None:
            return streaming.poison(a)
        g_ba, nq_b, nk_a, g_ab, nq_a, nk_b = stats
        attn12 = streaming.attention_matrix((g_ba, nq_b, nk_a), self.temperature).to(a.dtype)
        attn21 = streaming.attention_matrix((g_ab, nq_a, nk_b), self.temperature).to(a.dtype)
        q_a = split_heads(q_a, heads) / streaming.norm_denominator(nq_a).to(a.dtype)[..., None]
        q_b = split_heads(q_b, heads) / streaming.norm_denominator(nq_b).to(a.dtype)[..., None]
        out12 = attn12 @ split_heads(v_a, heads) + q_b
        out21 = attn21 @ split_heads(v_b, heads) + q_a
        p12 = self.project_out(out12.reshape(n, c, h, w))
        p21 = self.project_out(out21.reshape(n, c, h, w))
        return ((p12 + p21) + a) + b


class FeatureInteractionBlock(nn.Module):
    """FIB (spec §1.1): ``z = CrossAttention(LN1 x, LN1 y)`` (no raw-input residual), ``z = z + ffn(LN2 z)``;
    ``ffn`` = :class:`FeedForwardOut` if ``init_fusion`` else :class:`FeedForwardDuals`.
    Keys ``norm1``, ``attention``, ``norm2``, ``ffn``."""

    def __init__(self, dim: int = 64, num_heads: int = 8, init_fusion: bool = True) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attention = CrossAttention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.ffn = FeedForwardOut(dim) if init_fusion else FeedForwardDuals(dim)

    @streaming.block
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        z = self.attention(self.norm1(x), self.norm1(y))
        return z + self.ffn(self.norm2(z))


# --------------------------------------------------------------------------------------- CGAFusion
class _SpatialAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sa = nn.Conv2d(2, 1, 7, padding=3, padding_mode="reflect", bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.sa(torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True)[0]], dim=1))


class _ChannelAttention(nn.Module):
    STREAMING_OP = True  # the global average pool: channel sums over all positions in a tiled pass

    def __init__(self, dim: int, reduction: int = 8) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(nn.Conv2d(dim, dim // reduction, 1, bias=True), nn.ReLU(inplace=True),
                                nn.Conv2d(dim // reduction, dim, 1, bias=True))

    def forward(self, x: Tensor) -> Tensor:
        if streaming.active():
            stats = streaming.reduce(self, lambda t: (t.sum((-2, -1)), t.new_full((1,), t.shape[-2] * t.shape[-1])), x)
            if stats is None:
                return streaming.poison(x[..., :1, :1])
            return self.ca((stats[0] / stats[1]).to(x.dtype)[..., None, None])
        return self.ca(self.gap(x))


class _PixelAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pa2 = nn.Conv2d(2 * dim, dim, 7, padding=3, padding_mode="reflect", groups=dim, bias=True)

    def forward(self, x: Tensor, p1: Tensor) -> Tensor:
        b, c, h, w = x.shape
        interleaved = torch.stack([x, p1], dim=2).reshape(b, 2 * c, h, w)  # channel 2k = x_k, 2k+1 = p1_k
        return torch.sigmoid(self.pa2(interleaved))


class CGAFusion(nn.Module):
    """Content-guided attention fusion (DEA-Net; spec §1.1) on ``X = cat(x, y)`` of ``in_channels``:
    spatial (7x7 reflect on [mean_C, max_C]) plus channel attention (no sigmoid), pixel attention
    (grouped 7x7 reflect on interleaved X / attention, sigmoid, then GELU — quirk 8),
    ``conv1x1(X * P2 + X)`` to ``out_channels``. Keys ``sa.sa``, ``ca.ca.{0,2}``, ``pa.pa2``, ``conv``.

    ``GLFusion`` (the decoder's unused ``fusion2``) has the same parameter set on 64 channels and
    is built as ``CGAFusion(64, 64)``; it is never called.
    """

    def __init__(self, in_channels: int = 128, out_channels: int = 64, reduction: int = 8) -> None:
        super().__init__()
        self.sa = _SpatialAttention()
        self.ca = _ChannelAttention(in_channels, reduction)
        self.pa = _PixelAttention(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)

    @streaming.block
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        xy = torch.cat([x, y], dim=1)
        p1 = self.sa(xy) + self.ca(xy)
        p2 = F.gelu(self.pa(xy, p1))
        return self.conv(xy * p2 + xy)


# --------------------------------------------------------------------------------------- encoder/decoder
class SFDEncoder(nn.Module):
    """``DIDF_Encoder`` (spec §1.2): returns (base, detail) after the Haar-guided interaction blocks."""

    def __init__(self, dim: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(1, dim)
        self.encoder_level1 = nn.Sequential(restormer_block(dim, heads), restormer_block(dim, heads),
                                            ConvFormer(dim), ConvFormer(dim))
        self.baseFeature = LiteBlock(dim, heads)
        self.FreFeature = HaarWavelet(dim)
        self.detailFeature = DetailFeatureExtraction(3, bottleneck=lambda: deconv_bottleneck(dim // 2), channels=dim)
        self.upsample1 = nn.Sequential(nn.ConvTranspose2d(dim * 3, dim, 2, 2, bias=True), nn.LeakyReLU())
        self.init_fusion_b = FeatureInteractionBlock(dim, heads, init_fusion=True)
        self.init_fusion_d = FeatureInteractionBlock(dim, heads, init_fusion=False)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor]:
        e = self.patch_embed(crop_even(img))
        ll, lh, hl, hh = self.FreFeature(e)
        lo = F.interpolate(ll, size=e.shape[-2:], mode="bilinear", align_corners=False)
        hi = self.upsample1(torch.cat([lh, hl, hh], dim=1))
        s = self.encoder_level1(e)
        base = self.init_fusion_b(self.baseFeature(s), lo)
        detail = self.init_fusion_d(self.detailFeature(s), hi)
        return base, detail


class SFDDecoder(nn.Module):
    """``DIDF_Decoder_Phase`` (spec §1.3): ``z = CGAFusion(base, detail)``, ``y = blocks(z) + z``,
    ``sigmoid(output(y) + img)``; returns (fused, z). ``reduce_channel`` and ``fusion2`` are unused."""

    def __init__(self, dim: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.reduce_channel = nn.Conv2d(dim * 2, dim, 1, bias=False)
        self.encoder_level2 = nn.Sequential(restormer_block(dim, heads), restormer_block(dim, heads),
                                            ConvFormer(dim), ConvFormer(dim))
        self.output = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, 1, 1, bias=False), nn.LeakyReLU(),
                                    nn.Conv2d(dim // 2, 1, 3, 1, 1, bias=False))
        self.sigmoid = nn.Sigmoid()
        self.fusion1 = CGAFusion(dim * 2, dim)
        self.fusion2 = CGAFusion(dim, dim)  # the authors' GLFusion: owns weights, never called

    def forward(self, img: Tensor, base: Tensor, detail: Tensor) -> tuple[Tensor, Tensor]:
        img = crop_even(img)
        z = self.fusion1(base, detail)
        y = self.encoder_level2(z) + z
        return self.sigmoid(self.output(y) + img), z


class SFDFuse(AuthorsLayoutMixin, FusionModel):
    """The whole SFDFuse network (2,327,950 parameters, 2,048 of them frozen Haar constants).

    ``forward(vis, ir)`` returns the raw fused image (one row/column smaller for odd sizes, as the
    authors'); ``forward(vis, ir, phase=1|2)`` the training intermediates of their ``train.py``.
    ``ir_detail``: which detail feature reconstructs IR in Phase I — ``"vis"`` (default, faithful: the
    authors' ``Dec(I, I_ll, V_d)``, almost certainly a typo but what trained the release) or ``"ir"``
    (the corrected ``Dec(I, I_ll, I_d)``).
    """

    TOP_LEVEL = ("DIDF_Encoder", "DIDF_Decoder_Phase", "BaseFuseLayer", "DetailFuseLayer")
    TASKS = ("ivf",)

    #: exact tiling (mlfuse.inference.tiling): receptive radius 44 (measured 36 by input gradients with the
    #: global ops made local; 43 counted: encoder 13 + Lite 2 + 3 DEConv INN nodes 6 + FIBs, CGAFusion's
    #: two 7x7 convs 6, decoder blocks 12, head 2), on the Haar stride-2 grid; channel attentions,
    #: cross attentions and CGAFusion's average pool (15 per forward) are whole-image sums, streamed in
    #: 9 passes (8 levels, then the output pass)
    TILE_SPEC = TileSpec(
        halo=44, align=2, streaming=True,
        global_ops=("channel / cross attention: Q K^T and |q|, |k| summed over all H*W positions",
                    "CGAFusion channel attention: global average pool"),
        # benchmarks/bench_memory.py (one thread): untiled 9485 B/px at 128x160; tiled windows as
        # CDDFuse's ratio (1.5x, fixed costs over fewer pixels)
        bytes_per_pixel=14336, untiled_bytes_per_pixel=10240,
    )

    def __init__(self, task: str = "ivf", ir_detail: str = "vis", dim: int = 64, heads: int = 8) -> None:
        super().__init__()
        if task not in self.TASKS:
            raise ValueError(f"SFDFuse task '{task}': it is an infrared-visible method only (task 'ivf')")
        if ir_detail not in ("vis", "ir"):
            raise ValueError(f"SFDFuse ir_detail '{ir_detail}': choose 'vis' (authors') or 'ir' (corrected)")
        self.task = task
        self.ir_detail = ir_detail
        self.DIDF_Encoder = SFDEncoder(dim, heads)
        self.DIDF_Decoder_Phase = SFDDecoder(dim, heads)
        self.BaseFuseLayer = FeatureInteractionBlock(dim, heads, init_fusion=True)
        self.DetailFuseLayer = FeatureInteractionBlock(dim, heads, init_fusion=False)

    def forward(self, vis: Tensor, ir: Tensor, phase: int | None = None) -> Tensor | dict[str, Tensor]:
        """``phase=None``: ``Dec(VIS, BaseFuse(V_ll, I_ll), DetailFuse(V_d, I_d))`` (test.py).

        ``phase=1``: dict ``V_B, V_D, I_B, I_D`` (encoder outputs after the interaction blocks),
        ``V_hat = Dec(V, V_B, V_D)``, ``I_hat = Dec(I, I_B, V_D or I_D)`` (see ``ir_detail``).
        ``phase=2``: the features and ``F = Dec(V, BaseFuse(V_B, I_B), DetailFuse(V_D, I_D))``.
        """
        v_b, v_d = self.DIDF_Encoder(vis)
        i_b, i_d = self.DIDF_Encoder(ir)
        if phase is None:
            return self.DIDF_Decoder_Phase(vis, self.BaseFuseLayer(v_b, i_b), self.DetailFuseLayer(v_d, i_d))[0]
        out = {"V_B": v_b, "V_D": v_d, "I_B": i_b, "I_D": i_d}
        if phase == 1:
            out["V_hat"] = self.DIDF_Decoder_Phase(vis, v_b, v_d)[0]
            out["I_hat"] = self.DIDF_Decoder_Phase(ir, i_b, v_d if self.ir_detail == "vis" else i_d)[0]
        elif phase == 2:
            out["F"] = self.DIDF_Decoder_Phase(vis, self.BaseFuseLayer(v_b, i_b), self.DetailFuseLayer(v_d, i_d))[0]
        else:
            raise ValueError(f"phase must be None, 1 or 2, not {phase!r}")
        return out

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        return self(structural, functional)
