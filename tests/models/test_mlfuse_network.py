"""MLFNet structure (spec sections 1-6, 14) and the authors' checkpoint layout."""

from __future__ import annotations

import json

import pytest
import torch

from mlfuse.models.mlfuse.network import MLFNet


def test_parameter_counts_match_spec() -> None:
    net = MLFNet()
    assert sum(p.numel() for p in net.parameters()) == 111_817
    per_module = {name: sum(p.numel() for p in m.parameters()) for name, m in net.named_children()}
    assert per_module["layer"] == 48_576
    assert per_module["cmk_net"] == 46_598
    assert per_module["edg_net"] == 12_977
    assert per_module["ssd_net"] == 2_113
    assert per_module["outc"] == 17
    assert all(per_module[s] == 384 for s in ("inc_edg", "inc_ssd", "inc_cmk_1", "inc_cmk_2"))
    sd = net.state_dict()
    assert len(sd) == 111
    assert sum(v.numel() for v in sd.values()) == 112_532


def test_state_dict_keys_and_shapes_match_authors(shared) -> None:
    ref = json.loads((shared / "reference/mlfuse/state_dict_keys.json").read_text())
    own = MLFNet().state_dict()
    assert ref["num_keys"] == len(own)
    assert {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in own.items()} == {
        k: (v["shape"], v["dtype"]) for k, v in ref["keys"].items()}


@pytest.mark.parametrize("hw", [(15, 15), (17, 33), (64, 48)])
def test_forward_shapes_and_ranges(hw) -> None:
    torch.manual_seed(0)
    net = MLFNet().eval()
    x = torch.rand(2, 1, *hw)
    with torch.no_grad():
        outs = net(x, x.flip(-1))
    for out in outs:
        assert out.shape == (2, 1, *hw)
        assert out.abs().max() < 1  # every output comes out of tanh


def test_below_minimum_size_fails_in_network_not_silently() -> None:
    with pytest.raises(RuntimeError):
        MLFNet().eval()(torch.rand(1, 1, 14, 14), torch.rand(1, 1, 14, 14))


def test_losses_register_nothing() -> None:
    """No Sobel kernel or SSIM window may sneak into the state dict (strict loading)."""
    assert all(not k.startswith(("c_loss", "e_loss", "d_loss", "f_loss")) for k in MLFNet().state_dict())


def test_ssd_global_ops_are_accurate_for_large_inputs() -> None:
    """The softmax over all H*W positions is done in float64: float32 result matches a float64 net."""
    torch.manual_seed(1)
    net = MLFNet().eval()
    y = torch.rand(1, 1, 160, 200)
    with torch.no_grad():
        f32 = net.ssd_net(net.inc_ssd(y))[1]
        net64 = MLFNet().eval()
        net64.load_state_dict(net.state_dict())
        net64.double()
        f64 = net64.ssd_net(net64.inc_ssd(y.double()))[1]
    assert (f32.double() - f64).abs().max() < 2e-6
