"""Safe checkpoint reading and strict loading with one-line errors.

Checkpoints are read with ``torch.load(..., weights_only=True)`` (never a full unpickle) or with
safetensors, the format mlfuse ships. Accepted layouts: a bare state_dict, ``{'model': sd}`` (the
MLFuse authors' ``{'epoch', 'model'}``), ``{'state_dict': sd}``, and keys prefixed by ``module.``
(DataParallel / DDP). A model may read other layouts through a ``convert_checkpoint(obj)`` hook
(e.g. the CDDFuse family's dict of sub-module state_dicts), passed here as ``convert``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from mlfuse.errors import CheckpointError

_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "net", "params")


def looks_like_safetensors(path: str | Path) -> bool:
    """True if the file starts like safetensors (8-byte little-endian header length, then a JSON object),
    whatever its suffix."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = Path(path).stat().st_size
    except OSError:
        return False
    return len(head) == 9 and 0 < int.from_bytes(head[:8], "little") < size and head[8:9] == b"{"


def load_raw(path: str | Path) -> tuple[object, dict[str, str]]:
    """The object stored in a checkpoint file (``torch.load(weights_only=True)``; safetensors: its flat
    dict) and the safetensors metadata (``{}`` for PyTorch files). One-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True), {}
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # weights_only refusals are UnpicklingError subclasses
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor checkpoint ({_refusal_reason(exc)})"
        ) from None


def read_checkpoint(path: str | Path, convert: Callable[[object], Mapping[str, torch.Tensor] | None] | None = None
                    ) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{key: tensor}`` dict on the CPU, without unpickling code.

    ``convert`` (a model's ``convert_checkpoint``) gets the loaded object first and returns a flat
    state_dict, or ``None`` to fall back to the generic layouts of :func:`extract_state_dict`.
    """
    path = Path(path)
    obj, _ = load_raw(path)
    return to_state_dict(obj, path, convert)


def to_state_dict(obj: object, path: str | Path = "<checkpoint>",
                  convert: Callable[[object], Mapping[str, torch.Tensor] | None] | None = None
                  ) -> dict[str, torch.Tensor]:
    """A loaded checkpoint object -> flat state_dict (the model's ``convert`` first, then the generic layouts)."""
    if convert is not None:
        try:
            converted = convert(obj)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if converted is not None:
            return dict(converted)
    return extract_state_dict(obj, path)


def extract_state_dict(obj: object, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    """Find the state_dict inside a loaded checkpoint object and strip ``module.`` prefixes."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(torch.is_tensor(v) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: no state_dict found (expected a dict of tensors, or one under 'model')")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """``model.load_state_dict(strict=True)``, failing with one line naming missing/unexpected keys
    and shape mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs expected {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        name = type(model).__name__
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {_few(shapes)}")
        raise CheckpointError(f"{source}: does not fit {name}: " + "; ".join(parts))
    broken = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # would fuse to a near-black image with exit status 0
        raise CheckpointError(f"{source}: {len(broken)} tensor(s) contain NaN or infinity: {_few(broken)}")
    model.load_state_dict(state_dict, strict=True)


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def _refusal_reason(exc: BaseException) -> str:
    """Why the weights-only unpickler refused a file, without PyTorch's advice to load it with
    ``weights_only=False`` (that would run whatever code the file carries)."""
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if line and "weights_only" not in line and "documentation" not in line:
            return line[:200]
    return "it stores Python objects other than tensors"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
