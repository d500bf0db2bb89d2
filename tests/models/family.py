"""Helpers shared by the CDDFuse-family exactness tests (reference layout of ../shared/reference/<method>/)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import mlfuse

PAIRS = ("tno_01", "roadscene_FLIR_04424", "ctmri_15")


# ---------------------------------------------------------------------------------------- fixture factories
# Assign the result to a module-level name in the test file; pytest registers the fixture under that name.
def reference_fixture(method: str):
    """A module-scoped fixture: the reference folder ``../shared/reference/<method>``."""

    @pytest.fixture(scope="module")
    def ref(shared: Path) -> Path:
        return shared / "reference" / method

    return ref


def reference_model_fixture(method: str):
    """A module-scoped fixture: the reference weights (``ref/random_init.pth``) loaded through the registry
    (layout auto-detected, strict, weights_only)."""

    @pytest.fixture(scope="module")
    def model(ref: Path) -> nn.Module:
        return mlfuse.create_model(method, weights=ref / "random_init.pth")

    return model


def random_weights_fixture(checkpoint: Callable[[], object], filename: str):
    """A module-scoped fixture: ``checkpoint()`` (e.g. a fresh network's weights in the authors' layout) built
    after ``torch.manual_seed(0)`` and saved as ``filename`` in a temporary folder: CLI tests without ../shared."""

    @pytest.fixture(scope="module")
    def random_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(Path(filename).stem) / filename
        torch.save(checkpoint(), path)
        return path

    return random_weights_file


def pair_inputs(ref: Path, pair: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(VIS, IR) as [1,1,H,W] float32 from the reference ``inputs/``."""
    vi = torch.from_numpy(np.load(ref / "inputs" / f"{pair}_vi.npy"))[None, None]
    ir = torch.from_numpy(np.load(ref / "inputs" / f"{pair}_ir.npy"))[None, None]
    return vi, ir


def assert_png_close(ours: np.ndarray, png: Path, max_fraction: float = 1e-3) -> None:
    """|diff| <= 1 everywhere and nonzero on at most ``max_fraction`` of the pixels."""
    ref = np.asarray(Image.open(png))
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"{png.name}: max |diff| {diff.max()}"
    assert np.count_nonzero(diff) <= max_fraction * diff.size, f"{png.name}: {np.count_nonzero(diff)} pixels differ"


@contextmanager
def record_children(model: nn.Module, tops: tuple[str, ...]) -> Iterator[dict[str, np.ndarray]]:
    """Forward hooks named like the reference debug file: ``<Top>#call<k>/out<j>`` and
    ``<Top>.<child>#call<k>/out<j>``. Yields the record dict; the hooks are removed on exit."""
    rec: dict[str, np.ndarray] = {}
    calls: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def fn(_mod, _inp, out):
            k = calls.get(name, 0)
            calls[name] = k + 1
            for j, o in enumerate(out if isinstance(out, tuple) else (out,)):
                rec[f"{name}#call{k}/out{j}"] = o.detach().cpu().numpy()
        return fn

    for top in tops:
        mod = getattr(model, top)
        handles.append(mod.register_forward_hook(hook(top)))
        for child_name, child in mod.named_children():
            handles.append(child.register_forward_hook(hook(f"{top}.{child_name}")))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


def assert_intermediates(rec: dict[str, np.ndarray], ref: dict[str, np.ndarray], keys: list[str]) -> None:
    """Every reference key within ``1e-5 * max|map|`` (the README's suggested acceptance)."""
    missing = [k for k in keys if k not in rec]
    assert not missing, f"not produced: {missing[:5]}"
    for k in keys:
        scale = max(float(np.abs(ref[k]).max()), 1e-12)
        err = float(np.abs(rec[k] - ref[k]).max())
        assert err <= 1e-5 * scale, f"{k}: {err:.3g} > 1e-5 * {scale:.3g}"


def losses_reference(ref: Path) -> dict:
    return json.loads((ref / "losses.json").read_text())


def reference_term_names(expected: dict, unused_suffix: bool = True) -> dict[str, str]:
    """Our term name -> the reference's key for every float entry of ``expected``
    (``'mse_loss_V(=5*ssim_V+mse_V)'`` -> ``mse_loss_V``; with ``unused_suffix`` a key mentioning
    "unused" maps from ``<name>_unused``)."""
    return {k.split("(")[0] + ("_unused" if unused_suffix and "unused" in k else ""): k
            for k, v in expected.items() if isinstance(v, float)}


def assert_loss_terms(terms: dict[str, torch.Tensor], expected: dict, unused_suffix: bool = True) -> None:
    """Every reference term of ``expected`` (named by :func:`reference_term_names`) is in ``terms`` and
    matches to rel 1e-5."""
    names = reference_term_names(expected, unused_suffix)
    assert set(names) <= set(terms)
    for ours, theirs in names.items():
        assert terms[ours].item() == pytest.approx(expected[theirs], rel=1e-5), theirs


def assert_grad_norms(net: nn.Module, expected: dict, rtol: Callable[[str], float] = lambda top: 1e-4) -> None:
    """Per top-level module of ``expected["grad_norms_pre_clip"]``: the number of parameter tensors with a
    gradient, and the float64 gradient norm to ``rtol(top)``."""
    for top, g in expected["grad_norms_pre_clip"].items():
        norm, count = module_grad_norm(getattr(net, top))
        assert count == g["n_param_tensors_with_grad"], top
        assert norm == pytest.approx(g["l2_norm_float64"], rel=rtol(top), abs=0), top


def module_grad_norm(module: nn.Module) -> tuple[float, int]:
    """float64 L2 norm of all gradients of ``module`` and the number of tensors that have one."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0, 0
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))), len(grads)


def loss_batch(ref: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.load(ref / "loss_batch_vi.npy")), torch.from_numpy(np.load(ref / "loss_batch_ir.npy")))


def write_tiny_pairs(root: Path, n: int = 2, size: tuple[int, int] = (32, 32), seed: int = 0) -> Path:
    """``n`` textured colour-VIS / grey-IR pairs in ``root/vi``, ``root/ir`` (high contrast: every
    patch passes the authors' filter)."""
    rng = np.random.default_rng(seed)
    (root / "vi").mkdir(parents=True)
    (root / "ir").mkdir()
    h, w = size
    for i in range(n):
        Image.fromarray(rng.integers(20, 236, (h, w, 3), dtype=np.uint8)).save(root / "vi" / f"{i}.png")
        Image.fromarray(rng.integers(20, 236, (h, w), dtype=np.uint8)).save(root / "ir" / f"{i}.png")
    return root


def simulate_schedule(recipe, cfg) -> list[list[float]]:
    """lr of each of 4 optimisers at the start of every epoch under ``recipe``'s stepping rules."""
    opts = [torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=cfg.lr) for _ in range(4)]
    scheds = recipe.schedulers(opts, cfg)
    table = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": no step is needed here
        for epoch in range(int(cfg.epochs)):
            table.append([o.param_groups[0]["lr"] for o in opts])
            recipe.step_schedulers(scheds, epoch, cfg)
    return table
