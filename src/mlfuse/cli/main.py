"""``mlfuse`` command line: a thin layer over the library; each sub-command lives in its own module.

Every user-caused error is printed as one line (``mlfuse: error: ...``), exit status 2; a folder
run where some pairs failed exits with status 1.

Sub-command modules are imported only when their command runs: ``mlfuse --help`` (and the start of
every command) does not pay for PyTorch unless the command needs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mlfuse import __version__
from mlfuse.errors import MLFuseError

#: command -> (module with ``add_parser(sub)``, the one-line help `mlfuse --help` lists)
COMMANDS: dict[str, tuple[str, str]] = {
    "fuse": ("mlfuse.cli.fuse", "fuse an image pair or two folders of pairs"),
    "eval": ("mlfuse.cli.eval", "compute fusion metrics over folders of results"),
    "train": ("mlfuse.cli.train", "train a method with its recipe (resumable; torchrun for several processes)"),
    "vsm": ("mlfuse.cli.vsm", "visual saliency map (histogram contrast) of an image or a folder"),
    "bench": ("mlfuse.cli.bench", "benchmark methods on datasets: metric tables, efficiency, figures"),
    "export": ("mlfuse.cli.export", "export a network to ONNX (dynamic height and width)"),
    "weights": ("mlfuse.cli.weights", "list, download or inspect weights; package a training run"),
    "models": ("mlfuse.cli.models", "list registered methods"),
    "sample": ("mlfuse.cli.sample", "write mlfuse's rendered sample pair (vis.png, ir.png)"),
    "downstream": ("mlfuse.cli.downstream", "train a segmenter/detector on fused images vs each modality; tables"),
    "demo": ("mlfuse.cli.demo", "local web page: fuse a pair with several methods, compare them, read the metrics"),
}


def _command_in(argv: list[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``mlfuse`` parser. With ``argv``, only the command it names gets its full parser (its module is
    imported); the others are listed by name and help. Without, every command's parser is built."""
    parser = argparse.ArgumentParser(prog="mlfuse", description="Multi-modality image fusion.")
    parser.add_argument("--version", action="version", version=f"mlfuse {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = _command_in(argv) if argv is not None else None
    for name, (module, help_text) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except MLFuseError as exc:
        print(f"mlfuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlfuse: interrupted", file=sys.stderr)
        return 130
