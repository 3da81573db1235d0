import dataclasses
import math

import numpy as np
import pytest

from edge_bus.bundle import open_bundle, read_manifest, write_manifest
from edge_bus.errors import BackendError, BundleError
from edge_bus.runtime.backends import BackendOptions, open_backend
from edge_bus.runtime.backends.onnxruntime import choose_providers
from edge_bus.runtime.models import load_model
from edge_bus.runtime.postprocess import classify, logit_threshold, segment

from bundles import make_bundle


@pytest.fixture(scope="module")
def cls_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cls"), "classification", size=32, batch_max=2)


def test_auto_picks_onnxruntime_and_says_so(cls_bundle):
    backend = open_backend("auto", open_bundle(cls_bundle), BackendOptions(device="cpu"))
    assert backend.name == "onnxruntime[CPUExecutionProvider]"
    out = backend(np.zeros((2, 1, 32, 32), np.float32))
    np.testing.assert_allclose(out["logits"], np.tile([[0.1, 0.2, 0.3]], (2, 1)), atol=1e-6)


def test_batch_above_bundle_maximum_is_split(cls_bundle):
    backend = open_backend("onnxruntime", open_bundle(cls_bundle), BackendOptions(device="cpu"))
    sent = []
    run = backend._run
    backend._run = lambda b: (sent.append(b.shape[0]), run(b))[1]
    x = np.random.default_rng(0).normal(size=(5, 1, 32, 32)).astype(np.float32)
    out = backend(x)
    assert sent == [2, 2, 1] and out["logits"].shape == (5, 3)
    expected = x.mean(axis=(1, 2, 3))[:, None] * np.array([2.0, -1.0, 0.5]) + np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(out["logits"], expected, atol=1e-5)


def test_wrong_input_is_a_clear_error(cls_bundle):
    backend = open_backend("onnxruntime", open_bundle(cls_bundle), BackendOptions(device="cpu"))
    with pytest.raises(BackendError, match="preprocess_batch"):
        backend(np.zeros((1, 1, 64, 64), np.float32))


def test_rejected_bundle_refused_unless_allowed(tmp_path):
    root = make_bundle(tmp_path / "rej", "classification", size=32, status="rejected")
    with pytest.raises(BundleError, match="allow-rejected"):
        open_backend("auto", open_bundle(root), BackendOptions())
    with pytest.raises(BundleError, match="allow-rejected"):
        load_model("classifier", root)
    model = load_model("classifier", root, options=BackendOptions(allow_rejected=True))
    assert model.backend.name.startswith("onnxruntime")


def test_unchecked_bundle_is_refused_by_the_loader_unless_allowed(tmp_path, monkeypatch):
    """An untrained (latency-only) bundle never runs silently: load_model wants allow_unchecked."""
    from edge_bus.runtime import models

    root = make_bundle(tmp_path / "fresh", "classification", size=32, status="unchecked")
    with pytest.raises(BundleError) as info:
        load_model("classifier", root)
    assert "--allow-unchecked" in str(info.value) and "edge-bus export CHECKPOINT" in str(info.value)
    with pytest.raises(BundleError, match="unchecked"):
        load_model("classifier", root, options=BackendOptions(allow_rejected=True))
    opened = []
    monkeypatch.setattr(models, "open_backend", lambda name, bundle, options: opened.append(bundle.root) or object())
    model = load_model("classifier", root, allow_unchecked=True)
    assert opened == [root] and model.manifest.status == "unchecked"


def test_bundle_that_does_not_fit(tmp_path, cls_bundle):
    with pytest.raises(BackendError, match="onnx_int8"):
        open_backend("onnxruntime", open_bundle(cls_bundle), BackendOptions(precision="int8"))
    with pytest.raises(BundleError, match="pass it as --classifier"):
        load_model("segmenter", cls_bundle)
    # manifest says 64 (consistently) but the model takes 32
    root = make_bundle(tmp_path / "mismatch", "classification", size=32)
    m = read_manifest(root / "manifest.json")
    m = dataclasses.replace(m, preprocessing=dataclasses.replace(m.preprocessing, size=64),
                            input=dataclasses.replace(m.input, shape=["batch", 1, 64, 64]))
    write_manifest(m, root / "manifest.json")
    with pytest.raises(BackendError, match="does not fit"):
        open_backend("onnxruntime", open_bundle(root), BackendOptions())
    (root / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(BackendError, match="cannot load"):
        open_backend("onnxruntime", open_bundle(root), BackendOptions())


def test_provider_choice():
    assert choose_providers(["CPUExecutionProvider"], "auto", "fp32") == ["CPUExecutionProvider"]
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    names = [p[0] if isinstance(p, tuple) else p for p in choose_providers(avail, "auto", "fp16")]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(avail, "cuda:1", "fp32")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert choose_providers(avail, "cpu", "fp32") == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        choose_providers(["CPUExecutionProvider"], "cuda", "fp32")


def test_postprocess_threshold_and_coordinates():
    assert math.isclose(1 / (1 + math.exp(-logit_threshold(0.7))), 0.7)
    logits = np.full((1, 16, 16), -3.0, np.float32)
    logits[0, 2:6, 3:9] = 3.0  # big component
    logits[0, 12, 12] = 3.0  # small one, ignored
    lesion = segment(logits, 0.5, (100, 50, 32, 64))  # ROI 32 x 64 at (100, 50): scale 2 x 4
    assert lesion.box == (106, 58, 12, 16) and 0.95 * 12 * 16 <= lesion.area_px <= 12 * 16  # corners rounded
    assert segment(np.full((1, 8, 8), -1.0, np.float32), 0.5, (0, 0, 8, 8)) is None
    c = classify(np.array([0.0, 3.0, 0.0]), ["benign", "malignant", "normal"])
    assert c.label == "malignant" and math.isclose(sum(c.probs.values()), 1.0, abs_tol=1e-5)


def test_torchscript_backend_when_torch_is_present(tmp_path):
    torch = pytest.importorskip("torch")
    root = make_bundle(tmp_path / "ts", "segmentation", size=32, batch_max=2)

    class Net(torch.nn.Module):
        def forward(self, x):
            return x * 2.0

    torch.jit.script(Net()).save(str(root / "model.ts"))
    m = read_manifest(root / "manifest.json")
    m.artifacts["torchscript"] = "model.ts"
    write_manifest(m, root / "manifest.json")
    backend = open_backend("torchscript", open_bundle(root), BackendOptions(device="cpu"))
    x = np.ones((3, 1, 32, 32), np.float32)
    out = backend(x)
    assert backend.name == "torchscript[cpu]" and out["logits"].shape == (3, 1, 32, 32)
    np.testing.assert_allclose(out["logits"], 2.0)


def test_precision_auto_and_fp32_run_the_fp32_onnx(cls_bundle):
    for precision in ("auto", "fp32"):
        backend = open_backend("onnxruntime", open_bundle(cls_bundle), BackendOptions(device="cpu", precision=precision))
        assert backend.precision == "fp32"
        np.testing.assert_allclose(backend(np.zeros((1, 1, 32, 32), np.float32))["logits"], [[0.1, 0.2, 0.3]], atol=1e-6)
    assert BackendOptions().precision == "auto"


def test_onnxruntime_fp16_needs_the_tensorrt_provider(cls_bundle):
    with pytest.raises(BackendError, match="fp16 with ONNX Runtime needs the TensorrtExecutionProvider"):
        open_backend("onnxruntime", open_bundle(cls_bundle), BackendOptions(device="cpu", precision="fp16"))
    with pytest.raises(BackendError, match="unknown precision 'half'"):
        open_backend("onnxruntime", open_bundle(cls_bundle), BackendOptions(device="cpu", precision="half"))
    # auto falls through every backend and names each reason
    with pytest.raises(BackendError, match="onnxruntime: precision fp16"):
        open_backend("auto", open_bundle(cls_bundle), BackendOptions(device="cpu", precision="fp16"))


def test_fp16_on_an_explicit_cuda_device_asks_the_tensorrt_provider():
    avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    fp16 = choose_providers(avail, "cuda:1", "fp16")
    assert fp16[0][0] == "TensorrtExecutionProvider" and fp16[0][1]["trt_fp16_enable"] and fp16[0][1]["device_id"] == 1
    assert choose_providers(avail, "cuda", "fp32")[0][0] == "CUDAExecutionProvider"  # fp32 on cuda: no TensorRT EP


def test_torchscript_precisions(tmp_path):
    torch = pytest.importorskip("torch")
    root = make_bundle(tmp_path / "ts", "segmentation", size=32)
    torch.jit.script(torch.nn.Identity()).save(str(root / "model.ts"))
    m = read_manifest(root / "manifest.json")
    m.artifacts["torchscript"] = "model.ts"
    write_manifest(m, root / "manifest.json")
    backend = open_backend("torchscript", open_bundle(root), BackendOptions(device="cpu", precision="auto"))
    assert backend.precision == "fp32" and backend.name == "torchscript[cpu]"
    with pytest.raises(BackendError, match="fp16 on a CUDA GPU only"):
        open_backend("torchscript", open_bundle(root), BackendOptions(device="cpu", precision="fp16"))
    with pytest.raises(BackendError, match="int8"):
        open_backend("torchscript", open_bundle(root), BackendOptions(device="cpu", precision="int8"))
