"""Issue 12's default rule (benchmarks/default_rule.py) on synthetic quality reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._common import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rule():
    return load_script(ROOT / "benchmarks" / "default_rule.py")


def _report(cand: dict[str, float], ref: dict[str, float], tno_cand: tuple[float, float],
            tno_ref: tuple[float, float], m3fd_cand_vif: float | None = None) -> dict:
    def entry(mean: float, n: int) -> dict:
        return {"mean": mean, "std": 0.0, "n": n}

    datasets = []
    for name, n in (("vifb", 21), ("msrs", 20), ("m3fd", 1)):
        c = {m: entry(v, n) for m, v in cand.items()}
        if name == "m3fd" and m3fd_cand_vif is not None:
            c["VIF"] = entry(m3fd_cand_vif, n)
        datasets.append({"name": name, "summary": {"paper": {"own": c, "mlfuse:paper": {
            m: entry(v, n) for m, v in ref.items()}}}})
    datasets.append({"name": "tno", "summary": {"cddfuse": {
        "own": {"SF": entry(tno_cand[0], 42), "AG": entry(tno_cand[1], 42)},
        "mlfuse:paper": {"SF": entry(tno_ref[0], 42), "AG": entry(tno_ref[1], 42)}}}})
    return {"datasets": datasets}


REF = {"VIF": 0.6, "SCD": 1.6, "Qabf": 0.5, "CC": 0.5, "SSIM": 0.4, "FMI_pixel": 0.85}


def test_four_of_six_and_sharpness_within_make_the_default(rule, tmp_path) -> None:
    cand = dict(REF, VIF=0.61, SCD=1.5, Qabf=0.45)  # VIF, CC, SSIM, FMI >= (ties count): 4 of 6
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_report(cand, REF, (11.0, 4.0), (9.9, 3.8))))
    out = tmp_path / "rule.md"
    assert rule.main([str(path), "--candidate", "own", "--out", str(out)]) == 0
    text = out.read_text()
    assert "4 of 6" in text and "may be the default" in text
    result = rule.evaluate(json.loads(path.read_text()), "own")
    assert result["wins"] == 4 and result["default"]


def test_three_wins_or_over_sharpening_fail(rule) -> None:
    three = dict(REF, VIF=0.5, SCD=1.5, Qabf=0.45)
    assert not rule.evaluate(_report(three, REF, (9.9, 3.8), (9.9, 3.8)), "own")["default"]
    better = {m: v * 1.1 for m, v in REF.items()}
    sharp = rule.evaluate(_report(better, REF, (25.5, 11.5), (9.9, 3.8)), "own")  # own-v1's TNO SF / AG
    assert sharp["wins"] == 6 and not sharp["sharpness"]["SF"]["within"] and not sharp["default"]


def test_pairs_are_pooled_not_datasets(rule) -> None:
    """The one M3FD pair weighs 1/42 of the mean, not a third."""
    cand = dict(REF)
    result = rule.evaluate(_report(cand, REF, (9.9, 3.8), (9.9, 3.8), m3fd_cand_vif=0.0), "own")
    assert result["metrics"]["VIF"]["candidate"] == pytest.approx(0.6 * 41 / 42)


def test_missing_dataset_is_a_one_line_error(rule, tmp_path, capsys) -> None:
    report = _report(REF, REF, (9.9, 3.8), (9.9, 3.8))
    report["datasets"] = [d for d in report["datasets"] if d["name"] != "msrs"]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    assert rule.main([str(path), "--candidate", "own"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no dataset 'msrs'" in err and str(path) in err
