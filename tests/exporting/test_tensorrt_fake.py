"""The TensorRT backend and version guard on a CPU, against fake tensorrt / cuda-python modules."""

import sys

import numpy as np
import pytest

from edge_bus import engine_cache as ec
from edge_bus.bundle import Bundle, Manifest, TensorSpec
from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import BackendError
from edge_bus.fileio import sha256_file
from edge_bus.runtime.backends import BackendOptions, open_backend
from edge_bus.runtime.backends import tensorrt as trt_backend
from fake_tensorrt import FakeCudart, engine_blob, fake_tensorrt

SIZE = 8


def _install(monkeypatch, version="10.3.0", devices=2) -> FakeCudart:
    cudart = FakeCudart(devices)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(cudart, version))
    monkeypatch.setattr(ec, "cudart_module", lambda: cudart)
    monkeypatch.setattr(trt_backend, "cudart_module", lambda: cudart)
    return cudart


@pytest.fixture
def cudart(monkeypatch):
    return _install(monkeypatch)


def _bundle(root, status="accepted") -> Bundle:
    (root / "model.onnx").write_bytes(b"fp32 onnx")
    manifest = Manifest(task="segmentation", model="tiny", classes=["lesion"],
                        input=TensorSpec("input", ["batch", 1, SIZE, SIZE]),
                        output=TensorSpec("logits", ["batch", 1, SIZE, SIZE]), preprocessing=PreprocessSpec(size=SIZE),
                        batch_range=(1, 4), artifacts={"onnx": "model.onnx"}, status=status)
    return Bundle(root, manifest)


def _publish(bundle: Bundle, gpu: str = "Fake GPU 0", blob: bytes | None = None) -> ec.EngineRecord:
    target = ec.Target("10.3.0", gpu, "8.7")
    rec = ec.make_record("tiny", sha256_file(bundle.root / "model.onnx"), target, "fp16", batch_range=[1, 4])
    staged = ec.staging_path(bundle.root, rec)
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(blob or engine_blob(size=SIZE, max_batch=4))
    return ec.StagedEngine(rec, staged).publish(bundle.root)


def _batch(n):
    return np.random.default_rng(n).normal(size=(n, 1, SIZE, SIZE)).astype(np.float32)


def test_tensorrt_other_than_10_is_refused_with_the_pinned_install(monkeypatch, tmp_path):
    from edge_bus.exporting.to_tensorrt import build_engine

    _install(monkeypatch, version="11.0.1")
    bundle = _bundle(tmp_path)
    for call in (ec.current_target,
                 lambda: build_engine(tmp_path / "model.onnx", tmp_path, model="tiny", target=ec.Target("11", "g", "8.7")),
                 lambda: trt_backend.TensorRTBackend(bundle, tmp_path / "x.engine", "fp16", BackendOptions())):
        with pytest.raises(BackendError) as info:
            call()
        msg = str(info.value)
        assert "TensorRT 11.0.1" in msg and "needs TensorRT 10" in msg and "pip install 'edge-bus[tensorrt]'" in msg
    _install(monkeypatch, version="10.3.0")
    assert ec.current_target(1) == ec.Target("10.3.0", "Fake GPU 1", "8.7")


def test_missing_tensorrt_points_to_the_pinned_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(BackendError, match=r"TensorRT is not installed.*pip install 'edge-bus\[tensorrt\]'"):
        ec.current_target()


def test_device_index_picks_the_engine_of_that_gpu_and_sets_it(cudart, tmp_path):
    bundle = _bundle(tmp_path)
    _publish(bundle, gpu="Fake GPU 1")
    backend = open_backend("tensorrt", bundle, BackendOptions(device="cuda:1"))
    try:
        assert backend.device == 1 and ("cudaSetDevice", 1) in cudart.calls
        cudart.current = 0  # another thread: the call must make GPU 1 current again
        out = backend(_batch(2))["logits"]
        assert cudart.current == 1
        np.testing.assert_allclose(out, 2.0 * _batch(2))
    finally:
        backend.close()
    # On GPU 0 that engine is another GPU's: stale, not loaded.
    with pytest.raises(BackendError, match="stale fp16 engine.*built on GPU 'Fake GPU 1', this machine has 'Fake GPU 0'"):
        open_backend("tensorrt", bundle, BackendOptions(device="cuda:0"))
    with pytest.raises(BackendError, match="CUDA device 5 does not exist"):
        open_backend("tensorrt", bundle, BackendOptions(device="cuda:5"))
    with pytest.raises(BackendError, match="cuda or cuda:N"):
        open_backend("tensorrt", bundle, BackendOptions(device="gpu1"))


def test_cuda_graph_output_equals_plain_output_and_graphs_are_destroyed(cudart, tmp_path):
    bundle = _bundle(tmp_path)
    _publish(bundle)
    x = _batch(6)  # 6 > profile max 4: chunks of 4 and 2, each with its own graph
    outputs = {}
    for graph in (False, True):
        backend = open_backend("tensorrt", bundle, BackendOptions(cuda_graph=graph))
        try:
            outputs[graph] = backend(x)["logits"]
            again = backend(x)["logits"]  # the second call replays the captured graphs
            np.testing.assert_array_equal(again, outputs[graph])
            if graph:
                assert len(cudart.graphs) == 2 and len(cudart.execs) == 2
                assert sum(c[0] == "cudaGraphLaunch" for c in cudart.calls) == 4
        finally:
            backend.close()
        backend.close()  # twice is fine
        assert cudart.graphs == {} and cudart.execs == {}
    np.testing.assert_array_equal(outputs[True], outputs[False])
    np.testing.assert_allclose(outputs[False], 2.0 * x)


def test_engine_that_does_not_deserialize_says_force(cudart, tmp_path):
    bundle = _bundle(tmp_path)
    _publish(bundle, blob=b"garbage, not an engine")
    with pytest.raises(BackendError) as info:
        open_backend("tensorrt", bundle, BackendOptions())
    assert "could not deserialize" in str(info.value) and "--precision fp16 --force" in str(info.value)


def test_truncated_engine_is_stale_not_loaded(cudart, tmp_path):
    bundle = _bundle(tmp_path)
    rec = _publish(bundle)
    path = tmp_path / rec.path
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(BackendError, match="truncated or replaced.*build-engine"):
        open_backend("tensorrt", bundle, BackendOptions())


def test_unchecked_bundle_is_left_to_the_loader_rejected_one_refused(cudart, tmp_path):
    from edge_bus.errors import BundleError

    unchecked = _bundle(tmp_path, status="unchecked")
    _publish(unchecked)
    backend = open_backend("tensorrt", unchecked, BackendOptions())  # e.g. the benchmark's latency bundles
    backend.close()
    rejected = Bundle(tmp_path, _bundle(tmp_path, status="rejected").manifest)
    with pytest.raises(BundleError, match="allow-rejected"):
        open_backend("tensorrt", rejected, BackendOptions())
