"""Whole-image reductions inside an unchanged network forward, for exact tiled inference.

The CDDFuse family's global operations are all of one kind: a small quantity summed over every
position of a feature map (Restormer's channel attention needs ``Q K^T`` and the squared L2 norms of
the rows of Q and K, summed over H*W, Zamir et al. CVPR 2022 eq. 2; a global average pool needs
the channel sums), after which every position's output is local again. Such an op calls
:func:`reduce` with a function giving its sums; outside tiled inference :func:`active` is false
and the op runs the authors' arithmetic untouched.

During tiled inference (:func:`mlfuse.inference.tiling.tiled_forward`) the network's own forward runs on one
window at a time, in *passes*. In a pass, an op whose whole-image sums are known (from earlier
passes) uses them and is exact on its window; the first ops whose sums are unknown and whose
inputs are valid add their sums over the window's *core* (so every position counts once) and
return NaN (a "poisoned" map); everything downstream of a poisoned map is poisoned as well and is
neither summed nor, for blocks that call :func:`skip`, computed. The next pass knows those sums, so
each pass resolves one level of the network's chain of global ops; the pass in which no op is
unknown produces the output. Memory stays one window's worth; the cost is one forward up to each
level per level (see ``benchmarks/bench_tiling.py``).

Ops are identified per window forward by (module, how many times it has been called), so a
module called for both images (the shared encoder) has one entry per call. A block skipped by
:func:`skip` advances the call counts of the ops inside it, which must be called once per call of
the block (true for every block here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

#: class attribute marking a module whose forward calls :func:`reduce` exactly once
STREAMING_OP = "STREAMING_OP"


class StreamingPass:
    """One pass over the windows: the sums known from earlier passes (read only) and the partial
    sums this pass collects (float64, added under a lock: windows may run in threads)."""

    def __init__(self, known: dict[tuple[int, int], tuple[Tensor, ...]]) -> None:
        self.known = known
        self.partial: dict[tuple[int, int], list[Tensor]] = {}
        self.poisoned = False
        self.lock = threading.Lock()


_PASS: StreamingPass | None = None
_LOCAL = threading.local()


@contextmanager
def streaming_pass(state: StreamingPass) -> Iterator[StreamingPass]:
    """Make ``state`` the pass that every thread's :func:`window` scopes report to."""
    global _PASS
    previous, _PASS = _PASS, state
    try:
        yield state
    finally:
        _PASS = previous


@contextmanager
def window(size: tuple[int, int], core: tuple[slice, slice]) -> Iterator[None]:
    """The calling thread now runs the network on one window of ``size`` (h, w) input pixels whose
    output core is ``core`` (slices into the window)."""
    previous = getattr(_LOCAL, "window", None)
    _LOCAL.window = (size, core)
    _LOCAL.calls = {}
    try:
        yield
    finally:
        _LOCAL.window = previous


def active() -> bool:
    """Whether the calling thread is inside a window of a tiled pass."""
    return _PASS is not None and getattr(_LOCAL, "window", None) is not None


def _key(op: nn.Module) -> tuple[int, int]:
    calls = _LOCAL.calls
    n = calls.get(id(op), 0)
    calls[id(op)] = n + 1
    return id(op), n


def core_of(x: Tensor) -> Tensor:
    """The part of a feature map (..., h', w') over the window's core: the window is (h, w) input
    pixels, so the map is at scale h/h' (an integer: windows start on the network's grid)."""
    (h, w), (rows, cols) = _LOCAL.window
    fh, fw = x.shape[-2:]
    if h % fh or w % fw or rows.start % (h // fh) or cols.start % (w // fw):
        raise RuntimeError(f"feature map {fh}x{fw} is not on the grid of a {h}x{w} window")
    sy, sx = h // fh, w // fw
    return x[..., rows.start // sy: -(-rows.stop // sy), cols.start // sx: -(-cols.stop // sx)]


def reduce(op: nn.Module, sums: Callable[..., tuple[Tensor, ...]], *maps: Tensor) -> tuple[Tensor, ...] | None:
    """The whole-image value of ``sums(*maps)`` (a tuple of tensors, each a sum over positions),
    float64, or ``None`` when it is not known yet: the caller then returns :func:`poison` of its
    output's shape. Call only when :func:`active`."""
    state = _PASS
    key = _key(op)
    if key in state.known:
        return state.known[key]
    with torch.autocast(maps[0].device.type, enabled=False):
        part = [t.double() for t in sums(*(core_of(m).float() for m in maps))]
    with state.lock:
        if not all(bool(torch.isfinite(t).all()) for t in part):
            state.poisoned = True  # an input depends on an op unknown in this pass (or is not finite)
        elif key in state.partial:
            state.partial[key] = [a + b for a, b in zip(state.partial[key], part, strict=True)]
        else:
            state.partial[key] = part
    return None


def poison(like: Tensor) -> Tensor:
    """A NaN map shaped like ``like``: the output of an op whose sums are not known yet."""
    return torch.full_like(like, float("nan"))


def skip(block: nn.Module, x: Tensor) -> bool:
    """True (and the call counts of the ops inside ``block`` advanced) when ``x`` is poisoned, so
    ``block`` may return ``x`` without computing: its output would be poisoned too."""
    if not active() or not bool(torch.isnan(x.reshape(-1)[0])):
        return False
    for m in block.modules():
        if getattr(m, STREAMING_OP, False):
            _key(m)
    return True


# ------------------------------------------------------------------------------ channel attention

def attention_sums(q: Tensor, k: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(Q K^T, |q_i|^2, |k_j|^2)`` per head over the positions of q, k (B, C, h, w)."""
    b, c = q.shape[:2]
    qh = q.reshape(b, heads, c // heads, -1)
    kh = k.reshape(b, heads, c // heads, -1)
    return qh @ kh.transpose(-2, -1), (qh * qh).sum(-1), (kh * kh).sum(-1)


def norm_denominator(sq: Tensor) -> Tensor:
    """``max(||x||, 1e-12)`` from a sum of squares: ``F.normalize``'s divisor."""
    return sq.sqrt().clamp_min(1e-12)


def attention_matrix(stats: tuple[Tensor, ...], temperature: Tensor) -> Tensor:
    """``softmax(normalize(q) normalize(k)^T * temperature)`` from :func:`attention_sums` over the
    whole image: ``normalize(q)_i . normalize(k)_j = (Q K^T)_ij / (|q_i| |k_j|)``."""
    g, nq, nk = stats
    logits = g / (norm_denominator(nq)[..., :, None] * norm_denominator(nk)[..., None, :])
    return (logits * temperature.double()).softmax(dim=-1)


def streamed_channel_attention(op: nn.Module, q: Tensor, k: Tensor, v: Tensor, temperature: Tensor,
                               heads: int) -> Tensor:
    """:func:`mlfuse.models.blocks.attention.l2_channel_attention` on a window of a tiled pass."""
    stats = reduce(op, lambda q_, k_: attention_sums(q_, k_, heads), q, k)
    if stats is None:
        return poison(v)
    b, c, h, w = v.shape
    attn = attention_matrix(stats, temperature).to(v.dtype)
    return (attn @ v.reshape(b, heads, c // heads, h * w)).reshape(b, c, h, w)
