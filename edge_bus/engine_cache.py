"""TensorRT engine cache: which engine file fits this machine, and which ones are stale.

No torch and no tensorrt at import time (the runtime reads this on carts; tests run it on machines
without a GPU). An engine is only valid for the ONNX file it was built from, the TensorRT version
that built it, the GPU model and compute capability it was built on, and its precision. All five
go into the cache key, as jetson-inference's tensorNet.cpp puts device and precision into its
engine cache file name:

    engines/<model>-<precision>-<key[:16]>.engine     the serialized engine
    engines/<model>-<precision>-<key[:16]>.json       its record (EngineRecord, below)

INT8 engines are built from the bundle's symmetric QDQ model.int8.tensorrt.onnx when it has one
(`source_kind`), so their key holds that file's hash. TensorRT timing caches are kept per TensorRT version + GPU
(`timing_cache_path`). Precision "auto" (`lookup_auto`) takes the first fresh engine of fp16, fp32, int8.

`lookup()` answers "fresh" (load it), "stale" (an engine for this precision exists but was built for
another ONNX/TensorRT/GPU, or its file no longer has the size and SHA-256 its record holds: rebuild
it, never load it) or "missing". Loading an engine (the runtime: `verify_sha256=False`) checks its
file's size only, since hashing a large engine at every start costs seconds; build-engine and
`edge-bus info` (the default) also check its SHA-256.

A new engine is built into a staging file (`StagedEngine`, invisible to lookup), gated, and only
then published: moved to its final name, then its record written.

This code is written against the TensorRT 10 Python API; `import_tensorrt()` refuses any other
major version (TensorRT 11 removes BuilderFlag.FP16/INT8 and the INT8 calibrator API).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_bus.errors import BackendError, BundleError
from edge_bus.fileio import read_json, sha256_file, write_json_atomic

PRECISIONS = ("fp32", "fp16", "int8")
ENGINES_DIR = "engines"
KEY_FIELDS = ("onnx_sha256", "trt_version", "gpu_name", "compute_capability", "precision")


file_sha256 = sha256_file  # old name, kept for callers outside this package

# "auto" precision: the best fresh engine for this GPU, in this order.
AUTO_ORDER = ("fp16", "fp32", "int8")
# The ONNX file each precision's engine is built from: INT8 uses the bundle's symmetric QDQ model
# (explicit quantization) when it has one, the others the FP32 model. (The bundle's onnx_int8 is
# asymmetric, for ONNX Runtime, and TensorRT cannot build from it.)
INT8_ONNX_KIND = "onnx_int8_tensorrt"


def source_kind(precision: str, artifacts: dict[str, str] | None) -> str:
    """Which bundle artifact an engine of `precision` is built from ("onnx" or "onnx_int8_tensorrt")."""
    if check_precision(precision) == "int8" and INT8_ONNX_KIND in (artifacts or {}):
        return INT8_ONNX_KIND
    return "onnx"


def timing_cache_path(bundle_root: str | Path, target: "Target") -> Path:
    """One TensorRT timing cache per TensorRT version + GPU (a cache from another GPU is useless)."""
    tag = hashlib.sha256(f"{target.trt_version}|{target.gpu_name.strip()}|{target.compute_capability}".encode()).hexdigest()
    return Path(bundle_root) / ENGINES_DIR / f"timing-{tag[:16]}.cache"


def check_precision(precision: str) -> str:
    p = precision.lower()
    if p not in PRECISIONS:
        raise BundleError(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}")
    return p


@dataclass(frozen=True)
class Target:
    """What an engine is tied to besides its ONNX file: TensorRT version and GPU."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"

    def describe(self) -> str:
        return f"TensorRT {self.trt_version} on {self.gpu_name} (compute {self.compute_capability})"


def engine_key(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str, precision: str) -> str:
    """The cache key: SHA-256 over the five things an engine depends on (stable across runs)."""
    payload = json.dumps(
        {
            "onnx_sha256": onnx_sha256,
            "trt_version": str(trt_version),
            "gpu_name": str(gpu_name).strip(),
            "compute_capability": str(compute_capability),
            "precision": check_precision(precision),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def engine_filename(model: str, precision: str, key: str) -> str:
    """Engine path relative to the bundle: engines/<model>-<precision>-<key[:16]>.engine."""
    return f"{ENGINES_DIR}/{_safe(model)}-{check_precision(precision)}-{key[:16]}.engine"


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(engine_path).with_suffix(".json")


@dataclass
class EngineRecord:
    """What is known about one built engine; written next to it and into manifest['engines']."""

    path: str  # relative to the bundle root
    key: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    batch_range: list[int] = field(default_factory=lambda: [1, 1])
    input_size: int = 256
    workspace_bytes: int | None = None
    build_seconds: float | None = None
    built_at: str | None = None
    calibration: dict[str, Any] | None = None
    source_onnx: str | None = None  # the bundle file it was built from (model.onnx or model.int8.onnx)
    quantization: str | None = None  # int8 only: "explicit (Q/DQ)" or "implicit (calibrator)"
    engine_sha256: str | None = None  # of the .engine file as published (None: record of an older edge-bus)
    engine_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def target(self) -> Target:
        return Target(self.trt_version, self.gpu_name, self.compute_capability)

    @classmethod
    def from_dict(cls, data: Any, where: str | Path = "engine record") -> "EngineRecord":
        if not isinstance(data, dict):
            raise BundleError(f"{where}: engine record must be a JSON object; rebuild with `edge-bus export build-engine`")
        missing = [f for f in ("path", "key", *KEY_FIELDS) if f not in data]
        if missing:
            raise BundleError(
                f"{where}: engine record lacks {missing}; rebuild the engine with `edge-bus export build-engine BUNDLE`"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def expected_key(self) -> str:
        return engine_key(self.onnx_sha256, self.trt_version, self.gpu_name, self.compute_capability, self.precision)


def make_record(
    model: str, onnx_sha256: str, target: Target, precision: str, **extra: Any
) -> EngineRecord:
    key = engine_key(onnx_sha256, target.trt_version, target.gpu_name, target.compute_capability, precision)
    return EngineRecord(
        path=engine_filename(model, precision, key),
        key=key,
        onnx_sha256=onnx_sha256,
        trt_version=target.trt_version,
        gpu_name=target.gpu_name,
        compute_capability=target.compute_capability,
        precision=check_precision(precision),
        **extra,
    )


def write_record(record: EngineRecord, bundle_root: str | Path) -> Path:
    return write_json_atomic(sidecar_path(Path(bundle_root) / record.path), record.to_dict())


def staging_path(bundle_root: str | Path, record: EngineRecord) -> Path:
    """Where an engine is built before its gate: a hidden file next to its final name (no record)."""
    final = Path(bundle_root) / record.path
    return final.with_name(f".{final.name}.{os.getpid()}.staging")


@dataclass
class StagedEngine:
    """A built, not yet published engine: lookup() cannot see it until publish()."""

    record: EngineRecord
    path: Path  # the staging file

    def publish(self, bundle_root: str | Path) -> EngineRecord:
        """Move the engine to its final name, then write its record with the file's size and SHA-256."""
        self.record.engine_bytes = self.path.stat().st_size
        self.record.engine_sha256 = sha256_file(self.path)
        os.replace(self.path, Path(bundle_root) / self.record.path)
        write_record(self.record, bundle_root)
        return self.record

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def read_record(path: str | Path) -> EngineRecord:
    p = Path(path)
    data = read_json(p, BundleError, what="engine record", fix="delete it and run `edge-bus export build-engine`",
                     missing="rebuild with `edge-bus export build-engine`")
    return EngineRecord.from_dict(data, p)


def bundle_records(bundle_root: str | Path, manifest_engines: list[dict] | None = None) -> list[EngineRecord]:
    """Every engine record of a bundle: sidecars in engines/ plus manifest entries (deduplicated by path)."""
    root = Path(bundle_root)
    records: dict[str, EngineRecord] = {}
    for entry in manifest_engines or []:
        rec = EngineRecord.from_dict(entry, root / "manifest.json")
        records[rec.path] = rec
    folder = root / ENGINES_DIR
    if folder.is_dir():
        for sidecar in sorted(folder.glob("*.json")):
            if sidecar.name.endswith(".timing.json"):
                continue
            rec = read_record(sidecar)
            records[rec.path] = rec
    return list(records.values())


def engine_file_problem(bundle_root: str | Path, record: EngineRecord, *, verify_sha256: bool = True) -> str | None:
    """Why the engine file does not match its record (missing, truncated, replaced), or None.

    Without `verify_sha256` only its size is compared (a truncated or partly copied file changes size)."""
    path = Path(bundle_root) / record.path
    if not path.is_file():
        return f"engine file {record.path} is missing"
    if record.engine_bytes is not None and path.stat().st_size != record.engine_bytes:
        return f"engine file is {path.stat().st_size} bytes, its record says {record.engine_bytes} (truncated or replaced)"
    if verify_sha256 and record.engine_sha256 is not None and sha256_file(path) != record.engine_sha256:
        return "engine file's SHA-256 differs from its record (changed after it was built)"
    return None


def mismatches(record: EngineRecord, onnx_sha256: str, target: Target) -> list[str]:
    """Why `record` does not fit (empty when it fits), in words for the user."""
    reasons = []
    if record.onnx_sha256 != onnx_sha256:
        reasons.append(f"built from another model.onnx (sha256 {record.onnx_sha256[:12]}, now {onnx_sha256[:12]})")
    if str(record.trt_version) != str(target.trt_version):
        reasons.append(f"built with TensorRT {record.trt_version}, this machine has {target.trt_version}")
    if record.gpu_name.strip() != target.gpu_name.strip():
        reasons.append(f"built on GPU '{record.gpu_name}', this machine has '{target.gpu_name}'")
    if str(record.compute_capability) != str(target.compute_capability):
        reasons.append(
            f"built for compute capability {record.compute_capability}, this GPU is {target.compute_capability}"
        )
    if not reasons and record.key != record.expected_key():
        reasons.append("its record was edited (key does not match its fields)")
    return reasons


@dataclass
class Lookup:
    status: str  # "fresh" | "stale" | "missing"
    precision: str
    record: EngineRecord | None = None  # the fresh engine, or the closest stale one
    reasons: list[str] = field(default_factory=list)
    expected_path: str | None = None  # where a fresh engine for this machine goes

    def message(self, bundle_root: str | Path) -> str:
        fix = f"run `edge-bus export build-engine {bundle_root} --precision {self.precision}` on this machine"
        if self.status == "stale" and self.record is not None:
            return f"{Path(bundle_root) / self.record.path}: stale {self.precision} engine ({'; '.join(self.reasons)}); {fix}"
        if self.status == "missing":
            return f"{bundle_root}: no {self.precision} TensorRT engine in {ENGINES_DIR}/; {fix}"
        return f"{Path(bundle_root) / self.record.path}: fresh" if self.record else "fresh"


def lookup(
    bundle_root: str | Path,
    *,
    model: str,
    onnx_sha256: str,
    target: Target,
    precision: str,
    records: list[EngineRecord] | None = None,
    verify_sha256: bool = True,
) -> Lookup:
    """Find the engine for (onnx, TensorRT, GPU, precision); a fresh record's file must exist and,
    where the record holds them, have its size and (with `verify_sha256`) its SHA-256."""
    precision = check_precision(precision)
    root = Path(bundle_root)
    if records is None:
        records = bundle_records(root)
    key = engine_key(onnx_sha256, target.trt_version, target.gpu_name, target.compute_capability, precision)
    expected = engine_filename(model, precision, key)
    same_precision = [r for r in records if r.precision == precision]
    damaged: list[tuple[EngineRecord, str]] = []
    for rec in same_precision:
        if rec.key == key and not mismatches(rec, onnx_sha256, target):
            problem = engine_file_problem(root, rec, verify_sha256=verify_sha256)
            if problem is None:
                return Lookup("fresh", precision, rec, [], expected)
            damaged.append((rec, problem))
    if damaged:
        rec, problem = damaged[0]
        return Lookup("stale", precision, rec, [problem], expected)
    if same_precision:
        best = min(same_precision, key=lambda r: len(mismatches(r, onnx_sha256, target)))
        reasons = mismatches(best, onnx_sha256, target) or [f"engine file {best.path} is missing"]
        return Lookup("stale", precision, best, reasons, expected)
    return Lookup("missing", precision, None, [], expected)


def lookup_auto(
    bundle_root: str | Path,
    *,
    model: str,
    onnx_sha256: dict[str, str],
    target: Target,
    records: list[EngineRecord] | None = None,
    verify_sha256: bool = True,
) -> Lookup:
    """precision "auto": the first fresh engine in AUTO_ORDER (fp16, fp32, int8).

    `onnx_sha256` maps each precision to the SHA-256 of the ONNX file its engine is built from
    (see source_kind). When none is fresh, returns the fp16 answer (stale or missing), whose
    message says how to build one.
    """
    root = Path(bundle_root)
    if records is None:
        records = bundle_records(root)
    answers = []
    for precision in AUTO_ORDER:
        if precision not in onnx_sha256:
            continue
        found = lookup(root, model=model, onnx_sha256=onnx_sha256[precision], target=target,
                       precision=precision, records=records, verify_sha256=verify_sha256)
        if found.status == "fresh":
            return found
        answers.append(found)
    stale = [a for a in answers if a.status == "stale"]
    return stale[0] if stale else answers[0]


TRT_MAJOR = 10  # the TensorRT Python API this code is written against
TRT_INSTALL = "pip install 'edge-bus[tensorrt]'"  # pins tensorrt-cu12>=10,<11 and cuda-python


def import_tensorrt():
    """The tensorrt module, when it is TensorRT 10; BackendError saying how to get it otherwise."""
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        raise BackendError(
            "TensorRT is not installed here (on a Jetson it comes with JetPack 6: python3-libnvinfer; on a PC: "
            f"{TRT_INSTALL}); build engines on the target with `edge-bus export build-engine BUNDLE`, "
            "or run with --backend onnxruntime"
        ) from None
    version = str(getattr(trt, "__version__", "unknown"))
    if version.split(".")[0] != str(TRT_MAJOR):
        raise BackendError(
            f"TensorRT {version} is installed here, but edge-bus needs TensorRT {TRT_MAJOR} (its builder API changed); "
            f"install it with: {TRT_INSTALL} (JetPack 6 on a Jetson), or run with --backend onnxruntime"
        )
    return trt


def current_target(device: int = 0) -> Target:
    """This machine's TensorRT version and CUDA device `device`; BackendError when tensorrt
    (version 10) or the GPU is missing."""
    trt = import_tensorrt()
    name, cc = gpu_identity(device)
    return Target(trt_version=str(trt.__version__), gpu_name=name, compute_capability=cc)


def cudart_module():
    """cuda-python's runtime module under its new (cuda.bindings) or old (cuda.cudart) name."""
    try:
        from cuda.bindings import runtime as cudart  # noqa: PLC0415
    except ImportError:
        try:
            from cuda import cudart  # type: ignore  # noqa: PLC0415
        except ImportError:
            raise BackendError(
                "cuda-python is not installed here; install it with: pip install 'edge-bus[tensorrt]' (cuda-python)"
            ) from None
    return cudart


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, "major.minor") of CUDA device `device` via cuda-python."""
    cudart = cudart_module()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        raise BackendError(f"no CUDA GPU visible here ({err}); TensorRT needs one; use --backend onnxruntime")
    if device >= count:
        raise BackendError(f"CUDA device {device} does not exist (this machine has {count})")
    err, props = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise BackendError(f"cannot read the properties of CUDA device {device} ({err})")
    name = props.name.decode("utf-8", "replace") if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"
