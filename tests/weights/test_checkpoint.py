"""Checkpoint layouts, safe loading (weights_only) and one-line errors for wrong checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

import mlfuse
from mlfuse.errors import CheckpointError, WeightsNotFoundError
from mlfuse.models.mlfuse.network import MLFNet
from mlfuse.weights.checkpoint import read_checkpoint


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_authors_checkpoint_loads_strict(official_weights) -> None:
    model = mlfuse.create_model("mlfuse", weights=official_weights)
    assert not model.training
    assert model.state_dict()["inc_edg.double_conv.1.num_batches_tracked"].item() == 13_527


@pytest.mark.parametrize("layout", ["wrapped", "bare", "module_prefix", "state_dict_key", "safetensors"])
def test_accepted_layouts(layout, tmp_path, random_weights) -> None:
    sd = torch.load(random_weights, weights_only=True)["model"]
    path = tmp_path / "ck.pth"
    if layout == "wrapped":
        torch.save({"epoch": 3, "model": sd}, path)
    elif layout == "bare":
        torch.save(sd, path)
    elif layout == "module_prefix":
        torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, path)
    elif layout == "state_dict_key":
        torch.save({"state_dict": sd, "optimizer": {}}, path)
    else:
        path = tmp_path / "ck.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    model = mlfuse.create_model("mlfuse", weights=path)
    ref = MLFNet()
    ref.load_state_dict(sd)
    assert _same_weights(model, ref)


def test_wrong_checkpoint_names_missing_and_unexpected_keys(tmp_path, random_weights) -> None:
    sd = torch.load(random_weights, weights_only=True)["model"]
    sd.pop("outc.conv.bias")
    sd["extra.head.weight"] = torch.zeros(3)
    sd["layer.double_conv.0.weight"] = torch.zeros(1, 1, 3, 3)
    path = tmp_path / "wrong.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        mlfuse.create_model("mlfuse", weights=path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "missing key(s): outc.conv.bias" in msg
    assert "unexpected key(s): extra.head.weight" in msg
    assert "layer.double_conv.0.weight (1, 1, 3, 3) vs expected (48, 96, 3, 3)" in msg


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_unreadable_checkpoints(tmp_path, content) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_bad_safetensors(tmp_path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_checkpoint(path)


def test_no_state_dict_inside(tmp_path) -> None:
    path = tmp_path / "odd.pth"
    torch.save({"epoch": 1, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="no state_dict found"):
        read_checkpoint(path)


def test_missing_weights_file_and_unfetched_release() -> None:
    with pytest.raises(WeightsNotFoundError, match="no such weights file"):
        mlfuse.create_model("mlfuse", weights="/nonexistent/w.pth")
    with pytest.raises(WeightsNotFoundError, match="mlfuse weights fetch mlfuse-paper"):
        mlfuse.create_model("mlfuse", weights="mlfuse-paper")  # the authors' release, not fetched


def test_registry() -> None:
    assert "mlfuse" in mlfuse.list_models()
    card = mlfuse.get_card("mlfuse")
    assert card.structural == ("visible", "mri")
    assert card.functional == ("infrared", "ct", "pet", "spect")
    assert card.min_size == (15, 15) and card.size_multiple == 1
    assert card.default_weights == "mlfuse-own-v1"
    assert card.release_names == ("mlfuse-own-v1", "mlfuse-own-v2", "mlfuse-paper")
    model = mlfuse.create_model("mlfuse", weights=None)  # untrained
    assert model.card is card and model.weights_source is None
    with pytest.raises(mlfuse.MLFuseError, match="unknown model 'nope'"):
        mlfuse.create_model("nope")
