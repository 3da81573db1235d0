"""Round trips: ONNX (via ONNX Runtime, dynamic batch) and TorchScript outputs match torch."""

import numpy as np
import pytest
import torch

from edge_bus.errors import BundleError
from edge_bus.exporting.to_onnx import check_onnx, export_onnx, ort_session, run_onnx
from edge_bus.exporting.to_torchscript import export_torchscript, load_torchscript, run_torch
from export_models import SIZE, DarkSegmenter, TinyClassifier


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).normal(size=(3, 1, SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize("make", [TinyClassifier, DarkSegmenter])
def test_onnx_round_trip_dynamic_batch(tmp_path, batch, make):
    torch.manual_seed(0)
    model = make().eval()
    path = export_onnx(model, tmp_path / "m.onnx", size=SIZE)
    session = ort_session(path)
    assert session.get_inputs()[0].name == "input"
    assert session.get_outputs()[0].name == "logits"
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic batch
    expected = run_torch(model, batch)
    for n in (1, 3):  # the example batch was 2: other sizes prove the batch is dynamic
        got = run_onnx(session, batch[:n])
        np.testing.assert_allclose(got, expected[:n], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("make", [TinyClassifier, DarkSegmenter])
def test_torchscript_round_trip(tmp_path, batch, make):
    torch.manual_seed(0)
    model = make().eval()
    path = export_torchscript(model, tmp_path / "m.ts", size=SIZE)
    loaded = load_torchscript(path)
    for n in (1, 3):
        np.testing.assert_allclose(run_torch(loaded, batch[:n]), run_torch(model, batch[:n]), atol=1e-5)


def test_truncated_onnx_names_file_and_fix(tmp_path):
    path = export_onnx(TinyClassifier().eval(), tmp_path / "m.onnx", size=SIZE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError) as info:
        check_onnx(path)
    msg = str(info.value)
    assert str(path) in msg and "re-export" in msg and "\n" not in msg


def test_broken_torchscript_names_file(tmp_path):
    bad = tmp_path / "model.ts"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BundleError, match="model.ts"):
        load_torchscript(bad)
