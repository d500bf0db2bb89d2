"""Downstream data: layouts as published, splits, and one-line errors for bad labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlfuse.downstream.data import (
    M3FD_NAMES,
    format_split,
    open_dataset,
    read_mask,
    read_split,
    read_voc,
    read_yolo,
    shipped_split,
    split_names,
)
from mlfuse.errors import InputError


def test_yolo_reader_whitespace_and_no_final_newline(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("0   0.5 0.5  0.2 0.4\n2 0.25 0.75 0.5 0.5")  # MSRS pack style: several spaces, no last newline
    d = read_yolo(f, 200, 100, 3)
    assert d.classes.tolist() == [0, 2]
    np.testing.assert_allclose(d.boxes, [[80, 30, 120, 70], [0, 50, 100, 100]])


@pytest.mark.parametrize(("text", "message"), [
    ("3 0.5 0.5 0.2 0.2", "class 3 out of range 0..2"),
    ("0 0.95 0.5 0.2 0.2", "lies outside the image"),
    ("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
])
def test_yolo_bad_label_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("1 0.5 0.5 0.1 0.1\n" + text + "\n")
    with pytest.raises(InputError) as exc:
        read_yolo(f, 64, 64, 3)
    assert str(exc.value).startswith(f"{f}:2: ") and message in str(exc.value)
    assert "\n" not in str(exc.value)


VOC = """<annotation><size><width>100</width><height>80</height></size>
<object><name>People</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>60</ymax></bndbox></object>
<object><name>{name}</name><bndbox><xmin>50</xmin><ymin>5</ymin><xmax>{xmax}</xmax><ymax>40</ymax></bndbox></object>
</annotation>"""


def test_voc_reader_and_errors(tmp_path: Path) -> None:
    classes = ("People", "Car", "Bus", "Lamp", "Motorcycle", "Truck")
    f = tmp_path / "00001.xml"
    f.write_text(VOC.format(name="Truck", xmax=90))
    d = read_voc(f, classes, 100, 80)
    assert d.classes.tolist() == [0, 5] and d.boxes.tolist() == [[10, 20, 30, 60], [50, 5, 90, 40]]
    f.write_text(VOC.format(name="Tram", xmax=90))
    with pytest.raises(InputError, match=r"00001.xml: class 'Tram' is not one of People"):
        read_voc(f, classes, 100, 80)
    f.write_text(VOC.format(name="Car", xmax=140))
    with pytest.raises(InputError, match=r"00001.xml: box .* lies outside the 100x80 image"):
        read_voc(f, classes, 100, 80)


def test_mask_reader_size_and_range(tmp_path: Path) -> None:
    f = tmp_path / "m.png"
    m = np.zeros((10, 12), np.uint8)
    m[2, 3], m[4, 4] = 3, 255
    Image.fromarray(m).save(f)
    assert read_mask(f, (10, 12), 4)[2, 3] == 3
    with pytest.raises(InputError, match=r"m.png: mask is 12x10 but the image is 14x10"):
        read_mask(f, (10, 14), 4)
    with pytest.raises(InputError, match=r"m.png: class index 3 out of range 0..2"):
        read_mask(f, (10, 12), 3)


def test_seeded_split_and_shipped_m3fd_split() -> None:
    s = split_names([f"n{i}" for i in range(50)], seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    assert s == split_names([f"n{i}" for i in reversed(range(50))], seed=3)  # order of the input does not matter
    assert s != split_names([f"n{i}" for i in range(50)], seed=4)
    shipped, name = shipped_split()
    assert name.endswith("m3fd_split_seed0.txt")
    assert [len(shipped[k]) for k in ("train", "val", "test")] == [3360, 420, 420]
    assert shipped == split_names(M3FD_NAMES, seed=0)  # the file is what its header says made it


def test_split_file_round_trip_and_errors(tmp_path: Path) -> None:
    s = split_names(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], 0)
    f = tmp_path / "split.txt"
    f.write_text(format_split(s, "test"))
    assert read_split(f) == s
    f.write_text("train a\nvalidation b\n")
    with pytest.raises(InputError, match=r"split.txt:2: expected 'train\|val\|test NAME'"):
        read_split(f)


def test_msrs_layout_on_scenes(scenes: Path) -> None:
    seg = open_dataset(scenes, "seg")
    assert seg.layout == "split-folders" and seg.classes == ("unlabelled", "car", "person", "bike")
    assert (len(seg.train), len(seg.test)) == (6, 2)
    det = open_dataset(scenes, "det")
    assert det.classes == ("person", "bicycle", "car") and det.test[0].label.suffix == ".txt"


def test_m3fd_layout(tmp_path: Path, scenes: Path) -> None:
    root = tmp_path / "m3fd"
    for sub in ("Ir", "Vis", "Annotation"):
        (root / sub).mkdir(parents=True)
    split = {"train": ["00000", "00001"], "val": [], "test": ["00002"]}
    for i, name in enumerate(split["train"] + split["test"]):
        shutil.copy(scenes / "train" / "ir" / f"{i:05d}.png", root / "Ir" / f"{name}.png")
        shutil.copy(scenes / "train" / "vi" / f"{i:05d}.png", root / "Vis" / f"{name}.png")
        (root / "Annotation" / f"{name}.xml").write_text(VOC.format(name="Car", xmax=60))
    (tmp_path / "split.txt").write_text(format_split(split, "tiny"))
    d = open_dataset(root, "det", split_file=tmp_path / "split.txt")
    assert d.layout == "m3fd" and d.classes[0] == "People" and [it.name for it in d.test] == ["00002"]
    with pytest.raises(InputError, match=r"none of the test names of split .*m3fd_split_seed0.txt is here"):
        open_dataset(root, "det")  # none of the shipped split's names here: one line saying what to do
    shipped, _ = shipped_split()
    for sub, ext in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml")):  # copies named M3FD_<name>
        for f in sorted((root / sub).glob(f"*{ext}")):
            f.rename(f.with_name(f"M3FD_{shipped['test'][0] if f.stem == '00002' else shipped['train'][0]}{ext}")
                     if f.stem in ("00002", "00000") else f)
    d = open_dataset(root, "det")
    assert [it.name for it in d.test] == [f"M3FD_{shipped['test'][0]}"] and len(d.train) == 1


def test_flat_folder_pair_with_seeded_split(tmp_path: Path, scenes: Path) -> None:
    root = tmp_path / "flat"
    for sub, src in (("vi", "vi"), ("ir", "ir"), ("masks", "Segmentation_labels")):
        shutil.copytree(scenes / "train" / src, root / sub)
    d = open_dataset(root, "seg")
    assert d.layout == "folder" and "seeded 8:1:1" in d.split
    assert len(d.train) + len(d.test) <= 6 and d.test
    assert d.classes[:3] == ("unlabelled", "car", "person")  # MSRS's classes when no seg_classes.txt


@pytest.mark.shared
def test_msrs_detection_pack_reads_cleanly(shared: Path) -> None:
    """The 25 real MSRS pairs with the published detection labels: every box parses inside its image."""
    d = open_dataset(shared / "data" / "msrs", "det")
    assert d.classes == ("person", "bicycle", "car")
    assert (len(d.train), len(d.test)) == (4, 21) and not d.problems
    for it in d.train + d.test:
        boxes = read_yolo(it.label, 640, 480, 3)
        assert len(boxes.boxes) and (boxes.boxes[:, 2] <= 640).all()
