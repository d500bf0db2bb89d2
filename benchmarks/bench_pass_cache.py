"""Streamed tiled passes with and without kept block outputs (mlfuse.inference.streaming.PassCache).

Per method (seeded random weights at the method's real size, one thread, inference mode), in one
process and one run: CPU seconds of the untiled forward, of the tiled forward whose passes resume
from the kept block outputs (what ``mlfuse fuse`` does) and of the tiled forward that recomputes
every pass from the input (the reference), the largest differences between the three, and what the
cache held. Results go to ``benchmarks/results/pass_cache_cpu.json`` with the machine named.

    nice -n 10 python benchmarks/bench_pass_cache.py --size 128x160 --tile 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

METHODS = ("cddfuse", "emma", "smfnet", "sfdfuse")


def measure(method: str, h: int, w: int, tile: int) -> dict:
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
        t = time.process_time()
        again = tiled_forward(model, s, f, tile, keep_blocks=False)
        recomputed_s = time.process_time() - t
    spec = tile_spec(model)
    return {"method": method, "size": [h, w], "tile": tile, "windows": len(plan_windows(h, w, tile, spec.halo,
                                                                                       spec.align)),
            "untiled_cpu_s": round(untiled, 2), "tiled_kept_cpu_s": round(kept_s, 2),
            "tiled_recomputed_cpu_s": round(recomputed_s, 2),
            "speed_up_of_keeping": round(recomputed_s / kept_s, 2),
            "max_abs_kept_vs_untiled": float((kept - ref).abs().max()),
            "kept_equals_recomputed": bool(torch.equal(kept, again)),
            "cache": {"peak_ram_bytes": stats.peak_ram, "peak_file_bytes": stats.peak_disk, "hits": stats.hits,
                      "stored": stats.stored, "dropped": stats.dropped}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--size", default="128x160", help="HxW")
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "pass_cache_cpu.json"))
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from mlfuse.runtime import machine

    torch.set_num_threads(1)
    h, w = (int(v) for v in args.size.lower().split("x"))
    rows = []
    for method in args.methods:
        rows.append(measure(method, h, w, args.tile))
        print(json.dumps(rows[-1]), flush=True)
        result = {"threads": 1, "machine": machine(), "rows": rows,
                  "reproduce": "nice -n 10 python benchmarks/bench_pass_cache.py " + " ".join(sys.argv[1:])}
        tmp = Path(args.out + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.out)  # after every method: a long run keeps what it measured


if __name__ == "__main__":
    main()
