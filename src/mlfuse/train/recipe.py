"""A method's training recipe: model, data, optimisers, schedules and losses, as data + a few hooks.

One :class:`~mlfuse.train.trainer.Trainer` runs every recipe (the BasicSR idea: the loop, checkpoints,
resume, DDP and logging live once; a method only says what differs). A method defines its recipe in
``mlfuse/models/<method>/recipe.py`` and puts it on its model card (``ModelCard.recipe``); look one up
with :func:`mlfuse.models.registry.get_recipe`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mlfuse.train.config import Config

if TYPE_CHECKING:
    from mlfuse.models.registry import ModelCard


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class Recipe:
    """Subclass per method. ``defaults`` are the authors' hyper-parameters (config keys)."""

    name: str = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: DDP flag, True when a training phase leaves some sub-modules without gradients
    find_unused_parameters: bool = False
    #: named bundles of settings chosen by one setting, e.g. ``{"schedule": {"cpu": {"lr": 1e-3, ...}}}``
    #: (see :func:`mlfuse.train.config.build_config`); the recipe's defaults are the authors' bundle
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    #: the network's constructor; registering the card that carries the recipe sets it to the card's builder
    builder: Callable[..., nn.Module] | None = None
    #: the card that carries the recipe (set when it is registered); :meth:`build` puts it on the model
    card: ModelCard | None = None

    def build(self, cfg: Config) -> nn.Module:
        """The network to train, carrying its card (``model.card``) as a built model does; what the trainer calls."""
        model = self.build_model(cfg)
        model.card = self.card
        return model

    def build_model(self, cfg: Config) -> nn.Module:
        """The untrained network for ``cfg`` (override for networks other than the card's, e.g. a stage's)."""
        if self.builder is None:
            raise TypeError(f"recipe '{self.name}' has no builder: put it on a registered ModelCard")
        return self.builder(**cfg.model_options)

    def train_dataset(self, cfg: Config) -> Dataset:
        raise NotImplementedError

    def optimizers(self, model: nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def schedulers(self, optimizers: list[torch.optim.Optimizer], cfg: Config) -> list[Any]:
        return []

    def iteration_start(self, optimizers: list[torch.optim.Optimizer], epoch: int, iteration: int,
                        steps_per_epoch: int, cfg: Config) -> None:
        """Called before every optimiser step (a schedule that sets the learning rate per iteration, as
        a pure function of the position, so a resumed run sets the same values); default: nothing."""

    def step_schedulers(self, schedulers: list[Any], epoch: int, cfg: Config) -> None:
        """Called once at the end of every epoch (``epoch`` = the epoch just finished)."""
        for s in schedulers:
            s.step()

    def losses(self, model: nn.Module, batch: dict[str, Tensor], epoch: int, cfg: Config) -> dict[str, Tensor]:
        """Loss terms for one batch; ``"total"`` is backpropagated, every entry is logged. ``model`` may
        be DDP-wrapped: run the forward through ``model(...)``."""
        raise NotImplementedError

    def clip_gradients(self, model: nn.Module, epoch: int, cfg: Config) -> None:
        """Between backward and the optimiser step (e.g. ``clip_grad_norm_``); default: nothing."""

    def finalize(self, model: nn.Module, cfg: Config, dataset: Dataset) -> dict[str, str]:
        """Once, after the last epoch, before the final weights are written (rank 0, the bare
        network, the run's training set). May adjust the weights; returns notes for the weights' metadata, with
        ``"changed": "true"`` when it changed them (validation is then run again). Default: nothing."""
        return {}
