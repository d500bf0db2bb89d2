"""The fusion pipeline shared by every method: roles, padding, precision, output rule, colour.

``fuse_pair(model, structural, functional, options)`` (``options``: one :class:`FuseOptions`, or its
fields as keywords):

1. read both inputs (paths, arrays, PIL images or tensors); they must have the same size and not be
   the same file;
2. the network sees gray float32 in [0, 1] (PIL luma / 255 for 8-bit, as the MLFuse authors); the
   luma is kept as integers and converted per tile, so a tiled run holds no whole-image float input;
3. inputs smaller than the method's minimum (or not a multiple of its size factor) are
   reflect-padded, and the output is cropped back; images that do not fit the tile budget run in
   exact tiles (:mod:`mlfuse.inference.tiling`);
4. the raw output becomes 8 bits by the output rule: ``minmax`` (the authors': per-image min-max,
   x255, truncation), ``minmax-round`` (the CDDFuse family's scripts) or ``clamp`` (unstretched:
   clamp to [0, 1], x255, round), in row strips;
5. if a source is colour, its chroma is restored around the fused luma (``mlfuse.data.color``).

A raw output holding NaN or infinity (broken weights, an overflow in reduced precision) fails the
pair with :class:`~mlfuse.errors.FusionError` instead of becoming a near-black image.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mlfuse.data.color import COLOR_MODES, colorize
from mlfuse.data.io import (
    IMAGE_EXTENSIONS,
    Image,
    as_image,
    check_distinct_inputs,
    check_output_format,
    check_output_not_input,
    check_writable_folder,
    clean_stale_temps,
    write_image,
)
from mlfuse.data.pairs import Pairing, pair_folders
from mlfuse.errors import FusionError, InputError, MLFuseError, OutputError, OutputExistsError
from mlfuse.inference import streaming
from mlfuse.inference.tiling import (
    default_budget,
    is_out_of_memory,
    parse_tile,
    resolve_tile,
    tile_workers,
    tiled_forward,
    to_unit_float,
)
from mlfuse.progress import bar_disabled
from mlfuse.runtime import PRECISIONS, precision_dtype

OUTPUT_RULES = ("minmax", "clamp", "minmax-round")


@dataclass(frozen=True)
class FuseOptions:
    """How a pair is fused, whatever the method: built once (by the CLI, bench, demo or a caller) and
    passed down unchanged. Every field is checked here, so a bad value is one line before any work.

    ``color``: ``ycbcr`` (full-range YCbCr around the fused luma), ``paper`` (the method authors' own
    colour code) or ``gray``. ``output_rule``: how the raw output becomes 8 bits, ``minmax`` |
    ``minmax-round`` | ``clamp`` (``None``: the method's own, ``ModelCard.output_rule``).
    ``precision``: ``fp32`` | ``bf16`` | ``fp16``. ``tile``: ``auto`` (the default, in Python as on the
    command line: tiles only an image whose untiled forward does not fit ``tile_budget_mb``; every
    image of the papers' sizes runs whole), a tile size in pixels, or ``off``. ``tile_budget_mb``:
    memory a tiled forward may use (default :func:`mlfuse.inference.tiling.default_budget`). ``workers``: CPU
    tiles computed at once (default: the model's own, else torch's thread count). ``progress``: a tile
    bar on a terminal.
    """

    color: str = "ycbcr"
    output_rule: str | None = None
    precision: str = "fp32"
    tile: str | int = "auto"
    tile_budget_mb: float | None = None
    workers: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.color not in COLOR_MODES:
            raise MLFuseError(f"unknown colour mode '{self.color}' (choose from {', '.join(COLOR_MODES)})")
        if self.output_rule is not None and self.output_rule not in OUTPUT_RULES:
            raise MLFuseError(f"unknown output rule '{self.output_rule}' (choose from {', '.join(OUTPUT_RULES)})")
        if self.precision not in PRECISIONS:
            raise MLFuseError(f"unknown precision '{self.precision}' (choose from {', '.join(PRECISIONS)})")
        parse_tile(self.tile)
        budget = self.tile_budget_mb
        if budget is not None and not (isinstance(budget, numbers.Real) and not isinstance(budget, bool)
                                       and math.isfinite(budget) and budget > 0):
            raise MLFuseError(f"tile budget {budget!r}: expected a positive number of megabytes")
        if self.workers is not None and not (isinstance(self.workers, numbers.Integral)
                                             and not isinstance(self.workers, bool) and self.workers >= 1):
            raise MLFuseError(f"workers {self.workers!r}: expected a positive whole number")

    @classmethod
    def of(cls, options: FuseOptions | None = None, **changes: object) -> FuseOptions:
        """``options`` (default: the defaults) with ``changes`` applied; an unknown name is one line."""
        if options is not None and not isinstance(options, FuseOptions):
            raise MLFuseError(f"fusion options must be a FuseOptions (or its fields as keywords, e.g. "
                              f"precision='bf16'), got {type(options).__name__} {options!r}")
        base = options if options is not None else cls()
        unknown = sorted(set(changes) - {f.name for f in fields(cls)})
        if unknown:
            renamed = {"output": "output_rule", "intensity": "output_rule"}
            hint = "".join(f"; {k} is now {renamed[k]}" for k in unknown if k in renamed)
            raise MLFuseError(f"unknown fusion option(s) {', '.join(unknown)} (known: "
                              f"{', '.join(f.name for f in fields(cls))}{hint})")
        return replace(base, **changes) if changes else base


def _pad_amounts(size: int, minimum: int, multiple: int) -> tuple[int, int]:
    target = max(size, minimum)
    target = -(-target // multiple) * multiple
    extra = target - size
    return extra // 2, extra - extra // 2


def run_network(model: nn.Module, structural: np.ndarray, functional: np.ndarray,
                options: FuseOptions | None = None, *, scale: float | None = None, **changes: object) -> np.ndarray:
    """Raw network output (float32 H x W) for two gray H x W images: float32 in [0, 1], or integer
    pixels (uint8/uint16) with ``scale`` their full-scale value (default: the dtype's maximum), which
    the network sees as ``float32(pixels) / scale``. Integer inputs keep a tiled run's whole-image
    buffers at 1-2 bytes a pixel: the conversion happens per tile (:meth:`mlfuse.inference.tiling.Tiler.load`).

    Pads by reflection to the card's ``min_size`` / ``size_multiple`` and crops back. ``options``
    (:class:`FuseOptions`, or its fields as keywords) give the precision and tiling: exact tiled
    inference with bounded memory (:mod:`mlfuse.inference.tiling`); the output rule then sees the assembled raw
    image.
    """
    opt = FuseOptions.of(options, **changes)
    precision, tile, tile_budget_mb, progress = opt.precision, opt.tile, opt.tile_budget_mb, opt.progress
    card = model.card
    h, w = structural.shape
    top, bottom = _pad_amounts(h, card.min_size[0], card.size_multiple)
    left, right = _pad_amounts(w, card.min_size[1], card.size_multiple)
    if top or bottom or left or right:
        pads = ((top, bottom), (left, right))
        structural = np.pad(structural, pads, mode="reflect")
        functional = np.pad(functional, pads, mode="reflect")
    device = next(model.parameters()).device
    # CPU tiles run one per core with single-threaded ops (no per-op thread synchronisation)
    budget = default_budget(device) if tile_budget_mb is None else int(tile_budget_mb * 2**20)
    workers = tile_workers(model, device, opt.workers, size=structural.shape, budget_bytes=budget)
    tile_size = resolve_tile(tile, model, *structural.shape, budget, workers, check_memory=True)
    with warnings.catch_warnings():  # decoded pixels are read-only views; nothing writes into them
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        s = torch.from_numpy(np.ascontiguousarray(structural))[None, None]
        f = torch.from_numpy(np.ascontiguousarray(functional))[None, None]
    integer = not s.is_floating_point()
    if integer and scale is None:
        scale = float(np.iinfo(structural.dtype).max)
    if tile_size is None:
        if integer:  # on the CPU: the same IEEE division as numpy's float32(pixels) / float32(scale)
            s, f = to_unit_float(s, scale), to_unit_float(f, scale)
        s, f = s.to(device), f.to(device)
    dtype = precision_dtype(precision)
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            if tile_size is None:
                out = model.fusion_forward(s, f)
            else:
                # kept block outputs of streamed passes: a quarter of the budget in memory, the rest in files
                out = tiled_forward(model, s, f, tile_size, progress=progress, workers=workers,
                                    scale=scale if integer else None,
                                    cache_ram_bytes=min(streaming.CACHE_RAM_BYTES, budget // 4))
    except (MemoryError, RuntimeError) as exc:  # an allocation failure is this pair's, not the run's
        if not is_out_of_memory(exc):
            raise
        how = "untiled" if tile_size is None else f"in {tile_size}-pixel tiles"
        raise FusionError(f"out of memory fusing {w}x{h} with {card.name} {how}: use --tile auto or a smaller "
                          "--tile-budget") from None
    del s, f
    out = out.float()[0, 0].cpu().numpy()[top:top + h, left:left + w]
    if not (np.isfinite(out.min()) and np.isfinite(out.max())):  # min/max carry any NaN: no mask up front
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        raise FusionError(f"the {card.name} network produced NaN or infinity in {bad} of {out.size} output "
                          "values (broken weights, or an overflow at this precision); nothing written")
    return out


#: rows converted at a time by :func:`to_uint8`: its float temporaries stay a strip's, not an image's
STRIP_ROWS = 256


def to_uint8(raw: np.ndarray, rule: str = "minmax") -> np.ndarray:
    """Raw output -> 8-bit image.

    ``minmax``: the MLFuse authors' ``test_gray.py`` (spec section 9.1 step 5): per-image
    ``(f - min) / (max - min)``, x255, truncation (torchvision ``mul(255).byte()``), in float32.
    ``clamp``: clamp to [0, 1], x255, round to nearest. ``minmax-round``: the CDDFuse/EMMA test
    scripts (common-cddfuse-family §6.2): the float32 min-max x255 image saved by scikit-image 0.19 /
    imageio 2.9, which re-stretches it in float64 and rounds with ties down,
    ``floor((v - min v) / (max v - min v) * 255 + 0.499999999)``. A constant output (max == min, e.g. a
    1x1 image) cannot be stretched and falls back to ``clamp``. Every step after the whole-image
    minimum and maximum is per pixel, so the work runs in row strips of :data:`STRIP_ROWS`: the same
    operations in the same order, with strip-sized temporaries.
    """
    if rule not in OUTPUT_RULES:
        raise MLFuseError(f"unknown output rule '{rule}' (choose from {', '.join(OUTPUT_RULES)})")
    raw = raw.astype(np.float32, copy=False)
    lo, hi = raw.min(), raw.max()
    out = np.empty(raw.shape, np.uint8)
    strips = [slice(r, r + STRIP_ROWS) for r in range(0, raw.shape[0], STRIP_ROWS)] if raw.ndim else [...]

    def stretched(rows: slice) -> np.ndarray:  # float32 (f - min) / (max - min) * 255
        t = raw[rows] - lo
        t /= hi - lo
        t *= np.float32(255)
        return t

    if rule == "minmax" and hi > lo:
        for rows in strips:
            out[rows] = stretched(rows)  # float -> uint8 assignment truncates, as astype
        return out
    if rule == "minmax-round" and hi > lo:
        vmin = vmax = None  # the float64 re-stretch needs the stretched image's own extremes first
        for rows in strips:
            t = stretched(rows)
            tmin, tmax = np.float64(t.min()), np.float64(t.max())
            vmin = tmin if vmin is None else min(vmin, tmin)
            vmax = tmax if vmax is None else max(vmax, tmax)
        for rows in strips:
            v = stretched(rows).astype(np.float64)
            v -= vmin
            v /= vmax - vmin
            v *= 255
            v += 0.499999999
            out[rows] = np.floor(v, out=v)
        return out
    for rows in strips:
        out[rows] = np.rint(np.clip(raw[rows], 0, 1) * 255)
    return out


def fuse_images(model: nn.Module, structural: Image, functional: Image, options: FuseOptions | None = None,
                **changes: object) -> np.ndarray:
    """Fuse two loaded images; returns uint8 H x W (gray) or H x W x 3 (colour). ``options``: a
    :class:`FuseOptions`, or its fields as keywords (``color=``, ``output_rule=``, ``tile=``, ...)."""
    opt = FuseOptions.of(options, **changes)
    if structural.size != functional.size:
        (sh, sw), (fh, fw) = structural.size, functional.size
        raise InputError(
            f"size mismatch: {structural.source} is {sw}x{sh} but {functional.source} is {fw}x{fh} (W x H)"
        )
    paper = model.card.paper_color if opt.color == "paper" else None
    try:
        if paper is not None:  # the method's own authors' inputs + colour round trip (e.g. SMFNet's float YCrCb)
            return paper(lambda s, f: run_network(model, s, f, opt), structural, functional)
        integer = all(im.pixels.dtype.kind in "ui" for im in (structural, functional))
        if integer and structural.maxval == functional.maxval:
            # integer luma (1-2 bytes a pixel), converted per tile: the same float32 values as gray()
            s_in, f_in, scale = structural.luma(), functional.luma(), structural.maxval
        else:  # two scales (e.g. 8- and 16-bit): float32 [0, 1] copies
            s_in, f_in, scale = structural.gray(), functional.gray(), None
        raw = run_network(model, s_in, f_in, opt, scale=scale)
        del s_in, f_in
    except FusionError as exc:
        raise FusionError(f"{structural.source} + {functional.source}: {exc}") from None
    fused = to_uint8(raw, opt.output_rule or model.card.output_rule)
    del raw  # the whole-image float output is not needed for the colour step
    colour_sources = [im.pixels for im in (structural, functional) if im.is_color]
    return colorize(fused, colour_sources, opt.color)


def fuse_pair(model: nn.Module, structural: Image | np.ndarray | str | os.PathLike | object,
              functional: Image | np.ndarray | str | os.PathLike | object, options: FuseOptions | None = None,
              **changes: object) -> np.ndarray:
    """Fuse one pair (structural = visible/MRI, functional = infrared/CT/PET/SPECT), each given as a
    path, a numpy array, a ``PIL.Image.Image``, a ``torch.Tensor`` (C x H x W) or an
    :class:`~mlfuse.data.io.Image` (see :func:`mlfuse.data.io.as_image`). ``options``: a
    :class:`FuseOptions`, or its fields as keywords: ``color`` (``ycbcr`` | ``paper`` | ``gray``),
    ``output_rule`` (``minmax`` | ``minmax-round`` | ``clamp``; default the method's own),
    ``precision`` (``fp32`` | ``bf16`` | ``fp16``), ``tile`` (``auto`` | N | ``off``), ...
    """
    opt = FuseOptions.of(options, **changes)  # a bad option is found before any image is read
    check_distinct_inputs(structural, functional)
    return fuse_images(model, as_image(structural), as_image(functional), opt)


@dataclass
class FolderReport:
    """Outcome of a folder run: written files, failed pairs with reasons, skipped outputs and
    the files that had no partner."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    pairing: Pairing = field(default_factory=Pairing)

    @property
    def ok(self) -> bool:
        return not self.failed


def check_folder_output(out_dir: str | os.PathLike, ext: str, inputs: list[str | os.PathLike]) -> Path:
    """Everything about a folder run's output that can be checked before any pair is computed: not
    empty, not an input folder, not a file (nor ``x.png``, a file name), a format Pillow writes,
    a location where files can be created. Returns the folder as a ``Path``."""
    check_output_not_input(out_dir, inputs)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file; folder runs need an output folder")
    if not out.exists() and out.suffix.lower() in IMAGE_EXTENSIONS:
        raise OutputError(f"{out}: looks like an image file name, but folder inputs give one output per pair: "
                          "give an output folder")
    try:
        check_output_format(f"x.{ext.lstrip('.')}")
    except OutputError:
        raise OutputError(f"--ext {ext}: not an image format Pillow can write (use png, jpg, tif, bmp)") from None
    check_writable_folder(out)
    return out


def existing_outputs(pairing: Pairing, out_dir: str | os.PathLike, ext: str) -> list[Path]:
    """The outputs of a folder run that already exist."""
    out = Path(out_dir)
    return [d for d in (out / f"{p.name}.{ext.lstrip('.')}" for p in pairing.pairs) if d.exists()]


def refuse_existing(existing: list[Path], n_pairs: int, out_dir: str | os.PathLike) -> None:
    """One line up front (not one per pair) when outputs exist and neither flag says what to do."""
    if existing:
        raise OutputExistsError(
            f"{out_dir}: {len(existing)} of {n_pairs} outputs already exist (e.g. {existing[0].name}): pass "
            "--overwrite to replace them or --skip-existing to keep them and fuse the rest")


def fuse_folder(model: nn.Module, structural_dir: str | Path, functional_dir: str | Path,
                out_dir: str | Path, *, ext: str = "png", overwrite: bool = False,
                skip_existing: bool = False, quiet: bool = False,
                report: Callable[[str], None] | None = None, options: FuseOptions | None = None,
                **changes: object) -> FolderReport:
    """Fuse every pair of two modality folders (paired by stem, natural order) into ``out_dir``
    as ``<stem>.<ext>``. A bad pair is reported (``report`` gets one line) and the rest go on.

    Checked before any pair is computed (:class:`~mlfuse.errors.MLFuseError`, one line): the two
    folders differ, the output is not an input folder, ``ext`` is writable, the folder can be
    created, and existing outputs come with ``overwrite`` or ``skip_existing``. Temp files left by a
    killed earlier run are removed (:func:`mlfuse.data.io.clean_stale_temps`). With
    ``skip_existing``, an output that another run writes meanwhile counts as skipped. ``options``: a
    :class:`FuseOptions`, or its fields as keywords."""
    opt = FuseOptions.of(options, **changes)
    check_distinct_inputs(structural_dir, functional_dir)
    out_dir = check_folder_output(out_dir, ext, [structural_dir, functional_dir])
    pairing = pair_folders(structural_dir, functional_dir)
    if not (overwrite or skip_existing):
        refuse_existing(existing_outputs(pairing, out_dir, ext), len(pairing.pairs), out_dir)
    result = FolderReport(pairing=pairing)
    say = report or (lambda line: None)
    for line in pairing.problems():
        say(f"unpaired: {line}")
    clean_stale_temps(out_dir)
    for pair in tqdm(pairing.pairs, desc="fuse", unit="pair", disable=bar_disabled(quiet)):
        dest = out_dir / f"{pair.name}.{ext.lstrip('.')}"
        if skip_existing and dest.exists():
            result.skipped.append(dest)
            continue
        try:
            check_output_not_input(dest, [pair.structural, pair.functional])
            if dest.exists() and not overwrite:  # appeared since the check above: refuse before a forward
                raise OutputExistsError(f"{dest}: already exists (pass --overwrite to replace it)")
            fused = fuse_pair(model, pair.structural, pair.functional, opt)
            result.written.append(write_image(fused, dest, overwrite=overwrite))
        except OutputExistsError as exc:
            if skip_existing:  # another run wrote it meanwhile: its result stands
                result.skipped.append(dest)
                continue
            result.failed.append((pair.name, str(exc)))
            say(f"FAILED {pair.name}: {exc}")
        except MLFuseError as exc:
            result.failed.append((pair.name, str(exc)))
            say(f"FAILED {pair.name}: {exc}")
    return result
