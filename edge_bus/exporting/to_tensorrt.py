"""TensorRT engine builder (TensorRT 10 Python API), run on the device that will use the engine.

ONNX file -> OnnxParser -> BuilderConfig (workspace limit, precision flags, a timing cache per
TensorRT version + GPU, one optimization profile over the batch range) -> serialized engine in a
staging file (engine_cache.StagedEngine). The caller gates it and only then publishes it (final
name + record), so an engine that failed or skipped its gate is never found by the runtime.

INT8: explicit quantization. The caller passes the bundle's QDQ model for TensorRT
(model.int8.tensorrt.onnx, symmetric INT8 as TensorRT requires); the network then carries Q/DQ
layers and the builder only needs BuilderFlag.INT8. The engine is gated like every other one.
Implicit calibration (IInt8EntropyCalibrator2, deprecated since TensorRT 10.1) is kept as a
fallback for a bundle without that file; its cache file is
named by the SHA-256 of the calibration images so that other images never reuse it.
tensorrt (version 10 only, engine_cache.import_tensorrt) and cuda-python are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_bus.engine_cache import (
    StagedEngine,
    Target,
    check_precision,
    cudart_module,
    import_tensorrt,
    make_record,
    staging_path,
    timing_cache_path,
)
from edge_bus.errors import BackendError, BundleError
from edge_bus.fileio import sha256_file

DEFAULT_WORKSPACE_GB = 2.0


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def calibration_cache_path(engine_path: Path, calibration: np.ndarray) -> Path:
    """<engine>.<sha256 of the calibration array>.calib: new images never reuse an old cache."""
    arr = np.ascontiguousarray(calibration, dtype=np.float32)
    digest = hashlib.sha256(str(arr.shape).encode() + arr.tobytes()).hexdigest()
    return engine_path.with_name(f"{engine_path.stem}.{digest[:16]}.calib")


def has_qdq(trt, network) -> bool:
    """True when the parsed network carries Q/DQ layers (explicit quantization)."""
    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _make_calibrator(trt, batches: np.ndarray, cache_path: Path, batch_size: int):
    """An IInt8EntropyCalibrator2 over float32 (N, 1, S, S) batches (device memory via cuda-python)."""
    cudart = cudart_module()
    from edge_bus.runtime.backends.tensorrt import _check  # noqa: PLC0415

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.data = np.ascontiguousarray(batches, dtype=np.float32)
            self.batch_size = batch_size
            self.index = 0
            nbytes = batch_size * int(np.prod(self.data.shape[1:])) * 4
            self.device = _check(cudart.cudaMalloc(nbytes), "cudaMalloc")

        def get_batch_size(self):
            return self.batch_size

        def get_batch(self, names):
            if self.index + self.batch_size > len(self.data):
                return None
            chunk = np.ascontiguousarray(self.data[self.index : self.index + self.batch_size])
            self.index += self.batch_size
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            _check(cudart.cudaMemcpy(self.device, chunk.ctypes.data, chunk.nbytes, kind), "cudaMemcpy")
            return [int(self.device)]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache):
            _write_bytes_atomic(cache_path, bytes(cache))

        def free(self):
            cudart.cudaFree(self.device)

    return EntropyCalibrator()


def _timing_cache(trt, config, cache_file: Path, logger):
    """Load this target's timing cache into `config`; start an empty one when it does not fit."""
    blob = cache_file.read_bytes() if cache_file.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if blob:
        logger.log(trt.Logger.WARNING, f"{cache_file}: timing cache does not fit this TensorRT/GPU; starting a new one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BackendError(f"{cache_file}: TensorRT refused an empty timing cache; delete the file and rebuild")
    return cache


def build_engine(
    onnx_path: str | Path,
    bundle_root: str | Path,
    *,
    model: str,
    target: Target,
    precision: str = "fp16",
    batch_range: tuple[int, int] = (1, 8),
    opt_batch: int | None = None,
    size: int = 256,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    calibration: np.ndarray | None = None,
    calibration_info: dict[str, Any] | None = None,
    verbose: bool = False,
) -> StagedEngine:
    """Build one engine from `onnx_path` into a staging file in bundle_root/engines/ (no record yet:
    gate it, then `.publish(bundle_root)` or `.discard()`).

    For int8 pass the QDQ model (explicit quantization); with a plain FP32 model, `calibration`
    (float32 (N,1,S,S)) feeds the deprecated implicit calibrator instead.
    """
    trt = import_tensorrt()
    precision = check_precision(precision)
    onnx_path, root = Path(onnx_path), Path(bundle_root)
    lo, hi = batch_range
    record = make_record(
        model, sha256_file(onnx_path), target, precision,
        batch_range=[lo, hi], input_size=size, workspace_bytes=int(workspace_gb * (1 << 30)),
        calibration=calibration_info, source_onnx=onnx_path.name,
    )
    engine_path = root / record.path
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    staged = staging_path(root, record)

    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{onnx_path}: TensorRT cannot parse this ONNX file ({errors[:300]}); re-export the bundle")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, record.workspace_bytes)
    cache_file = timing_cache_path(root, target)
    timing_cache = _timing_cache(trt, config, cache_file, logger)

    profile = builder.create_optimization_profile()
    opt = opt_batch or max(lo, min(hi, 4))
    name = network.get_input(0).name
    profile.set_shape(name, (lo, 1, size, size), (opt, 1, size, size), (hi, 1, size, size))
    config.add_optimization_profile(profile)

    calibrator = None
    qdq = has_qdq(trt, network)
    if qdq and precision != "int8":
        raise BundleError(f"{onnx_path}: this is a quantized (Q/DQ) model; build only int8 engines from it")
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8: layers without Q/DQ may run in FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if qdq:
            record.quantization = "explicit (Q/DQ)"
        else:
            if calibration is None or len(calibration) == 0:
                raise BundleError(f"{onnx_path}: an INT8 engine needs model.int8.tensorrt.onnx or calibration images (pass --pack or --data)")
            record.quantization = "implicit (calibrator)"
            calib_batch = max(1, min(hi, 8, len(calibration)))
            calibrator = _make_calibrator(trt, calibration, calibration_cache_path(engine_path, calibration), calib_batch)
            config.int8_calibrator = calibrator
            calib_profile = builder.create_optimization_profile()
            shape = (calib_batch, 1, size, size)
            calib_profile.set_shape(name, shape, shape, shape)
            config.set_calibration_profile(calib_profile)

    start = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise BackendError(
            f"{onnx_path}: TensorRT failed to build a {precision} engine (see the log above); "
            "try a larger --workspace-gb or another precision"
        )
    record.build_seconds = round(time.perf_counter() - start, 1)
    record.built_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_bytes_atomic(staged, bytes(serialized))
    _write_bytes_atomic(cache_file, bytes(timing_cache.serialize()))
    return StagedEngine(record, staged)
