"""``mlfuse demo``: serve the local comparison page (``mlfuse.demo``) until Ctrl+C."""

from __future__ import annotations

import argparse
import signal
import sys

from mlfuse.errors import MLFuseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="local web page: fuse a pair with several methods, compare them, read the metrics",
        description="Serve a page (on this machine only, by default) to upload or pick an image pair, fuse it "
                    "with several methods, compare the results side by side and read their metrics. Nothing is "
                    "sent elsewhere; uploads and results live in a scratch folder removed on exit.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; others print a warning)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument("--data", metavar="DIR",
                   help="offer the test pairs of the data sets under DIR (folders with vi/ir, mri/ct, ... sub-folders)")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=FILE",
                   help="weights file for a method (repeatable), e.g. cddfuse=CDDFuse_IVF.pth")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB",
                   help="largest upload accepted, in MB (default 20)")
    p.add_argument("--max-megapixels", type=float, default=16.0, metavar="MP",
                   help="largest image accepted, in megapixels (default 16)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.set_defaults(run=run)


def parse_weights(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MLFuseError(f"--weights {item}: expected NAME=FILE, e.g. cddfuse=CDDFuse_IVF.pth")
        out[name] = path
    return out


def run(args: argparse.Namespace) -> int:
    from mlfuse.demo.server import DemoServer, warn_if_exposed  # imports torch: only when the demo runs

    if not 0 <= args.port <= 65535:
        raise MLFuseError(f"--port {args.port}: expected 0..65535")
    server = DemoServer(args.host, args.port, data=args.data, weights=parse_weights(args.weights),
                        max_upload_mb=args.max_upload_mb, max_megapixels=args.max_megapixels,
                        device=args.device, verbose=args.verbose)
    # SIGTERM ends the demo like Ctrl+C, so the scratch folder is removed either way
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        warn_if_exposed(args.host)
        print(f"mlfuse demo: serving on {server.url} (Ctrl+C to stop)", file=sys.stderr)
        print(f"mlfuse demo: scratch folder {server.scratch} (removed on exit)", file=sys.stderr, flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        print("mlfuse demo: stopped", file=sys.stderr)
    finally:
        server.close()
        signal.signal(signal.SIGTERM, previous)
    return 0
