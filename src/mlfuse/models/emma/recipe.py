"""EMMA's training recipe (``train_Fusion.py``, ``train_AiAv.py``; ``shared/specs/emma.md`` §3), as data.

One recipe, three stages chosen by the ``stage`` setting:

* ``stage="fuser"`` (default; spec §3.2): the U-Fuser from PyTorch's default init on CDDFuse-pipeline
  patches (128 x 128, stride 200, contrast filter; :class:`mlfuse.train.patches.PatchDataset`), batch 4,
  120 epochs, one Adam (lr 1e-4, no weight decay), ``StepLR(20, 0.5)`` per epoch, **no clipping and no
  lr floor** (quirk 11). Each step computes the equivariant loss of :mod:`mlfuse.models.emma.losses`
  through the frozen pseudo-sensing networks ``ai_weights`` / ``av_weights`` (the authors' ``Ai.pth`` /
  ``Av.pth`` or the ``model.safetensors`` of a stage ``ai`` / ``av`` run), kept in eval mode. The three
  shift offsets of a step come from Python's ``random`` (the authors' population order) seeded by
  ``(shift_seed or seed, epoch, first item)``, so runs are reproducible and resume exactly (the authors
  never seed it, quirk 6).
* ``stage="ai"`` / ``stage="av"`` (spec §3.1): a UNet5 (train mode: BatchNorm on batch statistics) maps
  fused patches back to the infrared / visible patch, ``MSE``, Adam(1e-4), ``StepLR(sensing_step_size=10,
  0.5)``. The fused inputs come from ``generators`` (:mod:`mlfuse.models.emma.data`): any registered
  method, or folders of existing fused results. The authors' stage settings are 40 epochs and batch 64:
  ``mlfuse train emma --set stage=ai --epochs 40 --batch-size 64 --data MSRS/train``. The run's
  ``model.safetensors`` is a plain UNet5 state_dict.

Differences from the authors' scripts that do not change a step's arithmetic: the trainer's seeded sample
order (theirs: unseeded shuffle), the last partial batch dropped, no HDF5 files, configurable paths.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from mlfuse.errors import MLFuseError
from mlfuse.models.emma import losses as emma_losses
from mlfuse.models.emma.data import PseudoSensingPatches
from mlfuse.models.emma.network import UNet5, load_unet5
from mlfuse.train.config import Config
from mlfuse.train.data import collect_pairs, item_rng
from mlfuse.train.patches import PatchDataset
from mlfuse.train.recipe import Recipe

STAGES = ("fuser", "ai", "av")
#: logged terms of the U-Fuser stage (losses.json names) and of the pseudo-sensing stages
FUSER_TERMS = ("term_V", "term_V_l1_int", "term_V_l1_grad", "term_I", "term_I_l1_int", "term_I_l1_grad",
               "term_equivariance", "term_equivariance_l1_int", "term_equivariance_l1_grad")


class EMMARecipe(Recipe):
    name = "emma"
    defaults: ClassVar[dict[str, Any]] = {
        "stage": "fuser",
        "epochs": 120,
        "batch_size": 4,
        "lr": 1e-4,
        "betas": [0.9, 0.999],
        "adam_eps": 1e-8,
        "weight_decay": 0.0,
        "step_size": 20,
        "sensing_step_size": 10,
        "gamma": 0.5,
        "patch_size": 128,
        "patch_stride": 200,
        "contrast_threshold": 0.1,
        "reject_blank": False,
        "patch_cache": True,
        "ai_weights": "",
        "av_weights": "",
        "shift_seed": None,
        "rotations": list(emma_losses.ROTATIONS),
        "n_shifts": emma_losses.N_SHIFTS,
        "loss_coeffs": dict(emma_losses.COEFFS),
        # stage ai/av: where the fused inputs come from (mlfuse's own method and weights by default)
        "generators": [{"model": "mlfuse", "weights": "default"}],
        "out_dir": "runs/emma",
    }

    def __init__(self) -> None:
        self._sensing: dict[tuple[str, str], nn.Module] = {}

    # -- stage -------------------------------------------------------------------------------------
    @staticmethod
    def stage(cfg: Config) -> str:
        stage = str(cfg.stage)
        if stage not in STAGES:
            raise MLFuseError(f"emma: unknown stage '{stage}' (choose from {', '.join(STAGES)})")
        return stage

    def build_model(self, cfg: Config) -> nn.Module:
        if self.stage(cfg) == "fuser":
            return super().build_model(cfg)
        return UNet5()

    def train_dataset(self, cfg: Config) -> Dataset:
        pairs = collect_pairs(cfg.data)
        stage = self.stage(cfg)
        if stage == "fuser":
            return PatchDataset(pairs, cfg.patch_size, cfg.patch_stride, threshold=cfg.contrast_threshold,
                                reject_blank=cfg.reject_blank, cache=cfg.patch_cache)
        if cfg.val:
            raise MLFuseError(f"emma stage '{stage}' trains a pseudo-sensing network: validation fusions do not "
                              "apply (remove --val)")
        return PseudoSensingPatches(pairs, cfg.generators, "ir" if stage == "ai" else "vis", cfg.patch_size,
                                    cfg.patch_stride, threshold=cfg.contrast_threshold,
                                    reject_blank=cfg.reject_blank, device=cfg.device)

    def optimizers(self, model: nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.adam_eps,
                                 weight_decay=cfg.weight_decay)]

    def schedulers(self, optimizers: list[torch.optim.Optimizer], cfg: Config) -> list[Any]:
        step = cfg.step_size if self.stage(cfg) == "fuser" else cfg.sensing_step_size
        return [torch.optim.lr_scheduler.StepLR(o, step_size=int(step), gamma=cfg.gamma) for o in optimizers]

    # -- pseudo-sensing networks for the U-Fuser stage ---------------------------------------------
    def sensing_networks(self, cfg: Config, device: torch.device) -> tuple[nn.Module, nn.Module]:
        """(A_i, A_v) from ``ai_weights`` / ``av_weights``, frozen, eval mode, loaded once per device."""
        nets = []
        for key in ("ai_weights", "av_weights"):
            path = str(cfg.get(key) or "")
            if not path:
                raise MLFuseError(f"emma stage 'fuser' needs {key}=FILE (the authors' {key[:2].capitalize()}.pth, "
                                  "or model.safetensors of a `--set stage=" + key[:2] + "` run)")
            cache_key = (path, str(device))
            if cache_key not in self._sensing:
                self._sensing[cache_key] = load_unet5(path, device)
            nets.append(self._sensing[cache_key])
        return nets[0], nets[1]

    def shifts(self, cfg: Config, epoch: int, first: int, height: int, width: int) -> tuple[list[int], list[int]]:
        """The step's shift offsets: Python ``random`` seeded by ``(shift_seed or seed, epoch, first item)``."""
        seed = cfg.shift_seed if cfg.shift_seed is not None else cfg.seed
        rng = random.Random(int(item_rng(int(seed), epoch, first).integers(2**62)))
        return emma_losses.draw_shifts(rng, height, width, int(cfg.n_shifts))

    def losses(self, model: nn.Module, batch: dict[str, Tensor], epoch: int, cfg: Config) -> dict[str, Tensor]:
        first = int(batch["index"][0]) if "index" in batch else 0
        if self.stage(cfg) != "fuser":
            return {"total": emma_losses.pseudo_sensing_loss(model(batch["input"]), batch["target"])}
        vis, ir = batch["structural"], batch["functional"]
        a_i, a_v = self.sensing_networks(cfg, vis.device)
        rows, cols = self.shifts(cfg, epoch, first, *vis.shape[-2:])
        terms = emma_losses.fusion_losses(model, a_i, a_v, ir, vis, rows, cols, coeffs=cfg.loss_coeffs,
                                          rotations=cfg.rotations)
        return {"total": terms["loss_total"], **{k: terms[k] for k in FUSER_TERMS}}


RECIPE = EMMARecipe()  # the card's recipe (mlfuse.models.emma)
