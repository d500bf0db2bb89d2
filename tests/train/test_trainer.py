"""The one trainer on MLFuse's recipe: config layers, logs, exact resume after SIGKILL, 2-process DDP."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import mlfuse
import mlfuse.train.data as data_module
from mlfuse.cli.main import main
from mlfuse.errors import MLFuseError
from mlfuse.train import build_config, get_recipe, train
from mlfuse.train.data import PairCropDataset, collect_pairs

TINY = ["crop=32", "threads=1", "checkpoint_every=2"]


def _cli(tiny_set: Path, out: Path, *extra: str, env: dict | None = None,
         torchrun: int = 0) -> subprocess.CompletedProcess:
    args = ["train", "mlfuse", "--data", str(tiny_set), "--out", str(out), "--batch-size", "4", "--epochs", "2",
            "--seed", "7", "-q", *[a for s in TINY for a in ("--set", s)], *extra]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "mlfuse", *args]
    else:
        cmd = [sys.executable, "-m", "mlfuse", *args]
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=300)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def reference_run(tiny_set, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "straight"
    r = _cli(tiny_set, out)
    assert r.returncode == 0, r.stderr
    return out


def test_run_writes_logs_checkpoint_and_weights(reference_run):
    steps = (reference_run / "steps.csv").read_text().splitlines()
    assert steps[0].split(",")[:4] == ["step", "epoch", "iteration", "lr"] and len(steps) == 1 + 4  # 8 pairs / 4 x 2
    assert len((reference_run / "epochs.csv").read_text().splitlines()) == 1 + 2
    cfg = json.loads((reference_run / "config.json").read_text())
    assert cfg["crop"] == 32 and cfg["lr"] == 1e-4 and cfg["weight_decay"] == 5e-5  # authors' recipe + overrides
    ck = torch.load(reference_run / "last.pt", weights_only=True)
    assert ck["state"]["epoch"] == 2 and ck["state"]["step"] == 4
    # the cosine schedule over 2 epochs, stepped per epoch: 1e-4, then 5e-5
    lrs = [float(row.split(",")[3]) for row in steps[1:]]
    assert lrs == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5])
    model = mlfuse.create_model("mlfuse", weights=reference_run / "model.safetensors")  # loads strictly
    assert model.weights_source.endswith("model.safetensors")


def test_resume_after_sigkill_is_exact(tiny_set, tmp_path, reference_run):
    out = tmp_path / "killed"
    # the same run through the Python API, with a callback that SIGKILLs the process right after step 3
    # (mid-epoch 2; last checkpoint: step 2); then resumed by the command line
    kill = ("import os, signal\n"
            "from mlfuse.train import train\n"
            "from mlfuse.train.trainer import Callback\n"
            "class Kill(Callback):\n"
            "    def on_step_end(self, trainer, state):\n"
            "        if state['step'] == 3:\n"
            "            os.kill(os.getpid(), signal.SIGKILL)\n"
            f"train('mlfuse', data=[{{'root': {str(tiny_set)!r}}}], out_dir={str(out)!r}, batch_size=4, epochs=2,\n"
            f"      seed=7, sets={TINY!r}, quiet=True, callbacks=[Kill()])\n")
    r = subprocess.run([sys.executable, "-c", kill], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 2
    r = _cli(tiny_set, out, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _weights(reference_run), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (out / "steps.csv").read_text() == (reference_run / "steps.csv").read_text()


def test_sigterm_stops_after_the_step_checkpointed_and_resume_is_exact(tiny_set, tmp_path, reference_run):
    """A SIGTERM (a scheduler's pre-emption, a session's end) finishes the step in hand, checkpoints it and
    returns normally; the resumed run ends with the uninterrupted run's weights and logs."""
    out = tmp_path / "terminated"
    term = ("import os, signal\n"
            "from mlfuse.train import train\n"
            "from mlfuse.train.trainer import Callback\n"
            "class Term(Callback):\n"
            "    def on_step_end(self, trainer, state):\n"
            "        if state['step'] == 3:\n"
            "            os.kill(os.getpid(), signal.SIGTERM)\n"
            f"r = train('mlfuse', data=[{{'root': {str(tiny_set)!r}}}], out_dir={str(out)!r}, batch_size=4, epochs=2,\n"
            f"          seed=7, sets={TINY!r}, quiet=True, callbacks=[Term()])\n"
            "print(r.steps, r.stopped)\n"
            "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n")
    r = subprocess.run([sys.executable, "-c", term], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["3", "SIGTERM", "True"]  # and the default handler is back
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 3  # step 3 is not a checkpoint_every step
    r = _cli(tiny_set, out, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _weights(reference_run), _weights(out)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (out / "steps.csv").read_text() == (reference_run / "steps.csv").read_text()


def test_max_seconds_stops_the_invocation_resumably(tiny_set, tmp_path, reference_run):
    out = tmp_path / "timed"
    r = _cli(tiny_set, out, "--set", "max_seconds=0.001")  # spent after the first step
    assert r.returncode == 0, r.stderr
    assert f"{out}: stopped at step 1 (max_seconds), checkpointed; add --resume" in r.stderr
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 1
    r = _cli(tiny_set, out, "--resume", "--set", "max_seconds=0")  # a resumable setting: may change
    assert r.returncode == 0, r.stderr
    assert "stopped" not in r.stderr
    a, b = _weights(reference_run), _weights(out)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ddp_ranks_stop_together_when_one_is_terminated(tiny_set, tmp_path):
    """SIGTERM reaching rank 1 alone: both ranks stop after the same step (else rank 0 would wait for it
    in the next step's all-reduce), the checkpoint is written and both exit normally."""
    out = tmp_path / "ddp_term"
    script = tmp_path / "term.py"
    script.write_text(
        "import os, signal\n"
        "from mlfuse.train import train\n"
        "from mlfuse.train.trainer import Callback\n"
        "class Term(Callback):\n"
        "    def on_step_end(self, trainer, state):\n"
        "        if state['step'] == 1 and os.environ['RANK'] == '1':\n"
        "            os.kill(os.getpid(), signal.SIGTERM)\n"
        f"r = train('mlfuse', data=[{{'root': {str(tiny_set)!r}}}], out_dir={str(out)!r}, batch_size=4, epochs=2,\n"
        f"          seed=7, sets={TINY!r}, quiet=True, callbacks=[Term()])\n"
        f"open({str(tmp_path)!r} + '/rank' + os.environ['RANK'], 'w').write(f'{{r.steps}} {{r.stopped}}')\n")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(script)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr + r.stdout
    # (each rank writes its own file: their printed lines could interleave on the shared pipe)
    assert (tmp_path / "rank0").read_text() == "1 another rank stopping"
    assert (tmp_path / "rank1").read_text() == "1 SIGTERM"
    assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 1


def test_ddp_two_processes_match_one(tiny_set, tmp_path, reference_run):
    out = tmp_path / "ddp"
    r = _cli(tiny_set, out, torchrun=2)
    assert r.returncode == 0, r.stderr + r.stdout
    a, b = _weights(reference_run), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        if not a[k].is_floating_point():
            assert torch.equal(a[k], b[k]), k  # e.g. BN num_batches_tracked
    # Same global batch, same crops, global BatchNorm statistics: the two runs differ only by float
    # summation order. Adam divides by sqrt(v), so a weight whose gradient is ~0 can move by up to lr
    # either way on that noise: bound the bulk tightly and the rare outliers by 4 steps x lr.
    d = torch.cat([(a[k] - b[k]).abs().flatten() for k in a if a[k].is_floating_point()])
    assert float(d.median()) < 1e-7 and float(d.quantile(0.99)) < 2e-6
    assert float((d > 1e-5).double().mean()) < 1e-3 and float(d.max()) <= 4 * 1e-4
    # logs come from rank 0 only, averaged over ranks: the losses are the single-process ones
    la = [line.split(",")[4:] for line in (reference_run / "steps.csv").read_text().splitlines()[1:]]
    lb = [line.split(",")[4:] for line in (out / "steps.csv").read_text().splitlines()[1:]]
    assert len(la) == len(lb)
    for ra, rb in zip(la, lb, strict=True):
        assert [float(v) for v in rb] == pytest.approx([float(v) for v in ra], rel=1e-4)


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tiny_set, reference_run, tmp_path, capsys):
    before = (reference_run / "last.pt").read_bytes()
    code = main(["train", "mlfuse", "--data", str(tiny_set), "--out", str(reference_run), "-q"])
    assert code == 2 and "--resume" in capsys.readouterr().err
    assert (reference_run / "last.pt").read_bytes() == before
    assert main(["train", "mlfuse", "--data", str(tiny_set), "--out", str(tmp_path / "new"), "--resume", "-q"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_config_layers_and_errors(tmp_path):
    defaults = get_recipe("mlfuse").defaults
    cfg = build_config(defaults)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.crop) == (501, 16, 1e-4, 128)
    assert cfg.loss_weights == {"edg": 0.3, "ssd": 3.0, "cmk": 0.5, "fus": 1.0}
    f = tmp_path / "c.toml"
    f.write_text('epochs = 3\nlr = 2e-4\n[loss_weights]\nssd = 1.5\n')
    cfg = build_config(defaults, file=f, sets=["epochs=4", "loss_weights.fus=2"], overrides={"seed": 5})
    assert (cfg.epochs, cfg.lr, cfg.seed) == (4, 2e-4, 5)
    assert cfg.loss_weights == {"edg": 0.3, "ssd": 1.5, "cmk": 0.5, "fus": 2}
    with pytest.raises(MLFuseError, match="unknown setting 'epoch'"):
        build_config(defaults, sets=["epoch=3"])
    f.write_text("epochs = [")
    with pytest.raises(MLFuseError, match="not a valid config file"):
        build_config(defaults, file=f)


def test_data_entries_names_filter_and_seeded_crops(tiny_set, tmp_path):
    names = tmp_path / "split.csv"
    names.write_text("split,name\ntrain,1\ntrain,3\ntest,2\n")
    pairs = collect_pairs([{"root": str(tiny_set), "names": {"csv": str(names), "column": "name",
                                                             "where": {"split": "train"}}},
                           {"root": str(tiny_set), "dirs": ["vi", "ir"], "names": ["5"]}])
    assert [p.name for p in pairs] == ["1", "3", "5"]
    with pytest.raises(MLFuseError, match="not found"):
        collect_pairs([{"root": str(tiny_set), "names": ["1", "99"]}])
    ds = PairCropDataset(pairs, 16, seed=3)
    a = ds[1]
    assert set(a) == {"structural", "functional"} and a["structural"].shape == (1, 16, 16)
    assert torch.equal(ds[1]["structural"], a["structural"])  # a pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[1]["structural"], a["structural"])
    big = PairCropDataset(pairs, 64, seed=0)[0]  # crop larger than the 40 x 48 image: reflect-padded
    assert big["functional"].shape == (1, 64, 64)


def test_repeat_weights_an_entry_with_more_crops_per_pair(tiny_set, monkeypatch):
    plain = collect_pairs([{"root": str(tiny_set), "names": ["1", "2"]}])
    pairs = collect_pairs([{"root": str(tiny_set), "names": ["1", "2"], "repeat": 3},
                           {"root": str(tiny_set), "names": ["5"]}])
    assert [p.name for p in pairs] == ["1", "2"] * 3 + ["5"]
    calls = []
    real = data_module.load_gray_u8
    monkeypatch.setattr(data_module, "load_gray_u8", lambda path: calls.append(path) or real(path))
    ds = PairCropDataset(pairs, 16, seed=3)
    crops = [ds[i]["structural"] for i in (0, 2, 4)]  # pair "1", three times: three different crops
    assert not torch.equal(crops[0], crops[1]) and not torch.equal(crops[1], crops[2])
    assert len(calls) == 2  # decoded once (structural + functional), shared by its repeats
    assert torch.equal(ds[0]["structural"], PairCropDataset(plain, 16, seed=3)[0]["structural"])  # index 0 as before
    for bad in (0, 1.5, "2", True):
        with pytest.raises(MLFuseError, match="'repeat' must be a whole number >= 1"):
            collect_pairs([{"root": str(tiny_set), "repeat": bad}])
    with pytest.raises(MLFuseError, match="'repeat' weights training data only"):
        collect_pairs([{"root": str(tiny_set), "repeat": 2}], what="val")


def test_python_api_train(tiny_set, tmp_path):
    res = train("mlfuse", sets=("crop=24", "threads=1"), data=[{"root": str(tiny_set)}], out_dir=str(tmp_path / "api"),
                batch_size=8, epochs=1, quiet=True, val=[{"root": str(tiny_set)}], val_every=1, val_max_pairs=2,
                val_slow_metrics=False)
    assert res.steps == 1 and set(res.last_losses) == {"L_edg", "L_ssd", "L_cmk", "L_fus", "total"}
    assert set(res.last_val) == {"VIF", "SCD", "Qabf", "CC", "SSIM"}
    assert (tmp_path / "api" / "val.csv").exists()


def test_package_run_writes_weights_and_a_model_card(reference_run, tmp_path):
    out = tmp_path / "ship" / "tiny.safetensors"
    out.parent.mkdir()
    assert main(["weights", "package", str(reference_run), str(out), "--name", "tiny-test",
                 "--hardware", "test box", "--command", "mlfuse train mlfuse ..."]) == 0
    card = out.with_suffix(".md").read_text()
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256: `{sha}`" in card and "epochs: 2 of the recipe's 501" in card and "hardware: test box" in card
    assert "pairs" in card and "## Reproduce" in card and "wall time:" in card
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as fh:
        assert fh.metadata()["release"] == "tiny-test" and fh.metadata()["method"] == "mlfuse"
    model = mlfuse.create_model("mlfuse", weights=out)  # loads strictly
    a, b = _weights(reference_run), load_file(str(out))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["weights", "package", str(reference_run), str(out), "--name", "x"]) == 2  # never overwrites
    assert model.weights_source.endswith("tiny.safetensors")


def test_resume_from_a_checkpoint_at_an_epochs_last_step(tiny_set, tmp_path, reference_run):
    out = tmp_path / "boundary"
    r = _cli(tiny_set, out, "--set", "max_steps=2")  # 2 steps per epoch: stops after epoch 1's last step
    assert r.returncode == 0, r.stderr
    state = torch.load(out / "last.pt", weights_only=True)["state"]
    assert (state["step"], state["epoch"], state["iteration"]) == (2, 0, 2)
    # as if killed during epoch 1's validation: its epochs.csv / val.csv rows are written, its checkpoint is not
    (out / "epochs.csv").write_text((reference_run / "epochs.csv").read_text().splitlines()[0] + "\n"
                                    + (reference_run / "epochs.csv").read_text().splitlines()[1] + "\n")
    (out / "val.csv").write_text("epoch,step,VIF\n1,2,0.5\n")
    r = _cli(tiny_set, out, "--resume")
    assert r.returncode == 0, r.stderr
    a, b = _weights(reference_run), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [line.split(",")[:3] for line in (out / "epochs.csv").read_text().splitlines()]
    assert epochs == [line.split(",")[:3] for line in (reference_run / "epochs.csv").read_text().splitlines()]
    assert (out / "val.csv").read_text().splitlines() == ["epoch,step,VIF"]  # truncated to the checkpoint


def _train(tiny_set: Path, out: Path, *extra: str) -> int:
    return main(["train", "mlfuse", "--data", str(tiny_set), "--out", str(out), "--batch-size", "4", "--epochs", "2",
                 "--seed", "7", "-q", *[a for s in TINY for a in ("--set", s)], *extra])


def test_settings_are_validated_up_front(tiny_set, tmp_path, capsys):
    out = tmp_path / "run"
    for extra, words in ((["--set", "loss_weights.foo=1"], "unknown setting 'loss_weights.foo'"),
                         (["--set", "epochs=abc"], "'epochs' must be an integer"),
                         (["--batch-size", "0"], "'batch_size' must be >= 1"),
                         (["--batch-size", "-2"], "'batch_size' must be >= 1"),
                         (["--epochs", "0"], "'epochs' must be >= 1"),
                         (["--set", "lr=-1"], "'lr' must be > 0"),
                         (["--set", "max_seconds=-5"], "'max_seconds' must be >= 0"),
                         (["--set", "crop=400"], "crop 400 is larger than the training image"),
                         (["--val", str(tiny_set), "--set", "val_profile=nope"], "unknown metric profile 'nope'"),
                         (["--val", str(tmp_path / "no_val")], str(tmp_path / "no_val"))):
        assert _train(tiny_set, out, *extra) == 2, extra
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists(), f"{extra}: a run that cannot start left {sorted(out.iterdir())}"
    f = tmp_path / "c.toml"
    f.write_text("[loss_weights]\nssd = 2\nfoo = 1\n")
    with pytest.raises(MLFuseError, match=re.escape("unknown setting 'loss_weights.foo'")):
        build_config(get_recipe("mlfuse").defaults, file=f)
    assert build_config(get_recipe("mlfuse").defaults, sets=["model_options.x=1"]).model_options == {"x": 1}


def test_small_set_trains_with_a_capped_batch_and_a_failed_start_leaves_nothing(tiny_set, tmp_path, capsys,
                                                                                monkeypatch):
    out = tmp_path / "small"
    assert _train(tiny_set, out, "--batch-size", "16", "--epochs", "1", "--set", "checkpoint_every=0") == 0
    err = capsys.readouterr().err
    assert "the training set has 8 items, fewer than one batch of 16: training with batch size 8" in err
    assert json.loads((out / "config.json").read_text())["batch_size"] == 8
    assert len((out / "steps.csv").read_text().splitlines()) == 1 + 1 and (out / "model.safetensors").is_file()
    # a run that fails during its first epoch (before any checkpoint) removes the folder it created
    recipe = get_recipe("mlfuse")

    def boom(*args, **kwargs):
        raise MLFuseError("synthetic failure in the first step")

    monkeypatch.setattr(recipe, "losses", boom)
    assert _train(tiny_set, tmp_path / "runs" / "failed", "--epochs", "1") == 2
    assert "synthetic failure" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_fresh_run_refuses_a_non_empty_folder(tiny_set, tmp_path, capsys):
    out = tmp_path / "used"
    out.mkdir()
    (out / "steps.csv").write_text("step,epoch\n1,0\n")  # e.g. a run killed before its first checkpoint
    assert _train(tiny_set, out) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "steps.csv").read_text() == "step,epoch\n1,0\n"


def test_resume_refuses_changed_schedule_and_optimiser_settings(tiny_set, reference_run, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in reference_run.iterdir() if p.is_file()}
    assert _train(tiny_set, reference_run, "--resume", "--epochs", "3", "--set", "lr=2e-4") == 2
    err = capsys.readouterr().err
    assert "cannot resume with changed settings" in err and "epochs 2 -> 3" in err and "lr 0.0001 -> 0.0002" in err
    assert {p.name: p.read_bytes() for p in reference_run.iterdir() if p.is_file()} == before
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)  # where and how it logs may change: e.g. validation, a step limit
    assert _train(tiny_set, copy, "--resume", "--set", "val_every=1", "--set", "max_steps=4") == 0
    from mlfuse.train.config import GENERIC_DEFAULTS
    from mlfuse.train.trainer import check_resume_settings

    recipe = get_recipe("mlfuse")
    cfg = build_config(recipe.defaults)
    older = {k: v for k, v in cfg.items() if k != "orient_output"}  # a checkpoint older than a new setting
    check_resume_settings(older, cfg, Path("last.pt"), defaults={**GENERIC_DEFAULTS, **recipe.defaults})


def test_unusable_checkpoints_are_one_line(tiny_set, reference_run, tmp_path, capsys):
    import pickle
    import shutil

    good = torch.load(reference_run / "last.pt", weights_only=True)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    cases = {
        "truncated": lambda p: p.write_bytes((reference_run / "last.pt").read_bytes()[:5000]),
        "foreign": lambda p: torch.save({"epoch": 500, "model": good["model"]}, p),
        "other recipe": lambda p: torch.save({**good, "recipe": "cddfuse"}, p),
        "malicious": lambda p: p.write_bytes(pickle.dumps({"state": Payload()})),
        "damaged state": lambda p: torch.save({**good, "state": {"epoch": "x"}}, p),
    }
    words = {"truncated": "truncated or not a PyTorch file", "foreign": "not a checkpoint written by mlfuse train",
             "other recipe": "recipe 'cddfuse', not 'mlfuse'", "malicious": "refused, never unpickled",
             "damaged state": "damaged checkpoint"}
    for name, write in cases.items():
        run = tmp_path / name.replace(" ", "_")
        shutil.copytree(reference_run, run)
        write(run / "last.pt")
        assert _train(tiny_set, run, "--resume") == 2, name
        err = capsys.readouterr().err
        assert words[name] in err and str(run / "last.pt") in err, (name, err)
        assert len(err.strip().splitlines()) == 1 and "weights_only=False" not in err, err
    assert not marker.exists()


def test_device_cuda_n_is_accepted_by_the_resolver_and_the_trainer(tiny_set, tmp_path, monkeypatch, capsys):
    import mlfuse.train.trainer as T
    from mlfuse.runtime import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1) and resolve_device("cuda:0").index == 0
    for bad, words in (("cuda:2", "no such GPU (2 visible"), ("cuda:x", "expected cuda:N")):
        with pytest.raises(MLFuseError, match=re.escape(words)):
            resolve_device(bad)
    seen = []

    def stop(device):
        seen.append(device)
        raise MLFuseError("stopped before training")

    monkeypatch.setattr(T, "init_distributed", stop)
    assert _train(tiny_set, tmp_path / "gpu", "--device", "cuda:1") == 2
    assert seen == [torch.device("cuda", 1)] and "stopped before training" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _train(tiny_set, tmp_path / "gpu", "--device", "cuda:1") == 2
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "gpu").exists()


def test_mlfuse_finalize_gives_the_output_the_sources_polarity(tiny_set, official_weights):
    from mlfuse.models.mlfuse.recipe import output_polarity

    recipe = get_recipe("mlfuse")
    cfg = build_config(recipe.defaults, sets=["crop=32"], overrides={"data": [{"root": str(tiny_set)}]})
    dataset = recipe.train_dataset(cfg)
    authors = mlfuse.create_model("mlfuse", weights=official_weights)
    before = {k: v.clone() for k, v in authors.state_dict().items()}
    notes = recipe.finalize(authors, cfg, dataset)
    assert notes["changed"] == "false" and float(notes["output_polarity"]) > 0.5  # the authors': left alone
    assert all(torch.equal(before[k], v) for k, v in authors.state_dict().items())
    negative = mlfuse.create_model("mlfuse", weights=official_weights)
    with torch.no_grad():
        negative.outc.conv.weight.neg_()
        negative.outc.conv.bias.neg_()
    x, y = torch.rand(2, 1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    assert output_polarity(negative, x, y) == pytest.approx(-output_polarity(authors, x, y), abs=1e-6)
    notes = recipe.finalize(negative, cfg, dataset)  # a photographic negative: flipped back exactly
    assert notes["changed"] == "true" and "negated" in notes["output_polarity"]
    assert all(torch.equal(before[k], v) for k, v in negative.state_dict().items())
    assert recipe.finalize(negative, build_config(recipe.defaults, sets=["orient_output=false"]), dataset) == {}


def test_validation_mean_leaves_out_non_finite_values(tiny_set, tmp_path, monkeypatch):
    import mlfuse.metrics.evaluation as E
    from mlfuse.train.trainer import validate

    values = iter([{"VIF": float("inf"), "CC": float("nan")}, {"VIF": 0.5, "CC": float("nan")}])
    monkeypatch.setattr(E, "evaluate", lambda *a, **k: next(values))
    cfg = build_config(get_recipe("mlfuse").defaults,
                       overrides={"val": [{"root": str(tiny_set)}], "val_max_pairs": 2})
    net = mlfuse.create_model("mlfuse", weights=None)
    scores = validate(net, cfg, tmp_path, 1)
    assert scores["VIF"] == 0.5 and math.isnan(scores["CC"])


def test_set_reaches_into_a_list_of_data_entries(tiny_set, tmp_path):
    defaults = get_recipe("mlfuse").defaults
    f = tmp_path / "c.toml"
    f.write_text(f'[[data]]\nroot = "{tiny_set}"\n\n[[data]]\nroot = "{tiny_set}"\nnames = ["5"]\n')
    cfg = build_config(defaults, file=f, sets=["data.1.repeat=3"])
    assert cfg.data == [{"root": str(tiny_set)}, {"root": str(tiny_set), "names": ["5"], "repeat": 3}]
    for bad, message in (("data.2.repeat=3", r"'data' has 2 item\(s\), numbered from 0: no item '2'"),
                         ("data.x.repeat=3", "no item 'x'"),
                         ("data.repeat=3", r"'data' is a list: name a setting of one item \('data.0.<setting>'\)")):
        with pytest.raises(MLFuseError, match=message):
            build_config(defaults, file=f, sets=[bad])


def test_model_card_counts_pairs_once_and_names_the_repeat(tiny_set):
    from mlfuse.train.card import _data_lines

    lines = _data_lines([{"root": str(tiny_set), "names": ["1", "2"], "repeat": 4}, {"root": str(tiny_set)}])
    assert lines[0].endswith(": 2 pairs, 4 crops of each per epoch") and lines[1].endswith(": 8 pairs")
