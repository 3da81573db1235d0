"""INT8: ONNX Runtime static quantization in QDQ format, calibrated on training images that went
through THE preprocessing (edge_bus.data.preprocess.normalize).

The same model.int8.onnx serves ONNX Runtime on CPU carts and TensorRT (explicit quantization), so
it is written as TensorRT requires: signed INT8, symmetric (zero point 0) for activations and
weights (S8S8 QDQ, which is also ONNX Runtime's recommended CPU setting)."""

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


def quantize_int8(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
    method: str = "minmax",
    exclude_head: bool = True,
) -> Path:
    """Write a QDQ INT8 copy of `onnx_path` calibrated on `calibration` (float32 (N,1,S,S))."""
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
            outputs = {o.name for o in graph.output}
            # The layers that produce the logits stay in float: the mask threshold and the class
            # arg-max are decided there, and one INT8 step of a logit moves mask borders.
            head = [n.name for n in graph.node if outputs & set(n.output) and n.name]
            weighted = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
            if len(weighted) < 2:  # a one-layer network: excluding its head would quantize nothing
                head = []
            quantize_static(
                str(prepared),
                str(dst),
                Reader("input", calibration.astype(np.float32)),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                nodes_to_exclude=head if exclude_head else None,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        except Exception as exc:
            raise BundleError(f"{src}: INT8 quantization failed ({type(exc).__name__}: {exc})") from exc
    return dst
