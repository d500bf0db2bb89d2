"""SFDFuse's two-phase training recipe (``train.py``; ``shared/specs/sfdfuse.md`` §3), as data.

CDDFuse's recipe (:class:`mlfuse.models.cddfuse.recipe.CDDFuseFamilyRecipe`: patches 128 / stride 200 with
the contrast filter, batch 8, one Adam at 1e-4 per sub-network, clipping 0.01, the 1e-6 lr floor) with
90 epochs, Phase I = epochs 0-29, ``StepLR(10, 0.5)`` (the floor is reached in epochs 70-89), the decoder
``DIDF_Decoder_Phase``, kornia >= 0.6 SSIM and :mod:`mlfuse.models.sfdfuse.losses`.

The authors' quirks are the defaults and each has a documented switch:
``model_options = {"ir_detail": "ir"}`` reconstructs IR from its own detail feature in Phase I (the
authors feed the visible one); ``fusion_ssim = false`` drops the SSIM term of the Phase II fusion loss
(whether the release used it is unknown). DropPath(0.1) in the four ConvFormers is active in training.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from mlfuse.models.cddfuse.recipe import LOG_TERMS, CDDFuseFamilyRecipe, CDDFuseRecipe
from mlfuse.models.sfdfuse import losses as sfd_losses
from mlfuse.train.config import Config


class SFDFuseRecipe(CDDFuseFamilyRecipe):
    name = "sfdfuse"
    ENCODER_DECODER = ("DIDF_Encoder", "DIDF_Decoder_Phase")
    LOG_TERMS = (*LOG_TERMS, "fusion_loss_ssim", "fusionloss_without_ssim")
    defaults: ClassVar[dict[str, Any]] = {
        **CDDFuseRecipe.defaults,
        "epochs": 90,
        "phase1_epochs": 30,
        "step_size": 10,
        "fusion_ssim": True,
        "loss_coeffs": dict(sfd_losses.COEFFS),
        "out_dir": "runs/sfdfuse",
    }

    def phase_losses(self, out: dict[str, Tensor], vis: Tensor, ir: Tensor, phase: int, cfg: Config
                     ) -> dict[str, Tensor]:
        if phase == 1:
            return sfd_losses.phase1_losses(out, vis, ir, coeffs=cfg.loss_coeffs, sync=True)
        return sfd_losses.phase2_losses(out, vis, ir, fusion_ssim=bool(cfg.fusion_ssim), coeffs=cfg.loss_coeffs,
                                        sync=True)


RECIPE = SFDFuseRecipe()  # the card's recipe (mlfuse.models.sfdfuse)
