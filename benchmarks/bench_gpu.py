"""The five networks on a GPU (issue 18, item 4): time and peak device memory at fp32 / bf16 / fp16 on a
camera-sized pair untiled and a 4096x4096 pair under ``--tile auto`` (budget: half the free device
memory), and tiled = untiled on the device (fp32, odd-sized pair, two tile sizes).

Every forward goes through :func:`mlfuse.inference.fuse.run_network`, the path ``mlfuse fuse`` takes
(padding, autocast, tile choice, streamed passes), on seeded random weights (the cost does not depend on
their values) and seeded random 8-bit pixels. Time is wall time with the device synchronised, median of
``--repeats`` after a warm-up (one run at the huge size); peak memory is ``torch.cuda.max_memory_allocated``.
A row that fails (out of memory, NaN at fp16) records its one-line error and the next row runs. The JSON
(``--out``) is rewritten after every row, so a run cut short keeps what it measured.

    python benchmarks/bench_gpu.py --device cuda --out "$OUT/gpu.json"        # on a GPU machine
    python benchmarks/bench_gpu.py --device cpu --size 48x64 --huge 64x80 --methods mlfuse --out /tmp/g.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("mlfuse", "cddfuse", "sfdfuse", "emma", "smfnet")
PRECISIONS = ("fp32", "bf16", "fp16")


def _hw(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def _pair(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--size", default="480x640", help="HxW of the untiled timing")
    ap.add_argument("--huge", default="4096x4096", help="HxW of the --tile auto timing ('none' to skip)")
    ap.add_argument("--equal-size", default="481x643", help="HxW (odd) of the tiled = untiled check")
    ap.add_argument("--equal-tiles", nargs="+", type=int, default=[128, 256])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    import mlfuse
    from mlfuse.data.io import atomic_write
    from mlfuse.errors import MLFuseError
    from mlfuse.inference.fuse import run_network
    from mlfuse.inference.tiling import default_budget, resolve_tile
    from mlfuse.runtime import machine

    def write() -> None:  # after every row: a run cut short keeps what it measured
        atomic_write(args.out, lambda fh: fh.write(json.dumps(data, indent=1).encode()), overwrite=True)

    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def timed(model: torch.nn.Module, s: np.ndarray, f: np.ndarray, runs: int, **opts: object) -> dict:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        seconds, out = [], None
        for i in range(runs + (1 if runs > 1 else 0)):  # the first of several is the warm-up
            sync()
            t = time.perf_counter()
            out = run_network(model, s, f, **opts)
            sync()
            if runs == 1 or i > 0:
                seconds.append(time.perf_counter() - t)
        row = {"seconds": round(statistics.median(seconds), 4), "runs": len(seconds)}
        if cuda:
            row["peak_bytes"] = torch.cuda.max_memory_allocated(device)
        return row | {"out": out}

    data = {"machine": machine() | {"device": str(device),
                                    "device_name": torch.cuda.get_device_name(device) if cuda else None,
                                    "cuda": torch.version.cuda},
            "reproduce": "python benchmarks/bench_gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "rows": []}
    size, equal = _hw(args.size), _hw(args.equal_size)
    huge = None if args.huge == "none" else _hw(args.huge)
    models = {}
    for method in args.methods:  # the equality checks first, then each precision over every network
        torch.manual_seed(0)
        models[method] = model = mlfuse.create_model(method, weights=None, device=device).eval()
        s, f = _pair(*equal)
        try:
            ref = timed(model, s, f, 1, tile="off")["out"]
            diffs = {str(t): float(np.abs(timed(model, s, f, 1, tile=t)["out"] - ref).max())
                     for t in args.equal_tiles}
            row = {"method": method, "check": "tiled_vs_untiled", "size": list(equal), "precision": "fp32",
                   "max_abs_diff": diffs}
        except (MLFuseError, RuntimeError, MemoryError) as exc:
            row = {"method": method, "check": "tiled_vs_untiled", "error": str(exc).splitlines()[0]}
        data["rows"].append(row)
        write()
        print(json.dumps(row), flush=True)
    for precision in args.precisions:
        for method, model in models.items():
            for hw, tile, runs in ((size, "off", args.repeats), (huge, "auto", 1)):
                if hw is None:
                    continue
                s, f = _pair(*hw)
                row = {"method": method, "size": list(hw), "precision": precision, "tile": tile}
                try:
                    if tile == "auto":
                        row["tile_px"] = resolve_tile("auto", model, *hw, default_budget(device))
                    r = timed(model, s, f, runs, tile=tile, precision=precision)
                    r.pop("out")
                    row |= r | {"seconds_per_mp": round(r["seconds"] / (hw[0] * hw[1] / 1e6), 4)}
                except (MLFuseError, RuntimeError, MemoryError) as exc:
                    row["error"] = str(exc).splitlines()[0]
                data["rows"].append(row)
                write()
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
