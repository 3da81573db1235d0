"""Machine facts: every probe fails soft, Jetson/nvidia-smi parsing on canned inputs, and the checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_bus import sysinfo
from edge_bus.sysinfo import (
    capture_devices,
    check_backend,
    check_source,
    cpu_info,
    gpu_info,
    jetson_info,
    machine_info,
    memory_info,
    parse_opencv_build_info,
    power_info,
)

ORIN_RELEASE = "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024\n"


def fake_jetson(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(ORIN_RELEASE)
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    (root / "proc/cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 62.50\nCPU part\t: 0xd42\n")
    (root / "proc/meminfo").write_text("MemTotal:       32023320 kB\nMemFree: 1 kB\n")
    return root


def runner(outputs: dict[str, tuple[int, str] | None]):
    calls = []

    def run(cmd):
        calls.append(cmd)
        return outputs.get(cmd[0])

    run.calls = calls
    return run


def test_jetson_facts_from_files(tmp_path):
    root = fake_jetson(tmp_path)
    jetson = jetson_info(root)
    assert jetson == {"is_jetson": True, "model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.3.0"}
    gpu = gpu_info(runner({}), jetson)  # no nvidia-smi on the Jetson: integrated GPU from the model table
    assert gpu["available"] and gpu["compute_capability"] == "8.7" and gpu["source"] == "jetson"
    assert memory_info(root)["total_gib"] == pytest.approx(30.5, abs=0.1)
    assert cpu_info(root)["model"]  # falls back to the architecture when cpuinfo has no model name


def test_not_a_jetson_says_why(tmp_path):
    jetson = jetson_info(tmp_path)
    assert jetson["is_jetson"] is False and "nv_tegra_release" in jetson["reason"]
    assert power_info(jetson, runner({}))["reason"] == "not a Jetson"
    gpu = gpu_info(runner({"nvidia-smi": None}), jetson)
    assert gpu["available"] is False and gpu["reason"]
    assert memory_info(tmp_path)["total_gib"] is None and "meminfo" in memory_info(tmp_path)["reason"]


def test_nvpmodel_and_clocks_parsing(tmp_path):
    jetson = jetson_info(fake_jetson(tmp_path))
    run = runner({
        "nvpmodel": (0, "NV Power Mode: MAXN\n0"),
        "jetson_clocks": (0, "SOC family:tegra234  Machine:Jetson AGX Orin\ncpu0: Online=1 Governor=schedutil\n"
                             "GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=1300500000\nEMC MinFreq=204000000"),
    })  # fmt: skip
    power = power_info(jetson, run)
    assert power["nvpmodel"] == "MAXN" and power["nvpmodel_id"] == 0
    assert power["clocks"][0].startswith("GPU MinFreq") and power["clocks"][1].startswith("EMC")
    failed = power_info(jetson, runner({"nvpmodel": None, "jetson_clocks": (1, "must be run as root")}))
    assert failed["nvpmodel"] is None and "not found" in failed["reason"] and "root" in failed["clocks_reason"]


def test_nvidia_smi_parsing_and_old_driver_retry():
    out = "NVIDIA H100 80GB HBM3, 550.54.15, 81559, 9.0\nNVIDIA H100 80GB HBM3, 550.54.15, 81559, 9.0"
    gpu = gpu_info(runner({"nvidia-smi": (0, out)}), {"is_jetson": False})
    assert (gpu["name"], gpu["driver"], gpu["memory_mib"], gpu["compute_capability"], gpu["count"]) == (
        "NVIDIA H100 80GB HBM3", "550.54.15", 81559, "9.0", 2)  # fmt: skip

    answers = iter([(2, "Field \"compute_cap\" is not a valid field to query."), (0, "Tesla T4, 470.1, 15109")])
    old = gpu_info(lambda cmd: next(answers), {"is_jetson": False})
    assert old["name"] == "Tesla T4" and old["compute_capability"] is None


def test_opencv_build_info_parsing():
    text = textwrap.dedent("""
      Video I/O:
        DC1394:                      NO
        FFMPEG:                      YES
          avcodec:                   YES (59.37.100)
        GStreamer:                   YES (1.20.3)
        v4l/v4l2:                    YES (linux/videodev2.h)
    """)
    assert parse_opencv_build_info(text) == {"gstreamer": True, "v4l2": True, "ffmpeg": True}
    assert parse_opencv_build_info(text.replace("YES (1.20.3)", "NO")) == {"gstreamer": False, "v4l2": True, "ffmpeg": True}
    assert parse_opencv_build_info("") == {"gstreamer": False, "v4l2": False, "ffmpeg": False}


def test_capture_devices_with_names(tmp_path):
    (tmp_path / "dev").mkdir()
    for n, name, index in ((0, "USB3.0 Capture: USB3.0 Capture", "0"), (1, "USB3.0 Capture: USB3.0 Capture", "1"), (10, "x", "0")):
        (tmp_path / f"dev/video{n}").write_text("")
        sysdir = tmp_path / f"sys/class/video4linux/video{n}"
        sysdir.mkdir(parents=True)
        (sysdir / "name").write_text(name + "\n")
        (sysdir / "index").write_text(index + "\n")
    (tmp_path / "dev/edge-bus-capture").symlink_to("video0")
    devices = capture_devices(tmp_path)
    assert [d["path"] for d in devices] == ["/dev/video0", "/dev/video1", "/dev/video10", "/dev/edge-bus-capture"]
    assert devices[0]["name"] == "USB3.0 Capture: USB3.0 Capture" and devices[1]["index"] == 1
    assert devices[3]["target"] == "video0"
    assert capture_devices(tmp_path / "empty") == []


def facts(**over):
    info = {
        "gpu": {"available": False, "reason": "nvidia-smi not found"},
        "jetson": {"is_jetson": False},
        "tensorrt": {"version": None, "reason": "not installed"},
        "onnxruntime": {"version": "1.20.0", "providers": ["CPUExecutionProvider"]},
        "opencv": {"version": "4.10.0", "gstreamer": False, "v4l2": True, "ffmpeg": True},
        "capture_devices": [],
    }
    info.update(over)
    return info


def test_backend_checks():
    fail = check_backend(facts(), "tensorrt")
    assert fail.failed and "--backend onnxruntime" in fail.advice and "TensorRT" in fail.detail
    ok = check_backend(facts(gpu={"available": True, "name": "Orin"}, tensorrt={"version": "10.3.0"},
                             cuda_python={"module": "cuda.bindings", "version": "12.6.0"}), "tensorrt")  # fmt: skip
    assert ok.status == "ok" and "10.3.0" in ok.detail
    assert "auto -> onnxruntime" in check_backend(facts(), "auto").detail
    cuda = check_backend(facts(), "onnxruntime", device="cuda")
    assert cuda.failed and "onnxruntime-gpu" in cuda.advice
    assert check_backend(facts(), "openvino").failed


def fake_probe(capture_format=None, error=None):
    """A probe that opens nothing: records its calls, returns `capture_format` or raises `error`."""
    calls = []

    def probe(uri, options, read_frame):
        calls.append((uri, options, read_frame))
        if error is not None:
            raise error
        return {"capture_format": capture_format, "live": True}

    probe.calls = calls
    return probe


def write_clip(path: Path, frames: int = 3) -> Path:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), 90, np.uint8))
    writer.release()
    return path


def test_source_checks(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/video2").write_text("")
    info = facts(capture_devices=[{"path": "/dev/video2", "name": "Cam Link 4K"}])
    missing = check_source(info, "v4l2:///dev/video0", tmp_path)
    assert missing.failed and "no such device" in missing.detail and "/dev/video2 (Cam Link 4K)" in missing.advice
    gst = check_source(info, "v4l2src device=/dev/video0 ! videoconvert ! appsink", tmp_path)
    assert gst.failed and "JetPack" in gst.advice
    assert check_source(facts(opencv={"version": "4.8", "gstreamer": True}), "videotestsrc ! appsink").status == "ok"
    file_gst = check_source(facts(opencv={"version": "4.8", "gstreamer": True}), "filesrc location=a.mp4 ! decodebin ! appsink")
    assert file_gst.status == "ok" and "every frame" in file_gst.detail
    assert check_source(info, str(tmp_path / "nope.mp4")).failed
    assert check_source(info, "csi://0").failed  # not a Jetson
    assert check_source(info, "rtsp://10.0.0.2/stream").status == "warn"
    assert check_source(info, "synthetic://").status == "ok"
    assert check_source(info, "ftp://x").failed


def test_file_sources_are_opened_and_one_frame_read(tmp_path):
    import cv2
    import numpy as np

    info = facts()
    clip = write_clip(tmp_path / "clip.mp4")
    ok = check_source(info, f"file://{clip}")
    assert ok.status == "ok" and "64x48" in ok.detail
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0")  # exists, but is no video: `edge-bus run` could not open it
    check = check_source(info, str(broken))
    assert check.failed and "cannot open this video" in check.detail
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), np.zeros((20, 30), np.uint8))
    assert check_source(info, str(tmp_path / "imgs" / "*.png")).status == "ok"
    assert check_source(info, str(tmp_path / "imgs")).status == "ok"
    videos = check_source(info, str(tmp_path / "*.mp4"))  # globs are read as images, as the runtime does
    assert videos.failed and "no image files" in videos.detail
    (tmp_path / "imgs" / "0.png").write_bytes(b"not a png")  # sorted first: the first frame is bad
    assert check_source(info, str(tmp_path / "imgs")).status == "warn"


def test_video_files_and_streams_need_ffmpeg_even_with_gstreamer(tmp_path):
    gst_only = facts(opencv={"version": "4.8", "gstreamer": True, "v4l2": True, "ffmpeg": False})
    clip = write_clip(tmp_path / "clip.mp4")
    for uri in (str(clip), "rtsp://10.0.0.2/stream", "udp://127.0.0.1:5000"):
        check = check_source(gst_only, uri)
        assert check.failed and "FFMPEG" in check.detail and "filesrc" in check.advice, uri


def test_device_is_opened_and_its_format_read_back(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/video2").write_text("")
    info = facts(capture_devices=[{"path": "/dev/video2", "name": "Cam Link 4K"}])
    asked = {"pixel_format": "MJPG", "width": 1920, "height": 1080, "fps": 30.0}
    same = fake_probe({"asked": asked, "got": dict(asked), "mismatch": []})
    ok = check_source(info, "v4l2:///dev/video2", tmp_path, options={"pixel_format": "MJPG"}, probe=same)
    assert ok.status == "ok" and "gives MJPG 1920x1080" in ok.detail
    assert same.calls == [(f"v4l2://{tmp_path}/dev/video2", {"pixel_format": "MJPG"}, False)]  # format only
    other = {"pixel_format": "YUYV", "width": 1280, "height": 720, "fps": 10.0}
    differs = fake_probe({"asked": asked, "got": other, "mismatch": ["pixel_format", "width", "height", "fps"]})
    warn = check_source(info, "v4l2:///dev/video2", tmp_path, probe=differs)
    assert warn.status == "warn" and "YUYV 1280x720" in warn.detail and "asked pixel_format MJPG" in warn.detail
    assert "--list-formats-ext" in warn.advice
    from edge_bus.runtime.sources import describe_capture

    # formatted as the run's summary and the journal warning format it (sources.describe_capture)
    assert ok.detail.endswith(describe_capture({"asked": asked, "got": dict(asked), "mismatch": []}))
    assert warn.detail == "/dev/video2: " + describe_capture(
        {"asked": asked, "got": other, "mismatch": ["pixel_format", "width", "height", "fps"]})
    assert "gives YUYV 1280x720 @10 fps" in warn.detail
    from edge_bus.errors import SourceError

    busy = check_source(info, "v4l2:///dev/video2", tmp_path, probe=fake_probe(error=SourceError("cannot open")))
    assert busy.failed and "systemctl stop edge-bus" in busy.advice


def test_permission_problems_name_the_user_and_the_group(tmp_path, monkeypatch):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/video2").write_text("")
    clip = write_clip(tmp_path / "clip.mp4")
    monkeypatch.setattr(sysinfo, "_can_access", lambda path, mode: False)  # as a user outside group video
    probe = fake_probe()
    device = check_source(facts(), "v4l2:///dev/video2", tmp_path, probe=probe)
    user = sysinfo._user()
    assert device.failed and f"user {user} cannot open it" in device.detail and "usermod -aG" in device.advice
    assert probe.calls == []  # not even tried
    check = check_source(facts(), str(clip), probe=probe)
    assert check.failed and f"user {user} cannot read it" in check.detail


def test_diagnose_opens_the_device_with_the_configured_format(tmp_path):
    from edge_bus.runtime.config import RunConfig

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/video0").write_text("")
    config = RunConfig(source="v4l2:///dev/video0", classifier=None, segmenter="s", width=1920, height=1080,
                       fps=59.94, pixel_format="MJPG")  # fmt: skip
    probe = fake_probe()
    sysinfo.diagnose(facts(), config, root=tmp_path, probe=probe)
    assert probe.calls[0][1] == {"width": 1920, "height": 1080, "fps": 59.94, "pixel_format": "MJPG"}


def test_probes_fail_soft_when_commands_break(tmp_path):
    def broken(cmd):
        return (127, "")

    info = machine_info(root=tmp_path, run=broken)
    assert info["gpu"]["available"] is False and info["capture_devices"] == []
    assert info["cpu"]["cores"] >= 1


def test_run_command_missing_program_and_timeout():
    assert sysinfo.run_command(["definitely-not-a-program-edge-bus"]) is None
    assert sysinfo.run_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2) is None
    assert sysinfo.run_command([sys.executable, "-c", "print('hi')"]) == (0, "hi")


def test_machine_info_does_not_import_torch():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch blocked")
        sys.meta_path.insert(0, Block())
        from edge_bus.sysinfo import machine_info
        info = machine_info()
        assert "torch" not in sys.modules and info["torch"]["version"] is None
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# -- cuda-python and TensorRT engines ---------------------------------------------------------

TRT_HERE = {"gpu": {"available": True, "name": "Orin"}, "tensorrt": {"version": "10.3.0"}}
CUDA_PY = {"module": "cuda.bindings", "version": "12.6.0"}
NO_CUDA_PY = {"module": None, "version": None, "reason": "not installed"}


def test_tensorrt_backend_needs_cuda_python():
    ok = check_backend(facts(**TRT_HERE, cuda_python=CUDA_PY), "tensorrt")
    assert ok.status == "ok"
    fail = check_backend(facts(**TRT_HERE, cuda_python=NO_CUDA_PY), "tensorrt")
    assert fail.failed and "cuda-python" in fail.detail and "cuda-python>=12,<13" in fail.advice
    auto = check_backend(facts(**TRT_HERE, cuda_python=NO_CUDA_PY), "auto")
    assert auto.status == "warn" and "auto -> onnxruntime" in auto.detail and "cuda-python" in auto.advice
    assert check_backend(facts(**TRT_HERE, cuda_python=CUDA_PY), "auto").detail.startswith("auto -> tensorrt")


def test_cuda_python_probe_never_raises(monkeypatch):
    import importlib.util

    def no_cuda(name, *a, **k):
        raise ModuleNotFoundError("No module named 'cuda'")

    monkeypatch.setattr(importlib.util, "find_spec", no_cuda)
    assert sysinfo.cuda_python_info() == {"module": None, "version": None,
                                          "reason": "not installed (neither cuda.bindings nor cuda.cudart)"}  # fmt: skip


def test_machine_info_reports_cuda_python(tmp_path):
    info = machine_info(root=tmp_path, run=lambda cmd: None)
    assert set(info["cuda_python"]) >= {"module", "version"}


def _target(**over):
    from edge_bus.engine_cache import Target

    return Target(**{"trt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7", **over})


def engine_bundle(root: Path, engines: dict[str, object] | None = None) -> Path:
    """A bundle with a (fake) model.onnx and engines {precision: Target built for}, files present."""
    from edge_bus.bundle import Manifest, TensorSpec, write_manifest
    from edge_bus.data.preprocess import PreprocessSpec
    from edge_bus.engine_cache import file_sha256, make_record, write_record

    root.mkdir(parents=True)
    (root / "model.onnx").write_bytes(b"onnx bytes")
    manifest = Manifest(task="classification", model="tiny", classes=["benign", "malignant", "normal"],
                        input=TensorSpec("input", ["batch", 1, 64, 64]), output=TensorSpec("logits", ["batch", 3]),
                        preprocessing=PreprocessSpec(size=64), artifacts={"onnx": "model.onnx"}, status="accepted")  # fmt: skip
    write_manifest(manifest, root / "manifest.json")
    sha = file_sha256(root / "model.onnx")
    for precision, target in (engines or {}).items():
        record = make_record("tiny", sha, target, precision)
        write_record(record, root)
        (root / record.path).write_bytes(b"engine")
    return root


def test_bundle_engine_fresh_stale_and_missing(tmp_path):
    here = _target()
    fresh = engine_bundle(tmp_path / "fresh", {"fp16": here})
    ok = sysinfo.check_bundle("classifier", str(fresh), "tensorrt", precision="auto", target=here)
    assert ok.status == "ok" and "fresh fp16" in ok.detail
    assert sysinfo.check_bundle("classifier", str(fresh), "tensorrt", precision="fp16", target=here).status == "ok"
    # an fp32 run needs an fp32 engine: the fp16 one does not count
    fp32 = sysinfo.check_bundle("classifier", str(fresh), "tensorrt", precision="fp32", target=here)
    assert fp32.failed and f"edge-bus export build-engine {fresh} --precision fp32" in fp32.advice

    # built on another GPU / TensorRT: a record exists but must not be trusted
    stale = engine_bundle(tmp_path / "stale", {"fp16": _target(gpu_name="NVIDIA GeForce RTX 3060", compute_capability="8.6")})
    bad = sysinfo.check_bundle("classifier", str(stale), "tensorrt", precision="auto", target=here)
    assert bad.failed and "stale fp16" in bad.detail and "RTX 3060" in bad.detail
    assert bad.advice.endswith(f"edge-bus export build-engine {stale}")
    upgraded = sysinfo.check_bundle("classifier", str(fresh), "tensorrt", target=_target(trt_version="10.7.0"))
    assert upgraded.failed and "TensorRT 10.3.0" in upgraded.detail

    # an engine record whose file was deleted is not fresh either
    (next((fresh / "engines").glob("*.engine"))).unlink()
    gone = sysinfo.check_bundle("classifier", str(fresh), "tensorrt", target=here)
    assert gone.failed and "missing" in gone.detail

    none = engine_bundle(tmp_path / "none")
    missing = sysinfo.check_bundle("classifier", str(none), "tensorrt", target=here)
    assert missing.failed and "no TensorRT engine" in missing.detail and "build-engine" in missing.advice


def test_bundle_engine_auto_precision_takes_any_fresh_engine(tmp_path):
    here = _target()
    int8_only = engine_bundle(tmp_path / "int8", {"int8": here, "fp16": _target(trt_version="8.6.2")})
    ok = sysinfo.check_bundle("segmenter", str(int8_only), "tensorrt", precision="auto", target=here)
    assert ok.status == "ok" and "fresh int8" in ok.detail


def test_bundle_engine_with_backend_auto_warns_and_falls_back(tmp_path):
    here = _target()
    stale = engine_bundle(tmp_path / "stale", {"fp16": _target(trt_version="8.6.2")})
    usable = facts(**TRT_HERE, cuda_python=CUDA_PY)
    warn = sysinfo.check_bundle("classifier", str(stale), "auto", info=usable, target=here)
    assert warn.status == "warn" and "fall back to ONNX Runtime" in warn.detail and "build-engine" in warn.advice
    # no TensorRT here: backend auto means ONNX Runtime, engines are not this machine's business
    assert sysinfo.check_bundle("classifier", str(stale), "auto", info=facts(), target=here).status == "ok"


def test_bundle_engines_cannot_be_checked_without_tensorrt(tmp_path):
    bundle = engine_bundle(tmp_path / "b", {"fp16": _target()})
    why = "TensorRT is not installed here"
    check = sysinfo.check_bundle("classifier", str(bundle), "tensorrt", target=why)
    assert check.status == "warn" and "cannot be checked here" in check.detail and why in check.detail
    assert f"edge-bus export build-engine {bundle}" in check.advice


def test_diagnose_uses_the_configured_precision_and_probes_once(tmp_path, monkeypatch):
    from edge_bus.runtime.config import RunConfig

    here = _target()
    cls = engine_bundle(tmp_path / "cls", {"fp16": here})
    seg = engine_bundle(tmp_path / "seg", {"fp16": here})
    probes = []
    monkeypatch.setattr(sysinfo, "probe_engine_target", lambda: probes.append(1) or here)
    info = facts(**TRT_HERE, cuda_python=CUDA_PY)
    config = RunConfig(source="synthetic://", classifier=str(cls), segmenter=str(seg), backend="tensorrt")
    checks = {c.name: c for c in sysinfo.diagnose(info, config)}
    assert checks["classifier"].status == "ok" and checks["segmenter"].status == "ok" and probes == [1]
    int8 = {c.name: c for c in sysinfo.diagnose(info, config.merged(precision="int8"), target=here)}
    assert int8["classifier"].failed and "--precision int8" in int8["classifier"].advice


def test_int8_engine_is_checked_against_the_tensorrt_int8_onnx_model(tmp_path):
    """An int8 engine is built from model.int8.tensorrt.onnx when the bundle has one (engine_cache.source_kind)."""
    import json

    from edge_bus.engine_cache import file_sha256, make_record, write_record

    here = _target()
    bundle = engine_bundle(tmp_path / "b")
    (bundle / "model.int8.tensorrt.onnx").write_bytes(b"qdq onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"]["onnx_int8_tensorrt"] = "model.int8.tensorrt.onnx"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    record = make_record("tiny", file_sha256(bundle / "model.int8.tensorrt.onnx"), here, "int8")
    write_record(record, bundle)
    (bundle / record.path).write_bytes(b"engine")
    assert sysinfo.check_bundle("classifier", str(bundle), "tensorrt", precision="int8", target=here).status == "ok"
    (bundle / "model.int8.tensorrt.onnx").write_bytes(b"re-quantized")
    stale = sysinfo.check_bundle("classifier", str(bundle), "tensorrt", precision="int8", target=here)
    assert stale.failed and "another model.onnx" in stale.detail


def test_missing_files_are_reported_by_the_runtime_opener(tmp_path):
    """`info` opens the source with open_source, as `edge-bus run` does: a missing file or a glob that
    matches nothing gets the runtime's own message, not a second wording of it."""
    info = facts()
    missing = check_source(info, str(tmp_path / "nope.png"))
    assert missing.failed and "no such file or folder (source URI" in missing.detail
    nothing = check_source(info, str(tmp_path / "*.png"))
    assert nothing.failed and "the glob matches no image files" in nothing.detail
