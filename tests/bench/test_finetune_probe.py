"""benchmarks/finetune_probe.py: a few fine-tuning steps on a data mixture, with snapshots."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from tests._common import load_script
from tests.train.conftest import make_pairs

ROOT = Path(__file__).resolve().parents[2]


def test_probe_trains_the_mixture_and_writes_snapshots(tmp_path: Path, capsys):
    probe = load_script(ROOT / "benchmarks" / "finetune_probe.py")
    a, b = make_pairs(tmp_path / "a", n=3), make_pairs(tmp_path / "b", n=13, seed=1)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[data]]\nroot = "{a}"\n\n[[data]]\nroot = "{b}"\n')
    out = tmp_path / "snap"
    assert probe.main(["--name", "mix", "--weights", "mlfuse-own-v1", "--config", str(cfg), "--repeat-first", "2",
                       "--steps", "2", "--every", "1", "--threads", "1", "--out", str(out)]) == 0
    assert "mix: 19 crops per epoch" in capsys.readouterr().out  # 3 x 2 + 13
    first, second = load_file(out / "mix_1.safetensors"), load_file(out / "mix_2.safetensors")
    start = load_file(ROOT / "src/mlfuse/models/mlfuse/weights/mlfuse-own-v1.safetensors")
    key = "outc.conv.weight"
    assert not first[key].equal(start[key]) and not second[key].equal(first[key])  # it trained
