"""TensorRT backend (TensorRT 10 API): tensors by name, execute_async_v3, pinned host buffers,
one CUDA stream, optional CUDA graphs. Device memory through cuda-python.

Imports neither torch nor tensorrt at module level: the factory imports them, so that choosing
another backend on a machine without TensorRT costs nothing. The engine is chosen by
edge_bus.engine_cache for this GPU, this TensorRT version and the requested precision; a stale
engine is refused with the command that rebuilds it.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from edge_bus.bundle import Bundle, TensorSpec
from edge_bus.engine_cache import (
    current_target,
    cudart_module,
    file_sha256,
    lookup,
    bundle_records,
)
from edge_bus.errors import BackendError
from edge_bus.runtime.backends.base import BackendOptions


def _check(result: Any, what: str) -> Any:
    """cuda-python calls return (err, *values); raise BackendError on a non-zero err."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        raise BackendError(f"CUDA call {what} failed: {err}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class _Buffer:
    """Pinned host array + device allocation of the same byte size."""

    def __init__(self, cudart, shape: tuple[int, ...], dtype: np.dtype):
        self._cudart = cudart
        self.dtype = np.dtype(dtype)
        self.capacity = int(np.prod(shape))
        self.nbytes = self.capacity * self.dtype.itemsize
        self.host_ptr = _check(cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        ptr_type = ctypes.POINTER(np.ctypeslib.as_ctypes_type(self.dtype))
        self.host = np.ctypeslib.as_array(ctypes.cast(self.host_ptr, ptr_type), (self.capacity,))
        self.device = _check(cudart.cudaMalloc(self.nbytes), "cudaMalloc")

    def free(self) -> None:
        if self.device is not None:
            self._cudart.cudaFree(self.device)
            self._cudart.cudaFreeHost(self.host_ptr)
            self.device = None


class TensorRTBackend:
    def __init__(self, bundle: Bundle, engine_path: Path, precision: str, options: BackendOptions):
        import tensorrt as trt  # noqa: PLC0415

        self._trt = trt
        self._cudart = cudart = cudart_module()
        self.name = f"tensorrt[{precision}]"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        blob = engine_path.read_bytes()
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise BackendError(
                f"{engine_path}: TensorRT could not deserialize this engine (corrupt, or built by another "
                f"TensorRT/GPU); run `edge-bus export build-engine {bundle.root} --precision {precision}`"
            )
        self._context = self._engine.create_execution_context()
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        m = bundle.manifest
        lo, hi = m.batch_range
        self.max_batch = min(options.max_batch or hi, hi)
        self.min_batch = lo
        self._input_name = m.input.name
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs: list[str] = []
        self._buffers: dict[str, _Buffer] = {}
        for name in names:
            mode = self._engine.get_tensor_mode(name)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            if mode == trt.TensorIOMode.INPUT:
                if name != self._input_name:
                    raise BackendError(f"{engine_path}: engine input '{name}' is not the manifest's '{self._input_name}'")
                shape = tuple(self._engine.get_tensor_profile_shape(name, 0)[2])
                shape = (self.max_batch, *shape[1:])
            else:
                self._outputs.append(name)
                shape = None
            if shape is not None:
                self._buffers[name] = _Buffer(cudart, shape, dtype)
        # Output sizes follow from the largest input shape.
        self._context.set_input_shape(self._input_name, (self.max_batch, *self._input_dims()))
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._buffers[name] = _Buffer(cudart, shape, dtype)
        for name, buf in self._buffers.items():
            self._context.set_tensor_address(name, int(buf.device))
        self.inputs = [TensorSpec(self._input_name, ["batch", *self._input_dims()])]
        self.outputs = [TensorSpec(n, ["batch", *list(self._context.get_tensor_shape(n))[1:]]) for n in self._outputs]
        self._use_graph = bool(options.cuda_graph)
        self._graphs: dict[int, Any] = {}
        self._current_n: int | None = None

    def _input_dims(self) -> tuple[int, ...]:
        shape = self._engine.get_tensor_profile_shape(self._input_name, 0)[2]
        return tuple(int(s) for s in shape[1:])

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(stream_handle=self._stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def _run_graph(self, n: int) -> None:
        cudart = self._cudart
        graph_exec = self._graphs.get(n)
        if graph_exec is None:
            self._enqueue()  # first run at this shape outside capture (TensorRT allocates lazily)
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
            _check(cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
            self._enqueue()
            graph = _check(cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
            graph_exec = _check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            self._graphs[n] = graph_exec
        _check(cudart.cudaGraphLaunch(graph_exec, self._stream), "cudaGraphLaunch")

    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        cudart = self._cudart
        n = batch.shape[0]
        if n != self._current_n:
            self._context.set_input_shape(self._input_name, batch.shape)
            self._current_n = n
        inp = self._buffers[self._input_name]
        flat = np.ascontiguousarray(batch, dtype=inp.dtype).ravel()
        inp.host[: flat.size] = flat
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(cudart.cudaMemcpyAsync(inp.device, inp.host_ptr, flat.nbytes, h2d, self._stream), "cudaMemcpyAsync")
        if self._use_graph:
            self._run_graph(n)
        else:
            self._enqueue()
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        shapes = {}
        for name in self._outputs:
            out = self._buffers[name]
            shape = tuple(self._context.get_tensor_shape(name))
            size = int(np.prod(shape))
            shapes[name] = (shape, size)
            _check(
                cudart.cudaMemcpyAsync(out.host_ptr, out.device, size * out.dtype.itemsize, d2h, self._stream),
                "cudaMemcpyAsync",
            )
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {
            name: self._buffers[name].host[:size].reshape(shape).astype(np.float32, copy=True)
            for name, (shape, size) in shapes.items()
        }

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if batch.ndim != 4:
            raise BackendError(f"{self.name}: expected a (N, 1, S, S) batch, got shape {batch.shape}")
        parts = [self._run_chunk(batch[i : i + self.max_batch]) for i in range(0, batch.shape[0], self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def close(self) -> None:
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        for graph_exec in self._graphs.values():
            self._cudart.cudaGraphExecDestroy(graph_exec)
        self._graphs = {}
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None


def find_engine(bundle: Bundle, precision: str) -> Path:
    """The fresh engine of this bundle for this machine; BackendError (stale/missing) otherwise."""
    target = current_target()
    onnx_path = bundle.artifact_path("onnx")
    result = lookup(
        bundle.root,
        model=bundle.manifest.model,
        onnx_sha256=file_sha256(onnx_path),
        target=target,
        precision=precision,
        records=bundle_records(bundle.root, bundle.manifest.engines),
    )
    if result.status != "fresh":
        raise BackendError(result.message(bundle.root))
    return bundle.root / result.record.path


def open_tensorrt(bundle: Bundle, options: BackendOptions) -> TensorRTBackend:
    """Factory named in BACKENDS; BackendError when tensorrt, cuda-python, a GPU or a fresh engine is missing."""
    bundle.require_accepted(allow_rejected=options.allow_rejected)
    if options.device == "cpu":
        raise BackendError("the TensorRT backend needs a GPU but --device cpu was asked for; use --backend onnxruntime")
    precision = options.precision
    engine_path = find_engine(bundle, precision)
    return TensorRTBackend(bundle, engine_path, precision, options)
