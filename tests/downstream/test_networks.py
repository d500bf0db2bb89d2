"""Task networks: shapes, the detector's target/decode round trip, backbone loading, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlfuse.downstream.config import TaskConfig, load_task_config
from mlfuse.downstream.metrics import Detections, detection_scores
from mlfuse.downstream.networks import Detector, NetworkConfig, Segmenter, load_backbone
from mlfuse.errors import CheckpointError, MLFuseError

ROOT = Path(__file__).resolve().parents[2]
SMALL = NetworkConfig(widths=(4, 8, 8, 8), aspp_channels=8, low_level_channels=4, head_channels=8)


def test_segmenter_output_at_input_size() -> None:
    net = Segmenter(5, SMALL).eval()
    assert net(torch.zeros(2, 3, 48, 64)).shape == (2, 5, 48, 64)


def test_detector_targets_decode_round_trip() -> None:
    """Logits made from the training targets decode back to the ground-truth boxes (AP 1 in coco)."""
    det = Detector(3, SMALL)
    boxes = torch.tensor([[8.0, 12.0, 24.0, 44.0], [30.0, 4.0, 62.0, 20.0]])
    classes = torch.tensor([0, 2])
    tgt = det.targets([boxes], [classes], (12, 16))  # a 48 x 64 input at stride 4
    eps = 1e-4
    out = {"heatmap": torch.logit(tgt["heatmap"].clamp(eps, 1 - eps)),
           "size": tgt["size"], "offset": torch.logit(tgt["offset"].clamp(eps, 1 - eps))}
    b, c, s = det.decode(out, max_dets=100, min_score=0.5)[0]
    assert sorted(c.tolist()) == [0, 2]
    order = c.argsort()
    np.testing.assert_allclose(b[order].numpy(), boxes.numpy(), atol=0.01)
    pred = [Detections(b.numpy(), c.numpy(), s.numpy())]
    assert detection_scores(pred, [Detections(boxes.numpy(), classes.numpy())], 3).map50_95() == pytest.approx(1.0)


def test_detector_loss_falls_in_a_few_steps() -> None:
    torch.manual_seed(0)
    det = Detector(2, SMALL)
    x = torch.randn(2, 3, 32, 32)
    tgt = det.targets([torch.tensor([[4.0, 4.0, 20.0, 20.0]])] * 2, [torch.tensor([1])] * 2, (8, 8))
    opt = torch.optim.Adam(det.parameters(), 1e-2)
    losses = []
    for _ in range(8):
        loss = det.loss(det(x), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] * 0.7


def test_backbone_file_weights_only(tmp_path: Path) -> None:
    src = Segmenter(3, SMALL)
    f = tmp_path / "backbone.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in src.backbone.state_dict().items()}}, f)
    dst = Detector(4, SMALL)  # the same backbone fits either network
    load_backbone(dst, f)
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(dst.backbone.state_dict()[k], v)
    torch.save(Segmenter(3, NetworkConfig()).backbone.state_dict(), f)
    with pytest.raises(CheckpointError, match="does not fit the backbone"):
        load_backbone(dst, f)
    f.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read backbone weights"):
        load_backbone(dst, f)


def test_shipped_configs(tmp_path: Path) -> None:
    cpu = load_task_config(ROOT / "configs" / "downstream_seg_cpu.toml")
    default = TaskConfig()
    assert (cpu.network, cpu.size, cpu.epochs, cpu.lr) == (default.network, default.size, default.epochs, default.lr)
    for name in ("det_cpu", "seg_gpu", "det_gpu"):
        load_task_config(ROOT / "configs" / f"downstream_{name}.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("epoch = 3\n")
    with pytest.raises(MLFuseError, match="unknown key 'epoch'"):
        load_task_config(bad)
    bad.write_text("size = [30, 40]\n")
    with pytest.raises(MLFuseError, match="multiples of 16"):
        load_task_config(bad)
