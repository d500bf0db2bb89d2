"""Sharded folder fusion (mlfuse.inference.shard): the split, the launcher environment, the manifest, the
merged report, and the README's torchrun command killed mid-way and relaunched."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image as PILImage

from mlfuse.cli.main import main
from mlfuse.data.pairs import Pair
from mlfuse.errors import MLFuseError
from mlfuse.inference.shard import (
    KILL_HOOK,
    MANIFEST_DIR,
    Manifest,
    Shard,
    merge_manifests,
    parse_shard,
    read_manifest,
    resolve_shard,
    wait_for_launch,
)

ROOT = Path(__file__).resolve().parents[2]
N_PAIRS = 7


def _make_pairs(root: Path, n: int = N_PAIRS, seed: int = 0) -> Path:
    """``root/vi`` and ``root/ir`` with ``n`` tiny random pairs (names 0..n-1: natural order matters)."""
    rng = np.random.default_rng(seed)
    for sub in ("vi", "ir"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for sub in ("vi", "ir"):
            PILImage.fromarray(rng.integers(0, 256, (16, 20), dtype=np.uint8)).save(root / sub / f"{i}.png")
    return root


def _manifests(out: Path) -> dict[str, list[dict]]:
    found = {}
    for path in sorted((out / MANIFEST_DIR).glob("shard-*.jsonl")):
        found[path.name], torn = read_manifest(path)
        assert torn == 0, path
    return found


def _records(out: Path) -> list[dict]:
    return [r for recs in _manifests(out).values() for r in recs]


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


# --- the split and the launcher's environment -------------------------------------------------------

@given(n=st.integers(0, 60), count=st.integers(1, 9))
def test_shards_partition_the_sorted_pairs(n: int, count: int) -> None:
    pairs = [Pair(str(i), Path(f"{i}.png"), Path(f"{i}.png")) for i in range(n)]
    parts = [Shard(k, count).select(pairs) for k in range(count)]
    names = [p.name for part in parts for p in part]
    assert sorted(names, key=int) == [p.name for p in pairs]  # every pair in exactly one shard
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == [Shard(k, count).select(list(pairs)) for k in range(count)]  # deterministic


@pytest.mark.parametrize(("env", "expected"), [
    ({}, (0, 1, 0)),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "r1"}, (3, 4, 1)),
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "0",
      "SLURM_JOB_ID": "77"}, (2, 8, 0)),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_ID": "77"}, (0, 1, 0)),  # the batch script itself
    ({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "6", "SLURM_STEP_ID": "1",
      "SLURM_JOB_ID": "77"}, (5, 6, 5)),  # a step smaller than the allocation
])
def test_shard_from_launcher_environment(env: dict, expected: tuple) -> None:
    s = resolve_shard(None, env)
    assert (s.index, s.count, s.local_rank) == expected
    assert s.launch == {"r1": "r1"}.get(env.get("TORCHELASTIC_RUN_ID", ""),
                                         f"slurm-77.{env.get('SLURM_STEP_ID')}" if "SLURM_STEP_ID" in env else None)


def test_shard_option_wins_and_bad_values_are_one_line() -> None:
    s = resolve_shard("1/3", {"RANK": "0", "WORLD_SIZE": "2"})
    assert (s.index, s.count) == (1, 3)
    assert parse_shard(" 0 / 1 ") == (0, 1)
    for bad in ("3/3", "1/0", "a/b", "2"):
        with pytest.raises(MLFuseError, match=re.escape(f"--shard {bad}")):
            parse_shard(bad)
    with pytest.raises(MLFuseError, match="WORLD_SIZE='two'"):
        resolve_shard(None, {"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(MLFuseError, match="RANK=2 with WORLD_SIZE=2"):
        resolve_shard(None, {"RANK": "2", "WORLD_SIZE": "2"})


def test_each_rank_gets_its_own_gpu_else_the_cpu(monkeypatch) -> None:
    import torch

    from mlfuse.inference.shard import shard_device

    assert shard_device("auto", Shard(1, 2, local_rank=1)) == (
        torch.device("cuda", 1 % torch.cuda.device_count()) if torch.cuda.is_available() else torch.device("cpu"))
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert shard_device("auto", Shard(3, 4, local_rank=3)) == torch.device("cuda", 1)
    assert shard_device("cuda", Shard(0, 4, local_rank=0)) == torch.device("cuda", 0)
    assert chosen == [1, 0]
    assert shard_device("cpu", Shard(3, 4, local_rank=3)) == torch.device("cpu")


# --- the manifest ----------------------------------------------------------------------------------

def test_manifest_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    m = Manifest(path)
    m.append({"pair": "a", "status": "written"})
    m.close()
    with open(path, "ab") as fh:  # what a kill in the middle of a write leaves
        fh.write(b'{"pair":"b","sta')
    assert read_manifest(path) == ([{"pair": "a", "status": "written"}], 1)
    m = Manifest(path)  # the next launch terminates the torn line before appending
    m.append({"pair": "c", "status": "written"})
    m.close()
    records, torn = read_manifest(path)
    assert [r["pair"] for r in records] == ["a", "c"] and torn == 1


# --- in-process runs: --shard K/N, failures, merge ---------------------------------------------------

def test_shard_option_runs_match_a_plain_run_and_merge_reports_missing(tmp_path: Path, capsys) -> None:
    data = _make_pairs(tmp_path / "data")
    assert main(["fuse", "--root", str(data), "-o", str(tmp_path / "ref"), "--model", "average", "-q"]) == 0
    out = tmp_path / "out"
    for k in (1, 0):
        assert main(["fuse", "--root", str(data), "-o", str(out), "--model", "average", "-q",
                     "--shard", f"{k}/2"]) == 0
    assert _outputs(out) == _outputs(tmp_path / "ref") and len(_outputs(out)) == N_PAIRS
    recs = [r for r in _records(out) if "pair" in r]
    assert sorted((r["pair"] for r in recs), key=int) == [str(i) for i in range(N_PAIRS)]
    assert all(r["status"] == "written" and r["seconds"] >= 0 for r in recs)
    shard1 = read_manifest(out / MANIFEST_DIR / "shard-1-of-2.jsonl")[0]
    assert [r["pair"] for r in shard1 if "pair" in r] == ["1", "3", "5"]

    capsys.readouterr()
    merge = ["fuse", "--root", str(data), "-o", str(out), "--merge-manifests"]
    assert main(merge) == 0
    assert f"{N_PAIRS} of {N_PAIRS} pairs present" in capsys.readouterr().err
    (out / "3.png").unlink()
    assert main(merge) == 1
    err = capsys.readouterr().err
    assert "1 missing" in err and "missing 3" in err
    assert (out / MANIFEST_DIR / "missing.txt").read_text() == "3\n"
    # relaunching shard 1 with --skip-existing fuses only the missing pair
    assert main(["fuse", "--root", str(data), "-o", str(out), "--model", "average", "-q", "--shard", "1/2",
                 "--skip-existing"]) == 0
    last = read_manifest(out / MANIFEST_DIR / "shard-1-of-2.jsonl")[0][-4:-1]
    assert [(r["pair"], r["status"]) for r in last] == [("1", "skipped"), ("3", "written"), ("5", "skipped")]
    assert _outputs(out) == _outputs(tmp_path / "ref")
    assert main(merge) == 0 and not (out / MANIFEST_DIR / "missing.txt").exists()


def test_a_bad_pair_is_logged_and_the_shard_goes_on(tmp_path: Path, capsys) -> None:
    data = _make_pairs(tmp_path / "data", n=4)
    PILImage.fromarray(np.zeros((9, 9), np.uint8)).save(data / "ir" / "2.png")  # size mismatch
    out = tmp_path / "out"
    assert main(["fuse", "--root", str(data), "-o", str(out), "--model", "average", "-q", "--shard", "0/1"]) == 1
    err = capsys.readouterr().err
    assert "FAILED 2: size mismatch" in err and "1 missing (1 failed)" in err
    failed = [r for r in _records(out) if r.get("status") == "failed"]
    assert [r["pair"] for r in failed] == ["2"] and "size mismatch" in failed[0]["error"]
    assert sorted(_outputs(out)) == ["0.png", "1.png", "3.png"]


def test_a_stop_request_during_a_write_lands_after_its_record(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM (a launcher stopping the job) right after an output is renamed into place must not leave
    that output without its manifest record: the next launch would not know who wrote it."""
    import signal

    import mlfuse
    import mlfuse.inference.shard as shard_mod
    from mlfuse.data.pairs import pair_folders

    data = _make_pairs(tmp_path / "data", n=3)
    real_write = shard_mod.write_image

    def write_then_stop(*args, **kwargs):
        path = real_write(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(shard_mod, "write_image", write_then_stop)
    out = tmp_path / "out"
    model = mlfuse.create_model("average")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        shard_mod.run_shard(model, pair_folders(data / "vi", data / "ir").pairs, out, Shard(0, 1), quiet=True)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    assert sorted(_outputs(out)) == ["0.png"]
    assert [(r["pair"], r["status"]) for r in _records(out) if "pair" in r] == [("0", "written")]


def test_sharding_needs_folders(tmp_path: Path, capsys) -> None:
    data = _make_pairs(tmp_path / "data", n=1)
    assert main(["fuse", "--vis", str(data / "vi" / "0.png"), "--ir", str(data / "ir" / "0.png"),
                 "-o", str(tmp_path / "f.png"), "--model", "average", "--shard", "0/2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sharding splits folder runs" in err


def test_rank0_wait_gives_up_when_a_shard_stalls(tmp_path: Path) -> None:
    shard = Shard(0, 2, launch="L")
    m = Manifest(tmp_path / MANIFEST_DIR / "shard-0-of-2.jsonl")
    m.append({"event": "done", "launch": "L"})
    m.close()
    assert wait_for_launch(tmp_path, shard, stall_s=0.3, poll_s=0.05) is False  # shard 1 never logs
    m = Manifest(tmp_path / MANIFEST_DIR / "shard-1-of-2.jsonl")
    m.append({"event": "done", "launch": "an earlier launch"})
    m.close()
    assert wait_for_launch(tmp_path, shard, stall_s=0.3, poll_s=0.05) is False
    m = Manifest(tmp_path / MANIFEST_DIR / "shard-1-of-2.jsonl")
    m.append({"event": "done", "launch": "L"})
    m.close()
    assert wait_for_launch(tmp_path, shard, stall_s=5, poll_s=0.05) is True


def test_merge_without_manifests_still_checks_the_outputs(tmp_path: Path) -> None:
    pairs = [Pair(n, Path(), Path()) for n in ("a", "b")]
    (tmp_path / "a.png").write_bytes(b"x")
    rep = merge_manifests(pairs, tmp_path)
    assert rep.present == ["a"] and rep.missing == ["b"] and not rep.shards


# --- torchrun: the README's command, a rank killed mid-way, relaunched -------------------------------

def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Sharded batch fusion", 1)[1].split("\n#", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    return [line.strip() for line in block.splitlines() if line.strip()]


def _torchrun(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "torchrun"
    argv = [sys.executable, "-m", "torch.distributed.run",
            *[re.sub(r"--nproc_per_node=\d+", "--nproc_per_node=2", a) for a in argv[1:]]]
    clean = {k: v for k, v in os.environ.items()
             if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", KILL_HOOK)
             and not k.startswith("SLURM_")}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**clean, "OMP_NUM_THREADS": "1", **env})


def test_torchrun_killed_rank_relaunch_finishes_only_the_rest(tmp_path: Path, capsys) -> None:
    launch, merge = _readme_commands()
    data = _make_pairs(tmp_path / "survey", n=N_PAIRS)
    assert main(["fuse", "--root", str(data), "-o", str(tmp_path / "ref"), "-q"]) == 0  # one process
    reference = _outputs(tmp_path / "ref")
    out = tmp_path / "fused"

    first = _torchrun(launch, tmp_path, **{KILL_HOOK: "1:1"})  # rank 1 SIGKILLs itself after one output
    assert first.returncode != 0 and "SIGKILL" in first.stderr + first.stdout, first.stderr[-3000:]
    after_kill = set(_outputs(out))
    assert len(after_kill) < N_PAIRS
    assert "1.png" in after_kill and "3.png" not in after_kill and "5.png" not in after_kill
    before = {name: len(recs) for name, recs in _manifests(out).items()}

    second = _torchrun(launch, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{N_PAIRS} of {N_PAIRS} pairs present" in second.stderr
    # manifests only grow: what follows the first launch's records is the second launch's
    relaunch = [r for name, recs in _manifests(out).items() for r in recs[before.get(name, 0):] if "pair" in r]
    assert {r["pair"] + ".png" for r in relaunch if r["status"] == "written"} == set(reference) - after_kill
    assert {r["pair"] + ".png" for r in relaunch if r["status"] == "skipped"} == after_kill

    written = [r["pair"] for r in _records(out) if r.get("status") == "written"]
    assert sorted(written, key=int) == [str(i) for i in range(N_PAIRS)]  # each pair written exactly once
    assert _outputs(out) == reference  # byte-identical to the single-process run
    assert not list(out.glob(".*.tmp"))

    capsys.readouterr()
    argv = shlex.split(merge)
    assert argv[0] == "mlfuse"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(argv[1:]) == 0
    finally:
        os.chdir(cwd)
    assert f"{N_PAIRS} of {N_PAIRS} pairs present in fused" in capsys.readouterr().err
    assert json.loads((out / MANIFEST_DIR / "shard-0-of-2.jsonl").read_text().splitlines()[0])["of"] == 2


# --- examples/ray_fuse.py: the worker without Ray; the whole recipe where Ray is installed -----------

def _ray_recipe():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ray_fuse", ROOT / "examples" / "ray_fuse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ray_recipe_worker_writes_what_a_plain_run_writes(tmp_path: Path, capsys) -> None:
    data = _make_pairs(tmp_path / "data", n=5)
    assert main(["fuse", "--root", str(data), "-o", str(tmp_path / "ref"), "--model", "average", "-q"]) == 0
    out = tmp_path / "out"
    worker = _ray_recipe().FuseWorker(str(out), "average", "default", "cpu", True)
    names = np.array([str(i) for i in range(5)])
    batch = {"name": names, "structural": np.array([str(data / "vi" / f"{n}.png") for n in names]),
             "functional": np.array([str(data / "ir" / f"{n}.png") for n in names])}
    assert worker(batch)["status"] == ["written"] * 5
    assert worker(batch)["status"] == ["skipped"] * 5  # a rerun leaves finished outputs alone
    assert _outputs(out) == _outputs(tmp_path / "ref")
    capsys.readouterr()
    assert main(["fuse", "--root", str(data), "-o", str(out), "--merge-manifests"]) == 0
    assert re.search(r"5 of 5 pairs present .*1 manifest\(s\): ray-[0-9a-f]{12};", capsys.readouterr().err)


def test_ray_recipe_end_to_end(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="the Ray recipe is tested where ray is installed (not a dependency)")
    data = _make_pairs(tmp_path / "data", n=5)
    assert main(["fuse", "--root", str(data), "-o", str(tmp_path / "ref"), "--model", "average", "-q"]) == 0
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert _ray_recipe().main(["--root", str(data), "-o", str(tmp_path / "out"), "--model", "average",
                                   "--workers", "2"]) == 0
    finally:
        ray.shutdown()
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "ref")
