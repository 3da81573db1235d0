"""The Backend protocol: what the pipeline and the benchmark see of an inference engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edge_bus.bundle import TensorSpec


@dataclass
class BackendOptions:
    device: str = "auto"  # "cpu", "cuda", "cuda:N" or "auto"
    # "auto", "fp32", "fp16", "int8": which artifact/engine to use. "auto": TensorRT takes the best
    # fresh engine for this GPU (fp16, then fp32, then int8); ONNX Runtime and TorchScript take FP32.
    precision: str = "auto"
    threads: int | None = None  # CPU threads for ONNX Runtime / torch; None = library default
    max_batch: int | None = None  # None = the bundle's batch_range maximum
    cuda_graph: bool = False  # TensorRT only
    allow_rejected: bool = False  # run a bundle that failed its parity gate


@runtime_checkable
class Backend(Protocol):
    name: str  # e.g. "onnxruntime[CPUExecutionProvider]", "tensorrt[fp16]"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a float32 (N, 1, S, S) batch; return output name -> array with leading dim N."""
        ...

    def close(self) -> None:
        ...
