"""Classical (parameter-free) fusion baselines, registered like the networks (``needs_weights=False``).

Each works on any size (1 x 1 included), on colour through the common pipeline (the luma is fused,
the chroma restored) and uses the ``clamp`` output rule: the raw result is already an image in
[0, 1], so it is not stretched. Every module docstring cites the method's paper.
"""

from mlfuse.models.classical.dwt import DWTFusion
from mlfuse.models.classical.gff import GuidedFilterFusion
from mlfuse.models.classical.pyramid import LaplacianPyramidFusion
from mlfuse.models.classical.simple import AverageFusion, MaxFusion
from mlfuse.models.classical.vsm_wls import VSMWLSFusion
from mlfuse.models.registry import ModelCard, register_model

_COMMON = {"output_rule": "clamp", "needs_weights": False}

CARDS = tuple(register_model(card) for card in (
    ModelCard(name="average", builder=AverageFusion, paper="pixel average (baseline)",
              notes="F = (A + B) / 2", **_COMMON),
    ModelCard(name="max", builder=MaxFusion, paper="pixel maximum (baseline)", notes="F = max(A, B)", **_COMMON),
    ModelCard(name="laplacian", builder=LaplacianPyramidFusion,
              paper="Laplacian pyramid fusion (Burt & Adelson, IEEE Trans. Commun. 1983; SPIE 1985)",
              notes="max-abs details, averaged base; levels=4 (create_model('laplacian', levels=...))", **_COMMON),
    ModelCard(name="dwt", builder=DWTFusion,
              paper="DWT fusion (Li, Manjunath & Mitra, Graphical Models and Image Processing 1995)",
              notes="PyWavelets db2, 3 levels, max-abs details, averaged approximation", **_COMMON),
    ModelCard(name="gff", builder=GuidedFilterFusion,
              paper="Image fusion with guided filtering (Li, Kang & Hu, IEEE TIP 2013)",
              notes="r1=45, eps1=0.3, r2=7, eps2=1e-6 (the paper's)", **_COMMON),
    ModelCard(name="vsm_wls", builder=VSMWLSFusion,
              paper="VSM-WLS (Ma, Zhou, Wang & Zong, Infrared Physics & Technology 2017)",
              notes="structural = visible, functional = infrared (the method is asymmetric)", **_COMMON),
))

__all__ = ["CARDS", "AverageFusion", "DWTFusion", "GuidedFilterFusion", "LaplacianPyramidFusion", "MaxFusion",
           "VSMWLSFusion"]
