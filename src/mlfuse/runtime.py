"""Where mlfuse runs: device names and their resolution, precisions, free memory, the machine.

One home for these facts, used by inference, training, the bench and the command line. PyTorch is
imported inside the functions, so the command line can check a ``--device`` or ``--precision`` value
(and draw ``--help``) without loading it.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

from mlfuse.errors import MLFuseError

if TYPE_CHECKING:
    import torch

#: device names every command accepts, plus ``cuda:N``; :func:`resolve_device` checks availability
DEVICES = ("auto", "cpu", "cuda", "mps")
#: numeric precisions of a forward or a training step (``bf16``/``fp16``: autocast)
PRECISIONS = ("fp32", "bf16", "fp16")


def is_device_name(text: str) -> bool:
    """Whether ``text`` names a device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), available or not."""
    kind, sep, index = str(text).partition(":")
    return text in DEVICES or (kind == "cuda" and bool(sep) and index.isdigit())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else MPS, else CPU; ``cuda:N`` picks the N-th GPU; an unavailable
    explicit choice is an error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, sep, index = str(name).partition(":")
    if kind == "cuda" and sep:
        if not index.isdigit():
            raise MLFuseError(f"--device {name}: expected cuda:N with N a GPU index (0, 1, ...)")
        if not torch.cuda.is_available():
            raise MLFuseError(f"--device {name}: CUDA is not available (no GPU, or a CPU-only PyTorch build)")
        count = torch.cuda.device_count()
        if int(index) >= count:
            raise MLFuseError(f"--device {name}: no such GPU ({count} visible: cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", int(index))
    if name == "cuda" and not torch.cuda.is_available():
        raise MLFuseError("--device cuda: CUDA is not available (no GPU, or a CPU-only PyTorch build)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MLFuseError("--device mps: Apple MPS is not available on this machine")
    if name not in DEVICES:
        raise MLFuseError(f"unknown device '{name}' (choose from {', '.join(DEVICES)}, cuda:N)")
    return torch.device(name)


def precision_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of a precision name (``None`` for fp32); an unknown name is one line."""
    import torch

    if name not in PRECISIONS:
        raise MLFuseError(f"unknown precision '{name}' (choose from {', '.join(PRECISIONS)})")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def training_precision(name: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, whether a gradient scaler is needed) for training at ``name`` on ``device``:
    fp16 needs a scaler and, here, a CUDA device; bf16 and fp32 need none."""
    dtype = precision_dtype(name)
    if name == "fp16" and device.type != "cuda":
        raise MLFuseError("precision fp16 needs a CUDA device (use bf16 or fp32 on this device)")
    return dtype, name == "fp16"


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes a new allocation can get: free device memory (CUDA), else the system's MemAvailable."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict:
    """What a measurement ran on: CPU model, logical CPUs, torch threads, versions, GPU, load."""
    import torch

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
