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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.models.base import FusionModel


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
