"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, whichever this install offers.

Providers are chosen from `onnxruntime.get_available_providers()`: device "cpu" -> CPU only;
"cuda"/"cuda:N" -> CUDA then CPU; "auto" -> TensorRT EP, CUDA, CPU (in that order, where present).

Precision: "auto" and "fp32" run the bundle's `onnx` artifact in FP32; "int8" runs its `onnx_int8`
artifact; "fp16" exists only through the TensorRT execution provider (device auto or cuda), and is a
BackendError anywhere else rather than a silent FP32 run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_bus.bundle import Bundle, TensorSpec
from edge_bus.errors import BackendError
from edge_bus.runtime.backends._common import (
    artifact,
    check_bundle,
    check_input,
    cuda_device_index,
    max_batch,
    resolved_precision,
    run_split,
)
from edge_bus.runtime.backends.base import BackendOptions


def choose_providers(available: list[str], device: str, precision: str, cache_dir: Path | None = None) -> list:
    """Provider list (names or (name, options)) for `device` from what is available."""
    device = device.lower()
    providers: list = []
    if device == "cpu":
        pass
    elif device == "auto" or device.startswith("cuda"):
        cuda_id = cuda_device_index(device, choices="auto, cpu, cuda or cuda:N")
        # The TensorRT EP is tried first on "auto"; on an explicit cuda device only for fp16, which
        # nothing else in ONNX Runtime provides.
        if "TensorrtExecutionProvider" in available and (device == "auto" or precision == "fp16"):
            trt = {"device_id": cuda_id, "trt_fp16_enable": precision == "fp16", "trt_int8_enable": False}
            if cache_dir is not None:
                trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
            providers.append(("TensorrtExecutionProvider", trt))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": cuda_id}))
        elif device.startswith("cuda"):
            raise BackendError(
                f"device '{device}' asked, but this onnxruntime has no CUDAExecutionProvider (it has {', '.join(available)}); "
                "install onnxruntime-gpu or use --device cpu"
            )
    else:
        raise BackendError(f"unknown device '{device}'; use auto, cpu, cuda or cuda:N")
    providers.append("CPUExecutionProvider")
    return providers


TRT_EP = "TensorrtExecutionProvider"


def _names(providers: list) -> list[str]:
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def _no_fp16(device: str, providers: list[str]) -> str:
    return (
        f"precision fp16 with ONNX Runtime needs the TensorrtExecutionProvider on a GPU (device '{device}', "
        f"providers {', '.join(providers)}); use --precision auto (FP32) or int8, or --backend tensorrt"
    )


class OnnxRuntimeBackend:
    precision = "fp32"

    def __init__(self, session, bundle: Bundle, limit: int) -> None:
        self._session = session
        self.bundle = bundle
        self.limit = limit
        self.size = bundle.manifest.preprocessing.size
        self.name = f"onnxruntime[{session.get_providers()[0]}]"
        self.inputs = [TensorSpec(i.name, list(i.shape), "float32") for i in session.get_inputs()]
        self.outputs = [TensorSpec(o.name, list(o.shape), "float32") for o in session.get_outputs()]
        self._input_name = self.inputs[0].name
        self._output_names = [o.name for o in self.outputs]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, {self._input_name: batch})
        return dict(zip(self._output_names, values))

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        check_input(batch, self.size, self.name)
        return run_split(self._run, batch, self.limit)

    def close(self) -> None:
        self._session = None


def open_onnxruntime(bundle: Bundle, options: BackendOptions) -> OnnxRuntimeBackend:
    check_bundle(bundle, options)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError(f"onnxruntime is not installed ({exc}); pip install onnxruntime (or onnxruntime-gpu)") from None
    precision = resolved_precision(options)
    kind = "onnx_int8" if precision == "int8" else "onnx"
    path = artifact(bundle, kind, "onnxruntime")
    available = ort.get_available_providers()
    providers = choose_providers(available, options.device, precision, bundle.root / "engines")
    if precision == "fp16" and _names(providers)[0] != TRT_EP:
        raise BackendError(_no_fp16(options.device, available))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if options.threads:
        so.intra_op_num_threads = int(options.threads)
    # Idle intra-op threads spin by default; on a small CPU that burns the cores the pipeline's
    # decode/preprocess threads need. EDGE_BUS_ORT_SPIN=1 restores spinning.
    if os.environ.get("EDGE_BUS_ORT_SPIN", "0") != "1":
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(path, sess_options=so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise BackendError(f"{path}: onnxruntime cannot load this model ({str(exc).splitlines()[0]}); re-export the bundle") from None
    if precision == "fp16" and session.get_providers()[0] != TRT_EP:  # the EP failed to start and ORT fell back
        raise BackendError(_no_fp16(options.device, session.get_providers()))
    backend = OnnxRuntimeBackend(session, bundle, max_batch(bundle, options))
    backend.precision = precision
    _check_fits(backend, bundle, path)
    return backend


def _check_fits(backend: OnnxRuntimeBackend, bundle: Bundle, path: str) -> None:
    """The model's input must be (N, 1, S, S) with S from the manifest's preprocessing."""
    shape = backend.inputs[0].shape
    size = bundle.manifest.preprocessing.size
    fixed = [d for d in shape[1:] if isinstance(d, int)]
    if len(shape) != 4 or (len(fixed) == 3 and fixed != [1, size, size]):
        raise BackendError(
            f"{path}: model input {backend.inputs[0].name} has shape {shape} but the manifest says (N, 1, {size}, {size}); "
            "the bundle does not fit its own manifest, re-export it"
        )
