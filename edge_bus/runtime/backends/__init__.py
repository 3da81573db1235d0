"""Backends behind one seam, chosen by name or 'auto'.

Each backend module is imported only when chosen, so a cart without TensorRT (or without torch)
never loads it. A backend implements `Backend` (see base.py).
"""

from __future__ import annotations

import importlib

from edge_bus.bundle import Bundle
from edge_bus.errors import BackendError
from edge_bus.runtime.backends.base import Backend, BackendOptions

# name -> "module:factory"; factory(bundle, options) -> Backend
BACKENDS: dict[str, str] = {
    "tensorrt": "edge_bus.runtime.backends.tensorrt:open_tensorrt",
    "onnxruntime": "edge_bus.runtime.backends.onnxruntime:open_onnxruntime",
    "torchscript": "edge_bus.runtime.backends.torchscript:open_torchscript",
}
AUTO_ORDER = ("tensorrt", "onnxruntime", "torchscript")


def backend_names() -> list[str]:
    return ["auto", *BACKENDS]


def open_backend(name: str, bundle: Bundle, options: BackendOptions | None = None) -> Backend:
    """Open backend `name` ('auto' tries TensorRT, then ONNX Runtime, then TorchScript)."""
    options = options or BackendOptions()
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return open_backend(candidate, bundle, options)
            except BackendError as exc:
                reasons.append(f"{candidate}: {exc}")
        raise BackendError(f"no backend works for {bundle.root}:\n  " + "\n  ".join(reasons))
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}'; choose one of: {', '.join(backend_names())}")
    module_name, factory_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend '{name}' is not available here ({exc})") from None
    return getattr(module, factory_name)(bundle, options)


__all__ = ["Backend", "BackendOptions", "BACKENDS", "backend_names", "open_backend"]
