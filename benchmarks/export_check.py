"""Export every registered method to ONNX and check it in onnxruntime; write what happened per method.

    python benchmarks/export_check.py                      # all methods -> benchmarks/results/export.json
    python benchmarks/export_check.py cddfuse emma --out /tmp/e.json

Networks are built untrained (``weights=None``): whether a graph exports and round-trips does not
depend on the weights. Each method either exports with ``mlfuse.inference.export.export_onnx`` (default
exporter ``auto``) and passes its onnxruntime check at two sizes, or is refused at once with the
reason its class declares (``onnx_unsupported``). The unit test
``tests/cli/test_hardening.py::test_every_registered_method_exports_or_is_refused_in_one_line`` runs
the cheap methods live and reads this file for the networks, whose export takes minutes on a CPU.
The results name the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mlfuse
from mlfuse.inference.export import ExportError, export_onnx
from mlfuse.runtime import machine

OUT = Path(__file__).resolve().parent / "results" / "export.json"


def check(name: str) -> dict:
    start = time.perf_counter()
    model = mlfuse.create_model(name, weights=None)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            report = export_onnx(model, Path(tmp) / f"{name}.onnx")
        except ExportError as exc:
            refused = bool(getattr(model, "onnx_unsupported", None))
            return {"outcome": "refused" if refused else "failed", "message": str(exc),
                    "seconds": round(time.perf_counter() - start, 1)}
    return {"outcome": "exported", "exporter": report.exporter, "opset": report.opset,
            "size_mb": round(report.size_bytes / 1e6, 2),
            "checks": [{"shape": f"{b}x1x{h}x{w}", "max_abs_diff": d} for (b, h, w), d in report.checks],
            "notes": report.notes, "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", help="registered methods (default: all)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    names = args.methods or mlfuse.list_models()
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = doc.get("methods", {})
    for name in names:
        results[name] = check(name)
        print(name, results[name]["outcome"], f"{results[name]['seconds']} s", file=sys.stderr, flush=True)
    commands = [*doc.get("commands", []), "python benchmarks/export_check.py " + " ".join(sys.argv[1:])]
    doc = {"benchmark": "ONNX export + onnxruntime round trip of every registered method (untrained weights)",
           "commands": commands, "machine": machine(), "methods": dict(sorted(results.items()))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if all(r["outcome"] != "failed" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
