"""Folder pairing: by stem, natural order, nothing silently dropped; modality sub-folder detection."""

from __future__ import annotations

import pytest

from mlfuse.data.pairs import find_modality_dirs, natural_key, pair_folders
from mlfuse.errors import InputError


def _touch(folder, *names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


def test_natural_order() -> None:
    names = ["img10", "img2", "Img1", "b", "a10b2", "a10b10", "a9"]
    assert sorted(names, key=natural_key) == ["a9", "a10b2", "a10b10", "b", "Img1", "img2", "img10"]


def test_pairs_by_stem_and_reports_the_rest(tmp_path) -> None:
    s, f = tmp_path / "vi", tmp_path / "ir"
    _touch(s, "10.png", "2.jpg", "1.png", "only_vis.png", "dup.png", "dup.jpg", "readme.txt", ".hidden.png")
    _touch(f, "1.png", "2.png", "10.bmp", "only_ir.png", "dup.png")
    res = pair_folders(s, f)
    assert [p.name for p in res.pairs] == ["1", "2", "10"]
    assert res.pairs[1].structural.name == "2.jpg" and res.pairs[1].functional.name == "2.png"
    problems = res.problems()
    assert any("only_vis.png" in p and "no functional image" in p for p in problems)
    assert any("only_ir.png" in p and "no structural image" in p for p in problems)
    assert any("several files with stem 'dup'" in p for p in problems)
    assert len(problems) == 3


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        pair_folders(tmp_path / "a", tmp_path)


@pytest.mark.parametrize("subs,expected", [
    (("vi", "ir"), ("vi", "ir")),
    (("MRI", "CT"), ("MRI", "CT")),
    (("mri", "pet"), ("mri", "pet")),
    (("Visible", "Infrared"), ("Visible", "Infrared")),
])
def test_detects_modality_dirs(tmp_path, subs, expected) -> None:
    for d in subs:
        (tmp_path / d).mkdir()
    s, f = find_modality_dirs(tmp_path)
    assert (s.name, f.name) == expected


def test_named_and_ambiguous_dirs(tmp_path) -> None:
    for d in ("mri", "ct", "pet", "vi"):
        (tmp_path / d).mkdir()
    with pytest.raises(InputError, match="several structural sub-folders"):
        find_modality_dirs(tmp_path)
    s, f = find_modality_dirs(tmp_path, ("MRI", "pet"))
    assert (s.name, f.name) == ("mri", "pet")
    with pytest.raises(InputError, match="no functional sub-folder"):
        find_modality_dirs(tmp_path, ("mri", "spect"))
