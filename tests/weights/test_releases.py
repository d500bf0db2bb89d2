"""Every seed checkpoint by name (issue 16): each release resolves, downloads over loopback, verifies and
fuses, knowing its model and task; a checkpoint tells what it is (`weights inspect`, one-line errors naming
the method); packaged and installed release names work in create_model (issue 13.4).

The authors' files cannot be downloaded here: each release is pointed at a loopback server serving a
seeded random checkpoint in that release's own layout, with the blob id the test computes."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import mlfuse
from mlfuse.cli.main import main
from mlfuse.registry import get_card, model_for_weights
from mlfuse.train.card import package_run
from mlfuse.weights import store
from mlfuse.weights.store import get_release, git_blob_id, list_releases, model_card_path, release_path
from tests._loopback import loopback_server

#: issue 16's table: release -> (model, task, repository, commit, path, git blob id)
TABLE = {
    "cddfuse-ivf": ("cddfuse", "ivf", "Zhaozixiang1228/MMIF-CDDFuse", "fd8da1f39d8d403b7343e577bd5a30cba38c7b7b",
                    "models/CDDFuse_IVF.pth", "d2794226bd48961132111bceff89ce3c955b3985"),
    "cddfuse-mif": ("cddfuse", "mif", "Zhaozixiang1228/MMIF-CDDFuse", "fd8da1f39d8d403b7343e577bd5a30cba38c7b7b",
                    "models/CDDFuse_MIF.pth", "072e39abce5979c0568ee510713c123c28160f12"),
    "emma": ("emma", None, "Zhaozixiang1228/MMIF-EMMA", "9983ca2f627588cd001ed08e21eadf1ab5c48beb",
             "model/EMMA.pth", "46f382475767323b83f3f7f52dc2bed0ac6b7476"),
    "sfdfuse": ("sfdfuse", None, "zxp771/SFDFuse", "cdb349b1813ef0dd9d7364530ef9d8133ac3fa62",
                "models/SFDFuse_best.pth", "ac8df9e497bba0d0390a47c5bdf0f311922ff8eb"),
    "smfnet-ivf": ("smfnet", None, "Abraham-Einstein/SMFNet", "5097711d29c0adb515d12bd366d4e56536dbbc2a",
                   "models/model_VIF.pth", "2196069a9d0c939a6fb7dac3373380cac6ffea4c"),
    "mlfuse-paper": ("mlfuse", None, "jialei-sc/MLFuse", "f40dccbbca79de063dbec44169beacfffbca7bc4",
                     "model/model_fuse.pth", "c1d51401b3564e66023d9e445f0279bfe2bbb48c"),
}


def test_releases_are_the_issue_table() -> None:
    for name, (model, task, repo, commit, path, blob) in TABLE.items():
        rel = get_release(name)
        assert rel.url == f"https://raw.githubusercontent.com/{repo}/{commit}/{path}", name
        assert (rel.blob, rel.model, rel.task, rel.filename) == (blob, model, task, path.rsplit("/", 1)[1]), name
        assert name in get_card(model).release_names and model_for_weights(name) == model
        assert rel.size or rel.max_bytes  # every download is capped
    assert model_for_weights("no/such.pth") is None and model_for_weights("default") is None


def test_mlfuse_paper_blob_id_is_the_authors_file(official_weights: Path) -> None:
    assert store.digests(official_weights) == (get_release("mlfuse-paper").sha256,
                                               get_release("mlfuse-paper").blob)
    assert official_weights.stat().st_size == get_release("mlfuse-paper").size


def _authors_file(name: str, path: Path) -> Path:
    """A seeded random checkpoint in the release's own layout (what the authors' scripts save)."""
    model_name = get_release(name).model
    torch.manual_seed(0)
    net = get_card(model_name).builder(**({"task": get_release(name).task} if get_release(name).task else {}))
    if hasattr(net, "authors_checkpoint"):
        obj: object = net.authors_checkpoint()  # CDDFuse, SFDFuse, SMFNet: {sub-network: module.-state_dict}
    elif model_name == "mlfuse":
        obj = {"epoch": 500, "model": net.state_dict()}
    else:
        obj = net.state_dict()  # EMMA: plain state_dict
    torch.save(obj, path)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(rng.integers(0, 256, (32, 40), dtype=np.uint8)).save(a)
    Image.fromarray(rng.integers(0, 256, (32, 40), dtype=np.uint8)).save(b)
    return str(a), str(b)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every downloadable release pointed at a loopback copy of a random file in its layout."""
    files = {}
    with loopback_server() as srv:
        for rel in list_releases():
            if rel.url and not rel.packaged:
                f = _authors_file(rel.name, tmp_path / f"{rel.name}-{rel.filename}")
                data = f.read_bytes()
                url = srv.add(f"{rel.name}/{rel.filename}", data)
                monkeypatch.setitem(store._RELEASES, rel.name, dataclasses.replace(
                    rel, url=url, blob=git_blob_id(data), sha256="", size=len(data)))
                files[rel.name] = f
        yield files


def test_every_release_fetches_verifies_and_fuses(served: dict[str, Path], pair, tmp_path, capsys) -> None:
    a, b = pair
    assert set(TABLE) <= set(served)
    assert main(["weights", "fetch", "cddfuse-ivf", "-q"]) == 0  # the README's commands
    assert main(["weights", "fetch", "emma", "--url", served["emma"].as_uri(), "-q"]) == 0  # offline copy
    capsys.readouterr()
    assert main(["weights", "fetch", "all", "-q"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(release_path(n)) for n in served]
    for name in served:
        assert store.release_state(name) == "cached"
        assert release_path(name).read_bytes() == served[name].read_bytes()
        # --weights NAME alone picks the model (and the task); roles as the method's card names them
        out = tmp_path / f"{name}.png"
        assert main(["fuse", "--weights", name, "--structural", a, "--functional", b, "-o", str(out), "-q"]) == 0
        img = np.asarray(Image.open(out))
        assert img.shape == (32, 40) and img.max() > img.min(), name
    # a release knows its task: --model cddfuse --weights cddfuse-mif needs no --task
    assert mlfuse.create_model("cddfuse", weights="cddfuse-mif").task == "mif"
    assert mlfuse.create_model("cddfuse", weights="cddfuse-ivf").task == "ivf"
    assert mlfuse.create_model("cddfuse", weights="cddfuse-ivf", task="mif-ivfckpt").task == "mif-ivfckpt"
    assert main(["fuse", "--model", "cddfuse", "--weights", "cddfuse-mif", "--mri", a, "--ct", b,
                 "-o", str(tmp_path / "mif.png"), "-q"]) == 0
    # ... and so does its file, recognised by its git blob id
    assert mlfuse.create_model("cddfuse", weights=release_path("cddfuse-mif")).task == "mif"
    capsys.readouterr()
    assert main(["fuse", "--weights", "cddfuse-mif", "--task", "ivf", "--mri", a, "--ct", b,
                 "-o", str(tmp_path / "x.png"), "-q"]) == 2
    assert main(["fuse", "--model", "cddfuse", "--weights", str(release_path("cddfuse-mif")), "--task", "ivf",
                 "--mri", a, "--ct", b, "-o", str(tmp_path / "x.png"), "-q"]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 2 and all("task 'ivf' does not fit weights 'cddfuse-mif'" in e for e in errs)
    # mlfuse models: every method's releases and their state
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "releases: cddfuse-ivf [task ivf] (cached), cddfuse-mif [task mif] (cached)" in out
    assert "releases: mlfuse-own-v1 (packaged), mlfuse-own-v2 (packaged), mlfuse-paper (cached)" in out
    assert "releases: smfnet-ivf (cached)" in out and "releases: emma (cached)" in out
    # inspect names the release, the task it fixes, the method, parameter count and digests
    assert main(["weights", "inspect", str(release_path("cddfuse-mif"))]) == 0
    out = capsys.readouterr().out
    assert "method: cddfuse (all 158 tensors fit its network)" in out
    assert "task: mif (from release cddfuse-mif)" in out and "parameters: 1,188,272\n" in out
    assert f"git blob id: {git_blob_id(served['cddfuse-mif'].read_bytes())}" in out
    assert "release: cddfuse-mif (model cddfuse; identical by git blob id)" in out
    assert "layout: dict of 4 sub-network state_dicts (DIDF_Encoder, DIDF_Decoder, BaseFuseLayer, " \
           "DetailFuseLayer), keys 'module.'-prefixed (DataParallel)" in out


def test_fetch_all_reports_each_failure_and_goes_on(served: dict[str, Path], capsys) -> None:
    rel = get_release("emma")
    url = rel.url
    store._RELEASES["emma"] = dataclasses.replace(rel, url=url.replace("/emma/", "/gone/"))
    assert main(["weights", "fetch", "all", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("mlfuse: error: cannot download emma from ") and "HTTP 404" in err[0]
    assert err[1] == f"{len(served) - 1} of {len(served)} releases fetched, 1 failed"
    assert [n for n in served if store.release_state(n) != "cached"] == ["emma"]


def test_a_release_of_another_model_names_its_owner(pair, tmp_path, capsys) -> None:
    a, b = pair
    assert main(["fuse", "--model", "cddfuse", "--weights", "mlfuse-paper", "--vis", a, "--ir", b,
                 "-o", str(tmp_path / "o.png"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("mlfuse: error: weights 'mlfuse-paper' are a release of model 'mlfuse', not 'cddfuse': "
                   "use --model mlfuse (or leave --model out)")
    assert main(["fuse", "--weights", "emma", "--vis", a, "--ir", b, "-o", str(tmp_path / "o.png"), "-q"]) == 2
    err = capsys.readouterr().err.strip()  # not fetched: how to, including offline
    assert "mlfuse weights fetch emma" in err and "--url file:///path/to/EMMA.pth" in err and "\n" not in err


@pytest.mark.parametrize(("owner", "model"), [("cddfuse", "mlfuse"), ("smfnet", "cddfuse"), ("mlfuse", "emma"),
                                              ("emma", "sfdfuse")])
def test_a_file_of_another_method_fails_naming_it(owner, model, pair, tmp_path, capsys) -> None:
    f = tmp_path / "w.pth"
    torch.manual_seed(0)
    net = get_card(owner).builder()
    torch.save(net.authors_checkpoint() if hasattr(net, "authors_checkpoint") else net.state_dict(), f)
    a, b = pair
    assert main(["fuse", "--model", model, "--weights", str(f), "--vis", a, "--ir", b,
                 "-o", str(tmp_path / "o.png"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{f}: these are {owner} weights" in err and f"use --model {owner}" in err
    assert not (tmp_path / "o.png").exists()


def test_inspect_safetensors_by_content_and_unknown_files(tmp_path, capsys) -> None:
    own = release_path(get_card("mlfuse").default_weights)
    renamed = tmp_path / "own.pth"  # safetensors recognised by content, whatever the suffix
    renamed.write_bytes(own.read_bytes())
    assert main(["weights", "inspect", str(renamed)]) == 0
    out = capsys.readouterr().out
    assert "method: mlfuse (all 111 tensors fit its network)" in out
    assert out.count("layout: safetensors, flat state_dict") == 1 and "parameters: 111,817 (+ 704 buffer" in out
    assert f"release: {get_card('mlfuse').default_weights} (model mlfuse; identical by sha256)" in out
    assert mlfuse.create_model("mlfuse", weights=renamed).weights_source == str(renamed)
    odd = tmp_path / "odd.pth"
    torch.save({"head.weight": torch.zeros(3, 3)}, odd)
    assert main(["weights", "inspect", str(odd)]) == 0
    out = capsys.readouterr().out
    assert "method: unknown (its keys fit no registered method)" in out and "release: none known" in out
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert main(["weights", "inspect", str(tmp_path / "bad.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"bad.pth: (not a readable PyTorch checkpoint|refused to load)", err)


def test_model_card_snippets_of_packaged_releases_work() -> None:
    """Issue 13.4: the card's `create_model(..., weights="NAME")` runs as shown, for every packaged release."""
    packaged = [r for r in list_releases() if r.packaged]
    assert packaged
    for rel in packaged:
        card = model_card_path(rel.name).read_text()
        model, name = re.search(r'create_model\("([^"]+)", weights="([^"]+)"\)', card).groups()
        assert name == rel.name
        assert mlfuse.create_model(model, weights=name).weights_source == str(release_path(rel.name))


def test_packaged_run_installs_under_its_name(tmp_path, random_weights, capsys) -> None:
    """`weights package` installs the release into the cache, so the card's create_model(weights=NAME) works."""
    run = tmp_path / "run"
    run.mkdir()
    sd = torch.load(random_weights, weights_only=True)["model"]
    save_file({k: v.contiguous() for k, v in sd.items()}, run / "model.safetensors",
              metadata={"method": "mlfuse", "config": "{}"})
    out = tmp_path / "mine.safetensors"
    assert main(["weights", "package", str(run), str(out), "--name", "my-run", "--hardware", "test"]) == 0
    card = out.with_suffix(".md").read_text()
    assert 'mlfuse.create_model("mlfuse", weights="my-run")' in card
    model = mlfuse.create_model("mlfuse", weights="my-run")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    assert model_for_weights("my-run") == "mlfuse" and store.release_state("my-run") == "cached"
    capsys.readouterr()
    assert main(["weights", "list"]) == 0 and "my-run: cached - model mlfuse" in capsys.readouterr().out
    # the name of a registered release is never shadowed; --no-install leaves the cache alone
    package_run(run, tmp_path / "x.safetensors", name="mlfuse-paper", hardware="test", install=True)
    assert get_release("mlfuse-paper").url and not (store.cache_dir() / "weights" / "mlfuse-paper").exists()
    assert main(["weights", "package", str(run), str(tmp_path / "y.safetensors"), "--name", "other", "--hardware",
                 "t", "--no-install"]) == 0
    assert not store.is_release("other")
