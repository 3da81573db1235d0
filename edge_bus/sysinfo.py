"""Machine facts (docs/CONTRACTS.md "Machine facts"), used by `edge-bus info` and `edge-bus benchmark`.

`machine_info()` returns a JSON-ready dict. Every probe fails soft: a missing tool, file or library
gives None / False plus a `reason`, never an exception, and no probe takes long (external commands
run with a short timeout). torch is never imported here: it is reported only when something else
has already imported it.

Probes read files below `root` and run commands through `run`, so tests can hand them a fake
/proc, /sys, /dev and /etc and canned command output.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

COMMAND_TIMEOUT_S = 3.0

# name as printed in /proc/device-tree/model -> CUDA compute capability of its integrated GPU
JETSON_COMPUTE_CAPABILITY = (
    ("Orin", "8.7"),
    ("Xavier", "7.2"),
    ("TX2", "6.2"),
    ("Nano", "5.3"),  # the original Jetson Nano (Maxwell); "Orin Nano" matches "Orin" first
    ("TX1", "5.3"),
)

Runner = Callable[[list[str]], "tuple[int, str] | None"]


def run_command(cmd: list[str], timeout: float = COMMAND_TIMEOUT_S) -> tuple[int, str] | None:
    """(exit code, stdout+stderr) or None when the program is missing or hangs."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.returncode, (done.stdout + done.stderr).strip()


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


# -- CPU and memory ---------------------------------------------------------------------------


def cpu_info(root: Path = Path("/")) -> dict[str, Any]:
    text = _read(root, "/proc/cpuinfo") or ""
    model = None
    for key in ("model name", "Model", "Hardware", "Processor"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            model = match.group(1).strip()
            break
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {"model": model or platform.processor() or platform.machine(), "arch": platform.machine(),
            "cores": cores, "usable_cores": usable}  # fmt: skip


def memory_info(root: Path = Path("/")) -> dict[str, Any]:
    text = _read(root, "/proc/meminfo")
    match = re.search(r"^MemTotal:\s+(\d+) kB", text or "", re.MULTILINE)
    if not match:
        return {"total_gib": None, "reason": "/proc/meminfo not readable"}
    return {"total_gib": round(int(match.group(1)) / 1024**2, 1)}


# -- GPU and Jetson ---------------------------------------------------------------------------


def jetson_info(root: Path = Path("/")) -> dict[str, Any]:
    """Jetson model (/proc/device-tree/model) and L4T release (/etc/nv_tegra_release)."""
    model = _read(root, "/proc/device-tree/model")
    model = model.replace("\x00", "").strip() if model else None
    release = _read(root, "/etc/nv_tegra_release")
    l4t = None
    if release:  # "# R36 (release), REVISION: 3.0, GCID: ..., BOARD: generic, EABI: aarch64, ..."
        match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
        if match:
            l4t = f"{match.group(1)}.{match.group(2)}"
    is_jetson = release is not None or bool(model and "jetson" in model.lower())
    info: dict[str, Any] = {"is_jetson": is_jetson, "model": model if is_jetson else None, "l4t": l4t}
    if not is_jetson:
        info["reason"] = "no /etc/nv_tegra_release and no Jetson in /proc/device-tree/model"
    return info


def _nvidia_smi(run: Runner) -> dict[str, Any] | None:
    fields = "name,driver_version,memory.total,compute_cap"
    out = run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
    if out is not None and out[0] != 0:  # old drivers do not know compute_cap
        out = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"])
    if out is None or out[0] != 0 or not out[1]:
        return None
    gpus = []
    for line in out[1].splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        gpus.append({
            "name": parts[0], "driver": parts[1],
            "memory_mib": int(parts[2]) if parts[2].isdigit() else None,
            "compute_capability": parts[3] if len(parts) > 3 and re.fullmatch(r"\d+\.\d+", parts[3]) else None,
        })  # fmt: skip
    return {"gpus": gpus} if gpus else None


def gpu_info(run: Runner = run_command, jetson: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first GPU: from nvidia-smi, else the Jetson's integrated GPU, else torch if already imported."""
    smi = _nvidia_smi(run)
    if smi:
        first = smi["gpus"][0]
        return {"available": True, "source": "nvidia-smi", **first, "count": len(smi["gpus"])}
    if jetson and jetson.get("is_jetson"):
        model = jetson.get("model") or "Jetson"
        cc = next((cc for key, cc in JETSON_COMPUTE_CAPABILITY if key.lower() in model.lower()), None)
        return {"available": True, "source": "jetson", "name": f"{model} (integrated GPU)",
                "driver": f"L4T {jetson.get('l4t')}" if jetson.get("l4t") else None,
                "memory_mib": None, "compute_capability": cc, "count": 1}  # fmt: skip
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability(0)
                return {"available": True, "source": "torch", "name": torch.cuda.get_device_name(0),
                        "driver": None, "memory_mib": None, "compute_capability": f"{major}.{minor}",
                        "count": torch.cuda.device_count()}  # fmt: skip
        except Exception:  # noqa: BLE001 - a broken CUDA install must not break `info`
            pass
    reason = "nvidia-smi not found" if shutil.which("nvidia-smi") is None else "nvidia-smi found no GPU"
    return {"available": False, "name": None, "reason": f"{reason} and this is not a Jetson"}


def power_info(jetson: dict[str, Any], run: Runner = run_command) -> dict[str, Any]:
    """nvpmodel power mode and jetson_clocks state (Jetson only)."""
    if not jetson.get("is_jetson"):
        return {"nvpmodel": None, "clocks": None, "reason": "not a Jetson"}
    info: dict[str, Any] = {"nvpmodel": None, "nvpmodel_id": None, "clocks": None}
    out = run(["nvpmodel", "-q"])
    if out is None:
        info["reason"] = "nvpmodel not found"
    elif out[0] != 0:
        info["reason"] = f"nvpmodel -q failed: {out[1][:200]}"
    else:  # "NV Power Mode: MAXN\n0"
        match = re.search(r"NV Power Mode:\s*(\S+)", out[1])
        info["nvpmodel"] = match.group(1) if match else out[1].splitlines()[0]
        ids = [line.strip() for line in out[1].splitlines() if line.strip().isdigit()]
        info["nvpmodel_id"] = int(ids[0]) if ids else None
    clocks = run(["jetson_clocks", "--show"])
    if clocks is None:
        info["clocks_reason"] = "jetson_clocks not found"
    elif clocks[0] != 0:
        info["clocks_reason"] = "jetson_clocks --show failed (it needs root)"
    else:
        info["clocks"] = [line.strip() for line in clocks[1].splitlines() if line.strip().startswith(("GPU", "EMC"))]
    return info


# -- libraries --------------------------------------------------------------------------------


def _version_of(module_name: str) -> tuple[Any | None, str | None]:
    """Import `module_name` if installed; (module, None) or (None, reason)."""
    try:
        if importlib.util.find_spec(module_name) is None:
            return None, "not installed"
        return importlib.import_module(module_name), None
    except Exception as exc:  # noqa: BLE001 - e.g. a TensorRT wheel without its CUDA libraries
        return None, f"import failed: {type(exc).__name__}: {exc}"


def tensorrt_info() -> dict[str, Any]:
    module, reason = _version_of("tensorrt")
    if module is None:
        return {"version": None, "reason": reason}
    return {"version": getattr(module, "__version__", "unknown")}


CUDA_PYTHON_MODULES = ("cuda.bindings", "cuda.cudart")  # new and old name of cuda-python's runtime API
CUDA_PYTHON_ADVICE = (
    "install cuda-python with the CUDA major version of the machine: pip install 'cuda-python>=12,<13' "
    "(JetPack 6 and TensorRT 10 base images are CUDA 12)"
)


def cuda_python_info() -> dict[str, Any]:
    """Is cuda-python (which the TensorRT backend and `export build-engine` need) installed? Looked up, not imported."""
    for name in CUDA_PYTHON_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # no `cuda` package at all
            found = False
        if found:
            from importlib.metadata import PackageNotFoundError, version

            dist_version: str | None = None
            for dist in ("cuda-python", "cuda-bindings"):  # cuda-python >= 12.8 is a meta-package of cuda-bindings
                try:
                    dist_version = version(dist)
                    break
                except PackageNotFoundError:
                    continue
            return {"module": name, "version": dist_version}
    return {"module": None, "version": None, "reason": "not installed (neither cuda.bindings nor cuda.cudart)"}


def onnxruntime_info() -> dict[str, Any]:
    module, reason = _version_of("onnxruntime")
    if module is None:
        return {"version": None, "providers": [], "reason": reason}
    try:
        providers = list(module.get_available_providers())
    except Exception as exc:  # noqa: BLE001
        return {"version": module.__version__, "providers": [], "reason": f"get_available_providers failed: {exc}"}
    return {"version": module.__version__, "providers": providers}


def parse_opencv_build_info(text: str) -> dict[str, bool]:
    """GStreamer / V4L2 / FFMPEG support from cv2.getBuildInformation() ("    GStreamer:   YES (1.22.0)")."""

    def flag(pattern: str) -> bool:
        match = re.search(rf"^\s*{pattern}\s*:\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
        return bool(match and match.group(1).upper().startswith("YES"))

    return {"gstreamer": flag("GStreamer"), "v4l2": flag(r"v4l/v4l2"), "ffmpeg": flag("FFMPEG")}


def opencv_info() -> dict[str, Any]:
    module, reason = _version_of("cv2")
    if module is None:
        return {"version": None, "gstreamer": False, "v4l2": False, "ffmpeg": False, "reason": reason}
    info: dict[str, Any] = {"version": module.__version__, "path": getattr(module, "__file__", None)}
    info.update(parse_opencv_build_info(module.getBuildInformation()))
    return info


def torch_info() -> dict[str, Any]:
    """Only when torch is already imported (never imported here: carts have no torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {"version": None, "reason": "not imported by this process (not probed)"}
    return {"version": getattr(torch, "__version__", None), "cuda": getattr(getattr(torch, "version", None), "cuda", None)}


# -- capture devices --------------------------------------------------------------------------


def capture_devices(root: Path = Path("/")) -> list[dict[str, Any]]:
    """/dev/video* with their names from /sys/class/video4linux/*/name, plus /dev/edge-bus-capture.

    A USB capture card usually makes two nodes; `index` 0 is the one that delivers frames (the
    other carries metadata).
    """
    devices = []
    dev = root / "dev"
    for node in sorted(dev.glob("video*"), key=lambda p: (len(p.name), p.name)):
        sysdir = root / "sys/class/video4linux" / node.name
        name = _read(root, f"/sys/class/video4linux/{node.name}/name")
        index = _read(root, f"/sys/class/video4linux/{node.name}/index")
        devices.append({"path": f"/dev/{node.name}", "name": name.strip() if name else None,
                        "index": int(index) if index and index.strip().isdigit() else None,
                        "sysfs": sysdir.is_dir()})  # fmt: skip
    stable = dev / "edge-bus-capture"
    if stable.is_symlink() or stable.exists():
        target = os.readlink(stable) if stable.is_symlink() else None
        devices.append({"path": "/dev/edge-bus-capture", "name": "stable name (udev rule)", "target": target})
    return devices


# -- everything -------------------------------------------------------------------------------


def machine_info(root: Path = Path("/"), run: Runner = run_command) -> dict[str, Any]:
    """Every probe, as one JSON-ready dict."""
    jetson = jetson_info(root)
    from edge_bus import __version__ as edge_bus_version

    return {
        "host": {"hostname": platform.node(), "os": platform.platform(), "python": platform.python_version(),
                 "edge_bus": edge_bus_version},  # fmt: skip
        "cpu": cpu_info(root),
        "memory": memory_info(root),
        "gpu": gpu_info(run, jetson),
        "jetson": jetson,
        "power": power_info(jetson, run),
        "tensorrt": tensorrt_info(),
        "cuda_python": cuda_python_info(),
        "onnxruntime": onnxruntime_info(),
        "opencv": opencv_info(),
        "torch": torch_info(),
        "capture_devices": capture_devices(root),
    }


# -- can the configured backend and source work here? -----------------------------------------

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtp", "udp", "http", "https")
JETPACK_OPENCV_ADVICE = (
    "pip's opencv-python(-headless) is built without GStreamer; use an OpenCV built with it: on a Jetson "
    "JetPack's system OpenCV (create the venv with --system-site-packages and `pip uninstall "
    "opencv-python-headless` inside it, see deploy/README.md), on Ubuntu/Debian the python3-opencv package"
)


@dataclass
class Check:
    """One verdict of `edge-bus info`: status is "ok", "warn" or "fail"."""

    name: str
    status: str
    detail: str
    advice: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "advice": self.advice}


def _has_gpu(info: dict[str, Any]) -> bool:
    return bool(info.get("gpu", {}).get("available"))


def _backend_usable(name: str, info: dict[str, Any]) -> tuple[bool, str]:
    """(usable, why) for one concrete backend."""
    if name == "tensorrt":
        trt, gpu = info["tensorrt"], info["gpu"]
        missing = []
        if not trt.get("version"):
            missing.append(f"TensorRT is not importable ({trt.get('reason')})")
        cuda = info.get("cuda_python") or cuda_python_info()  # facts from older callers lack it
        if not cuda.get("module"):
            missing.append(f"cuda-python is missing ({cuda.get('reason', 'not installed')})")
        if not gpu.get("available"):
            missing.append(f"no NVIDIA GPU ({gpu.get('reason')})")
        if missing:
            return False, "; ".join(missing)
        return True, f"TensorRT {trt['version']} on {gpu.get('name')}"
    if name == "onnxruntime":
        ort = info["onnxruntime"]
        if not ort.get("version"):
            return False, f"ONNX Runtime is not importable ({ort.get('reason')})"
        return True, f"ONNX Runtime {ort['version']} with {', '.join(ort.get('providers') or ['no providers'])}"
    if name == "torchscript":
        try:
            found = importlib.util.find_spec("torch") is not None  # looked up, never imported
        except (ImportError, ValueError):
            found = False
        if not found:
            return False, "PyTorch is not installed"
        return True, "PyTorch is installed (not imported by `info`)"
    return False, f"unknown backend {name!r}"


def _only_cuda_python_missing(info: dict[str, Any]) -> bool:
    """TensorRT imports and a GPU is there, but cuda-python is missing."""
    cuda = info.get("cuda_python") or cuda_python_info()
    return bool(info["tensorrt"].get("version") and info["gpu"].get("available") and not cuda.get("module"))


BACKEND_ADVICE = {
    "tensorrt": "install TensorRT and cuda-python on a machine with an NVIDIA GPU (JetPack ships TensorRT: "
    "python3-libnvinfer, then pip install 'cuda-python>=12,<13' in the venv; on x86: pip install "
    "'tensorrt-cu12>=10,<11' 'cuda-python>=12,<13' with an NVIDIA driver) or use --backend onnxruntime",
    "onnxruntime": "pip install onnxruntime (or onnxruntime-gpu for CUDA), or use --backend tensorrt on a GPU",
    "torchscript": "pip install 'edge-bus[train]' for PyTorch, or use --backend onnxruntime",
}


def check_backend(info: dict[str, Any], name: str, device: str = "auto") -> Check:
    """Can backend `name` ("auto" included) run on this machine?"""
    from edge_bus.runtime.backends import AUTO_ORDER, backend_names

    if name not in backend_names():
        return Check("backend", "fail", f"unknown backend {name!r}", f"choose one of: {', '.join(backend_names())}")
    if name == "auto":
        skipped = []
        for candidate in AUTO_ORDER:
            usable, why = _backend_usable(candidate, info)
            if usable:
                if skipped and _only_cuda_python_missing(info):  # TensorRT and a GPU are here: worth saying
                    return Check("backend", "warn", f"auto -> {candidate}: {why}; TensorRT skipped: {skipped[0]}",
                                 CUDA_PYTHON_ADVICE)  # fmt: skip
                return Check("backend", "ok", f"auto -> {candidate}: {why}")
            skipped.append(why)
        return Check("backend", "fail", "auto: no backend works here", BACKEND_ADVICE["onnxruntime"])
    usable, why = _backend_usable(name, info)
    if not usable:
        advice = BACKEND_ADVICE[name]
        if name == "tensorrt" and _only_cuda_python_missing(info):
            advice = f"{CUDA_PYTHON_ADVICE}, or use --backend onnxruntime"
        return Check("backend", "fail", f"{name}: {why}", advice)
    if name == "onnxruntime" and device.startswith("cuda"):
        providers = info["onnxruntime"].get("providers") or []
        if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(providers):
            return Check("backend", "fail", f"onnxruntime on {device}: ONNX Runtime has no CUDA provider ({why})",
                         "pip install onnxruntime-gpu (on a Jetson: the Jetson build of onnxruntime-gpu), "
                         "or use --device cpu")  # fmt: skip
    return Check("backend", "ok", f"{name}: {why}")


def _device_list(info: dict[str, Any]) -> str:
    devices = [d for d in info.get("capture_devices", []) if d["path"].startswith("/dev/video")]
    if not devices:
        return "none connected (plug in the capture card; `v4l2-ctl --list-devices` lists them)"
    return ", ".join(f"{d['path']} ({d.get('name') or 'unnamed'})" for d in devices)


def _source_schemes() -> tuple[tuple[str, ...], set[str]]:
    """(network schemes, all schemes) as the runtime's sources module defines them."""
    try:
        from edge_bus.runtime import sources

        return tuple(sources.NETWORK_SCHEMES), set(sources.SCHEMES)
    except (ImportError, AttributeError):  # the sources module is optional for `info`
        return NETWORK_SCHEMES, {"file", "v4l2", "csi", "gst", "synthetic", *NETWORK_SCHEMES}


# probe(uri, options, read_frame) -> {"capture_format", "live", "shape", "error"}; SourceError when it cannot
Probe = Callable[[str, "dict[str, Any]", bool], "dict[str, Any]"]
SOURCE_OPTIONS = ("width", "height", "fps", "pixel_format")
FFMPEG_ADVICE = (
    "edge-bus reads video files and network streams with OpenCV's FFMPEG backend: install an OpenCV "
    "built with FFMPEG (pip's opencv-python-headless has it), or give a GStreamer pipeline instead, e.g. "
    "'filesrc location=clip.mp4 ! decodebin ! videoconvert ! video/x-raw,format=BGR ! appsink' "
    "(rtspsrc location=... for a stream)"
)


def probe_source(uri: str, options: dict[str, Any], read_frame: bool = True) -> dict[str, Any]:
    """Open the source as `edge-bus run` does; read one frame (files) or only the capture format (devices)."""
    from edge_bus.errors import SourceError
    from edge_bus.runtime.sources import open_source

    with open_source(uri, **options) as source:
        found: dict[str, Any] = {"capture_format": source.capture_format, "live": source.live}
        if read_frame:
            frame = source.read()
            if frame is None:
                raise SourceError(f"{uri}: opens, but not one frame can be read (empty or truncated); re-record or re-encode it")
            found.update(shape=list(frame.shape), error=frame.error)
    return found


def _can_access(path: Path, mode: int) -> bool:
    return os.access(path, mode)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _owner_and_mode(path: Path) -> tuple[str, str, str]:
    """(owner, group, mode as ls shows it) of `path`."""
    import grp
    import pwd
    import stat

    st = path.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return owner, group, stat.filemode(st.st_mode)


def _permission_check(path: Path, shown: str, mode: int, what: str) -> Check | None:
    """A failing Check when the current user cannot `what` `path` (os.access `mode`); None when it can."""
    if _can_access(path, mode):
        return None
    user = _user()
    owner, group, perms = _owner_and_mode(path)
    return Check("source", "fail", f"{shown}: user {user} cannot {what} it ({perms} {owner}:{group})",
                 f"add {user} to group {group} (sudo usermod -aG {group} {user}, then log in again) or change "
                 f"the permissions; the service runs as user edge-bus, which install.sh puts in group video")  # fmt: skip


def _check_gstreamer(cv: dict[str, Any], text: str) -> Check:
    if not cv.get("gstreamer"):
        return Check("source", "fail", f"GStreamer pipeline, but OpenCV {cv.get('version')} has no GStreamer",
                     JETPACK_OPENCV_ADVICE)  # fmt: skip
    from edge_bus.runtime.sources import gst_pipeline_is_live

    pipeline = text[len("gst://"):] if text.startswith("gst://") else text
    kind = "live" if gst_pipeline_is_live(pipeline) else "reads a file: every frame is processed"
    return Check("source", "ok", f"GStreamer pipeline, {kind} (OpenCV has GStreamer; the pipeline itself is not started)")


def _check_csi(info: dict[str, Any], cv: dict[str, Any]) -> Check:
    if not info["jetson"].get("is_jetson"):
        return Check("source", "fail", "csi:// cameras exist on a Jetson only", "use v4l2:///dev/videoN or a file")
    if not cv.get("gstreamer"):
        return Check("source", "fail", "csi:// needs GStreamer (nvarguscamerasrc), OpenCV has none", JETPACK_OPENCV_ADVICE)
    return Check("source", "ok", "CSI camera via nvarguscamerasrc (not opened)")


def _check_network(cv: dict[str, Any], scheme: str) -> Check:
    if not cv.get("ffmpeg"):
        return Check("source", "fail", f"{scheme}:// stream, but OpenCV {cv.get('version')} has no FFMPEG", FFMPEG_ADVICE)
    return Check("source", "warn", f"{scheme} stream: not contacted by `info` (reachability unknown)")


def _check_device(info: dict[str, Any], path: str, root: Path, options: dict[str, Any], probe: Probe) -> Check:
    node = root / path.lstrip("/")
    cv = info["opencv"]
    if not node.exists():
        advice = f"connected devices: {_device_list(info)}"
        if "edge-bus-capture" in path:
            advice += "; /dev/edge-bus-capture comes from the udev rule: check its idVendor/idProduct"
        return Check("source", "fail", f"{path}: no such device", advice)
    if not cv.get("v4l2"):
        return Check("source", "fail", f"{path} exists but OpenCV has no V4L2 support", JETPACK_OPENCV_ADVICE)
    denied = _permission_check(node, path, os.R_OK | os.W_OK, "open")
    if denied is not None:
        return denied
    from edge_bus.errors import SourceError

    try:
        found = probe(f"v4l2://{node}", options, False)
    except SourceError as exc:
        return Check("source", "fail", str(exc), "a capture device is opened by one program at a time: stop the "
                     "service first (sudo systemctl stop edge-bus), then check `v4l2-ctl -d " + path + " --all`")  # fmt: skip
    from edge_bus.runtime.sources import describe_capture

    capture = found.get("capture_format")
    detail = describe_capture(capture) if capture else "opened"
    if capture and capture.get("mismatch"):
        return Check("source", "warn", f"{path}: {detail}",
                     f"set width/height/fps/pixel_format to a mode of `v4l2-ctl -d {path} --list-formats-ext`")  # fmt: skip
    return Check("source", "ok", f"{path}: capture device opened, {detail}")


def _check_paths(cv: dict[str, Any], text: str, scheme: str, probe: Probe) -> Check:
    from edge_bus.errors import SourceError

    path_text = text[len("file://"):].split("?", 1)[0] if scheme == "file" else text
    path = Path(path_text)
    is_glob = any(ch in path_text for ch in "*?[")
    if path.suffix.lower() in VIDEO_SUFFIXES and not is_glob and not cv.get("ffmpeg"):
        return Check("source", "fail", f"{path}: a video file, but OpenCV {cv.get('version')} has no FFMPEG", FFMPEG_ADVICE)
    # a missing file or a glob that matches nothing: open_source (the probe) says so, as `edge-bus run` would
    if not is_glob and path.exists():
        mode = os.R_OK | os.X_OK if path.is_dir() else os.R_OK
        denied = _permission_check(path, str(path), mode, "read")
        if denied is not None:
            return denied
    try:
        found = probe(path_text, {}, True)
    except SourceError as exc:
        return Check("source", "fail", str(exc), "check the path (relative paths start from the working directory); "
                     "give a video OpenCV can decode, an image, a folder or a glob of images")  # fmt: skip
    shape = found.get("shape") or []
    if found.get("error"):
        return Check("source", "warn", f"{path_text}: the first frame is unreadable: {found['error']}",
                     "unreadable frames are skipped and counted as bad frames; check the files")  # fmt: skip
    size = f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else "?"
    return Check("source", "ok", f"{path_text}: opened, first frame {size}")


def check_source(info: dict[str, Any], uri: str, root: Path = Path("/"), *, options: dict[str, Any] | None = None,
                 probe: Probe = probe_source) -> Check:  # fmt: skip
    """Can the source URI be opened here, as `edge-bus run` opens it? Files are opened and one frame is
    read; a capture device is opened and its format read back (`options`: width, height, fps,
    pixel_format); network sources are not contacted, GStreamer pipelines not started."""
    cv = info["opencv"]
    network, known = _source_schemes()
    text = uri.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "gst" or ("appsink" in text and scheme != "gst") or ("!" in text and not scheme):
        return _check_gstreamer(cv, text)
    if scheme == "synthetic":
        return Check("source", "ok", "synthetic phantom frames")
    if scheme == "csi":
        return _check_csi(info, cv)
    if scheme in network:
        return _check_network(cv, scheme)
    if scheme == "v4l2" or text.startswith("/dev/video") or text == "/dev/edge-bus-capture":
        path = (text[len("v4l2://"):] if scheme == "v4l2" else text) or "/dev/video0"
        return _check_device(info, path, root, dict(options or {}), probe)
    if scheme and scheme != "file" and scheme in known:
        return Check("source", "warn", f"{scheme}:// source: not checked by `info`")
    if scheme and scheme != "file":
        return Check("source", "fail", f"unknown source scheme {scheme}://",
                     f"use one of {', '.join(s + '://' for s in sorted(known))}, a folder, a glob or a pipeline")  # fmt: skip
    return _check_paths(cv, text, scheme, probe)


def probe_engine_target() -> Any:
    """This machine's engine_cache.Target, or a string saying why it cannot be known here."""
    from edge_bus.engine_cache import current_target

    try:
        return current_target()
    except Exception as exc:  # noqa: BLE001 - BackendError, or a TensorRT/CUDA install that breaks on import
        return str(exc) or type(exc).__name__


def _engine_check(key: str, path: str, bundle: Any, detail: str, backend: str, precision: str, target: Any) -> Check:
    """Is there a fresh TensorRT engine of `bundle` for this machine (engine_cache.lookup)?"""
    from edge_bus.engine_cache import AUTO_ORDER, bundle_records, lookup, source_kind
    from edge_bus.errors import BundleError
    from edge_bus.fileio import sha256_file

    # backend tensorrt cannot run without a fresh engine; backend auto falls back to ONNX Runtime
    bad = "fail" if backend == "tensorrt" else "warn"
    then = "" if backend == "tensorrt" else "; backend auto will fall back to ONNX Runtime"
    wanted = AUTO_ORDER if precision == "auto" else (precision,)
    build = f"edge-bus export build-engine {path}" + ("" if precision == "auto" else f" --precision {precision}")
    if target is None:
        target = probe_engine_target()
    if isinstance(target, str):
        return Check(key, "warn", f"{detail}; TensorRT engines cannot be checked here: {target}",
                     f"check on the device that runs them (`edge-bus info --config ...`); build them there: {build}")  # fmt: skip
    # as the TensorRT backend: each precision's engine is built from its own ONNX file (int8 may use model.int8.tensorrt.onnx)
    shas: dict[str, str] = {}
    by_kind: dict[str, str] = {}  # hash each file once (a VGG-19 ONNX file is hundreds of MB)
    try:
        records = bundle_records(bundle.root, bundle.manifest.engines)
        for p in wanted:
            kind = source_kind(p, bundle.manifest.artifacts)
            if kind in bundle.manifest.artifacts or precision != "auto":
                if kind not in by_kind:
                    by_kind[kind] = sha256_file(bundle.artifact_path(kind))
                shas[p] = by_kind[kind]
    except (BundleError, OSError) as exc:
        return Check(key, bad, f"{detail}; cannot check its TensorRT engines: {exc}{then}",
                     f"re-export the bundle with an ONNX model, then: {build}")  # fmt: skip
    problems = []
    for p, sha in shas.items():
        found = lookup(bundle.root, model=bundle.manifest.model, onnx_sha256=sha, target=target,
                       precision=p, records=records)  # fmt: skip
        if found.status == "fresh":
            return Check(key, "ok", f"{detail}; fresh {p} TensorRT engine {found.record.path} for {target.describe()}")
        if found.status == "stale":
            problems.append(f"stale {p} engine {found.record.path} ({'; '.join(found.reasons)})")
    asked = "any precision" if precision == "auto" else precision
    problem = "; ".join(problems) if problems else f"no TensorRT engine ({asked}) in {path}/engines"
    return Check(key, bad, f"{detail}; no fresh engine for {target.describe()}: {problem}{then}",
                 f"build it on this machine: {build}")  # fmt: skip


def check_bundle(key: str, path: str, backend: str, allow_rejected: bool = False, *, precision: str = "auto",
                 info: dict[str, Any] | None = None, target: Any = None, allow_unchecked: bool = False) -> Check:  # fmt: skip
    """Does the bundle open, does it hold what `backend` needs, and (TensorRT) is its engine fresh here?

    `target`: an engine_cache.Target, a string saying why it is unknown, or None to probe this machine.
    With backend auto, engines are checked only when `info` says TensorRT is usable here.
    """
    from edge_bus.bundle import open_bundle
    from edge_bus.errors import BundleError

    try:
        bundle = open_bundle(path)
        bundle.require_accepted(allow_rejected=allow_rejected, allow_unchecked=allow_unchecked)
    except BundleError as exc:
        return Check(key, "fail", str(exc), "export it with `edge-bus export` and copy the whole folder")
    artifacts = bundle.manifest.artifacts
    detail = f"{bundle.manifest.model} ({bundle.manifest.task}, {bundle.manifest.status}); artifacts: {', '.join(sorted(artifacts)) or 'none'}"
    needs = {"onnxruntime": ("onnx", "onnx_int8"), "torchscript": ("torchscript",), "tensorrt": ("onnx",)}
    wanted = needs.get(backend, tuple(a for v in needs.values() for a in v))
    if not set(wanted) & set(artifacts):
        return Check(key, "fail", f"{path}: no artifact for backend {backend} ({detail})",
                     f"re-export with one of: {', '.join(wanted)}, or choose another backend")  # fmt: skip
    tensorrt_here = info is not None and _backend_usable("tensorrt", info)[0]
    if backend == "tensorrt" or (backend == "auto" and tensorrt_here and "onnx" in artifacts):
        return _engine_check(key, path, bundle, detail, backend, precision, target)
    return Check(key, "ok", detail)


def diagnose(info: dict[str, Any], config: Any = None, *, backend: str | None = None, source: str | None = None,
             root: Path = Path("/"), target: Any = None, probe: Probe = probe_source) -> list[Check]:  # fmt: skip
    """Checks for a run configuration (a RunConfig) and/or an explicit backend and source.

    `target` as for check_bundle; None probes this machine (once) when an engine must be checked.
    The source is opened with the config's capture options (`probe`, see check_source).
    """
    backend = backend or (config.backend if config is not None else None)
    source = source or (config.source if config is not None else None)
    checks = []
    if backend is not None:
        checks.append(check_backend(info, backend, config.device if config is not None else "auto"))
    if source is not None:
        options = {k: getattr(config, k) for k in SOURCE_OPTIONS if config is not None and getattr(config, k, None)}
        checks.append(check_source(info, source, root, options=options, probe=probe))
    if config is not None:
        precision = getattr(config, "precision", "auto")
        for key in ("classifier", "segmenter"):
            path = getattr(config, key)
            if path:
                if target is None and (backend == "tensorrt" or (backend == "auto" and _backend_usable("tensorrt", info)[0])):
                    target = probe_engine_target()
                checks.append(check_bundle(key, path, backend or "auto", config.allow_rejected, precision=precision,
                                           info=info, target=target,
                                           allow_unchecked=config.allow_unchecked))  # fmt: skip
    return checks


__all__ = [
    "machine_info", "cpu_info", "memory_info", "gpu_info", "jetson_info", "power_info", "tensorrt_info",
    "onnxruntime_info", "cuda_python_info", "opencv_info", "parse_opencv_build_info", "torch_info", "capture_devices", "run_command",
    "Check", "check_backend", "check_source", "check_bundle", "diagnose", "probe_engine_target", "probe_source",
]  # fmt: skip
