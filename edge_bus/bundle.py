"""The bundle: the only contract between the torch world (training, export) and the runtime.

A bundle is a folder:

    manifest.json        this module's schema (validated on read)
    model.onnx           dynamic batch, input "input" (N, 1, S, S) float32
    model.ts             TorchScript, same signature
    engines/*.engine     TensorRT engines, built on the device that runs them (see engine_cache.py)
    parity.json          outcome of the parity gate for every artifact

Output semantics (the runtime's postprocessing depends on them):
    classification: output "logits" (N, C); probabilities = softmax over C, in `classes` order.
    segmentation:   output "logits" (N, 1, S, S); lesion where sigmoid(logit) > threshold.

No torch here: the runtime reads manifests on carts without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import BundleError, PreprocessError
from edge_bus.fileio import read_json, write_json_atomic

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
PARITY_NAME = "parity.json"
TASKS = ("classification", "segmentation")
STATUSES = ("accepted", "rejected", "unchecked")
# onnx_int8: the ONNX Runtime INT8 model; onnx_int8_tensorrt: the same calibration as TensorRT wants it
ARTIFACT_KINDS = ("onnx", "onnx_int8", "onnx_int8_tensorrt", "torchscript", "tensorrt")


@dataclass
class TensorSpec:
    name: str
    shape: list[int | str]  # symbolic dims are strings, e.g. ["batch", 1, 256, 256]
    dtype: str = "float32"


@dataclass
class Manifest:
    task: str
    model: str
    classes: list[str]
    input: TensorSpec
    output: TensorSpec
    preprocessing: PreprocessSpec
    threshold: float = 0.5
    batch_range: tuple[int, int] = (1, 8)
    artifacts: dict[str, str] = field(default_factory=dict)  # kind -> path relative to the bundle
    engines: list[dict[str, Any]] = field(default_factory=list)  # built engines (engine_cache records)
    metrics: dict[str, Any] = field(default_factory=dict)  # validation metrics at export
    provenance: dict[str, Any] = field(default_factory=dict)  # checkpoint/split hashes, versions
    export: dict[str, Any] = field(default_factory=dict)  # export settings
    status: str = "unchecked"  # set by the parity gate
    latency_only: bool = False  # True for freshly initialized (untrained) models
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["preprocessing"] = self.preprocessing.to_dict()
        data["batch_range"] = list(self.batch_range)
        return data

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "an integer",
               float: "a number"}


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)


def _json_name(value: Any) -> str:
    """What a JSON value is, in words: null, true, a string ..."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _is_kind(value: Any, kind: type | tuple) -> bool:
    """isinstance, except that true/false is not a number (bool is an int subclass in Python)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def _bad(where: Path, key: str, problem: str) -> BundleError:
    return BundleError(f"{where}: manifest field '{key}' {problem}; fix it or re-export the bundle with `edge-bus export`")


def _require(data: dict, key: str, kind: type | tuple, where: Path) -> Any:
    if key not in data:
        raise BundleError(f"{where}: manifest is missing the field '{key}'; re-export the bundle with `edge-bus export`")
    value = data[key]
    if not _is_kind(value, kind):
        raise _bad(where, key, f"must be {_kind_name(kind)}, got {_json_name(value)}")
    return value


def _optional(data: dict, key: str, kind: type | tuple, default: Any, where: Path) -> Any:
    """An optional field: absent means `default`; present (null included) it must be of `kind`."""
    return _require(data, key, kind, where) if key in data else default


def _dimension_ok(dim: Any) -> bool:
    return (_is_kind(dim, int) and dim > 0) or (isinstance(dim, str) and bool(dim))


def _tensor(data: Any, key: str, where: Path) -> TensorSpec:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("shape"), list):
        raise BundleError(f"{where}: manifest field '{key}' must be an object with 'name' and 'shape'")
    shape = data["shape"]
    if not shape or not all(_dimension_ok(d) for d in shape):
        raise _bad(where, f"{key}.shape", f"must list positive integers or symbolic names, got {shape}")
    dtype = data.get("dtype", "float32")
    if not isinstance(dtype, str):
        raise _bad(where, f"{key}.dtype", f"must be a string, got {_json_name(dtype)}")
    return TensorSpec(name=data["name"], shape=list(shape), dtype=dtype)


# PreprocessSpec fields and their JSON types (PreprocessSpec.from_dict checks values, not types).
_PREPROCESSING_TYPES = {"size": int, "mean": (int, float), "std": (int, float), "color": str, "layout": str,
                        "interpolation": str, "mask_interpolation": str, "version": int, "extra": dict}


def _preprocessing(data: dict, where: Path) -> PreprocessSpec:
    spec = _require(data, "preprocessing", dict, where)
    for name, kind in _PREPROCESSING_TYPES.items():
        if name in spec and not _is_kind(spec[name], kind):
            raise _bad(where, f"preprocessing.{name}", f"must be {_kind_name(kind)}, got {spec[name]!r}")
    try:
        return PreprocessSpec.from_dict(spec)
    except PreprocessError as exc:
        raise BundleError(f"{where}: {exc}") from None


def _artifacts(data: dict, where: Path) -> dict[str, str]:
    artifacts = _require(data, "artifacts", dict, where)
    unknown = sorted(set(artifacts) - set(ARTIFACT_KINDS))
    if unknown:
        raise BundleError(f"{where}: manifest lists unknown artifact kinds {unknown}; known: {list(ARTIFACT_KINDS)}")
    for kind, rel in artifacts.items():
        if not isinstance(rel, str) or not rel:
            raise _bad(where, f"artifacts.{kind}", f"must be a file name inside the bundle, got {rel!r}")
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise _bad(where, f"artifacts.{kind}", f"must be a path inside the bundle folder, got {rel!r}")
    return dict(artifacts)


def _engines(data: dict, where: Path) -> list[dict[str, Any]]:
    engines = _optional(data, "engines", list, [], where)
    for i, entry in enumerate(engines):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise _bad(where, f"engines[{i}]", "must be an engine record (an object with a 'path')")
    return list(engines)


def _check_shapes(inp: TensorSpec, out: TensorSpec, task: str, classes: list[str], size: int, where: Path) -> None:
    """Declared (integer) dimensions must agree with preprocessing.size and the classes."""
    if len(inp.shape) != 4 or (_is_kind(inp.shape[1], int) and inp.shape[1] != 1):
        raise _bad(where, "input.shape", f"must be [batch, 1, size, size], got {inp.shape}")
    if any(_is_kind(d, int) and d != size for d in inp.shape[2:]):
        raise _bad(where, "input.shape", f"is {inp.shape} but preprocessing.size is {size}")
    rank = 2 if task == "classification" else 4
    if len(out.shape) != rank:
        expected = "[batch, classes]" if task == "classification" else "[batch, 1, size, size]"
        raise _bad(where, "output.shape", f"must be {expected} for {task}, got {out.shape}")
    if _is_kind(out.shape[1], int) and out.shape[1] != len(classes):
        raise _bad(where, "output.shape", f"has {out.shape[1]} channels but 'classes' names {len(classes)}")
    if any(_is_kind(d, int) and d != size for d in out.shape[2:]):
        raise _bad(where, "output.shape", f"is {out.shape} but preprocessing.size is {size}")


def manifest_from_dict(data: dict[str, Any], where: Path = Path("manifest.json")) -> Manifest:
    """Validate a manifest dict; every problem names the file and the field."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: manifest must be a JSON object")
    version = _require(data, "schema_version", int, where)
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{where}: manifest schema_version {version} is not supported (this edge-bus reads {SCHEMA_VERSION}); "
            "re-export the bundle with this version of edge-bus"
        )
    task = _require(data, "task", str, where)
    if task not in TASKS:
        raise BundleError(f"{where}: manifest field 'task' is '{task}', expected one of {list(TASKS)}")
    classes = _require(data, "classes", list, where)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise BundleError(f"{where}: manifest field 'classes' must be a non-empty list of names")
    spec = _preprocessing(data, where)
    threshold = float(_require(data, "threshold", (int, float), where))
    if not 0.0 < threshold < 1.0:
        raise BundleError(f"{where}: manifest field 'threshold' must lie in (0, 1), got {threshold}")
    batch_range = _require(data, "batch_range", list, where)
    if len(batch_range) != 2 or not all(_is_kind(b, int) and b >= 1 for b in batch_range) or batch_range[0] > batch_range[1]:
        raise BundleError(f"{where}: manifest field 'batch_range' must be [min, max] with 1 <= min <= max")
    status = _require(data, "status", str, where)
    if status not in STATUSES:
        raise BundleError(f"{where}: manifest field 'status' is '{status}', expected one of {list(STATUSES)}")
    inp, out = _tensor(data.get("input"), "input", where), _tensor(data.get("output"), "output", where)
    _check_shapes(inp, out, task, classes, spec.size, where)
    return Manifest(
        task=task,
        model=_require(data, "model", str, where),
        classes=list(classes),
        input=inp,
        output=out,
        preprocessing=spec,
        threshold=threshold,
        batch_range=(batch_range[0], batch_range[1]),
        artifacts=_artifacts(data, where),
        engines=_engines(data, where),
        metrics=dict(_optional(data, "metrics", dict, {}, where)),
        provenance=dict(_optional(data, "provenance", dict, {}, where)),
        export=dict(_optional(data, "export", dict, {}, where)),
        status=status,
        latency_only=_optional(data, "latency_only", bool, False, where),
        schema_version=version,
    )


@dataclass
class Bundle:
    root: Path
    manifest: Manifest

    def artifact_path(self, kind: str) -> Path:
        """Path of an artifact; BundleError naming the bundle and the fix when it is absent."""
        rel = self.manifest.artifacts.get(kind)
        if rel is None:
            have = sorted(self.manifest.artifacts) or ["none"]
            raise BundleError(
                f"{self.root}: bundle has no '{kind}' artifact (it has: {', '.join(have)}); "
                f"re-export with `edge-bus export ... --formats {kind}` or choose another backend"
            )
        path = self.root / rel
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing; re-export the bundle")
        return path

    def require_accepted(self, *, allow_rejected: bool = False, allow_unchecked: bool = False) -> None:
        """Refuse a bundle that failed its parity gate, and one that never passed it on real images.

        "unchecked" is the status of latency-only bundles (freshly initialized weights, gated on
        tensor error only); export writes it for them and nothing promotes them to "accepted"."""
        status = self.manifest.status
        if status == "rejected" and not allow_rejected:
            raise BundleError(
                f"{self.root}: bundle failed its parity gate (see {self.root / PARITY_NAME}); "
                "fix the export or pass --allow-rejected to run it anyway"
            )
        if status == "unchecked" and not allow_unchecked:
            what = "a latency-only bundle of an untrained model" if self.manifest.latency_only else "not parity-gated"
            raise BundleError(
                f"{self.root}: bundle is unchecked ({what}: its outputs mean nothing); export a trained "
                "checkpoint with `edge-bus export CHECKPOINT --out DIR`, or pass --allow-unchecked to run it anyway"
            )


def read_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    data = read_json(p, BundleError, what="manifest", fix="re-export the bundle",
                     missing=f"a bundle folder holds {MANIFEST_NAME} (see `edge-bus export`)")
    return manifest_from_dict(data, p)


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    return write_json_atomic(path, manifest.to_dict())


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle folder (or its manifest.json) and validate the manifest."""
    p = Path(path)
    if p.is_file() and p.name == MANIFEST_NAME:
        p = p.parent
    if not p.exists():
        raise BundleError(f"{p}: no such bundle folder")
    if not p.is_dir():
        raise BundleError(f"{p}: a bundle is a folder holding {MANIFEST_NAME}, not a file")
    return Bundle(root=p, manifest=read_manifest(p / MANIFEST_NAME))
