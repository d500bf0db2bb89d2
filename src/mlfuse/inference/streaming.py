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
neither summed nor computed: a block (:func:`block`) stops at the unknown sum and returns a poisoned
map, a block whose input is poisoned is skipped, and a convolution of a poisoned map (glue between
blocks) only has its shape worked out. The next pass knows those sums, so each pass resolves one
level of the network's chain of global ops; the pass in which no op is unknown produces the output.

Blocks (forwards decorated with :func:`block`) are where a pass resumes: a block whose output on a
window was valid in one pass has that output kept (:class:`PassCache`: in memory up to a limit, then
in files in a temporary folder, never memory-mapped) and returned in later passes without being
computed, so each pass computes one level instead of the whole network up to it (~L/2 times fewer
operations for L levels). Only outputs a later pass still reads are kept: a ``TorchFunctionMode``
records which kept outputs every computed tensor derives from, and a kept output from which nothing
was *used* in a pass (computed on by a block or a whole-image sum, or part of the window's output;
glue such as an addition feeding a block that is itself kept does not count) is dropped after it,
so the cache holds about the frontier of the computation, not every level; outputs kept inside a
block are dropped once the block's own output is kept. Channel attention
(:func:`streamed_qkv_attention`) keeps V from the pass that sums ``Q K^T``, so its qkv map is
computed once. Over all passes a window thus costs about one forward
(``tests/inference/test_tiling.py::test_tiled_passes_compute_each_layer_about_once``). Without a cache
(``StreamingPass(known)`` alone) every pass recomputes from the input, as the reference.

Ops and blocks are identified per window forward by the block calls they run inside, themselves and
how many times they have been called there, so a module called for both images (the shared
encoder) has one entry per call, and a block returned from the cache or skipped (which calls nothing
inside it) shifts no other op's identity.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from mlfuse.errors import FusionError

#: class attribute marking a module whose forward calls :func:`reduce` exactly once
STREAMING_OP = "STREAMING_OP"


#: block outputs kept in memory between passes before further ones go to files (bytes)
CACHE_RAM_BYTES = 256 << 20


@dataclass
class _Entry:
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    nbytes: int
    channels_last: bool = False  # stored as N, H, W, C: handed back in the same memory layout
    data: Tensor | None = None  # in memory (CPU)
    path: str | None = None  # or in a file
    dead: bool = False  # no later pass reads it: its data is gone, a placeholder stands in


@dataclass
class CacheStats:
    """What a :class:`PassCache` held: peak bytes in memory and in files, bytes written and read."""

    peak_ram: int = 0
    peak_disk: int = 0
    written: int = 0
    read: int = 0
    hits: int = 0
    stored: int = 0
    dropped: int = 0
    folder: str | None = field(default=None, repr=False)


class PassCache:
    """Block outputs per window kept between streaming passes (see the module docstring).

    Up to ``ram_bytes`` of them stay in memory (CPU), the rest go to raw files in a temporary folder
    under ``folder`` (default: the system's temp dir, ``TMPDIR``), read back with plain reads (the
    page cache is not the process's memory). :meth:`close` deletes the folder."""

    def __init__(self, ram_bytes: int | None = None, folder: str | None = None,
                 stats: CacheStats | None = None) -> None:
        self.ram_limit = CACHE_RAM_BYTES if ram_bytes is None else int(ram_bytes)
        self.parent = folder
        self.entries: dict[tuple, _Entry] = {}
        self.by_window: dict[Any, list[tuple]] = {}  # window index -> its keys
        self.arity: dict[tuple, int] = {}  # block key -> 0 (its output is one map) or n (a tuple of n)
        self.ram = 0
        self.disk = 0
        self.stats = stats if stats is not None else CacheStats()  # a caller's object: read after the run
        self._dir: str | None = None
        self._files = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Tensor | _Entry | None:
        """A fresh copy of the kept output (the caller may change it in place), the dead entry, or
        ``None``."""
        with self._lock:
            entry = self.entries.get(key)
            if entry is None or entry.dead:
                return entry
            self.stats.hits += 1
            data, path = entry.data, entry.path
        if data is not None:
            out = data.clone()
        else:
            raw = np.fromfile(path, dtype=np.uint8)
            with self._lock:
                self.stats.read += raw.nbytes
            n, c, h, w = entry.shape if entry.channels_last else (0, 0, 0, 0)
            out = torch.from_numpy(raw).view(entry.dtype)
            out = out.reshape(n, h, w, c).permute(0, 3, 1, 2) if entry.channels_last else out.reshape(entry.shape)
        return out.to(entry.device)

    def put(self, key: tuple, value: Tensor) -> None:
        """Keep a copy of ``value`` (a block's valid output on one window)."""
        nbytes = value.numel() * value.element_size()
        channels_last = (value.dim() == 4 and not value.is_contiguous()
                         and value.is_contiguous(memory_format=torch.channels_last))
        entry = _Entry(tuple(value.shape), value.dtype, value.device, nbytes, channels_last)
        with self._lock:
            to_ram = self.ram + nbytes <= self.ram_limit
            if to_ram:
                self.ram += nbytes
            else:
                self.disk += nbytes
                self._files += 1
                number = self._files
            self.stats.peak_ram = max(self.stats.peak_ram, self.ram)
            self.stats.peak_disk = max(self.stats.peak_disk, self.disk)
            self.stats.stored += 1
        value = value.detach().to("cpu", copy=to_ram)
        if to_ram:
            entry.data = value.contiguous(memory_format=torch.channels_last if channels_last
                                          else torch.contiguous_format)
        else:
            entry.path = os.path.join(self._folder(), f"{number}.bin")
            flat = (value.permute(0, 2, 3, 1) if channels_last else value).contiguous().reshape(-1)
            try:
                _write_raw(flat, entry.path)
            except OSError as exc:
                raise FusionError(f"tiled inference: cannot write intermediate maps to {self._dir} "
                                  f"({exc.strerror or exc}); set TMPDIR to a folder with more free space") from None
            with self._lock:
                self.stats.written += nbytes
        with self._lock:
            self.entries[key] = entry
            self.by_window.setdefault(key[0], []).append(key)

    def kill(self, key: tuple) -> None:
        """No later pass reads this output: free its data, keep the entry (a placeholder stands in)."""
        with self._lock:
            entry = self.entries.get(key)
            if entry is None or entry.dead:
                return
            entry.dead = True
            self.stats.dropped += 1
            if entry.data is not None:
                self.ram -= entry.nbytes
                entry.data = None
            path, entry.path = entry.path, None
            if path is not None:
                self.disk -= entry.nbytes
        if path is not None:
            os.unlink(path)

    def keys(self, window: Any) -> list[tuple]:
        """The keys of one window's entries (live and dropped)."""
        with self._lock:
            return list(self.by_window.get(window, ()))

    def kill_all(self, keys: Any) -> None:
        for key in keys:
            self.kill(key)

    def _folder(self) -> str:
        with self._lock:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="mlfuse-passes-", dir=self.parent)
                self.stats.folder = self._dir
            return self._dir

    def close(self) -> None:
        """Forget every entry and delete the folder."""
        self.entries.clear()
        self.by_window.clear()
        self.arity.clear()
        self.ram = self.disk = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _write_raw(flat: Tensor, path: str) -> None:
    """The bytes of a contiguous CPU tensor to a new file (plain write: no memory map)."""
    flat.view(torch.uint8).numpy().tofile(path)


class StreamingPass:
    """One pass over the windows: the sums known from earlier passes (read only), the partial
    sums this pass collects (float64, added under a lock: windows may run in threads) and, when
    given, the cache of block outputs that the passes share."""

    def __init__(self, known: dict[tuple[int, int], tuple[Tensor, ...]], cache: PassCache | None = None) -> None:
        self.known = known
        self.partial: dict[tuple[int, int], list[Tensor]] = {}
        self.poisoned = False
        self.lock = threading.Lock()
        self.cache = cache


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


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype of the calling thread on ``device_type`` ("cpu", "cuda"), ``None`` when off."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    getter = getattr(torch, "get_autocast_dtype", None)
    if getter is not None:
        return getter(device_type)
    return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


class _Provenance(TorchFunctionMode):
    """Records, for every tensor an operation computes from kept block outputs or from a poisoned map,
    which kept outputs it derives from, whether from a dropped one's placeholder and whether from a
    poisoned map (not every operation passes NaN on: a fused convolution + ReLU turns it into 0, so
    "poisoned" is this flag, not the values). Glue between blocks (an addition, a concatenation, a
    1x1 convolution) keeps running in every pass; only a *use* of its result (:func:`_use`: a block
    or a whole-image sum computing on it, or the window's output) keeps the kept outputs it came
    from. An in-place operation (``x.add_(y)``, ``x[i] = y``) marks its target as well."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d and _LOCAL.origin and args and _origins(args[:1])[2]:
            # a convolution of a poisoned map (glue after an unknown sum): its values are never read,
            # so only its shape is computed (on the meta device), not its multiply-adds
            x = args[0]
            dtype = (autocast_dtype(x.device.type) if x.is_floating_point() else None) or x.dtype  # autocast's

            def meta(a: Any) -> Any:
                return a.to("meta", dtype if a.is_floating_point() else a.dtype) if isinstance(a, Tensor) else a

            shape = func(*[meta(a) for a in args], **{k: meta(v) for k, v in kwargs.items()}).shape
            out = x.new_full(shape, float("nan"), dtype=dtype)
        else:
            out = func(*args, **kwargs)
        if _LOCAL.origin:
            keys, dropped, poisoned = _origins((*args, *kwargs.values()))
            if keys or dropped or poisoned:
                targets = list(_tensors(out))
                name = getattr(func, "__name__", "")
                if args and isinstance(args[0], Tensor) and (name.endswith("_") or name in _IN_PLACE):
                    targets.append(args[0])
                for t in targets:
                    _mark(t, keys, dropped, poisoned)
        return out


_IN_PLACE = {"__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "copy_"}


def _mark(t: Tensor, keys: frozenset = frozenset(), dropped: bool = False, poisoned: bool = False) -> None:
    found = _LOCAL.origin.get(id(t))
    if found is not None and found[0]() is t:  # an in-place target keeps what it had
        keys, dropped, poisoned = keys | found[1], dropped or found[2], poisoned or found[3]
    _LOCAL.origin[id(t)] = (weakref.ref(t), keys, dropped, poisoned)


def _tensors(values: Any) -> Iterator[Tensor]:
    for value in values if isinstance(values, (list, tuple)) else (values,):
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (t for t in value if isinstance(t, Tensor))


def _origins(values: Any) -> tuple[frozenset, bool, bool]:
    keys: frozenset = frozenset()
    dropped = poisoned = False
    origin = getattr(_LOCAL, "origin", None) or {}
    for t in _tensors(values):
        found = origin.get(id(t))
        if found is not None and found[0]() is t:
            keys, dropped, poisoned = keys | found[1], dropped or found[2], poisoned or found[3]
    return keys, dropped, poisoned


def _use(values: Any, what: str, consume: bool = True) -> frozenset:
    """``values`` are computed on: the kept outputs they derive from (returned) stay kept unless
    ``consume`` is false; one derived from a dropped output is an internal error (its data is gone)."""
    keys, dropped, _ = _origins(values)
    if dropped:
        raise RuntimeError(f"tiled inference: a dropped intermediate map was read (by {what})")
    if consume:
        _LOCAL.consumed |= keys
    return keys


def use_output(y: Tensor) -> None:
    """The window's output is about to be kept: it must not derive from a dropped map."""
    if active():
        _use((y,), "the window's output")
        if _origins((y,))[2]:  # an op's sums are still unknown: this pass cannot be the last
            with _PASS.lock:
                _PASS.poisoned = True


def _poisoned(*values: Any) -> bool:
    """Whether a map derives from an op whose sums are unknown in this pass (the provenance flag;
    NaN in the first element as well, for maps made outside the recorded operations)."""
    if _origins(values)[2]:
        return True
    return any(bool(torch.isnan(t.reshape(-1)[0])) for t in _tensors(values) if t.is_floating_point())


@contextmanager
def window(size: tuple[int, int], core: tuple[slice, slice], index: int | None = None) -> Iterator[None]:
    """The calling thread now runs the network on one window of ``size`` (h, w) input pixels whose
    output core is ``core`` (slices into the window). ``index`` names the window in the pass's
    :class:`PassCache` (none: nothing is kept for it)."""
    previous = getattr(_LOCAL, "window", None)
    _LOCAL.window = (size, core)
    _LOCAL.scope = ()  # the block calls the current op runs inside: ((id(block), n), ...)
    _LOCAL.abort = False  # whether the innermost block stops at an unknown sum (see block())
    _LOCAL.counts = {}  # (scope, id(module)) -> calls so far
    _LOCAL.index = index
    _LOCAL.handed = {}  # cache key -> weak ref: kept outputs handed out in this window
    # id(tensor) -> (weak ref, kept outputs it derives from, from a placeholder?, poisoned?)
    _LOCAL.origin = {}
    _LOCAL.placeholders = []  # dropped outputs' stand-ins (tiny), held so their ids stay theirs
    _LOCAL.consumed = set()
    cache = _PASS.cache if _PASS is not None and index is not None else None
    try:
        with _Provenance():
            yield
        if cache is not None:
            for key in _LOCAL.handed:
                if key not in _LOCAL.consumed:  # nothing computed on it: no later pass needs it
                    cache.kill(key)
    finally:
        _LOCAL.window = previous
        _LOCAL.handed, _LOCAL.origin, _LOCAL.placeholders, _LOCAL.consumed = {}, {}, [], set()


def active() -> bool:
    """Whether the calling thread is inside a window of a tiled pass."""
    return _PASS is not None and getattr(_LOCAL, "window", None) is not None


def _count(module: nn.Module) -> int:
    """Calls of ``module`` so far inside the current block call (or the window's forward)."""
    slot = (_LOCAL.scope, id(module))
    n = _LOCAL.counts.get(slot, 0)
    _LOCAL.counts[slot] = n + 1
    return n


def _key(op: nn.Module) -> tuple:
    """An op's identity in a window's forward: the block calls it runs inside, itself, its call number
    there. A block returned from the cache or skipped calls nothing inside it, and nothing outside it
    shifts, so keys agree between passes however many blocks each pass computes."""
    return _LOCAL.scope, id(op), _count(op)


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
    key = _key(op)
    if key in _PASS.known:  # computed on now: the enclosing block's or the result's use decides
        _use(maps, type(op).__name__, consume=False)
        return _PASS.known[key]
    _add_sums(op, key, sums, maps)
    return None


def _add_sums(op: nn.Module, key: tuple, sums: Callable[..., tuple[Tensor, ...]], maps: tuple[Tensor, ...]) -> None:
    """Add ``sums`` over the window's core to the pass's partial sums of the op ``key`` (unknown so far)."""
    state = _PASS
    _use(maps, type(op).__name__)  # recomputed in the next pass
    if _origins(maps)[2]:  # depends on an op unknown in this pass
        with state.lock:
            state.poisoned = True
        return
    with torch.autocast(maps[0].device.type, enabled=False):
        part = [t.double() for t in sums(*(core_of(m).float() for m in maps))]
    with state.lock:
        if not all(bool(torch.isfinite(t).all()) for t in part):
            state.poisoned = True  # an input depends on an op unknown in this pass (or is not finite)
        elif key in state.partial:
            state.partial[key] = [a + b for a, b in zip(state.partial[key], part, strict=True)]
        else:
            state.partial[key] = part


class _Unknown(Exception):
    """Raised by :func:`poison` inside a block whose output is shaped like its input: the rest of the
    block's forward would only compute on NaN, so the block stops there (see :func:`block`)."""


def poison(like: Tensor) -> Tensor:
    """A NaN map shaped like ``like``: the output of an op whose sums are not known yet. Inside a
    block of the default kind (``poisoned="input"``) the block's forward stops here instead, and the
    block returns a poisoned map (its sums were added already: nothing after them in the block counts)."""
    if active() and getattr(_LOCAL, "abort", False):
        raise _Unknown
    out = torch.full_like(like, float("nan"))
    if active():
        _mark(out, poisoned=True)
    return out


def _poisoned_map(x: Tensor, channels: int | None) -> Tensor:
    """A NaN map standing for a block's unknown output: shaped like ``x``, with ``channels`` channels if given."""
    shape = (x.shape[0], channels if channels is not None else x.shape[1], *x.shape[2:])
    out = x.new_full(shape, float("nan"))
    _mark(out, poisoned=True)
    return out


def _nested(keys: Any, here: tuple) -> set:
    """The cache keys among ``keys`` (all of the current window) of blocks called inside the block call ``here``."""
    n = len(here)
    return {k for k in keys if len(k[1]) > n and k[1][:n] == here}


def _hand_out(cache: PassCache, key: tuple) -> Tensor:
    kept = cache.get(key)
    if isinstance(kept, _Entry):  # dropped: nothing computed on it in the pass after it was kept
        placeholder = torch.full((1,) * len(kept.shape), float("nan"), dtype=kept.dtype,
                                 device=kept.device).expand(kept.shape)
        _LOCAL.placeholders.append(placeholder)
        _LOCAL.origin[id(placeholder)] = (weakref.ref(placeholder), frozenset(), True, False)
        return placeholder
    _LOCAL.handed[key] = weakref.ref(kept)
    _LOCAL.origin[id(kept)] = (weakref.ref(kept), frozenset((key,)), False, False)  # weak: freed as usual
    return kept


def _keep(cache: PassCache, key: tuple, out: Tensor) -> None:
    """Keep a block's output; from now on it stands for itself (a use of it keeps it, not its inputs),
    and it is dropped at the window's end if nothing uses it (its readers are all kept already)."""
    cache.put(key, out)
    _LOCAL.handed[key] = weakref.ref(out)
    _LOCAL.origin[id(out)] = (weakref.ref(out), frozenset((key,)), False, False)


def block(forward: Callable[..., Any] | None = None, *, poisoned: str = "input") -> Callable[..., Any]:
    """Decorator for the ``forward(self, x, ...)`` of a block (a module whose output is one map or a
    tuple of maps): in a tiled pass, a kept output from an earlier pass is returned without computing,
    and a valid output (no input, and no whole-image sum inside, unknown in this pass) is kept for
    later passes. A poisoned ``x`` (``poisoned="input"``, the default) skips the block, whose output
    would be poisoned too: ``x`` itself is returned, or a NaN map of ``self.block_out_channels``
    channels where the block sets that; such a block also stops at the first sum unknown in this
    pass (:func:`poison` raises inside it) and returns a NaN map of that shape, since the rest of its
    forward would only compute on NaN. ``poisoned="compute"`` runs the forward instead (for blocks
    whose output is not shaped like ``x``: its inner blocks still skip). Outside tiled inference the
    forward runs untouched."""
    if poisoned not in ("input", "compute"):
        raise ValueError(f"poisoned must be 'input' or 'compute', not {poisoned!r}")
    if forward is None:
        return functools.partial(block, poisoned=poisoned)

    @functools.wraps(forward)
    def run(self: nn.Module, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        if not active():
            return forward(self, x, *args, **kwargs)
        here = (*_LOCAL.scope, (id(self), _count(self)))
        key = (_LOCAL.index, here)
        cache = _PASS.cache if _LOCAL.index is not None else None
        arity = cache.arity.get(key) if cache is not None else None  # 0: one map, n: a tuple of n
        if arity is not None:
            if arity == 0:
                return _hand_out(cache, key)
            return tuple(_hand_out(cache, (*key, i)) for i in range(arity))
        # what it reads stays kept unless its own output is kept now (a later pass then returns that)
        inputs = (x, *args, *kwargs.values())
        used = _use(inputs, type(self).__name__, consume=False)
        if poisoned == "input" and _poisoned(x):
            _LOCAL.consumed |= used  # computed in a later pass
            channels = getattr(self, "block_out_channels", None)  # a block that changes the channel count
            if channels is None:
                return x
            out = x[:, :1].new_full((1,) * x.dim(), float("nan")).expand(x.shape[0], channels, *x.shape[2:])
            _mark(out, poisoned=True)
            return out
        valid = not _poisoned(*inputs)
        outer, _LOCAL.scope = _LOCAL.scope, here
        outer_abort, _LOCAL.abort = _LOCAL.abort, poisoned == "input"
        aborted = False
        try:
            out = forward(self, x, *args, **kwargs)
        except _Unknown:  # a sum unknown in this pass: the rest of the forward would compute on NaN
            out = _poisoned_map(x, getattr(self, "block_out_channels", None))
            aborted = True
        finally:
            _LOCAL.scope, _LOCAL.abort = outer, outer_abort
        outs = (out,) if isinstance(out, Tensor) else out
        if not valid or _poisoned(outs):
            for t in _tensors(outs):
                _mark(t, poisoned=True)
            valid = False
        if not (valid and isinstance(outs, tuple) and all(isinstance(t, Tensor) for t in outs)):
            # not kept: computed again in a later pass, from its inputs and the outputs kept inside it
            _LOCAL.consumed |= used | (_nested(_LOCAL.handed, here) if aborted else set())
        elif cache is not None:
            for i, t in enumerate(outs):
                _keep(cache, key if isinstance(out, Tensor) else (*key, i), t)
            cache.arity[key] = 0 if isinstance(out, Tensor) else len(outs)
            cache.kill_all(_nested(cache.keys(_LOCAL.index), here))  # later passes return this block whole
        return out

    run._streaming_block = True  # type: ignore[attr-defined]
    return run


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
    return _attend_values(stats, temperature, v, heads)


def _attend_values(stats: tuple[Tensor, ...], temperature: Tensor, v: Tensor, heads: int) -> Tensor:
    """The whole-image attention (from its sums) applied to a window's V, per head."""
    b, c, h, w = v.shape
    attn = attention_matrix(stats, temperature).to(v.dtype)
    return (attn @ v.reshape(b, heads, c // heads, h * w)).reshape(b, c, h, w)


@functools.partial(block, poisoned="compute")
def _value_map(op: nn.Module, x: Tensor, qkv: Callable[[Tensor], Tensor], key: tuple, heads: int) -> Tensor:
    """V of ``qkv(x)``; where the op's sums are unknown in this pass, its Q K^T sums are added on the
    way. A block, so later passes get V back without computing ``qkv`` again."""
    q, k, v = qkv(x).chunk(3, dim=1)
    if key not in _PASS.known:
        _add_sums(op, key, lambda q_, k_: attention_sums(q_, k_, heads), (q, k))
    return v


def streamed_qkv_attention(op: nn.Module, x: Tensor, qkv: Callable[[Tensor], Tensor], temperature: Tensor,
                           heads: int) -> Tensor:
    """:func:`streamed_channel_attention` for ``q, k, v = qkv(x).chunk(3)``, with ``qkv`` computed once
    over the passes: the pass that sums ``Q K^T`` keeps V (C channels, not the 3C of the whole map)
    and the next one applies the attention to it. ``qkv`` is most of the cost of CDDFuse-family
    networks (the Lite attention's full 3x3 convolution over 3C channels)."""
    key = _key(op)
    v = _value_map(op, x, qkv, key, heads)
    stats = _PASS.known.get(key)
    if stats is None:
        _use((v,), type(op).__name__)  # V is read in the next pass
        return poison(v)
    return _attend_values(stats, temperature, v, heads)
