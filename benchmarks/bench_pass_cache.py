"""Streamed tiled passes with and without kept block outputs (mlfuse.inference.streaming.PassCache).

Per method (seeded random weights at the method's real size, one thread, inference mode), in one
process and one run: CPU seconds of the untiled forward, of the tiled forward whose passes resume
from the kept block outputs (what ``mlfuse fuse`` does) and of the tiled forward that recomputes
every pass from the input (the reference), the largest differences between the three, and what the
cache held, and the convolution multiply-adds each did (counted at the dispatcher) per window area:
about 1 when the passes compute each layer once per window. Results go to
``benchmarks/results/pass_cache_cpu.json`` with the machine named.

``--baseline-src DIR`` also measures another checkout's ``src`` (e.g. a ``git worktree`` of an earlier
commit) in a child process, method by method in the same run, and reports the tiled speed-up over it.

    nice -n 10 python benchmarks/bench_pass_cache.py --size 128x160 --tile 64
    git worktree add /tmp/base REV && nice -n 10 python benchmarks/bench_pass_cache.py --no-recompute \
        --baseline-src /tmp/base/src --out benchmarks/results/pass_work_cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("cddfuse", "emma", "smfnet", "sfdfuse")


def conv_work():
    """A dispatch mode adding up the multiply-adds of the convolutions that run (not on the meta device)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    convs = (torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default)

    class Work(TorchDispatchMode):
        macs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in convs and args[0].device.type != "meta":
                self.macs += out.numel() * args[1].shape[1] * args[1].shape[2] * args[1].shape[3]
            return out

    return Work()


def measure(method: str, h: int, w: int, tile: int, recompute: bool = True) -> dict:
    import torch

    import mlfuse
    from mlfuse.inference import streaming
    from mlfuse.inference.tiling import plan_windows, tile_spec, tiled_forward

    torch.manual_seed(0)
    model = mlfuse.create_model(method, weights=None).eval()
    g = torch.Generator().manual_seed(1)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    stats = streaming.CacheStats()
    with torch.inference_mode():
        model.fusion_forward(s[..., :64, :64].contiguous(), f[..., :64, :64].contiguous())  # warm-up
        t = time.process_time()
        ref = model.fusion_forward(s, f)
        untiled = time.process_time() - t
        t = time.process_time()
        kept = tiled_forward(model, s, f, tile, cache_stats=stats)
        kept_s = time.process_time() - t
        if recompute:
            t = time.process_time()
            again = tiled_forward(model, s, f, tile, keep_blocks=False)
            recomputed_s = time.process_time() - t
        with conv_work() as whole:  # the work, counted apart from the timed runs
            model.fusion_forward(s, f)
        with conv_work() as tiled:
            tiled_forward(model, s, f, tile)
    spec = tile_spec(model)
    windows = plan_windows(h, w, tile, spec.halo, spec.align)
    area = sum((win.bottom - win.top) * (win.right - win.left) for win in windows) / (h * w)
    row = {"method": method, "size": [h, w], "tile": tile, "windows": len(windows),
           "window_area_over_image": round(area, 3),
           "untiled_cpu_s": round(untiled, 2), "tiled_kept_cpu_s": round(kept_s, 2),
           "conv_gmac_untiled": round(whole.macs / 1e9, 3), "conv_gmac_tiled": round(tiled.macs / 1e9, 3),
           "conv_work_per_window_area": round(tiled.macs / whole.macs / area, 3),
           "max_abs_kept_vs_untiled": float((kept - ref).abs().max()),
           "cache": {"peak_ram_bytes": stats.peak_ram, "peak_file_bytes": stats.peak_disk, "hits": stats.hits,
                     "stored": stats.stored, "dropped": stats.dropped}}
    if recompute:
        row |= {"tiled_recomputed_cpu_s": round(recomputed_s, 2),
                "speed_up_of_keeping": round(recomputed_s / kept_s, 2),
                "kept_equals_recomputed": bool(torch.equal(kept, again))}
    return row


def _baseline(src: str, method: str, h: int, w: int, tile: int, recompute: bool) -> dict:
    """:func:`measure` with ``mlfuse`` imported from another checkout's ``src``, in a child process."""
    code = (f"import sys; sys.path.insert(0, {src!r}); sys.path.insert(1, {str(Path(__file__).parent)!r})\n"
            "import json, torch, bench_pass_cache as b; torch.set_num_threads(1)\n"
            f"print(json.dumps(b.measure({method!r}, {h}, {w}, {tile}, {recompute})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--size", default="128x160", help="HxW")
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "pass_cache_cpu.json"))
    p.add_argument("--no-recompute", action="store_true", help="skip the recomputing reference (the slowest part)")
    p.add_argument("--baseline-src", metavar="DIR", help="also measure mlfuse from this src folder (a child process)")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from mlfuse.runtime import machine

    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.lower().split("x"))
    rows = []
    for method in args.methods:
        if args.baseline_src:
            base = _baseline(args.baseline_src, method, h, w, args.tile, not args.no_recompute)
            rows.append(base | {"code": args.baseline_src})
            print(json.dumps(rows[-1]), flush=True)
        rows.append(measure(method, h, w, args.tile, not args.no_recompute))
        if args.baseline_src:
            rows[-1] |= {"code": "current", "tiled_speed_up_vs_baseline": round(base["tiled_kept_cpu_s"]
                                                                                / rows[-1]["tiled_kept_cpu_s"], 2)}
        print(json.dumps(rows[-1]), flush=True)
        result = {"threads": 1, "machine": machine(), "rows": rows,
                  "reproduce": "nice -n 10 python benchmarks/bench_pass_cache.py " + " ".join(sys.argv[1:])}
        tmp = Path(args.out + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.out)  # after every method: a long run keeps what it measured


if __name__ == "__main__":
    main()
