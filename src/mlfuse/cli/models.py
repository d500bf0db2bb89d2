"""``mlfuse models``: the registered methods with their roles, size rules, weights and releases."""

from __future__ import annotations

import argparse

from mlfuse.registry import get_card, list_models, releases_of
from mlfuse.weights.store import release_state


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list registered methods",
                       description="List every registered fusion method with its model card: paper, input roles, "
                                   "size constraints, output rule and default weights.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name in list_models():
        card = get_card(name)
        if card.default_weights is None:
            weights = "none by default (pass --weights RELEASE or FILE)" if card.needs_weights else "not needed"
        else:
            state = release_state(card.default_weights) if card.default_weights in card.release_names else "file"
            weights = f"{card.default_weights} ({state})"
        print(f"{name}: {card.paper}")
        print(f"  roles: structural={'/'.join(card.structural)}  functional={'/'.join(card.functional)}")
        print(f"  min size {card.min_size[0]}x{card.min_size[1]}, multiple of {card.size_multiple}; "
              f"output rule {card.output_rule}; default weights: {weights}")
        if card.needs_weights:
            rels = releases_of(name)
            listed = ", ".join(f"{r.name}{' [task ' + r.task + ']' if r.task else ''} ({release_state(r.name)})"
                               for r in rels)
            print(f"  releases: {listed or 'none'}")
    return 0
