"""The prepared GPU-machine scripts (benchmarks/device/): what pack.sh copies is what the training config
reads, and run.sh trains, stops checkpointed, packs the run and benchmarks, here on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _entries(cfg: dict, shared: Path, new: Path) -> list[dict]:
    """The config's data and val entries with ``../shared`` read from ``new`` instead."""
    text = json.dumps(cfg["data"] + cfg["val"]).replace("../shared", str(new))
    return json.loads(text)


@pytest.mark.shared
def test_pack_copies_every_pair_the_training_config_reads(shared, tmp_path):
    from mlfuse.train import build_config, get_recipe
    from mlfuse.train.data import collect_pairs

    dest = tmp_path / "pack"
    r = subprocess.run(["bash", str(ROOT / "benchmarks/device/pack.sh"), str(dest)], capture_output=True, text=True,
                       env={**os.environ, "SHARED": str(shared), "NO_WHEEL": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert size < 48 << 20  # the working tree (~17 MB) and this must stay under the device's 64 MiB
    cfg = build_config(get_recipe("mlfuse").defaults, file=ROOT / "configs/mlfuse_train.toml")
    here = [(p.structural.name, p.functional.name) for p in collect_pairs(_entries(cfg, shared, shared))]
    packed = [(p.structural.name, p.functional.name) for p in collect_pairs(_entries(cfg, shared, dest / "shared"))]
    assert packed == here and len(here) > 300


@pytest.mark.shared
def test_run_script_trains_stops_packs_and_benchmarks_on_the_cpu(shared, tmp_path):
    run, out = tmp_path / "runs" / "faithful", tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "RUN": str(run), "OUT": str(out), "TRAIN_SECONDS": "0.001", "WORKERS": "0",
           "BENCH": "1", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           "BENCH_ARGS": "--methods mlfuse --precisions fp32 --size 48x64 --huge none --equal-size 67x93 "
                         "--equal-tiles 32 --repeats 1"}
    r = subprocess.run(["bash", str(ROOT / "benchmarks/device/run.sh")], capture_output=True, text=True, env=env,
                       timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "stopped at step 1 (max_seconds), checkpointed" in (out / "train.log").read_text()
    with tarfile.open(out / "faithful.tgz") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    ck = torch.load(tmp_path / "back" / "faithful" / "last.pt", weights_only=True)
    assert ck["state"]["step"] == 1 and ck["config"]["epochs"] == 501 and ck["config"]["batch_size"] == 16
    rows = json.loads((out / "gpu.json").read_text())["rows"]
    check = next(row for row in rows if row.get("check") == "tiled_vs_untiled")
    assert check["method"] == "mlfuse" and check["max_abs_diff"]["32"] <= 1e-5
    timing = next(row for row in rows if "seconds" in row)
    assert timing["size"] == [48, 64] and timing["tile"] == "off" and timing["seconds"] > 0
