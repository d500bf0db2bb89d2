"""Behaviour shared by every registered fusion network."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor, nn

if TYPE_CHECKING:
    from types import ModuleType

    from mlfuse.inference.fuse import FolderReport, FuseOptions


def _pipeline() -> ModuleType:
    """The fusion pipeline (:mod:`mlfuse.inference.fuse`), a layer above the models: the one import
    that runs back up, deferred to the first ``fuse`` call (see the README's Architecture)."""
    from mlfuse.inference import fuse

    return fuse


class FusionModel(nn.Module):
    """Mixin giving every network the user-facing ``fuse`` / ``fuse_folder`` API.

    Subclasses implement ``fusion_forward(structural, functional) -> raw fused B x 1 x H x W``;
    inputs are B x 1 x H x W in [0, 1]. Roles are explicit: structural = visible / MRI,
    functional = infrared / CT / PET / SPECT.
    """

    #: why the network cannot be exported to ONNX (``mlfuse export`` refuses it with this reason), or
    #: ``None`` if it can: e.g. a method computed partly in NumPy, outside the traced graph
    onnx_unsupported: str | None = None
    #: CPU workers a tiled run may use (``None``: torch's thread count); the ``--fast`` copy sets its own
    workers: int | None = None

    def fusion_forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        raise NotImplementedError

    def fuse(self, structural: np.ndarray | str | Path | object, functional: np.ndarray | str | Path | object,
             options: FuseOptions | None = None, **changes: object) -> np.ndarray:
        """Fuse one pair and return the 8-bit result (H x W or H x W x 3). Each input is an image path,
        a numpy array (H x W or H x W x 3), a ``PIL.Image.Image`` or a ``torch.Tensor`` (H x W,
        C x H x W or 1 x C x H x W; uint8, or float in [0, 1]); anything else raises a ``TypeError``
        saying so, and an unusable input a ``ValueError`` (:class:`mlfuse.errors.InputError`).

        Options are those of :func:`mlfuse.inference.fuse.fuse_pair`: a
        :class:`~mlfuse.inference.fuse.FuseOptions`, or its fields as keywords (``color``, ``output_rule``,
        ``precision``, ``tile``, ...).
        """
        return _pipeline().fuse_pair(self, structural, functional, options, **changes)

    def fuse_folder(self, structural_dir: str | Path, functional_dir: str | Path, out_dir: str | Path,
                    **options: object) -> FolderReport:
        """Fuse every pair of two folders (paired by file stem) into ``out_dir``; see
        :func:`mlfuse.inference.fuse.fuse_folder`."""
        return _pipeline().fuse_folder(self, structural_dir, functional_dir, out_dir, **options)
