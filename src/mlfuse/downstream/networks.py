"""Task networks for the downstream protocol, pure PyTorch (no torchvision, no ultralytics).

* :class:`Segmenter` — DeepLabV3+ (Chen et al., ECCV 2018): atrous spatial pyramid pooling on the
  stride-16 features of a light backbone, decoder fusing the upsampled ASPP output with projected
  stride-4 features, bilinear upsampling to the input size.
* :class:`Detector` — CenterNet-style anchor-free detector (Zhou et al., "Objects as Points", 2019):
  a class heat map, box size and centre offset regressed at stride 4, peaks picked by 3x3 max
  pooling (no NMS), focal loss on the heat map, L1 on size and offset.

Both share :class:`Backbone` (a small residual network, widths from the config), so a pretrained
backbone file (``--backbone FILE``, a state dict read with ``weights_only=True``) fits either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mlfuse.errors import CheckpointError


@dataclass
class NetworkConfig:
    """Widths of the backbone stages (strides 2, 4, 8, 16) and the head sizes."""

    widths: tuple[int, int, int, int] = (8, 16, 32, 48)
    blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    aspp_channels: int = 32
    aspp_rates: tuple[int, ...] = (1, 2, 3)
    low_level_channels: int = 16
    head_channels: int = 32


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _cbr(cin, cout, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


class Backbone(nn.Module):
    """Four residual stages at strides 2, 4, 8, 16; returns all four feature maps."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], in_channels: int = 3) -> None:
        super().__init__()
        stages, cin = [], in_channels
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            layers: list[nn.Module] = [_cbr(cin, w, 3, 2)] if i == 0 else [_Residual(cin, w, 2)]
            layers += [_Residual(w, w, 1) for _ in range(n - (0 if i == 0 else 1))]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class ASPP(nn.Module):
    """1x1 conv, 3x3 atrous convs at ``rates``, image pooling; concatenated and projected."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_cbr(cin, cout, 1)] + [_cbr(cin, cout, 3, dilation=r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))
        self.project = nn.Sequential(_cbr(cout * (len(rates) + 2), cout, 1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, 1))


class Segmenter(nn.Module):
    """DeepLabV3+-style segmenter: logits N x C x H x W at the input size."""

    def __init__(self, num_classes: int, cfg: NetworkConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or NetworkConfig()
        self.backbone = Backbone(cfg.widths, cfg.blocks)
        self.aspp = ASPP(cfg.widths[3], cfg.aspp_channels, cfg.aspp_rates)
        self.low = _cbr(cfg.widths[1], cfg.low_level_channels, 1)
        self.decoder = nn.Sequential(_cbr(cfg.aspp_channels + cfg.low_level_channels, cfg.head_channels),
                                     _cbr(cfg.head_channels, cfg.head_channels))
        self.classifier = nn.Conv2d(cfg.head_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        low = self.low(f[1])
        y = F.interpolate(self.aspp(f[3]), size=low.shape[2:], mode="bilinear", align_corners=False)
        y = self.classifier(self.decoder(torch.cat([y, low], 1)))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)


class Detector(nn.Module):
    """CenterNet-style detector: stride-4 heads (class heat map, size, offset) on an FPN-like merge."""

    stride = 4

    def __init__(self, num_classes: int, cfg: NetworkConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or NetworkConfig()
        self.num_classes = num_classes
        self.backbone = Backbone(cfg.widths, cfg.blocks)
        c = cfg.head_channels
        self.lateral = nn.ModuleList([nn.Conv2d(w, c, 1) for w in cfg.widths[1:]])
        self.smooth = _cbr(c, c)
        self.heatmap = nn.Sequential(_cbr(c, c), nn.Conv2d(c, num_classes, 1))
        self.size = nn.Sequential(_cbr(c, c), nn.Conv2d(c, 2, 1))
        self.offset = nn.Sequential(_cbr(c, c), nn.Conv2d(c, 2, 1))
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - 0.01) / 0.01))  # prior 0.01 (focal loss)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x)
        y = self.lateral[2](f[3])
        for lat, feat in ((self.lateral[1], f[2]), (self.lateral[0], f[1])):
            y = F.interpolate(y, size=feat.shape[2:], mode="bilinear", align_corners=False) + lat(feat)
        y = self.smooth(y)
        return {"heatmap": self.heatmap(y), "size": self.size(y), "offset": self.offset(y)}

    def targets(self, boxes: list[torch.Tensor], classes: list[torch.Tensor], shape: tuple[int, int]
                ) -> dict[str, torch.Tensor]:
        """Training targets on the stride-4 grid for a batch: Gaussian heat maps (sigma from the box
        size), size (box w, h in input pixels / stride) and offset at each centre cell."""
        n, (h, w) = len(boxes), shape
        heat = torch.zeros(n, self.num_classes, h, w)
        size = torch.zeros(n, 2, h, w)
        offset = torch.zeros(n, 2, h, w)
        mask = torch.zeros(n, 1, h, w)
        ys, xs = torch.arange(h, dtype=torch.float32)[:, None], torch.arange(w, dtype=torch.float32)[None, :]
        for i, (b, c) in enumerate(zip(boxes, classes, strict=True)):
            for box, cls in zip(b.tolist(), c.tolist(), strict=True):
                x0, y0, x1, y1 = (v / self.stride for v in box)
                bw, bh = x1 - x0, y1 - y0
                if bw <= 0 or bh <= 0:
                    continue
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
                sx, sy = max(bw / 6, 0.5), max(bh / 6, 0.5)
                g = torch.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
                heat[i, cls] = torch.maximum(heat[i, cls], g)
                size[i, :, iy, ix] = torch.tensor([bw, bh])
                offset[i, :, iy, ix] = torch.tensor([cx - ix, cy - iy])
                mask[i, 0, iy, ix] = 1
        return {"heatmap": heat, "size": size, "offset": offset, "mask": mask}

    def loss(self, out: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor]) -> torch.Tensor:
        """Penalty-reduced focal loss on the heat map (alpha 2, beta 4) + 0.1 L1 size + L1 offset."""
        p = torch.sigmoid(out["heatmap"]).clamp(1e-4, 1 - 1e-4)
        gt = tgt["heatmap"].to(p.device)
        pos = gt.eq(1).float()
        pos_loss = torch.log(p) * (1 - p) ** 2 * pos
        neg_loss = torch.log(1 - p) * p ** 2 * (1 - gt) ** 4 * (1 - pos)
        n_pos = pos.sum().clamp(min=1)
        focal = -(pos_loss.sum() + neg_loss.sum()) / n_pos
        m = tgt["mask"].to(p.device)
        l_size = (F.l1_loss(out["size"] * m, tgt["size"].to(p.device) * m, reduction="sum") / n_pos)
        l_off = (F.l1_loss(torch.sigmoid(out["offset"]) * m, tgt["offset"].to(p.device) * m, reduction="sum") / n_pos)
        return focal + 0.1 * l_size + l_off

    @torch.no_grad()
    def decode(self, out: dict[str, torch.Tensor], max_dets: int = 100, min_score: float = 0.01
               ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image (boxes in input pixels, classes, scores), at most ``max_dets``, best first."""
        heat = torch.sigmoid(out["heatmap"])
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
        n, c, h, w = heat.shape
        results = []
        for i in range(n):
            scores, idx = peaks[i].reshape(-1).topk(min(max_dets, c * h * w))
            keep = scores >= min_score
            scores, idx = scores[keep], idx[keep]
            cls = idx // (h * w)
            pix = idx % (h * w)
            ys, xs = (pix // w).float(), (pix % w).float()
            off = torch.sigmoid(out["offset"][i]).reshape(2, -1)[:, pix]
            sz = out["size"][i].reshape(2, -1)[:, pix].clamp(min=0)
            cx, cy = xs + off[0], ys + off[1]
            boxes = torch.stack([cx - sz[0] / 2, cy - sz[1] / 2, cx + sz[0] / 2, cy + sz[1] / 2], 1) * self.stride
            results.append((boxes, cls, scores))
        return results


def build_network(task: str, num_classes: int, cfg: NetworkConfig | None = None) -> nn.Module:
    return Segmenter(num_classes, cfg) if task == "seg" else Detector(num_classes, cfg)


def load_backbone(model: nn.Module, path: str | Path) -> None:
    """Load a backbone state dict (``weights_only=True``; keys with or without a ``backbone.`` prefix)
    into ``model.backbone``; every backbone tensor must be present with its shape."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such backbone file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is one line for the user (never torch's weights_only advice)
        from mlfuse.weights.checkpoint import _refusal_reason

        raise CheckpointError(f"{p}: cannot read backbone weights ({_refusal_reason(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: expected a state dict of tensors")
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    try:
        model.backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "mismatch"
        raise CheckpointError(f"{p}: does not fit the backbone of this network config ({first}; "
                              f"{' '.join(str(exc).split())[:300]})") from None
