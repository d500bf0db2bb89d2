"""Exact tiled inference with bounded memory, for every network that declares how to tile it.

A fused image is computed tile by tile: each tile's network input is its *core* plus a halo that
covers the network's receptive field, and only the core of the output is kept. Tiles start on the
network's down-sampling grid, so every strided layer sees the same pixels as in the untiled
forward, and a window touching the image border sees the network's own zero padding there. The
tiled raw output then equals the untiled one up to float rounding.

Operations over *all* positions (a softmax over H*W, a global average pool, a map computed at low
resolution and resized to the full size) cannot be done per tile. A network that has them computes
them in streaming passes over the tiles first (:meth:`TiledNetwork.tile_context`) and passes the
small result to every tile (:meth:`TiledNetwork.tile_forward`). The per-image min-max of the
output rule is applied by the pipeline to the assembled raw output, never per tile.

Declaring tiling (on the network class, or as ``ModelCard.tiling``)::

    class MyNet(FusionModel):
        TILE_SPEC = TileSpec(halo=12, align=4)       # local ops only: nothing else needed

        # with global ops, also:
        TILE_SPEC = TileSpec(halo=6, align=1, global_ops=("softmax over H*W in ...",))
        def tile_context(self, structural, functional, tiler): ...   # streaming passes
        def tile_forward(self, structural, functional, context, window): ...  # one window

        # or, when every global op is a sum over positions computed inside the network's own forward
        # through mlfuse.inference.streaming (the CDDFuse family): no hooks, one pass per level of global ops
        TILE_SPEC = TileSpec(halo=27, streaming=True, global_ops=("channel attention sums",))

``halo``: pixels of context each side that make a window's core exact (the receptive radius of
``tile_forward``, counted at input resolution through every down-sampled level); ``align``: tile
origins are multiples of it (the product of the strides before any layer whose grid matters,
e.g. 8 for three stride-2 stages); ``global_ops``: what ``tile_context`` computes, in words;
``bytes_per_pixel``: working memory per window pixel over a whole tiled run (measure it: peak RSS
over a run, not one call, as the allocator keeps freed blocks), for ``tile="auto"``. Besides
softmax/pooling over all positions, anything whose result depends on the image size is global: a
resize to the input's size after an odd-size down-sampling has a scale that only the whole image
knows (MLFuse's edge branch). Attention over channels summed over all positions (Restormer's MDTA
in CDDFuse) is global too and needs one streaming pass per level of such blocks; the passes keep
each block's valid output on each window (:class:`mlfuse.inference.streaming.PassCache`: in memory
up to ``streaming.CACHE_RAM_BYTES``, beyond that in files in a temporary folder), so a pass resumes
where the previous one stopped instead of recomputing from the input.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from mlfuse.errors import MLFuseError
from mlfuse.inference import streaming
from mlfuse.runtime import available_memory

#: tile budget used by ``tile="auto"`` when none is given: at most this, and at most a quarter of
#: the memory the system reports available (GPU: half the free device memory)
DEFAULT_BUDGET_BYTES = 1 << 30


class TilingError(MLFuseError):
    """A tile option cannot be honoured (bad value, or a network that declares no tiling)."""


@dataclass(frozen=True)
class TileSpec:
    """How a network can be tiled exactly (see the module docstring)."""

    halo: int
    align: int = 1
    global_ops: tuple[str, ...] = ()
    bytes_per_pixel: int = 4096
    #: the global ops reduce through :mod:`mlfuse.inference.streaming` inside the network's own
    #: forward: tiled inference runs that forward per window in passes, one per level of global ops
    streaming: bool = False
    #: peak memory of the *untiled* forward per input pixel (``None``: ``bytes_per_pixel``), which
    #: ``tile="auto"`` and the ``--tile off`` check compare with the memory available
    untiled_bytes_per_pixel: int | None = None

    def __post_init__(self) -> None:
        if self.halo < 0 or self.align < 1 or self.bytes_per_pixel < 1:
            raise ValueError(f"invalid TileSpec {self}")


@dataclass(frozen=True)
class Window:
    """One tile: the region the network sees (``top:bottom``, ``left:right``, image coordinates)
    and the part of the output it is responsible for (``core_*``), in an image of ``height x width``."""

    top: int
    left: int
    bottom: int
    right: int
    core_top: int
    core_left: int
    core_bottom: int
    core_right: int
    height: int
    width: int

    @property
    def region(self) -> tuple[slice, slice]:
        """Slices of the image the network sees."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def core(self) -> tuple[slice, slice]:
        """Slices of the image this window's output fills."""
        return slice(self.core_top, self.core_bottom), slice(self.core_left, self.core_right)

    @property
    def core_in_region(self) -> tuple[slice, slice]:
        """Slices of the window's own output that are kept."""
        return (slice(self.core_top - self.top, self.core_bottom - self.top),
                slice(self.core_left - self.left, self.core_right - self.left))


@runtime_checkable
class TiledNetwork(Protocol):
    """The hooks of a network with whole-image operations (``TileSpec.global_ops`` non-empty)."""

    def tile_context(self, structural: Tensor, functional: Tensor, tiler: Tiler) -> Any:
        """Streaming passes over the full-size inputs (CPU, B x 1 x H x W) that compute every
        whole-image quantity; the result must be small (it is handed to every tile)."""

    def tile_forward(self, structural: Tensor, functional: Tensor, context: Any, window: Window) -> Tensor:
        """Raw output (B x 1 x h x w) for the window's region given the context."""


def _ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


def _axis_windows(size: int, tile: int, halo: int, align: int, minimum: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, core_start, core_stop) along one axis; starts on multiples of ``align``.

    Every window has the same length (``tile`` + 2 halos, at least ``minimum``) where the image is
    long enough: a window at the border is moved inward rather than cut, so it sees more context
    (harmless) and every window allocates the same buffers, which the allocator then reuses
    instead of fragmenting memory across sizes."""
    halo = _ceil_to(halo, align)
    length = min(size, max(tile + 2 * halo, _ceil_to(minimum, align)))
    out = []
    for c0 in range(0, size, tile):
        c1 = min(c0 + tile, size)
        a = max(0, min(c0 - halo, size - length)) // align * align
        b = min(size, max(a + length, c1 + halo))
        out.append((a, b, c0, c1))
    return out


def plan_windows(height: int, width: int, tile: int | tuple[int, int], halo: int, align: int = 1,
                 min_size: tuple[int, int] = (1, 1)) -> list[Window]:
    """Row-major tiles of ``tile`` pixels (rounded up to a multiple of ``align``) with at least
    ``halo`` pixels of context each side (rounded up to ``align``) except at the image border;
    windows are all the same size where the image allows (see :func:`_axis_windows`)."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    th, tw = _ceil_to(max(th, 1), align), _ceil_to(max(tw, 1), align)
    rows = _axis_windows(height, th, halo, align, min_size[0])
    cols = _axis_windows(width, tw, halo, align, min_size[1])
    return [Window(r0, c0, r1, c1, cr0, cc0, cr1, cc1, height, width)
            for (r0, r1, cr0, cr1) in rows for (c0, c1, cc0, cc1) in cols]


class Tiler:
    """What a network's :meth:`TiledNetwork.tile_context` uses to stream over the image:
    windows of the chosen tile size, crops moved to the network's device, and :meth:`map`, which
    runs a function over windows in order (or ``workers`` at a time, each op single-threaded)."""

    def __init__(self, tile: int | tuple[int, int], device: torch.device, *, progress: bool = False,
                 workers: int = 1, scale: float | None = None) -> None:
        self.tile = tile
        self.device = torch.device(device)
        self.progress = progress
        self.workers = max(1, int(workers))
        self.scale = scale

    def windows(self, height: int, width: int, halo: int, align: int = 1,
                min_size: tuple[int, int] = (1, 1)) -> list[Window]:
        return plan_windows(height, width, self.tile, halo, align, min_size)

    def load(self, image: Tensor, window: Window) -> Tensor:
        """The window's region of a B x C x H x W image, contiguous on the network's device. An
        integer image (8/16-bit pixels, 1-2 bytes a pixel instead of 4) becomes float32
        ``pixels / scale`` here, window by window: the same IEEE division, so the same values, as
        converting the whole image first."""
        rows, cols = window.region
        crop = image[..., rows, cols]
        if not crop.is_floating_point():
            if self.scale is None:
                raise TilingError("tiled inference on integer pixels needs their full-scale value (scale)")
            # on the CPU, before the move: CUDA divides by a host scalar as a multiplication by its
            # reciprocal, which is not the same float32 value for every pixel
            crop = to_unit_float(crop, self.scale)
        return crop.to(self.device, non_blocking=True).contiguous()

    def iterate(self, windows: Iterable[Window], desc: str) -> Iterator[Window]:
        windows = list(windows)
        return iter(tqdm(windows, desc=desc, unit="tile", leave=False,
                         disable=not self.progress or len(windows) < 2))

    def map(self, fn: Callable[[Window], Any], windows: Iterable[Window], desc: str = "tiles") -> list:
        """``[fn(w) for w in windows]``, in order. With ``workers > 1`` (CPU) the windows run in
        that many threads at once with one intra-op thread each: independent tiles keep every core
        busy without the synchronisation of splitting each small op; the caller's grad, inference
        and autocast modes are carried into the threads, and the thread setting is restored."""
        windows = list(windows)
        threads = torch.get_num_threads()
        workers = min(self.workers, threads)  # never more cores than torch was given
        if workers == 1 or len(windows) < 2 or self.device.type != "cpu":
            return [fn(w) for w in self.iterate(windows, desc)]
        modes = _thread_modes()
        torch.set_num_threads(1)  # new threads start with the process setting
        try:
            with ThreadPoolExecutor(workers) as pool:
                results = pool.map(lambda w: _run_with_modes(modes, fn, w), windows)
                return list(tqdm(results, total=len(windows), desc=desc, unit="tile", leave=False,
                                 disable=not self.progress))
        finally:
            torch.set_num_threads(threads)


def cpu_autocast_dtype() -> torch.dtype | None:
    """The CPU autocast dtype of the calling thread, ``None`` when CPU autocast is off."""
    return streaming.autocast_dtype("cpu")


def _thread_modes() -> tuple:
    """The calling thread's autograd / inference / CPU-autocast state (thread-local in torch)."""
    return torch.is_grad_enabled(), torch.is_inference_mode_enabled(), cpu_autocast_dtype()


def _run_with_modes(modes: tuple, fn: Callable[[Window], Any], window: Window) -> Any:
    grad, inference, dtype = modes
    torch.set_num_threads(1)
    with torch.inference_mode(inference), torch.set_grad_enabled(grad), \
            torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        return fn(window)


def tile_spec(model: nn.Module) -> TileSpec | None:
    """The model's tiling declaration: ``TILE_SPEC`` on the network (or on the module a wrapper
    exposes as ``inner``), else ``card.tiling``; ``None`` when it declares none."""
    for obj in (model, getattr(model, "inner", None)):
        spec = getattr(obj, "TILE_SPEC", None)
        if isinstance(spec, TileSpec):
            return spec
    card = getattr(model, "card", None)
    spec = card.tiling if card is not None else None
    return spec if isinstance(spec, TileSpec) else None


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def default_budget(device: torch.device) -> int:
    """Bytes a tile may use: ``DEFAULT_BUDGET_BYTES``, less where the machine has less free memory
    (a quarter of :func:`available_memory`; CUDA: half the free device memory)."""
    available = available_memory(device)
    if available is None:
        return DEFAULT_BUDGET_BYTES
    if torch.device(device).type == "cuda":
        return max(64 << 20, available // 2)
    return max(64 << 20, min(DEFAULT_BUDGET_BYTES, available // 4))


def untiled_bytes(spec: TileSpec, height: int, width: int) -> int:
    """Estimated peak memory of the untiled forward on a ``height x width`` pair (from the spec's
    measured per-pixel figure, ``benchmarks/bench_memory.py``)."""
    return height * width * (spec.untiled_bytes_per_pixel or spec.bytes_per_pixel)


def check_untiled_fits(model: nn.Module, height: int, width: int, available: int | None = None) -> None:
    """Raise :class:`TilingError` (one line suggesting ``--tile auto``) when the untiled forward's
    estimated memory exceeds what the model's device has available; nothing for a network that
    declares no tiling (no estimate, and nothing else to offer)."""
    spec = tile_spec(model)
    if spec is None:
        return
    available = available_memory(_model_device(model)) if available is None else available
    need = untiled_bytes(spec, height, width)
    if available is not None and need > available:
        name = getattr(getattr(model, "card", None), "name", type(model).__name__)
        raise TilingError(f"--tile off: '{name}' on {width}x{height} needs about {need / 2**30:.1f} GiB untiled but "
                          f"{available / 2**30:.1f} GiB are available: use --tile auto (exact, bounded memory)")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (``MemoryError``, torch's CPU allocator or CUDA OOM)."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def choose_tile(spec: TileSpec, height: int, width: int, budget_bytes: int) -> int | None:
    """Largest square core (a multiple of ``spec.align``) whose window fits ``budget_bytes``;
    ``None`` when the whole image fits and tiling is not needed."""
    if untiled_bytes(spec, height, width) <= budget_bytes:
        return None
    side = math.isqrt(budget_bytes // spec.bytes_per_pixel) - 2 * _ceil_to(spec.halo, spec.align)
    side = side // spec.align * spec.align
    return max(side, spec.align, 16)


#: assumed speed of one tile on T intra-op threads, relative to one thread: 1 + this x (T - 1); what
#: :func:`tile_workers` weighs against the larger windows of tiles computed side by side
INTRA_OP_EFFICIENCY = 0.75


def tile_workers(model: nn.Module, device: torch.device, requested: int | None = None, *,
                 size: tuple[int, int] | None = None, budget_bytes: int | None = None) -> int:
    """Tiles computed at once: on the CPU ``requested``, else the model's own ``workers``, else torch's
    thread count (one tile per thread, see :meth:`Tiler.map`); one on a GPU.

    Given the image ``size`` and the ``--tile auto`` budget, tiles side by side share the budget, so
    each is smaller and the halos cost more; where that makes the run slower than one tile at a time
    on every thread (estimated: windows' total area / parallel speed, :data:`INTRA_OP_EFFICIENCY`),
    one worker is returned. It matters for wide halos (EMMA's 256 px: 12x the image's area in
    2-worker windows at 4096 x 4096 and 1 GB, 4x in 1-worker windows)."""
    if torch.device(device).type != "cpu":
        return 1
    threads = requested or getattr(model, "workers", None) or torch.get_num_threads()
    spec = tile_spec(model)
    if requested or threads <= 1 or size is None or budget_bytes is None or spec is None:
        return threads
    h, w = size
    if untiled_bytes(spec, h, w) <= budget_bytes:
        return threads

    def area(workers: int) -> int:
        tile = choose_tile(spec, h, w, budget_bytes // workers)
        return sum((x.bottom - x.top) * (x.right - x.left) for x in plan_windows(h, w, tile, spec.halo, spec.align))

    one = area(1) / (1 + INTRA_OP_EFFICIENCY * (torch.get_num_threads() - 1))
    return threads if area(threads) / threads <= one else 1


def to_unit_float(pixels: Tensor, scale: float) -> Tensor:
    """Integer pixels as float32 ``pixels / scale``, computed on the CPU: the IEEE division numpy's
    ``float32(pixels) / float32(scale)`` does (checked for every 8- and 16-bit value)."""
    return pixels.cpu().to(torch.float32).div_(float(scale))


def parse_tile(tile: str | int | None) -> str | int:
    """A tile option as ``"off"``, ``"auto"`` or a positive tile size in pixels; anything else is a
    :class:`TilingError` (one line). ``None``, ``0`` and ``"none"`` mean ``"off"``."""
    if tile is None or (isinstance(tile, (int, float)) and not isinstance(tile, bool) and tile == 0):
        return "off"
    if isinstance(tile, str) and tile.strip().lower() in ("off", "none", "0", "", "auto"):
        return "auto" if tile.strip().lower() == "auto" else "off"
    if isinstance(tile, bool):
        raise TilingError(f"--tile {tile!r}: expected auto, off or a tile size in pixels")
    try:
        size = int(tile)
    except (TypeError, ValueError, OverflowError):
        raise TilingError(f"--tile '{tile}': expected auto, off or a tile size in pixels") from None
    if size < 1 or (isinstance(tile, float) and tile != size):
        raise TilingError(f"--tile {tile}: the tile size must be a positive number of pixels")
    return size


def resolve_tile(tile: str | int | None, model: nn.Module, height: int, width: int,
                 budget_bytes: int | None = None, workers: int = 1, *, check_memory: bool = False) -> int | None:
    """Turn a tile option into a core size in pixels, or ``None`` for the untiled forward.

    ``"off"``/``None``/``0``: untiled; with ``check_memory``, an error (one line suggesting
    ``auto``) when the untiled forward's estimated memory exceeds what is available
    (:func:`check_untiled_fits`). ``"auto"``: tiles only if the untiled forward's estimate
    (:func:`untiled_bytes`) does not fit the budget (default :func:`default_budget`), then the largest
    tiles that fit it ``workers`` at a time; a network that declares no tiling then runs untiled.
    An integer (or its string) ``N``: N x N cores; an error for a network that declares no tiling.
    """
    tile = parse_tile(tile)
    if tile == "off":
        if check_memory:
            check_untiled_fits(model, height, width)
        return None
    spec = tile_spec(model)
    name = getattr(getattr(model, "card", None), "name", type(model).__name__)
    if tile == "auto":
        if budget_bytes is not None and budget_bytes <= 0:
            raise TilingError(f"tile memory budget must be positive, got {budget_bytes} bytes")
        if spec is None:
            return None
        budget = budget_bytes if budget_bytes is not None else default_budget(_model_device(model))
        if untiled_bytes(spec, height, width) <= budget:
            return None
        return choose_tile(spec, height, width, budget // max(1, workers))
    if spec is None:
        raise TilingError(f"model '{name}' declares no tiling (no TileSpec): run it untiled (--tile off)")
    return tile


def tiled_forward(model: nn.Module, structural: Tensor, functional: Tensor, tile: int | tuple[int, int], *,
                  progress: bool = False, workers: int = 1, out_device: torch.device | str = "cpu",
                  scale: float | None = None, keep_blocks: bool = True,
                  cache_ram_bytes: int | None = None, cache_stats: streaming.CacheStats | None = None) -> Tensor:
    """Raw output (B x 1 x H x W float32, on ``out_device``) of ``model`` computed tile by tile.

    Inputs are full-size B x 1 x H x W tensors (kept where they are, normally the CPU); only the
    windows being computed go to the model's device. Integer inputs (uint8/uint16 pixels, with
    ``scale`` their full-scale value) are converted to float32 in [0, 1] per window
    (:meth:`Tiler.load`), so no whole-image float copy exists. Call under ``torch.inference_mode()`` (and
    autocast, if wanted) as for the untiled forward. ``workers``: CPU tiles computed at once (see
    :meth:`Tiler.map`). ``keep_blocks``: streaming networks keep blocks' outputs between passes
    (:class:`mlfuse.inference.streaming.PassCache`, at most ``cache_ram_bytes`` in memory, default
    ``streaming.CACHE_RAM_BYTES``, the rest in files; what it held is added to ``cache_stats``, if
    given); ``False`` recomputes each pass from the input
    (the reference the cache is tested and benchmarked against). Raises :class:`TilingError` for a
    network that declares no :class:`TileSpec`, or has global ops without the two hooks.
    """
    spec = tile_spec(model)
    name = getattr(getattr(model, "card", None), "name", type(model).__name__)
    if spec is None:
        raise TilingError(f"model '{name}' declares no tiling (no TileSpec): run it untiled")
    has_context = callable(getattr(model, "tile_context", None))
    window_forward = getattr(model, "tile_forward", None)
    if spec.global_ops and not spec.streaming and not (has_context and callable(window_forward)):
        raise TilingError(f"model '{name}' has whole-image operations but no tile_context/tile_forward hooks")
    if not callable(window_forward):
        def window_forward(s: Tensor, f: Tensor, context: Any, win: Window) -> Tensor:
            return model.fusion_forward(s, f)
    card = getattr(model, "card", None)
    multiple = getattr(card, "size_multiple", 1) or 1
    min_size = getattr(card, "min_size", (1, 1))
    tiler = Tiler(tile, _model_device(model), progress=progress, workers=workers, scale=scale)
    b, _, h, w = structural.shape
    context = model.tile_context(structural, functional, tiler) if has_context else None
    out = torch.empty((b, 1, h, w), dtype=torch.float32, device=out_device)

    def one(win: Window) -> None:
        s, f = tiler.load(structural, win), tiler.load(functional, win)
        y = window_forward(s, f, context, win)
        streaming.use_output(y)
        rows, cols = win.core_in_region
        out[..., win.core[0], win.core[1]] = y[..., rows, cols].to(out.device, torch.float32)

    windows = tiler.windows(h, w, spec.halo, math.lcm(spec.align, multiple), min_size)
    if spec.streaming and spec.global_ops:
        cache = streaming.PassCache(cache_ram_bytes, stats=cache_stats) if keep_blocks else None
        _streaming_passes(tiler, windows, one, cache)
    else:
        tiler.map(one, windows)
    release_freed_memory()
    return out


#: more passes than any network here has levels of global ops (CDDFuse 10, SMFNet 12)
MAX_STREAMING_PASSES = 200


def _streaming_passes(tiler: Tiler, windows: list[Window], one: Callable[[Window], None],
                      cache: streaming.PassCache | None) -> None:
    """Run ``one`` over all windows in passes until a pass finds every whole-image sum known
    (:mod:`mlfuse.inference.streaming`); that pass's outputs are the result. Blocks' valid outputs
    are kept between passes (:class:`mlfuse.inference.streaming.PassCache`), so a pass resumes where
    the previous one stopped."""
    known: dict = {}

    def scoped(win: Window, index: int) -> None:
        size = (win.bottom - win.top, win.right - win.left)
        with streaming.window(size, win.core_in_region, index):
            one(win)

    indexed = {id(win): i for i, win in enumerate(windows)}
    try:
        for number in range(1, MAX_STREAMING_PASSES + 1):
            state = streaming.StreamingPass(known, cache)
            with streaming.streaming_pass(state):
                tiler.map(lambda win: scoped(win, indexed[id(win)]), windows, desc=f"pass {number}")
            if not state.partial:
                if state.poisoned:
                    raise TilingError("tiled inference: a whole-image sum is not finite (NaN/inf in the inputs or "
                                      "weights)")
                return
            known.update({key: tuple(parts) for key, parts in state.partial.items()})
        raise TilingError(f"tiled inference did not finish in {MAX_STREAMING_PASSES} passes")
    finally:
        if cache is not None:
            cache.close()


def release_freed_memory() -> None:
    """Give memory freed by the tiles back to the OS (glibc ``malloc_trim``; a no-op elsewhere):
    worker threads' malloc arenas otherwise keep their peak, on top of what follows (colour, PNG)."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None
