"""The downstream protocol (spec ``downstream.md`` §4): for every input — each method's fused images,
the infrared images alone, the visible images alone — train the same task network from scratch
(same seed, schedule and split), evaluate it on the test split and tabulate the scores.

An input that cannot be used (missing fused images, a model that fails) is reported in the table
with its reason; the other inputs go on. A pair with a bad label is left out for every input
(one line naming the file), so all inputs see the same pairs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from mlfuse.bench.config import MethodSpec
from mlfuse.data.io import Image, read_image
from mlfuse.data.pairs import list_images
from mlfuse.downstream.config import TaskConfig
from mlfuse.downstream.data import IGNORE_INDEX, DownstreamData, Item, load_target
from mlfuse.downstream.metrics import ConfusionMatrix, Detections, DetectionScores, detection_scores
from mlfuse.downstream.networks import build_network, load_backbone
from mlfuse.errors import InputError, MLFuseError
from mlfuse.progress import show_bars

INFRARED, VISIBLE = "infrared", "visible"


@dataclass
class InputSpec:
    """One row of the table: a folder of fused images, a registered method fused on the fly, or a
    single modality."""

    label: str
    kind: str  # "infrared" | "visible" | "folder" | "model"
    folder: Path | None = None
    method: MethodSpec | None = None

    @classmethod
    def folder_of(cls, text: str) -> InputSpec:
        """``LABEL=DIR``."""
        label, sep, folder = text.partition("=")
        if not sep or not label or not folder:
            raise MLFuseError(f"--methods '{text}': expected LABEL=DIR")
        return cls(label, "folder", folder=Path(folder))

    @classmethod
    def model(cls, text: str) -> InputSpec:
        spec = MethodSpec.parse(text)
        return cls(spec.label, "model", method=spec)

    def describe(self) -> str:
        if self.kind == "folder":
            return f"fused images in `{self.folder}`"
        if self.kind == "model":
            assert self.method is not None
            return f"fused on the fly by `{self.method.model}` (weights `{self.method.weights}`)"
        return f"the {self.kind} images alone"


@dataclass
class InputResult:
    label: str
    error: str | None = None
    train_seconds: float = 0.0
    final_loss: float = math.nan
    iou: list[float] = field(default_factory=list)  # seg, per class, [0, 1], NaN undefined
    miou: float = math.nan
    pixel_accuracy: float = math.nan
    detection: dict[str, DetectionScores] = field(default_factory=dict)  # det, per convention
    previews: list = field(default_factory=list)  # (image uint8 RGB, prediction) for the figure pairs


@dataclass
class DownstreamResult:
    data: DownstreamData
    config: TaskConfig
    inputs: list[InputSpec]
    results: list[InputResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    truths: list = field(default_factory=list)  # test targets of the figure pairs (original size)
    figure_items: list[Item] = field(default_factory=list)
    backbone: str | None = None
    device: str = "cpu"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, MLFuseError) else f"{type(exc).__name__}: {text}"


def _rgb(img: Image) -> np.ndarray:
    """uint8 H x W x 3 (gray replicated; 16-bit scaled to 8 bits)."""
    a = img.pixels
    if a.dtype != np.uint8:
        a = np.rint(a.astype(np.float64) * (255.0 / img.maxval)).astype(np.uint8)
    return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a


class _Source:
    """The images of one input, by pair name, at their original size."""

    def __init__(self, spec: InputSpec, device: torch.device) -> None:
        self.spec = spec
        self.model = None
        self.files: dict[str, Path] = {}
        if spec.kind == "folder":
            assert spec.folder is not None
            for d in (spec.folder, spec.folder / "train", spec.folder / "test"):
                if d.is_dir():
                    found, _ = list_images(d)
                    for k, v in found.items():
                        self.files.setdefault(k, v)
            if not self.files:
                raise InputError(f"{spec.folder}: no fused images (looked in it and its train/, test/)")
        elif spec.kind == "model":
            from mlfuse.registry import create_model

            assert spec.method is not None
            self.model = create_model(spec.method.model, weights=spec.method.weights, device=device,
                                      **spec.method.kwargs)

    def missing(self, items: list[Item]) -> list[str]:
        return [it.name for it in items if self.spec.kind == "folder" and it.name not in self.files]

    def image(self, item: Item, size: tuple[int, int]) -> np.ndarray:
        """The input's image of ``item``, which must have the pair's size (H, W): labels are in its pixels."""
        if self.spec.kind == INFRARED:
            img = read_image(item.infrared)
        elif self.spec.kind == VISIBLE:
            img = read_image(item.visible)
        elif self.spec.kind == "folder":
            img = read_image(self.files[item.name])
        else:
            from mlfuse.inference.fuse import fuse_images

            fused = fuse_images(self.model, read_image(item.visible), read_image(item.infrared))
            img = Image(fused, 255, f"{self.spec.label}:{item.name}")
        if img.size != tuple(size):
            raise InputError(f"{img.source}: image is {img.size[1]}x{img.size[0]} but pair '{item.name}' is "
                             f"{size[1]}x{size[0]} (W x H); its labels would not line up")
        return _rgb(img)


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 3 x H x W at the config size: training sets stay in memory as 8 bits (M3FD's 3,360 training
    pairs at 576 x 768 are 4.5 GB so, 18 GB as float32)."""
    h, w = size
    im = PILImage.fromarray(rgb).resize((w, h), PILImage.Resampling.BILINEAR)
    return torch.from_numpy(np.array(im, np.uint8)).permute(2, 0, 1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> the network's input, (x / 255 - 0.5) / 0.25."""
    return (x.float() / 255.0 - 0.5) / 0.25


def _scale_boxes(d: Detections, sy: float, sx: float) -> torch.Tensor:
    return torch.from_numpy(d.boxes * np.array([sx, sy, sx, sy])).float()


def _schedule(step: int, total: int) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train_network(task: str, num_classes: int, images: torch.Tensor, targets: list, cfg: TaskConfig,
                  device: torch.device, backbone: str | Path | None = None,
                  progress: Callable[[int, int, float], None] | None = None) -> tuple[torch.nn.Module, float]:
    """Train a fresh network on resized uint8 images (N x 3 x H x W) and targets (masks N x H x W, or boxes
    per image as (boxes tensor, classes tensor)); seeded; returns (network, mean loss of the last epoch)."""
    torch.manual_seed(cfg.seed)
    net = build_network(task, num_classes, cfg.network)
    if backbone is not None:
        load_backbone(net, backbone)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(images)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(cfg.seed)
    step, last = 0, math.nan
    for _epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            if len(idx) < 2 and n >= 2:  # BatchNorm needs two samples: fill the last batch
                idx = torch.cat([idx, order[:2 - len(idx)]])
            flips = (torch.rand(len(idx), generator=gen) < 0.5) if cfg.flip else torch.zeros(len(idx), dtype=torch.bool)
            x = _normalise(images[idx])
            x[flips] = x[flips].flip(-1)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * _schedule(step, total)
            if task == "seg":
                y = torch.stack([targets[i] for i in idx.tolist()]).clone()
                y[flips] = y[flips].flip(-1)
                loss = net.loss(net(x.to(device)), y.to(device), IGNORE_INDEX)
            else:
                w = x.shape[-1]
                boxes, classes = [], []
                for f, i in zip(flips.tolist(), idx.tolist(), strict=True):
                    bx, cl = targets[i]
                    if f and len(bx):
                        bx = torch.stack([w - bx[:, 2], bx[:, 1], w - bx[:, 0], bx[:, 3]], 1)
                    boxes.append(bx)
                    classes.append(cl)
                out = net(x.to(device))
                tgt = net.targets(boxes, classes, tuple(out["heatmap"].shape[2:]))
                loss = net.loss(out, tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if progress is not None:
                progress(step, total, losses[-1])
        last = float(np.mean(losses)) if losses else math.nan
    return net.eval(), last


@torch.no_grad()
def predict(net: torch.nn.Module, task: str, rgb: np.ndarray, cfg: TaskConfig, device: torch.device
            ) -> np.ndarray | Detections:
    """One image at its original size: a class map (H x W) or detections in its pixels."""
    h0, w0 = rgb.shape[:2]
    x = _normalise(_resize(rgb, cfg.size)[None]).to(device)
    if task == "seg":
        logits = F.interpolate(net(x), size=(h0, w0), mode="bilinear", align_corners=False)
        return logits.argmax(1)[0].cpu().numpy()
    boxes, cls, scores = net.decode(net(x), cfg.max_dets, cfg.min_score)[0]
    sx, sy = w0 / cfg.size[1], h0 / cfg.size[0]
    b = boxes.cpu().numpy() * np.array([sx, sy, sx, sy])
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w0)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h0)
    return Detections(b, cls.cpu().numpy(), scores.cpu().numpy())


def run_downstream(data: DownstreamData, inputs: list[InputSpec], cfg: TaskConfig, *,
                   device: torch.device | str = "cpu", backbone: str | Path | None = None,
                   quiet: bool = False, report: Callable[[str], None] | None = None) -> DownstreamResult:
    """Train and evaluate one network per input; see the module docstring."""
    device = torch.device(device)
    say = report or (lambda line: None)
    result = DownstreamResult(data, cfg, inputs, backbone=str(backbone) if backbone else None, device=str(device))

    def problem(line: str) -> None:
        result.problems.append(line)
        say(line)

    for line in data.problems:
        problem(line)
    # labels once, checked against the pair's size; a bad label leaves the pair out for every input
    labelled: dict[str, list[tuple[Item, object, tuple[int, int]]]] = {"train": [], "test": []}
    for part in ("train", "test"):
        for item in getattr(data, part):
            try:
                size = read_image(item.infrared).size
                labelled[part].append((item, load_target(data, item, size), size))
            except MLFuseError as exc:
                problem(f"{_one_line(exc)}; pair left out")
    if not labelled["train"] or not labelled["test"]:
        raise MLFuseError(f"{data.root}: no usable {'train' if not labelled['train'] else 'test'} pairs "
                          "(see the lines above)")
    result.figure_items = [it for it, _, _ in labelled["test"][:cfg.figures]]
    result.truths = [t for _, t, _ in labelled["test"][:cfg.figures]]
    h, w = cfg.size
    train_targets = []
    for _item, target, (h0, w0) in labelled["train"]:
        if data.task == "seg":
            m = PILImage.fromarray(target.astype(np.uint8)).resize((w, h), PILImage.Resampling.NEAREST)
            train_targets.append(torch.from_numpy(np.asarray(m, np.int64)))
        else:
            train_targets.append((_scale_boxes(target, h / h0, w / w0), torch.from_numpy(target.classes)))
    num_classes = len(data.classes)

    for spec in inputs:
        res = InputResult(spec.label)
        result.results.append(res)
        try:
            source = _Source(spec, device)
            missing = source.missing([it for part in labelled.values() for it, _, _ in part])
            if missing:
                raise InputError(f"{spec.folder}: {len(missing)} pair(s) have no fused image: "
                                 f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
            train_x = torch.stack([_resize(source.image(it, sz), cfg.size) for it, _, sz in labelled["train"]])
            bar = None
            if show_bars(quiet):
                from tqdm import tqdm

                bar = tqdm(total=cfg.epochs * max(1, math.ceil(len(train_x) / cfg.batch_size)),
                           desc=f"{data.task} {spec.label}", unit="step", leave=False)

            def tick(step: int, total: int, loss: float, bar=bar) -> None:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}")

            t0 = time.perf_counter()
            net, res.final_loss = train_network(data.task, num_classes, train_x, train_targets, cfg, device,
                                                backbone, tick)
            res.train_seconds = time.perf_counter() - t0
            if bar is not None:
                bar.close()
            del train_x
            cm = ConfusionMatrix(num_classes, IGNORE_INDEX)
            preds, truths = [], []
            for k, (item, target, size) in enumerate(labelled["test"]):
                rgb = source.image(item, size)
                pred = predict(net, data.task, rgb, cfg, device)
                if data.task == "seg":
                    cm.update(target, pred)
                else:
                    preds.append(pred)
                    truths.append(target)
                if k < cfg.figures:
                    res.previews.append((rgb, pred))
            if data.task == "seg":
                res.iou = [float(v) for v in cm.iou()]
                res.miou, res.pixel_accuracy = cm.miou(), cm.pixel_accuracy()
            else:
                res.detection = {c: detection_scores(preds, truths, num_classes, c, max_dets=cfg.max_dets)
                                 for c in cfg.conventions}
        except Exception as exc:  # reported in the table; the other inputs go on
            res.error = _one_line(exc)
            problem(f"{spec.label}: {res.error}")
    return result
