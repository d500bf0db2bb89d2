"""SMFNet: exactness against the authors' code on seeded random weights (../shared/reference/smfnet) — raw outputs,
the float YCrCb colour output and PNGs, every module's intermediates, every loss term in train and eval mode with
gradient norms — plus checkpoint layout, the graph/loss quirk switches, ``mlfuse fuse`` (``--color paper``) and the
two-phase recipe on the shared trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import mlfuse
from mlfuse.cli.main import main
from mlfuse.data.io import from_array, read_image
from mlfuse.inference.fuse import fuse_pair, run_network
from mlfuse.models.smfnet import color as smf_color
from mlfuse.models.smfnet import losses as smf_losses
from mlfuse.models.smfnet.network import NodeGraph, SMFNet
from mlfuse.models.smfnet.recipe import SMFNetRecipe
from mlfuse.train import build_config, get_recipe, train
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
    write_tiny_pairs,
)

COUNTS = {"DIDF_Encoder": 1_886_768, "DIDF_Decoder": 50_520, "BaseFuseLayer": 35_528, "DetailFuseLayer": 211_008,
          "GraphModel": 966_542}

_one_thread = one_thread_fixture()
ref = reference_fixture("smfnet")
model = reference_model_fixture("smfnet")
random_authors_file = random_weights_fixture(lambda: SMFNet().authors_checkpoint(), "random_smfnet.pth")


# ---------------------------------------------------------------------------------------- checkpoints
def test_authors_checkpoint_loads_strictly_and_round_trips(ref: Path, model: SMFNet) -> None:
    original = torch.load(ref / "random_init.pth", map_location="cpu", weights_only=True)
    saved = model.authors_checkpoint()
    assert set(saved) == set(original) == set(SMFNet.TOP_LEVEL)
    layout = json.loads((ref / "layout.json").read_text())["keys"]
    for top in original:
        assert list(saved[top]) == [k[0] for k in layout[top]], top  # same keys, same (registration) order
        assert set(saved[top]) == set(original[top])
        for k, v in original[top].items():
            assert torch.equal(saved[top][k], v), k
    assert {top: sum(v.numel() for v in sd.values()) for top, sd in saved.items()} == COUNTS
    assert sum(p.numel() for p in model.parameters()) == 3_148_818


def test_unused_tensors_and_any_size() -> None:
    """The 28 tensors (498,720 parameters) the fusion forward never touches exist only for strict loading;
    the forward takes any H, W (here 7 x 9)."""
    torch.manual_seed(0)
    net = SMFNet().eval()
    g = torch.Generator().manual_seed(0)
    vi, ir = torch.rand(1, 1, 7, 9, generator=g), torch.rand(1, 1, 7, 9, generator=g)
    out = net(vi, ir)
    assert out.shape == (1, 1, 7, 9)
    out.sum().backward()
    unused = [(n, p.numel()) for n, p in net.named_parameters() if p.grad is None]
    assert len(unused) == 28 and sum(n for _, n in unused) == 498_720
    assert sum(p.numel() for p in net.parameters() if p.grad is not None) == 2_650_098


def test_checkpoint_layouts_and_errors(random_authors_file: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    ck = dict(torch.load(random_authors_file, weights_only=True))
    a = mlfuse.create_model("smfnet", weights=random_authors_file)
    # the same dict saved without DataParallel (no 'module.' prefix), and mlfuse's flat safetensors
    torch.save({top: {k.removeprefix("module."): v for k, v in sd.items()} for top, sd in ck.items()},
               tmp_path / "plain.pth")
    save_file(a.state_dict(), str(tmp_path / "flat.safetensors"))
    for other in ("plain.pth", "flat.safetensors"):
        b = mlfuse.create_model("smfnet", weights=tmp_path / other)
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items()), other
    short = {**ck, "GraphModel": {k: v for k, v in ck["GraphModel"].items() if "C_cat.5" not in k}}
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(mlfuse.MLFuseError, match="missing key"):
        mlfuse.create_model("smfnet", weights=tmp_path / "short.pth")
    foreign = {k: v for k, v in ck.items() if k != "GraphModel"}
    foreign["DIDF_Decoder_Phase"] = foreign.pop("DIDF_Decoder")
    torch.save(foreign, tmp_path / "foreign.pth")
    with pytest.raises(mlfuse.MLFuseError, match="DIDF_Decoder_Phase"):
        mlfuse.create_model("smfnet", weights=tmp_path / "foreign.pth")
    assert mlfuse.get_card("smfnet").default_weights is None  # weights must be supplied (none shipped)


# ---------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("pair", PAIRS)
def test_raw_outputs_colour_float_and_pngs(ref: Path, model: SMFNet, pair: str) -> None:
    vi, ir = pair_inputs(ref, pair)
    raw = run_network(model, vi[0, 0].numpy(), ir[0, 0].numpy())  # what `mlfuse fuse` runs (96x128: no padding)
    np.testing.assert_allclose(raw, np.load(ref / "outputs" / f"{pair}_raw.npy"), rtol=0, atol=1e-5)
    cr, cb = (np.load(ref / "inputs" / f"{pair}_vi_{c}.npy") for c in ("Cr", "Cb"))
    rgb = smf_color.authors_color_float(raw, cr, cb)
    np.testing.assert_allclose(rgb[..., ::-1], np.load(ref / "outputs" / f"{pair}__bgr_float.npy"), rtol=0, atol=5e-3)
    assert_png_close(smf_color.imwrite_uint8(rgb), ref / "outputs" / f"{pair}.png")  # PIL reads the BGR file as RGB


def test_paper_colour_through_the_pipeline_from_source_files(shared: Path, ref: Path, model: SMFNet) -> None:
    """``fuse_pair(color="paper")`` from the RoadScene colour JPEG crop: the authors' unrounded float Y and
    rounded grey IR as inputs, and their float YCrCb colour output, against the reference PNG."""
    meta = json.loads((ref / "meta.json").read_text())
    info = next(p for p in meta["pairs"] if p["id"] == "roadscene_FLIR_04424")
    (top, left), (h, w) = info["crop_top_left"], info["crop_hw"]
    vis = read_image(shared / "data" / info["vi"]).pixels[top:top + h, left:left + w]
    ir = read_image(shared / "data" / info["ir"]).pixels[top:top + h, left:left + w]
    y, ir_in, cr, _ = smf_color.paper_inputs(from_array(vis), from_array(ir))
    np.testing.assert_allclose(y, np.load(ref / "inputs" / "roadscene_FLIR_04424_vi.npy"), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ir_in, np.load(ref / "inputs" / "roadscene_FLIR_04424_ir.npy"))
    np.testing.assert_allclose(cr, np.load(ref / "inputs" / "roadscene_FLIR_04424_vi_Cr.npy"), rtol=0, atol=1e-6)
    out = fuse_pair(model, vis, ir, color="paper")
    assert out.shape == (h, w, 3)
    assert_png_close(out, ref / "outputs" / "roadscene_FLIR_04424.png")


def test_debug_intermediates(ref: Path, model: SMFNet) -> None:
    dbg = np.load(ref / "debug_intermediates_32x32.npz")
    vi, ir = torch.from_numpy(dbg["INPUT/data_VIS"]), torch.from_numpy(dbg["INPUT/data_IR"])
    with record_children(model, SMFNet.TOP_LEVEL) as rec, torch.no_grad():
        out = model(vi, ir)
    assert_intermediates(rec, dbg, [k for k in dbg.files if not k.startswith(("INPUT/", "FINAL/"))])
    np.testing.assert_allclose(out.numpy(), dbg["FINAL/data_Fuse"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("phase", [1, 2])
def test_train_mode_loss_terms_and_gradient_norms(ref: Path, phase: int) -> None:
    """All modules in train mode (graph BatchNorm on batch statistics), one backward, pre-clip norms.

    Phase I's encoder/decoder norms are matched at rtol 2e-4 (observed 1.3e-4; everything else <= 2e-5): the
    kornia SSIM of the low-variance, residual-free reconstructions computes variances as E[x^2] - mu^2, and its
    float32 rounding moves these norms by ~1e-4. Evaluating only the two SSIM terms in float64 brings ours to
    5e-5 / 4e-5 of the reference; the whole step in float64 lands 8e-5 / 9e-5 on the other side of it.
    """
    net = mlfuse.create_model("smfnet", weights=ref / "random_init.pth").train()
    vi, ir = loss_batch(ref)
    expected = losses_reference(ref)["train_mode"]["values"][f"phase{phase}"]
    torch.manual_seed(1234)
    out = net(vi, ir, phase=phase)
    terms = (smf_losses.phase1_losses if phase == 1 else smf_losses.phase2_losses)(out, vi, ir)
    assert_loss_terms(terms, expected, unused_suffix=False)  # 'cc_loss_G(python float, computed, unused)'
    for name in ("cc_loss_B", "cc_loss_D", "loss_decomp", *(("seg_loss_V",) if phase == 1 else ("cc_loss_G",))):
        assert not terms[name].requires_grad, name  # the authors' decomposition / seg terms carry no gradient
    terms["loss_total"].backward()
    assert_grad_norms(net, expected,
                      rtol=lambda top: 2e-4 if phase == 1 and top in ("DIDF_Encoder", "DIDF_Decoder") else 1e-4)


def test_eval_mode_loss_terms(ref: Path, model: SMFNet) -> None:
    vi, ir = loss_batch(ref)
    expected = losses_reference(ref)["eval_mode"]["values"]
    with torch.no_grad():
        for phase, fn in ((1, smf_losses.phase1_losses), (2, smf_losses.phase2_losses)):
            terms = fn(model(vi, ir, phase=phase), vi, ir)
            assert_loss_terms(terms, expected[f"phase{phase}"], unused_suffix=False)


# ---------------------------------------------------------------------------------------- quirks and switches
def test_seg_closed_form_and_global_cc() -> None:
    v = torch.rand(2, 1, 4, 8) + 0.1
    assert smf_losses.seg_loss(v, v) == 0  # no pixel exactly 0: the authors' integer 0
    v[0, 0, 1, 2] = 0.0
    v[1, 0, 3, 3] = 0.0
    seg = smf_losses.seg_loss(v, v)
    assert torch.is_tensor(seg) and seg.item() == pytest.approx(1 - 2 / 64) and not seg.requires_grad
    a = torch.randn(2, 3, 5, 5)
    b = 2 * a + 1
    assert smf_losses.global_cc(a, b) == pytest.approx(1.0, abs=1e-6)
    x = torch.cat([a[:1], a[1:] + 100])  # a per-sample offset: global correlation sees it, per-channel cc not
    assert smf_losses.global_cc(x, torch.cat([a[:1], a[1:]])) < 0.99
    assert isinstance(smf_losses.global_cc(a, b), float)


def test_fixed_losses_are_differentiable_and_use_cc_g() -> None:
    torch.manual_seed(0)
    net = SMFNet().train()
    g = torch.Generator().manual_seed(1)
    vi, ir = torch.rand(2, 1, 12, 12, generator=g), torch.rand(2, 1, 12, 12, generator=g)
    vi[0, 0, 0, 0] = 0.0  # makes the faithful seg term non-zero
    out = net(vi, ir, phase=2)
    fixed = smf_losses.phase2_losses(out, vi, ir, faithful=False)
    faithful = smf_losses.phase2_losses(out, vi, ir)
    assert fixed["loss_decomp"].requires_grad and fixed["cc_loss_G"].requires_grad
    cc_b, cc_d, cc_g = (fixed[k].item() for k in ("cc_loss_B", "cc_loss_D", "cc_loss_G"))
    assert fixed["loss_decomp"].item() == pytest.approx((cc_d**2 + cc_g**2) / (1.01 + cc_b), rel=1e-5)
    fb, fd = faithful["cc_loss_B"].item(), faithful["cc_loss_D"].item()
    assert faithful["loss_decomp"].item() == pytest.approx(2 * fd**2 / (1.01 + fb), rel=1e-5)  # cc_D twice
    out1 = net(vi, ir, phase=1)
    p1_faithful = smf_losses.phase1_losses(out1, vi, ir)
    p1_fixed = smf_losses.phase1_losses(out1, vi, ir, faithful=False)
    assert p1_faithful["seg_loss_V"].item() == pytest.approx(1 - 1 / 288) and p1_fixed["seg_loss_V"].item() == 0
    assert p1_fixed["loss_decomp"].requires_grad and not p1_faithful["loss_decomp"].requires_grad


def test_graph_gate_interleaving() -> None:
    """The authors expand the two message gates as w0, w1, w0, ... over the 128 channels (quirk 6)."""
    torch.manual_seed(0)
    node = NodeGraph(4)
    h, h1, h2 = (torch.randn(1, 4, 3, 3) for _ in range(3))
    w = torch.sigmoid(node.C_wgt(torch.cat((h, h), 1) - torch.cat((h1, h2), 1)))
    m = node.message(h, h1, h2)
    for c in range(4):
        assert torch.allclose(m[:, c], h1[:, c] * w[:, c % 2] + h2[:, c] * w[:, c % 2])
    node.interleaved_gates = False
    m = node.message(h, h1, h2)
    assert torch.allclose(m, h1 * w[:, :1] + h2 * w[:, 1:])


def test_float_ycrcb_round_trip() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (5, 6, 3)).astype(np.float32)
    y, cr, cb = smf_color.rgb_to_ycrcb_float(rgb)
    # OpenCV's 3-decimal coefficients are not an exact inverse pair: within 0.1 on the 0-255 scale
    np.testing.assert_allclose(smf_color.ycrcb_to_rgb_float(y, cr, cb), rgb, atol=0.1)
    _, cr_grey, cb_grey = smf_color.rgb_to_ycrcb_float(np.full((2, 2, 3), 77.0, np.float32))
    np.testing.assert_allclose(np.stack([cr_grey, cb_grey]), 0.5, atol=1e-4)  # float path: neutral = 0.5, not 128


# ---------------------------------------------------------------------------------------- CLI
def test_cli_fuses_colour_pair_not_multiple_of_8(random_authors_file: Path, tmp_path: Path) -> None:
    h, w = 37, 43
    yy, xx = np.mgrid[0:h, 0:w]
    vis = np.stack([(xx * 5) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], 2).astype(np.uint8)
    Image.fromarray(vis).save(tmp_path / "vis.png")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (h, w), dtype=np.uint8)).save(tmp_path / "ir.png")
    common = ["fuse", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"), "--model", "smfnet",
              "--weights", str(random_authors_file), "-q"]
    outs = {}
    for mode in ("ycbcr", "paper", "gray"):
        assert main([*common, "--color", mode, "-o", str(tmp_path / f"{mode}.png")]) == 0
        outs[mode] = np.asarray(Image.open(tmp_path / f"{mode}.png"))
    assert outs["ycbcr"].shape == outs["paper"].shape == (h, w, 3) and outs["gray"].shape == (h, w)
    assert not np.array_equal(outs["ycbcr"], outs["paper"])
    # --color paper is the authors' colour output of the authors' inputs
    net = mlfuse.create_model("smfnet", weights=random_authors_file)
    y, ir_in, cr, cb = smf_color.paper_inputs(from_array(vis), read_image(tmp_path / "ir.png"))
    raw = run_network(net, y, ir_in)
    np.testing.assert_array_equal(outs["paper"], smf_color.imwrite_uint8(smf_color.authors_color_float(raw, cr, cb)))
    # a grey visible image gives a grey output under --color paper
    assert fuse_pair(net, vis[..., 1], np.asarray(Image.open(tmp_path / "ir.png")), color="paper").shape == (h, w)
    # folders, paired by stem
    for sub in ("vi", "ir"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for name, (hh, ww) in (("a", (9, 11)), ("b", (13, 6))):
        Image.fromarray(vis[:hh, :ww]).save(tmp_path / "set" / "vi" / f"{name}.png")
        Image.fromarray(vis[:hh, :ww, 0]).save(tmp_path / "set" / "ir" / f"{name}.png")
    assert main([*common[:1], "--root", str(tmp_path / "set"), *common[5:], "--color", "paper",
                 "-o", str(tmp_path / "fused")]) == 0
    assert [np.asarray(Image.open(tmp_path / "fused" / f"{n}.png")).shape for n in "ab"] == [(9, 11, 3), (13, 6, 3)]


# ---------------------------------------------------------------------------------------- recipe
def test_smfnet_recipe_is_the_authors() -> None:
    recipe = get_recipe("smfnet")
    assert isinstance(recipe, SMFNetRecipe) and recipe.find_unused_parameters
    cfg = build_config(recipe.defaults)
    assert (cfg.epochs, cfg.phase1_epochs, cfg.batch_size, cfg.lr, cfg.clip_norm, cfg.step_size) == (
        120, 40, 6, 1e-4, 0.01, 20)
    assert (cfg.patch_size, cfg.patch_stride, cfg.faithful) == (128, 200, True)
    torch.manual_seed(0)
    net = SMFNet()
    assert [type(m).__name__ for m in recipe.modules(net)] == [
        "RestormerEncoder", "RestormerDecoder", "CGRBackbone", "BaseFeatureExtraction", "DetailFeatureExtraction"]
    opts = [torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr) for _ in range(5)]
    scheds = recipe.schedulers(opts, cfg)
    table = []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(120):
            table.append([o.param_groups[0]["lr"] for o in opts])
            recipe.step_schedulers(scheds, epoch, cfg)
    for start, lr in {0: 1e-4, 20: 5e-5, 40: 2.5e-5, 100: 3.125e-6}.items():  # encoder, decoder, graph
        assert table[start][:3] == pytest.approx([lr] * 3) and table[start + 19][:3] == pytest.approx([lr] * 3)
    for start, lr in {0: 1e-4, 40: 1e-4, 60: 5e-5, 100: 1.25e-5}.items():  # fusion layers: Phase II only
        assert table[start][3:] == pytest.approx([lr] * 2)


def test_two_step_training_run_both_phases(tmp_path: Path) -> None:
    """``mlfuse train smfnet``: epoch 0 = Phase I (encoder, decoder, graph), epoch 1 = Phase II (all five), one
    32x32 patch per step."""
    data = write_tiny_pairs(tmp_path / "set", n=1)
    common = ["train", "smfnet", "--data", f"{data}:vi,ir", "--epochs", "2", "--batch-size", "1", "-q",
              "--set", "patch_size=32", "--set", "patch_stride=32", "--set", "phase1_epochs=1", "--set", "threads=1"]
    out = tmp_path / "run"
    assert main([*common, "--out", str(out)]) == 0
    rows = (out / "steps.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 3
    p1, p2 = (dict(zip(header, r.split(","), strict=True)) for r in rows[1:])
    assert (float(p1["phase"]), float(p2["phase"])) == (1.0, 2.0)
    assert math.isnan(float(p1["fusionloss"])) and not math.isnan(float(p1["gram_mse_I"]))
    assert math.isnan(float(p2["gram_mse_I"])) and not math.isnan(float(p2["cc_loss_G"]))
    weights = load_file(str(out / "model.safetensors"))
    torch.manual_seed(0)  # the trainer builds the model right after seeding with cfg.seed (0)
    init = SMFNet().state_dict()
    moved = {top: any(not torch.equal(weights[k], init[k]) for k in init if k.startswith(top + "."))
             for top in SMFNet.TOP_LEVEL}
    assert all(moved.values()), moved
    mlfuse.create_model("smfnet", weights=out / "model.safetensors")  # loads strictly


def test_resumed_run_ends_with_the_same_weights(tmp_path: Path) -> None:
    """Two 16x16 patches per epoch, Phase I then II: stopped after step 1 (mid-epoch) and resumed == straight."""
    data = write_tiny_pairs(tmp_path / "set", n=2, size=(16, 16))
    common = ["train", "smfnet", "--data", f"{data}:vi,ir", "--epochs", "2", "--batch-size", "1", "-q",
              "--set", "patch_size=16", "--set", "patch_stride=16", "--set", "phase1_epochs=1", "--set", "threads=1"]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--out", str(tmp_path / "resumed"), "--set", "max_steps=1"]) == 0
    assert main([*common, "--out", str(tmp_path / "resumed"), "--resume"]) == 0
    a, b = (load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fixed_mode_one_step_and_corrected_graph(tmp_path: Path) -> None:
    data = write_tiny_pairs(tmp_path / "set", n=1, size=(16, 16))
    out = tmp_path / "run"
    train("smfnet", quiet=True, sets=["patch_size=16", "patch_stride=16", "threads=1", "faithful=false"],
          data=[{"root": str(data), "dirs": ["vi", "ir"]}], out_dir=str(out), epochs=1, batch_size=1,
          model_options={"interleaved_gates": False})
    rows = (out / "steps.csv").read_text().splitlines()
    p1 = dict(zip(rows[0].split(","), rows[1].split(","), strict=True))
    assert float(p1["seg_loss_V"]) == 0.0  # fixed mode drops the constant Lovász term
    weights = load_file(str(out / "model.safetensors"))
    torch.manual_seed(0)
    init = SMFNet().state_dict()
    assert all(torch.equal(weights[k], v) for k, v in init.items() if k.startswith(("BaseFuseLayer.", "DetailFuse")))
