"""What the real downstream protocol costs: parameters and FLOPs of the GPU-config task networks (counted
by torch's flop counter, a multiply-add = 2 FLOPs), the training compute of one input (forward + backward
~ 3 x forward, per image and epoch), and the measured CPU time of one training step here (batch 1,
for scale). Writes ``benchmarks/results/downstream/cost.json`` with the machine it ran on.

    python benchmarks/bench_downstream_cost.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mlfuse.downstream.config import load_task_config
from mlfuse.downstream.networks import build_network
from mlfuse.runtime import machine

ROOT = Path(__file__).resolve().parents[1]
#: published pairs per split: MSRS (Tang et al. 2022) and M3FD with mlfuse's shipped 8:1:1 split
SETS = {"seg": ("MSRS", 1083, 361, 9), "det": ("M3FD", 3360, 420, 6)}


def main() -> None:
    torch.set_num_threads(1)
    out = {"machine": machine(), "torch_threads": 1, "tasks": {}}
    for task, (name, n_train, n_test, n_cls) in SETS.items():
        cfg = load_task_config(ROOT / "configs" / f"downstream_{task}_gpu.toml")
        net = build_network(task, n_cls, cfg.network)
        x = torch.randn(1, 3, *cfg.size)
        net.eval()
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(x)
        fwd = fc.get_total_flops()
        net.train()
        x2 = torch.randn(2, 3, *cfg.size)  # BatchNorm needs two samples in training mode
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            y = net(x2)
            loss = y.mean() if torch.is_tensor(y) else sum(v.mean() for v in y.values())
            loss.backward()
            times.append((time.perf_counter() - t0) / 2)
        train_flops = 3 * fwd * n_train * cfg.epochs
        out["tasks"][task] = {
            "data": name, "train_pairs": n_train, "test_pairs": n_test, "config": cfg.name,
            "size": list(cfg.size), "epochs": cfg.epochs,
            "parameters": sum(p.numel() for p in net.parameters()),
            "forward_gflops_per_image": round(fwd / 1e9, 2),
            "training_pflops_per_input": round(train_flops / 1e15, 2),
            "cpu_seconds_per_training_image_measured": round(statistics.median(times), 3),
            "cpu_hours_per_input_extrapolated": round(statistics.median(times) * n_train * cfg.epochs / 3600, 1),
        }
        print(task, out["tasks"][task], flush=True)
    dest = ROOT / "benchmarks" / "results" / "downstream" / "cost.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
