"""TensorRT engine build + backend (needs tensorrt and a GPU; skipped elsewhere)."""

import numpy as np
import pytest

from export_models import DarkSegmenter, source

pytestmark = pytest.mark.tensorrt


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_build_cache_and_backend_parity(tmp_path, precision):
    from edge_bus.bundle import open_bundle
    from edge_bus.data.preprocess import normalize
    from edge_bus.exporting import build_engines, export_bundle
    from edge_bus.exporting import parity as P
    from edge_bus.runtime.backends import BackendOptions, open_backend

    root = tmp_path / "b"
    result = export_bundle(source(DarkSegmenter(), "segmentation"), root, formats="onnx,tensorrt",
                           precisions=[precision], batch_range="1:4", parity_images=12, calibration_images=16)
    m = open_bundle(root).manifest
    assert [e["precision"] for e in m.engines] == [precision]
    trt_rec = next(r for r in result.parity["artifacts"] if r["artifact"] == "tensorrt")
    assert trt_rec["passed"] and trt_rec["mean_iou_vs_reference"] >= P.MIN_MEAN_IOU_VS_REFERENCE
    assert result.passed and m.status == "accepted"
    # A second build finds the fresh engine and does not rebuild.
    built, messages = build_engines(root, precisions=[precision])
    assert built == [] and "up to date" in messages[0]
    bundle = open_bundle(root)
    ref = P.load_reference(root / P.REFERENCE_NAME)
    inputs = normalize(ref.images[:6], m.preprocessing)  # 6 > max batch 4: chunked
    outputs = {}
    for graph in (False, True):
        backend = open_backend("tensorrt", bundle, BackendOptions(precision=precision, cuda_graph=graph))
        try:
            outputs[graph] = backend(inputs)["logits"]
            np.testing.assert_array_equal(backend(inputs)["logits"], outputs[graph])  # graphs replayed
        finally:
            backend.close()
        assert outputs[graph].shape == (6, 1, 64, 64) and np.isfinite(outputs[graph]).all()
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-5, atol=1e-5)
