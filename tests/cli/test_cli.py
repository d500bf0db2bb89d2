"""`mlfuse fuse` as a user runs it: explicit roles, folders, --root, errors as one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mlfuse.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair(tmp_path, sample_pair) -> tuple[Path, Path]:
    vis, ir = sample_pair
    v, i = tmp_path / "vis.png", tmp_path / "ir.png"
    PILImage.fromarray(vis[:60, :80]).save(v)
    PILImage.fromarray(ir[:60, :80]).save(i)
    return v, i


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mlfuse: error: "), err
    return err


def test_fuse_one_pair_colour(pair, tmp_path, random_weights, capsys) -> None:
    v, i = pair
    out = tmp_path / "res" / "f.png"
    assert main(["fuse", "--vis", str(v), "--ir", str(i), "-o", str(out), "--weights", str(random_weights)]) == 0
    im = PILImage.open(out)
    assert im.mode == "RGB" and im.size == (80, 60)
    assert main(["fuse", "--mri", str(i), "--pet", str(v), "-o", str(tmp_path / "g.png"), "--color", "gray",
                 "--weights", str(random_weights), "--intensity", "clamp", "-q"]) == 0
    assert PILImage.open(tmp_path / "g.png").mode == "L"


def test_existing_output_refused_then_overwritten(pair, tmp_path, random_weights, capsys) -> None:
    v, i = pair
    out = tmp_path / "f.png"
    out.write_bytes(b"keep me")
    args = ["fuse", "--structural", str(v), "--functional", str(i), "-o", str(out), "--weights", str(random_weights)]
    assert main(args) == 2
    assert "already exists (pass --overwrite" in _err_line(capsys)
    assert out.read_bytes() == b"keep me"
    assert main([*args, "--overwrite", "-q"]) == 0
    assert PILImage.open(out).size == (80, 60)


def test_output_folder_for_one_pair(pair, tmp_path, random_weights) -> None:
    v, i = pair
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    assert main(["fuse", "--vis", str(v), "--ir", str(i), "-o", str(outdir), "--weights", str(random_weights),
                 "-q"]) == 0
    assert (outdir / "vis.png").is_file()


@pytest.mark.parametrize("case", ["missing_role", "missing_file", "size_mismatch", "no_weights", "file_and_dir",
                                  "unwritable", "bad_subdirs"])
def test_errors_are_one_line(case, pair, tmp_path, random_weights, capsys) -> None:
    v, i = pair
    w = ["--weights", str(random_weights)]
    out = str(tmp_path / "o.png")
    if case == "missing_role":
        argv, words = ["fuse", "--vis", str(v), "-o", out], "need both roles"
    elif case == "missing_file":
        argv, words = ["fuse", "--vis", str(v), "--ir", str(tmp_path / "nope.png"), "-o", out, *w], "no such file"
    elif case == "size_mismatch":
        small = tmp_path / "small.png"
        PILImage.fromarray(np.zeros((10, 10), np.uint8)).save(small)
        argv, words = ["fuse", "--vis", str(v), "--ir", str(small), "-o", out, *w], "80x60"
    elif case == "no_weights":
        argv = ["fuse", "--vis", str(v), "--ir", str(i), "-o", out, "--weights", "mlfuse-paper"]
        words = "mlfuse weights fetch mlfuse-paper"
    elif case == "file_and_dir":
        argv, words = ["fuse", "--vis", str(tmp_path), "--ir", str(i), "-o", out, *w], "expected a folder"
    elif case == "unwritable":
        target = Path("/sys/mlfuse_test_out.png") if os.geteuid() == 0 else Path("/proc/x.png")
        argv, words = ["fuse", "--vis", str(v), "--ir", str(i), "-o", str(target), *w], "cannot"
    else:
        argv, words = ["fuse", "--root", str(tmp_path), "--subdirs", "onlyone", "-o", out, *w], "--subdirs"
    assert main(argv) == 2
    assert words in _err_line(capsys)
    assert not Path(out).exists()


def _make_root(tmp_path: Path, sample_pair, s_name: str, f_name: str, names: list[str]) -> Path:
    vis, ir = sample_pair
    root = tmp_path / "data"
    for sub, img in ((s_name, vis), (f_name, ir)):
        (root / sub).mkdir(parents=True)
        for k, n in enumerate(names):
            PILImage.fromarray(img[k:k + 30, k:k + 40]).save(root / sub / f"{n}.png")
    return root


def test_root_folder_run_with_bad_pair(tmp_path, sample_pair, random_weights, capsys) -> None:
    root = _make_root(tmp_path, sample_pair, "vi", "ir", ["a1", "a2", "a10"])
    (root / "ir" / "a2.png").write_bytes((root / "ir" / "a2.png").read_bytes()[:100])  # truncated
    (root / "vi" / "lonely.png").write_bytes((root / "vi" / "a1.png").read_bytes())
    out = tmp_path / "out"
    code = main(["fuse", "--root", str(root), "-o", str(out), "--weights", str(random_weights), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED a2:" in err and "truncated or corrupt" in err
    assert "lonely.png: no functional image" in err
    assert "2 of 3 pairs fused" in err and "1 failed" in err and "1 file(s) unpaired" in err
    assert sorted(p.name for p in out.iterdir()) == ["a1.png", "a10.png"]
    assert PILImage.open(out / "a1.png").mode == "RGB"


def test_root_with_named_medical_subdirs(tmp_path, sample_pair, random_weights, capsys, monkeypatch) -> None:
    root = _make_root(tmp_path, sample_pair, "MRI", "CT", ["1", "2"])
    out = tmp_path / "out"
    argv = ["fuse", "--root", str(root), "--subdirs", "MRI,CT", "-o", str(out), "--weights", str(random_weights)]
    monkeypatch.setenv("MLFUSE_PROGRESS", "1")  # stderr is captured, not a terminal: bars only when asked
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 of 2 pairs fused" in err
    assert "pair/s" in err or "fuse:" in err  # the progress bar is shown without --quiet
    assert main([*argv, "--skip-existing", "-q"]) == 0
    assert "2 skipped" in capsys.readouterr().err


def test_folders_via_role_options(tmp_path, sample_pair, random_weights, capsys) -> None:
    root = _make_root(tmp_path, sample_pair, "mri", "spect", ["x"])
    out = tmp_path / "o"
    assert main(["fuse", "--mri", str(root / "mri"), "--spect", str(root / "spect"), "-o", str(out),
                 "--weights", str(random_weights), "--quiet"]) == 0
    assert "pair/s" not in capsys.readouterr().err
    assert (out / "x.png").is_file()


def test_empty_folders_are_an_error(tmp_path, random_weights, capsys) -> None:
    (tmp_path / "vi").mkdir(), (tmp_path / "ir").mkdir()
    assert main(["fuse", "--root", str(tmp_path), "-o", str(tmp_path / "o"), "--weights", str(random_weights),
                 "-q"]) == 2
    assert "no pairs found" in capsys.readouterr().err


def test_models_and_sample_commands(tmp_path, capsys) -> None:
    assert main(["models"]) == 0
    assert "structural=visible/mri" in capsys.readouterr().out
    assert main(["sample", str(tmp_path)]) == 0
    assert (tmp_path / "vis.png").is_file() and (tmp_path / "ir.png").is_file()


def test_console_script_prints_no_traceback(tmp_path) -> None:
    exe = shutil.which("mlfuse")
    cmd = [exe] if exe else [sys.executable, "-m", "mlfuse"]
    bad = tmp_path / "text.png"
    bad.write_text("hello")
    (tmp_path / "other.png").write_text("hello")
    proc = subprocess.run([*cmd, "fuse", "--vis", str(bad), "--ir", str(tmp_path / "other.png"),
                           "-o", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"mlfuse: error: {bad}: not an image file (format not recognised)"


def test_every_device_option_takes_cuda_n(capsys):
    """`--device cuda:N` passes every command's parser (availability is the resolver's to check) and
    the parser checks names with the resolver's list (mlfuse.runtime)."""
    import argparse

    from mlfuse.cli import device_arg
    from mlfuse.cli.main import main as cli_main

    assert device_arg("cuda:3") == "cuda:3"
    with pytest.raises(argparse.ArgumentTypeError, match="invalid device 'cuda:x'"):
        device_arg("cuda:x")
    rc = cli_main(["fuse", "--device", "cuda:7", "--vis", "a.png", "--ir", "b.png", "-o", "c.png"])
    err = capsys.readouterr().err
    assert rc == 2 and "invalid" not in err and err.count("\n") == 1
