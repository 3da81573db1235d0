"""TorchScript, ONNX and TensorRT export, INT8 quantization and the parity gate (needs torch,
except the TensorRT and parity parts, which run on a cart).

Library entry points (what the CLI and the benchmark call):

    export_bundle(source, out_dir, *, formats=("onnx", "torchscript"), precisions=("fp16",),
                  batch_range=(1, 8), size=None, pack=None, data=None, split=None, parity_images=128,
                  calibration_images=64, workspace_gb=2.0, opset=18, latency_only=False,
                  recipe=None, overwrite=True, progress=False) -> ExportResult
        source: a checkpoint path, or ModelSpec(name, kwargs={}, size=256) for a fresh model.
        ExportResult(root, manifest, parity, messages); .passed

    fresh_bundle(model_name, out_dir, size=256, formats=("onnx",), *, model_kwargs=None, **export_kwargs)
        -> ExportResult   (latency_only=True, status "unchecked", numeric ORT-vs-torch check only)

    build_engines(bundle_dir, *, precisions=("fp16",), workspace_gb=2.0, pack=None, data=None,
                  split=None, force=False) -> EngineBuilds(built, messages, failed)   on the target
        (TensorRT); unpacks as (installed records, messages); each engine is gated before it is
        installed (a failed --force rebuild keeps the installed engine); needs parity_reference.npz
        and parity.json

Small single-purpose functions (ultralytics-style):
    to_onnx.export_onnx(model, path, *, size, opset=18) / check_onnx(path)
    to_torchscript.export_torchscript(model, path, *, size)
    quantize.quantize_int8(onnx_path, out_path, calibration)        ONNX Runtime QDQ static INT8
    to_tensorrt.build_engine(onnx_path, bundle_root, *, model, target, precision, batch_range, ...)
        -> engine_cache.StagedEngine (gate it, then .publish(root) or .discard())
    parity.compare(reference, logits, *, artifact, precision) -> dict
"""

from edge_bus.exporting.source import ModelSpec

__all__ = ["ExportResult", "ModelSpec", "build_engines", "export_bundle", "fresh_bundle", "verify_bundle"]


def __getattr__(name):  # lazy: importing the package must not import torch
    if name in ("ExportResult", "build_engines", "export_bundle", "fresh_bundle", "verify_bundle"):
        from edge_bus.exporting import bundle_export

        return getattr(bundle_export, name)
    raise AttributeError(name)
