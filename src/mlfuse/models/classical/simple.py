"""Pixel-wise baselines: the average and the maximum of the two sources.

The two oldest fusion rules, used as lower baselines in every survey, e.g. Li, Kang, Fang, Hu,
Benediktsson, "Pixel-level image fusion: a survey of the state of the art", Information Fusion 33
(2017) 100-112, section 3.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlfuse.models.classical.base import ClassicalFusion


class AverageFusion(ClassicalFusion):
    """F = (A + B) / 2: keeps the mean intensity of both sources, halves the contrast of anything
    present in one only."""

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        return (structural + functional) * 0.5


class MaxFusion(ClassicalFusion):
    """F = max(A, B): keeps bright (hot) targets at full contrast, loses dark detail of either."""

    def fuse_tensors(self, structural: Tensor, functional: Tensor) -> Tensor:
        return torch.maximum(structural, functional)
