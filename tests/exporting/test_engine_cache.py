"""Engine cache keys and stale detection, with fake TensorRT versions and GPUs (no tensorrt here)."""

import json

import pytest

from edge_bus import engine_cache as ec
from edge_bus.errors import BackendError, BundleError

ORIN = ec.Target("10.3.0", "Orin", "8.7")
SHA = "a" * 64


def test_key_is_stable_and_depends_on_every_field():
    base = ec.engine_key(SHA, "10.3.0", "Orin", "8.7", "fp16")
    assert base == ec.engine_key(SHA, "10.3.0", "Orin", "8.7", "FP16")
    variants = [
        ec.engine_key("b" * 64, "10.3.0", "Orin", "8.7", "fp16"),
        ec.engine_key(SHA, "10.4.0", "Orin", "8.7", "fp16"),
        ec.engine_key(SHA, "10.3.0", "NVIDIA H100", "8.7", "fp16"),
        ec.engine_key(SHA, "10.3.0", "Orin", "9.0", "fp16"),
        ec.engine_key(SHA, "10.3.0", "Orin", "8.7", "int8"),
    ]
    assert len({base, *variants}) == 6


def test_engine_filename_follows_the_contract():
    key = ec.engine_key(SHA, "10.3.0", "Orin", "8.7", "fp16")
    assert ec.engine_filename("unet vgg19", "fp16", key) == f"engines/unet_vgg19-fp16-{key[:16]}.engine"
    with pytest.raises(BundleError, match="unknown precision"):
        ec.engine_filename("m", "fp8", key)


def _built(tmp_path, target=ORIN, precision="fp16", sha=SHA, blob=b"engine"):
    """An engine published as build-engine does it: staged, then moved into place with its record."""
    rec = ec.make_record("unet", sha, target, precision, batch_range=[1, 8], input_size=64)
    staged = ec.staging_path(tmp_path, rec)
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(blob)
    return ec.StagedEngine(rec, staged).publish(tmp_path)


def test_lookup_fresh_missing_and_precision(tmp_path):
    assert ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="fp16").status == "missing"
    rec = _built(tmp_path)
    found = ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="fp16")
    assert found.status == "fresh" and found.record.path == rec.path
    assert ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="int8").status == "missing"


@pytest.mark.parametrize(
    "target,sha,words",
    [
        (ec.Target("10.4.1", "Orin", "8.7"), SHA, "TensorRT 10.3.0"),
        (ec.Target("10.3.0", "NVIDIA RTX A2000", "8.6"), SHA, "GPU 'Orin'"),
        (ORIN, "c" * 64, "another model.onnx"),
    ],
)
def test_engine_from_another_trt_gpu_or_onnx_is_stale(tmp_path, target, sha, words):
    rec = _built(tmp_path)
    found = ec.lookup(tmp_path, model="unet", onnx_sha256=sha, target=target, precision="fp16")
    assert found.status == "stale"
    msg = found.message(tmp_path)
    assert words in msg
    assert str(tmp_path / rec.path) in msg
    assert f"edge-bus export build-engine {tmp_path} --precision fp16" in msg
    assert found.expected_path != rec.path  # a rebuild goes to a new file name


def test_edited_record_is_stale_and_missing_engine_file_is_stale(tmp_path):
    rec = _built(tmp_path)
    side = ec.sidecar_path(tmp_path / rec.path)
    data = json.loads(side.read_text())
    data["key"] = "0" * 64
    side.write_text(json.dumps(data))
    assert ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="fp16").status == "stale"
    side.unlink()
    rec2 = _built(tmp_path)
    (tmp_path / rec2.path).unlink()
    found = ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="fp16")
    assert found.status == "stale" and "missing" in found.reasons[0]


def test_engine_file_must_match_the_size_and_sha256_in_its_record(tmp_path):
    rec = _built(tmp_path, blob=b"serialized engine " * 64)
    assert rec.engine_bytes == 18 * 64 and rec.engine_sha256 == ec.file_sha256(tmp_path / rec.path)
    engine = tmp_path / rec.path

    def status():
        return ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="fp16")

    assert status().status == "fresh"
    engine.write_bytes(b"serialized engine " * 10)  # truncated copy
    found = status()
    assert found.status == "stale" and "truncated" in found.reasons[0]
    assert f"edge-bus export build-engine {tmp_path} --precision fp16" in found.message(tmp_path)
    engine.write_bytes(b"SERIALIZED ENGINE " * 64)  # same size, other bytes
    assert status().status == "stale" and "SHA-256" in status().reasons[0]
    # The staging file of a build in progress is never taken for an engine.
    staged = ec.staging_path(tmp_path, rec)
    assert staged.parent == engine.parent and staged.name.startswith(".") and staged.suffix == ".staging"


def test_record_of_an_older_edge_bus_without_checksum_still_loads(tmp_path):
    rec = ec.make_record("unet", SHA, ORIN, "fp16")
    (tmp_path / "engines").mkdir()
    (tmp_path / rec.path).write_bytes(b"engine")
    ec.write_record(rec, tmp_path)
    assert ec.read_record(ec.sidecar_path(tmp_path / rec.path)).engine_sha256 is None
    assert ec.lookup(tmp_path, model="unet", onnx_sha256=SHA, target=ORIN, precision="fp16").status == "fresh"


def test_bad_engine_record_names_the_file(tmp_path):
    (tmp_path / "engines").mkdir()
    bad = tmp_path / "engines" / "unet-fp16-0000.json"
    bad.write_text("{not json")
    with pytest.raises(BundleError, match="unet-fp16-0000.json.*build-engine"):
        ec.bundle_records(tmp_path)
    bad.write_text(json.dumps({"path": "engines/x.engine"}))
    with pytest.raises(BundleError, match="lacks"):
        ec.bundle_records(tmp_path)


def test_tensorrt_backend_refuses_stale_engine(tmp_path, monkeypatch):
    """open_tensorrt finds the engine via engine_cache and refuses a stale one with the fix."""
    from edge_bus.bundle import Bundle, Manifest, TensorSpec
    from edge_bus.data.preprocess import PreprocessSpec
    from edge_bus.runtime.backends import BackendOptions, tensorrt as trt_backend

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx bytes")
    _built(tmp_path, target=ec.Target("10.0.1", "Orin", "8.7"), sha=ec.file_sha256(onnx))
    manifest = Manifest(task="segmentation", model="unet", classes=["lesion"], input=TensorSpec("input", ["batch", 1, 64, 64]),
                        output=TensorSpec("logits", ["batch", 1, 64, 64]), preprocessing=PreprocessSpec(size=64),
                        artifacts={"onnx": "model.onnx"}, status="accepted")
    monkeypatch.setattr(trt_backend, "current_target", lambda device=0: ORIN)
    with pytest.raises(BackendError) as info:
        trt_backend.open_tensorrt(Bundle(tmp_path, manifest), BackendOptions(precision="fp16"))
    msg = str(info.value)
    assert "TensorRT 10.0.1" in msg and "10.3.0" in msg and "edge-bus export build-engine" in msg


def test_without_tensorrt_backend_raises_backend_error(tmp_path):
    pytest.importorskip("pytest")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        ec.current_target()


def _trt_bundle(tmp_path, artifacts=None):
    from edge_bus.bundle import Bundle, Manifest, TensorSpec
    from edge_bus.data.preprocess import PreprocessSpec

    (tmp_path / "model.onnx").write_bytes(b"fp32 onnx")
    (tmp_path / "model.int8.onnx").write_bytes(b"asymmetric qdq onnx, for ONNX Runtime")
    (tmp_path / "model.int8.tensorrt.onnx").write_bytes(b"symmetric qdq onnx, for TensorRT")
    manifest = Manifest(task="segmentation", model="unet", classes=["lesion"], input=TensorSpec("input", ["batch", 1, 64, 64]),
                        output=TensorSpec("logits", ["batch", 1, 64, 64]), preprocessing=PreprocessSpec(size=64),
                        artifacts=artifacts or {"onnx": "model.onnx", "onnx_int8": "model.int8.onnx",
                                                   "onnx_int8_tensorrt": "model.int8.tensorrt.onnx"}, status="accepted")
    return Bundle(tmp_path, manifest)


def test_auto_precision_takes_the_best_fresh_engine(tmp_path, monkeypatch):
    from edge_bus.fileio import sha256_file
    from edge_bus.runtime.backends import tensorrt as trt_backend

    bundle = _trt_bundle(tmp_path)
    fp32_sha, int8_sha = sha256_file(tmp_path / "model.onnx"), sha256_file(tmp_path / "model.int8.tensorrt.onnx")
    monkeypatch.setattr(trt_backend, "current_target", lambda device=0: ORIN)
    from_ort_qdq = _built(tmp_path, precision="int8", sha=sha256_file(tmp_path / "model.int8.onnx"))
    with pytest.raises(BackendError):  # an engine of the ONNX Runtime encoding is not the bundle's INT8 engine
        trt_backend.find_engine(bundle, "int8")
    (tmp_path / from_ort_qdq.path).unlink()
    int8 = _built(tmp_path, precision="int8", sha=int8_sha)  # INT8 is built from TensorRT's QDQ model
    assert trt_backend.find_engine(bundle, "auto") == (tmp_path / int8.path, "int8")
    fp32 = _built(tmp_path, precision="fp32", sha=fp32_sha)
    _built(tmp_path, precision="fp16", target=ec.Target("10.3.0", "NVIDIA H100", "9.0"), sha=fp32_sha)  # stale here
    assert trt_backend.find_engine(bundle, "auto") == (tmp_path / fp32.path, "fp32")  # fp16 stale: next best
    fp16 = _built(tmp_path, precision="fp16", sha=fp32_sha)
    assert trt_backend.find_engine(bundle, "auto") == (tmp_path / fp16.path, "fp16")
    # An explicit precision means that precision.
    assert trt_backend.find_engine(bundle, "int8") == (tmp_path / int8.path, "int8")
    # A broken engine record is a BackendError too (auto falls through instead of crashing).
    ec.sidecar_path(tmp_path / fp16.path).write_text("{broken")
    with pytest.raises(BackendError, match="not valid JSON"):
        trt_backend.find_engine(bundle, "auto")


def test_missing_engine_or_artifact_is_a_backend_error_so_auto_falls_through(tmp_path, monkeypatch):
    from edge_bus.runtime.backends import BackendOptions, open_backend
    from edge_bus.runtime.backends import tensorrt as trt_backend

    bundle = _trt_bundle(tmp_path, artifacts={"onnx": "model.onnx"})
    monkeypatch.setattr(trt_backend, "current_target", lambda device=0: ORIN)
    with pytest.raises(BackendError, match="no fp16 TensorRT engine.*build-engine"):
        trt_backend.open_tensorrt(bundle, BackendOptions())  # precision "auto", nothing built
    with pytest.raises(BackendError, match="no int8 TensorRT engine"):
        trt_backend.open_tensorrt(bundle, BackendOptions(precision="int8"))  # explicit: that precision only
    calls = []
    monkeypatch.setattr(trt_backend, "open_tensorrt", lambda b, o: calls.append("trt") or trt_backend.find_engine(b, "auto"))
    with pytest.raises(BackendError) as info:
        open_backend("auto", bundle, BackendOptions())
    assert calls == ["trt"] and "tensorrt:" in str(info.value)  # TensorRT was tried, then the others


def test_timing_cache_is_per_tensorrt_and_gpu_and_calibration_cache_per_images(tmp_path):
    import numpy as np

    from edge_bus.exporting.to_tensorrt import calibration_cache_path

    paths = {ec.timing_cache_path(tmp_path, t) for t in (ORIN, ec.Target("10.3.0", "NVIDIA H100", "9.0"),
                                                          ec.Target("10.4.0", "Orin", "8.7"))}
    assert len(paths) == 3 and all(p.parent == tmp_path / "engines" for p in paths)
    assert ec.timing_cache_path(tmp_path, ORIN) == ec.timing_cache_path(tmp_path, ec.Target("10.3.0", "Orin", "8.7"))
    engine = tmp_path / "engines" / "unet-int8-abc.engine"
    a = np.zeros((4, 1, 8, 8), np.float32)
    assert calibration_cache_path(engine, a) == calibration_cache_path(engine, a.copy())
    assert calibration_cache_path(engine, a) != calibration_cache_path(engine, a + 1)
    assert ec.file_sha256 is __import__("edge_bus.fileio", fromlist=["sha256_file"]).sha256_file


def test_loading_an_engine_checks_its_size_and_build_engine_its_sha256(tmp_path, monkeypatch):
    """The runtime does not hash the engine at every start (size only); lookup()'s default does."""
    from edge_bus.fileio import sha256_file
    from edge_bus.runtime.backends import tensorrt as trt_backend

    bundle = _trt_bundle(tmp_path, artifacts={"onnx": "model.onnx"})
    fp16 = _built(tmp_path, precision="fp16", sha=sha256_file(tmp_path / "model.onnx"), blob=b"serialized engine " * 64)
    engine = tmp_path / fp16.path
    monkeypatch.setattr(trt_backend, "current_target", lambda device=0: ORIN)
    hashed = []
    monkeypatch.setattr(ec, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    assert trt_backend.find_engine(bundle, "auto") == (engine, "fp16")
    assert trt_backend.find_engine(bundle, "fp16") == (engine, "fp16")
    assert hashed == []
    engine.write_bytes(b"serialized engine " * 10)  # truncated: its size tells
    with pytest.raises(BackendError, match="truncated"):
        trt_backend.find_engine(bundle, "fp16")
    engine.write_bytes(b"SERIALIZED ENGINE " * 64)  # same size, other bytes: build-engine and info find it
    found = ec.lookup(tmp_path, model="unet", onnx_sha256=fp16.onnx_sha256, target=ORIN, precision="fp16")
    assert found.status == "stale" and "SHA-256" in found.reasons[0] and hashed == [engine]
