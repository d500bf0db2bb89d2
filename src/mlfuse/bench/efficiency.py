"""Efficiency of one method: parameters, FLOPs, time per image and peak memory at a stated size.

* parameters: the module's parameter count (0 for the classical methods);
* FLOPs: counted by ``torch.utils.flop_counter.FlopCounterMode`` over one ``fusion_forward``
  (a multiply-add counts 2). It counts matrix multiplications and convolutions only, so elementwise
  work is not in it; the classical methods, which are all such work (or NumPy / PyWavelets), report
  none (``None``);
* time: median wall time of ``repeats`` calls of ``fusion_forward`` on random B = 1 inputs after
  two warm-up calls, under ``inference_mode``, on the CPU and, if present, on the GPU
  (synchronised). It is the method's own computation: no image I/O, colour or output rule;
* peak memory: on the GPU ``torch.cuda.max_memory_allocated`` during the timed calls; on the CPU
  the growth of the process's peak resident set from just before the first call to the end of the
  timed ones, measured in a fresh process per method (``isolate=True``); in-process it would only
  be a lower bound and is not reported.
"""

from __future__ import annotations

import json
import os
import platform
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
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before the first forward pass
    eff.cpu_s = _time(model, x, y, repeats, sync=False)
    if cpu_peak:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        eff.cpu_peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * scale / 2**20
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
                     repeats: int, threads: int | None) -> Efficiency:
    """:func:`measure` in a fresh Python process, so the CPU peak memory is this method's alone."""
    job = {"model": model_name, "weights": weights, "kwargs": kwargs, "label": label, "size": list(size),
           "repeats": repeats, "threads": threads}
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
        eff = measure(model, job["label"], tuple(job["size"]), job["repeats"], cpu_peak=True)
    except MLFuseError as exc:
        eff = Efficiency(job["label"], tuple(job["size"]), error=str(exc))
    print(json.dumps(asdict(eff)))


def machine() -> dict:
    """What the timings were measured on."""
    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    out = {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if hasattr(os, "getloadavg"):
        out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
