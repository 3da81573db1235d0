"""`edge-bus info` on this machine (x86, CPU only): facts, checks and exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.sysinfo import machine_info

runner = CliRunner()
FACTS = machine_info()
NO_GPU = not FACTS["gpu"]["available"]
no_gpu_only = pytest.mark.skipif(not NO_GPU, reason="this test describes a machine without a GPU")


def invoke(*args):
    return runner.invoke(app, ["info", *args])


@no_gpu_only
def test_reports_this_machine():
    result = invoke()
    assert result.exit_code == 0, result.output
    out = result.output
    assert "no GPU" in out and "CPUExecutionProvider" in out
    import cv2

    assert "OpenCV" in out and cv2.__version__ in out


def test_json_output_is_machine_readable():
    result = invoke("--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert "CPUExecutionProvider" in doc["machine"]["onnxruntime"]["providers"]
    assert doc["machine"]["opencv"]["version"] and doc["checks"] == [] and doc["ok"] is True
    if NO_GPU:
        assert doc["machine"]["gpu"]["available"] is False


@pytest.mark.skipif(FACTS["tensorrt"]["version"] and not NO_GPU, reason="TensorRT works here")
def test_tensorrt_backend_fails_with_advice():
    result = invoke("--backend", "tensorrt", "--json")
    assert result.exit_code == 1
    check = json.loads(result.output)["checks"][0]
    assert check["status"] == "fail" and "--backend onnxruntime" in check["advice"]


def test_missing_v4l2_device_fails_and_lists_devices():
    result = invoke("--source", "v4l2:///dev/video97", "--json")
    assert result.exit_code == 1
    check = json.loads(result.output)["checks"][0]
    assert "no such device" in check["detail"] and "connected devices" in check["advice"]


def test_onnxruntime_and_a_readable_video_pass(tmp_path):
    from tests.test_sysinfo import write_clip

    clip = write_clip(tmp_path / "clip.mp4")
    result = invoke("--backend", "onnxruntime", "--source", str(clip))
    assert result.exit_code == 0, result.output
    assert "all checks passed" in result.output


def test_a_file_that_exists_but_is_no_video_fails(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0")  # `edge-bus run` cannot open it: neither can `info` say it works
    result = invoke("--source", str(clip), "--json")
    assert result.exit_code == 1
    check = json.loads(result.output)["checks"][0]
    assert check["status"] == "fail" and "cannot open this video" in check["detail"]


def test_config_file_is_checked_including_bundles(tmp_path):
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.zeros((20, 30), np.uint8))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"source: {frames}\nclassifier: {tmp_path / 'no-bundle'}\nbackend: onnxruntime\n")
    result = invoke("--config", str(cfg), "--json")
    assert result.exit_code == 1
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["backend"]["status"] == "ok" and checks["source"]["status"] == "ok"
    assert checks["classifier"]["status"] == "fail" and "no such bundle" in checks["classifier"]["detail"]


def test_bad_config_is_a_user_error(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("source: x\nclassifier: y\nbatch: 0\n")
    result = invoke("--config", str(cfg))
    assert result.exit_code == 2 and "'batch'" in result.output


@pytest.mark.skipif(bool(FACTS["tensorrt"]["version"]), reason="TensorRT is installed here")
def test_engines_cannot_be_checked_without_tensorrt(tmp_path):
    from tests.test_sysinfo import _target, engine_bundle

    bundle = engine_bundle(tmp_path / "cls", {"fp16": _target()})  # an engine record from some Orin
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"source: {tmp_path}\nclassifier: {bundle}\nbackend: tensorrt\n")
    result = invoke("--config", str(cfg), "--json")
    assert result.exit_code == 1  # the tensorrt backend itself fails here
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["classifier"]["status"] == "warn"  # the record is not trusted, nor called stale
    assert "cannot be checked here" in checks["classifier"]["detail"] and "TensorRT" in checks["classifier"]["detail"]
    assert f"edge-bus export build-engine {bundle}" in checks["classifier"]["advice"]


def test_facts_show_cuda_python():
    result = invoke()
    assert "cuda-python" in result.output
    doc = json.loads(invoke("--json").output)
    assert "module" in doc["machine"]["cuda_python"]
