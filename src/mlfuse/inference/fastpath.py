"""A faster inference path for any registered network, with the same output (to float rounding).

:func:`optimize_for_inference` returns a copy of a network with

* every ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential`` folded into
  that convolution (eval-mode BN is affine: w' = w * gamma / sqrt(var + eps),
  b' = (b - mean) * gamma / sqrt(var + eps) + beta; Ioffe & Szegedy 2015, eq. in Alg. 2);
* every ``Conv2d`` followed by an activation (ReLU, single-slope PReLU, LeakyReLU, Sigmoid, Tanh,
  SiLU, GELU) in an ``nn.Sequential`` run as one oneDNN convolution with the activation as a
  post-op on the CPU (float32 without autocast, or bf16 under CPU bf16 autocast where oneDNN has
  bf16; no autograd), saving a full pass over the feature map; elsewhere the two modules run as before;
* weights and activations in channels-last (NHWC) memory, the layout oneDNN's direct
  convolutions use, so no layout reorders happen around each convolution;
* cache blocking on the CPU: a network with an exact tiling (:mod:`mlfuse.inference.tiling`) runs in tiles
  of ~160 pixels, so every layer's working set stays in the CPU caches and no full-size buffer is
  allocated (and page-faulted) per layer; one tile per core at once, each with single-threaded
  ops, so no op waits for a second thread (costly on a busy machine). ``benchmarks/bench_speed.py``
  measures the gain against the plain eager forward and records the machine it ran on
  (``benchmarks/results/speed_cpu.json``);
* optionally ``torch.compile`` (Inductor, weights frozen) of whole images instead; it helps less
  than the blocking here and costs ~15-60 s per new input size.

These are generic: nothing depends on which network it is. A probe forward on a small random pair
compares the result with the plain network and drops channels-last (then raises) if a network's
code cannot take it, so a new network gets the path without being tuned for it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlfuse.errors import MLFuseError
from mlfuse.inference import streaming
from mlfuse.inference.tiling import Window, cpu_autocast_dtype, tile_spec, tiled_forward
from mlfuse.models.base import FusionModel

_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "swish",
                                 nn.ReLU6: "hardtanh", nn.Hardtanh: "hardtanh",
                                 nn.LeakyReLU: "leaky_relu", nn.PReLU: "leaky_relu", nn.GELU: "gelu"}


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode BatchNorm into the convolution that feeds it (in place, float64 math)."""
    w = conv.weight.detach().double()
    var, mean = bn.running_var.detach().double(), bn.running_mean.detach().double()
    gamma = bn.weight.detach().double() if bn.affine else torch.ones_like(var)
    beta = bn.bias.detach().double() if bn.affine else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    conv.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(conv.weight.dtype), requires_grad=False)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` with running statistics that directly follows a ``Conv2d`` in an
    ``nn.Sequential`` into it; the BN becomes ``nn.Identity``. In place; returns how many."""
    n = 0
    for seq in list(model.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                    and bn.running_var is not None and conv.out_channels == bn.num_features):
                _fold_into(conv, bn)
                seq[i + 1] = nn.Identity()
                n += 1
    return n


def _onednn_pointwise() -> Callable | None:
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    try:
        return op if op is not None and torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


def _onednn_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions on this CPU (AVX-512 BW/VL/DQ at least; AMX where present)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class ConvAct(nn.Module):
    """A ``Conv2d`` and the activation after it, as one oneDNN call with a post-op where possible
    (CPU, no autograd; float32 without CPU autocast, or under bf16 CPU autocast where oneDNN has bf16:
    the convolution in bf16 as autocast would run it, the activation applied before the output is
    rounded to bf16); otherwise the two modules in turn."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.act = conv, act
        self.attr = _ACTIVATIONS[type(act)]
        if isinstance(act, nn.PReLU):
            self.scalars: list = [float(act.weight.detach().reshape(-1)[0])]
        elif isinstance(act, nn.LeakyReLU):
            self.scalars = [float(act.negative_slope)]
        elif isinstance(act, nn.Hardtanh):  # ReLU6 is Hardtanh(0, 6)
            self.scalars = [float(act.min_val), float(act.max_val)]
        else:
            self.scalars = []
        self.algorithm = act.approximate if isinstance(act, nn.GELU) else ""
        self._op = _onednn_pointwise()
        self._bf16 = _onednn_bf16()

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        if self._op is not None and x.device.type == "cpu" and x.dim() == 4 and not torch.is_grad_enabled():
            low = cpu_autocast_dtype()
            args = (list(c.padding), list(c.stride), list(c.dilation), c.groups, self.attr, self.scalars,
                    self.algorithm)
            if low is None and x.dtype == torch.float32:
                return self._op(x, c.weight, c.bias, *args)
            if low == torch.bfloat16 and self._bf16 and x.dtype in (torch.float32, torch.bfloat16):
                # weights cast on every call, as autocast does (microseconds; no cache to go stale)
                bias = None if c.bias is None else c.bias.to(torch.bfloat16)
                return self._op(x.to(torch.bfloat16), c.weight.to(torch.bfloat16), bias, *args)
        return self.act(c(x))


def _fusable(conv: nn.Module, act: nn.Module) -> bool:
    if not isinstance(conv, nn.Conv2d) or type(act) not in _ACTIVATIONS:
        return False
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    return not (isinstance(act, nn.PReLU) and act.num_parameters != 1)


def fuse_conv_activations(model: nn.Module) -> int:
    """Replace ``Conv2d`` (+ ``Identity`` left by BN folding) + activation in every ``nn.Sequential``
    with :class:`ConvAct`. In place; returns how many."""
    n = 0
    for seq in list(model.modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq)):
            j = i + 1
            while j < len(seq) and isinstance(seq[j], nn.Identity):
                j += 1
            if j < len(seq) and _fusable(seq[i], seq[j]):
                seq[i] = ConvAct(seq[i], seq[j])
                seq[j] = nn.Identity()
                n += 1
    return n


class PointwiseConv2d(nn.Conv2d):
    """A 1x1, stride-1, ungrouped convolution computed as a matrix product over channels-last
    pixels (one GEMM, no copy: an NHWC tensor is a (pixels x channels) matrix); other inputs take
    the ordinary convolution. Same parameters, so state dicts and weight reads are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
            return y.permute(0, 3, 1, 2)
        return super().forward(x)


def _pointwise(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1) and conv.groups == 1)


def use_pointwise_gemm(model: nn.Module) -> int:
    """Turn every plain 1x1 ``Conv2d`` into :class:`PointwiseConv2d` (in place); returns how many."""
    n = 0
    for mod in model.modules():
        if _pointwise(mod):
            mod.__class__ = PointwiseConv2d
            n += 1
    return n


def _per_image_mm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.matmul(a, b)`` for 3-D ``a, b`` as one 2-D product per image: a batched bf16 product
    copies strided operands (the q/k/v slices of the qkv map) first, a 2-D one reads them in place.
    Batches that would broadcast take ``torch.matmul``."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0]:
        return torch.matmul(a, b)
    if a.shape[0] == 1:
        return torch.mm(a[0], b[0]).unsqueeze(0)
    return torch.stack([torch.mm(x, y) for x, y in zip(a, b, strict=True)])


def _attend(op: nn.Module, qkv: Tensor, temperature: Tensor, heads: int, proj: nn.Conv2d) -> Tensor:
    """``proj(softmax(normalize(q) normalize(k)^T * T) v)`` (common §2.2) for ``q, k, v = qkv.chunk(3)``,
    with the output projection merged into the attention: ``M = P blockdiag(A)`` is one C x C matrix per
    image, applied to v as one matrix product over channels-last pixels (one pass instead of two);
    ``Q K^T`` is one product over all channels (its diagonal head blocks kept) and the norms one
    reduction over the pixel matrix. Equal to the plain path to float rounding (normalising after the
    product instead of before). In a tiled pass: the streamed sums (:mod:`mlfuse.inference.streaming`)."""
    if streaming.active():
        q, k, v = qkv.chunk(3, dim=1)
        return proj(streaming.streamed_channel_attention(op, q, k, v, temperature, heads))
    b, c3, h, w = qkv.shape
    c, d = c3 // 3, c3 // 3 // heads
    x = qkv.permute(0, 2, 3, 1).reshape(b, h * w, c3)  # a view for channels-last input
    q, k, v = x[..., :c], x[..., c:2 * c], x[..., 2 * c:]
    gram = _per_image_mm(q.transpose(1, 2), k).view(b, heads, d, heads, d)
    idx = torch.arange(heads, device=qkv.device)
    g = gram[:, idx, :, idx].transpose(0, 1)  # (B, heads, d, d): the diagonal blocks
    norms = x[..., :2 * c].square().sum(1).sqrt().clamp_min(1e-12)  # (B, 2C): |q_i|, |k_j|
    nq, nk = norms[:, :c].view(b, heads, d, 1), norms[:, c:].view(b, heads, 1, d)
    attn = ((g / nq / nk) * temperature).softmax(dim=-1)  # (B, heads, d, d)
    block = torch.zeros(b, c, c, dtype=attn.dtype, device=attn.device)
    for i in range(heads):
        block[:, i * d:(i + 1) * d, i * d:(i + 1) * d] = attn[:, i]
    m = torch.matmul(proj.weight.flatten(1).to(attn.dtype), block)  # (B, C, C)
    out = _per_image_mm(v, m.transpose(1, 2))  # (B, HW, C): channels-last pixels
    if proj.bias is not None:
        out = out + proj.bias
    return out.view(b, h, w, c).permute(0, 3, 1, 2)


class FastMDTA(nn.Module):
    """:class:`~mlfuse.models.blocks.MDTA` with the projection merged into the attention (:func:`_attend`)."""

    STREAMING_OP = True

    def __init__(self, att: nn.Module) -> None:
        super().__init__()
        self.num_heads, self.temperature = att.num_heads, att.temperature
        self.qkv, self.qkv_dwconv, self.project_out = att.qkv, att.qkv_dwconv, att.project_out

    def forward(self, x: Tensor) -> Tensor:
        if streaming.active():
            return self.project_out(streaming.streamed_qkv_attention(
                self, x, lambda t: self.qkv_dwconv(self.qkv(t)), self.temperature, self.num_heads))
        return _attend(self, self.qkv_dwconv(self.qkv(x)), self.temperature, self.num_heads, self.project_out)


class FastLiteAttention(nn.Module):
    """CDDFuse's Lite attention (:class:`~mlfuse.models.blocks.AttentionBase`) with ``qkv1`` (1x1, no
    bias) composed into ``qkv2`` (3x3, zero padding): no activation lies between them, and a bias-free
    1x1 maps the zero padding to zero, so ``qkv2(qkv1(x))`` is one 3x3 convolution C -> 3C with
    ``W[o, i] = sum_m W2[o, m] W1[m, i]`` (computed in float64): 110k instead of 343k multiply-adds per
    pixel at C = 64, the largest share of CDDFuse's cost. Then :func:`_attend`."""

    STREAMING_OP = True

    def __init__(self, att: nn.Module) -> None:
        super().__init__()
        w1 = att.qkv1.weight.detach().double()[:, :, 0, 0]
        w2 = att.qkv2.weight.detach().double()
        conv = nn.Conv2d(w1.shape[1], w2.shape[0], 3, padding=1, bias=att.qkv2.bias is not None)
        conv.weight = nn.Parameter(torch.einsum("omyx,mi->oiyx", w2, w1).to(att.qkv2.weight.dtype),
                                   requires_grad=False)
        if att.qkv2.bias is not None:
            conv.bias = nn.Parameter(att.qkv2.bias.detach().clone(), requires_grad=False)
        self.qkv = conv
        self.num_heads, self.scale, self.proj = att.num_heads, att.scale, att.proj

    def forward(self, x: Tensor) -> Tensor:
        if streaming.active():
            return self.proj(streaming.streamed_qkv_attention(self, x, self.qkv, self.scale, self.num_heads))
        return _attend(self, self.qkv(x), self.scale, self.num_heads, self.proj)


def _half_conv(conv: nn.Conv2d, half: int, groups: int | None = None) -> nn.Conv2d:
    """The output channels ``half`` (0 or 1) of ``conv`` as a conv of its own (a depthwise / grouped
    conv's groups are independent, so its input channels are halved as well when ``groups`` > 1)."""
    out = conv.out_channels // 2
    cin = conv.in_channels // 2 if conv.groups > 1 else conv.in_channels
    new = nn.Conv2d(cin, out, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups // 2 if conv.groups > 1 else 1, conv.bias is not None, conv.padding_mode)
    new.weight = nn.Parameter(conv.weight.detach()[half * out:(half + 1) * out].clone(), requires_grad=False)
    if conv.bias is not None:
        new.bias = nn.Parameter(conv.bias.detach()[half * out:(half + 1) * out].clone(), requires_grad=False)
    return new


class FastGatedFFN(nn.Module):
    """Restormer's GDFN / CDDFuse's Lite Mlp, ``project_out(GELU(x1) * x2)`` with ``x1, x2`` the halves
    of ``dwconv(project_in(x))``, computed as two branches whose outputs are contiguous (GELU on a
    strided half of a channels-last map runs far slower); the depthwise (GDFN) or 2-channel-group
    (Lite Mlp) conv never mixes the halves, so the split is exact. GELU runs as a oneDNN post-op of
    the first branch's conv where available."""

    def __init__(self, ffn: nn.Module) -> None:
        super().__init__()
        self.in_a, self.in_b = _half_conv(ffn.project_in, 0), _half_conv(ffn.project_in, 1)
        self.dw_a, self.dw_b = _half_conv(ffn.dwconv, 0), _half_conv(ffn.dwconv, 1)
        for m in (self.in_a, self.in_b):
            if _pointwise(m):
                m.__class__ = PointwiseConv2d
        self.gelu_a = ConvAct(self.dw_a, nn.GELU()) if _fusable(self.dw_a, nn.GELU()) else None
        self.project_out = ffn.project_out

    def forward(self, x: Tensor) -> Tensor:
        a = self.in_a(x)
        a = self.gelu_a(a) if self.gelu_a is not None else F.gelu(self.dw_a(a))
        return self.project_out(a * self.dw_b(self.in_b(x)))


def _splittable_ffn(ffn: nn.Module) -> bool:
    dw = ffn.dwconv
    return (dw.out_channels % 2 == 0 and dw.groups in (dw.in_channels, dw.in_channels // 2) and dw.groups % 2 == 0
            and ffn.project_in.out_channels == dw.in_channels)


def _plain_irb(block: nn.Module) -> bool:
    """A default InvertedResidualBlock: conv1x1, ReLU6, ReflectionPad2d(1), depthwise 3x3, ReLU6, conv1x1."""
    seq = getattr(block, "bottleneckBlock", None)
    return (isinstance(seq, nn.Sequential) and len(seq) == 6 and isinstance(seq[2], nn.ReflectionPad2d)
            and all(isinstance(seq[i], nn.Conv2d) and seq[i].bias is None for i in (0, 3, 5)))


class FastDetailNode(nn.Module):
    """CDDFuse's INN coupling node (common §2.6) with ``theta_rho`` and ``theta_eta``, which read the same
    ``z2``, run as one inverted-residual block of twice the width: their first 1x1 convs stacked, one
    depthwise conv over both hidden maps (one reflection pad), the last 1x1 convs as one block-diagonal
    conv. Depthwise channels and stacked rows never mix, so the result is the two blocks' to rounding."""

    def __init__(self, node: nn.Module) -> None:
        super().__init__()
        r, e = node.theta_rho.bottleneckBlock, node.theta_eta.bottleneckBlock
        cin, hidden, cout = r[0].in_channels, r[0].out_channels, r[5].out_channels
        first = nn.Conv2d(cin, 2 * hidden, 1, bias=False)
        first.weight = nn.Parameter(torch.cat([r[0].weight, e[0].weight]).detach(), requires_grad=False)
        dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, groups=2 * hidden, bias=False)
        dw.weight = nn.Parameter(torch.cat([r[3].weight, e[3].weight]).detach(), requires_grad=False)
        last = nn.Conv2d(2 * hidden, 2 * cout, 1, bias=False)
        w = torch.zeros(2 * cout, 2 * hidden, 1, 1, dtype=r[5].weight.dtype)
        w[:cout, :hidden], w[cout:, hidden:] = r[5].weight.detach(), e[5].weight.detach()
        last.weight = nn.Parameter(w, requires_grad=False)
        self.rho_eta = nn.Sequential(first, nn.ReLU6(), nn.ReflectionPad2d(1), dw, nn.ReLU6(), last)
        self.theta_phi, self.shffleconv, self.half = node.theta_phi, node.shffleconv, cout

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
        z = self.shffleconv(torch.cat((z1, z2), dim=1))
        half = z.shape[1] // 2
        z1, z2 = z[:, :half], z[:, half:]
        z2 = z2 + self.theta_phi(z1)
        rho_eta = self.rho_eta(z2)
        return z1 * torch.exp(rho_eta[:, :self.half]) + rho_eta[:, self.half:], z2


def _mergeable_lite(att: nn.Module) -> bool:
    return (att.qkv1.bias is None and att.qkv1.kernel_size == (1, 1) and att.qkv2.padding_mode == "zeros"
            and att.qkv2.kernel_size == (3, 3) and att.qkv2.padding == (1, 1) and att.qkv2.groups == 1
            and att.qkv2.stride == (1, 1) and att.qkv2.dilation == (1, 1))


def fast_channel_attention(model: nn.Module) -> int:
    """Replace every plain :class:`~mlfuse.models.blocks.MDTA` by :class:`FastMDTA`, every mergeable
    :class:`~mlfuse.models.blocks.AttentionBase` by :class:`FastLiteAttention`, every gated
    feed-forward (GDFN, Lite Mlp) by :class:`FastGatedFFN` and every INN node with plain bottlenecks by
    :class:`FastDetailNode` (in place; subclasses with their own
    forward, e.g. cross attention, are kept). Returns how many."""
    from mlfuse.models.blocks.attention import MDTA, AttentionBase
    from mlfuse.models.blocks.feedforward import GDFN, LiteMlp
    from mlfuse.models.blocks.inn import DetailNode

    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is DetailNode and _plain_irb(child.theta_rho) and _plain_irb(child.theta_eta):
                setattr(parent, name, FastDetailNode(child))
            elif type(child) in (GDFN, LiteMlp) and _splittable_ffn(child):
                setattr(parent, name, FastGatedFFN(child))
            elif type(child) is MDTA:
                setattr(parent, name, FastMDTA(child))
            elif type(child) is AttentionBase and _mergeable_lite(child):
                setattr(parent, name, FastLiteAttention(child))
            else:
                continue
            n += 1
    return n


def _even_tile(size: int, block: int, align: int) -> int:
    """Tile side near ``block`` that splits ``size`` into equal tiles (a multiple of ``align``)."""
    count = math.ceil(size / block)
    return math.ceil(math.ceil(size / count) / align) * align


class FastModel(FusionModel):
    """An optimised copy of a fusion network (see :func:`optimize_for_inference`); same API
    (``fusion_forward``, ``fuse``, ``card``, the tiling hooks)."""

    def __init__(self, inner: nn.Module, *, channels_last: bool = True, block: int | None = None,
                 workers: int = 1) -> None:
        super().__init__()
        self.inner = inner
        self.card = getattr(inner, "card", None)
        self.weights_source = getattr(inner, "weights_source", None)
        self.channels_last = channels_last
        self.block = block
        self.workers = workers
        self.compiled: Callable | None = None
        if callable(getattr(inner, "tile_context", None)):
            self.tile_context = inner.tile_context

    def _fmt(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def tile_forward(self, structural: Tensor, functional: Tensor, context: object, window: Window) -> Tensor:
        """One window of a tiled run (the network's own hook, or its plain forward)."""
        s, f = self._fmt(structural), self._fmt(functional)
        hook = getattr(self.inner, "tile_forward", None)
        return hook(s, f, context, window) if callable(hook) else self.inner.fusion_forward(s, f)

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        """Raw fused output; on the CPU a network with an exact tiling runs in ``block``-pixel
        tiles (``workers`` at once) when the image holds more than two blocks."""
        h, w = structural.shape[-2:]
        if (self.block and structural.device.type == "cpu" and tile_spec(self.inner) is not None
                and h * w > 2 * self.block ** 2 and self.compiled is None):
            align = tile_spec(self.inner).align
            tile = (_even_tile(h, self.block, align), _even_tile(w, self.block, align))
            return tiled_forward(self, structural, functional, tile, workers=self.workers,
                                 out_device=structural.device)
        fn = self.compiled or self.inner.fusion_forward
        return fn(self._fmt(structural), self._fmt(functional)).contiguous()

    def forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        return self.fusion_forward(structural, functional)


def _probe_inputs(model: nn.Module, device: torch.device) -> tuple[Tensor, Tensor]:
    card = getattr(model, "card", None)
    mh, mw = getattr(card, "min_size", (1, 1))
    m = getattr(card, "size_multiple", 1) or 1
    h, w = (-(-max(mh, 24) // m) * m, -(-max(mw, 32) // m) * m)
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 1, h, w, generator=g).to(device), torch.rand(1, 1, h, w, generator=g).to(device))


def _max_diff(a: nn.Module, b: nn.Module, s: Tensor, f: Tensor) -> float:
    with torch.inference_mode():
        return float((a.fusion_forward(s, f).float() - b.fusion_forward(s, f).float()).abs().max())


def _auto_block(model: nn.Module) -> int | None:
    """Cache-blocking tile for a network with an exact tiling: 160 px (a 32-channel float32 map
    of such a tile is ~3 MB, near the CPU's L2+L3 share per core) or 6 halos, whichever is larger;
    none for a network whose tiling streams its global sums in passes (mlfuse.inference.streaming)."""
    spec = tile_spec(model)
    if spec is None or spec.streaming:  # streamed passes (one per level of global sums): never for speed
        return None
    halo = -(-spec.halo // spec.align) * spec.align
    return -(-max(160, 6 * halo) // spec.align) * spec.align


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True, fuse: bool = True,
                           block: int | str | None = "auto", workers: int | None = None, compile: bool = False,
                           check: bool = True, atol: float = 1e-4) -> FastModel:
    """An inference-only copy of ``model`` that computes the same output faster (module docstring).

    ``block``: on the CPU, run a network that declares an exact tiling in tiles of this many
    pixels (``"auto"``: see :func:`_auto_block`; ``None``: whole images), ``workers`` tiles at
    once (default: ``torch.get_num_threads()``); ``compile``: whole images through
    ``torch.compile`` with frozen weights instead (slow first call per input size). With ``check``
    a probe pair is run through both networks: a channels-last failure falls back to the default
    layout, any other mismatch above ``atol`` raises :class:`~mlfuse.errors.MLFuseError`. The
    original model is not modified.
    """
    card = getattr(model, "card", None)
    inner = copy.deepcopy(model, memo={id(card): card}).eval().requires_grad_(False)  # the card stays shared
    fold_batchnorm(inner)
    if fuse:
        fast_channel_attention(inner)
        fuse_conv_activations(inner)
        use_pointwise_gemm(inner)
    device = next(model.parameters(), torch.empty(0)).device
    block = _auto_block(model) if block == "auto" else block
    options = {"block": block, "workers": workers or torch.get_num_threads()}
    if channels_last:
        inner = inner.to(memory_format=torch.channels_last)
    fast = FastModel(inner, channels_last=channels_last, **options)
    name = getattr(getattr(model, "card", None), "name", type(model).__name__)
    if check:
        s, f = _probe_inputs(model, device)
        try:
            diff = _max_diff(fast, model, s, f)
        except RuntimeError:
            if not channels_last:
                raise
            diff = float("inf")
        if not diff <= atol and channels_last:
            inner = inner.to(memory_format=torch.contiguous_format)
            fast = FastModel(inner, channels_last=False, **options)
            diff = _max_diff(fast, model, s, f)
        if not diff <= atol:
            raise MLFuseError(f"model '{name}': the optimised forward differs from the plain one by {diff:.2e}")
    if compile:
        fast.compiled = torch.compile(inner.fusion_forward, options={"freezing": True})
    return fast


__all__ = ["ConvAct", "FastModel", "PointwiseConv2d", "fold_batchnorm", "fuse_conv_activations",
           "optimize_for_inference", "use_pointwise_gemm"]
