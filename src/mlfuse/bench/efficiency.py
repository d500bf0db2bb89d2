"""Efficiency of one method: parameters, FLOPs, time per image and peak memory at a stated size.

* parameters: the module's parameter count (0 for the classical methods);
* FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` over one ``fusion_forward``
  (a multiply-add counts 2). It counts matrix multiplications and convolutions only, so elementwise
  work is not in it; the classical methods, which are all such work (or NumPy / PyWavelets), report
  none (``None``);
* time: median wall time of ``repeats`` calls of ``fusion_forward`` on random B = 1 inputs after
  two warm-up calls, under ``inference_mode``, on the CPU and, if present, on the GPU
  (synchronised). It is the method's own computation: no image I/O, colour or output rule;
* per megapixel (:func:`measure_scaled`, ``scaling_sizes``): one forward at a large size, decided as
  ``--tile auto`` decides (untiled when the method's measured per-pixel estimate fits the tile budget,
  else tiled in tiles that fit it; :func:`mlfuse.inference.tiling.resolve_tile`), after a warm-up on a
  small crop: seconds, seconds per megapixel, peak memory and peak bytes per input pixel;
* peak memory: on the GPU ``torch.cuda.max_memory_allocated`` during the timed calls; on the CPU
  the peak resident set during the calls minus the resident set just before them, measured in a fresh
  process per method (``isolate=True``); in-process it would only be a lower bound and is not reported.
  On Linux the peak is the process's own ``VmHWM`` (``/proc/self/status``), reset to the current
  resident set just before the first call (``/proc/self/clear_refs``), so neither the imports nor the
  parent's peak count: ``getrusage``'s ``ru_maxrss`` is inherited across fork + exec, so a child of a
  large parent would report 0 growth. Elsewhere ``ru_maxrss`` growth is the fallback.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mlfuse.errors import MLFuseError


@dataclass
class Efficiency:
    label: str
    size: tuple[int, int]
    params: int | None = None
    flops: float | None = None
    cpu_s: float | None = None
    cpu_threads: int | None = None
    cpu_peak_mb: float | None = None
    gpu_s: float | None = None
    gpu_peak_mb: float | None = None
    error: str | None = None
    mode: str | None = None  # per-megapixel rows: "untiled" or "tiled N" (N x N-pixel tiles)


def _scaled_mode(model: torch.nn.Module, size: tuple[int, int], budget_mb: float | None,
                 device: torch.device) -> tuple[int | None, int]:
    """The tile size ``--tile auto`` would use for ``size`` (``None``: untiled) and the tiles at once."""
    from mlfuse.inference.tiling import default_budget, resolve_tile, tile_workers

    budget = default_budget(device) if budget_mb is None else int(budget_mb * 2**20)
    workers = tile_workers(model, device, size=size, budget_bytes=budget)
    return resolve_tile("auto", model, *size, budget, workers), workers


def _forward(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, tile: int | None, workers: int,
             device: torch.device, sync: bool) -> float:
    from mlfuse.inference.tiling import tiled_forward

    with torch.inference_mode():
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if tile is None:
            model.fusion_forward(x.to(device), y.to(device))
        else:
            tiled_forward(model, x, y, tile, workers=workers)
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def measure_scaled(model: torch.nn.Module, label: str, size: tuple[int, int], *, budget_mb: float | None = None,
                   gpu: bool | None = None, cpu_peak: bool = False) -> Efficiency:
    """One forward of ``model`` at ``size`` = (H, W) as ``--tile auto`` runs it (``mode``: untiled or the
    tile size), on the CPU and, if present, the GPU, after a warm-up on a small crop. ``cpu_peak``:
    report the CPU peak-RSS growth (meaningful only in a fresh process)."""
    h, w = size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, h, w, generator=gen)
    y = torch.rand(1, 1, h, w, generator=gen)
    card = getattr(model, "card", None)
    mh, mw = getattr(card, "min_size", (1, 1))
    crop = (slice(0, max(64, mh)), slice(0, max(64, mw)))
    cpu = torch.device("cpu")
    tile, workers = _scaled_mode(model, size, budget_mb, cpu)
    eff = Efficiency(label, (h, w), params=sum(p.numel() for p in model.parameters()),
                     cpu_threads=torch.get_num_threads(), mode="untiled" if tile is None else f"tiled {tile}")
    with torch.inference_mode():  # oneDNN primitives and the allocator, before the measured forward
        model.fusion_forward(x[..., crop[0], crop[1]].contiguous(), y[..., crop[0], crop[1]].contiguous())
    peak = PeakRSS()
    peak.start()
    eff.cpu_s = _forward(model, x, y, tile, workers, cpu, sync=False)
    if cpu_peak:
        eff.cpu_peak_mb = peak.stop()
    if gpu is None:
        gpu = torch.cuda.is_available()
    if gpu:
        dev = torch.device("cuda")
        model = model.to(dev)
        tile_gpu, workers_gpu = _scaled_mode(model, size, budget_mb, dev)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        eff.gpu_s = _forward(model, x, y, tile_gpu, workers_gpu, dev, sync=True)
        eff.gpu_peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
        if tile_gpu != tile:
            eff.mode += f" (GPU: {'untiled' if tile_gpu is None else f'tiled {tile_gpu}'})"
        model.to("cpu")
    return eff


def count_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float | None:
    """FLOPs of one ``fusion_forward`` by torch's own counter; ``None`` for a model that declares
    ``flops_counted = False`` (work the counter does not see: elementwise, NumPy)."""
    if not getattr(model, "flops_counted", True):
        return None
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.fusion_forward(x, y)
    return float(counter.get_total_flops())


def _time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int, sync: bool) -> float:
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            if sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.fusion_forward(x, y)
            if sync:
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None where there is none."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current resident set (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak resident-set growth (MB) of this process between :meth:`start` and :meth:`stop`; ``None`` when
    it cannot be measured (the process peaked higher earlier and the peak cannot be reset)."""

    def start(self) -> None:
        self.reset = _reset_peak_rss()
        self.rss0, self.hwm0 = _status_kb("VmRSS"), _status_kb("VmHWM")
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def stop(self) -> float | None:
        hwm = _status_kb("VmHWM")
        if self.rss0 is not None and hwm is not None and self.hwm0 is not None:
            if self.reset or hwm > self.hwm0:
                return max(0, hwm - self.rss0) / 1024
            return None
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.ru0) * scale / 2**20


def measure(model: torch.nn.Module, label: str, size: tuple[int, int], repeats: int = 5, *,
            gpu: bool | None = None, cpu_peak: bool = False) -> Efficiency:
    """Measure ``model`` (already built, on the CPU) at ``size`` = (H, W). ``gpu=None``: on the GPU
    too when one is available. ``cpu_peak``: report the peak-RSS growth (meaningful only in a fresh
    process)."""
    h, w = size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, h, w, generator=gen)
    y = torch.rand(1, 1, h, w, generator=gen)
    eff = Efficiency(label, (h, w), params=sum(p.numel() for p in model.parameters()),
                     cpu_threads=torch.get_num_threads())
    peak = PeakRSS()
    peak.start()  # before the first forward pass
    eff.cpu_s = _time(model, x, y, repeats, sync=False)
    if cpu_peak:
        eff.cpu_peak_mb = peak.stop()
    eff.flops = count_flops(model, x, y)
    if gpu is None:
        gpu = torch.cuda.is_available()
    if gpu:
        model = model.to("cuda")
        xg, yg = x.cuda(), y.cuda()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        eff.gpu_s = _time(model, xg, yg, repeats, sync=True)
        eff.gpu_peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
        model.to("cpu")
    return eff


def measure_isolated(model_name: str, weights: str | None, kwargs: dict, label: str, size: tuple[int, int],
                     repeats: int, threads: int | None, *, scaled: bool = False,
                     budget_mb: float | None = None) -> Efficiency:
    """:func:`measure` (or, ``scaled``, :func:`measure_scaled`) in a fresh Python process, so the CPU peak
    memory is this method's alone."""
    job = {"model": model_name, "weights": weights, "kwargs": kwargs, "label": label, "size": list(size),
           "repeats": repeats, "threads": threads, "scaled": scaled, "budget_mb": budget_mb}
    proc = subprocess.run([sys.executable, "-m", "mlfuse.bench.efficiency", json.dumps(job)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Efficiency(label, size, error=f"measurement process failed: {err}")
    doc = json.loads(lines[-1])
    doc["size"] = tuple(doc["size"])
    return Efficiency(**doc)


def _child(job: dict) -> None:
    from mlfuse.registry import create_model

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    try:
        model = create_model(job["model"], weights=job["weights"], device="cpu", **job["kwargs"])
        if job.get("scaled"):
            eff = measure_scaled(model, job["label"], tuple(job["size"]), budget_mb=job.get("budget_mb"),
                                 cpu_peak=True)
        else:
            eff = measure(model, job["label"], tuple(job["size"]), job["repeats"], cpu_peak=True)
    except MLFuseError as exc:
        eff = Efficiency(job["label"], tuple(job["size"]), error=str(exc))
    print(json.dumps(asdict(eff)))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
