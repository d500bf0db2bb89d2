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
    "data": [],                # [{"root": DIR, "dirs": [structural, functional], "names": SPEC, "repeat": N}]
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
    "max_seconds": 0.0,        # stop, checkpointed, once this invocation has trained this long (0 = no limit)
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


def set_dotted(cfg: dict, key: str, value: Any, *, strict: bool = False, origin: str = "") -> None:
    """``a.b=1`` sets ``cfg["a"]["b"]`` (nested dicts such as ``loss_weights``); a number picks an item of a
    list (``data.0.repeat=4``: the first data entry's). ``strict``: a key missing from a non-empty group
    is an error (an empty group, e.g. ``model_options``, is free-form)."""
    *parents, last = key.split(".")
    node = cfg
    where = origin or f"--set {key}"
    for i, p in enumerate(parents):
        if isinstance(node, list):
            node = _list_item(node, p, ".".join(parents[:i]), where)
            strict = False  # a list's items (data entries) are free-form
        else:
            if strict and node and p not in node:
                raise MLFuseError(f"{where}: unknown setting '{'.'.join(parents[:i + 1])}'")
            node = node.setdefault(p, {})
        if not isinstance(node, dict | list):
            raise MLFuseError(f"{where}: '{p}' is not a group of settings")
    if isinstance(node, list):
        raise MLFuseError(f"{where}: '{'.'.join(parents)}' is a list: name a setting of one item "
                          f"('{'.'.join(parents)}.0.<setting>')")
    if strict and parents and node and last not in node:
        raise MLFuseError(f"{where}: unknown setting '{key}' (known in '{'.'.join(parents)}': "
                          f"{', '.join(sorted(node))})")
    if isinstance(value, dict) and isinstance(node.get(last), dict):
        group = node[last]
        for k, v in value.items():  # a table in a config file updates the group, key by key
            if strict and group and k not in group:
                raise MLFuseError(f"{where}: unknown setting '{key}.{k}' "
                                  f"(known in '{key}': {', '.join(sorted(group))})")
            set_dotted(group, k, v, strict=strict, origin=where)
    else:
        node[last] = value


def _list_item(items: list, index: str, name: str, where: str) -> Any:
    if not index.isdigit() or int(index) >= len(items):
        raise MLFuseError(f"{where}: '{name}' has {len(items)} item(s), numbered from 0: no item '{index}'")
    return items[int(index)]


#: settings that must be >= 1 (counts and sizes); every other integer setting must be >= 0
POSITIVE = frozenset({"epochs", "batch_size", "crop", "patch_size", "patch_stride", "phase1_epochs", "step_size",
                      "sensing_step_size"})
#: float settings that must be > 0, and those that must be >= 0
POSITIVE_FLOAT = frozenset({"lr"})
NONNEGATIVE_FLOAT = frozenset({"max_seconds"})


def _type_name(default: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a group of settings"}.get(type(default), type(default).__name__)


def check_value(key: str, value: Any, default: Any, origin: str = "") -> Any:
    """``value`` of setting ``key`` checked against the type of its default and the setting's range;
    returns it (an integer given for a float setting becomes a float). One line on error."""
    where = f"{origin}: " if origin else ""
    if default is None:
        return value
    ok = (isinstance(value, bool) if isinstance(default, bool) else
          isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int) else
          isinstance(value, int | float) and not isinstance(value, bool) if isinstance(default, float) else
          isinstance(value, type(default)))
    if not ok:
        raise MLFuseError(f"{where}setting '{key}' must be {_type_name(default)}, not {value!r}")
    if isinstance(default, float):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise MLFuseError(f"{where}setting '{key}' must be a finite number, not {value!r}")
        if key.rsplit(".", 1)[-1] in POSITIVE_FLOAT and value <= 0:
            raise MLFuseError(f"{where}setting '{key}' must be > 0, not {value!r}")
        if key.rsplit(".", 1)[-1] in NONNEGATIVE_FLOAT and value < 0:
            raise MLFuseError(f"{where}setting '{key}' must be >= 0, not {value!r}")
    elif isinstance(default, int) and not isinstance(default, bool):
        low = 1 if key.rsplit(".", 1)[-1] in POSITIVE else 0
        if value < low:
            raise MLFuseError(f"{where}setting '{key}' must be >= {low}, not {value!r}")
    return value


def validate(cfg: dict, defaults: Mapping[str, Any], prefix: str = "") -> None:
    """Every setting of ``cfg`` against its default's type and range (nested groups too), in place."""
    for key, default in defaults.items():
        if key not in cfg:
            continue
        name = f"{prefix}{key}"
        if isinstance(default, dict) and default and isinstance(cfg[key], dict):
            validate(cfg[key], default, f"{name}.")
        else:
            cfg[key] = check_value(name, cfg[key], default)


def build_config(recipe_defaults: Mapping[str, Any], *, file: str | Path | None = None,
                 sets: Iterable[str] = (), overrides: Mapping[str, Any] | None = None,
                 presets: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None) -> Config:
    """Resolve the layers into one :class:`Config`; unknown keys (nested ones too) are an error (typos must
    not pass), and every value is checked against its default's type and the setting's range up front.

    ``presets``: named bundles of settings selected by one setting (e.g. ``{"schedule": {"cpu": {...}}}``:
    ``--set schedule=cpu`` applies that bundle). A selected bundle sits between the recipe's defaults and
    the config file, so any setting given explicitly still wins."""
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
        layers.append(("", {k: v for k, v in overrides.items() if v is not None}))  # flags / keyword arguments
    for selector, bundles in (presets or {}).items():
        chosen = cfg.get(selector)
        for _, layer in layers:  # the last layer that names the selector decides
            chosen = layer.get(selector, chosen)
        if chosen in bundles:
            layers.insert(0, (f"{selector}={chosen}", bundles[chosen]))
        elif chosen is not None and chosen != cfg.get(selector):
            names = ", ".join(dict.fromkeys([str(cfg.get(selector)), *bundles]))
            raise MLFuseError(f"unknown {selector} '{chosen}' (choose {names})")
    defaults = json.loads(json.dumps(cfg))
    for origin, layer in layers:
        for key, value in layer.items():
            where = origin or "keyword argument"
            if key.split(".")[0] not in known:
                raise MLFuseError(f"{where}: unknown setting '{key}' (known: {', '.join(sorted(known))})")
            set_dotted(cfg, key, value, strict=True, origin=where)
            try:
                validate(cfg, defaults)
            except MLFuseError as exc:
                raise MLFuseError(f"{origin}: {exc}" if origin else str(exc)) from None
    return cfg
