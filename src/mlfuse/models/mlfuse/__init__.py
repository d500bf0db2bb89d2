"""MLFuse (Jia et al., multi-level fusion of infrared/visible and medical images): the network,
its model card and weight releases. Spec: ``shared/specs/mlfuse.md``."""

from mlfuse.models.mlfuse.network import MLFNet
from mlfuse.models.mlfuse.recipe import RECIPE
from mlfuse.models.registry import ModelCard, register_model
from mlfuse.weights.releases import MLFUSE_OWN_V1 as OWN_RELEASE
from mlfuse.weights.releases import MLFUSE_OWN_V2 as OWN_V2_RELEASE
from mlfuse.weights.releases import MLFUSE_PAPER as PAPER_RELEASE

CARD = register_model(ModelCard(
    name="mlfuse",
    builder=MLFNet,
    paper="MLFuse: multi-level fusion network (jialei-sc/MLFuse)",
    min_size=(MLFNet.MIN_SIZE, MLFNet.MIN_SIZE),
    size_multiple=1,
    output_rule="minmax",
    releases=(OWN_RELEASE, OWN_V2_RELEASE, PAPER_RELEASE),
    # mlfuse's own weights ship in the package, so `mlfuse fuse` works offline out of the box.
    default_weights=OWN_RELEASE.name,
    notes="input 1 = visible/MRI, input 2 = infrared/CT/PET/SPECT; any H, W >= 15",
    recipe=RECIPE,
))

__all__ = ["CARD", "OWN_RELEASE", "OWN_V2_RELEASE", "PAPER_RELEASE", "MLFNet"]
