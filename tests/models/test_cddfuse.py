"""CDDFuse: exactness against the authors' code on seeded random weights (../shared/reference/cddfuse),
checkpoint layout, the MIF variants, the CLI, the shared patch data and the two-phase recipe."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import mlfuse
from mlfuse.cli.main import main
from mlfuse.data.pairs import pair_folders
from mlfuse.inference.fuse import run_network, to_uint8
from mlfuse.models.blocks import losses as L
from mlfuse.models.cddfuse import losses as cdd_losses
from mlfuse.models.cddfuse.network import CDDFuse
from mlfuse.models.cddfuse.recipe import CDDFuseRecipe
from mlfuse.train import build_config, get_recipe, train
from mlfuse.train.patches import PatchDataset, authors_gray, grid, is_low_contrast
from mlfuse.weights.checkpoint import read_checkpoint
from tests._common import one_thread_fixture
from tests.models.family import (
    PAIRS,
    assert_grad_norms,
    assert_intermediates,
    assert_loss_terms,
    assert_png_close,
    loss_batch,
    losses_reference,
    pair_inputs,
    random_weights_fixture,
    record_children,
    reference_fixture,
    reference_model_fixture,
    simulate_schedule,
    write_tiny_pairs,
)

VARIANTS = {"ivf": "vis", "mif_ivfckpt": "ir+vis", "mif_mifckpt": "none"}
TASK_OF_VARIANT = {"ivf": "ivf", "mif_ivfckpt": "mif-ivfckpt", "mif_mifckpt": "mif"}

_one_thread = one_thread_fixture()
ref = reference_fixture("cddfuse")
model = reference_model_fixture("cddfuse")
random_authors_file = random_weights_fixture(lambda: CDDFuse().authors_checkpoint(), "random_cddfuse.pth")


# ---------------------------------------------------------------------------------------- checkpoints
def test_authors_checkpoint_loads_strictly_and_round_trips(ref: Path, model: CDDFuse) -> None:
    original = torch.load(ref / "random_init.pth", map_location="cpu", weights_only=True)
    assert list(original) == list(CDDFuse.TOP_LEVEL)
    saved = model.authors_checkpoint()
    assert list(saved) == list(original)
    for top in original:
        assert list(saved[top]) == list(original[top]), top  # same keys, same order, all 'module.'-prefixed
        for k, v in original[top].items():
            assert torch.equal(saved[top][k], v), k
    counts = {top: sum(v.numel() for v in sd.values()) for top, sd in saved.items()}
    assert counts == {"DIDF_Encoder": 599_144, "DIDF_Decoder": 207_936, "BaseFuseLayer": 363_016,
                      "DetailFuseLayer": 18_176}
    assert sum(p.numel() for p in model.parameters()) == 1_188_272


def test_checkpoint_formats_and_errors(random_authors_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = read_checkpoint(random_authors_file, convert=CDDFuse.convert_checkpoint)
    flat = tmp_path / "flat.safetensors"
    save_file(sd, str(flat))  # mlfuse's own format: a flat state_dict
    a = mlfuse.create_model("cddfuse", weights=random_authors_file)
    b = mlfuse.create_model("cddfuse", weights=flat)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    # another method's file: one-line error naming the foreign sub-network
    broken = dict(torch.load(random_authors_file, weights_only=True))
    broken["DIDF_Decoder_Phase"] = broken.pop("DIDF_Decoder")
    torch.save(broken, tmp_path / "foreign.pth")
    with pytest.raises(mlfuse.MLFuseError, match="DIDF_Decoder_Phase"):
        mlfuse.create_model("cddfuse", weights=tmp_path / "foreign.pth")
    # a missing tensor: strict loading fails on one line
    del broken["DIDF_Decoder_Phase"]
    broken["DIDF_Decoder"] = dict(torch.load(random_authors_file, weights_only=True)["DIDF_Decoder"])
    broken["DIDF_Decoder"].pop("module.output.2.weight")
    torch.save(broken, tmp_path / "short.pth")
    with pytest.raises(mlfuse.MLFuseError, match="1 missing key"):
        mlfuse.create_model("cddfuse", weights=tmp_path / "short.pth")


# ---------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("pair", PAIRS)
def test_raw_outputs_and_pngs_all_three_decoder_variants(ref: Path, model: CDDFuse, pair: str) -> None:
    vi, ir = pair_inputs(ref, pair)
    with torch.no_grad():
        feats = model.fuse_features(vi, ir)  # the encoder and fusion layers run once for the three decoders
        for variant, residual in VARIANTS.items():
            img = model.residual_image(vi, ir, residual)
            raw = model.DIDF_Decoder(img, feats["F_B"], feats["F_D"])[0][0, 0].numpy()
            expected = np.load(ref / "outputs" / f"{pair}__{variant}_raw.npy")
            np.testing.assert_allclose(raw, expected, rtol=0, atol=1e-5, err_msg=f"{pair} {variant}")
            assert_png_close(to_uint8(raw, "minmax-round"), ref / "outputs" / f"{pair}__{variant}.png")


def test_pipeline_forward_is_the_ivf_output(ref: Path, model: CDDFuse) -> None:
    """``run_network`` (what ``mlfuse fuse`` calls) gives the test_IVF.py output (96x128: no padding)."""
    vi, ir = pair_inputs(ref, "roadscene_FLIR_04424")
    raw = run_network(model, vi[0, 0].numpy(), ir[0, 0].numpy())
    np.testing.assert_allclose(raw, np.load(ref / "outputs" / "roadscene_FLIR_04424__ivf_raw.npy"), atol=1e-5)


def test_debug_intermediates_and_task_variants(ref: Path) -> None:
    """Every module/child output on the 32x32 window, and each task's full forward against its
    reference decoder variant (task wiring: ivf, mif, mif-ivfckpt)."""
    dbg = np.load(ref / "debug_intermediates_32x32.npz")
    vi, ir = torch.from_numpy(dbg["INPUT/data_VIS"]), torch.from_numpy(dbg["INPUT/data_IR"])
    net = mlfuse.create_model("cddfuse", weights=ref / "random_init.pth")
    with record_children(net, CDDFuse.TOP_LEVEL) as rec, torch.no_grad():
        feats = net.fuse_features(vi, ir)
        for residual in VARIANTS.values():  # decoder calls 0, 1, 2 as in the reference
            net.DIDF_Decoder(net.residual_image(vi, ir, residual), feats["F_B"], feats["F_D"])
    keys = [k for k in dbg.files if not k.startswith(("INPUT/", "FINAL_"))]
    assert_intermediates(rec, dbg, keys)
    for variant, task in TASK_OF_VARIANT.items():
        net_t = mlfuse.create_model("cddfuse", weights=ref / "random_init.pth", task=task)
        with torch.no_grad():
            out = net_t(vi, ir).numpy()
        np.testing.assert_allclose(out, dbg[f"FINAL_{variant}/data_Fuse"], atol=1e-5, err_msg=task)


@pytest.mark.parametrize("phase", [1, 2])
def test_training_loss_terms_and_gradient_norms(ref: Path, phase: int) -> None:
    net = mlfuse.create_model("cddfuse", weights=ref / "random_init.pth").train()
    vi, ir = loss_batch(ref)
    expected = losses_reference(ref)["train_mode"]["values"][f"phase{phase}"]
    torch.manual_seed(1234)
    out = net(vi, ir, phase=phase)
    terms = (cdd_losses.phase1_losses(out, vi, ir) if phase == 1
             else cdd_losses.phase2_losses(out, vi, ir, include_unused=True))
    terms["loss_total"].backward()
    assert_loss_terms(terms, expected)
    assert_grad_norms(net, expected)


# ---------------------------------------------------------------------------------------- shared losses
def test_ssim_variants_and_gradient_operators() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 1, 24, 20, generator=g), torch.rand(2, 1, 24, 20, generator=g)
    assert L.ssim_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert L.ssim_loss(a, b, "kornia0.2").item() == pytest.approx(L.ssim_loss(b, a, "kornia0.2").item(), rel=1e-6)
    # 0.2.0 caps the per-pixel loss at 0.5, >= 0.6 at 1: anti-correlated images tell them apart
    assert L.ssim_loss(a, 1 - a, "kornia0.2").item() <= 0.5 < L.ssim_loss(a, 1 - a, "kornia0.6").item()
    with pytest.raises(ValueError, match="SSIM variant"):
        L.ssim_loss(a, b, "kornia9")
    ramp = torch.arange(20.0).repeat(24, 1)[None, None]  # d/dx = 1 inside, replicate border halves it
    sg = L.spatial_gradient(ramp)
    assert sg.shape == (1, 1, 2, 24, 20)
    assert torch.allclose(sg[0, 0, 0, :, 1:-1], torch.ones(24, 18)) and torch.allclose(sg[0, 0, 1], torch.zeros(24, 20))
    assert L.cc(a, a).item() == pytest.approx(1.0, abs=1e-6) and L.cc(a, -a).item() == pytest.approx(-1.0, abs=1e-6)
    assert L.sobel_magnitude(torch.ones(1, 1, 5, 5))[0, 0, 2, 2].item() == 0.0  # flat interior, zero padding
    assert L.sobel_magnitude(torch.ones(1, 1, 5, 5))[0, 0, 0, 0].item() == 6.0


def test_decomposition_loss_is_global_batch_under_ddp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two simulated DDP ranks (all_reduce adds the other rank's sums): each computes the single-process
    loss value, and its feature gradients are world_size x the single-process ones, so DDP's gradient
    averaging yields exactly the single-process step (the loss is not a mean over samples)."""
    import mlfuse.models.blocks.losses as family_losses

    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(4, 3, 5, 5, generator=g) for _ in range(4)]  # base_V, base_I, detail_V, detail_I
    whole = [f.clone().requires_grad_() for f in feats]
    loss, cc_b, cc_d = L.decomposition_loss(*whole, sync=True)  # not distributed: plain
    loss.backward()
    monkeypatch.setattr(family_losses, "_world_size", lambda: 2)
    for rank, part in ((0, slice(0, 2)), (1, slice(2, 4))):
        other = [f[slice(2, 4) if rank == 0 else slice(0, 2)] for f in feats]
        pending = [L.cc_map(other[0], other[1]), L.cc_map(other[2], other[3])]  # cc_B first, then cc_D

        def fake_all_reduce(t: torch.Tensor, *args, pending=pending, **kwargs) -> None:
            v = pending.pop(0)
            t += torch.stack([v.sum(), torch.tensor(float(v.numel()))])

        monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
        local = [f[part].clone().requires_grad_() for f in feats]
        loss_r, cc_b_r, cc_d_r = L.decomposition_loss(*local, sync=True)
        assert not pending
        assert loss_r.item() == pytest.approx(loss.item(), rel=1e-6)
        assert (cc_b_r.item(), cc_d_r.item()) == pytest.approx((cc_b.item(), cc_d.item()), rel=1e-6)
        loss_r.backward()
        for w, loc in zip(whole, local, strict=True):
            torch.testing.assert_close(loc.grad / 2, w.grad[part], rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_fuses_odd_colour_pair(random_authors_file: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    h, w = 37, 43  # odd both ways
    yy, xx = np.mgrid[0:h, 0:w]
    vis = np.stack([(xx * 5) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], 2).astype(np.uint8)
    Image.fromarray(vis).save(tmp_path / "vis.png")
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(tmp_path / "ir.png")
    common = ["fuse", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"), "--model", "cddfuse",
              "--weights", str(random_authors_file), "-q"]
    assert main([*common, "-o", str(tmp_path / "ivf.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "ivf.png"))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.max() > out.min()
    assert main([*common, "--task", "mif", "--color", "gray", "-o", str(tmp_path / "mif.png")]) == 0
    mif = np.asarray(Image.open(tmp_path / "mif.png"))
    assert mif.shape == (h, w) and mif.max() == 255 and mif.min() == 0  # min-max stretched
    # the MIF checkpoint's decoder has no residual: a different image from the IVF forward
    gray_ivf = tmp_path / "ivf_gray.png"
    assert main([*common, "--color", "gray", "-o", str(gray_ivf)]) == 0
    assert not np.array_equal(np.asarray(Image.open(gray_ivf)), mif)


def test_cli_one_line_errors(random_authors_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "b.png")  # one file for both roles is refused
    base = ["fuse", "--vis", str(tmp_path / "a.png"), "--ir", str(tmp_path / "b.png"), "-o", str(tmp_path / "o.png")]
    assert main([*base, "--model", "cddfuse"]) == 2  # no default weights
    assert main([*base, "--model", "cddfuse", "--weights", str(random_authors_file), "--task", "pet"]) == 2
    assert main([*base, "--model", "sfdfuse", "--weights", str(random_authors_file)]) == 2  # CDDFuse file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mlfuse: error: ") for line in err)
    assert "pass --weights" in err[0] and "mif" in err[1] and "DIDF_Decoder" in err[2]


# ---------------------------------------------------------------------------------------- data + recipe
def test_patch_grid_filter_and_luma(tmp_path: Path) -> None:
    assert grid(480, 128, 200) == [0, 200] and grid(640, 128, 200) == [0, 200, 400] and grid(100, 128, 200) == []
    flat = np.full((128, 128), 0.5, np.float32)
    assert is_low_contrast(flat)
    assert not is_low_contrast(np.zeros((128, 128), np.float32))  # 0/0 = NaN: the authors keep it
    assert is_low_contrast(np.zeros((128, 128), np.float32), reject_blank=True)
    ramp = np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128)
    assert not is_low_contrast(ramp)
    # a 480x640 pair: 6 candidate windows; make the window at (200, 400) flat in the IR image only
    rng = np.random.default_rng(0)
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir").mkdir()
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    ir[200:328, 400:528] = 90
    Image.fromarray(rgb).save(tmp_path / "vi" / "a.png")
    Image.fromarray(ir).save(tmp_path / "ir" / "a.png")
    pairs = pair_folders(tmp_path / "vi", tmp_path / "ir").pairs
    ds = PatchDataset(pairs, 128, 200, cache=False)
    assert ds.candidates == 6 and [(r.top, r.left) for r in ds.refs] == [(0, 0), (0, 200), (0, 400), (200, 0),
                                                                         (200, 200)]
    item = ds[4]
    f = rgb.astype(np.float32) / np.float32(255)
    y = f[..., 0] * np.float32(0.299) + f[..., 1] * np.float32(0.587) + f[..., 2] * np.float32(0.114)
    assert np.array_equal(authors_gray(tmp_path / "vi" / "a.png"), y)
    assert item["structural"].shape == (1, 128, 128) and item["structural"].dtype == torch.float32
    assert np.array_equal(item["structural"][0].numpy(), y[200:328, 200:328])
    assert np.array_equal(item["functional"][0].numpy(), ir[200:328, 200:328].astype(np.float32) / np.float32(255))
    cached = PatchDataset(pairs, 128, 200)
    assert all(torch.equal(cached[i]["structural"], ds[i]["structural"]) for i in range(len(ds)))


def test_cddfuse_recipe_is_the_authors() -> None:
    recipe = get_recipe("cddfuse")
    assert isinstance(recipe, CDDFuseRecipe)
    cfg = build_config(recipe.defaults)
    assert (cfg.epochs, cfg.phase1_epochs, cfg.batch_size, cfg.lr, cfg.clip_norm) == (120, 40, 8, 1e-4, 0.01)
    assert (cfg.patch_size, cfg.patch_stride, cfg.contrast_threshold) == (128, 200, 0.1)
    table = simulate_schedule(recipe, cfg)
    enc = {0: 1e-4, 20: 5e-5, 40: 2.5e-5, 60: 1.25e-5, 80: 6.25e-6, 100: 3.125e-6}
    fus = {0: 1e-4, 40: 1e-4, 60: 5e-5, 80: 2.5e-5, 100: 1.25e-5}
    for start, lr in enc.items():
        assert table[start][0] == pytest.approx(lr) and table[start + 19][1] == pytest.approx(lr)
    for start, lr in fus.items():
        assert table[start][2] == pytest.approx(lr) and table[min(start + 19, 119)][3] == pytest.approx(lr)


def test_two_step_training_run_both_phases(tmp_path: Path) -> None:
    """Epoch 0 = Phase I, epoch 1 = Phase II, one 32x32 patch per step, through the one trainer."""
    data = write_tiny_pairs(tmp_path / "set", n=1)
    out = tmp_path / "run"
    res = train("cddfuse", quiet=True, sets=["patch_size=32", "patch_stride=32", "phase1_epochs=1", "threads=1"],
                data=[{"root": str(data), "dirs": ["vi", "ir"]}], out_dir=str(out), epochs=2, batch_size=1)
    assert res.steps == 2 and res.epochs_done == 2
    rows = (out / "steps.csv").read_text().splitlines()
    header = rows[0].split(",")
    phases = [float(r.split(",")[header.index("phase")]) for r in rows[1:]]
    assert phases == [1.0, 2.0]
    p1, p2 = (dict(zip(header, r.split(","), strict=True)) for r in rows[1:])
    assert math.isnan(float(p1["fusionloss"])) and not math.isnan(float(p1["Gradient_loss"]))
    assert math.isnan(float(p2["Gradient_loss"])) and not math.isnan(float(p2["fusionloss"]))
    weights = load_file(str(out / "model.safetensors"))
    net = mlfuse.create_model("cddfuse", weights=out / "model.safetensors")  # loads strictly
    torch.manual_seed(0)  # the trainer builds the model right after seeding with cfg.seed (0)
    init = CDDFuse().state_dict()
    moved = {top: any(not torch.equal(weights[k], init[k]) for k in init if k.startswith(top + "."))
             for top in CDDFuse.TOP_LEVEL}
    assert all(moved.values()), moved  # the encoder/decoder moved in Phase I, the fusion layers in Phase II
    assert net.weights_source.endswith("model.safetensors")


def test_phase_one_leaves_fusion_layers_untouched(tmp_path: Path) -> None:
    data = write_tiny_pairs(tmp_path / "set", n=1, size=(16, 16))
    out = tmp_path / "run"
    train("cddfuse", quiet=True, sets=["patch_size=16", "patch_stride=16", "threads=1"],
          data=[{"root": str(data), "dirs": ["vi", "ir"]}], out_dir=str(out), epochs=1, batch_size=1)
    weights = load_file(str(out / "model.safetensors"))
    torch.manual_seed(0)
    init = CDDFuse().state_dict()
    for k, v in init.items():
        same = torch.equal(weights[k], v)
        assert same == k.startswith(("BaseFuseLayer.", "DetailFuseLayer.")), k
