"""TensorRT engine builder (TensorRT 10 Python API), run on the device that will use the engine.

ONNX file -> OnnxParser -> BuilderConfig (workspace limit, FP16/INT8 flags, timing cache,
one optimization profile over the batch range) -> serialized engine + its engine_cache record.
INT8 is calibrated with an IInt8EntropyCalibrator2 fed by THE preprocessing (the caller passes
normalized float32 batches). tensorrt and cuda-python are imported inside the functions.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge_bus.engine_cache import (
    EngineRecord,
    Target,
    check_precision,
    cudart_module,
    file_sha256,
    make_record,
    write_record,
)
from edge_bus.errors import BackendError, BundleError

TIMING_CACHE_NAME = "engines/timing.cache"
DEFAULT_WORKSPACE_GB = 2.0


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
            cache_path.write_bytes(bytes(cache))

        def free(self):
            cudart.cudaFree(self.device)

    return EntropyCalibrator()


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
) -> EngineRecord:
    """Build one engine from `onnx_path` into bundle_root/engines/ and write its record."""
    import tensorrt as trt  # noqa: PLC0415

    precision = check_precision(precision)
    onnx_path, root = Path(onnx_path), Path(bundle_root)
    lo, hi = batch_range
    record = make_record(
        model, file_sha256(onnx_path), target, precision,
        batch_range=[lo, hi], input_size=size, workspace_bytes=int(workspace_gb * (1 << 30)),
        calibration=calibration_info,
    )
    engine_path = root / record.path
    engine_path.parent.mkdir(parents=True, exist_ok=True)

    logger = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"{onnx_path}: TensorRT cannot parse this ONNX file ({errors[:300]}); re-export the bundle")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, record.workspace_bytes)
    cache_file = root / TIMING_CACHE_NAME
    timing_cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(timing_cache, ignore_mismatch=False)

    profile = builder.create_optimization_profile()
    opt = opt_batch or max(lo, min(hi, 4))
    name = network.get_input(0).name
    profile.set_shape(name, (lo, 1, size, size), (opt, 1, size, size), (hi, 1, size, size))
    config.add_optimization_profile(profile)

    calibrator = None
    if precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16 and precision == "fp16":
            logger.log(trt.Logger.WARNING, "this GPU has no fast FP16; the engine may not be faster than FP32")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise BundleError(f"{onnx_path}: an INT8 engine needs calibration images (pass --pack or --data)")
        config.set_flag(trt.BuilderFlag.INT8)
        calib_batch = max(1, min(hi, 8, len(calibration)))
        calibrator = _make_calibrator(trt, calibration, engine_path.with_suffix(".calib"), calib_batch)
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
    engine_path.write_bytes(bytes(serialized))
    cache_file.write_bytes(bytes(timing_cache.serialize()))
    write_record(record, root)
    return record
