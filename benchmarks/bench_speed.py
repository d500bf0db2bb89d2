"""CPU speed and memory of MLFuse inference: the fast path against the plain eager forward (same
run, interleaved), exact tiling, and a 4096 x 4096 pair fused in bounded memory.

* speed at 480 x 640, batch 1, fp32: the plain eager forward (``create_model`` as is, inference
  mode, torch's default threads) and :func:`mlfuse.inference.fastpath.optimize_for_inference` variants, timed
  in interleaved rounds so machine load hits them alike; median / min wall and CPU time, the ratio
  plain / fast (also with one thread each: per-core efficiency, whatever other jobs leave free), and
  the fraction of the CPU's fp32 peak (clock x cores x 2 FMA units x 8 lanes x 2 FLOP, AVX2) each
  reaches: at the nominal clock (/proc/cpuinfo, lscpu) and at the clock measured while busy (turbo),
  with a single 32->32 3x3 convolution as the attainable reference;
* exactness: max |fast - plain| and max |tiled - untiled| on the same image;
* memory: ``mlfuse fuse --tile auto`` on a 4096 x 4096 pair in a subprocess, its peak RSS.

    nice -n 5 python benchmarks/bench_speed.py        # writes benchmarks/results/speed_cpu.json
    python benchmarks/bench_speed.py --repeats 3 --skip-huge --no-compile --out /tmp/speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import mlfuse
from mlfuse.inference.fastpath import optimize_for_inference
from mlfuse.inference.tiling import choose_tile, default_budget, tile_spec, tiled_forward

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "speed_cpu.json"
OFFICIAL = ROOT.parent / "shared" / "weights" / "mlfuse_official.pth"


def machine() -> dict:
    """CPU model, clock and the fp32 peak it implies (AVX2: 8 lanes, 2 FMA units, 2 FLOP per FMA)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.search(r"^flags\s*:\s*(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if Path("/usr/bin/lscpu").exists() else ""
    mhz = None
    for pattern, text in ((r"CPU max MHz:\s*([\d.]+)", lscpu), (r"CPU MHz:\s*([\d.]+)", lscpu),
                          (r"cpu MHz\s*:\s*([\d.]+)", info)):
        found = re.search(pattern, text)
        if found:
            mhz, source = float(found.group(1)), pattern.split(r"\s")[0].replace(":", "")
            break
    cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma_units = 2
    peak = mhz / 1e3 * cores * fma_units * lanes * 2 if mhz else None
    model = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
    ghz = effective_clock_ghz()
    return {"cpu": model.group(1) if model else platform.processor(), "logical_cpus": cores,
            "clock_mhz": mhz, "clock_source": source if mhz else None, "avx2": "avx2" in flags,
            "fma": "fma" in flags, "avx512f": "avx512f" in flags,
            "fp32_peak_gflops": peak, "peak_formula": f"{mhz} MHz x {cores} cores x {fma_units} FMA units x "
                                                       f"{lanes} fp32 lanes x 2 FLOP/FMA" if mhz else None,
            "effective_clock_ghz": ghz,
            "fp32_peak_gflops_at_effective_clock": ghz * cores * fma_units * lanes * 2 if ghz else None,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version()}


CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {  /* 4 dependent 1-cycle adds per iteration: cycles = 4 x iterations */
    long x = 0; struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < 100000000L; i++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%f\n", 4e8 / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / 1e9);
    return x == 0;
}
"""


def effective_clock_ghz(runs: int = 7) -> float | None:
    """The core clock while busy (turbo included), from a chain of dependent integer adds (one per
    cycle on x86); the best of several short runs, so time-slicing by other jobs does not lower
    it. ``None`` without gcc or off x86-64."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "clock.c", Path(tmp) / "clock"
        src.write_text(CLOCK_C)
        try:
            subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True, capture_output=True)
            return max(float(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)
                       for _ in range(runs))
        except (OSError, subprocess.CalledProcessError, ValueError):
            return None


def count_gmac(model: torch.nn.Module, h: int, w: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 1, h, w)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.fusion_forward(x, x)
    return counter.get_total_flops() / 2 / 1e9


def conv_reference(threads: int, repeats: int = 5) -> dict:
    """GMAC/s of one 32->32 3x3 convolution on a 160 x 160 channels-last tile (oneDNN)."""
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).to(memory_format=torch.channels_last).eval()
    x = torch.rand(1, 32, 160, 160).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            conv(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                conv(x)
            times.append((time.perf_counter() - t0) / 10)
    torch.set_num_threads(prev)
    return {"threads": threads, "gmac_per_s": 32 * 32 * 9 * 160 * 160 / min(times) / 1e9}


def time_variants(variants: dict, x: torch.Tensor, y: torch.Tensor, repeats: int, quiet: bool) -> dict:
    walls = {k: [] for k in variants}
    cpus = {k: [] for k in variants}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up (oneDNN kernels, compiled graphs)
            fn(x, y)
            fn(x, y)
        for _ in tqdm(range(repeats), desc="speed rounds", disable=quiet):
            for name, fn in variants.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(x, y)
                walls[name].append(time.perf_counter() - t0)
                cpus[name].append(time.process_time() - c0)
    return {k: {"median_wall_s": statistics.median(v), "min_wall_s": min(v), "median_cpu_s": statistics.median(cpus[k]),
                "all_wall_s": v} for k, v in walls.items()}


def huge_run(size: int, weights: Path, workdir: Path) -> dict:
    """``mlfuse fuse --tile auto`` on a size x size pair in a subprocess; its peak RSS."""
    from PIL import Image

    from mlfuse.data.sample import render_sample

    vis, ir = render_sample()
    v, i, out = workdir / "vis.png", workdir / "ir.png", workdir / "fused.png"
    Image.fromarray(vis).resize((size, size), Image.BICUBIC).save(v)
    Image.fromarray(ir).resize((size, size), Image.BICUBIC).save(i)
    del vis, ir
    cmd = [sys.executable, "-m", "mlfuse", "fuse", "--vis", str(v), "--ir", str(i), "-o", str(out),
           "--weights", str(weights), "--tile", "auto", "--device", "cpu", "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {"size_hw": [size, size], "command": " ".join(["mlfuse", *cmd[3:]]), "returncode": proc.returncode,
              "wall_s": wall, "peak_rss_mb": peak_kb / 1024, "stderr_tail": proc.stderr[-500:]}
    if proc.returncode == 0:
        fused = np.asarray(Image.open(out))
        result.update(output_shape=list(fused.shape), output_mean=float(fused.mean()))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="480x640", help="HxW for the speed comparison")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--huge", type=int, default=4096, help="side of the memory test pair")
    ap.add_argument("--skip-huge", action="store_true")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant (~30-60 s to build)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    h, w = map(int, args.size.lower().split("x"))
    load_start = os.getloadavg()
    report: dict = {"benchmark": "MLFuse CPU inference: fast path vs plain eager, tiling, 4096^2 memory",
                    "command": "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:]), "machine": machine()}

    torch.manual_seed(0)
    model = mlfuse.create_model("mlfuse", weights=None)  # timing does not depend on the weights' values
    gmac = count_gmac(model, h, w)
    variants = {"plain_eager": model.fusion_forward}
    fast = optimize_for_inference(model)
    variants["fast"] = fast.fusion_forward
    variants["fast_whole_image"] = optimize_for_inference(model, block=None).fusion_forward
    compile_s = None
    if not args.no_compile:
        compiled = optimize_for_inference(model, block=None, compile=True)
        t0 = time.perf_counter()
        with torch.inference_mode():
            compiled.fusion_forward(torch.rand(1, 1, h, w), torch.rand(1, 1, h, w))
        compile_s = time.perf_counter() - t0
        variants["fast_whole_image_compiled"] = compiled.fusion_forward
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    speed = time_variants(variants, x, y, args.repeats, args.quiet)
    peak = report["machine"]["fp32_peak_gflops"]
    peak_eff = report["machine"]["fp32_peak_gflops_at_effective_clock"]
    for r in speed.values():
        r["gflops"] = 2 * gmac / r["median_wall_s"]
        r["fraction_of_fp32_peak"] = r["gflops"] / peak if peak else None
        r["fraction_of_fp32_peak_at_effective_clock"] = r["gflops"] / peak_eff if peak_eff else None
        r["speedup_vs_plain_median"] = speed["plain_eager"]["median_wall_s"] / r["median_wall_s"]
        r["speedup_vs_plain_min"] = speed["plain_eager"]["min_wall_s"] / r["min_wall_s"]
    # the same comparison on one core (torch.set_num_threads(1), the fast path with one worker): per-core
    # efficiency, unaffected by how many cores other jobs leave free
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one = optimize_for_inference(model, workers=1)
    single = time_variants({"plain_eager": model.fusion_forward, "fast": one.fusion_forward}, x, y,
                           max(3, args.repeats // 2), args.quiet)
    torch.set_num_threads(threads)
    for r in single.values():
        r["gflops"] = 2 * gmac / r["median_wall_s"]
        r["fraction_of_one_core_fp32_peak"] = r["gflops"] / (peak / (os.cpu_count() or 1)) if peak else None
        r["fraction_of_one_core_fp32_peak_at_effective_clock"] = (
            r["gflops"] / (peak_eff / (os.cpu_count() or 1)) if peak_eff else None)
    report["speed_one_thread"] = {"variants": single, "speedup_fast_vs_plain":
                                  single["plain_eager"]["median_wall_s"] / single["fast"]["median_wall_s"]}
    report["speed"] = {"size_hw": [h, w], "batch": 1, "dtype": "float32", "gmac": gmac, "repeats": args.repeats,
                       "fast_config": {"block": fast.block, "workers": fast.workers,
                                       "channels_last": fast.channels_last},
                       "compile_first_call_s": compile_s, "variants": speed,
                       "speedup_fast_vs_plain": speed["fast"]["speedup_vs_plain_median"],
                       "conv_reference": [conv_reference(1), conv_reference(torch.get_num_threads())]}

    # exactness on a real pair when the authors' checkpoint is at hand, else on random inputs
    if OFFICIAL.is_file():
        from PIL import Image

        from mlfuse.data.sample import render_sample

        model = mlfuse.create_model("mlfuse", weights=OFFICIAL)
        fast = optimize_for_inference(model)
        vis, ir = render_sample()
        vis = np.asarray(Image.fromarray(vis).convert("L").resize((w, h), Image.BICUBIC), np.float32) / 255
        ir = np.asarray(Image.fromarray(ir).resize((w, h), Image.BICUBIC), np.float32) / 255
        x, y = torch.from_numpy(vis)[None, None], torch.from_numpy(ir)[None, None]
    with torch.inference_mode():
        ref = model.fusion_forward(x, y)
        exact = {"weights": "official" if OFFICIAL.is_file() else "random",
                 "max_abs_fast_vs_plain": float((fast.fusion_forward(x, y) - ref).abs().max()),
                 "max_abs_tiled128_vs_untiled": float((tiled_forward(model, x, y, 128) - ref).abs().max()),
                 "max_abs_tiled64_2workers_vs_untiled": float((tiled_forward(model, x, y, 64, workers=2)
                                                               - ref).abs().max())}
    report["exactness"] = exact

    if not args.skip_huge:
        spec = tile_spec(model)
        budget = default_budget(torch.device("cpu"))
        with tempfile.TemporaryDirectory(prefix="mlfuse-bench-") as tmp:
            weights = Path(tmp) / "random_mlfnet.pth"
            torch.save({"model": mlfuse.create_model("mlfuse", weights=None).state_dict()}, weights)
            huge = huge_run(args.huge, weights, Path(tmp))
        workers = torch.get_num_threads()  # run_network: one tile per core, the budget split between them
        huge.update(tile_budget_mb=budget / 2**20, workers=workers,
                    tile=choose_tile(spec, args.huge, args.huge, budget // workers),
                    bytes_per_pixel=spec.bytes_per_pixel, target_peak_rss_mb=3 * 1024,
                    under_target=huge["returncode"] == 0 and huge["peak_rss_mb"] < 3 * 1024)
        report["huge"] = huge
    report["load_avg_start"], report["load_avg_end"] = list(load_start), list(os.getloadavg())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    s = report["speed"]
    print(f"{h}x{w}: plain {s['variants']['plain_eager']['median_wall_s']:.3f} s, fast "
          f"{s['variants']['fast']['median_wall_s']:.3f} s -> {s['speedup_fast_vs_plain']:.2f}x; "
          f"fast at {s['variants']['fast']['fraction_of_fp32_peak'] or float('nan'):.0%} of fp32 peak")
    print(f"one thread: {report['speed_one_thread']['speedup_fast_vs_plain']:.2f}x")
    print(f"exactness: {exact}")
    if "huge" in report:
        r = report["huge"]
        print(f"{args.huge}^2 --tile auto: rc {r['returncode']}, {r['wall_s']:.0f} s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
