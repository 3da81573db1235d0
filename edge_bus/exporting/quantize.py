"""INT8 for CPU carts: ONNX Runtime static quantization in QDQ format, calibrated on training
images that went through THE preprocessing (edge_bus.data.preprocess.normalize)."""

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
            quantize_static(
                str(prepared),
                str(dst),
                Reader("input", calibration.astype(np.float32)),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
            )
        except Exception as exc:
            raise BundleError(f"{src}: INT8 quantization failed ({type(exc).__name__}: {exc})") from exc
    return dst
