"""``mlfuse export MODEL --format onnx``: the fusion network as an ONNX file with dynamic
batch/height/width, checked in onnxruntime at two sizes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlfuse.cli.fuse import task_option
from mlfuse.inference.export import EXPORTERS, FORMATS, export_onnx
from mlfuse.registry import create_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a network to ONNX (dynamic height and width)",
                       description="Export MODEL's fusion forward (structural, functional -> raw fused) to ONNX "
                                   "with dynamic batch, height and width, and check it in onnxruntime. "
                                   "Needs: pip install \"mlfuse[export]\".")
    p.add_argument("model", help="registered method (see `mlfuse models`)")
    p.add_argument("--format", default="onnx", choices=FORMATS)
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: MODEL.onnx)")
    p.add_argument("--weights", default="default", help="checkpoint file or release name (default: the model's)")
    p.add_argument("--task", default=None, metavar="TASK", help="model variant, for models that have several")
    p.add_argument("--exporter", default="auto", choices=EXPORTERS,
                   help="dynamo (torch.export + onnxscript), torchscript (legacy), auto: dynamo if available")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output or f"{args.model}.onnx")
    model = create_model(args.model, weights=args.weights, device="cpu", **task_option(args.model, args.task))
    report = export_onnx(model, out, exporter=args.exporter, opset=args.opset, check=not args.no_check,
                         overwrite=args.overwrite)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    checks = ", ".join(f"{b}x1x{h}x{w}: {d:.1e}" for (b, h, w), d in report.checks) or "not checked"
    print(f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, {report.exporter} exporter, opset "
          f"{report.opset}); inputs structural, functional B x 1 x H x W (dynamic); onnxruntime max |diff| "
          f"{checks}", file=sys.stderr)
    return 0
