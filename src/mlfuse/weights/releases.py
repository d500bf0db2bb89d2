"""The method authors' published checkpoints as named releases (issue 16).

None of the authors' repositories carries a licence, so mlfuse never redistributes these files: each
release is the raw file at a pinned commit of the authors' repository, downloaded by
``mlfuse weights fetch NAME`` and verified by the git blob id that the repository publishes for it (no
sha256 is published; the sha256 is recorded in the cache after the blob id matched). The exact sizes
are not published either, so each download is capped at four times the checkpoint's fp32 size computed
from the parameter counts in ``shared/specs`` (the cap only stops a runaway server; the blob id decides).

mlfuse's own releases (``mlfuse-own-*``, packaged in the package as safetensors with a model card) and
``mlfuse-paper`` (the MLFuse authors' file, with its published sha256 and size) are declared here too:
``mlfuse/weights/__init__.py`` imports this module, so every release is known without importing a model.
"""

from __future__ import annotations

from mlfuse.weights.store import WeightsRelease, register_release

_RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
_MIB = 1 << 20


def _authors(name: str, *, repo: str, commit: str, path: str, blob: str, model: str, tasks: tuple[str, ...],
             max_mib: int, description: str, trained_on: str) -> WeightsRelease:
    return register_release(WeightsRelease(
        name=name, url=_RAW.format(repo=repo, commit=commit, path=path), sha256="", blob=blob,
        filename=path.rsplit("/", 1)[-1], description=description, model=model, tasks=tasks,
        max_bytes=max_mib * _MIB, source=f"github.com/{repo} @ {commit[:7]}, {path}", trained_on=trained_on,
    ))


_CDDFUSE = dict(repo="Zhaozixiang1228/MMIF-CDDFuse", commit="fd8da1f39d8d403b7343e577bd5a30cba38c7b7b")

CDDFUSE_IVF = _authors(
    "cddfuse-ivf", **_CDDFUSE, path="models/CDDFuse_IVF.pth", blob="d2794226bd48961132111bceff89ce3c955b3985",
    model="cddfuse", tasks=("ivf", "mif-ivfckpt"), max_mib=20,  # 1,188,272 parameters: 4.8 MB fp32
    description="CDDFuse authors' IVF checkpoint (test_IVF.py; also their MIF script's IVF-checkpoint mode)",
    trained_on="MSRS train (infrared-visible)",
)
CDDFUSE_MIF = _authors(
    "cddfuse-mif", **_CDDFUSE, path="models/CDDFuse_MIF.pth", blob="072e39abce5979c0568ee510713c123c28160f12",
    model="cddfuse", tasks=("mif",), max_mib=20,
    description="CDDFuse authors' MIF checkpoint (test_MIF.py, no residual)",
    trained_on="medical pairs (the authors did not release that training script)",
)
EMMA = _authors(
    "emma", repo="Zhaozixiang1228/MMIF-EMMA", commit="9983ca2f627588cd001ed08e21eadf1ab5c48beb",
    path="model/EMMA.pth", blob="46f382475767323b83f3f7f52dc2bed0ac6b7476",
    model="emma", tasks=(), max_mib=24,  # 1,517,657 parameters: 6.1 MB fp32
    description="EMMA authors' U-Fuser (one checkpoint for IVF and MIF)",
    trained_on="MSRS train (infrared-visible), with pseudo-sensing modules",
)
SFDFUSE = _authors(
    "sfdfuse", repo="zxp771/SFDFuse", commit="cdb349b1813ef0dd9d7364530ef9d8133ac3fa62",
    path="models/SFDFuse_best.pth", blob="ac8df9e497bba0d0390a47c5bdf0f311922ff8eb",
    model="sfdfuse", tasks=(), max_mib=40,  # 2,327,950 parameters: 9.3 MB fp32
    description="SFDFuse authors' best checkpoint (infrared-visible)",
    trained_on="MSRS train (infrared-visible)",
)
SMFNET_IVF = _authors(
    "smfnet-ivf", repo="Abraham-Einstein/SMFNet", commit="5097711d29c0adb515d12bd366d4e56536dbbc2a",
    path="models/model_VIF.pth", blob="2196069a9d0c939a6fb7dac3373380cac6ffea4c",
    model="smfnet", tasks=(), max_mib=52,  # 3,148,818 parameters: 12.6 MB fp32
    description="SMFNet authors' infrared-visible checkpoint (the README's model_IVF.pth)",
    trained_on="MSRS train (infrared-visible)",
)

AUTHORS_RELEASES = (CDDFUSE_IVF, CDDFUSE_MIF, EMMA, SFDFUSE, SMFNET_IVF)

MLFUSE_PAPER = register_release(WeightsRelease(
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

MLFUSE_OWN_V1 = register_release(WeightsRelease(
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

MLFUSE_OWN_V2 = register_release(WeightsRelease(
    name="mlfuse-own-v2",
    url="",
    sha256="42896c8ce5e5850cc2b94d25d25f64e920f981c24ac6067c973bcc64b6fa32d4",
    filename="mlfuse-own-v2.safetensors",
    description="mlfuse's own MLFuse weights, authors' losses with the `schedule=cpu` variant (60 epochs, 3,180 steps; "
                "see the model card)",
    packaged="models/mlfuse/weights/mlfuse-own-v2.safetensors",
    model="mlfuse",
    source="this project (`mlfuse train`, benchmarks/runs/mlfuse-own-v2), shipped in the package",
    trained_on="RoadScene (180 DIDFuse training names) + Harvard train splits",
))
