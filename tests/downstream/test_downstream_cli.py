"""`mlfuse downstream seg|det` end to end on tiny scenes (a few training steps), and an evaluation-only
smoke test on the 25 real MSRS pairs with their published detection labels."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlfuse.cli.main import main
from mlfuse.downstream.config import load_task_config
from mlfuse.downstream.data import open_dataset, read_yolo
from mlfuse.downstream.metrics import detection_scores
from mlfuse.downstream.networks import Detector
from mlfuse.downstream.runner import predict


def _average_folder(scenes: Path, dest: Path, skip: str | None = None) -> Path:
    """Fused images of a trivial method (mean of the visible luma and infrared), flat, named by pair."""
    dest.mkdir()
    for part in ("train", "test"):
        for f in sorted((scenes / part / "ir").glob("*.png")):
            if f.stem == skip:
                continue
            ir = np.asarray(Image.open(f), np.float32)
            vis = np.asarray(Image.open(scenes / part / "vi" / f.name).convert("L"), np.float32)
            Image.fromarray(np.rint((ir + vis) / 2).astype(np.uint8)).save(dest / f.name)
    return dest


@pytest.mark.parametrize("task", ["seg", "det"])
def test_downstream_end_to_end(task: str, scenes: Path, tiny_config: Path, tmp_path: Path, capsys) -> None:
    fused = _average_folder(scenes, tmp_path / "avg")
    partial = _average_folder(scenes, tmp_path / "partial", skip="00007")  # a test pair without its fused image
    out = tmp_path / "out"
    argv = ["downstream", task, "--data", str(scenes), "--methods", f"avg={fused}", f"partial={partial}",
            "-m", "average", "--out", str(out), "--config", str(tiny_config), "--threads", "1", "-q"]
    assert main(argv) == 1  # one input failed; the others are scored
    err = capsys.readouterr().err
    assert "partial: " in err and "00007" in err and "Traceback" not in err
    page = (out / "README.md").read_text()
    conv = "" if task == "seg" else ".coco"
    table = (out / "tables" / f"{task}{conv}.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert list(rows) == ["avg", "partial", "average", "infrared", "visible"]
    assert "failed:" in rows["partial"] and "**" in table
    assert table in page and "seed 0" in page
    with open(out / "tables" / f"{task}{conv}.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    key = "mIoU" if task == "seg" else "mAP@0.5"
    vals = {r["input"]: r for r in lines if r["metric"] == key}
    assert vals["infrared"]["status"] == "ok" and 0 <= float(vals["infrared"]["value_percent"]) <= 100
    # avg (a folder) and average (the registered method, fused on the fly) see the same images up to rounding
    doc = json.loads((out / f"{task}.json").read_text())
    assert doc["config"]["seed"] == 0 and doc["data"]["test_pairs"] == 2 and doc["machine"]["cpu"]
    assert [i["label"] for i in doc["inputs"]][:3] == ["avg", "partial", "average"]
    assert list((out / "figures").glob(f"{task}_*.png"))
    assert main(argv) == 2  # an existing results page is never replaced without --overwrite


def test_bad_label_leaves_the_pair_out_with_one_line(scenes: Path, tiny_config: Path, tmp_path: Path,
                                                     capsys) -> None:
    data = tmp_path / "scenes"
    shutil.copytree(scenes, data)
    (data / "train" / "labels" / "00001.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    assert main(["downstream", "det", "--data", str(data), "--no-single", "-m", "average", "--out",
                 str(tmp_path / "o"), "--config", str(tiny_config), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"{data / 'train' / 'labels' / '00001.txt'}:1: class 7 out of range 0..2; pair left out" in err


def test_fused_image_of_another_size_fails_that_input(scenes: Path, tiny_config: Path, tmp_path: Path,
                                                      capsys) -> None:
    fused = _average_folder(scenes, tmp_path / "avg")
    Image.open(fused / "00006.png").resize((40, 32)).save(fused / "00006.png")
    assert main(["downstream", "seg", "--data", str(scenes), "--methods", f"avg={fused}", "--out",
                 str(tmp_path / "o"), "--config", str(tiny_config), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"avg: {fused / '00006.png'}: image is 40x32 but pair '00006' is 80x64 (W x H)" in err
    assert "| infrared | " in (tmp_path / "o" / "tables" / "seg.md").read_text()  # the others are scored


def test_training_is_deterministic(scenes: Path, tiny_config: Path) -> None:
    from mlfuse.downstream.runner import InputSpec, run_downstream

    data = open_dataset(scenes, "det")
    cfg = load_task_config(tiny_config)
    cfg.epochs = 2
    a, b = (run_downstream(data, [InputSpec("infrared", "infrared")], cfg, quiet=True).results[0] for _ in range(2))
    assert a.error is None and a.final_loss == b.final_loss
    assert np.array_equal(a.detection["coco"].ap, b.detection["coco"].ap, equal_nan=True)


def test_cli_one_line_errors(tmp_path: Path, scenes: Path, capsys) -> None:
    assert main(["downstream", "seg", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["downstream", "seg", "--data", str(scenes), "--methods", "justadir", "--out",
                 str(tmp_path / "o")]) == 2
    assert "expected LABEL=DIR" in capsys.readouterr().err


@pytest.mark.shared
def test_msrs_real_pairs_evaluation_only(shared: Path) -> None:
    """The 25 real MSRS pairs: the evaluation path runs at 640 x 480 on the published labels. Boxes drawn
    on the infrared images, scored against those drawn on the fused images, agree partly (0 < AP < 1);
    the fused labels against themselves score 1; an untrained detector gives boxes inside the image."""
    data = open_dataset(shared / "data" / "msrs", "det")
    pack = shared / "data" / "msrs" / "labels" / "detection"
    truths = [read_yolo(it.label, 640, 480, 3) for it in data.test]
    ir_boxes = []
    for it, t in zip(data.test, truths, strict=True):
        d = read_yolo(pack / "infrared" / "test" / f"{it.name}.txt", 640, 480, 3)
        d.scores = np.ones(len(d.boxes))
        ir_boxes.append(d)
        t.scores = np.ones(len(t.boxes))
    assert detection_scores(truths, truths, 3, "coco").map50() == pytest.approx(1.0)
    agree = detection_scores(ir_boxes, truths, 3, "coco").map50()
    assert 0.1 < agree < 1.0
    cfg = load_task_config(None)
    torch.manual_seed(0)
    net = Detector(3, cfg.network).eval()
    vis = np.asarray(Image.open(data.test[0].visible).convert("RGB"))
    pred = predict(net, "det", vis, cfg, torch.device("cpu"))
    assert len(pred.boxes) <= cfg.max_dets and (pred.boxes[:, 2] <= 640).all() and (pred.boxes[:, 3] <= 480).all()


@pytest.mark.shared
def test_msrs_real_pairs_cli_evaluation_only(shared: Path, tiny_config: Path, tmp_path: Path, capsys) -> None:
    """`mlfuse downstream det` on the 25 real MSRS pairs with 0 epochs: the whole evaluation path (real
    640 x 480 pairs, published labels, on-the-fly fusion, tables, figures) without training."""
    out = tmp_path / "msrs"
    assert main(["downstream", "det", "--data", str(shared / "data" / "msrs"), "-m", "average", "--epochs", "0",
                 "--config", str(tiny_config), "--out", str(out), "-q"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    doc = json.loads((out / "det.json").read_text())
    assert (doc["data"]["train_pairs"], doc["data"]["test_pairs"]) == (4, 21) and doc["config"]["epochs"] == 0
    assert [i["label"] for i in doc["inputs"]] == ["average", "infrared", "visible"]
    assert all(i["error"] is None and 0 <= i["ap"]["coco"]["map50"] <= 1 for i in doc["inputs"])
    assert list((out / "figures").glob("det_*.png"))


def _readme_downstream_commands() -> list[str]:
    import re

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [ln.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for ln in block.splitlines()]
    return [ln for ln in lines if ln.startswith(("mlfuse downstream", "mlfuse sample scenes"))]


def test_readme_downstream_commands(scenes: Path, tiny_config: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's downstream commands, verbatim, in a folder with its names (tiny scenes for MSRS, a few
    pairs under names of the shipped M3FD split), with a tiny config appended (later options win)."""
    import shlex

    from mlfuse.downstream.data import shipped_split

    commands = _readme_downstream_commands()
    assert len(commands) == 5
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(Path(__file__).resolve().parents[2] / "configs")
    (work / "MSRS").symlink_to(scenes)
    (work / "fused").mkdir()
    _average_folder(scenes, work / "fused" / "msrs")
    split, _ = shipped_split()
    m3fd = work / "M3FD"
    for sub in ("Vis", "Ir", "Annotation"):
        (m3fd / sub).mkdir(parents=True)
    (work / "fused" / "m3fd").mkdir()
    for i, name in enumerate(split["train"][:4] + split["test"][:2]):
        src = f"{i:05d}.png"
        shutil.copy(scenes / "train" / "vi" / src, m3fd / "Vis" / f"{name}.png")
        shutil.copy(scenes / "train" / "ir" / src, m3fd / "Ir" / f"{name}.png")
        shutil.copy(scenes / "train" / "ir" / src, work / "fused" / "m3fd" / f"{name}.png")
        (m3fd / "Annotation" / f"{name}.xml").write_text(
            "<annotation><object><name>Car</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>40</xmax>"
            "<ymax>50</ymax></bndbox></object></annotation>")
    monkeypatch.chdir(work)
    tiny = ["--config", str(tiny_config), "--threads", "1", "-q"]
    for command in commands:
        argv = shlex.split(command)[1:]
        extra = ["--scenes", "2"] if argv[0] == "sample" else tiny
        assert main(argv + extra) == 0, command
        if argv[0] == "sample":  # two scenes written; the runs below use the session's small ones
            assert len(list((work / "scenes" / "test" / "labels").glob("*.txt"))) == 1
            shutil.rmtree(work / "scenes")
            (work / "scenes").symlink_to(scenes)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        if argv[0] == "downstream":
            out = work / argv[argv.index("--out") + 1]
            assert (out / "README.md").is_file() and (out / f"{argv[1]}.json").is_file()
    doc = json.loads((work / "results" / "m3fd_det" / "det.json").read_text())
    assert doc["data"]["split"].endswith("m3fd_split_seed0.txt") and doc["data"]["test_pairs"] == 2
