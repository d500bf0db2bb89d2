"""benchmarks/runs/*.sh: the committed training runs' start/continue scripts pass the settings they document."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _args(script: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    fake = tmp_path / "bin" / "mlfuse"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')  # prints the arguments, one a line
    fake.chmod(0o755)
    outer = {k: v for k, v in os.environ.items() if k not in ("THREADS", "MAX_SECONDS")}  # the scripts' knobs
    run_env = {**outer, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "runs" / script)], env=run_env, capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout.splitlines()


@pytest.mark.parametrize(("script", "epochs", "lr"), [("mlfuse-cpu-120ep.sh", "120", None),
                                                     ("mlfuse-cpu-30ep.sh", "30", None),
                                                     ("mlfuse-cpu-60ep-lr5e-4.sh", "60", "5e-4")])
def test_cpu_schedule_runs(script: str, epochs: str, lr: str | None, tmp_path: Path):
    args = _args(script, tmp_path, {"MAX_SECONDS": "60"})
    assert args[:2] == ["train", "mlfuse"]
    out = args[args.index("--out") + 1]
    assert out == f"benchmarks/runs/mlfuse-cpu-{epochs}ep" + (f"-lr{lr}" if lr else "")
    assert args[args.index("--epochs") + 1] == epochs
    assert [a for a in args if a.startswith("lr=")] == ([f"lr={lr}"] if lr else [])  # else the schedule's
    for setting in ("schedule=cpu", "threads=2", "max_seconds=60", "keep_epoch_checkpoints=2"):
        assert setting in args
    assert ("--resume" in args) == (ROOT / out / "last.pt").exists()  # continues a committed run


def test_cpu_schedule_needs_epochs(tmp_path: Path):
    with pytest.raises(subprocess.CalledProcessError) as err:
        subprocess.run(["bash", str(ROOT / "benchmarks" / "runs" / "cpu-schedule.sh")], capture_output=True,
                       text=True, check=True, timeout=60)
    assert "usage: cpu-schedule.sh EPOCHS [LR]" in err.value.stderr


def test_cpu_schedule_threads_can_be_one_core(tmp_path: Path):
    args = _args("mlfuse-cpu-60ep-lr5e-4.sh", tmp_path, {"THREADS": "1"})
    assert "threads=1" in args and "threads=2" not in args
