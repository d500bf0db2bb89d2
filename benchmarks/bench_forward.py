"""CPU timing of the MLFuse forward pass: the baseline later speed work is judged by.

Each size runs in a fresh process (so peak RSS is per size): 2 warm-up runs, then the median,
minimum and CPU time of N timed runs, batch 1, eval, inference_mode, fp32. Weights are seeded
random (timing does not depend on their values). Writes JSON.

    python benchmarks/bench_forward.py                      # 256x256 and 480x640, 7 runs each
    python benchmarks/bench_forward.py --sizes 256x256 --repeats 3 --threads 1 --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "forward_cpu.json"


def measure(h: int, w: int, repeats: int, threads: int) -> dict:
    import torch

    from mlfuse.models.mlfuse.network import MLFNet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MLFNet().eval()
    x, y = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walls, cpus = [], []
    with torch.inference_mode():
        for _ in range(2):
            model(x, y)
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            model(x, y)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "size_hw": [h, w], "threads": threads, "repeats": repeats,
        "median_wall_s": statistics.median(walls), "min_wall_s": min(walls),
        "median_cpu_s": statistics.median(cpus), "all_wall_s": walls,
        "gmac": round(99_300 * h * w / 1e9, 2),  # ~99.3 k MAC per pixel (spec section 6)
        "peak_rss_mb": rss_after / 1024, "peak_rss_increase_mb": (rss_after - rss_before) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256x256,480x640", help="comma-separated HxW")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    if args.one:
        h, w = map(int, args.one.split("x"))
        print(json.dumps(measure(h, w, args.repeats, args.threads)))
        return

    import torch
    from tqdm import tqdm

    threads = args.threads or torch.get_num_threads()
    runs = []
    for size in tqdm(args.sizes.split(","), desc="bench", disable=args.quiet):
        out = subprocess.run([sys.executable, __file__, "--one", size, "--repeats", str(args.repeats),
                              "--threads", str(threads)], check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    report = {
        "benchmark": "MLFuse forward, batch 1, fp32, eval, inference_mode, CPU",
        "command": "python benchmarks/bench_forward.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "logical_cpus": torch.get_num_threads() if args.threads is None else None,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_avg_at_start": list(__import__("os").getloadavg())},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    for r in runs:
        print(f"{r['size_hw'][0]}x{r['size_hw'][1]}: median {r['median_wall_s']:.3f} s, min {r['min_wall_s']:.3f} s, "
              f"cpu {r['median_cpu_s']:.3f} s, {r['threads']} threads, peak RSS +{r['peak_rss_increase_mb']:.0f} MB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
