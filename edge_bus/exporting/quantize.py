"""INT8: ONNX Runtime static quantization in QDQ format, calibrated on training images that went
through THE preprocessing (edge_bus.data.preprocess.normalize).

One calibration, two encodings, because the two runtimes want different ones:
- for ONNX Runtime (model.int8.onnx): unsigned, asymmetric activations and signed, symmetric,
  per-channel weights (U8S8). Activations after a LeakyReLU or a sigmoid-bound logit are far from
  symmetric; a symmetric activation scale wastes half its 256 steps on values that never occur.
  On the trained 128 px U-Net the mean mask IoU against FP32 is 0.974 symmetric, 0.981 asymmetric, on
  the 118 validation images (benchmarks/export/README.md).
- for TensorRT (model.int8.tensorrt.onnx): signed INT8 with zero point 0 for activations and
  weights (S8S8 symmetric), the only Q/DQ form TensorRT's explicit quantization accepts. Its engine
  is gated against the FP32 reference when it is built on the target GPU.

Both keep the layers that read the image (the first convolution: the input is the one tensor
whose range the calibration images barely cover) and the output tail, from the last weighted
layers to the logits (the mask threshold and the class arg-max are decided there), in float."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edge_bus.errors import BundleError


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a float32 (N,1,S,S) array."""

    def __init__(self, input_name: str, batches: np.ndarray, chunk: int = 1):
        self._name = input_name
        self._data = batches
        self._chunk = chunk
        self._i = 0

    def get_next(self):
        if self._i >= len(self._data):
            return None
        item = {self._name: np.ascontiguousarray(self._data[self._i : self._i + self._chunk])}
        self._i += self._chunk
        return item

    def rewind(self):
        self._i = 0


_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _output_tail(graph) -> list[str]:
    """Names of the nodes between the last weighted layers and the graph outputs, those layers
    included: walking back from each output, every node up to and including the first weighted
    one. For an ensemble that is each member's head plus the sigmoid / weighted sum / logit that
    combines them: quantized, its clamp is folded into the activation range and the logit of an
    exact 0 or 1 is infinite."""
    producer = {out: n for n in graph.node for out in n.output}
    tail: dict[str, None] = {}
    stack = [o.name for o in graph.output]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        tail[node.name] = None
        if node.op_type not in _WEIGHTED:
            stack.extend(node.input)
    return [n for n in tail if n]


def quantize_int8(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    *,
    for_tensorrt: bool = False,
    per_channel: bool = True,
    method: str = "minmax",
    keep_float_ends: bool = True,
) -> Path:
    """Write a QDQ INT8 copy of `onnx_path` calibrated on `calibration` (float32 (N,1,S,S)).

    `for_tensorrt`: symmetric signed activations (TensorRT); else unsigned asymmetric (ONNX Runtime).
    `keep_float_ends`: leave the first weighted layer and the output tail (`_output_tail`) in float."""
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    src, dst = Path(onnx_path), Path(out_path)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise BundleError(f"{dst}: INT8 calibration needs a non-empty (N, 1, S, S) array, got {calibration.shape}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise BundleError(f"unknown INT8 calibration method '{method}'; choose one of {sorted(methods)}")

    class Reader(_Reader, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        except Exception:
            prepared = src  # pre-processing is an optimization; quantize the original when it fails
        try:
            import onnx  # noqa: PLC0415

            graph = onnx.load(str(prepared), load_external_data=False).graph
            ends = _output_tail(graph)
            weighted = [n for n in graph.node if n.op_type in _WEIGHTED]
            if len(weighted) > 2 and weighted[0].name:
                ends.append(weighted[0].name)
            if len(weighted) < 2:  # a one-layer network: keeping its ends in float would quantize nothing
                ends = []
            quantize_static(
                str(prepared),
                str(dst),
                Reader("input", calibration.astype(np.float32)),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                nodes_to_exclude=ends if keep_float_ends else None,
                extra_options={"ActivationSymmetric": for_tensorrt, "WeightSymmetric": True},
            )
        except Exception as exc:
            raise BundleError(f"{src}: INT8 quantization failed ({type(exc).__name__}: {exc})") from exc
    return dst
