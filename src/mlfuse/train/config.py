"""Training configuration: a flat dict with attribute access, built in layers.

generic defaults  <  the recipe's defaults (the authors' hyper-parameters)  <  a config file (TOML or
JSON)  <  ``--set key=value`` / explicit command-line options. Recipes are data, not code paths: a
run is fully described by the resolved config, which is written next to its checkpoints.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlfuse.errors import MLFuseError

#: keys every recipe has (a recipe's ``defaults`` override them)
GENERIC_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "epochs": 1,
    "batch_size": 16,          # global batch (split evenly across DDP ranks)
    "device": "auto",
    "precision": "fp32",       # fp32 | bf16 | fp16 (autocast; fp16 uses a GradScaler; GPU only)
    "out_dir": "runs/train",
    "data": [],                # [{"root": DIR, "dirs": [structural, functional], "names": SPEC}]
    "val": [],                 # same form; validation pairs
    "val_every": 0,            # epochs between validations (0 = never)
    "val_max_pairs": 0,        # 0 = all validation pairs
    "val_profile": "paper",
    "val_slow_metrics": True,  # include FMI in validation
    "sample_every": 0,         # epochs between saved sample fusions (0 = never)
    "checkpoint_every": 0,     # iterations between mid-epoch checkpoints (0 = only at epoch ends)
    "keep_epoch_checkpoints": 0,  # also keep epoch_N.pt every N epochs (0 = only last.pt)
    "num_workers": 0,
    "max_steps": 0,            # stop after this many optimiser steps in total (0 = no limit)
    "model_options": {},
    "threads": 0,              # torch.set_num_threads (0 = leave as is)
}


class Config(dict):
    """``cfg.key`` and ``cfg["key"]``; unknown attribute -> a clear error naming the key."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"config has no key '{key}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, booleans, lists, objects), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MLFuseError(f"{path}: no such config file")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".json":
            return json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MLFuseError(f"{path}: not a valid config file ({str(exc).splitlines()[0]})") from None
    raise MLFuseError(f"{path}: config files must be .toml or .json")


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """``a.b=1`` sets ``cfg["a"]["b"]`` (nested dicts such as ``loss_weights``)."""
    *parents, last = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise MLFuseError(f"--set {key}: '{p}' is not a group of settings")
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        for k, v in value.items():  # a table in a config file updates the group, key by key
            set_dotted(node[last], k, v)
    else:
        node[last] = value


def build_config(recipe_defaults: Mapping[str, Any], *, file: str | Path | None = None,
                 sets: Iterable[str] = (), overrides: Mapping[str, Any] | None = None) -> Config:
    """Resolve the layers into one :class:`Config`; unknown keys are an error (typos must not pass)."""
    cfg = Config(json.loads(json.dumps({**GENERIC_DEFAULTS, **recipe_defaults})))
    known = set(cfg)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if file is not None:
        layers.append((str(file), read_config_file(file)))
    for item in sets:
        if "=" not in item:
            raise MLFuseError(f"--set {item}: expected key=value")
        key, _, text = item.partition("=")
        layers.append((f"--set {item}", {key.strip(): parse_value(text.strip())}))
    if overrides:
        layers.append(("command line", {k: v for k, v in overrides.items() if v is not None}))
    for origin, layer in layers:
        for key, value in layer.items():
            if key.split(".")[0] not in known:
                raise MLFuseError(f"{origin}: unknown setting '{key}' (known: {', '.join(sorted(known))})")
            set_dotted(cfg, key, value)
    return cfg
