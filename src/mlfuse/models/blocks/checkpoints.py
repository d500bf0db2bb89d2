"""The CDDFuse-family checkpoint layout (common §1) <-> a flat state_dict.

CDDFuse, SFDFuse and SMFNet save ``{top_name: DataParallel(module).state_dict()}``: a dict of
sub-module state_dicts whose keys all start with ``module.``. A port whose sub-modules are attributes
called ``top_name`` has the flat keys ``top_name.<key without module.>``; these two functions map one
onto the other, so the authors' files load with ``strict=True`` and files saved back round-trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from mlfuse.errors import CheckpointError

_PREFIX = "module."


def from_authors_layout(obj: object, top_level: Iterable[str]) -> dict[str, Tensor] | None:
    """Flatten ``{top: {'module.k': t}}`` to ``{'top.k': t}``.

    Returns ``None`` when ``obj`` is not a dict of tensor dicts with at least one of ``top_level``'s
    names (the caller then tries its generic layouts). Raises :class:`CheckpointError` for a dict of
    that shape with unknown top-level names, so a checkpoint of another method fails on one line.
    """
    top_level = tuple(top_level)
    if not isinstance(obj, Mapping) or not obj:
        return None
    nested = {k: v for k, v in obj.items() if isinstance(v, Mapping)}
    if not nested or not any(k in top_level for k in nested):
        return None
    unknown = [k for k in nested if k not in top_level]
    if unknown:
        raise CheckpointError(
            f"checkpoint has sub-networks {', '.join(map(str, unknown))} not in this model "
            f"(expected {', '.join(top_level)})"
        )
    flat: dict[str, Tensor] = {}
    for top, sd in nested.items():
        for key, value in sd.items():
            if not torch.is_tensor(value):
                raise CheckpointError(f"checkpoint entry {top}/{key} is not a tensor")
            inner = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
            flat[f"{top}.{inner}"] = value
    return flat


def authors_layout(state_dict: Mapping[str, Tensor], top_level: Iterable[str]) -> dict[str, dict[str, Tensor]]:
    """Inverse of :func:`from_authors_layout`: ``{'top.k': t}`` -> ``{top: {'module.k': t}}``."""
    out: dict[str, dict[str, Tensor]] = {top: {} for top in top_level}
    for key, value in state_dict.items():
        top, _, inner = key.partition(".")
        if top not in out:
            raise KeyError(f"state_dict key '{key}' belongs to no top-level module ({', '.join(out)})")
        out[top][_PREFIX + inner] = value
    return out


class AuthorsLayoutMixin:
    """The checkpoint hooks of a network whose sub-networks are attributes named as in its ``TOP_LEVEL``
    (CDDFuse, SFDFuse, SMFNet); list it before the :class:`torch.nn.Module` base."""

    TOP_LEVEL: tuple[str, ...] = ()

    @classmethod
    def convert_checkpoint(cls, obj: object) -> dict[str, Tensor] | None:
        """The authors' layout ``{'DIDF_Encoder': {'module.…': t}, …}`` -> this module's flat state_dict;
        ``None`` if ``obj`` is not in that layout (then the generic reader applies)."""
        return from_authors_layout(obj, cls.TOP_LEVEL)

    def authors_checkpoint(self) -> dict[str, dict[str, Tensor]]:
        """This network's weights in the authors' layout, loadable by their scripts (CDDFuse's ``CDDFuse_IVF.pth``
        / ``CDDFuse_MIF.pth``, SFDFuse's ``SFDFuse_best.pth``, SMFNet's ``models/model_VIF.pth``)."""
        return authors_layout(self.state_dict(), self.TOP_LEVEL)
