"""MLFuse training's fast path and schedules: the same losses and gradients as the authors' operation
order (to float rounding), and the ``schedule`` presets (issue 12)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import mlfuse
from mlfuse.errors import MLFuseError
from mlfuse.models.mlfuse.losses import mlfuse_losses, separable_gaussian_filter, ssim, ssim_pair
from mlfuse.models.mlfuse.recipe import warmup_cosine_lr
from mlfuse.train import build_config, get_recipe


def _grads(path: str, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> tuple[dict, dict]:
    torch.manual_seed(3)
    model = mlfuse.create_model("mlfuse", weights=None).train()
    terms = mlfuse_losses(model(x, y), x, y, m, path=path)
    terms["total"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in terms.items()}, grads


def test_fast_path_has_the_reference_losses_and_gradients():
    """One training step's loss terms and every parameter's gradient, old path vs new path."""
    g = torch.Generator().manual_seed(0)
    x, y, m = (torch.rand(4, 1, 48, 40, generator=g) for _ in range(3))
    ref_losses, ref_grads = _grads("reference", x, y, m)
    fast_losses, fast_grads = _grads("fast", x, y, m)
    for k, v in ref_losses.items():
        assert fast_losses[k] == pytest.approx(v, rel=1e-6, abs=1e-9), k
    assert fast_grads.keys() == ref_grads.keys() and len(ref_grads) > 70
    # a conv bias before BatchNorm has a gradient of exactly 0 in exact arithmetic (pure rounding noise
    # in both paths), so each tensor is compared against the scale of the whole gradient
    scale = max(g.abs().max().item() for g in ref_grads.values())
    for name, ref in ref_grads.items():
        err = (fast_grads[name] - ref).abs().max().item()
        assert err <= 1e-5 * scale, (name, err, scale)
    flat_ref = torch.cat([g.flatten() for g in ref_grads.values()])
    flat_fast = torch.cat([fast_grads[n].flatten() for n in ref_grads])
    assert ((flat_fast - flat_ref).norm() / flat_ref.norm()).item() < 1e-5


def test_separable_filter_equals_the_2d_window():
    g = torch.Generator().manual_seed(1)
    a, b, f = (torch.rand(2, 1, 23, 31, generator=g) for _ in range(3))
    s_af, s_bf = ssim_pair(a, b, f)
    assert float(s_af) == pytest.approx(float(ssim(a, f)), abs=1e-6)
    assert float(s_bf) == pytest.approx(float(ssim(b, f)), abs=1e-6)
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1
    from mlfuse.models.mlfuse.losses import gaussian_window

    assert torch.allclose(separable_gaussian_filter(impulse)[0, 0, 5:16, 5:16], gaussian_window(), atol=1e-8)


def test_unknown_loss_path_is_refused():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="unknown loss path"):
        mlfuse_losses((x, x, x, x), x, x, x, path="turbo")


def test_cpu_schedule_preset_and_explicit_settings_win():
    recipe = get_recipe("mlfuse")
    authors = build_config(recipe.defaults, presets=recipe.presets)
    assert (authors.schedule, authors.epochs, authors.lr) == ("authors", 501, 1e-4)
    cpu = build_config(recipe.defaults, sets=["schedule=cpu"], presets=recipe.presets)
    assert (cpu.schedule, cpu.epochs, cpu.lr, cpu.warmup_epochs) == ("cpu", 60, 1e-3, 2.0)
    mine = build_config(recipe.defaults, sets=["schedule=cpu", "lr=5e-4"], overrides={"epochs": 7},
                        presets=recipe.presets)
    assert (mine.lr, mine.epochs, mine.eta_min) == (5e-4, 7, 1e-5)
    with pytest.raises(MLFuseError, match="unknown schedule 'fast'"):
        build_config(recipe.defaults, sets=["schedule=fast"], presets=recipe.presets)


def test_warmup_cosine_lr_shape():
    lr = [warmup_cosine_lr(p / 10, 10, 2.0, 1e-3, 1e-5) for p in range(0, 101)]
    assert lr[0] < 1e-5 and lr[10] == pytest.approx(5e-4) and lr[20] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lr[20:]))  # decays monotonically after warm-up
    assert lr[-1] == pytest.approx(1e-5)
    assert lr[60] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_cpu_schedule_sets_the_lr_per_iteration(tmp_path):
    """A tiny run under schedule=cpu: the logged lr follows warmup_cosine_lr step by step."""
    import csv

    from mlfuse.train import train

    res = train("mlfuse", sets=("schedule=cpu", "crop=32", "warmup_epochs=1.0"), out_dir=str(tmp_path / "run"),
                data=_tiny_set(tmp_path / "set"), epochs=2, batch_size=2, quiet=True)
    with (res.out_dir / "steps.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        epoch, it = int(row["epoch"]), int(row["iteration"]) - 1  # iteration is logged after the step
        assert float(row["lr"]) == pytest.approx(warmup_cosine_lr(epoch + it / 2, 2, 1.0, 1e-3, 1e-5), rel=1e-6)


def _tiny_set(root, n: int = 4, seed: int = 2):
    from mlfuse.data.io import write_image

    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        for sub in ("vi", "ir"):
            write_image((torch.rand(40, 40, generator=g) * 255).to(torch.uint8).numpy(), root / sub / f"{i}.png")
    return [{"root": str(root)}]


def test_worker_processes_load_once_and_train_the_same(tmp_path, monkeypatch):
    """num_workers > 0: pairs and their VSM maps are computed once in the parent (preload), not per
    epoch per worker, and the run's weights equal a single-process run's."""
    from safetensors.torch import load_file

    import mlfuse.models.mlfuse.recipe as mlf_recipe
    from mlfuse.train import train

    data = _tiny_set(tmp_path / "set")
    calls = []
    real = mlf_recipe._functional_saliency
    monkeypatch.setattr(mlf_recipe, "_functional_saliency", lambda s, f: calls.append(1) or real(s, f))
    runs = {}
    for workers in (0, 2):
        calls.clear()
        res = train("mlfuse", sets=("crop=32", f"num_workers={workers}"), out_dir=str(tmp_path / f"w{workers}"),
                    data=data, epochs=2, batch_size=2, quiet=True)
        runs[workers] = load_file(res.out_dir / "model.safetensors")
        if workers:
            assert len(calls) == 4  # once per pair in this process (workers' calls are not seen here)
    for k, v in runs[0].items():
        assert torch.equal(v, runs[2][k]), k
