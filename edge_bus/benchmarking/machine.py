"""Machine facts for the report: edge_bus.sysinfo.machine_info() where it exists.

`minimal_machine_info` is a stand-in with the basics (CPU, cores, library versions), used only
when edge_bus.sysinfo is not importable.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
from typing import Any


def machine_info() -> dict[str, Any]:
    try:
        from edge_bus.sysinfo import machine_info as full  # noqa: PLC0415
    except ImportError:
        return minimal_machine_info()
    info = full()
    return info if isinstance(info, dict) else {"info": info}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def minimal_machine_info() -> dict[str, Any]:
    versions = {}
    for dist in ("onnxruntime", "opencv-python-headless", "tensorrt", "torch", "numpy"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count()},
        "gpu": None,
        "versions": versions,
        "source": "edge_bus.benchmarking.machine.minimal_machine_info (edge_bus.sysinfo not available)",
    }


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def machine_summary(info: dict[str, Any]) -> str:
    """One line for the terminal and the Markdown header: CPU, GPU, Jetson, library versions."""
    cpu = info.get("cpu") or {}
    parts = [f"{_get(cpu, 'model') or '?'} ({_get(cpu, 'cores') or '?'} cores)"]
    gpu = info.get("gpu")
    if isinstance(gpu, dict) and gpu.get("name"):
        parts.append(f"GPU {gpu['name']} (driver {gpu.get('driver') or '?'})")
    else:
        parts.append("no GPU")
    jetson = info.get("jetson")
    if isinstance(jetson, dict) and jetson.get("is_jetson"):
        power = info.get("power") or {}
        parts.append(f"Jetson {jetson.get('model') or '?'}, nvpmodel {json_short(power.get('nvpmodel'))}, clocks {json_short(power.get('clocks'))}")
    versions = info.get("versions") or {}
    trt = _get(info, "tensorrt", "version") or versions.get("tensorrt")
    ort = _get(info, "onnxruntime", "version") or versions.get("onnxruntime")
    cv = _get(info, "opencv", "version") or versions.get("opencv-python-headless")
    parts.append(f"TensorRT {trt or 'not installed'}, ONNX Runtime {ort or 'not installed'}, OpenCV {cv or '?'}")
    return "; ".join(parts)


def json_short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)
