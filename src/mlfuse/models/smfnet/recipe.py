"""SMFNet's two-phase training recipe (``train.py``; ``shared/specs/smfnet.md`` §3, common §4-5), as data.

CDDFuse's recipe (:class:`mlfuse.models.cddfuse.recipe.CDDFuseFamilyRecipe`: the CDDFuse patch set, 128 /
stride 200 with the contrast filter; one Adam at 1e-4 per sub-network; ``StepLR(20, 0.5)``; the 1e-6 lr
floor; clipping 0.01 per stepped sub-network) with the authors' differences:

* batch 6; five sub-networks: the graph model is trained and scheduled with the encoder and decoder
  (every epoch, both phases), the two fusion layers only in Phase II (epochs 40-119);
* the losses of :mod:`mlfuse.models.smfnet.losses`.

``faithful = true`` (default) keeps the authors' loss bugs for exact reproduction (the decomposition term is
a gradient-free constant, Phase II uses cc_D twice, the constant Lovász term); ``faithful = false`` corrects
them (differentiable decomposition loss with cc_G in Phase II, no segmentation term). The graph's
interleaved gates are an architecture choice: ``model_options = {"interleaved_gates": false}``.
The authors seed only CUDA (``torch.cuda.manual_seed(2025)``); here the trainer's ``seed`` seeds everything.
Under DDP the graph's BatchNorm layers use global-batch statistics (SyncBatchNorm on CUDA), as the authors' single
process); the faithful correlations are per-rank constants (they carry no gradient, so only the logged values
differ from a single-process run), the fixed ones are global-batch means.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from mlfuse.models.cddfuse.recipe import CDDFuseFamilyRecipe, CDDFuseRecipe
from mlfuse.models.smfnet import losses as smf_losses
from mlfuse.train.config import Config

LOG_TERMS = ("phase", "cc_loss_B", "cc_loss_D", "cc_loss_G", "loss_decomp", "ssim_loss_V", "seg_loss_V",
             "sobel_l1_V", "mse_loss_V", "ssim_loss_I", "gram_mse_I", "sobel_l1_I", "mse_loss_I", "Gradient_loss",
             "fusionloss", "fusion_loss_in", "fusion_loss_grad")


class SMFNetRecipe(CDDFuseFamilyRecipe):
    name = "smfnet"
    #: stepped (and scheduled every epoch) in both phases; the fusion layers only in Phase II
    ENCODER_DECODER = ("DIDF_Encoder", "DIDF_Decoder", "GraphModel")
    LOG_TERMS = LOG_TERMS
    defaults: ClassVar[dict[str, Any]] = {
        **CDDFuseRecipe.defaults,
        "batch_size": 6,
        "faithful": True,
        "loss_coeffs": dict(smf_losses.COEFFS),
        "out_dir": "runs/smfnet",
    }

    def phase_losses(self, out: dict[str, Tensor], vis: Tensor, ir: Tensor, phase: int, cfg: Config
                     ) -> dict[str, Tensor]:
        fn = smf_losses.phase1_losses if phase == 1 else smf_losses.phase2_losses
        return fn(out, vis, ir, faithful=bool(cfg.faithful), coeffs=cfg.loss_coeffs, sync=True)


RECIPE = SMFNetRecipe()  # the card's recipe (mlfuse.models.smfnet)
