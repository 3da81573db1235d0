"""ONNX export with a dynamic batch dimension, and the checks that an ONNX file is usable.

Exporter: torch.onnx.export(..., dynamo=True) (the torch.export-based exporter). The older
TorchScript-based exporter cannot export adaptive pooling whose output size does not divide the
input (VGG's AdaptiveAvgPool2d(7) at 256x256 gives 8x8 -> 7x7); the dynamo exporter lowers it to
plain ops, and it is the default of current PyTorch. The batch dimension is a symbolic `batch`
(example batch 2, so that torch.export does not specialize it to 1).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from edge_bus.errors import BundleError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
MAX_DYNAMIC_BATCH = 64


def export_onnx(
    model,
    path: str | Path,
    *,
    size: int,
    opset: int = DEFAULT_OPSET,
    max_batch: int = MAX_DYNAMIC_BATCH,
) -> Path:
    """Write `model` (float32 (N,1,S,S) -> logits) to `path` as one self-contained ONNX file."""
    import torch  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, 1, size, size)
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    sink = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; keep the cause, name the file
            raise BundleError(
                f"{path}: ONNX export of {type(model).__name__} at {size}x{size} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
    check_onnx(path)
    return path


def check_onnx(path: str | Path) -> None:
    """BundleError naming the file when it is missing, truncated or not a valid ONNX model."""
    import onnx  # noqa: PLC0415

    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: ONNX file not found; re-export the bundle with `edge-bus export`")
    try:
        model = onnx.load(str(p), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise BundleError(
            f"{p}: not a valid ONNX model (truncated or corrupt: {type(exc).__name__}); "
            "re-export it with `edge-bus export CHECKPOINT`"
        ) from None


def ort_session(path: str | Path, *, threads: int | None = None, emulate_qdq: bool = False):
    """A CPU ONNX Runtime session; BundleError naming the file when ORT cannot load it.

    `emulate_qdq`: run Q/DQ nodes as written (dequantize, float operator, quantize) instead of
    fusing them into ONNX Runtime's integer kernels. That is TensorRT's arithmetic for the signed
    symmetric model.int8.tensorrt.onnx; fused, ORT's S8S8 convolutions saturate on x86 CPUs without
    VNNI (seen on an AVX2-only AMD EPYC: 0.28 relative RMS error against 0.04 emulated)."""
    import onnxruntime as ort  # noqa: PLC0415

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if emulate_qdq:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(
            f"{path}: ONNX Runtime cannot load this file ({str(exc).splitlines()[0][:200]}); "
            "re-export it with `edge-bus export CHECKPOINT`"
        ) from None


def run_onnx(session, batch: np.ndarray, chunk: int = 8) -> np.ndarray:
    """Run a float32 batch through an ORT session in chunks; returns the first output."""
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: np.ascontiguousarray(batch[i : i + chunk])})[0] for i in range(0, len(batch), chunk)]
    return np.concatenate(outs)
