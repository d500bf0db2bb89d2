"""Where the CDDFuse fast path spends its time on the CPU: operator profile with the multiply-adds of
each matrix product and convolution, and the rate each achieves (GMAC/s).

Issue 18 asks the CDDFuse fast path to be 3x the authors' eager forward. This profile shows whether
that is reachable by faster kernels (a kernel far below the rate the others reach) or only by doing
fewer multiply-adds: one forward of the fast path (:func:`mlfuse.inference.fastpath.optimize_for_inference`,
random seeded weights, fp32, batch 1, one thread by default) under ``torch.profiler`` with shapes recorded.

    nice -n 10 python benchmarks/profile_cddfuse.py      # -> benchmarks/results/cddfuse_profile_cpu.md
    python benchmarks/profile_cddfuse.py --size 96x128 --out /tmp/profile.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import torch


def macs(name: str, shapes: list) -> float | None:
    """Multiply-adds of one call of a matrix product or convolution from its input shapes."""
    try:
        if name in ("aten::mm", "aten::bmm"):
            a, b = shapes[0], shapes[1]
            return math.prod(a) * b[-1]
        if name == "aten::addmm":
            a, b = shapes[1], shapes[2]
            return math.prod(a) * b[-1]
        if "convolution" in name:
            x, wt = shapes[0], shapes[1]
            n, _, h, w = x
            out_c, in_per_group, kh, kw = wt
            return n * h * w * out_c * in_per_group * kh * kw  # stride 1, 'same' padding: output ~ input size
    except (IndexError, TypeError, ValueError):
        return None
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="192x256")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cddfuse_profile_cpu.md"))
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from torch.profiler import ProfilerActivity, profile

    import mlfuse
    from mlfuse.inference.fastpath import optimize_for_inference
    from mlfuse.runtime import machine

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.lower().split("x"))
    fast = optimize_for_inference(mlfuse.create_model("cddfuse", weights=None).eval())
    g = torch.Generator().manual_seed(1)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    with torch.inference_mode():
        fast.fusion_forward(s, f)  # warm-up: oneDNN primitives, allocator
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            fast.fusion_forward(s, f)
    rows: dict[tuple[str, str], dict] = defaultdict(lambda: {"calls": 0, "us": 0.0, "macs": 0.0})
    total_us = 0.0
    for ev in prof.key_averages(group_by_input_shape=True):
        total_us += ev.self_cpu_time_total
        shapes = [list(x) for x in ev.input_shapes if isinstance(x, list) and x]
        key = (ev.key, json.dumps(shapes[:2]))
        r = rows[key]
        r["calls"] += ev.count
        r["us"] += ev.self_cpu_time_total
        m = macs(ev.key, shapes)
        if m is not None:
            r["macs"] += m * ev.count
    top = sorted(rows.items(), key=lambda kv: -kv[1]["us"])[: args.rows]
    counted = [r for r in rows.values() if r["macs"]]
    gemm_us = sum(r["us"] for r in counted)
    gemm_macs = sum(r["macs"] for r in counted)
    lines = [
        "# CDDFuse fast path: CPU operator profile",
        "",
        f"One forward of the fast path at {h}x{w} (fp32, batch 1, {args.threads} thread(s), random seeded "
        f"weights): {total_us / 1e6:.2f} s of operator self time, of which matrix products and convolutions "
        f"{gemm_us / 1e6:.2f} s ({100 * gemm_us / total_us:.0f} %) for {gemm_macs / 1e9:.1f} GMAC, "
        f"{gemm_macs / gemm_us / 1e3:.1f} GMAC/s on average.",
        "",
        "| operator | input shapes | calls | self s | share | GMAC | GMAC/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (name, shapes), r in top:
        rate = f"{r['macs'] / r['us'] / 1e3:.1f}" if r["macs"] else ""
        gmac = f"{r['macs'] / 1e9:.2f}" if r["macs"] else ""
        lines.append(f"| `{name}` | `{shapes}` | {r['calls']} | {r['us'] / 1e6:.3f} | "
                     f"{100 * r['us'] / total_us:.1f} % | {gmac} | {rate} |")
    mach = machine()
    lines += ["", f"Machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs, torch {mach['torch']}, "
              f"load average {mach.get('load_avg')}.", "",
              f"Reproduce: `nice -n 10 python benchmarks/profile_cddfuse.py {' '.join(sys.argv[1:])}`".rstrip(), ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
