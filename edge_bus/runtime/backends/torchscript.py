"""TorchScript backend: only where torch is installed (imported inside the factory).

Precision "auto" and "fp32" run FP32; "fp16" runs a half-precision module on a CUDA GPU only;
"int8" is refused (ONNX Runtime or TensorRT run INT8).
"""

from __future__ import annotations

import numpy as np

from edge_bus.bundle import Bundle, TensorSpec
from edge_bus.errors import BackendError
from edge_bus.runtime.backends._common import (
    artifact,
    check_bundle,
    check_input,
    max_batch,
    resolved_precision,
    run_split,
)
from edge_bus.runtime.backends.base import BackendOptions


class TorchScriptBackend:
    def __init__(self, module, torch, device, bundle: Bundle, limit: int, half: bool) -> None:
        self._module = module
        self._torch = torch
        self._device = device
        self._half = half
        self.limit = limit
        self.size = bundle.manifest.preprocessing.size
        self.name = f"torchscript[{device}{',fp16' if half else ''}]"
        self.precision = "fp16" if half else "fp32"
        m = bundle.manifest
        self.inputs = [TensorSpec(m.input.name, list(m.input.shape))]
        self.outputs = [TensorSpec(m.output.name, list(m.output.shape))]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device)
            if self._half:
                x = x.half()
            y = self._module(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            elif isinstance(y, dict):
                y = next(iter(y.values()))
            return {self.outputs[0].name: y.float().cpu().numpy()}

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        check_input(batch, self.size, self.name)
        return run_split(self._run, batch, self.limit)

    def close(self) -> None:
        self._module = None


def open_torchscript(bundle: Bundle, options: BackendOptions) -> TorchScriptBackend:
    check_bundle(bundle, options)
    precision = resolved_precision(options)  # "auto" -> fp32
    if precision == "int8":
        raise BackendError("torchscript runs fp32 or fp16 only; use --backend onnxruntime or tensorrt for int8")
    path = artifact(bundle, "torchscript", "torchscript")
    try:
        import torch
    except ImportError:
        raise BackendError("torch is not installed here (a cart install has none); use --backend onnxruntime") from None
    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"device '{device}' asked but torch sees no CUDA GPU; use --device cpu")
    if precision == "fp16" and not device.startswith("cuda"):
        raise BackendError(f"torchscript runs fp16 on a CUDA GPU only (device '{device}'); use --precision auto (FP32)")
    half = precision == "fp16"
    if options.threads:
        torch.set_num_threads(int(options.threads))
    try:
        module = torch.jit.load(path, map_location=device).eval()
    except Exception as exc:  # torch raises RuntimeError with long messages
        raise BackendError(f"{path}: torch.jit.load failed ({str(exc).splitlines()[0]}); re-export the bundle") from None
    if half:
        module = module.half()
    return TorchScriptBackend(module, torch, torch.device(device), bundle, max_batch(bundle, options), half)
