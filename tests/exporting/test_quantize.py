"""INT8 quantization: one calibration, an ONNX Runtime encoding (U8S8) and a TensorRT one (S8S8)."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edge_bus.errors import BundleError
from edge_bus.exporting.quantize import quantize_int8
from edge_bus.exporting.to_onnx import export_onnx, ort_session, run_onnx

SIZE = 32


class ThreeConvs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(1, 8, 3, padding=1)
        self.middle = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        return self.head(nn.functional.leaky_relu(self.middle(nn.functional.leaky_relu(self.first(x)))))


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("q") / "model.onnx"
    return export_onnx(ThreeConvs().eval(), path, size=SIZE)


def _calibration(n=16, seed=0):
    return np.random.default_rng(seed).normal(0, 1, (n, 1, SIZE, SIZE)).astype(np.float32)


def _graph(path):
    return onnx.load(str(path)).graph


def _activation_zero_points(graph):
    """Zero points of the QuantizeLinear nodes (activations; weights are stored quantized)."""
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return [inits[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]


def _conv_weights_quantized(graph):
    """For each Conv in order: are its weights INT8 (fed by a DequantizeLinear)?"""
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.input[1] in dq_outputs for n in graph.node if n.op_type == "Conv"]


def _image_quantized(graph):
    return any(n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name for n in graph.node)


def test_onnxruntime_encoding_is_unsigned_asymmetric(float_model, tmp_path):
    out = quantize_int8(float_model, tmp_path / "m.int8.onnx", _calibration())
    zps = _activation_zero_points(_graph(out))
    assert zps and all(z.dtype == np.uint8 for z in zps)
    assert any(int(z) not in (0, 128) for z in zps), "asymmetric: zero points follow the calibrated ranges"


def test_tensorrt_encoding_is_signed_symmetric(float_model, tmp_path):
    out = quantize_int8(float_model, tmp_path / "m.int8.tensorrt.onnx", _calibration(), for_tensorrt=True)
    zps = _activation_zero_points(_graph(out))
    assert zps and all(z.dtype == np.int8 and not np.any(z) for z in zps)


@pytest.mark.parametrize("for_tensorrt", [False, True])
def test_first_and_output_layers_stay_float(float_model, tmp_path, for_tensorrt):
    out = quantize_int8(float_model, tmp_path / "m.onnx", _calibration(), for_tensorrt=for_tensorrt)
    assert _conv_weights_quantized(_graph(out)) == [False, True, False]
    assert not _image_quantized(_graph(out))
    everything = quantize_int8(float_model, tmp_path / "all.onnx", _calibration(), for_tensorrt=for_tensorrt,
                               keep_float_ends=False)
    assert _conv_weights_quantized(_graph(everything)) == [True, True, True]
    assert _image_quantized(_graph(everything))


@pytest.mark.parametrize("for_tensorrt", [False, True])
def test_quantized_models_stay_close_to_float(float_model, tmp_path, for_tensorrt):
    x = _calibration(4, seed=1)
    ref = run_onnx(ort_session(float_model), x)
    q_path = quantize_int8(float_model, tmp_path / "m.onnx", _calibration(), for_tensorrt=for_tensorrt)
    q = run_onnx(ort_session(q_path, emulate_qdq=for_tensorrt), x)
    relative_rms_error = np.sqrt(np.mean((q - ref) ** 2) / np.mean(ref**2))
    assert 0 < relative_rms_error < 0.1, "close to float, yet not float (it is quantized)"


def test_bad_calibration_is_refused(float_model, tmp_path):
    with pytest.raises(BundleError, match="non-empty"):
        quantize_int8(float_model, tmp_path / "m.onnx", np.zeros((0, 1, SIZE, SIZE), np.float32))
    with pytest.raises(BundleError, match="calibration method"):
        quantize_int8(float_model, tmp_path / "m.onnx", _calibration(), method="magic")


class Saturating(ThreeConvs):
    """Logits far beyond ±10 on most pixels: sigmoid is exactly 0 or 1 once quantized."""

    def forward(self, x):
        return 40 * super().forward(x)


@pytest.mark.parametrize("for_tensorrt", [False, True])
def test_ensemble_logit_tail_stays_float_and_finite(tmp_path, for_tensorrt):
    from edge_bus.models.ensemble import EnsembleSegmenter

    ensemble = EnsembleSegmenter([Saturating(), Saturating()], [0.7, 0.3]).eval()
    float_path = export_onnx(ensemble, tmp_path / "ens.onnx", size=SIZE)
    q = quantize_int8(float_path, tmp_path / "ens.int8.onnx", _calibration(), for_tensorrt=for_tensorrt)
    graph = _graph(q)
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    tail = [n for n in graph.node if n.op_type in ("Sigmoid", "Add", "Div", "Log")]
    assert tail and not any(set(n.input) & dq_outputs for n in tail), "the combining tail reads float tensors"
    x = _calibration(4, seed=1)
    out = run_onnx(ort_session(q, emulate_qdq=for_tensorrt), x)
    assert np.isfinite(out).all()
    ref = run_onnx(ort_session(float_path), x)
    assert np.mean((out > 0) == (ref > 0)) > 0.95


def test_emulated_qdq_runs_the_graph_as_written(float_model, tmp_path):
    """Emulation computes dequantize -> float conv -> quantize; ORT's fused integer kernels may differ
    from it (they saturate S8S8 on CPUs without VNNI), never the other way round: with emulation the
    TensorRT encoding is as close to float as the ONNX Runtime one."""
    x = _calibration(4, seed=1)
    ref = run_onnx(ort_session(float_model), x)

    def error(path, emulate):
        out = run_onnx(ort_session(path, emulate_qdq=emulate), x)
        return float(np.sqrt(np.mean((out - ref) ** 2) / np.mean(ref**2)))

    import onnxruntime as ort

    assert ort_session(float_model, emulate_qdq=True).get_session_options().graph_optimization_level == \
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert ort_session(float_model).get_session_options().graph_optimization_level != \
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    signed = quantize_int8(float_model, tmp_path / "s.onnx", _calibration(), for_tensorrt=True)
    unsigned = quantize_int8(float_model, tmp_path / "u.onnx", _calibration())
    assert 0 < error(signed, True) < 2 * error(unsigned, True)
