"""A fake TensorRT 10 Python module and cuda-python runtime, to test the TensorRT code on a CPU.

`FakeCudart`: "device" memory is host memory (ctypes buffers) and copies are memmove, so the
backend's buffer handling really runs; every call is recorded, graphs and graph execs are counted
while alive, and each device has its own name ("Fake GPU 0", "Fake GPU 1", ...).
`fake_tensorrt(cudart, version)`: a module whose Runtime deserializes `engine_blob(...)` files.
Such an engine has one input "input" (N, 1, S, S) and one output "logits" = scale * input, and an
optimization profile over batch 1..max_batch. A captured CUDA graph replays the shape it was
captured with, as a real one does.
"""

from __future__ import annotations

import ctypes
import json
import types
from functools import partial

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\n"


def engine_blob(size: int = 8, max_batch: int = 4, scale: float = 2.0) -> bytes:
    return MAGIC + json.dumps({"size": size, "max_batch": max_batch, "scale": scale}).encode()


def _floats(address: int, count: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address))


class FakeCudart:
    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode:
        cudaStreamCaptureModeGlobal = 0

    def __init__(self, devices: int = 2):
        self.devices = devices
        self.current = 0
        self.calls: list[tuple] = []
        self.memory: dict[int, ctypes.Array] = {}
        self.capturing: list | None = None
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self._ids = iter(range(1, 1 << 30))

    def _alloc(self, nbytes: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(max(int(nbytes), 1))
        self.memory[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    def cudaGetDeviceCount(self):
        return 0, self.devices

    def cudaGetDeviceProperties(self, device):
        return 0, types.SimpleNamespace(name=f"Fake GPU {device}".encode(), major=8, minor=7)

    def cudaSetDevice(self, device):
        self.calls.append(("cudaSetDevice", device))
        if device >= self.devices:
            return (101,)  # cudaErrorInvalidDevice
        self.current = device
        return (0,)

    def cudaStreamCreate(self):
        return 0, next(self._ids)

    def cudaStreamDestroy(self, stream):
        self.calls.append(("cudaStreamDestroy", stream))
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    cudaMalloc = _alloc
    cudaMallocHost = _alloc

    def cudaFree(self, ptr):
        self.memory.pop(int(ptr), None)
        return (0,)

    cudaFreeHost = cudaFree

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (0,)

    def cudaMemcpy(self, dst, src, nbytes, kind):
        return self.cudaMemcpyAsync(dst, src, nbytes, kind, None)

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = []
        return (0,)

    def cudaStreamEndCapture(self, stream):
        graph = next(self._ids)
        self.graphs[graph], self.capturing = self.capturing, None
        return 0, graph

    def cudaGraphInstantiate(self, graph, flags):
        graph_exec = next(self._ids)
        self.execs[graph_exec] = list(self.graphs[graph])
        return 0, graph_exec

    def cudaGraphLaunch(self, graph_exec, stream):
        self.calls.append(("cudaGraphLaunch", graph_exec))
        for op in self.execs[graph_exec]:
            op()
        return (0,)

    def cudaGraphExecDestroy(self, graph_exec):
        self.execs.pop(graph_exec)
        return (0,)

    def cudaGraphDestroy(self, graph):
        self.graphs.pop(graph)
        return (0,)


class _Context:
    def __init__(self, engine: "_Engine", cudart: FakeCudart):
        self.engine, self.cudart = engine, cudart
        self.shape = None
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return 1 <= shape[0] <= self.engine.max_batch and tuple(shape[1:]) == (1, self.engine.size, self.engine.size)

    def get_tensor_shape(self, name):
        return self.shape

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)
        return True

    def _compute(self, n: int) -> None:
        count = n * self.engine.size * self.engine.size
        _floats(self.addresses["logits"], count)[:] = self.engine.scale * _floats(self.addresses["input"], count)

    def execute_async_v3(self, stream_handle):
        op = partial(self._compute, self.shape[0])
        if self.cudart.capturing is not None:
            self.cudart.capturing.append(op)
        else:
            op()
        return True


class _Engine:
    num_io_tensors = 2

    def __init__(self, spec: dict, cudart: FakeCudart, trt):
        self.size, self.max_batch, self.scale = spec["size"], spec["max_batch"], spec["scale"]
        self.cudart, self.trt = cudart, trt

    def get_tensor_name(self, index):
        return ("input", "logits")[index]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "input" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_profile_shape(self, name, profile):
        s = self.size
        return [(1, 1, s, s), (min(2, self.max_batch), 1, s, s), (self.max_batch, 1, s, s)]

    def create_execution_context(self):
        return _Context(self, self.cudart)


def fake_tensorrt(cudart: FakeCudart, version: str = "10.3.0") -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.nptype = lambda dtype: np.dtype(dtype).type

    class Logger:
        WARNING, INFO = 2, 1

        def __init__(self, level=None):
            self.level = level

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, blob: bytes):
            if not blob.startswith(MAGIC):
                return None
            try:
                return _Engine(json.loads(blob[len(MAGIC):]), cudart, trt)
            except ValueError:
                return None

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt
