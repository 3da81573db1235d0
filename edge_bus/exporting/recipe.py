"""Export recipes (export/*.yaml or .json): declarative settings per deployed model.

    model: vgg19                     # must match the checkpoint's model
    input_size: 256
    batch: [1, 8]
    formats: [onnx, torchscript, onnx_int8, tensorrt]
    precisions: [fp16, int8]         # TensorRT engines
    workspace_gb: 2
    opset: 18
    parity: {images: 128, split: val}
    calibration: {images: 256, split: train}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_bus.errors import ConfigError
from edge_bus.fileio import read_text

KNOWN = {"model", "input_size", "batch", "formats", "precisions", "workspace_gb", "opset", "parity", "calibration", "notes"}


@dataclass
class Recipe:
    path: Path
    model: str | None = None
    input_size: int | None = None
    batch: tuple[int, int] | None = None
    formats: list[str] | None = None
    precisions: list[str] | None = None
    workspace_gb: float | None = None
    opset: int | None = None
    parity_images: int | None = None
    calibration_images: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _line_of(exc: Exception) -> str:
    """' at line N' for JSON and YAML parse errors that know where they stopped."""
    if isinstance(exc, json.JSONDecodeError):
        return f" at line {exc.lineno}"
    mark = getattr(exc, "problem_mark", None)  # yaml's MarkedYAMLError, 0-based
    return f" at line {mark.line + 1}" if mark is not None else ""


def load_recipe(path: str | Path) -> Recipe:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: recipe not found (see export/ for examples)")
    text = read_text(p, ConfigError, what="recipe", fix="give a YAML or JSON recipe (see export/ for examples)")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # noqa: PLC0415

            data = yaml.safe_load(text)
    except Exception as exc:
        kind = p.suffix.lstrip(".").upper() or "YAML"
        raise ConfigError(f"{p}: recipe is not valid {kind} ({type(exc).__name__}{_line_of(exc)}); fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe is a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise ConfigError(f"{p}: unknown recipe key(s) {unknown}; known: {sorted(KNOWN)}")

    def sub(key: str, name: str = "images"):
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{p}: recipe key '{key}' must be a mapping such as {{images: 64}}")
        count = value.get(name)
        if count is not None:
            from edge_bus.exporting.bundle_export import check_count  # noqa: PLC0415

            check_count(f"{p}: recipe key '{key}.{name}'", count, sep=" ")
        return count

    batch = data.get("batch")
    if batch is not None:
        if not (isinstance(batch, list) and len(batch) == 2 and all(isinstance(b, int) for b in batch)):
            raise ConfigError(f"{p}: recipe key 'batch' must be [min, max], got {batch!r}")
        batch = (batch[0], batch[1])
    try:
        return Recipe(
            path=p,
            model=data.get("model"),
            input_size=int(data["input_size"]) if "input_size" in data else None,
            batch=batch,
            formats=list(data["formats"]) if "formats" in data else None,
            precisions=list(data["precisions"]) if "precisions" in data else None,
            workspace_gb=float(data["workspace_gb"]) if "workspace_gb" in data else None,
            opset=int(data["opset"]) if "opset" in data else None,
            parity_images=sub("parity"),
            calibration_images=sub("calibration"),
            raw=data,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{p}: recipe has a value of the wrong type ({exc})") from None
