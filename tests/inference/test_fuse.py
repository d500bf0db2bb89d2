"""The fusion pipeline: sizes, padding, output rules, precision, colour routing, folder runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from mlfuse.errors import InputError, MLFuseError, OutputExistsError
from mlfuse.inference.fuse import fuse_folder, fuse_pair, run_network, to_uint8
from mlfuse.runtime import resolve_device


def test_minmax_rule_truncates_like_the_authors() -> None:
    raw = np.array([[-0.2, 0.0, 0.5, 0.99]], np.float32)
    norm = (raw - raw.min()) / (raw.max() - raw.min())
    expected = (norm * np.float32(255)).astype(np.uint8)  # truncation, not rounding
    out = to_uint8(raw, "minmax")
    assert np.array_equal(out, expected)
    assert out[0, 0] == 0 and out[0, -1] == 255
    assert out[0, 2] == int(np.float32(0.7) / np.float32(1.19) * 255)  # truncated value


def test_clamp_rule_and_constant_fallback() -> None:
    raw = np.array([[-0.3, 0.2, 0.5, 1.4]], np.float32)
    assert to_uint8(raw, "clamp").tolist() == [[0, 51, 128, 255]]
    assert to_uint8(np.full((1, 1), 0.4, np.float32), "minmax").tolist() == [[102]]
    with pytest.raises(MLFuseError, match="unknown output rule"):
        to_uint8(raw, "gamma")


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (14, 20), (15, 15), (33, 17)])
def test_any_size_works(random_model, shape) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(shape, np.float32), rng.random(shape, np.float32)
    out = run_network(random_model, a, b)
    assert out.shape == shape and out.dtype == np.float32
    fused = fuse_pair(random_model, (a * 255).astype(np.uint8), (b * 255).astype(np.uint8))
    assert fused.shape == shape and fused.dtype == np.uint8


def test_no_padding_at_or_above_minimum(random_model) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((15, 40), np.float32), rng.random((15, 40), np.float32)
    with torch.no_grad():
        direct = random_model(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0][0, 0].numpy()
    assert np.array_equal(run_network(random_model, a, b), direct)


def test_small_inputs_are_reflect_padded_then_cropped(random_model) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random((5, 9), np.float32), rng.random((5, 9), np.float32)
    pads = ((5, 5), (3, 3))  # 5x9 -> 15x15, split evenly
    with torch.no_grad():
        full = random_model(torch.from_numpy(np.pad(a, pads, mode="reflect"))[None, None],
                            torch.from_numpy(np.pad(b, pads, mode="reflect"))[None, None])[0][0, 0].numpy()
    assert np.array_equal(run_network(random_model, a, b), full[5:10, 3:12])


def test_roles_are_not_interchangeable(random_model, sample_pair) -> None:
    vis, ir = sample_pair
    gray_vis = np.asarray(PILImage.fromarray(vis).convert("L"))
    a = fuse_pair(random_model, gray_vis, ir)
    b = fuse_pair(random_model, ir, gray_vis)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_colour_routing(random_model, sample_pair) -> None:
    vis, ir = sample_pair
    assert fuse_pair(random_model, vis, ir).shape == (*ir.shape, 3)  # colour visible
    assert fuse_pair(random_model, vis, ir, color="gray").shape == ir.shape
    assert fuse_pair(random_model, vis, ir, color="paper").shape == (*ir.shape, 3)
    mri = ir
    pet = vis  # a colour functional image (PET/SPECT) keeps its colour too
    out = fuse_pair(random_model, mri, pet)
    assert out.shape == (*ir.shape, 3)
    gray = fuse_pair(random_model, mri, pet, color="gray")
    luma = np.asarray(PILImage.fromarray(out).convert("L")).astype(int)
    unclipped = ((out > 0) & (out < 255)).all(axis=2)
    assert unclipped.mean() > 0.5
    assert np.abs(luma - gray.astype(int))[unclipped].max() <= 2  # colour output carries the fused luma


def test_size_mismatch_names_both_sizes(random_model, tmp_path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    PILImage.fromarray(np.zeros((20, 30), np.uint8)).save(a)
    PILImage.fromarray(np.zeros((21, 30), np.uint8)).save(b)
    with pytest.raises(InputError) as err:
        fuse_pair(random_model, a, b)
    msg = str(err.value)
    assert "size mismatch" in msg and "30x20" in msg and "30x21" in msg and str(a) in msg and str(b) in msg


def test_reduced_precision_is_close(random_model, sample_pair) -> None:
    vis, ir = sample_pair
    g = np.asarray(PILImage.fromarray(vis).convert("L"), np.float32)[:64, :64] / 255
    i = ir[:64, :64].astype(np.float32) / 255
    ref = run_network(random_model, g, i)
    for precision in ("bf16", "fp16"):
        out = run_network(random_model, g, i, precision=precision)
        assert out.dtype == np.float32
        assert np.abs(out - ref).mean() < 0.02, precision
    with pytest.raises(MLFuseError, match="unknown precision"):
        run_network(random_model, g, i, precision="int8")


def test_devices() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(MLFuseError, match="CUDA is not available"):
            resolve_device("cuda")


def test_folder_run_reports_bad_pair_and_goes_on(random_model, tmp_path, sample_pair) -> None:
    vis, ir = sample_pair
    s, f, out = tmp_path / "vi", tmp_path / "ir", tmp_path / "out"
    s.mkdir(), f.mkdir()
    for name in ("1", "2", "10"):
        PILImage.fromarray(vis[:40, :48]).save(s / f"{name}.png")
        PILImage.fromarray(ir[:40, :48]).save(f / f"{name}.png")
    (f / "2.png").write_text("not an image")
    PILImage.fromarray(ir[:40, :48]).save(f / "extra.png")
    lines: list[str] = []
    report = fuse_folder(random_model, s, f, out, quiet=True, report=lines.append)
    assert sorted(p.name for p in report.written) == ["1.png", "10.png"]
    assert [name for name, _ in report.failed] == ["2"] and not report.ok
    assert any("FAILED 2:" in line and "not an image file" in line for line in lines)
    assert any("unpaired:" in line and "extra.png" in line for line in lines)
    assert sorted(p.name for p in out.iterdir()) == ["1.png", "10.png"]
    again = fuse_folder(random_model, s, f, out, quiet=True, skip_existing=True)
    assert len(again.skipped) == 2 and not again.written
    # existing outputs without --overwrite / --skip-existing: one line up front, no pair computed
    with pytest.raises(OutputExistsError, match=r"2 of 3 outputs already exist .*--overwrite.*--skip-existing"):
        fuse_folder(random_model, s, f, out, quiet=True)


def _to_uint8_whole_image(raw: np.ndarray, rule: str) -> np.ndarray:
    """The output rules written over the whole image at once (the authors' form), to check the
    strip-wise implementation against."""
    lo, hi = raw.min(), raw.max()
    if rule == "minmax":
        return ((raw - lo) / (hi - lo) * np.float32(255)).astype(np.uint8)
    if rule == "minmax-round":
        v = ((raw - lo) / (hi - lo) * np.float32(255)).astype(np.float64)
        return np.floor((v - v.min()) / (v.max() - v.min()) * 255 + 0.499999999).astype(np.uint8)
    return np.rint(np.clip(raw, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("rule", ["minmax", "minmax-round", "clamp"])
def test_output_rules_in_strips_equal_the_whole_image_formula(rule) -> None:
    from mlfuse.inference import fuse as fuse_module

    rng = np.random.default_rng(3)
    raw = (rng.standard_normal((3 * fuse_module.STRIP_ROWS + 7, 33)) * 0.7).astype(np.float32)
    raw[-1, -1] = 3.0  # the extremes lie in different strips
    raw[0, 0] = -2.5
    assert np.array_equal(to_uint8(raw, rule), _to_uint8_whole_image(raw, rule))


def test_integer_inputs_give_the_float_inputs_output_tiled_and_untiled(random_model) -> None:
    """Integer luma converted per tile (1 byte a pixel held, not 4) is the same float32 input."""
    rng = np.random.default_rng(4)
    a8, b8 = (rng.integers(0, 256, (40, 52), dtype=np.uint8) for _ in range(2))
    a, b = (x.astype(np.float32) / np.float32(255) for x in (a8, b8))
    for tile in ("off", 24):
        assert np.array_equal(run_network(random_model, a8, b8, tile=tile), run_network(random_model, a, b, tile=tile))
    a16 = (a8.astype(np.uint16) * 257)
    assert np.array_equal(run_network(random_model, a16, b8.astype(np.uint16) * 257, tile=24, scale=65535.0),
                          run_network(random_model, a16.astype(np.float32) / np.float32(65535),
                                      (b8.astype(np.uint16) * 257).astype(np.float32) / np.float32(65535), tile=24))


def test_images_of_other_scales_and_types_fuse_as_their_float_values(random_model) -> None:
    """Integer luma goes per tile only for integer pixels on one scale; anything else (float pixels, or
    8- and 16-bit together) goes as float32 [0, 1], as before."""
    from mlfuse.data.io import Image

    rng = np.random.default_rng(6)
    a8, b8 = (rng.integers(0, 256, (20, 30), dtype=np.uint8) for _ in range(2))
    want = fuse_pair(random_model, a8, b8, color="gray")
    as_float = fuse_pair(random_model, Image(a8.astype(np.float32), 255), Image(b8.astype(np.float32), 255),
                         color="gray")
    assert np.array_equal(as_float, want)
    mixed = fuse_pair(random_model, a8, b8.astype(np.uint16) * 257, color="gray")  # 8-bit + 16-bit
    assert np.array_equal(mixed, want)  # b8 * 257 / 65535 == b8 / 255 in float32


def test_integer_pixels_become_the_exact_float32_quotient() -> None:
    """Every 8- and 16-bit value divided on the CPU as numpy does, before any move to a device (CUDA
    would divide by a host scalar as a multiplication by its reciprocal: not the same float32)."""
    from mlfuse.inference.tiling import to_unit_float

    for dtype, scale in ((np.uint8, 255), (np.uint16, 65535), (np.uint16, 4095)):
        values = np.arange(np.iinfo(dtype).max + 1 if scale != 4095 else 4096, dtype=dtype)
        want = values.astype(np.float32) / np.float32(scale)
        got = to_unit_float(torch.from_numpy(values), scale).numpy()
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_fuse_options_refuse_bad_values_in_one_line(random_model) -> None:
    from mlfuse.inference.fuse import FuseOptions

    a = np.zeros((8, 8), np.uint8)
    for bad, match in ((dict(tile=float("inf")), "--tile 'inf'"), (dict(tile_budget_mb=float("inf")), "tile budget"),
                       (dict(tile_budget_mb=True), "tile budget"), (dict(workers=True), "workers"),
                       (dict(workers=0), "workers"), (dict(precision="fp8"), "unknown precision"),
                       (dict(color="sepia"), "unknown colour mode"), (dict(output_rule="gamma"), "unknown output rule"),
                       (dict(output="clamp"), "output is now output_rule")):
        with pytest.raises(MLFuseError, match=match):
            FuseOptions.of(None, **bad)
    with pytest.raises(MLFuseError, match=r"must be a FuseOptions .* got str 'bf16'"):
        run_network(random_model, a.astype(np.float32), a.astype(np.float32), "bf16")
    with pytest.raises(MLFuseError, match="got dict"):
        fuse_pair(random_model, a, a + 1, {"color": "gray"})
    ok = FuseOptions(tile=0.0, tile_budget_mb=np.float32(64), workers=np.int64(2))
    assert ok.tile == 0.0 and fuse_pair(random_model, a, a + 1, ok).shape == (8, 8)
