"""The run configuration: the one input of the runtime pipeline (docs/CONTRACTS.md "Run configuration").

`edge-bus run` builds a `RunConfig` from its options, or from a YAML file with `--config FILE`;
options given on the command line override the file (`RunConfig.merged`, where None means "not
given"). Every error names the key at fault (and the file, when there is one) and says what to do.

`precision` picks the artifact or engine: "auto" (the default) means TensorRT takes the best
fresh engine built for this GPU (fp16, then fp32, then int8) and ONNX Runtime / TorchScript take
FP32; "fp32" | "fp16" | "int8" ask for exactly that one (an error when the bundle has no such
artifact, or no fresh engine of that precision for TensorRT).

Paths (bundles, out, health_file, a file source) are used as written: relative paths are relative
to the working directory of the process, so deployed configs use absolute paths.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_bus.errors import ConfigError

PRECISIONS = ("auto", "fp32", "fp16", "int8")
SINKS = ("jsonl", "overlay", "masks", "window")
ROI_MODES = ("none", "auto")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
NO_FRAME_TIMEOUT_S = 3.0  # live sources: seconds without a good frame before the source is reopened
FOURCC_RE = re.compile(r"[A-Za-z0-9_]{3}[A-Za-z0-9_ ]")  # V4L2 codes are 4 characters ("Y16 " ends in a space)


def backend_choices() -> list[str]:
    from edge_bus.runtime.backends import backend_names

    return backend_names()


@dataclass
class RunConfig:
    source: str  # URI: v4l2:///dev/video0, file://clip.mp4, a folder/glob, rtsp://..., a GStreamer pipeline
    classifier: str | None = None  # bundle folder
    segmenter: str | None = None  # bundle folder (at least one of the two)
    backend: str = "auto"  # auto | tensorrt | onnxruntime | torchscript
    precision: str = "auto"  # auto | fp32 | fp16 | int8 (auto: best fresh TensorRT engine, else FP32)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str | None = None  # results folder
    batch: int = 4  # max batch of the dynamic batcher
    max_wait_ms: float = 20.0  # max wait of the batcher
    queue_size: int = 8
    roi: str = "none"  # none | auto | "x,y,w,h"
    sinks: list[str] = field(default_factory=lambda: ["jsonl"])  # jsonl | overlay | masks | window
    allow_rejected: bool = False
    allow_unchecked: bool = False  # run untrained / latency-only bundles (refused by default)
    out_per_run: bool = False  # results in out/<UTC start>-<pid>/ (plus out/latest) instead of out/ itself
    keep_runs: int | None = None  # with out_per_run: runs with frames kept (the current one included); None = all
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    pixel_format: str | None = None  # e.g. YUYV, MJPG, NV12 (live sources)
    reconnect_attempts: int = 5
    reconnect_backoff_s: float = 0.5
    max_failed_reads: int = 5  # live sources: failed reads in a row (each a bad frame) before reopening
    no_frame_timeout_s: float = NO_FRAME_TIMEOUT_S  # live sources: no good frame for this long: reopen
    health_file: str | None = None
    health_interval_s: float = 2.0
    health_port: int | None = None  # optional GET /health on 127.0.0.1:<port>; None = off
    max_frames: int | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> RunConfig:
        """Build and validate from a plain mapping (e.g. parsed YAML). `where` prefixes errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a mapping of key: value, got {type(data).__name__}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)}; "
                f"valid keys: {', '.join(_FIELDS)}"
            )
        values = {key: _coerce(key, value, where) for key, value in data.items()}
        if "source" not in values or values["source"] is None:
            raise ConfigError(f"{where}: key 'source' is required (e.g. source: v4l2:///dev/video0)")
        return cls(**values).validate(where)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["sinks"] = list(self.sinks)
        return data

    def merged(self, **overrides: Any) -> RunConfig:
        """A copy with `overrides` applied; None means "not given" and keeps the current value."""
        unknown = sorted(k for k in overrides if k not in _FIELDS)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid keys: {', '.join(_FIELDS)}")
        changes = {k: _coerce(k, v, "option") for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes).validate("options")

    # -- validation ---------------------------------------------------------------------------

    def validate(self, where: str = "config") -> RunConfig:
        """Check every key; raise ConfigError naming the first bad one. Returns self."""
        for key in _FIELDS:
            _coerce(key, getattr(self, key), where)  # types (for configs built in code)

        def bad(key: str, problem: str) -> ConfigError:
            return ConfigError(f"{where}: key '{key}': {problem}")

        if not self.source.strip():
            raise bad("source", "is empty; give a URI such as v4l2:///dev/video0, file://clip.mp4 or a folder")
        if not self.classifier and not self.segmenter:
            raise ConfigError(
                f"{where}: neither 'classifier' nor 'segmenter' is set; give at least one bundle folder "
                "(written by `edge-bus export`)"
            )
        backends = backend_choices()
        if self.backend not in backends:
            raise bad("backend", f"unknown backend {self.backend!r}; choose one of: {', '.join(backends)}")
        if self.precision not in PRECISIONS:
            hint = " (lower case)" if self.precision.lower() in PRECISIONS else ""
            raise bad("precision", f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}"
                      f"{hint}; auto takes the best fresh TensorRT engine, else FP32")  # fmt: skip
        if not _DEVICE_RE.match(self.device):
            raise bad("device", f"invalid device {self.device!r}; use auto, cpu, cuda or cuda:N")
        for key, low in (("batch", 1), ("queue_size", 1), ("reconnect_attempts", 0), ("max_failed_reads", 0)):
            if getattr(self, key) < low:
                raise bad(key, f"must be >= {low}, got {getattr(self, key)}")
        for key in ("width", "height", "max_frames", "health_port", "keep_runs"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise bad(key, f"must be >= 1 (or left out), got {value}")
        if self.health_port is not None and self.health_port > 65535:
            raise bad("health_port", f"must be a TCP port 1..65535, got {self.health_port}")
        for key in ("max_wait_ms", "reconnect_backoff_s"):
            if getattr(self, key) < 0:
                raise bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.no_frame_timeout_s <= 0:
            raise bad("no_frame_timeout_s", f"must be > 0 seconds, got {self.no_frame_timeout_s}")
        if self.health_interval_s <= 0:
            raise bad("health_interval_s", f"must be > 0, got {self.health_interval_s}")
        if self.fps is not None and self.fps <= 0:
            raise bad("fps", f"must be > 0 (or left out), got {self.fps}")
        if (self.width is None) != (self.height is None):
            missing = "height" if self.height is None else "width"
            raise bad(missing, "is missing; give both width and height, or neither")
        if self.pixel_format is not None and not FOURCC_RE.fullmatch(self.pixel_format):
            raise bad("pixel_format", f"invalid pixel format {self.pixel_format!r}; use a FOURCC of exactly 4 "
                      "characters such as MJPG or YUYV (`v4l2-ctl --list-formats-ext` lists the card's)")  # fmt: skip
        if self.out_per_run and self.out is None:
            raise bad("out_per_run", "needs 'out', the folder that holds the run folders; set out or remove out_per_run")
        if self.keep_runs is not None and not self.out_per_run:
            raise bad("keep_runs", "applies to per-run folders only; set out_per_run: true or remove keep_runs")
        parse_roi(self.roi, where)
        for sink in self.sinks:
            if sink not in SINKS:
                raise bad("sinks", f"unknown sink {sink!r}; choose from: {', '.join(SINKS)}")
        if len(set(self.sinks)) != len(self.sinks):
            raise bad("sinks", f"lists a sink twice: {self.sinks}")
        return self


def parse_roi(roi: str, where: str = "config") -> tuple[int, int, int, int] | str:
    """'none' | 'auto' -> itself; 'x,y,w,h' -> a tuple of ints (x, y >= 0; w, h >= 1)."""
    text = roi.strip().lower()
    if text in ROI_MODES:
        return text
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(
            f"{where}: key 'roi': invalid value {roi!r}; use none, auto or x,y,w,h in pixels (e.g. 80,40,640,480)"
        ) from None
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise ConfigError(f"{where}: key 'roi': {roi!r} needs x, y >= 0 and w, h >= 1")
    return (x, y, w, h)


# key -> (accepted Python types, description for errors); None allowed where the default is None
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "str": ((str,), "a string"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
}
_KIND = {
    "source": "str", "classifier": "str", "segmenter": "str", "backend": "str", "precision": "str",
    "device": "str", "out": "str", "batch": "int", "max_wait_ms": "float", "queue_size": "int",
    "roi": "str", "sinks": "list", "allow_rejected": "bool", "allow_unchecked": "bool", "out_per_run": "bool",
    "keep_runs": "int", "width": "int", "height": "int",
    "fps": "float", "pixel_format": "str", "reconnect_attempts": "int", "reconnect_backoff_s": "float",
    "max_failed_reads": "int", "no_frame_timeout_s": "float",
    "health_file": "str", "health_interval_s": "float", "health_port": "int", "max_frames": "int",
}  # fmt: skip
_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))
_OPTIONAL = frozenset(f.name for f in dataclasses.fields(RunConfig) if f.default is None)
assert set(_KIND) == set(_FIELDS), "every RunConfig field needs a kind"


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check the type of one value and normalize it (int -> float, Path -> str, 'a,b' -> [a, b])."""
    kind = _KIND[key]
    if value is None:
        if key in _OPTIONAL:
            return None
        raise ConfigError(f"{where}: key '{key}' cannot be empty (null); remove it to use the default")
    if isinstance(value, Path) and kind == "str":
        return str(value)
    if kind == "list":
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: key '{key}' must be a list of strings (e.g. [jsonl, overlay]), got {value!r}")
        return list(value)
    types, description = _TYPES[kind]
    # bool is an int in Python; a YAML `batch: true` is a mistake, not 1
    if not isinstance(value, types) or (isinstance(value, bool) and kind != "bool"):
        raise ConfigError(f"{where}: key '{key}' must be {description}, got {type(value).__name__} {value!r}")
    if kind == "float":
        return float(value)
    return value


def load_run_config(path: str | Path, **overrides: Any) -> RunConfig:
    """Read a YAML run configuration; `overrides` (None = not given) win over the file.

    Required keys (source, a bundle) may come from either, so `edge-bus run --config f --source X`
    works with a file that has no source.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; copy deploy/jetson/config.yaml and edit it")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a YAML mapping of key: value, got {type(data).__name__}")
    unknown = [k for k in overrides if k not in _FIELDS]
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid keys: {', '.join(_FIELDS)}")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return RunConfig.from_dict(data, where=str(path))


__all__ = ["RunConfig", "load_run_config", "parse_roi", "PRECISIONS", "SINKS"]
