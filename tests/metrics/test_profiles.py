"""Profiles end to end: `evaluate` on the reference triples reproduces every reference cell, with
the profile's own gray conversion, precision and conventions; input validation; folder evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from mlfuse.cli.main import main
from mlfuse.errors import InputError, MLFuseError
from mlfuse.metrics._common import prepare, to_255, to_gray
from mlfuse.metrics.evaluation import EvalReport, evaluate
from mlfuse.metrics.profiles import PROFILES, get_profile
from mlfuse.metrics.report import best_methods, markdown_table

from .conftest import REF, ROWS, assert_close, load_triple, reference_cases

# profile metric name -> reference CSV column, where they differ from "<profile>.<name>"
COLUMN = {("cddfuse", "VIF"): "cddfuse.VIFF", ("smfnet", "VIF"): "cddfuse.VIFF", ("smfnet", "AG1"): "smfnet.AG1",
          ("smfnet", "SSIM"): "smfnet.SSIM_dr255", ("smfnet", "Nabf"): "smfnet.Nabf",
          ("smfnet", "MS_SSIM"): "smfnet.MS_SSIM"}
# tolerances from the spec (metrics.md "Suggested tolerances"); everything else 1e-6 relative
TOL = {"Qcb": dict(rel=1e-3), "FMI_w": dict(rel=1e-2),
       **{m: dict(rel=1e-6, abs_=1e-6) for m in ("SD", "SF", "CC", "SCD", "Qabf")}}


def _column(profile: str, metric: str) -> str | None:
    if (profile, metric) in COLUMN:
        return COLUMN[(profile, metric)]
    if profile == "smfnet":
        return f"cddfuse.{metric}"  # the smfnet profile reuses the cddfuse Evaluator otherwise
    if profile == "paper":
        return f"tang.{metric}"
    return f"{profile}.{metric}"


def test_every_profile_metric_resolves() -> None:
    for prof in PROFILES.values():
        for m in prof.metrics:
            assert callable(m.function()), f"{prof.name}.{m.name} -> {m.target}"
    assert get_profile("paper").names() == ["VIF", "SCD", "Qabf", "CC", "SSIM", "FMI_pixel"]
    with pytest.raises(MLFuseError, match="unknown metric profile"):
        get_profile("nope")


@pytest.mark.parametrize("tid", [r["id"] for r in ROWS if r["id"] in ("smfnet_TNO01", "TNO07_lapmax", "MRICT11_max")]
                         or [None])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_evaluate_reproduces_reference_cells(profile, tid, shared) -> None:
    row = next(r for r in ROWS if r["id"] == tid)
    f, a, b = load_triple(tid)
    slow = row.get("tang.FMI_none", "") != ""
    values = evaluate(f, a, b, profile, slow=slow)
    checked = 0
    for metric, got in values.items():
        cell = row.get(_column(profile, metric) or "", "")
        if cell == "":
            continue
        assert_close(got, float(cell), **TOL.get(metric, {}), what=f"{profile}.{metric} on {tid}")
        checked += 1
    assert checked == len(values), f"only {checked} of {len(values)} values had a reference cell"


def test_rgb_fused_image_is_converted_like_the_reference() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    w = np.array([0.299, 0.587, 0.114], np.float32)
    cv2_gray = np.round(rgb.astype(np.float32) @ w).astype(np.uint8)
    assert np.array_equal(to_gray(rgb, "cv2"), cv2_gray)
    matlab = np.floor(rgb.astype(float) @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103]) + 0.5)
    assert np.array_equal(to_gray(rgb, "matlab"), matlab.astype(np.uint8))
    same = np.dstack([rgb[..., 0]] * 3)  # R = G = B: both conventions return the channel unchanged
    assert np.array_equal(to_gray(same, "cv2"), rgb[..., 0]) and np.array_equal(to_gray(same, "matlab"), rgb[..., 0])


def test_input_validation() -> None:
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with pytest.raises(InputError) as err:
        prepare(g, g, np.zeros((4, 4), np.uint8))
    assert "size mismatch" in str(err.value) and "4x3" in str(err.value) and "4x4" in str(err.value)
    with pytest.raises(InputError, match="float input needs data_range"):
        to_255(g / 255.0)
    np.testing.assert_allclose(to_255(g / 255.0, data_range=1.0), g, atol=1e-12)
    np.testing.assert_allclose(to_255(g.astype(np.uint16) * 257), g, atol=1e-12)  # uint16 by its maximum
    with pytest.raises(InputError, match="unsupported pixel type"):
        to_255(g.astype(np.int32))
    with pytest.raises(InputError, match="NaN"):
        to_255(np.full((2, 2), np.nan), data_range=1.0)


def test_float_and_uint8_inputs_agree() -> None:
    rng = np.random.default_rng(3)
    f, a, b = (rng.integers(0, 256, (40, 50), dtype=np.uint8) for _ in range(3))
    u8 = evaluate(f, a, b, "cddfuse", metrics=["EN", "SD", "MI", "Qabf"])
    fl = evaluate(f / 255.0, a / 255.0, b / 255.0, "cddfuse", data_range=1.0, metrics=["EN", "SD", "MI", "Qabf"])
    for k in u8:
        assert fl[k] == pytest.approx(u8[k], rel=1e-6)


def test_best_marking_respects_direction() -> None:
    prof = get_profile("cddfuse")
    rep = EvalReport(prof, ["EN", "MSE"], ["a", "b"], rows=[
        {"method": "a", "name": "1", "EN": 7.0, "MSE": 10.0},
        {"method": "b", "name": "1", "EN": 6.0, "MSE": 5.0},
        {"method": "b", "name": "2", "EN": math.nan, "MSE": 7.0},
    ])
    assert best_methods(rep) == {"EN": {"a"}, "MSE": {"b"}}
    s = rep.summary()
    assert s["b"]["EN"] == (6.0, 0.0, 1, 1) and s["b"]["MSE"] == (6.0, 1.0, 2, 0)
    md = markdown_table(rep)
    assert "| a | 1 | **7.0000 ± 0.0000** | 10.0000 ± 0.0000 |" in md
    assert "MSE ↓" in md and "EN ↑" in md


def _eval_folders(tmp_path):
    """Sources TNO04/TNO05 in vi/ir, methods 'mean' and 'max' (from the reference triples)."""
    root = tmp_path / "src"
    for sub in ("vi", "ir"):
        (root / sub).mkdir(parents=True)
    for rule in ("mean", "max"):
        (tmp_path / rule).mkdir()
    for pair in ("TNO04", "TNO05"):
        for rule in ("mean", "max"):
            f, a, b = load_triple(f"{pair}_{rule}")
            Image.fromarray(f).save(tmp_path / rule / f"{pair}.png")
        Image.fromarray(a).save(root / "ir" / f"{pair}.png")
        Image.fromarray(b).save(root / "vi" / f"{pair}.png")
    return root


def test_eval_cli_tables_and_problems(shared, tmp_path, capsys) -> None:
    root = _eval_folders(tmp_path)
    (tmp_path / "max" / "TNO05.png").unlink()  # a missing result
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "max" / "extra.png")  # a result without sources
    out = tmp_path / "res"
    argv = ["eval", "--root", str(root), "--methods", str(tmp_path / "mean"), f"MAX={tmp_path / 'max'}",
            "--profile", "cddfuse", "--metrics", "EN,MI,Qabf,MSE", "--csv", str(out / "t.csv"),
            "--json", str(out / "t.json"), "--md", str(out / "t.md"), "-q", "--per-image"]
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 1  # problems were listed
    assert "MAX: 1 pair(s) have no fused result" in cap.err and "TNO05" in cap.err
    assert "MAX: 1 result(s)" in cap.err and "extra" in cap.err
    assert "mean" in cap.out and "MAX" in cap.out and "MI ↑" in cap.out
    doc = json.loads((out / "t.json").read_text())
    rows = {(r["method"], r["name"]): r for r in doc["per_image"]}
    assert set(rows) == {("mean", "TNO04"), ("mean", "TNO05"), ("MAX", "TNO04")}
    ref = {r["id"]: r for r in ROWS}
    for (method, name), r in rows.items():
        rid = f"{name}_{'mean' if method == 'mean' else 'max'}"
        assert_close(r["MI"], float(ref[rid]["cddfuse.MI"]), what=rid)
        assert_close(r["EN"], float(ref[rid]["cddfuse.EN"]), what=rid)
    assert (out / "t.csv").read_text().splitlines()[0] == "method,name,EN,MI,Qabf,MSE"
    assert "**" in (out / "t.md").read_text()
    assert main(argv) == 2  # outputs exist: refused without --overwrite
    assert "already exists" in capsys.readouterr().err


def test_eval_cli_paper_preset_on_authors_outputs(shared, capsys) -> None:
    """The issue's check: the authors' TNO outputs against the TNO sources, paper preset."""
    argv = ["eval", "--fused", f"MLFuse={shared / 'reference/mlfuse/TNO'}", "--root", str(shared / "data/tno/test"),
            "--profile", "paper", "-q"]
    assert main(argv) == 1  # 37 of the 42 TNO pairs have no MLFuse reference output: listed
    cap = capsys.readouterr()
    assert "MLFuse: 37 pair(s) have no fused result" in cap.err
    header, row = cap.out.splitlines()[1:3]
    assert header.split()[:3] == ["method", "n", "VIF"] and "FMI_pixel" in header
    assert row.split()[:2] == ["MLFuse", "5"]


def test_reference_dir_is_where_tests_expect() -> None:
    assert REF.name == "metrics" and reference_cases("tang.EN")


def test_vifb_scores_colour_per_channel() -> None:
    rng = np.random.default_rng(5)
    f, b = (rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(2))
    a = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    got = evaluate(f, a, b, "vifb", metrics=["Entropy", "Spatial_frequency"])
    per = [evaluate(f[..., c], a, b[..., c], "vifb", metrics=["Entropy"])["Entropy"] for c in range(3)]
    assert got["Entropy"] == pytest.approx(np.mean(per), rel=1e-12)
    side = np.hstack([f[..., c] for c in range(3)])
    assert got["Spatial_frequency"] == pytest.approx(
        evaluate(side, np.hstack([a] * 3), np.hstack([b[..., c] for c in range(3)]), "vifb",
                 metrics=["Spatial_frequency"])["Spatial_frequency"], rel=1e-12)
    gray = evaluate(f, a, b, "tang", metrics=["EN"])["EN"]  # tang converts with rgb2gray instead
    assert gray == pytest.approx(evaluate(to_gray(f), a, to_gray(b), "tang", metrics=["EN"])["EN"])


def test_package_exports_evaluate_and_every_metric_function():
    """README: ``mlfuse.metrics.evaluate(fused, a, b, profile=...)``; no submodule shadows a function."""
    import importlib
    import pkgutil

    import mlfuse.metrics as M

    for info in pkgutil.iter_modules(M.__path__):  # every submodule imported: still the functions
        importlib.import_module(f"mlfuse.metrics.{info.name}")
        assert info.name not in M.__all__, f"submodule {info.name} has the name of an exported function"
    rng = np.random.default_rng(0)
    f, a, b = (rng.integers(0, 256, (40, 48)).astype(np.uint8) for _ in range(3))
    values = M.evaluate(f, a, b, profile="tang", slow=False)
    assert values == evaluate(f, a, b, "tang", slow=False) and "Qabf" in values
    assert M.qabf(f, a, b) == values["Qabf"]
    for name in M.__all__:
        assert getattr(M, name) is not None
    for prof in PROFILES.values():  # each profile column's function is exported under its own name
        for m in prof.metrics:
            fn = m.target.rsplit(".", 1)[1]
            assert callable(getattr(M, fn)) and getattr(M, fn).__name__ == fn


def _odd_triples(tmp_path):
    """Sources vi/ir and fused results whose metrics are ±inf or NaN: a result equal to both (equal) sources
    (PSNR +inf), an all-black result (PSNR -inf), constant images (Liu's Qmi/Qte 0/0 = NaN)."""
    rng = np.random.default_rng(1)
    root, fused = tmp_path / "src", tmp_path / "res"
    for d in (root / "vi", root / "ir", fused):
        d.mkdir(parents=True)
    same = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    flat = np.full((24, 32), 90, np.uint8)
    for name, (vi, ir, f) in {"a_same": (same, same, same), "b_flat": (flat, flat, flat),
                              "c_ok": (same, np.roll(same, 3, 0), np.roll(same, 1, 1)),
                              "d_black": (same, np.roll(same, 3, 0), np.zeros_like(same))}.items():
        Image.fromarray(vi).save(root / "vi" / f"{name}.png")
        Image.fromarray(ir).save(root / "ir" / f"{name}.png")
        Image.fromarray(f).save(fused / f"{name}.png")
    return root, fused


def test_eval_keeps_nan_and_inf_per_image_and_says_what_each_mean_excludes(tmp_path, capsys) -> None:
    root, fused = _odd_triples(tmp_path)
    out = tmp_path / "out"
    for profile, metrics in (("cddfuse", "PSNR,EN"), ("liu", "Qmi,Qte")):
        argv = ["eval", "--root", str(root), "--fused", f"X={fused}", "--profile", profile, "--metrics", metrics,
                "--csv", str(out / f"{profile}.csv"), "--json", str(out / f"{profile}.json"),
                "--md", str(out / f"{profile}.md"), "-q"]
        assert main(argv) == 0, capsys.readouterr().err
        text = capsys.readouterr().out
        assert "excl.)" in text and "left out of that mean" in text
        doc = json.loads((out / f"{profile}.json").read_text())
        assert len(doc["per_image"]) == 4  # every image keeps its row, odd values included
        assert "excl.)" in (out / f"{profile}.md").read_text()
    doc = json.loads((out / "cddfuse.json").read_text())
    psnr = {r["name"]: r["PSNR"] for r in doc["per_image"]}
    assert psnr["a_same"] == math.inf and psnr["d_black"] == -math.inf and math.isfinite(psnr["c_ok"])
    s = doc["summary"]["X"]["PSNR"]
    assert psnr["b_flat"] == math.inf
    assert (s["n"], s["excluded"]) == (1, 3) and s["mean"] == pytest.approx(psnr["c_ok"])
    liu = json.loads((out / "liu.json").read_text())
    assert math.isnan({r["name"]: r["Qmi"] for r in liu["per_image"]}["b_flat"])  # the reference's 0/0
    assert liu["summary"]["X"]["Qmi"]["excluded"] == 1
    assert "nan" in (out / "liu.csv").read_text() and "inf" in (out / "cddfuse.csv").read_text()


def test_eval_writes_what_it_computed_when_interrupted(tmp_path, capsys, monkeypatch) -> None:
    import mlfuse.metrics.evaluation as E

    root, fused = _odd_triples(tmp_path)
    real, calls = E.evaluate, []

    def stop_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(E, "evaluate", stop_at_third)
    out = tmp_path / "t.csv"
    argv = ["eval", "--root", str(root), "--fused", str(fused), "--metrics", "EN", "--csv", str(out), "-q"]
    assert main(argv) == 130
    assert len(out.read_text().splitlines()) == 1 + 2 and "interrupted after 2 of 4" in capsys.readouterr().err
