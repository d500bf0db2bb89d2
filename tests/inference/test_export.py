"""ONNX export (mlfuse.inference.export, `mlfuse export`): dynamic height/width round trips in onnxruntime."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import mlfuse
from mlfuse.cli.main import main
from mlfuse.inference.export import ExportError, check_onnx, export_onnx

onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install 'mlfuse[export]'")
ort = pytest.importorskip("onnxruntime", reason="needs the export extra: pip install 'mlfuse[export]'")


@pytest.fixture(scope="module")
def model(random_weights):
    return mlfuse.create_model("mlfuse", weights=random_weights)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The default exporter (dynamo when onnxscript is installed), checked at two sizes on export."""
    path = tmp_path_factory.mktemp("onnx") / "mlfuse.onnx"
    return export_onnx(model, path), path


def _run(path, s: np.ndarray, f: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["fused"], {"structural": s, "functional": f})[0]


def test_round_trip_at_two_sizes(model, exported) -> None:
    report, path = exported
    expected = "dynamo" if importlib.util.find_spec("onnxscript") else "torchscript"
    assert report.exporter == expected and path.is_file()
    assert len(report.checks) == 2 and all(d <= 1e-4 for _, d in report.checks)
    rng = np.random.default_rng(0)
    for b, h, w in [(1, 15, 15), (1, 161, 203)]:  # the minimum size, then one not seen at export
        s, f = rng.random((b, 1, h, w), np.float32), rng.random((b, 1, h, w), np.float32)
        with torch.inference_mode():
            ref = model.fusion_forward(torch.from_numpy(s), torch.from_numpy(f)).numpy()
        out = _run(path, s, f)
        assert out.shape == (b, 1, h, w)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_dynamic_axes_and_metadata(exported) -> None:
    _, path = exported
    proto = onnx.load(str(path))
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 4 and dims[1].dim_value == 1
        assert all(d.dim_param and not d.dim_value for d in (dims[0], dims[2], dims[3])), value.name
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["mlfuse.model"] == "mlfuse" and meta["mlfuse.output_rule"] == "minmax"
    assert meta["mlfuse.min_size"] == "15x15"


def test_torchscript_exporter(model, tmp_path) -> None:
    report = export_onnx(model, tmp_path / "ts.onnx", exporter="torchscript")
    assert report.exporter == "torchscript"
    assert all(d <= 1e-4 for _, d in report.checks)


def test_failed_check_writes_nothing(model, tmp_path) -> None:
    class Other(torch.nn.Module):  # a different network than the one exported
        card = model.card

        def parameters(self, recurse: bool = True):
            return model.parameters(recurse)

        def fusion_forward(self, s, f):
            return model.fusion_forward(s, f) + 1

    data = (tmp_path / "m.onnx")
    export_onnx(model, data, exporter="torchscript", check=False)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        check_onnx(Other(), data.read_bytes())


def test_cli_export(random_weights, tmp_path, capsys) -> None:
    out = tmp_path / "m.onnx"
    args = ["export", "mlfuse", "--format", "onnx", "--weights", str(random_weights), "-o", str(out),
            "--exporter", "torchscript"]
    assert main(args) == 0
    assert out.is_file() and "onnxruntime max |diff|" in capsys.readouterr().err
    assert main(args) == 2  # exists: refused without --overwrite, one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err


def test_exporter_failure_is_one_line(model, tmp_path, monkeypatch, capsys) -> None:
    import mlfuse.inference.export as ex

    def broken(*args, **kwargs):
        raise RuntimeError("Unsupported op aten::frobnicate\n  with a long trace")

    monkeypatch.setattr(ex, "_export_torchscript", broken)
    with pytest.raises(ExportError, match=r"torchscript exporter failed: Unsupported op aten::frobnicate\)$"):
        export_onnx(model, tmp_path / "x.onnx", exporter="torchscript")
    assert not (tmp_path / "x.onnx").exists()
