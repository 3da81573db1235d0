"""TensorRT backend (TensorRT 10 API): tensors by name, execute_async_v3, pinned host buffers,
one CUDA stream, optional CUDA graphs. Device memory through cuda-python.

Imports neither torch nor tensorrt at module level: the factory imports them, so that choosing
another backend on a machine without TensorRT costs nothing. The engine is chosen by
edge_bus.engine_cache for this GPU, this TensorRT version and the requested precision ("auto": the
best fresh one, fp16 > fp32 > int8); a stale or missing engine is a BackendError (so `--backend
auto` falls through to ONNX Runtime) carrying the command that rebuilds it. The batch range is read
from the engine's optimization profile; chunks below its minimum are zero-padded and the padding
dropped from the outputs.

`--device cuda:N` runs on GPU N: the engine is looked up for that GPU and every call first makes N
the thread's current CUDA device (the pipeline calls the backend from its own thread).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from edge_bus.bundle import Bundle, TensorSpec
from edge_bus.engine_cache import (
    AUTO_ORDER,
    PRECISIONS,
    bundle_records,
    cudart_module,
    current_target,
    import_tensorrt,
    lookup,
    lookup_auto,
    source_kind,
)
from edge_bus.fileio import sha256_file
from edge_bus.errors import BackendError, BundleError
from edge_bus.runtime.backends._common import cuda_device_index
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
    """One deserialized engine with its execution context, stream and buffers on one GPU."""

    def __init__(self, bundle: Bundle, engine_path: Path, precision: str, options: BackendOptions):
        self._trt = import_tensorrt()
        self._cudart = cudart_module()
        self.name = f"tensorrt[{precision}]"
        self.precision = precision
        self.device = cuda_device_index(options.device)
        self._engine_path = engine_path
        self._input_name = bundle.manifest.input.name
        self._buffers: dict[str, _Buffer] = {}
        self._graphs: dict[int, tuple[Any, Any]] = {}  # batch -> (cudaGraph, cudaGraphExec)
        self._stream = None
        self._context = None
        self._engine = None
        self._use_graph = bool(options.cuda_graph)
        try:
            self._use_device()
            self._open(bundle, precision, options)
        except BaseException:
            self.close()
            raise

    def _use_device(self) -> None:
        err = self._cudart.cudaSetDevice(self.device)
        code = err[0] if isinstance(err, tuple) else err
        if int(code) != 0:
            raise BackendError(f"--device cuda:{self.device}: CUDA cannot use this GPU ({code}); check nvidia-smi")

    def _open(self, bundle: Bundle, precision: str, options: BackendOptions) -> None:
        trt, cudart, engine_path = self._trt, self._cudart, self._engine_path
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise BackendError(
                f"{engine_path}: TensorRT could not deserialize this engine (corrupt, or built by another "
                f"TensorRT/GPU); rebuild it with `edge-bus export build-engine {bundle.root} --precision {precision} --force`"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"{engine_path}: TensorRT could not create an execution context (out of GPU memory?)")
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        if self._input_name not in names:
            raise BackendError(
                f"{engine_path}: engine has no input '{self._input_name}' (it has {names}); "
                f"rebuild it with `edge-bus export build-engine {bundle.root} --force`"
            )
        # The batch range is the engine's own optimization profile, not what the manifest says.
        lo_shape, _, hi_shape = (tuple(int(d) for d in s) for s in self._engine.get_tensor_profile_shape(self._input_name, 0))
        self.min_batch, profile_max = lo_shape[0], hi_shape[0]
        self.max_batch = max(self.min_batch, min(options.max_batch or profile_max, profile_max))
        self._dims = hi_shape[1:]
        self._outputs: list[str] = []
        for name in names:
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                if name != self._input_name:
                    raise BackendError(f"{engine_path}: engine input '{name}' is not the manifest's '{self._input_name}'")
                self._buffers[name] = _Buffer(cudart, (self.max_batch, *self._dims), dtype)
            else:
                self._outputs.append(name)
        # Output sizes follow from the largest input shape.
        self._set_shape(self.max_batch)
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._buffers[name] = _Buffer(cudart, shape, dtype)
        for name, buf in self._buffers.items():
            if not self._context.set_tensor_address(name, int(buf.device)):
                raise BackendError(f"{engine_path}: TensorRT refused the device buffer of tensor '{name}'")
        self.inputs = [TensorSpec(self._input_name, ["batch", *self._dims])]
        self.outputs = [TensorSpec(n, ["batch", *list(self._context.get_tensor_shape(n))[1:]]) for n in self._outputs]

    def _set_shape(self, n: int) -> None:
        shape = (n, *self._dims)
        if not self._context.set_input_shape(self._input_name, shape):
            raise BackendError(
                f"{self._engine_path}: TensorRT refused input shape {shape} (engine profile batch "
                f"{self.min_batch}..{self.max_batch}, input {self._dims}); rebuild the engine for this shape"
            )
        self._current_n = n

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(stream_handle=self._stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def _run_graph(self, n: int) -> None:
        cudart = self._cudart
        if n not in self._graphs:
            self._enqueue()  # first run at this shape outside capture (TensorRT allocates lazily)
            mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
            _check(cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
            self._enqueue()
            graph = _check(cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
            try:
                graph_exec = _check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
            except BackendError:
                cudart.cudaGraphDestroy(graph)
                raise
            self._graphs[n] = (graph, graph_exec)
        _check(cudart.cudaGraphLaunch(self._graphs[n][1], self._stream), "cudaGraphLaunch")

    def _run_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        cudart = self._cudart
        n = batch.shape[0]
        if n < self.min_batch:  # below the profile minimum: pad with zeros, drop the padding below
            pad = np.zeros((self.min_batch - n, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        if batch.shape[0] != self._current_n:
            self._set_shape(batch.shape[0])
        inp = self._buffers[self._input_name]
        flat = np.ascontiguousarray(batch, dtype=inp.dtype).ravel()
        inp.host[: flat.size] = flat
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(cudart.cudaMemcpyAsync(inp.device, inp.host_ptr, flat.nbytes, h2d, self._stream), "cudaMemcpyAsync")
        if self._use_graph:
            self._run_graph(batch.shape[0])
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
            name: self._buffers[name].host[:size].reshape(shape)[:n].astype(np.float32, copy=True)
            for name, (shape, size) in shapes.items()
        }

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self._use_device()  # this thread's current device (CUDA keeps one per thread)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self._dims:
            raise BackendError(f"{self.name}: expected a (N, {', '.join(map(str, self._dims))}) batch, got shape {batch.shape}")
        parts = [self._run_chunk(batch[i : i + self.max_batch]) for i in range(0, batch.shape[0], self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def close(self) -> None:
        """Free graphs, buffers, stream, context and engine (in that order); safe to call twice."""
        cudart = self._cudart
        try:
            self._use_device()
        except BackendError:
            pass  # the device could not be set at all: nothing was allocated on it
        for graph, graph_exec in self._graphs.values():
            cudart.cudaGraphExecDestroy(graph_exec)
            cudart.cudaGraphDestroy(graph)
        self._graphs = {}
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = None
        self._engine = None


def find_engine(bundle: Bundle, precision: str, device: int = 0) -> tuple[Path, str]:
    """(engine path, precision) of this bundle's fresh engine for CUDA device `device` here.

    precision "auto" takes the best fresh engine (fp16, then fp32, then int8); an explicit
    precision means that precision. BackendError when no fresh engine fits (missing or stale), so
    that `--backend auto` falls through to ONNX Runtime.
    """
    target = current_target(device)
    m = bundle.manifest
    try:
        records = bundle_records(bundle.root, m.engines)
    except BundleError as exc:  # a broken engine record must not stop `--backend auto` from falling through
        raise BackendError(str(exc)) from None
    wanted = AUTO_ORDER if precision == "auto" else (precision,)
    shas: dict[str, str] = {}
    for p in wanted:
        kind = source_kind(p, m.artifacts)
        rel = m.artifacts.get(kind)
        if rel is None or not (bundle.root / rel).is_file():
            if precision != "auto":
                raise BackendError(
                    f"{bundle.root}: the {p} TensorRT engine is built from '{kind}', which this bundle lacks; "
                    f"re-export it with `edge-bus export ... --formats {kind},tensorrt` or choose another backend"
                )
            continue
        shas[p] = sha256_file(bundle.root / rel)
    if not shas:
        raise BackendError(f"{bundle.root}: no ONNX model in this bundle to build TensorRT engines from; re-export it")
    # Size check only: hashing the engine at every start would cost seconds (build-engine and
    # `edge-bus info` check its SHA-256).
    if precision == "auto":
        result = lookup_auto(bundle.root, model=m.model, onnx_sha256=shas, target=target, records=records,
                             verify_sha256=False)
    else:
        result = lookup(bundle.root, model=m.model, onnx_sha256=shas[precision], target=target,
                        precision=precision, records=records, verify_sha256=False)
    if result.status != "fresh":
        raise BackendError(result.message(bundle.root))
    return bundle.root / result.record.path, result.precision


def open_tensorrt(bundle: Bundle, options: BackendOptions) -> TensorRTBackend:
    """Factory named in BACKENDS; BackendError when tensorrt, cuda-python, a GPU or a fresh engine is missing.

    A rejected bundle is refused here; whether an unchecked (latency-only) one may run is decided by
    the caller (runtime.models.load_model, the benchmark), which opens backends below that gate."""
    bundle.require_accepted(allow_rejected=options.allow_rejected, allow_unchecked=True)
    if options.device == "cpu":
        raise BackendError("the TensorRT backend needs a GPU but --device cpu was asked for; use --backend onnxruntime")
    device = cuda_device_index(options.device)
    precision = (options.precision or "auto").lower()
    if precision not in ("auto", *PRECISIONS):
        raise BackendError(f"unknown precision '{options.precision}'; choose auto or one of {', '.join(PRECISIONS)}")
    engine_path, precision = find_engine(bundle, precision, device)
    return TensorRTBackend(bundle, engine_path, precision, options)
