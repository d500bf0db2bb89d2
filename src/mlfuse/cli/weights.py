"""``mlfuse weights list|fetch|path|package``: named weight releases; packaging a training run."""

from __future__ import annotations

import argparse

from mlfuse.registry import list_models
from mlfuse.weights.store import fetch, list_releases, release_path, release_state


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list or download weight releases")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    lp = wsub.add_parser("list", help="known releases and whether they are cached")
    lp.set_defaults(run=run_list)
    fp = wsub.add_parser("fetch", help="download a release into the cache and verify its sha256")
    fp.add_argument("name")
    fp.add_argument("--url", help="download from this URL instead (a mirror, or file:///path/to/copy)")
    fp.add_argument("--force", action="store_true", help="download again even if cached")
    fp.add_argument("-q", "--quiet", action="store_true")
    fp.set_defaults(run=run_fetch)
    pp = wsub.add_parser("path", help="print where a release is stored")
    pp.add_argument("name")
    pp.set_defaults(run=run_path)
    kp = wsub.add_parser("package", help="a finished training run -> safetensors + Markdown model card")
    kp.add_argument("run_dir", help="the training run's output folder (holds model.safetensors, epochs.csv)")
    kp.add_argument("out", help="the .safetensors file to write (the card is written beside it as .md)")
    kp.add_argument("--name", required=True, help="release name recorded in the metadata and the card")
    kp.add_argument("--hardware", help="where it was trained (default: this machine's description)")
    kp.add_argument("--command", help="the command that trained it, for the card's Reproduce section")
    kp.add_argument("--overwrite", action="store_true")
    kp.set_defaults(run=run_package)


def run_list(args: argparse.Namespace) -> int:
    list_models()
    for rel in list_releases():
        where = release_path(rel.name) if rel.packaged else rel.url
        print(f"{rel.name}: {release_state(rel.name)} - {rel.description}\n  {where}\n  sha256 {rel.sha256}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    list_models()
    path = fetch(args.name, args.url, force=args.force, quiet=args.quiet)
    print(path)
    return 0


def run_path(args: argparse.Namespace) -> int:
    list_models()
    print(release_path(args.name))
    return 0


def run_package(args: argparse.Namespace) -> int:
    from mlfuse.weights.card import package_run

    list_models()
    out, card = package_run(args.run_dir, args.out, name=args.name, hardware=args.hardware, command=args.command,
                            overwrite=args.overwrite)
    print(out)
    print(card)
    return 0
