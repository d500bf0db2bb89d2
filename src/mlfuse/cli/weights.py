"""``mlfuse weights list|fetch|path|inspect|package``: named weight releases, checkpoint files, packaging a run."""

from __future__ import annotations

import argparse
import sys

from mlfuse.errors import MLFuseError
from mlfuse.registry import list_models
from mlfuse.weights.store import (
    DEFAULT_DEADLINE,
    DEFAULT_STALL_TIMEOUT,
    fetch,
    get_release,
    list_releases,
    release_path,
    release_state,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, download or inspect weights; package a training run",
                       description="Named weight releases (mlfuse's own, packaged; the methods' authors' "
                                   "checkpoints, downloaded from their repositories and verified), checkpoint "
                                   "files, and packaging a training run.")
    wsub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    lp = wsub.add_parser("list", help="known releases and whether they are cached")
    lp.set_defaults(run=run_list)
    fp = wsub.add_parser("fetch", help="download a release (or all) into the cache and verify it",
                         description="Download a release into the cache, verify its git blob id / sha256, and "
                                     "record its sha256. A dropped connection keeps the partial file: the same "
                                     "command resumes it.")
    fp.add_argument("name", metavar="NAME|all")
    fp.add_argument("--url", help="download from this URL instead (a mirror, or file:///path/to/copy)")
    fp.add_argument("--force", action="store_true", help="download again even if cached")
    fp.add_argument("--timeout", type=float, default=DEFAULT_STALL_TIMEOUT, metavar="S",
                    help=f"give up after S seconds without data (default {DEFAULT_STALL_TIMEOUT:g})")
    fp.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE, metavar="S",
                    help=f"give up when the download takes longer than S seconds (default {DEFAULT_DEADLINE:g})")
    fp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fp.set_defaults(run=run_fetch)
    pp = wsub.add_parser("path", help="print where a release is stored")
    pp.add_argument("name")
    pp.set_defaults(run=run_path)
    ip = wsub.add_parser("inspect", help="what a checkpoint file is: method, task, parameters, layout, digests")
    ip.add_argument("file")
    ip.set_defaults(run=run_inspect)
    kp = wsub.add_parser("package", help="a finished training run -> safetensors + Markdown model card")
    kp.add_argument("run_dir", help="the training run's output folder (holds model.safetensors, epochs.csv)")
    kp.add_argument("out", help="the .safetensors file to write (the card is written beside it as .md)")
    kp.add_argument("--name", required=True, help="release name recorded in the metadata and the card")
    kp.add_argument("--hardware", help="where it was trained (default: this machine's description)")
    kp.add_argument("--command", help="the command that trained it, for the card's Reproduce section")
    kp.add_argument("--no-install", action="store_true",
                    help="do not install the release into the weights cache (by default it is, so "
                         "--weights NAME and create_model(..., weights=NAME) find it)")
    kp.add_argument("--overwrite", action="store_true")
    kp.set_defaults(run=run_package)


def run_list(args: argparse.Namespace) -> int:
    from mlfuse.registry import release_model

    list_models()
    for rel in list_releases():
        where = release_path(rel.name) if rel.packaged or not rel.url else rel.url
        digest = f"git blob {rel.blob}" if rel.blob else f"sha256 {rel.sha256}"
        print(f"{rel.name}: {release_state(rel.name)} - model {release_model(rel) or '?'}"
              f"{' (task ' + rel.task + ')' if rel.task else ''} - {rel.description}\n  {where}\n  {digest}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    list_models()
    for opt in ("timeout", "deadline"):
        if not getattr(args, opt) > 0:
            raise MLFuseError(f"--{opt} {getattr(args, opt)}: expected a positive number of seconds")
    if args.name == "all":
        if args.url:
            raise MLFuseError("--url gives one file: use it with one release name, not 'all'")
        names = [r.name for r in list_releases() if r.url and not r.packaged]
    else:
        get_release(args.name)
        names = [args.name]
    failed = 0
    for name in names:
        try:
            path = fetch(name, args.url, force=args.force, quiet=args.quiet, timeout=args.timeout,
                         deadline=args.deadline)
        except MLFuseError as exc:
            if len(names) == 1:
                raise
            print(f"mlfuse: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(path)
    if failed:
        print(f"{len(names) - failed} of {len(names)} releases fetched, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def run_path(args: argparse.Namespace) -> int:
    list_models()
    print(release_path(args.name))
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from mlfuse.registry import get_card, identify_checkpoint, release_model

    info = identify_checkpoint(args.file)
    if info.method is None:
        method = "unknown (its keys fit no registered method)"
    elif info.fit < 1.0:
        method = f"unknown; closest {info.method} ({info.fit:.0%} of the keys fit its network)"
    else:
        method = f"{info.method} (all {info.tensors} tensors fit its network)"
    tasks = get_card(info.method).tasks if info.method else ()
    if info.task:
        task = f"{info.task} ({'from release ' + info.release.name if info.release else 'from the metadata'})"
    elif info.method and tasks and info.fit == 1.0:
        task = f"not recorded in the file ({info.method}'s tasks {', '.join(tasks)} share one layout; give --task)"
    else:
        task = "-"
    if info.release is not None:
        by = "git blob id" if info.release.blob == info.blob else "sha256"
        rel = f"{info.release.name} (model {release_model(info.release)}; identical by {by})"
    else:
        rel = "none known"
    params = f"{info.parameters:,}" + (f" (+ {info.buffers:,} buffer values)" if info.buffers else "")
    print(f"file: {info.path} ({info.size:,} bytes)")
    print(f"method: {method}")
    print(f"task: {task}")
    print(f"parameters: {params}")
    print(f"layout: {info.layout}")
    print(f"release: {rel}")
    print(f"git blob id: {info.blob}")
    print(f"sha256: {info.sha256}")
    for key in ("method", "release", "epochs_done"):
        if key in info.metadata:
            print(f"metadata {key}: {info.metadata[key]}")
    return 0


def run_package(args: argparse.Namespace) -> int:
    from mlfuse.train.card import package_run

    list_models()
    out, card = package_run(args.run_dir, args.out, name=args.name, hardware=args.hardware, command=args.command,
                            overwrite=args.overwrite, install=not args.no_install)
    print(out)
    print(card)
    return 0
