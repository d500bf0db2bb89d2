"""The MLFuse network (MLFNet): cross-modal knowledge reinforcing, spatial-spectral optimizing
and edge-guided learning branches, then a reconstruction head.

Written from ``shared/specs/mlfuse.md`` sections 1-6 and 14 (the authors' released code,
jialei-sc/MLFuse). Attribute and ``nn.Sequential`` index names follow the authors' checkpoint so
that it loads with ``strict=True`` (111 state-dict keys). The losses are kept outside the module,
so no Sobel kernel or SSIM window is ever registered as a parameter or buffer.

Roles: input 1 (``img1``, paper *x*) is the structural image (visible / MRI); input 2 (``img2``,
paper *y*) is the functional image (infrared / CT / PET / SPECT).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.inference.tiling import TileSpec
from mlfuse.models.base import FusionModel

if TYPE_CHECKING:
    from mlfuse.inference.tiling import Tiler, Window


def _softmax_16_lane_float32(logits: Tensor) -> Tensor:
    """Softmax over the last dim summed the way PyTorch's AVX-512 CPU kernel does in float32:
    16 lane-wise running sums over the row (tail added into the first lanes), then a halving tree.

    Only for reproducing the authors' reference *side* outputs to 1e-5: their l_ssd carries the
    rounding of that sum (up to 1.6e-5 from the exact value at 256x256). The fused output does not
    need it. Runs on the CPU in numpy, where an axis-0 reduction is a sequential float32 sum.
    """
    lanes = 16
    c = logits.detach().to("cpu", torch.float32)
    e = torch.exp(c - c.amax(dim=-1, keepdim=True)).numpy()
    n = e.shape[-1]
    k = n // lanes
    rows = e.reshape(-1, n)
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        acc = np.add.reduce(row[: k * lanes].reshape(k, lanes), axis=0, dtype=np.float32)
        tail = row[k * lanes:]
        acc[: tail.size] += tail
        while acc.size > 1:
            half = acc.size // 2
            acc = acc[:half] + acc[half:]
        out[i] = row * (np.float32(1) / acc[0])
    return torch.from_numpy(out.reshape(e.shape)).to(logits.device)


@contextmanager
def _exact_global_ops(x: Tensor) -> Iterator[torch.dtype]:
    """Accumulation dtype for the SSD's softmax/pooling over all H*W positions.

    A float32 softmax over N = H*W positions sums N exponentials; CPU kernels differ in how they
    split that sum (AVX2 vs AVX-512), which moved the output by up to 1.5e-5 against the authors'
    reference at 256x256. These reductions touch only 1 x N and 16 x N values, so they are done in
    float64 (float32 on MPS, which has no float64) with autocast off: outputs then agree with the
    reference to ~1e-6 on any machine, for the cost of a few microseconds.
    """
    acc = torch.float32 if x.device.type == "mps" else torch.float64
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield acc


class SingleConv(nn.Module):
    """Conv3x3 -> BatchNorm -> ReLU, keys ``double_conv.{0,1}`` (authors' naming)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


class DoubleConv(nn.Module):
    """Two Conv3x3-BN-ReLU blocks (the reconstruction ``layer``), keys ``double_conv.{0,1,3,4}``."""

    def __init__(self, cin: int, cmid: int, cout: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cmid, 3, 1, 1), nn.BatchNorm2d(cmid), nn.ReLU(inplace=True),
            nn.Conv2d(cmid, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


class OutConv(nn.Module):
    """1x1 convolution to one channel, key ``conv``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def _cbp(ch: int) -> nn.Sequential:
    """Conv3x3 -> BN -> PReLU with a single shared slope (spec section 2, "CBP")."""
    return nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1), nn.BatchNorm2d(ch), nn.PReLU(num_parameters=1))


class CMKNet(nn.Module):
    """Cross-modal knowledge reinforcing network (spec section 2).

    Common feature M = A*B reinforces each modality, the absolute difference |A-B| carries the
    modality-specific ("uncertain") part; returns (32-channel feature, tanh side output l_cmk).
    """

    def __init__(self, icha: int = 32) -> None:
        super().__init__()
        self.fuse5_conv1 = _cbp(icha)
        self.fuse5_conv2 = _cbp(icha)
        self.fuse5_conv3 = _cbp(icha)
        self.fuse5_conv4 = _cbp(icha)
        self.fuse5_conv5 = _cbp(icha)
        self.ouc_cda = nn.Conv2d(icha, 1, 1)

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        m = a * b
        c1 = self.fuse5_conv1(a + m)
        c2 = self.fuse5_conv2(b + m)
        cert = self.fuse5_conv3(c1 + c2)
        unc = self.fuse5_conv4(torch.abs(a - b))
        feat = self.fuse5_conv5(cert + unc)
        return feat, torch.tanh(self.ouc_cda(feat))


class SSDNet(nn.Module):
    """Spatial-spectral domain optimizing network: a parallel polarized self-attention (spec §3).

    The authors' method names are swapped relative to the paper figure; here the gates are named
    by what they do. The spatial gate applies a sigmoid after a softmax over all H*W positions,
    which makes it ~0.5 everywhere; it is computed exactly anyway for bit-exact outputs.
    """

    def __init__(self, inplanes: int = 32, planes: int = 32, reference_softmax: bool = False) -> None:
        super().__init__()
        self.reference_softmax = reference_softmax
        inter = planes // 2
        self.conv_q_right = nn.Conv2d(inplanes, 1, 1, bias=False)
        self.conv_v_right = nn.Conv2d(inplanes, inter, 1, bias=False)
        self.conv_up = nn.Conv2d(inter, planes, 1, bias=False)
        self.conv_q_left = nn.Conv2d(inplanes, inter, 1, bias=False)
        self.conv_v_left = nn.Conv2d(inplanes, inter, 1, bias=False)
        self.ouc_cda = nn.Conv2d(planes, 1, 1)
        for conv in (self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")

    def channel_gate(self, x: Tensor) -> Tensor:
        """Softmax-weighted global pooling -> 1x1 conv -> sigmoid; the authors' "spatial_attention"."""
        b, _, h, w = x.shape
        v = self.conv_v_right(x).view(b, -1, h * w)
        logits = self.conv_q_right(x).view(b, 1, h * w)
        with _exact_global_ops(x) as acc:
            if self.reference_softmax:
                q = _softmax_16_lane_float32(logits).to(acc)
            else:
                q = torch.softmax(logits.to(acc), dim=2)
            z = torch.matmul(v.to(acc), q.transpose(1, 2)).unsqueeze(-1).to(x.dtype)  # B x C/2 x 1 x 1
        return x * torch.sigmoid(self.conv_up(z))

    def spatial_gate(self, x: Tensor) -> Tensor:
        """Pooled query times per-position values, softmax over H*W, then sigmoid; the authors'
        "spectral_attention"."""
        b, _, h, w = x.shape
        g = F.adaptive_avg_pool2d(self.conv_q_left(x), 1).view(b, 1, -1)  # B x 1 x C/2
        theta = self.conv_v_left(x).view(b, -1, h * w)  # B x C/2 x N
        with _exact_global_ops(x) as acc:
            s = torch.softmax(torch.matmul(g.to(acc), theta.to(acc)), dim=2).view(b, 1, h, w).to(x.dtype)
        return x * torch.sigmoid(s)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.channel_gate(x) + self.spatial_gate(x)
        return feat, torch.tanh(self.ouc_cda(feat))


class EdgNet(nn.Module):
    """Edge-guided learning network, an ESA-style block with 16 inner channels (spec section 4).

    Returns the sigmoid attention map itself as the 32-channel feature (not E * a, unlike ESA).
    ``conv_dilation`` is never used in forward but is part of the authors' checkpoint.
    """

    def __init__(self, n_feats: int = 32) -> None:
        super().__init__()
        f = n_feats // 2
        self.conv1 = nn.Conv2d(n_feats, f, 1)
        self.conv_f = nn.Conv2d(f, f, 1)
        self.conv_max = nn.Conv2d(f, f, 3, padding=1)
        self.conv2 = nn.Conv2d(f, f, 3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, 3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, 3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, 1)
        self.conv_dilation = nn.Conv2d(f, f, 3, stride=3, padding=1, dilation=2)
        self.ouc_edge = nn.Conv2d(n_feats, 1, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.conv1(x)
        t = F.max_pool2d(self.conv2(s), kernel_size=7, stride=3)
        t = F.relu(self.conv_max(t))
        t = F.relu(self.conv3(t))
        t = self.conv3_(t)
        t = F.interpolate(t, size=x.shape[-2:], mode="bilinear", align_corners=False)
        a = torch.sigmoid(self.conv4(t + self.conv_f(s)))
        return a, torch.tanh(self.ouc_edge(a))


class MLFNet(FusionModel):
    """MLFuse (spec section 1): ``forward(img1, img2) -> (f, l_edg, l_cmk, l_ssd)``.

    Inputs are B x 1 x H x W float tensors in [0, 1] (8-bit gray / 255), H, W >= 15. All outputs
    come out of tanh; ``f`` is the fused image, the others are side outputs used by the losses.
    """

    #: smallest input side the edge branch accepts (stride-2 conv then a 7x7 max-pool)
    MIN_SIZE = 15

    #: exact tiling (mlfuse.inference.tiling): the full-resolution path's receptive radius is 6 (stem, three
    #: chained CBPs, two reconstruction convs); the edge branch's stride-6 map and both SSD gates are
    #: whole-image operations, computed by :meth:`tile_context` in two streaming passes
    TILE_SPEC = TileSpec(
        halo=6, align=1,
        global_ops=("SSD channel gate: softmax-weighted pooling over all H*W positions",
                    "SSD spatial gate: global average pool, then softmax over all H*W positions",
                    "edge branch: stride-6 low-resolution map, bilinearly resized to H x W"),
        bytes_per_pixel=3072,  # measured ~2.5 kB per window pixel over a tiled run (all passes), fp32
        # untiled forward: measured 1746 B/px at 576x768 (2447 at 192x256, fixed costs included) by
        # benchmarks/bench_memory.py; a 768x576 pair (2048 x 0.44 MP = 0.9 GB) fits the default 1 GiB budget
        untiled_bytes_per_pixel=2048,
    )

    def __init__(self, reference_softmax: bool = False) -> None:
        """``reference_softmax``: emulate the float32 summation of the machine that produced the
        authors' reference outputs in the SSD channel gate (see :func:`_softmax_16_lane_float32`);
        off by default, where the global reductions are computed accurately in float64."""
        super().__init__()
        self.inc_edg = SingleConv(1, 32)
        self.inc_ssd = SingleConv(1, 32)
        self.inc_cmk_1 = SingleConv(1, 32)
        self.inc_cmk_2 = SingleConv(1, 32)
        self.edg_net = EdgNet(32)
        self.ssd_net = SSDNet(32, 32, reference_softmax)
        self.cmk_net = CMKNet(32)
        self.layer = DoubleConv(96, 48, 16)
        self.outc = OutConv(16, 1)

    def forward(self, img1: Tensor, img2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        f_edg, l_edg = self.edg_net(self.inc_edg(img1))
        f_ssd, l_ssd = self.ssd_net(self.inc_ssd(img2))
        f_cmk, l_cmk = self.cmk_net(self.inc_cmk_1(img1), self.inc_cmk_2(img2))
        x = self.layer(torch.cat([f_edg, f_cmk, f_ssd], dim=1))
        return torch.tanh(self.outc(x)), l_edg, l_cmk, l_ssd

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        """The fused image only (raw tanh output), as the common fusion pipeline expects."""
        return self.forward(structural, functional)[0]

    def tile_context(self, structural: Tensor, functional: Tensor, tiler: Tiler) -> dict:
        """Whole-image quantities for tiled inference, in two streaming passes over the tiles:
        the edge branch's low-resolution map (pooled on the stride-6 grid, then its three convs on
        the whole map), the SSD channel gate (online softmax-weighted pooling) and the spatial
        gate's global mean and log-sum-exp. Inputs: full-size B x 1 x H x W tensors."""
        return _mlfnet_tile_context(self, structural, functional, tiler)

    def tile_forward(self, structural: Tensor, functional: Tensor, context: dict, window: Window) -> Tensor:
        """Raw fused output for one window's region, given :meth:`tile_context`'s result; equals
        the untiled ``fusion_forward`` on the window's core (up to float rounding)."""
        return _mlfnet_tile_forward(self, structural, functional, context, window)


# --------------------------------------------------------------------------------------------------
# Tiling hooks (mlfuse.inference.tiling): the whole-image operations of MLFNet computed in streaming passes.
# --------------------------------------------------------------------------------------------------

#: the edge branch's low-resolution grid: stride-2 conv then a stride-3 max-pool (spec section 4)
EDGE_STRIDE = 6

#: tiling keeps the edge branch's full-size resized map in memory up to this size (else per window)
FULL_RESIZE_BYTES = 64 << 20


def _edge_lowres_size(n: int) -> int:
    """Side of the edge branch's low-resolution map for an input side ``n`` (spec section 4:
    H1 = (H-3)//2 + 1, H2 = (H1-7)//3 + 1)."""
    return ((n - 3) // 2 + 1 - 7) // 3 + 1


def _linear_taps(n_in: int, n_out: int, start: int, stop: int, device: torch.device,
                 dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source indices and weights of PyTorch's bilinear resize (``align_corners=False``, size
    given) for output positions ``start:stop`` of ``n_out``, in the CPU kernel's float32 arithmetic:
    scale = n_in / n_out, src = max(scale * (i + 0.5) - 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, n_in - 1),
    weights (1 - l, l) with l = src - i0."""
    scale = np.float32(n_in) / np.float32(n_out)
    src = scale * (np.arange(start, stop, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1))
    i1 = np.minimum(i0 + 1, n_in - 1)
    return (torch.from_numpy(i0).to(device), torch.from_numpy(i1).to(device),
            torch.from_numpy(np.float32(1) - lam).to(device=device, dtype=dtype),
            torch.from_numpy(lam).to(device=device, dtype=dtype))


def resize_bilinear_window(low: Tensor, size: tuple[int, int], rows: tuple[int, int],
                           cols: tuple[int, int]) -> Tensor:
    """``F.interpolate(low, size, mode="bilinear", align_corners=False)[..., r0:r1, c0:c1]`` without
    building the full-size map: the window's taps are computed from the global output size."""
    i0, i1, a0, a1 = _linear_taps(low.shape[-2], size[0], *rows, low.device, low.dtype)
    j0, j1, b0, b1 = _linear_taps(low.shape[-1], size[1], *cols, low.device, low.dtype)

    def along_w(x: Tensor) -> Tensor:
        return x.index_select(3, j0) * b0 + x.index_select(3, j1) * b1

    a0, a1 = a0.view(-1, 1), a1.view(-1, 1)
    return along_w(low.index_select(2, i0)) * a0 + along_w(low.index_select(2, i1)) * a1


class _StreamingSoftmax:
    """Softmax over positions that arrive in pieces (the online softmax of Milakov & Gimelshein
    2018): per piece a maximum ``m``, the sum of ``exp(q - m)`` and, optionally, the
    softmax-weighted sum of values; pieces merge by rescaling to the larger maximum. Exact in float64."""

    def __init__(self) -> None:
        self.m: Tensor | None = None
        self.den: Tensor | None = None
        self.num: Tensor | None = None

    @staticmethod
    def piece(q: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``q``: B x 1 x n logits; ``v``: B x C x n values (same dtype) -> (m, den, num)."""
        m = q.amax(dim=2, keepdim=True)
        e = torch.exp(q - m)
        return m, e.sum(dim=2, keepdim=True), (torch.matmul(v, e.transpose(1, 2)) if v is not None else None)

    def merge(self, m: Tensor, den: Tensor, num: Tensor | None) -> None:
        if self.m is None:
            self.m, self.den, self.num = m, den, num
            return
        m_new = torch.maximum(self.m, m)
        r_old, r = torch.exp(self.m - m_new), torch.exp(m - m_new)
        self.den = self.den * r_old + den * r
        self.num = self.num * r_old + num * r if num is not None else None
        self.m = m_new


def _mlfnet_tile_context(net: MLFNet, structural: Tensor, functional: Tensor, tiler: Tiler) -> dict:
    h, w = structural.shape[-2:]
    if min(h, w) < net.MIN_SIZE:
        raise ValueError(f"MLFNet needs H, W >= {net.MIN_SIZE}, got {h}x{w}")
    edg, ssd = net.edg_net, net.ssd_net
    hl, wl = _edge_lowres_size(h), _edge_lowres_size(w)
    minimum = (net.MIN_SIZE, net.MIN_SIZE)

    def pass1(win: Window) -> tuple:
        """The edge branch down to its max-pool on the stride-6 grid (the cells this window's core
        owns); the SSD stem's sum and the channel gate's softmax-weighted pooling over the core."""
        s_t, f_t = tiler.load(structural, win), tiler.load(functional, win)
        p = F.max_pool2d(edg.conv2(edg.conv1(net.inc_edg(s_t))), kernel_size=7, stride=3)
        r0, c0 = -(-win.core_top // EDGE_STRIDE), -(-win.core_left // EDGE_STRIDE)
        r1 = min(-(-win.core_bottom // EDGE_STRIDE), hl)
        c1 = min(-(-win.core_right // EDGE_STRIDE), wl)
        ro, co = win.top // EDGE_STRIDE, win.left // EDGE_STRIDE
        cells = (r0, r1, c0, c1, p[:, :, r0 - ro:r1 - ro, c0 - co:c1 - co])
        rows, cols = win.core_in_region
        x = net.inc_ssd(f_t)
        q = ssd.conv_q_right(x)
        b = q.shape[0]
        with _exact_global_ops(x) as acc:
            q_core = q[:, :, rows, cols].reshape(b, 1, -1).to(acc)
            m, den, _ = _StreamingSoftmax.piece(q_core)
            # softmax weights on the core (zero on the halo) and the core mask, then one product
            # with the window's features: sum_p e(p) X(p) and sum_p X(p). conv_v_right is linear
            # without bias, so the channel gate's sum_p e(p) v(p) = conv_v_right(sum_p e(p) X(p)).
            weights = x.new_zeros((b, 2, *x.shape[2:]))
            weights[:, 0, rows, cols] = torch.exp(q_core - m).to(x.dtype).view_as(q[:, 0, rows, cols])
            weights[:, 1, rows, cols] = 1
            sums = _channel_products(x, weights).to(acc)  # B x C x 2, float32 products within the window
            num = (ssd.conv_v_right.weight.flatten(1).to(acc) @ sums[:, :, :1])  # B x C/2 x 1
        return cells, (m, den, num), sums[:, :, 1], q_core.shape[2]

    halo = 2 * EDGE_STRIDE  # the stem (1) and the 15-pixel footprint of a pooled cell (6j .. 6j+14)
    pieces = tiler.map(pass1, tiler.windows(h, w, halo, EDGE_STRIDE, minimum), "global pass 1/2")
    p = pieces[0][0][4]
    pooled = p.new_empty((p.shape[0], p.shape[1], hl, wl))
    pool_ch, sum_x, count = _StreamingSoftmax(), 0, 0
    for (r0, r1, c0, c1, cell), soft, part, n in pieces:  # in window order: deterministic
        if r1 > r0 and c1 > c0:
            pooled[:, :, r0:r1, c0:c1] = cell
        pool_ch.merge(*soft)
        sum_x, count = sum_x + part, count + n
    t_low = edg.conv3_(F.relu(edg.conv3(F.relu(edg.conv_max(pooled)))))
    dtype = t_low.dtype
    with _exact_global_ops(t_low) as acc:
        z = (pool_ch.num / pool_ch.den).unsqueeze(-1).to(dtype)  # B x C/2 x 1 x 1
        # mean over positions of conv_q_left(X) = conv_q_left(mean of X): the conv is linear, no bias
        g = (sum_x / count) @ ssd.conv_q_left.weight.flatten(1).to(acc).T  # B x C/2
    g_ch = torch.sigmoid(ssd.conv_up(z))
    # the spatial gate's logit g . conv_v_left(X) = (conv_v_left^T g) . X: one channel dot per position
    u = (g @ ssd.conv_v_left.weight.flatten(1).to(g.dtype)).to(dtype)  # B x C

    def pass2(win: Window) -> tuple:
        """Log-sum-exp of the spatial gate's logits over the window's core."""
        rows, cols = win.core_in_region
        x = net.inc_ssd(tiler.load(functional, win))
        logit = _channel_dot(x, u)[:, :, rows, cols].flatten(2)
        with _exact_global_ops(x) as acc:
            return _StreamingSoftmax.piece(logit.to(acc))

    pool_sp = _StreamingSoftmax()
    for piece in tiler.map(pass2, tiler.windows(h, w, 1, 1, minimum), "global pass 2/2"):
        pool_sp.merge(*piece)
    t_full = None
    if h * w * t_low.shape[1] * t_low.element_size() <= FULL_RESIZE_BYTES:  # small enough: resize once
        t_full = F.interpolate(t_low, size=(h, w), mode="bilinear", align_corners=False)
    return {"size": (h, w), "t_low": t_low, "t_full": t_full, "g_ch": g_ch, "u": u,
            "m_sp": pool_sp.m, "den_sp": pool_sp.den}


def _channel_products(x: Tensor, weights: Tensor) -> Tensor:
    """sum over positions of x[b, c, p] * weights[b, k, p], B x C x K, without copying x
    (NCHW or channels-last; ``weights`` NCHW-contiguous B x K x H x W). One 2-D GEMM per image."""
    b, c, h, w = x.shape
    wk = weights.reshape(b, weights.shape[1], h * w)  # B x K x HW
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        xs = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # pixels x channels
        return torch.stack([torch.mm(wk[i], xs[i]).T for i in range(b)])
    xs = x.reshape(b, c, h * w)
    return torch.stack([torch.mm(xs[i], wk[i].T) for i in range(b)])


def _channel_dot(x: Tensor, u: Tensor) -> Tensor:
    """sum_c u[b, c] * x[b, c, h, w] as B x 1 x H x W, without copying x (NCHW or channels-last)."""
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.matmul(x.permute(0, 2, 3, 1).reshape(b, h * w, c), u.unsqueeze(-1)).view(b, 1, h, w)
    return torch.matmul(u.unsqueeze(1), x.reshape(b, c, h * w)).view(b, 1, h, w)


def _mlfnet_tile_forward(net: MLFNet, structural: Tensor, functional: Tensor, ctx: dict, win: Window) -> Tensor:
    """MLFNet's forward for one window (inference only: buffers are reused in place and dropped as
    soon as they are consumed, which bounds a window's peak memory)."""
    edg, cmk = net.edg_net, net.cmk_net
    # CMK first (spec section 2): the branch with the most live buffers runs while nothing else is held
    a, b = net.inc_cmk_1(structural), net.inc_cmk_2(functional)
    m = a * b
    c = cmk.fuse5_conv1(a + m)
    c = c.add_(cmk.fuse5_conv2(m.add_(b)))  # c1 + c2 (the second input is b + m)
    unc = cmk.fuse5_conv4(torch.sub(a, b, out=m).abs_())
    del a, b, m
    f_cmk = cmk.fuse5_conv5(cmk.fuse5_conv3(c).add_(unc))
    del c, unc
    # edge branch: the global low-resolution map resized at this window's global coordinates
    if ctx["t_full"] is not None:
        t = ctx["t_full"][:, :, win.top:win.bottom, win.left:win.right]
    else:
        t = resize_bilinear_window(ctx["t_low"], ctx["size"], (win.top, win.bottom), (win.left, win.right))
    e = edg.conv_f(edg.conv1(net.inc_edg(structural)))
    f_edg = torch.sigmoid_(edg.conv4(torch.add(t, e, out=e)))
    del t, e
    # SSD: channel gate from the streamed pooling, spatial gate from the streamed log-sum-exp (the
    # softmax is ~1/N, so its logits need only float32 here; the normaliser came from float64)
    x = net.inc_ssd(functional)
    logit = _channel_dot(x, ctx["u"])
    with _exact_global_ops(x):
        s = (torch.exp(logit.to(ctx["m_sp"].dtype).sub_(ctx["m_sp"].unsqueeze(-1))) / ctx["den_sp"].unsqueeze(-1))
    f_ssd = torch.addcmul(x * ctx["g_ch"], x, torch.sigmoid_(s.to(x.dtype)))
    del x, logit, s
    # reconstruction (spec section 5); the concatenation is dropped once the first conv has read it
    y = torch.cat([f_edg, f_cmk, f_ssd], dim=1)
    del f_edg, f_cmk, f_ssd
    layers = iter(net.layer.double_conv)
    y = next(layers)(y)
    for layer in layers:
        y = layer(y)
    return torch.tanh_(net.outc(y))
