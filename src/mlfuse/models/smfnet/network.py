"""SMFNet (TMM 2025, "A Semantic-Aware and Multi-Guided Network for Infrared-Visible Image Fusion";
authors' code Abraham-Einstein/SMFNet at 5097711, network file ``net_final.py``).

Written from ``shared/specs/smfnet.md`` §1-§2 and the shared blocks of :mod:`mlfuse.models.blocks`
(channel LayerNorm, MDTA, AttentionBase, the CDDFuse INN node). The five sub-networks are attributes
named after the authors' checkpoint keys (``DIDF_Encoder``, ``DIDF_Decoder``, ``BaseFuseLayer``,
``DetailFuseLayer``, ``GraphModel``), so their file (a dict of ``module.``-prefixed DataParallel
state_dicts) maps onto this module's flat state_dict by :meth:`SMFNet.convert_checkpoint` and loads with
``strict=True``. The 28 tensors the forward never uses (spec §1.7) are constructed for that reason.

Roles: structural = visible / MRI (``data_VIS``), functional = infrared / CT (``data_IR``).
The graph model's "rgb" branch processes the **infrared** feature and "dep" the visible one (spec §1.6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.inference import streaming
from mlfuse.inference.tiling import TileSpec
from mlfuse.models.base import FusionModel
from mlfuse.models.blocks import (
    MDTA,
    AttentionBase,
    DetailNode,
    InvertedResidualBlock,
    LayerNorm,
    OverlapPatchEmbed,
    l2_channel_attention,
)
from mlfuse.models.blocks.checkpoints import AuthorsLayoutMixin

DIM = 64
HEADS = 8


# ------------------------------------------------------------------------------------------ transformer
class LeFF(nn.Module):
    """Locally-enhanced feed-forward (spec §1.1): ``GELU(1x1(GELU(dw3x3(GELU(1x1(y)))))) + y`` — a GELU
    after the last conv and an internal residual (quirk 7). Keys ``linear1.0``, ``dwconv.0``, ``linear2.0``."""

    def __init__(self, dim: int = DIM, hidden: int = DIM) -> None:
        super().__init__()
        self.linear1 = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU())
        self.dwconv = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU())
        self.linear2 = nn.Sequential(nn.Conv2d(hidden, dim, 1), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dwconv(self.linear1(x))) + x


class TransformerBlock(nn.Module):
    """SMFNet ``TransformerBlock``: ``x + MDTA(LN1 x)``, then ``x + LeFF(LN2 x)`` (keys ``norm1``, ``attn``,
    ``norm2``, ``ffn_leff``; spec §1.1)."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = MDTA(dim, heads, bias=False)
        self.norm2 = LayerNorm(dim)
        self.ffn_leff = LeFF(dim, dim)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn_leff(self.norm2(x))


class BaseFeatureExtraction(nn.Module):
    """``BaseFuseLayer`` (spec §1.4): the same computation as :class:`TransformerBlock` with the LeFF under
    the key ``mlp``, plus an unused ``reduce_channel`` (conv1x1 128->64 nb)."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = MDTA(dim, heads, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = LeFF(dim, dim)
        self.reduce_channel = nn.Conv2d(dim * 2, dim, 1, bias=False)  # unused (quirk 10)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FFN(nn.Module):
    """conv1x1 C->2C nb (``project_in``), GELU, conv1x1 2C->C nb (``project_out``)."""

    def __init__(self, dim: int = DIM, hidden: int = 2 * DIM) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, hidden, 1, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.project_out(F.gelu(self.project_in(x)))


class TransformerBase(nn.Module):
    """``x + AttentionBase(LN1 x)`` (full 3x3 qkv2, common §2.3), then ``x + FFN(LN2 x)`` (spec §1.1)."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = AttentionBase(dim, heads, qkv_bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = FFN(dim, 2 * dim)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _conv_stack(dim: int = DIM, mid: int = 16) -> nn.Sequential:
    """conv3x3 dim->16 +b, LReLU(0.2), conv1x1 16->16 +b, LReLU(0.2), conv3x3 16->dim +b."""
    return nn.Sequential(nn.Conv2d(dim, mid, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(mid, mid, 1),
                         nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(mid, dim, 3, 1, 1))


class Block(nn.Module):
    """Two Sequentials (TransformerBlock, TransformerBase) then a conv stack, with a block residual:
    ``conv(rg1(rg0(x))) + x`` (spec §1.1)."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.residual_group = nn.ModuleList(
            [nn.Sequential(TransformerBlock(dim, heads), TransformerBase(dim, heads)) for _ in range(2)]
        )
        self.conv = _conv_stack(dim)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        y = x
        for group in self.residual_group:
            y = group(y)
        return self.conv(y) + x


class SwinIREncoder(nn.Module):
    """The encoder's base branch (``baseFeature``; "SwinIR_Encoder" without any Swin layer):
    ``layers.1(layers.0(conv_first(x)))``. ``reduce_channel``, ``norm`` and ``conv_after_body`` are unused."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(dim, dim, 3, 1, 1)
        self.reduce_channel = nn.Conv2d(dim * 2, dim, 1, bias=False)  # unused
        self.layers = nn.ModuleList([Block(dim, heads) for _ in range(2)])
        self.norm = nn.LayerNorm(dim)  # unused
        self.conv_after_body = _conv_stack(dim)  # unused

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_first(x)
        for layer in self.layers:
            x = layer(x)
        return x


# ------------------------------------------------------------------------------------------ detail branch
class CrossTransAttention(nn.Module):
    """``Cross_Trans_Attention`` ("TCA", spec §1.1): queries from ``guide``, keys and values from ``op``,
    channel attention with L2-normalised q, k per head. Keys ``temperature``, ``kv``, ``q``,
    ``kv_dwconv``, ``q_dwconv``, ``project_out`` (all convs with bias)."""

    STREAMING_OP = True  # whole-image sums in a tiled pass (mlfuse.inference.streaming)

    def __init__(self, dim: int = DIM // 2, heads: int = HEADS) -> None:
        super().__init__()
        self.num_heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.kv = nn.Conv2d(dim, dim * 2, 1)
        self.q = nn.Conv2d(dim, dim, 1)
        self.kv_dwconv = nn.Conv2d(dim * 2, dim * 2, 3, 1, 1, groups=dim * 2)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.project_out = nn.Conv2d(dim, dim, 1)

    def forward(self, guide: Tensor, op: Tensor) -> Tensor:
        q = self.q_dwconv(self.q(guide))
        k, v = self.kv_dwconv(self.kv(op)).chunk(2, dim=1)
        return self.project_out(l2_channel_attention(q, k, v, self.temperature, self.num_heads, self))


class _Conv(nn.Module):
    """A conv in a wrapper whose child is called ``conv`` (keys ``<name>.conv.*``), optional LeakyReLU."""

    def __init__(self, cin: int, cout: int, k: int, slope: float | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, k // 2)
        self.slope = slope

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y if self.slope is None else F.leaky_relu(y, self.slope)


class _DenseLayer(nn.Module):
    """``cat(x, LReLU0.2(conv3x3 +b (x)))``."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, growth, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((x, F.leaky_relu(self.conv(x), 0.2)), dim=1)


class _Dense(nn.Module):
    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.conv1 = _DenseLayer(dim, dim)
        self.conv2 = _DenseLayer(2 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


def sobel_init(channels: int) -> tuple[Tensor, Tensor]:
    """The GRDB Sobel convs' initial depthwise kernels: [[1,0,-1],[2,0,-2],[1,0,-1]] and its transpose."""
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    return kx.expand(channels, 1, 3, 3).clone(), kx.t().expand(channels, 1, 3, 3).clone()


class Sobelxy(nn.Module):
    """``|dwX(x)| + |dwY(x)|``: depthwise 3x3 convs without bias, zero padding, **trainable**, initialised
    to the Sobel kernels (keys ``convx.weight``, ``convy.weight``)."""

    def __init__(self, channels: int = DIM) -> None:
        super().__init__()
        self.convx = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.convy = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        kx, ky = sobel_init(channels)
        with torch.no_grad():
            self.convx.weight.copy_(kx)
            self.convy.weight.copy_(ky)

    def forward(self, x: Tensor) -> Tensor:
        return torch.abs(self.convx(x)) + torch.abs(self.convy(x))


class RGBD(nn.Module):
    """Gradient residual dense block (spec §1.1): ``LReLU0.1(convdown(dense(x)) + convup(Sobel(x)))``."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.dense = _Dense(dim)
        self.convdown = _Conv(3 * dim, dim, 1)
        self.sobelconv = Sobelxy(dim)
        self.convup = _Conv(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.convdown(self.dense(x)) + self.convup(self.sobelconv(x)), 0.1)


class GRDBModule(nn.Module):
    """``GRDB_module``: ``GRDB(LReLU0.2(conv3x3 +b (x)))`` (165,312 parameters)."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.conv = _Conv(dim, dim, 3, slope=0.2)
        self.GRDB = RGBD(dim)

    @streaming.block  # local, but kept between tiled passes: computed once
    def forward(self, x: Tensor) -> Tensor:
        return self.GRDB(self.conv(x))


class DetailFeatureExtractionEncoder(nn.Module):
    """The encoder's detail branch (spec §1.2): halves z1, z2 of the GRDB output, cross attention in both
    directions with one shared TCA, then one CDDFuse INN node (common §2.6)."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.TCA = CrossTransAttention(dim // 2, heads)
        self.layer = DetailNode(channels=dim)

    @streaming.block
    def forward(self, g: Tensor) -> Tensor:
        half = g.shape[1] // 2
        z1, z2 = g[:, :half], g[:, half:]
        f1 = self.TCA(z2, z1)
        f2 = self.TCA(z1, z2)
        f1, f2 = self.layer(f1, f2)
        return torch.cat((f1, f2), dim=1)


class INVBlockAffine(nn.Module):
    """``INV_block_affine`` (spec §1.1), clamp 2, ``e(s) = exp(2 clamp (sigmoid(s) - 0.5))``. The authors'
    forward always takes its **reverse** branch (quirk 8), which is what :meth:`forward` computes."""

    def __init__(self, channels: int = DIM, clamp: float = 2.0) -> None:
        super().__init__()
        half = channels // 2
        self.clamp = clamp
        self.r = InvertedResidualBlock(half, half, 2)
        self.y = InvertedResidualBlock(half, half, 2)
        self.f = InvertedResidualBlock(half, half, 2)
        self.p = InvertedResidualBlock(half, half, 2)
        self.shffleconv = nn.Conv2d(channels, channels, 1, bias=True)

    def e(self, s: Tensor) -> Tensor:
        return torch.exp(self.clamp * 2 * (torch.sigmoid(s) - 0.5))

    def forward(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        x = self.shffleconv(torch.cat((x1, x2), dim=1))
        half = x.shape[1] // 2
        x1, x2 = x[:, :half], x[:, half:]
        s1, t1 = self.r(x1), self.y(x1)
        y2 = (x2 - t1) / self.e(s1)
        t2, s2 = self.f(y2), self.p(y2)
        y1 = (x1 - t2) / self.e(s2)
        return y1, y2


class DetailFeatureExtraction(nn.Module):
    """``DetailFuseLayer`` (spec §1.5): ``g = GRDB(x)``, then two reverse INV blocks on its halves."""

    def __init__(self, dim: int = DIM, num_layers: int = 2) -> None:
        super().__init__()
        self.net = nn.ModuleList([INVBlockAffine(dim) for _ in range(num_layers)])
        self.GRDB = GRDBModule(dim)

    @streaming.block
    def forward(self, x: Tensor) -> Tensor:
        g = self.GRDB(x)
        half = g.shape[1] // 2
        z1, z2 = g[:, :half], g[:, half:]
        for layer in self.net:
            z1, z2 = layer(z1, z2)
        return torch.cat((z1, z2), dim=1)


# ------------------------------------------------------------------------------------------ encoder, decoder
class RestormerEncoder(nn.Module):
    """``DIDF_Encoder`` (spec §1.2, 1,886,768 parameters): ``E(img) -> (base, detail, embed, shallow)``."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(1, dim)
        self.encoder_level1 = nn.Sequential(TransformerBlock(dim, heads))
        self.baseFeature = SwinIREncoder(dim, heads)
        self.detailFeature = DetailFeatureExtractionEncoder(dim, heads)
        self.GRDB_module = GRDBModule(dim)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        embed = self.patch_embed(img)
        shallow = self.encoder_level1(embed)
        detail = self.detailFeature(self.GRDB_module(shallow))
        base = self.baseFeature(shallow)
        return base, detail, embed, shallow


class RestormerDecoder(nn.Module):
    """``DIDF_Decoder`` (spec §1.3): one TransformerBlock, a 3-conv head, sigmoid. The image argument is
    discarded (quirk 9: no input residual). Returns ``(sigmoid(output(y)), y)``."""

    def __init__(self, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.encoder_level1 = nn.Sequential(TransformerBlock(dim, heads))
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim // 2, 3, 1, 1, bias=False), nn.LeakyReLU(),
            nn.Conv2d(dim // 2, dim // 4, 3, 1, 1, bias=False), nn.LeakyReLU(),
            nn.Conv2d(dim // 4, 1, 3, 1, 1, bias=False),
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, img: Tensor | None, feature: Tensor) -> tuple[Tensor, Tensor]:
        del img  # the authors overwrite it with None
        y = self.encoder_level1(feature)
        return self.sigmoid(self.output(y)), y


# ------------------------------------------------------------------------------------------ graph model
def _conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PPM(nn.Module):
    """Three dilated conv-BN-ReLU branches (dilations 4, 8, 16; key ``convs.<k>``): the graph's nodes."""

    def __init__(self, dim: int = DIM, dilations: tuple[int, ...] = (4, 8, 16)) -> None:
        super().__init__()
        self.convs = nn.ModuleList([_conv_bn_relu(dim, dim, d) for d in dilations])

    def forward(self, x: Tensor) -> list[Tensor]:
        return [conv(x) for conv in self.convs]


class ConvGRU(nn.Module):
    """Convolutional GRU cell with 1x1 gates (``ConvGates`` 2C->2C, ``Conv_ct`` 2C->C; weights N(0, 0.01))."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.ConvGates = nn.Conv2d(2 * dim, 2 * dim, 1)
        self.Conv_ct = nn.Conv2d(2 * dim, dim, 1)
        nn.init.normal_(self.ConvGates.weight, 0.0, 0.01)
        nn.init.normal_(self.Conv_ct.weight, 0.0, 0.01)

    def forward(self, x: Tensor, hidden: Tensor) -> Tensor:
        r, u = self.ConvGates(torch.cat((x, hidden), dim=1)).chunk(2, dim=1)
        r, u = torch.sigmoid(r), torch.sigmoid(u)
        c = torch.tanh(self.Conv_ct(torch.cat((x, r * hidden), dim=1)))
        return (1 - u) * hidden + u * c


class NodeGraph(nn.Module):
    """One modality's node reasoning (spec §1.6 step 3): ``iterations`` synchronous updates of the three
    nodes; messages gated by ``C_wgt`` (grouped conv1x1 2C->2, groups 2), a ConvGRU, ``h + gamma h'``.

    ``interleaved_gates=True`` (the authors', quirk 6) expands the two gates to 2C channels as
    w0, w1, w0, ... (``repeat``); ``False`` gives the intended layout C x w0 then C x w1 (not compatible with
    weights trained the authors' way).
    """

    def __init__(self, dim: int = DIM, iterations: int = 2, interleaved_gates: bool = True) -> None:
        super().__init__()
        self.iterations = iterations
        self.interleaved_gates = interleaved_gates
        self.gamma = nn.Parameter(torch.zeros(1))
        self.C_wgt = nn.Conv2d(2 * dim, 2, 1, groups=2, bias=False)
        self.ConvGRU = ConvGRU(dim)

    def message(self, h: Tensor, h1: Tensor, h2: Tensor) -> Tensor:
        c = h.shape[1]
        x2 = torch.cat((h1, h2), dim=1)
        w = torch.sigmoid(self.C_wgt(torch.cat((h, h), dim=1) - x2))
        gate = w.repeat(1, c, 1, 1) if self.interleaved_gates else w.repeat_interleave(c, dim=1)
        msg = x2 * gate
        return msg[:, :c] + msg[:, c:]

    def forward(self, nodes: list[Tensor]) -> list[Tensor]:
        for _ in range(self.iterations):
            new = []
            for i, h in enumerate(nodes):
                others = [n for j, n in enumerate(nodes) if j != i]
                m = self.message(h, *others)
                new.append(self.ConvGRU(m, h) * self.gamma + h)
            nodes = new
        return nodes


class GraphReasoning(nn.Module):
    """``GraphReasoning`` (spec §1.6): dilated-conv nodes per modality, cross-modal gating (twice), node
    reasoning per modality. ``ppm_rgb``/``graph_rgb`` take the infrared feature, ``ppm_dep``/``graph_dep``
    the visible one. ``C_ca`` is unused."""

    def __init__(self, dim: int = DIM, dilations: tuple[int, ...] = (4, 8, 16), iterations: int = 2,
                 interleaved_gates: bool = True) -> None:
        super().__init__()
        self.ppm_rgb = PPM(dim, dilations)
        self.ppm_dep = PPM(dim, dilations)
        self.graph_rgb = NodeGraph(dim, iterations, interleaved_gates)
        self.graph_dep = NodeGraph(dim, iterations, interleaved_gates)
        self.C_ca = nn.ModuleList([  # unused (quirk 10)
            nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * dim, dim // 2, 1, bias=False), nn.ReLU(inplace=True),
                          nn.Conv2d(dim // 2, dim, 1, bias=False)) for _ in range(2)])
        self.C_pa = nn.ModuleList([nn.Conv2d(dim, 1, 1, bias=False) for _ in range(2)])

    def gate(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """One cross-modal exchange from the old values: ``b' = a sigmoid(C_pa0(a - b)) + b``,
        ``a' = b sigmoid(C_pa1(b - a)) + a``."""
        b_new = a * torch.sigmoid(self.C_pa[0](a - b)) + b
        a_new = b * torch.sigmoid(self.C_pa[1](b - a)) + a
        return a_new, b_new

    def forward(self, feat_ir: Tensor, feat_vis: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        a_nodes = self.ppm_rgb(feat_ir)
        b_nodes = self.ppm_dep(feat_vis)
        for k in range(len(a_nodes)):
            a, b = a_nodes[k], b_nodes[k]
            for _ in range(2):
                a, b = self.gate(a, b)
            a_nodes[k], b_nodes[k] = a, b
        return self.graph_rgb(a_nodes), self.graph_dep(b_nodes)


class CGR(nn.Module):
    """``graph`` of the graph model: node reasoning, then ``C_cat.0`` / ``C_cat.1`` squeeze each modality's
    three nodes (192 -> 64). ``C_cat.2-5`` and ``C_cls`` are unused. Returns ``(N_I, N_V)``."""

    def __init__(self, dim: int = DIM, interleaved_gates: bool = True) -> None:
        super().__init__()
        self.graph = GraphReasoning(dim, interleaved_gates=interleaved_gates)
        self.C_cat = nn.ModuleList([_conv_bn_relu(3 * dim, dim) for _ in range(6)])
        self.C_cls = nn.Conv2d(2 * dim, dim, 1)  # unused

    def forward(self, feat_vis: Tensor, feat_ir: Tensor) -> tuple[Tensor, Tensor]:
        a_nodes, b_nodes = self.graph(feat_ir, feat_vis)
        return self.C_cat[0](torch.cat(a_nodes, dim=1)), self.C_cat[1](torch.cat(b_nodes, dim=1))


class CGRBackbone(nn.Module):
    """``GraphModel`` (spec §1.6; 964,994 parameters + 1,548 BatchNorm buffer elements).

    ``forward(feat_V, feat_I, flag)`` — VIS first: ``flag=True`` -> ``(C_cls(cat(N_I, N_V)), N_I, N_V)``,
    ``flag=False`` -> ``(N_I, N_V)``. BatchNorm is mode-dependent (batch statistics in train mode).
    """

    def __init__(self, dim: int = DIM, interleaved_gates: bool = True) -> None:
        super().__init__()
        self.graph = CGR(dim, interleaved_gates)
        self.C_cls = nn.Conv2d(2 * dim, dim, 1)

    @streaming.block(poisoned="compute")  # local and costly: kept between tiled passes
    def forward(self, feat_vis: Tensor, feat_ir: Tensor, flag: bool = True
                ) -> tuple[Tensor, Tensor, Tensor] | tuple[Tensor, Tensor]:
        n_i, n_v = self.graph(feat_vis, feat_ir)
        if flag:
            return self.C_cls(torch.cat((n_i, n_v), dim=1)), n_i, n_v
        return n_i, n_v


# ------------------------------------------------------------------------------------------ whole network
class SMFNet(AuthorsLayoutMixin, FusionModel):
    """The whole SMFNet (3,148,818 parameters; 2,650,098 used by the fusion forward).

    ``forward(vis, ir)`` returns the raw fused image (B,1,H,W) in (0,1) (``test.py``, spec §2);
    ``forward(vis, ir, phase=1|2)`` returns the training intermediates of ``train.py`` (spec §3).
    ``interleaved_gates=False`` corrects the graph's gate layout (quirk 6; incompatible with the authors'
    weights, which were trained with the interleaving).
    """

    TOP_LEVEL = ("DIDF_Encoder", "DIDF_Decoder", "BaseFuseLayer", "DetailFuseLayer", "GraphModel")

    #: exact tiling (mlfuse.inference.tiling): receptive radius 27 (counted: shallow 3, base branch 17 more, BaseFuse 2,
    #: decoder block 2, three 3x3 head convs; the graph's dilation-16 nodes reach 20; measured 26 by input
    #: gradients with the global ops made local); the 24 channel attentions per forward (MDTA, Lite, TCA)
    #: are whole-image sums, streamed in 12 passes (11 levels, then the output pass)
    TILE_SPEC = TileSpec(
        halo=27, align=1, streaming=True,
        global_ops=("channel attention (MDTA, Lite, TCA): Q K^T and |q|, |k| summed over all H*W positions",),
        # benchmarks/bench_memory.py (one thread): untiled 8811 B/px at 128x160; tiled windows as
        # CDDFuse's ratio (1.5x, fixed costs over fewer pixels)
        bytes_per_pixel=12288, untiled_bytes_per_pixel=9216,
    )

    def __init__(self, interleaved_gates: bool = True, dim: int = DIM, heads: int = HEADS) -> None:
        super().__init__()
        self.interleaved_gates = interleaved_gates
        self.DIDF_Encoder = RestormerEncoder(dim, heads)
        self.DIDF_Decoder = RestormerDecoder(dim, heads)
        self.BaseFuseLayer = BaseFeatureExtraction(dim, heads)
        self.DetailFuseLayer = DetailFeatureExtraction(dim)
        self.GraphModel = CGRBackbone(dim, interleaved_gates)

    # -- forward -----------------------------------------------------------------------------------
    def encode(self, vis: Tensor, ir: Tensor) -> dict[str, Tensor]:
        """Encoder on both images, VIS first: base, detail and shallow features."""
        v_b, v_d, _, v_s = self.DIDF_Encoder(vis)
        i_b, i_d, _, i_s = self.DIDF_Encoder(ir)
        return {"V_B": v_b, "V_D": v_d, "V_s": v_s, "I_B": i_b, "I_D": i_d, "I_s": i_s}

    def forward(self, vis: Tensor, ir: Tensor, phase: int | None = None) -> Tensor | dict[str, Tensor]:
        """``phase=None``: the fused image (``test.py``): ``Dec((F_D + F_B) + GCN)`` with
        ``F_B = BaseFuse(I_B + V_B)``, ``F_D = DetailFuse(I_D + V_D)``, ``GCN = Graph(V_s, I_s)[0]``.

        ``phase=1``: dict with the encoder features and ``V_hat = Dec((V_D + V_B) + GCN_V)``,
        ``I_hat = Dec((I_D + I_B) + GCN_I)`` (graph with ``flag=False``). ``phase=2``: the features,
        ``GCN_I``, ``GCN_V`` and ``F`` as in the test forward (one graph call with ``flag=True``).
        """
        out = self.encode(vis, ir)
        if phase == 1:
            gcn_i, gcn_v = self.GraphModel(out["V_s"], out["I_s"], flag=False)
            out["GCN_I"], out["GCN_V"] = gcn_i, gcn_v
            out["V_hat"] = self.DIDF_Decoder(vis, (out["V_D"] + out["V_B"]) + gcn_v)[0]
            out["I_hat"] = self.DIDF_Decoder(ir, (out["I_D"] + out["I_B"]) + gcn_i)[0]
            return out
        if phase not in (None, 2):
            raise ValueError(f"phase must be None, 1 or 2, not {phase!r}")
        gcn, gcn_i, gcn_v = self.GraphModel(out["V_s"], out["I_s"], flag=True)
        f_b = self.BaseFuseLayer(out["I_B"] + out["V_B"])
        f_d = self.DetailFuseLayer(out["I_D"] + out["V_D"])
        fused = self.DIDF_Decoder(vis, (f_d + f_b) + gcn)[0]
        if phase is None:
            return fused
        out.update(GCN=gcn, GCN_I=gcn_i, GCN_V=gcn_v, F_B=f_b, F_D=f_d, F=fused)
        return out

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        return self(structural, functional)
