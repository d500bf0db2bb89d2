"""ONNX export of any registered network: ``(structural, functional) -> fused`` with dynamic
batch, height and width, checked in onnxruntime against PyTorch.

The graph is the network's ``fusion_forward``: inputs ``structural`` and ``functional`` are
B x 1 x H x W float32 in [0, 1] (visible/MRI and infrared/CT/PET/SPECT), the output ``fused`` is
the raw B x 1 x H x W image before the output rule (the card's rule, stored in the file's
metadata, turns it into 8 bits). H and W must respect the card's ``min_size`` and ``size_multiple``
(also in the metadata); the mlfuse pipeline pads to them, an ONNX user must do the same.

Two exporters: ``dynamo`` (``torch.export`` + onnxscript, PyTorch's default since 2.9) and
``torchscript`` (the legacy tracer, deprecated but dependency-free). ``auto`` uses dynamo when
onnxscript is installed and falls back to the tracer if it fails. MLFuse exports with both: its
float64 softmax/matmul over all H*W positions become ``Cast`` + ``Softmax``/``MatMul`` on
``double`` and its bilinear resize a ``Resize`` whose size is read from the input's shape.
Needs the ``export`` extra: ``pip install "mlfuse[export]"``.

A network that cannot be exported says why in its ``onnx_unsupported`` attribute (the classical
``dwt``, ``gff`` and ``vsm_wls``): it is refused at once, in one line, before any exporter runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mlfuse.data.io import atomic_write
from mlfuse.errors import MLFuseError

FORMATS = ("onnx",)
EXPORTERS = ("auto", "dynamo", "torchscript")
INPUT_NAMES = ("structural", "functional")
OUTPUT_NAME = "fused"


class ExportError(MLFuseError):
    """A model cannot be exported (missing extra, exporter failure, failed check)."""


class _FusionGraph(nn.Module):
    """The part of a fusion network that is exported: ``fusion_forward`` only."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, structural: Tensor, functional: Tensor) -> Tensor:
        return self.model.fusion_forward(structural, functional)


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it was checked."""

    path: Path
    exporter: str
    opset: int
    size_bytes: int
    checks: list[tuple[tuple[int, int, int], float]] = field(default_factory=list)  # ((B, H, W), max |diff|)
    notes: list[str] = field(default_factory=list)


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ExportError(f"{what} needs the '{module}' package: pip install \"mlfuse[export]\"")


def _sizes(model: nn.Module) -> tuple[tuple[int, int], int, tuple[int, int]]:
    card = getattr(model, "card", None)
    min_size = tuple(getattr(card, "min_size", (1, 1)))
    multiple = getattr(card, "size_multiple", 1) or 1

    def fit(n: int, lo: int) -> int:
        return -(-max(n, lo) // multiple) * multiple

    example = (fit(64, min_size[0]), fit(80, min_size[1]))
    return min_size, multiple, example


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' progress lines and deprecation chatter (errors still raise)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_dynamo(graph: nn.Module, args: tuple[Tensor, Tensor], path: Path, opset: int | None,
                   min_size: tuple[int, int]) -> None:
    dims = {0: torch.export.Dim("batch", min=1, max=1024),
            2: torch.export.Dim("height", min=min_size[0]), 3: torch.export.Dim("width", min=min_size[1])}
    with _quiet_exporter():
        program = torch.onnx.export(graph, args, dynamo=True, input_names=list(INPUT_NAMES),
                                    output_names=[OUTPUT_NAME], dynamic_shapes=(dims, dims),
                                    opset_version=opset, verbose=False, external_data=False)
        program.save(str(path), external_data=False)


def _export_torchscript(graph: nn.Module, args: tuple[Tensor, Tensor], path: Path, opset: int | None) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    with _quiet_exporter():
        torch.onnx.export(graph, args, str(path), dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_axes={n: axes for n in (*INPUT_NAMES, OUTPUT_NAME)},
                          opset_version=opset or 17, do_constant_folding=True)


def refuse_unexportable(model: nn.Module) -> None:
    """Raise :class:`ExportError` at once, with the model's own reason, if it declares that it cannot
    be exported (``onnx_unsupported``)."""
    reason = getattr(model, "onnx_unsupported", None)
    if reason:
        name = getattr(getattr(model, "card", None), "name", type(model).__name__)
        raise ExportError(f"model '{name}' cannot be exported to ONNX: {reason}")


def _first_line(exc: BaseException) -> str:
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return text[0][:300] if text else type(exc).__name__


def check_onnx(model: nn.Module, onnx_model: str | Path | bytes, sizes: list[tuple[int, int, int]] | None = None,
               atol: float = 1e-4, seed: int = 0) -> list[tuple[tuple[int, int, int], float]]:
    """Run an exported model (file or serialized bytes) in onnxruntime (CPU) and PyTorch on random
    pairs of each (B, H, W) size; returns the max |difference| per size and raises
    :class:`ExportError` above ``atol``."""
    _require("onnxruntime", "checking an ONNX export")
    import onnxruntime as ort

    min_size, multiple, example = _sizes(model)
    if sizes is None:  # two sizes other than the example the graph was traced at, one of them odd
        odd = -(-max(min_size[0], 37) // multiple) * multiple, -(-max(min_size[1], 53) // multiple) * multiple
        sizes = [(1, *odd), (2, example[0] * 2, example[1] * 2)]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ExportError(f"onnxruntime cannot load the exported graph ({_first_line(exc)}); nothing written") from None
    device = next(model.parameters(), torch.empty(0)).device
    gen = torch.Generator().manual_seed(seed)
    results = []
    for b, h, w in sizes:
        s, f = torch.rand(b, 1, h, w, generator=gen), torch.rand(b, 1, h, w, generator=gen)
        with torch.inference_mode():
            ref = model.fusion_forward(s.to(device), f.to(device)).float().cpu().numpy()
        try:
            out = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: s.numpy(), INPUT_NAMES[1]: f.numpy()})[0]
        except Exception as exc:
            raise ExportError(f"onnxruntime cannot run the exported graph at {b}x1x{h}x{w} ({_first_line(exc)}); "
                              "nothing written") from None
        diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
        results.append(((b, h, w), diff))
        if not diff <= atol:
            raise ExportError(f"onnxruntime differs from PyTorch by {diff:.2e} at {b}x1x{h}x{w} "
                              f"(tolerance {atol:g}); nothing written")
    return results


def export_onnx(model: nn.Module, path: str | Path, *, exporter: str = "auto", opset: int | None = None,
                check: bool = True, atol: float = 1e-4, overwrite: bool = False) -> ExportReport:
    """Export ``model.fusion_forward`` to ONNX at ``path`` (written atomically) with dynamic batch,
    height and width; the card's name, roles, size rules, output rule and weights source go into
    the file's metadata. With ``check``, :func:`check_onnx` runs it in onnxruntime at two sizes."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{exporter}' (choose from {', '.join(EXPORTERS)})")
    _require("onnx", "ONNX export")
    import onnx

    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path}: already exists (pass --overwrite to replace it)")
    if not callable(getattr(model, "fusion_forward", None)):
        raise ExportError(f"{type(model).__name__} is not a fusion network (no fusion_forward)")
    refuse_unexportable(model)
    model = model.eval()
    graph = _FusionGraph(model).eval()
    min_size, _, example = _sizes(model)
    device = next(model.parameters(), torch.empty(0)).device
    gen = torch.Generator().manual_seed(0)
    args = tuple(torch.rand(2, 1, *example, generator=gen).to(device) for _ in range(2))
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    if exporter == "auto" and importlib.util.find_spec("onnxscript") is None:
        order = ["torchscript"]
    notes, used = [], None
    with tempfile.TemporaryDirectory(prefix="mlfuse-export-") as tmp:
        tmp_path = Path(tmp) / "model.onnx"
        for name in order:
            try:
                if name == "dynamo":
                    _require("onnxscript", "the dynamo ONNX exporter")
                    _export_dynamo(graph, args, tmp_path, opset, min_size)
                else:
                    _export_torchscript(graph, args, tmp_path, opset)
                used = name
                break
            except ExportError:
                raise
            except Exception as exc:  # exporter internals raise many types; report one line
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
                notes.append(f"{name} exporter failed: {reason}")
                if len(order) == 1 or name == order[-1]:
                    raise ExportError(f"ONNX export failed ({'; '.join(notes)})") from None
        proto = onnx.load(str(tmp_path))
    card = getattr(model, "card", None)
    meta = {"mlfuse.model": getattr(card, "name", type(model).__name__),
            "mlfuse.inputs": "structural (visible/MRI), functional (infrared/CT/PET/SPECT): B x 1 x H x W in [0, 1]",
            "mlfuse.output": "fused: raw B x 1 x H x W before the output rule",
            "mlfuse.output_rule": str(getattr(card, "output_rule", "")),
            "mlfuse.min_size": "x".join(map(str, getattr(card, "min_size", (1, 1)))),
            "mlfuse.size_multiple": str(getattr(card, "size_multiple", 1)),
            "mlfuse.weights": str(getattr(model, "weights_source", None)),
            "mlfuse.exporter": used}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    data = proto.SerializeToString()
    report = ExportReport(path=path, exporter=used, opset=opset_used, size_bytes=len(data), notes=notes)
    if check:  # before writing: a file that fails its check is never left behind
        report.checks = check_onnx(model, data, atol=atol)
    atomic_write(path, lambda fh: fh.write(data), overwrite=overwrite)
    return report


__all__ = ["EXPORTERS", "FORMATS", "ExportError", "ExportReport", "check_onnx", "export_onnx", "refuse_unexportable"]
