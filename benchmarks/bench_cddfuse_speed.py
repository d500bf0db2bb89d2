"""CDDFuse CPU speed: the fast path (:func:`mlfuse.inference.fastpath.optimize_for_inference`) against a faithful
reimplementation of the authors' eager forward, in one run, interleaved rounds (machine load hits all alike).

* ``authors``: mlfuse's CDDFuse with the authors' arithmetic everywhere, including their explicit
  channel LayerNorm (``(x - mean) / sqrt(var + 1e-5) * w + b`` on a ``b (h w) c`` copy), i.e. the
  computation of ``Zhaozixiang1228/MMIF-CDDFuse`` ``net.py`` in eager mode;
* ``mlfuse-plain``: the network as ``mlfuse.create_model`` builds it (fused ``F.layer_norm``);
* ``fast``: the fast path: Lite attention's ``qkv1`` composed into ``qkv2`` (one 3x3 conv, 3.1x fewer
  multiply-adds), attention projection merged into the attention matrix, gated feed-forwards as two
  contiguous branches with GELU as a oneDNN post-op, channels-last layout, 1x1 convs as GEMMs.

Reports median wall and process-CPU seconds per forward (CPU time is what to compare on a machine
shared with other jobs: preemption does not count) at 480 x 640 (batch 1, fp32, torch's default threads unless
``--threads``), the ratios against ``authors``, max |fast - authors| on the raw output, and the error of
bf16 autocast on the fast path (opt-in in mlfuse; slow on CPUs without native bf16, so measured on a
smaller image unless ``--bf16-size`` says otherwise). Where the CPU has native bf16 (AVX-512 BF16 or AMX
in ``/proc/cpuinfo``), ``fast-bf16`` (the fast path under ``torch.autocast("cpu", torch.bfloat16)``) is
also timed in the rounds at the full size, with its error against ``authors``. Random weights (seeded):
the speed does not depend on them, and the authors' checkpoint is not needed.

    nice -n 10 python benchmarks/bench_cddfuse_speed.py              # -> benchmarks/results/cddfuse_speed_cpu.json
    python benchmarks/bench_cddfuse_speed.py --size 240x320 --rounds 1 --out /tmp/speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def authors_model(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose channel LayerNorms use the authors' explicit formula."""
    import copy

    from mlfuse.models.blocks.norm import LayerNorm

    card = getattr(model, "card", None)
    plain = copy.deepcopy(model, memo={id(card): card})
    for m in plain.modules():
        if isinstance(m, LayerNorm):
            m.fused = False
    return plain


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="480x640")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16-size", default="120x160")
    p.add_argument("--bf16-rounds", choices=("auto", "yes", "no"), default="auto",
                   help="time fast-bf16 in the rounds: auto = where the CPU has native bf16")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "cddfuse_speed_cpu.json"))
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import mlfuse
    from mlfuse.inference.fastpath import optimize_for_inference
    from mlfuse.runtime import machine

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mlfuse.create_model("cddfuse", weights=None).eval()
    nets = {"authors": authors_model(model), "mlfuse-plain": model, "fast": optimize_for_inference(model)}
    native_bf16 = any(flag in open("/proc/cpuinfo").read() for flag in ("avx512_bf16", "amx_bf16"))
    if args.bf16_rounds == "yes" or (args.bf16_rounds == "auto" and native_bf16):
        nets["fast-bf16"] = nets["fast"]
    h, w = (int(v) for v in args.size.lower().split("x"))
    g = torch.Generator().manual_seed(1)
    s, f = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    def autocast(name: str) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("-bf16"))

    times: dict[str, list[float]] = {k: [] for k in nets}
    cpu: dict[str, list[float]] = {k: [] for k in nets}  # process CPU time: robust to other jobs' load
    outs = {}
    with torch.inference_mode():
        for k, net in nets.items():  # warm-up (oneDNN primitives, allocator) on a small pair
            with autocast(k):
                net.fusion_forward(s[..., :64, :64].contiguous(), f[..., :64, :64].contiguous())
        for r in range(args.rounds):
            for k, net in nets.items():
                t, c = time.perf_counter(), time.process_time()
                with autocast(k):
                    outs[k] = net.fusion_forward(s, f).float()
                times[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
                print(f"round {r}: {k} {times[k][-1]:.2f} s wall, {cpu[k][-1]:.2f} s CPU", flush=True)
        bh, bw = (int(v) for v in args.bf16_size.lower().split("x"))
        sb, fb = s[..., :bh, :bw].contiguous(), f[..., :bh, :bw].contiguous()
        ref = nets["authors"].fusion_forward(sb, fb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t = time.perf_counter()
            low = nets["fast"].fusion_forward(sb, fb).float()
            bf16_seconds = time.perf_counter() - t
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        "machine": machine(), "size": [h, w], "rounds": args.rounds, "threads": torch.get_num_threads(),
        "median_seconds": med, "all_seconds": times,
        "speedup_vs_authors": {k: med["authors"] / v for k, v in med.items()},
        "median_cpu_seconds": med_cpu, "all_cpu_seconds": cpu,
        "speedup_vs_authors_cpu_time": {k: med_cpu["authors"] / v for k, v in med_cpu.items()},
        "max_abs_diff_vs_authors": {k: float((outs[k] - outs["authors"]).abs().max()) for k in outs},
        "bf16_autocast_fast": {"size": [bh, bw], "max_abs_err_vs_fp32_authors": float((low - ref).abs().max()),
                               "mean_abs_err": float((low - ref).abs().mean()), "seconds": bf16_seconds,
                               "cpu_native_bf16": native_bf16},
        "reproduce": "nice -n 10 python benchmarks/bench_cddfuse_speed.py " + " ".join(sys.argv[1:]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("median_seconds", "speedup_vs_authors", "speedup_vs_authors_cpu_time",
                                             "max_abs_diff_vs_authors")},
                     indent=1))


if __name__ == "__main__":
    main()
