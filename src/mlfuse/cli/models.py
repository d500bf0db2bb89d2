"""``mlfuse models``: the registered methods with their roles, size rules and weights."""

from __future__ import annotations

import argparse

from mlfuse.registry import get_card, list_models
from mlfuse.weights.store import get_release, release_path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered methods")
    p.set_defaults(run=run)


def _state(name: str, releases: tuple[str, ...]) -> str:
    if name not in releases:
        return "file"
    if get_release(name).packaged:
        return "packaged"
    return "cached" if release_path(name).is_file() else "not fetched"


def run(args: argparse.Namespace) -> int:
    for name in list_models():
        card = get_card(name)
        if card.default_weights is None:
            weights = "none by default (pass --weights)" if card.needs_weights else "not needed"
        else:
            weights = f"{card.default_weights} ({_state(card.default_weights, card.releases)})"
        print(f"{name}: {card.paper}")
        print(f"  roles: structural={'/'.join(card.structural)}  functional={'/'.join(card.functional)}")
        print(f"  min size {card.min_size[0]}x{card.min_size[1]}, multiple of {card.size_multiple}; "
              f"output rule {card.output_rule}; default weights: {weights}")
    return 0
