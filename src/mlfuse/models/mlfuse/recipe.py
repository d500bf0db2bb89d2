"""MLFuse's training recipe (spec ``mlfuse.md`` sections 7-8): the authors' defaults as data.

Adam (lr 1e-4, weight decay 5e-5 coupled L2 on every parameter), cosine annealing over the epochs
stepped once per epoch (eta_min 0), batch 16, 501 epochs, one random 128 x 128 crop at the same place
in both images and in the functional image's VSM saliency map, no other augmentation; the model stays
in train mode (batch statistics). Losses: :mod:`mlfuse.models.mlfuse.losses` with weights
0.3 / 3 / 0.5 / 1. Unlike the authors' code, pairs are sorted and every crop is seeded.

``schedule`` names the optimisation schedule; the losses, their weights, the data and the network
are the authors' in every schedule:

* ``authors`` (default): the schedule above, 501 epochs (26,553 steps at batch 16 on mlfuse's 853 training
  pairs; the authors' own run took 13,527 on about 440 pairs, spec section 8).
* ``cpu``: for a CPU budget of a few thousand steps. Adam's steps at lr 1e-4 are too small to get
  anywhere in ~3k steps (mlfuse-own-v1's notes), so the peak lr is 1e-3, reached by a linear warm-up
  over the first 2 epochs (Adam's moment estimates are noisy at first), then a cosine decay *per
  iteration* to 1e-5 at the end (a per-epoch cosine over few epochs moves in coarse jumps). 60 epochs.
  ``benchmarks/results/train_schedule.md`` records what it was measured against.

``loss_path``: ``fast`` (default) or ``reference``; the same losses and gradients to float rounding
(:mod:`mlfuse.models.mlfuse.losses`).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mlfuse.data.vsm import vsm
from mlfuse.models.mlfuse.losses import DEFAULT_WEIGHTS, mlfuse_losses
from mlfuse.train.config import Config
from mlfuse.train.data import PairCropDataset, collect_pairs
from mlfuse.train.recipe import Recipe


def _functional_saliency(structural: np.ndarray, functional: np.ndarray) -> np.ndarray:
    return vsm(functional)


class MLFuseRecipe(Recipe):
    name = "mlfuse"
    find_unused_parameters = True  # EdgNet.conv_dilation is in the checkpoint but not in forward
    defaults: ClassVar[dict[str, Any]] = {
        "epochs": 501,
        "batch_size": 16,
        "lr": 1e-4,
        "weight_decay": 5e-5,
        "betas": [0.9, 0.999],
        "eta_min": 0.0,
        "crop": 128,
        "loss_weights": dict(DEFAULT_WEIGHTS),
        "out_dir": "runs/mlfuse",
        # mlfuse's addition, a no-op on the authors' checkpoint: see MLFuseRecipe.finalize
        "orient_output": True,
        "schedule": "authors",     # authors | cpu (see the module docstring)
        "warmup_epochs": 0.0,      # linear warm-up of the per-iteration schedules (cpu)
        "loss_path": "fast",       # fast | reference: same values to float rounding
    }
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "schedule": {
            "authors": {},
            "cpu": {"epochs": 60, "lr": 1e-3, "eta_min": 1e-5, "warmup_epochs": 2.0},
        },
    }

    def train_dataset(self, cfg: Config) -> Dataset:
        pairs = collect_pairs(cfg.data)
        return PairCropDataset(pairs, cfg.crop, cfg.seed, extras={"saliency": _functional_saliency})

    def optimizers(self, model: nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)]

    def schedulers(self, optimizers: list[torch.optim.Optimizer], cfg: Config) -> list:
        if cfg.schedule == "authors":
            return [torch.optim.lr_scheduler.CosineAnnealingLR(optimizers[0], T_max=int(cfg.epochs),
                                                               eta_min=cfg.eta_min)]
        return []  # per-iteration schedules set the lr in iteration_start

    def iteration_start(self, optimizers: list[torch.optim.Optimizer], epoch: int, iteration: int,
                        steps_per_epoch: int, cfg: Config) -> None:
        if cfg.schedule == "authors":
            return
        lr = warmup_cosine_lr(epoch + iteration / steps_per_epoch, int(cfg.epochs), float(cfg.warmup_epochs),
                              float(cfg.lr), float(cfg.eta_min))
        for o in optimizers:
            for group in o.param_groups:
                group["lr"] = lr

    def losses(self, model: nn.Module, batch: dict[str, Tensor], epoch: int, cfg: Config) -> dict[str, Tensor]:
        x, y = batch["structural"], batch["functional"]
        return mlfuse_losses(model(x, y), x, y, batch["saliency"], cfg.loss_weights, path=cfg.loss_path)


    def finalize(self, model: nn.Module, cfg: Config, dataset: Dataset) -> dict[str, str]:
        """Give the fused output the sources' polarity.

        The only loss on the fused output is SSIM on the raw tanh output, and SSIM(x, -f) differs
        from SSIM(x, f) only through C1 and C2 (both the luminance and the structure factor change
        sign): training converges to f or to -f depending on the initialisation, and -f min-max
        stretched is a photographic negative. MLFuse's head is ``tanh(conv1x1(.))`` and tanh is
        odd, so negating that 1x1 conv turns f into exactly -f. Polarity is measured in eval mode as
        the mean correlation of f with (x + y) / 2 over the first 32 training crops (seeded); the
        authors' checkpoint has positive polarity, so this changes nothing there.
        """
        if not cfg.orient_output:
            return {}
        dataset.set_epoch(0)  # the first 32 crops of epoch 0, whatever epoch training ended in
        items = [dataset[i] for i in range(min(32, len(dataset)))]
        x = torch.stack([it["structural"] for it in items])
        y = torch.stack([it["functional"] for it in items])
        polarity = output_polarity(model, x, y)
        if polarity >= 0:
            return {"output_polarity": f"{polarity:.4f}", "changed": "false"}
        head = model.outc.conv
        with torch.no_grad():
            head.weight.neg_()
            head.bias.neg_()
        return {"output_polarity": f"{polarity:.4f} (negated the output head)", "changed": "true"}


def warmup_cosine_lr(position: float, epochs: int, warmup: float, peak: float, floor: float) -> float:
    """Learning rate at ``position`` epochs into a run of ``epochs``: linear from ``peak / warmup-steps``
    up to ``peak`` over ``warmup`` epochs, then a cosine from ``peak`` down to ``floor`` at the end
    (Loshchilov & Hutter 2017, SGDR without restarts; warm-up as Goyal et al. 2017)."""
    if warmup > 0 and position < warmup:
        return peak * max(position, 1e-3 * warmup) / warmup
    span = max(epochs - warmup, 1e-12)
    t = min(max((position - warmup) / span, 0.0), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def output_polarity(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Mean over the batch of corr(f, (x + y) / 2), the fused output in eval mode."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            f = model(x, y)[0].flatten(1)
    finally:
        model.train(was)
    t = ((x + y) / 2).flatten(1)
    f, t = f - f.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    corr = (f * t).sum(1) / (f.norm(dim=1) * t.norm(dim=1)).clamp_min(1e-12)
    return float(corr.mean())


RECIPE = MLFuseRecipe()  # the card's recipe (mlfuse.models.mlfuse)
