"""The README's quick start and .ci/run stay in step."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, ".ci/run must run the README's test command verbatim"
    assert "export CI=true" in ci


def test_quick_start_fuses_the_committed_sample() -> None:
    fuse = _quick_start_commands()[0]
    for arg in re.findall(r"--(?:vis|ir) (\S+)", fuse):
        assert (ROOT / arg).is_file(), arg
    assert 'torch==2.13.0' in fuse


# --- every command the README shows is run by a test ---------------------------------------------------------
#
# Each command line of the README's ```bash blocks is either run here, verbatim, in a sandbox folder whose
# files carry the README's names (A.png, vi/, ../shared/data/tno/test, ...: tiny images, or links to
# ../shared where the command needs the real data), or named below with the test that runs it elsewhere.
# A new README command without either fails `test_every_readme_command_is_run_by_a_test`.

ELSEWHERE = {
    'pip install "torch==2.13.0" . && mlfuse fuse --vis examples/sample/vis.png --ir examples/sample/ir.png -o '
    'fused.png': "tests/weights/test_packaged_weights.py::test_default_model_loads_offline_and_fuses_the_sample",
    'pip install "torch==2.13.0" -e ".[test]" && ruff check . && python -m pytest':
        "tests/test_readme.py::test_quick_start_is_two_commands_and_ci_runs_the_second",
    "torchrun --standalone --nproc_per_node=4 -m mlfuse fuse --root survey -o fused --skip-existing":
        "tests/inference/test_shard.py::test_torchrun_killed_rank_relaunch_finishes_only_the_rest",
    "mlfuse fuse --root survey -o fused --merge-manifests":
        "tests/inference/test_shard.py::test_torchrun_killed_rank_relaunch_finishes_only_the_rest",
    "mlfuse demo": "tests/demo/test_demo.py::test_readme_demo_command_serves_the_page_and_cleans_up_on_ctrl_c",
    "torchrun --standalone --nproc_per_node=2 -m mlfuse train mlfuse --config configs/mlfuse_train.toml":
        "tests/train/test_trainer.py::test_ddp_two_processes_match_one",
    'pip install ".[export]"': "tests/test_readme.py::test_install_extras_exist",
    "mlfuse export mlfuse --weights mlfuse-paper -o mlfuse.onnx": "tests/inference/test_export.py::test_cli_export",
    # mlfuse downstream: run verbatim (tiny config appended) on labelled scenes / fake MSRS and M3FD layouts
    **{c: "tests/downstream/test_downstream_cli.py::test_readme_downstream_commands" for c in (
        "mlfuse sample scenes --scenes 128",
        "mlfuse downstream seg --data scenes -m mlfuse -m gff -m average --out results/seg",
        "mlfuse downstream det --data scenes -m mlfuse -m gff -m average --out results/det",
        "mlfuse downstream seg --data MSRS --methods mine=fused/msrs -m mlfuse --config "
        "configs/downstream_seg_gpu.toml --out results/msrs_seg",
        "mlfuse downstream det --data M3FD --methods mine=fused/m3fd --config configs/downstream_det_gpu.toml "
        "--out results/m3fd_det")},
    # the model zoo: no network here, so these run against a loopback server with computed blob ids
    "mlfuse weights fetch cddfuse-ivf": "tests/weights/test_releases.py::test_every_release_fetches_verifies_and_fuses",
    "mlfuse weights fetch all": "tests/weights/test_releases.py::test_every_release_fetches_verifies_and_fuses",
    "mlfuse weights fetch emma --url file:///path/to/EMMA.pth":
        "tests/weights/test_releases.py::test_every_release_fetches_verifies_and_fuses",
    "mlfuse fuse --weights cddfuse-ivf --vis A.png --ir B.png -o F.png":
        "tests/weights/test_releases.py::test_every_release_fetches_verifies_and_fuses",
    "mlfuse fuse --model cddfuse --weights cddfuse-mif --mri A.png --ct B.png -o F.png":
        "tests/weights/test_releases.py::test_every_release_fetches_verifies_and_fuses",
}

#: commands run here: README command -> extra arguments appended to keep it small (later flags win)
TINY_TRAIN = ["--epochs", "1", "--set", "crop=32", "--set", "threads=1", "--set", "max_steps=1", "-q"]
HERE = {
    "mlfuse fuse --vis A.png --ir B.png -o F.png": [],
    "mlfuse fuse --vis vi/ --ir ir/ -o out/": [],
    "mlfuse fuse --root ../shared/data/roadscene/test -o out/": [],
    "mlfuse fuse --root data/ct_mri --subdirs MRI,CT -o out/": [],
    "mlfuse fuse --model gff --vis A.png --ir B.png -o F.png": [],
    "mlfuse models": [],
    "mlfuse weights inspect CDDFuse_MIF.pth": [],
    "mlfuse fuse --model cddfuse --weights CDDFuse_MIF.pth --task mif --mri A.png --ct B.png -o F.png": [],
    "mlfuse eval --fused results/mlfuse --root ../shared/data/tno/test --profile paper": [],
    "mlfuse eval --methods A=res/a B=res/b --vis vi/ --ir ir/ --profile cddfuse --md table.md --csv per_image.csv "
    "--json all.json": [],
    "mlfuse train mlfuse --config configs/mlfuse_train.toml --out runs/mlfuse": TINY_TRAIN,
    "mlfuse train mlfuse --data ../shared/data/msrs/train:vi,ir --epochs 20 --out runs/try": TINY_TRAIN,
    "mlfuse train mlfuse --config configs/mlfuse_train.toml --out runs/mlfuse --resume": TINY_TRAIN,
    "mlfuse vsm ir.png ir_vsm.png": [],
    "mlfuse vsm ir/ vsm/ --overwrite": [],
    "mlfuse bench -d tno=../shared/data/tno/test -m gff -m mlfuse:paper --weights-file "
    "mlfuse-paper=model_fuse.pth -o out/": ["--no-efficiency", "-q"],  # efficiency: tests/bench/test_bench.py
}


def readme_commands() -> list[str]:
    """Every command line of the README's ```bash blocks, comments and alignment stripped."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def test_every_readme_command_is_run_by_a_test() -> None:
    commands = readme_commands()
    missing = [c for c in commands if c not in HERE and c not in ELSEWHERE]
    assert not missing, f"README commands no test runs (add them to HERE or ELSEWHERE): {missing}"
    assert not [c for c in HERE if c not in commands] and not [c for c in ELSEWHERE if c not in commands]
    for where in ELSEWHERE.values():
        path, name = where.split("::")
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M), where


def test_install_extras_exist() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for command in readme_commands():
        for extra in re.findall(r'pip install "?\.\[(\w+)\]"?', command):
            assert extra in extras, command


def _tiny_pairs(root: Path, subdirs: tuple[str, str], names: tuple[str, ...] = ("1", "2"), seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for sub in subdirs:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        for sub in subdirs:
            Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)).save(root / sub / f"{name}.png")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder with the README's file names: tiny images, a seeded CDDFuse checkpoint, and
    ``../shared`` holding tiny test sets (links to the real ../shared where a command needs its data)."""
    import numpy as np
    import torch
    from PIL import Image

    from mlfuse.models.cddfuse.network import CDDFuse

    top = tmp_path_factory.mktemp("readme")
    work, fake = top / "work", top / "shared"
    work.mkdir()
    rng = np.random.default_rng(1)
    for name in ("A.png", "B.png", "ir.png"):
        Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)).save(work / name)
    _tiny_pairs(work, ("vi", "ir"))
    _tiny_pairs(work / "data" / "ct_mri", ("MRI", "CT"))
    _tiny_pairs(fake / "data" / "roadscene" / "test", ("vi", "ir"))
    _tiny_pairs(fake / "data" / "tno" / "test", ("vi", "ir"), names=("01", "02"))
    for sub in ("results/mlfuse", "res/a", "res/b"):
        _tiny_pairs(work / sub, (".",), names=("01", "02") if sub == "results/mlfuse" else ("1", "2"), seed=2)
    torch.manual_seed(0)
    torch.save(CDDFuse().authors_checkpoint(), work / "CDDFuse_MIF.pth")
    (work / "configs").symlink_to(ROOT / "configs")
    real = ROOT.parent / "shared"
    if real.is_dir():  # the data the training examples and the authors' checkpoint need
        for sub in ("msrs", "harvard", "splits"):
            (fake / "data" / sub).symlink_to(real / "data" / sub)
        (fake / "data" / "roadscene" / "train").symlink_to(real / "data" / "roadscene" / "train")
        (work / "model_fuse.pth").symlink_to(real / "weights" / "mlfuse_official.pth")
    return work


def _run_readme(command: str, sandbox: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> int:
    import itertools
    import shutil

    from mlfuse.cli.main import main

    argv = shlex.split(command)
    assert argv[0] == "mlfuse"
    monkeypatch.chdir(sandbox)
    outputs = [b for a, b in itertools.pairwise(argv) if a in ("-o", "--out", "--md", "--csv", "--json")]
    if argv[1] == "vsm":
        outputs.append(argv[3])  # mlfuse vsm INPUT OUTPUT
    for out in (sandbox / o for o in outputs if "--resume" not in argv):  # several write the same names (out/)
        shutil.rmtree(out) if out.is_dir() else out.unlink(missing_ok=True)
    code = main([*argv[1:], *HERE[command]])
    capsys.readouterr()
    return code


NEEDS_SHARED = ("msrs/train", "configs/mlfuse_train.toml", "model_fuse.pth")


@pytest.mark.parametrize("command", [c for c in HERE if not c.startswith("mlfuse train")
                                     and not any(s in c for s in NEEDS_SHARED)])
def test_readme_command_runs(command: str, sandbox: Path, monkeypatch, capsys) -> None:
    assert _run_readme(command, sandbox, monkeypatch, capsys) == 0, command


def test_readme_bench_command_runs(shared: Path, sandbox: Path, monkeypatch, capsys) -> None:
    (command,) = [c for c in HERE if c.startswith("mlfuse bench")]
    assert _run_readme(command, sandbox, monkeypatch, capsys) == 0
    assert "| gff |" in (sandbox / "out" / "tables" / "tno.cddfuse.md").read_text()


def test_readme_training_commands_run(shared: Path, sandbox: Path, monkeypatch, capsys) -> None:
    """The small-set example (4 pairs, fewer than the recipe's batch of 16) trains, with a one-line notice;
    the config examples train and resume (one step each, 32-pixel crops: the commands, not the schedule)."""
    from safetensors import safe_open

    small = "mlfuse train mlfuse --data ../shared/data/msrs/train:vi,ir --epochs 20 --out runs/try"
    config = "mlfuse train mlfuse --config configs/mlfuse_train.toml --out runs/mlfuse"
    monkeypatch.chdir(sandbox)
    from mlfuse.cli.main import main

    assert main([*shlex.split(small)[1:], *HERE[small]]) == 0
    assert "fewer than one batch of 16: training with batch size 4" in capsys.readouterr().err
    with safe_open(str(sandbox / "runs" / "try" / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata()["steps"] == "1"
    assert _run_readme(config, sandbox, monkeypatch, capsys) == 0
    assert _run_readme(config + " --resume", sandbox, monkeypatch, capsys) == 0
    lines = (sandbox / "runs" / "mlfuse" / "steps.csv").read_text().splitlines()
    assert len(lines) == 1 + 2  # resumed at step 1, it stops after one more step (max_steps counts from there)
