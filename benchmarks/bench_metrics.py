"""Time every metric of every profile on one 480x640 triple, and the fast Qabf / VIF against
straightforward implementations (benchmarks/naive_metrics.py) in the same run. Writes JSON.

    python benchmarks/bench_metrics.py                  # uses ../shared reference triple TNO04_mean
    python benchmarks/bench_metrics.py --repeats 5 --out /tmp/m.json

Targets (issue 3, set for a 2-core CPU; the results file names the machine measured): cddfuse
profile < 0.3 s, tang without FMI < 1 s, each FMI feature < 2 s. Each figure is the median of
--repeats runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mlfuse.runtime import machine as _machine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TRIPLE = HERE.parents[1] / "shared" / "reference" / "metrics" / "triples" / "TNO04_mean"
RESULTS = HERE / "results" / "metrics_cpu.json"
TARGETS = {"cddfuse": 0.3, "tang (no FMI)": 1.0, "FMI (each feature)": 2.0}


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_triple(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, a, b = (np.asarray(Image.open(folder / f"{n}.png")) for n in ("F", "A", "B"))
    h, w = f.shape
    y, x = (h - 480) // 2, (w - 640) // 2
    return tuple(im[y:y + 480, x:x + 640] for im in (f, a, b))  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triple", type=Path, default=TRIPLE, help="folder with F.png, A.png, B.png (>= 480x640)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()

    import torch  # only for the thread count, so numbers state their conditions

    from mlfuse.metrics.profiles import PROFILES

    from naive_metrics import qabf_naive, vif_naive

    f, a, b = load_triple(args.triple)
    per_profile: dict[str, dict] = {}
    jobs = [(p, m) for p in PROFILES.values() for m in p.metrics]
    for prof, metric in tqdm(jobs, desc="metrics", disable=args.quiet):
        ff, aa, bb = (x.astype(prof.dtype) for x in (f, a, b))
        t = _median_time(lambda m=metric, ff=ff, aa=aa, bb=bb: m(ff, aa, bb), args.repeats)
        per_profile.setdefault(prof.name, {"metrics": {}})["metrics"][metric.name] = {"seconds": t, "slow": metric.slow}
    for entry in per_profile.values():
        times = entry["metrics"]
        entry["total_s"] = sum(v["seconds"] for v in times.values())
        entry["total_without_slow_s"] = sum(v["seconds"] for v in times.values() if not v["slow"])

    from mlfuse.metrics.fidelity import vif
    from mlfuse.metrics.gradient import qabf

    f64, a64, b64 = (x.astype(np.float64) for x in (f, a, b))
    ratios = {}
    for label, fast, naive in (("Qabf", qabf, qabf_naive), ("VIF", vif, vif_naive)):
        t_fast = _median_time(lambda fn=fast: fn(f64, a64, b64), args.repeats)
        t_naive = _median_time(lambda fn=naive: fn(f64, a64, b64), 1)
        ratios[label] = {"fast_s": t_fast, "naive_s": t_naive, "speedup": t_naive / t_fast,
                         "same_value": bool(np.isclose(fast(f64, a64, b64), naive(f64, a64, b64), rtol=1e-9))}

    fmi = per_profile["tang"]["metrics"]
    checks = {
        "cddfuse": per_profile["cddfuse"]["total_s"],
        "tang (no FMI)": per_profile["tang"]["total_without_slow_s"],
        "FMI (each feature)": max(v["seconds"] for k, v in fmi.items() if k.startswith("FMI")),
    }
    report = {
        "benchmark": "fusion metrics on one 480x640 triple (centre crop of TNO04_mean), median of repeats",
        "command": "python benchmarks/bench_metrics.py " + " ".join(sys.argv[1:]),
        "machine": {**_machine(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
                    "load_avg_at_start": list(os.getloadavg())},
        "targets_s": TARGETS,
        "measured_s": checks,
        "meets_targets": {k: checks[k] < v for k, v in TARGETS.items()},
        "fast_vs_naive": ratios,
        "profiles": per_profile,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(args.out)
    for k, v in checks.items():
        print(f"{k}: {v:.3f} s (target < {TARGETS[k]} s)")
    for k, v in ratios.items():
        print(f"{k}: fast {v['fast_s']:.3f} s vs naive {v['naive_s']:.2f} s -> {v['speedup']:.0f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
