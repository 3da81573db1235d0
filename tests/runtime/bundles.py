"""Tiny ONNX bundles built with onnx.helper (no torch): a classifier and a segmenter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_bus.bundle import Manifest, TensorSpec, write_manifest
from edge_bus.data.preprocess import PreprocessSpec

CLASSES = ["benign", "malignant", "normal"]


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-bus-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def classifier_graph(size: int):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[2.0, -1.0, 0.5]], np.float32), "w")
    b = numpy_helper.from_array(np.array([0.1, 0.2, 0.3], np.float32), "b")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["logits"]),
    ]
    return helper.make_graph(
        nodes, "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[w, b],
    )


def segmenter_graph(size: int):
    """logit = 4 * (3x3 mean of the normalized input) - 1: bright regions are 'lesion'."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 1, 3, 3), 4.0 / 9.0, np.float32), "w")
    b = numpy_helper.from_array(np.array([-1.0], np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"], pads=[1, 1, 1, 1])]
    return helper.make_graph(
        nodes, "tiny_segmenter",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, size, size])],
        initializer=[w, b],
    )


def make_bundle(root: Path, task: str, *, size: int = 64, status: str = "accepted", batch_max: int = 8) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if task == "classification":
        _save(classifier_graph(size), root / "model.onnx")
        out = TensorSpec("logits", ["batch", 3])
        model, classes = "tiny-classifier", CLASSES
    else:
        _save(segmenter_graph(size), root / "model.onnx")
        out = TensorSpec("logits", ["batch", 1, size, size])
        model, classes = "tiny-segmenter", ["lesion"]
    manifest = Manifest(
        task=task, model=model, classes=classes, input=TensorSpec("input", ["batch", 1, size, size]), output=out,
        preprocessing=PreprocessSpec(size=size), batch_range=(1, batch_max), artifacts={"onnx": "model.onnx"},
        status=status, latency_only=True,
    )
    write_manifest(manifest, root / "manifest.json")
    return root
