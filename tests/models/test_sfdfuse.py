"""SFDFuse: exactness against the authors' code on seeded random weights (../shared/reference/sfdfuse),
including the train-mode DropPath draws, checkpoint layout, odd sizes, the documented bug switches,
the CLI and the two-phase recipe."""

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
from mlfuse.inference.fuse import run_network, to_uint8
from mlfuse.models.sfdfuse import losses as sfd_losses
from mlfuse.models.sfdfuse.network import DEConv, SFDFuse
from mlfuse.models.sfdfuse.recipe import SFDFuseRecipe
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
    record_children,
    reference_fixture,
    reference_model_fixture,
    simulate_schedule,
    write_tiny_pairs,
)

_one_thread = one_thread_fixture()
ref = reference_fixture("sfdfuse")
model = reference_model_fixture("sfdfuse")


# ---------------------------------------------------------------------------------------- checkpoints
def test_authors_checkpoint_loads_strictly_and_round_trips(ref: Path, model: SFDFuse) -> None:
    original = torch.load(ref / "random_init.pth", map_location="cpu", weights_only=True)
    saved = model.authors_checkpoint()
    assert list(saved) == list(original) == list(SFDFuse.TOP_LEVEL)
    for top in original:
        assert list(saved[top]) == list(original[top]), top
        for k, v in original[top].items():
            assert torch.equal(saved[top][k], v), k
    assert sum(p.numel() for p in model.parameters()) == 2_327_950
    # the frozen Haar filters: our construction is bit-identical to the authors' (+-0.49999997)
    fresh = SFDFuse().DIDF_Encoder.FreFeature
    for name in ("wt_filter", "iwt_filter"):
        assert torch.equal(getattr(fresh, name), original["DIDF_Encoder"][f"module.FreFeature.{name}"])
        assert not getattr(fresh, name).requires_grad
    assert float(fresh.wt_filter.abs().max()) == np.float32(0.49999997)


# ---------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("pair", PAIRS)
def test_raw_outputs_and_truncated_pngs(ref: Path, model: SFDFuse, pair: str) -> None:
    vi, ir = pair_inputs(ref, pair)
    raw = run_network(model, vi[0, 0].numpy(), ir[0, 0].numpy())  # the pipeline's path (even size: no padding)
    np.testing.assert_allclose(raw, np.load(ref / "outputs" / f"{pair}_raw.npy"), rtol=0, atol=1e-5)
    assert model.card.output_rule == "minmax"  # astype(uint8) truncation, as test.py
    assert_png_close(to_uint8(raw, "minmax"), ref / "outputs" / f"{pair}.png")


def test_debug_intermediates(ref: Path, model: SFDFuse) -> None:
    dbg = np.load(ref / "debug_intermediates_32x32.npz")
    vi, ir = torch.from_numpy(dbg["INPUT/data_VIS"]), torch.from_numpy(dbg["INPUT/data_IR"])
    with record_children(model, SFDFuse.TOP_LEVEL) as rec, torch.no_grad():
        out = model(vi, ir)
    assert_intermediates(rec, dbg, [k for k in dbg.files if not k.startswith(("INPUT/", "FINAL/"))])
    np.testing.assert_allclose(out.numpy(), dbg["FINAL/data_Fuse"], atol=1e-5)


@pytest.mark.parametrize("phase", [1, 2])
def test_train_mode_loss_terms_droppath_and_gradient_norms(ref: Path, phase: int) -> None:
    """Train mode: DropPath(0.1) draws one torch.rand([B,1,1,1]) per call in forward order after
    torch.manual_seed(1234), exactly the reference's RNG consumption (logged keep/drop pattern)."""
    net = mlfuse.create_model("sfdfuse", weights=ref / "random_init.pth").train()
    vi, ir = loss_batch(ref)
    expected = losses_reference(ref)["train_mode"]["values"][f"phase{phase}"]
    kept: list[list[bool]] = []
    names = {m: n for n, m in net.named_modules() if type(m).__name__ == "DropPath"}
    hooks = [m.register_forward_hook(lambda mod, i, o: kept.append(
        [bool(x) for x in (o.flatten(1).abs().sum(1) > 0)])) for m in names]
    torch.manual_seed(1234)
    out = net(vi, ir, phase=phase)
    for h in hooks:
        h.remove()
    assert kept == [c["kept_per_sample"] for c in expected["droppath_calls"]]
    terms = (sfd_losses.phase1_losses(out, vi, ir) if phase == 1
             else sfd_losses.phase2_losses(out, vi, ir, include_unused=True))
    terms["loss_total"].backward()
    assert_loss_terms(terms, expected)
    assert_grad_norms(net, expected)


def test_eval_mode_loss_terms(ref: Path, model: SFDFuse) -> None:
    vi, ir = loss_batch(ref)
    values = losses_reference(ref)["eval_mode"]["values"]
    model.eval()
    with torch.no_grad():
        out1 = model(vi, ir, phase=1)  # eval mode: Phase II's encoder outputs are the same
        fused = model.DIDF_Decoder_Phase(vi, model.BaseFuseLayer(out1["V_B"], out1["I_B"]),
                                         model.DetailFuseLayer(out1["V_D"], out1["I_D"]))[0]
        out2 = {**out1, "F": fused}
        t1 = sfd_losses.phase1_losses(out1, vi, ir)
        t2 = sfd_losses.phase2_losses(out2, vi, ir, include_unused=True)
    for terms, expected in ((t1, values["phase1"]), (t2, values["phase2"])):
        assert_loss_terms(terms, expected)
    # the documented switch: without the SSIM term the fusion loss is the CDDFuse form
    t2_plain = sfd_losses.phase2_losses(out2, vi, ir, fusion_ssim=False)
    assert t2_plain["fusionloss"].item() == pytest.approx(
        values["phase2"]["fusionloss_without_ssim(=CDDFuse form, loss_in+10*loss_grad)"], rel=1e-5)


def test_ir_detail_switch(ref: Path) -> None:
    """Faithful default: IR reconstructed with the VISIBLE detail feature; ``ir_detail='ir'`` corrects it."""
    g = torch.Generator().manual_seed(5)
    vi, ir = torch.rand(1, 1, 16, 16, generator=g), torch.rand(1, 1, 16, 16, generator=g)
    outs = {}
    for which in ("vis", "ir"):
        net = mlfuse.create_model("sfdfuse", weights=ref / "random_init.pth", ir_detail=which)
        with torch.no_grad():
            o = net(vi, ir, phase=1)
            detail = o["V_D"] if which == "vis" else o["I_D"]
            assert torch.equal(o["I_hat"], net.DIDF_Decoder_Phase(ir, o["I_B"], detail)[0])
        outs[which] = o["I_hat"]
    assert not torch.equal(outs["vis"], outs["ir"])
    with pytest.raises(ValueError, match="ir_detail"):
        SFDFuse(ir_detail="both")


def test_deconv_merged_kernel_taps() -> None:
    """The five difference kernels merge as spec §1.1 describes (checked on one tap pattern each)."""
    torch.manual_seed(0)
    dc = DEConv(2)
    for m in (dc.conv1_1.conv, dc.conv1_2.conv, dc.conv1_3.conv, dc.conv1_4.conv, dc.conv1_5):
        torch.nn.init.zeros_(m.weight)
        torch.nn.init.zeros_(m.bias)
    with torch.no_grad():
        dc.conv1_1.conv.weight[0, 0] = torch.arange(9.0).reshape(3, 3)
        dc.conv1_2.conv.weight[0, 1] = torch.tensor([1.0, 2.0, 3.0])
        dc.conv1_3.conv.weight[1, 0] = torch.tensor([1.0, 2.0, 3.0])
        dc.conv1_4.conv.weight[1, 1] = torch.arange(9.0).reshape(3, 3)
    k, _ = dc.merged()
    assert k[0, 0].flatten().tolist() == [0, 1, 2, 3, 4 - 36, 5, 6, 7, 8]
    assert k[0, 1].tolist() == [[1, 0, -1], [2, 0, -2], [3, 0, -3]]
    assert k[1, 0].tolist() == [[1, 2, 3], [0, 0, 0], [-1, -2, -3]]
    perm = [3, 0, 1, 6, 4, 2, 7, 8, 5]
    assert k[1, 1].flatten().tolist() == [i - perm[i] for i in range(9)]


# ---------------------------------------------------------------------------------------- sizes + CLI
def test_odd_sizes_authors_crop_and_pipeline_pad(model: SFDFuse) -> None:
    g = torch.Generator().manual_seed(1)
    vi, ir = torch.rand(1, 1, 13, 15, generator=g), torch.rand(1, 1, 13, 15, generator=g)
    with torch.no_grad():
        assert model(vi, ir).shape == (1, 1, 12, 14)  # the authors' code drops the last row and column
    raw = run_network(model, vi[0, 0].numpy(), ir[0, 0].numpy())
    assert raw.shape == (13, 15)  # mlfuse reflect-pads to even sizes and crops back


def test_cli_fuses_odd_colour_pair(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "random_sfdfuse.pth"
    torch.save(SFDFuse().authors_checkpoint(), weights)
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (21, 27, 3), dtype=np.uint8)).save(tmp_path / "vis.png")
    Image.fromarray(rng.integers(0, 256, (21, 27), dtype=np.uint8)).save(tmp_path / "ir.png")
    assert main(["fuse", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"), "--model", "sfdfuse",
                 "--weights", str(weights), "-o", str(tmp_path / "f.png"), "-q"]) == 0
    out = np.asarray(Image.open(tmp_path / "f.png"))
    assert out.shape == (21, 27, 3) and out.max() > out.min()


# ---------------------------------------------------------------------------------------- recipe
def test_sfdfuse_recipe_is_the_authors() -> None:
    recipe = get_recipe("sfdfuse")
    assert isinstance(recipe, SFDFuseRecipe) and recipe.find_unused_parameters
    cfg = build_config(recipe.defaults)
    assert (cfg.epochs, cfg.phase1_epochs, cfg.batch_size, cfg.step_size, cfg.fusion_ssim) == (90, 30, 8, 10, True)
    table = simulate_schedule(recipe, cfg)
    enc = [1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6, 3.125e-6, 1.5625e-6, 1e-6, 1e-6]  # floor hit from epoch 70
    fus = [1e-4, 1e-4, 1e-4, 1e-4, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6, 3.125e-6]
    for decade in range(9):
        for epoch in (10 * decade, 10 * decade + 9):
            assert table[epoch][0] == pytest.approx(enc[decade]) == table[epoch][1]
            assert table[epoch][2] == pytest.approx(fus[decade]) == table[epoch][3]


def test_two_step_training_run_both_phases(tmp_path: Path) -> None:
    data = write_tiny_pairs(tmp_path / "set", n=1)
    out = tmp_path / "run"
    res = train("sfdfuse", quiet=True, sets=["patch_size=32", "patch_stride=32", "phase1_epochs=1", "threads=1",
                                             "fusion_ssim=false"],
                data=[{"root": str(data), "dirs": ["vi", "ir"]}], out_dir=str(out), epochs=2, batch_size=1,
                model_options={"ir_detail": "ir"})
    assert res.steps == 2
    rows = (out / "steps.csv").read_text().splitlines()
    header = rows[0].split(",")
    p1, p2 = (dict(zip(header, r.split(","), strict=True)) for r in rows[1:])
    assert (float(p1["phase"]), float(p2["phase"])) == (1.0, 2.0)
    assert math.isnan(float(p1["fusion_loss_ssim"])) and not math.isnan(float(p2["fusion_loss_ssim"]))
    # fusion_ssim=false: the total is the CDDFuse-form fusion loss + 2 L_decomp
    assert float(p2["fusionloss"]) == pytest.approx(float(p2["fusionloss_without_ssim"]))
    weights = load_file(str(out / "model.safetensors"))
    torch.manual_seed(0)
    init = SFDFuse().state_dict()
    haar = "DIDF_Encoder.FreFeature.wt_filter"
    assert torch.equal(weights[haar], init[haar])  # frozen
    unused = [k for k in init if k.startswith(("DIDF_Decoder_Phase.reduce_channel", "DIDF_Decoder_Phase.fusion2"))]
    assert unused and all(torch.equal(weights[k], init[k]) for k in unused)  # never get a gradient
    assert not torch.equal(weights["BaseFuseLayer.ffn.project_in.weight"], init["BaseFuseLayer.ffn.project_in.weight"])
    mlfuse.create_model("sfdfuse", weights=out / "model.safetensors")  # loads strictly
