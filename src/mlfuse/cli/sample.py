"""``mlfuse sample DIR``: write the rendered visible/infrared sample pair."""

from __future__ import annotations

import argparse
import sys

from mlfuse.data.sample import write_sample


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="write mlfuse's rendered sample pair (vis.png, ir.png)")
    p.add_argument("folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in write_sample(args.folder, overwrite=args.overwrite):
        print(path, file=sys.stderr)
    return 0
