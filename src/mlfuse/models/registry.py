"""One registry for every fusion method: ``create_model(name, weights=...)`` builds any of them.

Each method declares a :class:`ModelCard` beside its network (input roles, size constraints, output rule,
tasks, weight releases, training recipe, method hooks), in the manner of timm's ``register_model`` +
pretrained configs, and registers it once at import: this module lives inside :mod:`mlfuse.models`, so
importing it runs ``mlfuse/models/__init__.py`` first, which imports every method. Lookups therefore never
import anything upward. The CLI and the fusion pipeline read everything method-specific from the card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mlfuse.errors import CheckpointError, MLFuseError, WeightsNotFoundError
from mlfuse.weights.checkpoint import load_into, load_raw, looks_like_safetensors, to_state_dict
from mlfuse.weights.store import (
    WeightsRelease,
    declared_releases,
    digests,
    find_release_by_digest,
    get_release,
    is_release,
    list_releases,
    verified_path,
)

if TYPE_CHECKING:
    from mlfuse.train.recipe import Recipe

#: the two input roles of every method: a structural/texture image and a functional/intensity one
STRUCTURAL_MODALITIES = ("visible", "mri")
FUNCTIONAL_MODALITIES = ("infrared", "ct", "pet", "spect")


@dataclass(frozen=True)
class ModelCard:
    """What the rest of mlfuse needs to know about a method.

    ``min_size``: smallest (H, W) the network accepts (smaller inputs are reflect-padded);
    ``size_multiple``: H and W must be multiples of it (inputs are reflect-padded up);
    ``output_rule``: how the raw output becomes 8 bits by default (``"minmax"``: the authors'
    per-image min-max x255 truncation; ``"clamp"``: clamp to [0,1] x255 round);
    ``releases``: its weight releases, :class:`~mlfuse.weights.store.WeightsRelease` objects (a card may
    list them by name; registration puts the declared objects in their place, and releases declared with
    ``model=name`` in :mod:`mlfuse.weights.releases` join the card), names in :attr:`release_names`;
    ``default_weights``: the release (or packaged file) used when the user gives none, ``None`` if
    weights must be supplied;
    ``tasks``: the values the builder's ``task`` option takes, the first its default (empty: no variants);
    ``paper_color``: the method's own ``--color paper`` round trip (``(model, structural, functional,
    output_rule) -> uint8 image``, see :func:`mlfuse.models.smfnet.color.paper_color`), ``None`` for the
    common YCbCr one; ``tiling``: a :class:`mlfuse.inference.tiling.TileSpec` for a network that declares none on
    its class; ``recipe``: its training recipe (``mlfuse train``), ``None`` if it is not trainable.
    """

    name: str
    builder: Callable[..., nn.Module]
    paper: str
    structural: tuple[str, ...] = STRUCTURAL_MODALITIES
    functional: tuple[str, ...] = FUNCTIONAL_MODALITIES
    min_size: tuple[int, int] = (1, 1)
    size_multiple: int = 1
    output_rule: str = "minmax"
    releases: tuple[WeightsRelease, ...] = ()
    default_weights: str | None = None
    needs_weights: bool = True
    notes: str = ""
    tasks: tuple[str, ...] = ()
    paper_color: Callable[..., object] | None = None
    tiling: object | None = None
    recipe: Recipe | None = None

    @property
    def release_names(self) -> tuple[str, ...]:
        """The names of :attr:`releases`, in order (the first listed are the card's own)."""
        return tuple(r if isinstance(r, str) else r.name for r in self.releases)

    def release_named(self, choice: str) -> str | None:
        """The card's release that ``choice`` names, in full (``mlfuse-own-v2``) or short (``own-v2``, as
        ``mlfuse bench`` writes ``mlfuse:own-v2``); ``None`` when it names none of them."""
        names = self.release_names
        return next((n for n in (choice, f"{self.name}-{choice}") if n in names), None)


_MODELS: dict[str, ModelCard] = {}


def register_model(card: ModelCard) -> ModelCard:
    """Register a method, once (a second card of the same name is an error). Releases declared for it
    in :mod:`mlfuse.weights.releases` (``WeightsRelease(model=name)``) join the card's ``releases``; a
    release the card lists must be declared, and not for another method. The card's recipe is bound to
    the card's builder and the card."""
    if card.name in _MODELS:
        raise ValueError(f"model '{card.name}' registered twice")
    declared = {r.name: r for r in declared_releases()}
    listed = card.release_names
    for name in listed:
        if name not in declared:
            raise ValueError(f"model '{card.name}': release '{name}' is not declared")
        if declared[name].model not in ("", card.name):
            raise ValueError(f"model '{card.name}': release '{name}' belongs to '{declared[name].model}'")
    extra = tuple(n for n, r in sorted(declared.items()) if r.model == card.name and n not in listed)
    card = replace(card, releases=tuple(declared[n] for n in listed + extra))
    if card.recipe is not None:
        if card.recipe.name != card.name:
            raise ValueError(f"model '{card.name}': its recipe is named '{card.recipe.name}'")
        card.recipe.builder = card.builder
        card.recipe.card = card
    _MODELS[card.name] = card
    return card


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_card(name: str) -> ModelCard:
    try:
        return _MODELS[name]
    except KeyError:
        raise MLFuseError(f"unknown model '{name}' (available: {', '.join(sorted(_MODELS))})") from None


def get_recipe(name: str) -> Recipe:
    """Method ``name``'s training recipe (its card's ``recipe``)."""
    recipe = _MODELS[name].recipe if name in _MODELS else None
    if recipe is None:
        raise MLFuseError(f"no training recipe for '{name}' (trainable: {', '.join(list_recipes())})")
    return recipe


def list_recipes() -> list[str]:
    """Names of the methods that have a training recipe."""
    return sorted(n for n, c in _MODELS.items() if c.recipe is not None)


def check_task(card: ModelCard, task: object) -> None:
    """Refuse a ``task`` the method does not have, in one line (the CLI's ``--task`` message)."""
    if task is not None and task not in card.tasks:
        have = f"its tasks are {', '.join(card.tasks)}" if card.tasks else "it has no task variants"
        raise MLFuseError(f"--task {task}: not available for model '{card.name}' ({have})")


def release_model(release: WeightsRelease) -> str | None:
    """The method a release belongs to: its declared ``model``, else the card that lists it."""
    if release.model:
        return release.model
    return next((c.name for c in _MODELS.values() if release.name in c.release_names), None)


def releases_of(name: str) -> list[WeightsRelease]:
    """Every release of method ``name``: those its card lists, then any other declared for it."""
    card = get_card(name)
    names = list(card.release_names)
    return list(card.releases) + [r for r in list_releases() if r.name not in names and release_model(r) == name]


def model_for_weights(weights: str | Path | None) -> str | None:
    """The method a ``--weights`` value belongs to when it names a release (``None`` otherwise), so
    ``mlfuse fuse --weights cddfuse-ivf`` needs no ``--model``."""
    if isinstance(weights, str) and weights != "default" and not Path(weights).exists() and is_release(weights):
        return release_model(get_release(weights))
    return None


def resolve_weights(card: ModelCard, weights: str | Path | None) -> Path | None:
    """Turn a weights argument into a file: ``None`` -> no weights (random init),
    ``"default"`` -> the card's default, a release name -> its verified file, else a path."""
    return _resolve(card, weights)[0]


def _resolve(card: ModelCard, weights: str | Path | None) -> tuple[Path | None, WeightsRelease | None]:
    if weights is None:
        return None, None
    if isinstance(weights, str) and weights == "default":
        if card.default_weights is None:
            names = ", ".join(card.release_names)
            raise WeightsNotFoundError(
                f"model '{card.name}' ships no default weights: pass --weights FILE"
                + (f" or a release ({names}; `mlfuse weights fetch NAME` downloads it)" if names else
                   " (its authors' checkpoint files load directly)")
            )
        weights = card.default_weights
    if isinstance(weights, str) and not Path(weights).exists() and is_release(weights):
        rel = get_release(weights)
        owner = release_model(rel)
        if owner is not None and owner != card.name:
            raise WeightsNotFoundError(
                f"weights '{weights}' are a release of model '{owner}', not '{card.name}': "
                f"use --model {owner} (or leave --model out)"
            )
        return verified_path(weights), rel
    path = Path(weights)
    if not path.exists():
        if isinstance(weights, str) and not path.suffix and "/" not in weights:
            known = ", ".join(card.release_names) or "none"
            raise WeightsNotFoundError(f"weights '{weights}': no such file, nor a release "
                                       f"(releases of {card.name}: {known}; all: `mlfuse models`)")
        raise WeightsNotFoundError(f"{path}: no such weights file")
    return path, None


def _release_of_file(card: ModelCard, path: Path) -> WeightsRelease | None:
    """A file that is a known release of ``card`` by its digest; computed only where a release fixes the
    task (CDDFuse's IVF and MIF checkpoints have the same keys: only the content tells them apart)."""
    if not any(r.tasks for r in card.releases):
        return None
    rel = find_release_by_digest(*digests(path))
    return rel if rel is not None and release_model(rel) == card.name else None


def _task_for(card: ModelCard, rel: WeightsRelease | None, kwargs: dict[str, object], source: str) -> None:
    """Set ``kwargs["task"]`` from the release (its first task) or check a given task fits it."""
    if rel is None or not rel.tasks:
        return
    task = kwargs.get("task")
    if task is None:
        kwargs["task"] = rel.task
    elif task not in rel.tasks:
        raise CheckpointError(
            f"{source}: task '{task}' does not fit weights '{rel.name}' ({rel.description}): "
            f"use task {' or '.join(map(repr, rel.tasks))}, or leave it out"
        )


def create_model(name: str, weights: str | Path | None = "default", *, device: str | torch.device = "cpu",
                 **kwargs: object) -> nn.Module:
    """Build method ``name`` in eval mode with its weights loaded (``strict=True``).

    ``weights``: ``"default"`` (the card's default weights), a release name (e.g. ``"mlfuse-paper"``,
    ``"cddfuse-mif"``; packaged, fetched into the cache, or installed by ``mlfuse weights package``), a file
    path (.pth/.pt via ``torch.load(weights_only=True)``, or safetensors), or ``None`` for an untrained
    (randomly initialised) network. A release (or a file that is one, by its digest) sets the model's
    ``task`` when none is given. A file of another method fails with one line naming that method. The
    returned module has ``.card`` and ``.fuse()``.
    """
    card = get_card(name)
    check_task(card, kwargs.get("task"))
    kwargs = dict(kwargs)
    path, rel = _resolve(card, weights) if card.needs_weights else (None, None)
    if path is not None and rel is None:
        rel = _release_of_file(card, path)
    if path is not None:
        _task_for(card, rel, kwargs, str(weights) if isinstance(weights, Path) or Path(weights).exists() else
                  f"weights '{weights}'")
    model = card.builder(**kwargs)
    model.card = card
    if path is not None:
        obj: object = None
        try:
            obj, _ = load_raw(path)
            load_into(model, to_state_dict(obj, path, getattr(model, "convert_checkpoint", None)), path)
        except CheckpointError as exc:
            other = _other_method(obj, card.name)
            if other is None:
                raise
            detail = str(exc).removeprefix(f"{path}: ")
            raise CheckpointError(f"{path}: these are {other} weights (its network's keys), not {card.name}'s: "
                                  f"use --model {other} ({card.name}: {detail})") from exc
        model.weights_source = str(path)
    else:
        model.weights_source = None
    return model.to(device).eval()


# ----------------------------------------------------------------------------- identifying checkpoints

@cache
def _expected(name: str) -> tuple[dict[str, tuple[int, ...]], frozenset[str]]:
    """``({key: shape}, parameter keys)`` of method ``name``'s network, built once with its defaults."""
    model = get_card(name).builder()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes, frozenset(k for k, _ in model.named_parameters())


def _match(name: str, obj: object) -> tuple[float, dict[str, torch.Tensor] | None]:
    """How well a loaded checkpoint fits method ``name``: the share of keys (of the larger set) with the
    right shape; 1.0 = exact. The state_dict as that method reads it, or ``None`` if it cannot."""
    card = get_card(name)
    try:
        sd = to_state_dict(obj, "<checkpoint>", getattr(card.builder, "convert_checkpoint", None))
    except CheckpointError:
        return 0.0, None
    shapes, _ = _expected(name)
    good = sum(1 for k, v in sd.items() if shapes.get(k) == tuple(v.shape))
    return good / max(len(sd), len(shapes)), sd


def _other_method(obj: object, own: str) -> str | None:
    """The registered method (not ``own``) whose network the checkpoint fits exactly, if any."""
    if obj is None:
        return None
    for name in list_models():
        if name != own and get_card(name).needs_weights and _match(name, obj)[0] == 1.0:
            return name
    return None


@dataclass
class CheckpointInfo:
    """What ``mlfuse weights inspect`` reports about a checkpoint file."""

    path: Path
    size: int
    sha256: str
    blob: str
    layout: str
    tensors: int
    method: str | None
    fit: float
    parameters: int
    buffers: int
    release: WeightsRelease | None
    task: str | None
    metadata: dict[str, str]


def _layout(obj: object, metadata: dict[str, str], safetensors: bool) -> str:
    from collections.abc import Mapping

    if safetensors:
        meta = f" (metadata: {', '.join(sorted(metadata))})" if metadata else ""
        return f"safetensors, flat state_dict{meta}"
    if isinstance(obj, Mapping):
        nested = [k for k, v in obj.items() if isinstance(v, Mapping) and v and all(torch.is_tensor(t)
                                                                                   for t in v.values())]
        if len(nested) > 1:
            prefixed = all(all(str(k).startswith("module.") for k in obj[n]) for n in nested)
            return (f"dict of {len(nested)} sub-network state_dicts ({', '.join(map(str, nested))})"
                    + (", keys 'module.'-prefixed (DataParallel)" if prefixed else ""))
        if len(nested) == 1 and len(obj) > 1:
            others = ", ".join(repr(k) for k in obj if k != nested[0])
            return f"state_dict under {nested[0]!r}, beside {others}"
        if len(nested) == 1:
            return f"state_dict under {nested[0]!r}"
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            prefixed = all(str(k).startswith("module.") for k in obj)
            return "bare state_dict" + (", keys 'module.'-prefixed (DataParallel)" if prefixed else "")
    return f"{type(obj).__name__} (no state_dict found)"


def identify_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a checkpoint safely and tell what it is: the method whose network its keys fit (exactly, or
    the closest), the task (from a known release's digest or the file's metadata), parameter count,
    layout, git blob id and sha256."""
    path = Path(path)
    obj, metadata = load_raw(path)
    sha, blob = digests(path)
    rel = find_release_by_digest(sha, blob)
    scored = []
    for name in list_models():
        if get_card(name).needs_weights:
            fit, sd = _match(name, obj)
            scored.append((fit, name, sd))
    fit, method, sd = max(scored, key=lambda t: t[0]) if scored else (0.0, None, None)
    meta_method = metadata.get("method")
    if meta_method in _MODELS and (fit < 1.0 or meta_method == method):
        method = meta_method
        fit, sd = _match(method, obj)
    if fit == 0.0:
        method = None
    params = buffers = 0
    if method is not None and sd is not None:
        _, param_keys = _expected(method)
        for k, v in sd.items():
            if k in param_keys:
                params += v.numel()
            elif v.is_floating_point():
                buffers += v.numel()
    else:
        from collections.abc import Mapping

        tensors = obj.values() if isinstance(obj, Mapping) else ()
        params = sum(t.numel() for t in tensors if torch.is_tensor(t))
    n_tensors = len(sd) if sd is not None else 0
    task = rel.task if rel is not None and release_model(rel) == method else None
    task = task or metadata.get("task")
    return CheckpointInfo(path=path, size=path.stat().st_size, sha256=sha, blob=blob,
                          layout=_layout(obj, metadata, path.suffix == ".safetensors" or looks_like_safetensors(path)),
                          tensors=n_tensors, method=method, fit=fit, parameters=params, buffers=buffers,
                          release=rel, task=task, metadata=metadata)
