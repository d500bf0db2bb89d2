"""MLFuse's training recipe (spec ``mlfuse.md`` sections 7-8): the authors' defaults as data.

Adam (lr 1e-4, weight decay 5e-5 coupled L2 on every parameter), cosine annealing over the epochs
stepped once per epoch (eta_min 0), batch 16, 501 epochs, one random 128 x 128 crop at the same place
in both images and in the functional image's VSM saliency map, no other augmentation; the model stays
in train mode (batch statistics). Losses: :mod:`mlfuse.models.mlfuse.losses` with weights
0.3 / 3 / 0.5 / 1. Unlike the authors' code, pairs are sorted and every crop is seeded.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mlfuse.data.vsm import vsm
from mlfuse.models.mlfuse.losses import DEFAULT_WEIGHTS, mlfuse_losses
from mlfuse.train.config import Config
from mlfuse.train.data import PairCropDataset, collect_pairs
from mlfuse.train.recipe import Recipe, register_recipe


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
    }

    def train_dataset(self, cfg: Config) -> Dataset:
        pairs = collect_pairs(cfg.data)
        return PairCropDataset(pairs, cfg.crop, cfg.seed, extras={"saliency": _functional_saliency})

    def optimizers(self, model: nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)]

    def schedulers(self, optimizers: list[torch.optim.Optimizer], cfg: Config) -> list:
        return [torch.optim.lr_scheduler.CosineAnnealingLR(optimizers[0], T_max=int(cfg.epochs), eta_min=cfg.eta_min)]

    def losses(self, model: nn.Module, batch: dict[str, Tensor], epoch: int, cfg: Config) -> dict[str, Tensor]:
        x, y = batch["structural"], batch["functional"]
        return mlfuse_losses(model(x, y), x, y, batch["saliency"], cfg.loss_weights)


RECIPE = register_recipe(MLFuseRecipe())
