"""EMMA: exactness against the authors' code on seeded random weights (../shared/reference/emma) — U-Fuser,
the 4-pass tiled path, the pseudo-sensing UNet5, the equivariant loss — plus checkpoint layout, the CLI on a
colour pair whose size is not a multiple of 8, the pseudo-sensing data and two-step runs of both stages."""

from __future__ import annotations

import random
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
from mlfuse.models.emma import losses as E
from mlfuse.models.emma.data import PseudoSensingPatches, gray_rounded
from mlfuse.models.emma.network import EMMA, UNet5, load_unet5
from mlfuse.train import build_config, get_recipe, train
from tests._common import one_thread_fixture
from tests.models.family import (
    PAIRS,
    assert_intermediates,
    assert_png_close,
    loss_batch,
    losses_reference,
    module_grad_norm,
    pair_inputs,
    random_weights_fixture,
    record_children,
    reference_fixture,
    reference_model_fixture,
    write_tiny_pairs,
)

_one_thread = one_thread_fixture()
ref = reference_fixture("emma")
model = reference_model_fixture("emma")  # the U-Fuser: a plain state_dict


def unet5_state_dict(ref: Path) -> dict[str, torch.Tensor]:
    """The README's rebuild: ``q.astype(float32) * scale`` per floating tensor, integer buffers as stored."""
    z = np.load(ref / "unet5_random_init_int8.npz")
    sd = {}
    for k in z.files:
        if k.endswith(".q"):
            sd[k[:-2]] = torch.from_numpy(z[k].astype(np.float32) * z[k[:-2] + ".scale"])
        elif not k.endswith(".scale"):
            sd[k] = torch.from_numpy(z[k])
    return sd


@pytest.fixture(scope="module")
def unet5(ref: Path) -> UNet5:
    net = UNet5()
    net.load_state_dict(unet5_state_dict(ref), strict=True)
    return net.eval().requires_grad_(False)


def ir_vi(ref: Path, stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(IR, VIS) as [1,1,H,W] — the authors' argument order."""
    vi, ir = pair_inputs(ref, stem)
    return ir, vi


random_emma_file = random_weights_fixture(lambda: EMMA().state_dict(), "random_EMMA.pth")  # authors' plain layout


# ---------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_loads_strictly_and_round_trips(ref: Path, model: EMMA) -> None:
    original = torch.load(ref / "random_init.pth", map_location="cpu", weights_only=True)
    saved = model.state_dict()
    assert list(saved) == list(original) and len(saved) == 347  # same keys in the same order, no prefix
    assert all(torch.equal(saved[k], v) for k, v in original.items())
    assert sum(p.numel() for p in model.parameters()) == 1_517_657
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("V_en_1", "V_en_4", "f_1", "f_3", "de_1", "up4", "V_down3", "last")}
    assert counts == {"V_en_1": 9_520, "V_en_4": 156_040, "f_1": 10_600, "f_3": 165_256, "de_1": 10_600,
                      "up4": 16_384, "V_down3": 9_216, "last": 73}


def test_unet5_layout_and_rebuild(ref: Path, unet5: UNet5, tmp_path: Path) -> None:
    sd = unet5_state_dict(ref)
    own = UNet5().state_dict()
    assert list(own) == list(sd) and len(sd) == 132
    assert sum(1 for k in sd if k.endswith("num_batches_tracked")) == 18
    assert sum(p.numel() for p in unet5.parameters()) == 39_397_761
    total = sum(float(v.double().abs().sum()) for v in sd.values() if v.is_floating_point())
    assert total == 690542.4282226562  # the JSON's check of the exact rebuild
    # the authors' Ai.pth / Av.pth layout: a plain state_dict, read strictly with weights_only
    torch.save(sd, tmp_path / "Ai.pth")
    net = load_unet5(tmp_path / "Ai.pth")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())
    del sd["last.0.bias"]
    torch.save(sd, tmp_path / "short.pth")
    with pytest.raises(mlfuse.MLFuseError, match="1 missing key"):
        load_unet5(tmp_path / "short.pth")


# ---------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("pair", PAIRS)
def test_ufuser_and_unet5_outputs(ref: Path, model: EMMA, unet5: UNet5, pair: str) -> None:
    ir, vi = ir_vi(ref, pair)
    with torch.no_grad():
        fused = model(ir, vi)  # IR first
        of_fused = unet5(torch.from_numpy(np.load(ref / "outputs" / f"{pair}_raw.npy"))[None, None])
        of_vi = unet5(vi)
    raw = fused[0, 0].numpy()
    np.testing.assert_allclose(raw, np.load(ref / "outputs" / f"{pair}_raw.npy"), rtol=0, atol=1e-5)
    assert_png_close(to_uint8(raw, "minmax-round"), ref / "outputs" / f"{pair}.png", max_fraction=0.01)
    np.testing.assert_allclose(of_fused[0, 0].numpy(), np.load(ref / "outputs" / f"{pair}__unet5_of_fused_raw.npy"),
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(of_vi[0, 0].numpy(), np.load(ref / "outputs" / f"{pair}__unet5_of_vi_raw.npy"),
                               rtol=0, atol=1e-5)


def test_pipeline_roles_are_explicit(ref: Path, model: EMMA) -> None:
    """``run_network`` (what ``mlfuse fuse`` calls) passes structural = VIS, functional = IR, and the
    swapped call differs (the U-Fuser is not symmetric)."""
    ir, vi = ir_vi(ref, "roadscene_FLIR_04424")
    raw = run_network(model, vi[0, 0].numpy(), ir[0, 0].numpy())
    expected = np.load(ref / "outputs" / "roadscene_FLIR_04424_raw.npy")
    np.testing.assert_allclose(raw, expected, rtol=0, atol=1e-5)
    swapped = run_network(model, ir[0, 0].numpy(), vi[0, 0].numpy())
    assert np.abs(swapped - expected).max() > 1e-3


def test_debug_intermediates(ref: Path, model: EMMA) -> None:
    dbg = np.load(ref / "debug_intermediates_32x32.npz")
    holder = torch.nn.Module()
    holder.Ufuser = model
    with record_children(holder, ("Ufuser",)) as rec, torch.no_grad():
        out = model(torch.from_numpy(dbg["INPUT/data_IR"]), torch.from_numpy(dbg["INPUT/data_VIS"]))
    keys = [k for k in dbg.files if k.startswith("Ufuser")]
    assert len(keys) == 27
    assert_intermediates(rec, dbg, keys)
    np.testing.assert_allclose(out.numpy(), dbg["FINAL/data_Fuse"], rtol=0, atol=1e-5)


def test_authors_four_pass_tiling(ref: Path) -> None:
    """104 x 136 (not multiples of 32): test.py's stitched x255 canvas and its PNG, directly and through
    the pipeline with ``task="authors-tiles"``; the default pads instead (no seams, another image)."""
    net = mlfuse.create_model("emma", weights=ref / "random_init.pth", task="authors-tiles")
    ir, vi = ir_vi(ref, "tno_01_tiled104x136")
    with torch.no_grad():
        canvas = net.authors_canvas(ir, vi)[0, 0].numpy()
    expected = np.load(ref / "outputs" / "tno_01__tiled104x136_stitched255_raw.npy")
    np.testing.assert_allclose(canvas, expected, rtol=0, atol=1e-3)
    png = ref / "outputs" / "tno_01__tiled104x136.png"
    assert_png_close(to_uint8(canvas, "minmax-round"), png, max_fraction=0.0)
    assert net.card.size_multiple == 1 and net.card.min_size == (32, 32)  # the pipeline must not pad to 8
    raw = run_network(net, vi[0, 0].numpy(), ir[0, 0].numpy())
    assert raw.shape == (104, 136)
    assert_png_close(to_uint8(raw, net.card.output_rule), png, max_fraction=0.01)
    padded = mlfuse.create_model("emma", weights=ref / "random_init.pth")
    assert padded.card.size_multiple == 8
    raw_pad = run_network(padded, vi[0, 0].numpy(), ir[0, 0].numpy())
    assert raw_pad.shape == (104, 136)
    np.testing.assert_allclose(raw_pad[:96, :128], raw[:96, :128], atol=0.05)  # same network, other border
    with pytest.raises(ValueError, match="32x32"):
        net.authors_canvas(ir[..., :24, :], vi[..., :24, :])


def test_training_loss_terms_and_gradient_norm(ref: Path) -> None:
    net = mlfuse.create_model("emma", weights=ref / "random_init.pth").train()
    a = UNet5()
    a.load_state_dict(unet5_state_dict(ref), strict=True)
    a.eval().requires_grad_(False)
    vi, ir = loss_batch(ref)
    expected = losses_reference(ref)["train_mode"]["values"]["fusion"]
    log = expected["transform"]
    random.seed(0)  # the reference's Python seed
    rows, cols = E.draw_shifts(random, 64, 64)
    assert (rows, cols) == (log["shifts_rows"], log["shifts_cols"])
    assert list(E.ROTATIONS) == log["rotation_degrees"]
    torch.manual_seed(1234)
    terms = E.fusion_losses(net, a, a, ir, vi, rows, cols)  # one UNet5 as both A_i and A_v
    terms["loss_total"].backward()
    assert list(terms["Ft"].shape) == expected["Ft_shape"]
    names = {"term_V": "term_V(=loss(Av(F), VIS))", "term_I": "term_I(=loss(Ai(F), IR))",
             "term_equivariance": "term_equivariance(=loss(Ft, Ft_caret))",
             "loss_total": "loss_total(=term_V+term_I+0.1*term_eq)"}
    for ours, theirs in names.items():
        assert terms[ours].item() == pytest.approx(expected[theirs], rel=1e-5), ours
    for term in ("term_V", "term_I", "term_equivariance"):
        for part, value in expected[f"{term}_parts"].items():
            assert terms[f"{term}_{part}"].item() == pytest.approx(value, rel=1e-5), f"{term} {part}"
    stats = expected["output_stats"]["Ft_caret"]
    assert terms["Ft_hat"].min().item() == pytest.approx(stats["min"], rel=1e-5)
    assert terms["Ft_hat"].double().mean().item() == pytest.approx(stats["mean"], rel=1e-5)
    norm, count = module_grad_norm(net)
    g = expected["grad_norms_pre_clip"]["Ufuser"]
    assert count == g["n_param_tensors_with_grad"]
    assert norm == pytest.approx(g["l2_norm_float64"], rel=1e-4, abs=0)


# ---------------------------------------------------------------------------------------- transforms
def test_equivariant_transforms() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.rand(2, 1, 12, 12, generator=g)
    ft = E.equivariant_transforms(f, [3, -1, 5], [-2, 4, 1])
    assert ft.shape == (20, 1, 12, 12)
    blocks = ft.split(2)
    assert torch.equal(blocks[0], f)
    assert torch.equal(blocks[1][..., 3:, :][..., :, 0:10], f[..., :9, 2:])  # roll by (3, -2)
    assert torch.equal(blocks[7], f.flip(-1)) and torch.equal(blocks[8], f.flip(-2))
    assert torch.equal(blocks[9], f.flip(-1).flip(-2))
    # kornia's rotation: counter-clockwise as displayed about the centre; 90 degrees = rot90 on a square
    torch.testing.assert_close(E.rotate(f, 90.0), torch.rot90(f, 1, (-2, -1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(E.rotate(f, 0.0), f, rtol=0, atol=1e-6)
    point = torch.zeros(1, 1, 9, 9)
    point[0, 0, 4, 8] = 1  # right of the centre -> above it after +90 degrees
    assert E.rotate(point, 90.0)[0, 0].argmax().item() == 0 * 9 + 4
    rows, cols = E.draw_shifts(random.Random(5), 4, 6)
    assert len(set(rows)) == 3 and len(set(cols)) == 3 and 0 not in rows + cols
    assert all(-3 <= r <= 3 for r in rows) and all(-5 <= c <= 5 for c in cols)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_fuses_colour_pair_not_multiple_of_8(random_emma_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(3)
    h, w = 37, 45  # odd, not multiples of 8
    yy, xx = np.mgrid[0:h, 0:w]
    vis = np.stack([(xx * 5) % 256, (yy * 6) % 256, ((xx + yy) * 3) % 256], 2).astype(np.uint8)
    Image.fromarray(vis).save(tmp_path / "vis.png")
    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(tmp_path / "ir.png")
    common = ["fuse", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"), "--model", "emma",
              "--weights", str(random_emma_file), "-q"]
    assert main([*common, "-o", str(tmp_path / "out.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8 and out.max() > out.min()
    assert main([*common, "--task", "authors-tiles", "--color", "gray", "-o", str(tmp_path / "tiles.png")]) == 0
    tiles = np.asarray(Image.open(tmp_path / "tiles.png"))
    assert tiles.shape == (h, w) and tiles.min() == 0 and tiles.max() == 255
    assert main(["fuse", "--vis", str(tmp_path / "vis.png"), "--ir", str(tmp_path / "ir.png"), "--model", "emma",
                 "-o", str(tmp_path / "none.png")]) == 2  # no default weights
    assert "pass --weights" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- data + recipe
def test_pseudo_sensing_patches(tmp_path: Path) -> None:
    root = write_tiny_pairs(tmp_path / "set", n=2, size=(48, 64))
    fused = tmp_path / "fused"
    fused.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(20, 236, (48, 64), dtype=np.uint8)).save(fused / f"{i}.png")
    flat = np.asarray(Image.open(fused / "1.png")).copy()
    flat[:32, 32:64] = 100  # one low-contrast window in the fused image of pair 1
    Image.fromarray(flat).save(fused / "1.png")
    pairs = pair_folders(root / "vi", root / "ir").pairs
    ds = PseudoSensingPatches(pairs, [{"dir": str(fused)}], "vis", size=32, stride=16)
    assert ds.candidates == 2 * 2 * 3 and len(ds) == 11  # rows {0, 16}, cols {0, 16, 32}; one dropped
    item = ds[0]
    rgb = np.asarray(Image.open(root / "vi" / "0.png")).astype(np.float32)
    y = np.round(rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114))
    assert np.array_equal(gray_rounded(root / "vi" / "0.png"), y / np.float32(255))
    assert np.array_equal(item["target"][0].numpy(), (y / np.float32(255))[:32, :32])
    expected_in = np.asarray(Image.open(fused / "0.png")).astype(np.float32) / np.float32(255)
    assert np.array_equal(item["input"][0].numpy(), expected_in[:32, :32])
    # a registered method as generator (classical: no weights), IR target, two generators -> two sets
    two = PseudoSensingPatches(pairs, [{"model": "average"}, {"dir": str(fused)}], "ir", size=32, stride=16)
    assert two.candidates == 24 and len(two) == 23
    with pytest.raises(mlfuse.MLFuseError, match="no fused image"):
        PseudoSensingPatches(pairs, [{"dir": str(tmp_path)}], "ir", size=32, stride=16)


def test_recipe_is_the_authors() -> None:
    recipe = get_recipe("emma")
    cfg = build_config(recipe.defaults)
    assert (cfg.stage, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay) == ("fuser", 120, 4, 1e-4, 0.0)
    assert (cfg.patch_size, cfg.patch_stride, cfg.contrast_threshold) == (128, 200, 0.1)
    assert cfg.rotations == [10.0, 130.0, 250.0] and cfg.loss_coeffs["equivariance"] == 0.1
    for stage, step, lrs in (("fuser", 20, {0: 1e-4, 20: 5e-5, 100: 3.125e-6, 119: 3.125e-6}),
                             ("ai", 10, {0: 1e-4, 10: 5e-5, 39: 1.25e-5})):
        cfg = build_config(recipe.defaults, sets=[f"stage={stage}"])
        opt = recipe.optimizers(torch.nn.Linear(1, 1), cfg)
        (sched,) = recipe.schedulers(opt, cfg)
        assert sched.step_size == step
        seen = {}
        for epoch in range(120):
            seen[epoch] = opt[0].param_groups[0]["lr"]
            opt[0].step()
            sched.step()
        for epoch, lr in lrs.items():
            assert seen[epoch] == pytest.approx(lr), (stage, epoch)  # no floor (quirk 11)
    # the shift draws are a pure function of (seed, epoch, first item)
    cfg = build_config(recipe.defaults)
    assert recipe.shifts(cfg, 3, 7, 128, 128) == recipe.shifts(cfg, 3, 7, 128, 128)
    assert recipe.shifts(cfg, 3, 7, 128, 128) != recipe.shifts(cfg, 4, 7, 128, 128)
    with pytest.raises(mlfuse.MLFuseError, match="stage"):
        recipe.stage(build_config(recipe.defaults, sets=["stage=unet"]))


def test_two_step_training_runs_both_stages(tmp_path: Path) -> None:
    """Stage ``ai`` (UNet5 on fused -> IR, fused inputs from a classical method) for two steps, then the
    U-Fuser stage for two steps with that network as both A_i and A_v; 32 x 32 patches, batch 1."""
    data = write_tiny_pairs(tmp_path / "set", n=2, size=(32, 32))
    entry = [{"root": str(data), "dirs": ["vi", "ir"]}]
    common = ["patch_size=32", "patch_stride=32", "threads=1"]
    a_run = tmp_path / "ai"
    res = train("emma", quiet=True, sets=[*common, "stage=ai", 'generators=[{"model": "average"}]'],
                data=entry, out_dir=str(a_run), epochs=1, batch_size=1)
    assert res.steps == 2 and np.isfinite(res.last_losses["total"])
    ai = a_run / "model.safetensors"
    torch.manual_seed(0)
    init = UNet5().state_dict()
    trained = load_file(str(ai))
    assert set(trained) == set(init)  # a plain UNet5 state_dict: usable as ai_weights / av_weights
    assert not torch.equal(trained["down1.conv.0.weight"], init["down1.conv.0.weight"])
    assert not torch.equal(trained["down1.conv.1.running_mean"], init["down1.conv.1.running_mean"])  # BN in train mode

    f_run = tmp_path / "fuser"
    res = train("emma", quiet=True, sets=[*common, f"ai_weights={ai}", f"av_weights={ai}"],
                data=entry, out_dir=str(f_run), epochs=1, batch_size=1)
    assert res.steps == 2
    header = (f_run / "steps.csv").read_text().splitlines()[0].split(",")
    assert {"total", "term_V", "term_I", "term_equivariance", "term_equivariance_l1_grad"} <= set(header)
    assert np.isfinite(res.last_losses["term_equivariance"])
    net = mlfuse.create_model("emma", weights=f_run / "model.safetensors")  # loads strictly
    torch.manual_seed(0)
    start = EMMA().state_dict()
    moved = [k for k, v in net.state_dict().items() if not torch.equal(v, start[k])]
    assert len(moved) > 300  # the U-Fuser trained (all but the degenerate q/k paths of the 8-channel blocks)
    with pytest.raises(mlfuse.MLFuseError, match="ai_weights"):
        train("emma", quiet=True, sets=common, data=entry, out_dir=str(tmp_path / "no_ai"), epochs=1, batch_size=1)


def test_cli_train_settings(capsys: pytest.CaptureFixture) -> None:
    import json

    assert main(["train", "emma", "--print-config", "--set", "stage=av", "--epochs", "40", "--batch-size", "64"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["stage"], cfg["epochs"], cfg["batch_size"], cfg["sensing_step_size"]) == ("av", 40, 64, 10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(random_emma_file: Path) -> None:
    """The U-Fuser, UNet5 and the equivariant loss are device-agnostic (TF32 off for the comparison)."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator().manual_seed(0)
    ir, vi = torch.rand(2, 1, 1, 64, 64, generator=g)
    cpu = mlfuse.create_model("emma", weights=random_emma_file)
    gpu = mlfuse.create_model("emma", weights=random_emma_file, device="cuda")
    torch.manual_seed(0)
    a = UNet5().eval()
    a_gpu = UNet5().eval().cuda()
    a_gpu.load_state_dict(a.state_dict())
    rows, cols = E.draw_shifts(random.Random(0), 64, 64)
    with torch.no_grad():
        c = E.fusion_losses(cpu, a, a, ir, vi, rows, cols)
        d = E.fusion_losses(gpu, a_gpu, a_gpu, ir.cuda(), vi.cuda(), rows, cols)
    torch.testing.assert_close(d["Ft_hat"].cpu(), c["Ft_hat"], rtol=0, atol=1e-4)
    assert d["loss_total"].item() == pytest.approx(c["loss_total"].item(), rel=1e-4)


def test_generator_spec_with_an_unknown_key_is_refused(tmp_path) -> None:
    from mlfuse.data.pairs import Pair
    from mlfuse.errors import InputError
    from mlfuse.models.emma.data import fused_images

    with pytest.raises(InputError, match=r"unknown key.*output.*'output' is now 'output_rule'"):
        fused_images({"model": "average", "output": "minmax"}, [Pair("x", tmp_path / "a.png", tmp_path / "b.png")])
