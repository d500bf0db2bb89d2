"""Issue 12's schedule table (benchmarks/schedule_table.py) from a synthetic validation report and run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests._common import load_script

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("VIF", "SCD", "Qabf", "CC", "SSIM", "FMI_pixel")


@pytest.fixture(scope="module")
def table():
    return load_script(ROOT / "benchmarks" / "schedule_table.py")


def _report(tmp_path: Path) -> Path:
    def summary(scale: float) -> dict:
        return {m: {"mean": scale * (i + 1), "std": 0.0, "n": 0} for i, m in enumerate(METRICS)}

    datasets = []
    for name, n, own, paper in (("a val", 10, 1.0, 0.5), ("b val", 30, 0.1, 0.5)):
        s = {"mlfuse:own-v1": summary(own), "mlfuse:paper": summary(paper), "abl": summary(own / 2)}
        for per_method in s.values():
            for entry in per_method.values():
                entry["n"] = n
        datasets.append({"name": name, "pairs": n, "summary": {"paper": s}})
    from mlfuse.weights.store import release_path

    # an ablation run's weights given as a file (LABEL=mlfuse:FILE): here own-v2's, read as a plain file
    report = {"methods": [{"label": "mlfuse:own-v1", "weights": "own-v1"}, {"label": "mlfuse:paper"},
                          {"label": "abl", "weights": str(release_path("mlfuse-own-v2"))}], "datasets": datasets}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    return path


def test_pooled_means_weigh_datasets_by_pairs(table, tmp_path):
    report = json.loads(_report(tmp_path).read_text())
    own = table.pooled(report, "mlfuse:own-v1")
    assert own["VIF"] == pytest.approx((10 * 1.0 + 30 * 0.1) / 40)
    assert table.pooled(report, "mlfuse:paper")["SSIM"] == pytest.approx(0.5 * 5)
    with pytest.raises(SystemExit, match="no VIF for mlfuse:own-v9"):
        table.pooled(report, "mlfuse:own-v9")


def test_table_reads_the_schedule_from_the_release_and_the_curves_from_the_run(table, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "epochs.csv").write_text("epoch,step,lr,seconds,L_edg,L_ssd,L_cmk,L_fus,total\n"
                                    "1,53,5e-4,100,0.4,0.2,0.7,0.08,1.2\n2,106,1e-3,200,0.2,0.03,0.3,0.07,0.4\n"
                                    "3,159,9e-4,300,0.1,0.02,0.2,0.06,0.3\n")
    (run / "val.csv").write_text("epoch,step,VIF,SCD\n2,106,0.5,1.1\n")
    out = tmp_path / "table.md"
    assert table.main([str(_report(tmp_path)), "--run", f"demo={run}", "--every", "5", "--out", str(out)]) == 0
    text = out.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith(("| `mlfuse:", "| `abl`"))]
    # own-v1's schedule comes from its packaged weights' metadata: 12 epochs, 636 steps, lr 1e-3
    assert rows[0].startswith("| `mlfuse:own-v1` | authors | 12 | 636 | 0.001 | 0 ep | cosine per epoch to 0 "
                              "| 0.34 | 16 | 1 |")
    assert rows[1].startswith("| `mlfuse:paper` | authors | 501 | 13,527 | 0.0001 |")  # their BN counters
    assert rows[1].count("**") == 2 * 6  # the authors' row is best in every pooled column here
    # the file's metadata gives its schedule: schedule=cpu, 60 epochs, 3,180 steps, 2-epoch warm-up
    assert rows[2].startswith("| `abl` | cpu | 60 | 3,180 | 0.001 | 2 ep | cosine per step to 1e-05 | 1.61 | 16 | 1 |")
    assert "40 pairs pooled (a val 10, b val 30)" in text
    curve = [ln for ln in text.splitlines() if ln.startswith(("| 1 | 53 |", "| 2 | 106 | 1.00e-03", "| 3 | 159 |"))]
    assert len(curve) == 3 and curve[2].endswith("| 0.08 |")  # epochs 1, 2 and the last; hours from seconds
    assert "| 2 | 106 | 0.5000 | 1.1000 |" in text
    # a label without ':' naming a release by its weights, and a weights file that cannot give a schedule
    assert table.release_config("v2", "own-v2")[1]["steps"] == "3180"
    with pytest.raises(SystemExit, match=r"abl: run/last\.pt is neither an MLFuse release nor a \.safetensors"):
        table.release_config("abl", "run/last.pt")


def test_lr_sum_replays_each_schedule(table):
    # authors: 27 steps an epoch at 0.5e-4 (1 + cos(pi e / 501)), e = 0..500; the cosines sum to 1
    assert table.lr_sum(table.AUTHORS, table.AUTHORS_STEPS) == pytest.approx(27 * (501 * 0.5e-4 + 0.5e-4))
    # cpu without warm-up or floor, 2 epochs of 2 steps: positions 0, 0.5, 1, 1.5 of a 2-epoch cosine
    cfg = {"schedule": "cpu", "epochs": 2, "lr": 1.0, "eta_min": 0.0, "warmup_epochs": 0.0}
    assert table.lr_sum(cfg, 4) == pytest.approx(sum(0.5 * (1 + math.cos(math.pi * p / 2)) for p in (0, .5, 1, 1.5)))
    # a warm-up epoch of 2 steps ramps 1e-3 (the floor of the ramp) then 0.5 before the cosine
    cfg["warmup_epochs"] = 1.0
    assert table.lr_sum(cfg, 4) == pytest.approx(1e-3 + 0.5 + 1.0 + 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_crops_per_pair_names_the_repeated_entries(table):
    assert table.crops_cell([]) == "1"
    assert table.crops_cell([{"root": "../shared/data/roadscene/train"}, {"root": "x/y", "repeat": 1}]) == "1"
    data = [{"root": "../shared/data/roadscene/train", "repeat": 4}, {"root": "../shared/data/harvard/ct_mri/train"}]
    assert table.crops_cell(data) == "4 roadscene/train, 1 harvard/ct_mri/train"
