"""``mlfuse`` command line: a thin layer over the library; each sub-command lives in its own module.

Every user-caused error is printed as one line (``mlfuse: error: ...``), exit status 2; a folder
run where some pairs failed exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

from mlfuse import __version__
from mlfuse.cli import bench, demo, export, fuse, models, sample, train, vsm, weights
from mlfuse.cli import eval as eval_cmd
from mlfuse.errors import MLFuseError

COMMANDS = (fuse, eval_cmd, train, vsm, bench, export, weights, models, sample, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlfuse", description="Multi-modality image fusion.")
    parser.add_argument("--version", action="version", version=f"mlfuse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except MLFuseError as exc:
        print(f"mlfuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlfuse: interrupted", file=sys.stderr)
        return 130
