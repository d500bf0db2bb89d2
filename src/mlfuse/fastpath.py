"""A faster inference path for any registered network, with the same output (to float rounding).

:func:`optimize_for_inference` returns a copy of a network with

* every ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential`` folded into
  that convolution (eval-mode BN is affine: w' = w * gamma / sqrt(var + eps),
  b' = (b - mean) * gamma / sqrt(var + eps) + beta; Ioffe & Szegedy 2015, eq. in Alg. 2);
* every ``Conv2d`` followed by an activation (ReLU, single-slope PReLU, LeakyReLU, Sigmoid, Tanh,
  SiLU, GELU) in an ``nn.Sequential`` run as one oneDNN convolution with the activation as a
  post-op on the CPU (float32, no autograd), saving a full pass over the feature map; elsewhere
  the two modules run as before;
* weights and activations in channels-last (NHWC) memory, the layout oneDNN's direct
  convolutions use, so no layout reorders happen around each convolution;
* cache blocking on the CPU: a network with an exact tiling (:mod:`mlfuse.tiling`) runs in tiles
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
from mlfuse.models.base import FusionModel
from mlfuse.tiling import Window, cpu_autocast_dtype, tile_spec, tiled_forward

_ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "swish",
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


class ConvAct(nn.Module):
    """A ``Conv2d`` and the activation after it, as one oneDNN call with a post-op where possible
    (CPU, float32, no autograd, no CPU autocast); otherwise the two modules in turn."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.act = conv, act
        self.attr = _ACTIVATIONS[type(act)]
        if isinstance(act, nn.PReLU):
            self.scalars: list = [float(act.weight.detach().reshape(-1)[0])]
        elif isinstance(act, nn.LeakyReLU):
            self.scalars = [float(act.negative_slope)]
        else:
            self.scalars = []
        self.algorithm = act.approximate if isinstance(act, nn.GELU) else ""
        self._op = _onednn_pointwise()

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        if (self._op is not None and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
                and not torch.is_grad_enabled() and cpu_autocast_dtype() is None):
            return self._op(x, c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups,
                            self.attr, self.scalars, self.algorithm)
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
    none for a network whose tiling streams its global sums in passes (mlfuse.streaming)."""
    spec = tile_spec(model)
    if spec is None or spec.streaming:  # streamed global sums cost a forward per level: never for speed
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
