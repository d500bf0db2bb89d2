"""Task configurations: the network, input size and training schedule of one protocol, as data.

The defaults are the CPU smoke configuration (``configs/downstream_{seg,det}_cpu.toml``); the GPU
configurations (``configs/downstream_{seg,det}_gpu.toml``) change only numbers, never code.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mlfuse.downstream.metrics import CONVENTIONS
from mlfuse.downstream.networks import NetworkConfig
from mlfuse.errors import MLFuseError


@dataclass
class TaskConfig:
    """One protocol: the same for every input (method, infrared, visible)."""

    name: str = "cpu"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    size: tuple[int, int] = (64, 80)  # (H, W) the images are resized to for training and inference
    epochs: int = 40
    batch_size: int = 8
    lr: float = 3e-3  # AdamW, linear warm-up over the first 5 % of steps, then cosine to 0
    weight_decay: float = 1e-4
    seed: int = 0
    flip: bool = True  # random horizontal flips (seeded)
    max_dets: int = 100  # detections kept per image (the coco convention's limit)
    min_score: float = 0.01  # detections below this score are dropped before AP
    conventions: tuple[str, ...] = CONVENTIONS  # AP conventions reported (detection)
    figures: int = 2  # test pairs shown in prediction figures

    def describe(self) -> dict:
        return asdict(self)


def _tuple(v: object) -> object:
    return tuple(v) if isinstance(v, list) else v


def load_task_config(path: str | Path | None) -> TaskConfig:
    """Read a TOML config (top-level keys of :class:`TaskConfig`, ``[network]`` for
    :class:`NetworkConfig`); ``None`` gives the defaults. Unknown keys are one-line errors."""
    if path is None:
        return TaskConfig()
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MLFuseError(f"{p}: cannot read config ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise MLFuseError(f"{p}: not valid TOML ({exc})") from None
    net = doc.pop("network", {})
    known = {f.name for f in fields(TaskConfig)} - {"network"}
    net_known = {f.name for f in fields(NetworkConfig)}
    for key in doc:
        if key not in known:
            raise MLFuseError(f"{p}: unknown key '{key}' (known: {', '.join(sorted(known))}, [network])")
    for key in net:
        if key not in net_known:
            raise MLFuseError(f"{p}: unknown [network] key '{key}' (known: {', '.join(sorted(net_known))})")
    cfg = TaskConfig(network=NetworkConfig(**{k: _tuple(v) for k, v in net.items()}),
                     **{k: _tuple(v) for k, v in doc.items()})
    for conv in cfg.conventions:
        if conv not in CONVENTIONS:
            raise MLFuseError(f"{p}: unknown AP convention '{conv}' (choose from {', '.join(CONVENTIONS)})")
    if len(cfg.size) != 2 or min(cfg.size) < 16 or any(s % 16 for s in cfg.size):
        raise MLFuseError(f"{p}: size must be [H, W], multiples of 16, got {list(cfg.size)}")
    return cfg
