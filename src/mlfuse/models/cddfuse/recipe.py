"""CDDFuse's two-phase training recipe (``train.py``; ``shared/specs/cddfuse.md`` §4, common §4-5), as data.

* Data: 128 x 128 patches on a stride-200 grid of every training pair with the low-contrast filter
  (:class:`mlfuse.train.patches.PatchDataset`), cut on the fly from plain folders; batch 8, no augmentation.
* 120 epochs: Phase I (epochs 0-39) trains encoder + decoder on reconstruction + decomposition,
  Phase II (40-119) everything on the fusion loss (:mod:`mlfuse.models.cddfuse.losses`).
* One Adam (lr 1e-4) per sub-network and one ``StepLR(20, 0.5)`` each, stepped per epoch; the fusion
  layers' schedulers only in Phase II epochs; any lr <= 1e-6 is reset to 1e-6 after stepping.
* Gradients clipped to L2 norm 0.01 per sub-network stepped in the phase.

Differences from the authors' script, none of which changes the arithmetic of a step: the sample order
is the trainer's seeded permutation (theirs: unseeded shuffle), the last partial batch is dropped
(theirs: kept), no HDF5 file is written. The MIF checkpoint's recipe is unpublished: ``model_options =
{"task": "mif"}`` trains this recipe with a residual-free decoder (an assumption; give medical data).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mlfuse.models.cddfuse import losses as cdd_losses
from mlfuse.train.config import Config
from mlfuse.train.data import collect_pairs, item_rng
from mlfuse.train.patches import PatchDataset
from mlfuse.train.recipe import Recipe, unwrap

#: every logged term, in a fixed order (a phase that does not compute a term logs NaN)
LOG_TERMS = ("phase", "cc_loss_B", "cc_loss_D", "loss_decomp", "ssim_loss_V", "mse_V", "mse_loss_V", "ssim_loss_I",
             "mse_I", "mse_loss_I", "Gradient_loss", "fusionloss", "fusion_loss_in", "fusion_loss_grad")


class CDDFuseFamilyRecipe(Recipe):
    """Two-phase recipe shared by CDDFuse and SFDFuse (and later SMFNet): subclasses set ``name``,
    ``defaults``, the sub-network names (:attr:`ENCODER_DECODER`, :attr:`FUSION`) and :meth:`phase_losses`."""

    #: sub-networks trained in both phases / only in Phase II (attribute names = checkpoint keys)
    ENCODER_DECODER: tuple[str, ...] = ("DIDF_Encoder", "DIDF_Decoder")
    FUSION: tuple[str, ...] = ("BaseFuseLayer", "DetailFuseLayer")
    LOG_TERMS: tuple[str, ...] = LOG_TERMS
    # Phase I leaves the fusion layers without gradients
    find_unused_parameters = True

    def phase(self, epoch: int, cfg: Config) -> int:
        return 1 if epoch < int(cfg.phase1_epochs) else 2

    def modules(self, model: nn.Module) -> list[nn.Module]:
        net = unwrap(model)
        return [getattr(net, name) for name in (*self.ENCODER_DECODER, *self.FUSION)]

    def train_dataset(self, cfg: Config) -> Dataset:
        return PatchDataset(collect_pairs(cfg.data), cfg.patch_size, cfg.patch_stride,
                            threshold=cfg.contrast_threshold, reject_blank=cfg.reject_blank, cache=cfg.patch_cache)

    def optimizers(self, model: nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps,
                                 weight_decay=cfg.weight_decay) for m in self.modules(model)]

    def schedulers(self, optimizers: list[torch.optim.Optimizer], cfg: Config) -> list[Any]:
        return [torch.optim.lr_scheduler.StepLR(o, step_size=int(cfg.step_size), gamma=cfg.gamma) for o in optimizers]

    def step_schedulers(self, schedulers: list[Any], epoch: int, cfg: Config) -> None:
        """Encoder/decoder schedulers every epoch, fusion-layer schedulers in Phase II epochs only, then
        the authors' floor: an lr <= ``lr_floor`` becomes exactly ``lr_floor``."""
        n = len(self.ENCODER_DECODER)
        for i, s in enumerate(schedulers):
            if i < n or self.phase(epoch, cfg) == 2:
                s.step()
        for s in schedulers:
            for group in s.optimizer.param_groups[:1]:
                if group["lr"] <= cfg.lr_floor:
                    group["lr"] = cfg.lr_floor

    def clip_gradients(self, model: nn.Module, epoch: int, cfg: Config) -> None:
        """``clip_grad_norm_(module, clip_norm)`` per sub-network stepped in this phase. In Phase I the
        fusion layers' gradients are cleared, so their optimisers skip them (as the authors never step them)."""
        mods = self.modules(model)
        n = len(self.ENCODER_DECODER)
        stepped = mods if self.phase(epoch, cfg) == 2 else mods[:n]
        for m in stepped:
            torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm=cfg.clip_norm, norm_type=2)
        for m in mods[len(stepped):]:
            for p in m.parameters():
                p.grad = None

    def phase_losses(self, out: dict[str, Tensor], vis: Tensor, ir: Tensor, phase: int, cfg: Config
                     ) -> dict[str, Tensor]:
        if phase == 1:
            return cdd_losses.phase1_losses(out, vis, ir, coeffs=cfg.loss_coeffs, sync=True)
        return cdd_losses.phase2_losses(out, vis, ir, coeffs=cfg.loss_coeffs, sync=True)

    def losses(self, model: nn.Module, batch: dict[str, Tensor], epoch: int, cfg: Config) -> dict[str, Tensor]:
        """The phase's terms; the forward's random draws (SFDFuse's DropPath) come from a torch RNG seeded
        by ``(seed, epoch, first item of the batch)`` inside a fork of the global state, so a resumed run
        draws what an uninterrupted one does."""
        vis, ir = batch["structural"], batch["functional"]
        phase = self.phase(epoch, cfg)
        first = int(batch["index"][0]) if "index" in batch else 0
        cuda = [vis.device.index or 0] if vis.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(int(item_rng(cfg.seed, epoch, first).integers(2**62)))
            out = model(vis, ir, phase=phase)
        terms = self.phase_losses(out, vis, ir, phase, cfg)
        out = {"total": terms.pop("loss_total")}
        nan = torch.tensor(math.nan, device=vis.device)
        for key in self.LOG_TERMS:  # one fixed set of columns for the logs of both phases
            out[key] = torch.tensor(float(phase), device=vis.device) if key == "phase" else terms.get(key, nan)
        return out


class CDDFuseRecipe(CDDFuseFamilyRecipe):
    name = "cddfuse"
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 120,
        "phase1_epochs": 40,
        "batch_size": 8,
        "lr": 1e-4,
        "betas": [0.9, 0.999],
        "adam_eps": 1e-8,
        "weight_decay": 0.0,
        "step_size": 20,
        "gamma": 0.5,
        "lr_floor": 1e-6,
        "clip_norm": 0.01,
        "patch_size": 128,
        "patch_stride": 200,
        "contrast_threshold": 0.1,
        "reject_blank": False,
        "patch_cache": True,
        "loss_coeffs": dict(cdd_losses.COEFFS),
        "out_dir": "runs/cddfuse",
    }


RECIPE = CDDFuseRecipe()  # the card's recipe (mlfuse.models.cddfuse)
