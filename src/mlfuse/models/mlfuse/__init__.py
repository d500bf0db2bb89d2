"""MLFuse (Jia et al., multi-level fusion of infrared/visible and medical images): the network,
its model card and weight releases. Spec: ``shared/specs/mlfuse.md``."""

from mlfuse.models.mlfuse.network import MLFNet
from mlfuse.registry import ModelCard, register_model
from mlfuse.weights.store import WeightsRelease, register_release

PAPER_RELEASE = register_release(WeightsRelease(
    name="mlfuse-paper",
    url="https://raw.githubusercontent.com/jialei-sc/MLFuse/f40dccbbca79de063dbec44169beacfffbca7bc4/model/model_fuse.pth",
    sha256="9b3133d60710d5dc1b73777d2719de6d5940e9140140dead58a06d421fd489ed",
    blob="c1d51401b3564e66023d9e445f0279bfe2bbb48c",
    size=490_838,
    filename="model_fuse.pth",
    description="MLFuse authors' released checkpoint (epoch 500, RoadScene + Harvard mixture)",
    model="mlfuse",
    source="github.com/jialei-sc/MLFuse @ f40dccb, model/model_fuse.pth",
    trained_on="RoadScene + Harvard medical (the authors' unpublished split)",
))

OWN_RELEASE = register_release(WeightsRelease(
    name="mlfuse-own-v1",
    url="",
    sha256="6a8f016de59e14c67d5a51e9ade5a614d560cb93ebe1a3b87286a8b1a9f93e0d",
    filename="mlfuse-own-v1.safetensors",
    description="mlfuse's own MLFuse weights (mlfuse train, authors' recipe, short CPU schedule; see the model card)",
    packaged="models/mlfuse/weights/mlfuse-own-v1.safetensors",
    model="mlfuse",
    source="this project (`mlfuse train`), shipped in the package",
    trained_on="RoadScene (180 DIDFuse training names) + Harvard train splits",
))

CARD = register_model(ModelCard(
    name="mlfuse",
    builder=MLFNet,
    paper="MLFuse: multi-level fusion network (jialei-sc/MLFuse)",
    min_size=(MLFNet.MIN_SIZE, MLFNet.MIN_SIZE),
    size_multiple=1,
    output_rule="minmax",
    releases=(OWN_RELEASE.name, PAPER_RELEASE.name),
    # mlfuse's own weights ship in the package, so `mlfuse fuse` works offline out of the box.
    default_weights=OWN_RELEASE.name,
    notes="input 1 = visible/MRI, input 2 = infrared/CT/PET/SPECT; any H, W >= 15",
))

__all__ = ["CARD", "OWN_RELEASE", "PAPER_RELEASE", "MLFNet"]

from mlfuse.models.mlfuse import recipe as _recipe  # noqa: E402,F401  (registers the training recipe)
