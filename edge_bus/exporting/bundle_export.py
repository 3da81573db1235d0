"""export_bundle / fresh_bundle / build_engines: the steps of issue 4 put together.

Each step is a small function of its own module (to_onnx, to_torchscript, quantize, to_tensorrt,
parity); this module only orders them, shows progress and writes the manifest.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from edge_bus.bundle import MANIFEST_NAME, PARITY_NAME, Manifest, TensorSpec, open_bundle, write_manifest
from edge_bus.engine_cache import ENGINES_DIR, PRECISIONS, bundle_records, check_precision, lookup, source_kind
from edge_bus.errors import BackendError, BundleError, ConfigError
from edge_bus.exporting import parity as P
from edge_bus.exporting.calibration import ImageSet, image_set, training_pack
from edge_bus.exporting.source import ModelSpec, library_versions, resolve_source
from edge_bus.fileio import sha256_file

FORMATS = ("onnx", "onnx_int8", "torchscript", "tensorrt")
FILES = {"onnx": "model.onnx", "onnx_int8": "model.int8.onnx", "onnx_int8_tensorrt": "model.int8.tensorrt.onnx",
         "torchscript": "model.ts"}
CALIBRATION_NAME = "calibration.npz"


@dataclass
class ExportResult:
    root: Path
    manifest: Manifest
    parity: dict[str, Any]
    messages: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.parity.get("passed", False))


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    aliases = {"ts": "torchscript", "trt": "tensorrt", "int8": "onnx_int8", "onnx-int8": "onnx_int8"}
    items = [aliases.get(f, f) for f in items]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise ConfigError(f"--formats: unknown format(s) {bad or '(none)'}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def parse_precisions(precisions: str | Iterable[str]) -> list[str]:
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    try:
        return list(dict.fromkeys(check_precision(p.strip()) for p in items if p.strip()))
    except BundleError:
        raise ConfigError(f"--precision: {list(items)} must be a comma list of {', '.join(PRECISIONS)}") from None


def parse_batch(batch: str | Sequence[int]) -> tuple[int, int]:
    try:
        if isinstance(batch, str):
            parts = [int(x) for x in batch.split(":")]
        else:
            parts = [int(x) for x in batch]
        lo, hi = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    except (ValueError, IndexError):
        raise ConfigError(f"--batch: expected MIN:MAX such as 1:8, got {batch!r}") from None
    if not 1 <= lo <= hi:
        raise ConfigError(f"--batch: expected 1 <= MIN <= MAX, got {batch!r}")
    return lo, hi


class _Progress:
    """A rich progress bar over named steps (or silence)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = total
        self._progress = None

    @contextmanager
    def run(self) -> Iterator["_Progress"]:
        if not self.enabled:
            yield self
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), transient=False) as progress:
            self._progress = progress
            self._task = progress.add_task("export", total=self.total)
            yield self

    def step(self, description: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description)

    def done(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)


def _tensorrt_target_or_reason():
    from edge_bus.engine_cache import current_target  # noqa: PLC0415

    try:
        return current_target(), None
    except BackendError as exc:
        return None, str(exc)


def _manifest(src, *, artifacts, batch_range, export, status, latency_only, parity_summary) -> Manifest:
    size = src.spec.size
    out_shape: list[int | str] = ["batch", len(src.classes)] if src.task == "classification" else ["batch", 1, size, size]
    metrics = dict(src.metrics)
    return Manifest(
        task=src.task,
        model=src.name,
        classes=list(src.classes),
        input=TensorSpec("input", ["batch", 1, size, size]),
        output=TensorSpec("logits", out_shape),
        preprocessing=src.spec,
        threshold=float(src.threshold),
        batch_range=batch_range,
        artifacts=artifacts,
        engines=[],
        metrics=metrics,
        provenance={**src.provenance, "export_versions": library_versions(), "parity": parity_summary},
        export=export,
        status=status,
        latency_only=latency_only,
    )


def export_bundle(
    source: Any,
    out_dir: str | Path,
    *,
    formats: str | Iterable[str] = ("onnx", "torchscript"),
    precisions: str | Iterable[str] = ("fp16",),
    batch_range: str | Sequence[int] = (1, 8),
    size: int | None = None,
    pack: str | Path | None = None,
    data: str | Path | None = None,
    parity_images: int = 128,
    calibration_images: int = 64,
    workspace_gb: float = 2.0,
    opset: int = 18,
    latency_only: bool = False,
    recipe: str | None = None,
    expect_model: str | None = None,
    overwrite: bool = True,
    progress: bool = False,
) -> ExportResult:
    """Export a checkpoint/ensemble (path) or ModelSpec into a bundle folder; gate every artifact.

    Writes manifest.json, model.onnx (always: engines and INT8 derive from it), the requested
    other formats, engines/ (TensorRT where importable), parity.json and parity_reference.npz.
    The manifest status is "accepted"/"rejected" from the gate, "unchecked" when latency_only.

    Parity and INT8 calibration images: --pack / --data, else (trained models) the pack recorded in
    the checkpoint when it still holds the training split, else ConfigError. Phantoms only for
    untrained or latency-only exports.

    The bundle is built in a sibling folder OUT.tmp-<pid> and moved into place only when every
    step succeeded: a failed export leaves an existing bundle untouched and never blocks a retry.
    """
    formats = parse_formats(formats)
    formats.sort(key=FORMATS.index)  # onnx_int8 before tensorrt (the INT8 engine is built from it)
    precisions = parse_precisions(precisions)
    if "tensorrt" in formats and "int8" in precisions and "onnx_int8" not in formats:
        formats.insert(formats.index("tensorrt"), "onnx_int8")  # explicit quantization needs the QDQ model
    lo, hi = parse_batch(batch_range)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise BundleError(f"{root}: exists and is not a folder; choose another --out")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise BundleError(f"{root}: folder is not empty; choose another --out or allow overwriting")
        if not (root / MANIFEST_NAME).is_file():
            raise BundleError(f"{root}: not empty and not a bundle; refusing to write into it, choose another --out")
    src = resolve_source(source, size=size)
    if expect_model and src.name != expect_model:
        raise ConfigError(
            f"{recipe or 'recipe'}: written for model '{expect_model}' but {source} holds '{src.name}'; "
            "pick the recipe of that model"
        )
    messages: list[str] = []
    phantoms = latency_only or not src.trained
    if src.trained and not pack and not data:
        pack = training_pack(src.recorded_pack, src.split_hash, str(source))
        if pack:
            messages.append(f"parity and calibration images from the training pack {pack} (recorded in {source})")
        elif not phantoms:
            recorded = f"its recorded pack {src.recorded_pack} is not here" if src.recorded_pack else "it records no pack"
            raise ConfigError(
                f"{source}: the parity gate of a trained model needs its data and {recorded}; "
                "pass --pack PACK.npz (the pack it was trained from) or --data BUSI_FOLDER"
            )
    elif pack and src.split_hash:
        from edge_bus.data.pack import load_pack  # noqa: PLC0415

        if load_pack(pack).split_hash != src.split_hash:
            messages.append(f"warning: {pack} holds another split than the one {source} was trained on; "
                            "its val images may include training images")

    work = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / ENGINES_DIR).mkdir(parents=True)
    try:
        manifest, report = _export_into(
            work, root, src, formats=formats, precisions=precisions, batch=(lo, hi), pack=pack, data=data,
            phantoms=phantoms, parity_images=parity_images, calibration_images=calibration_images,
            workspace_gb=workspace_gb, opset=opset, latency_only=latency_only, recipe=recipe,
            messages=messages, progress=progress,
        )
        _swap_in(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if not src.trained and not latency_only:
        messages.append("the model is freshly initialized (no checkpoint): parity shows export fidelity only")
    return ExportResult(root, manifest, report, messages)


def _swap_in(work: Path, root: Path) -> None:
    """Replace `root` by the finished `work` folder with renames (the old bundle goes last)."""
    if not root.exists():
        os.replace(work, root)
        return
    old = root.with_name(f"{root.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(root, old)
    try:
        os.replace(work, root)
    except BaseException:
        os.replace(old, root)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _export_into(work: Path, root: Path, src, *, formats, precisions, batch, pack, data, phantoms, parity_images,
                 calibration_images, workspace_gb, opset, latency_only, recipe, messages, progress):
    """Every export step, writing into `work`; messages name the final folder `root`."""
    from edge_bus.exporting.to_onnx import export_onnx, ort_session, run_onnx  # noqa: PLC0415
    from edge_bus.exporting.to_torchscript import run_torch  # noqa: PLC0415

    lo, hi = batch
    S = src.spec.size
    bar = _Progress(progress, 3 + len(formats))
    with bar.run():
        # Reference outputs of the FP32 PyTorch model on the parity images.
        bar.step("parity images + FP32 reference")
        n_parity = min(parity_images, 4) if latency_only else parity_images
        images: ImageSet = image_set(pack=pack, data=data, split="val", n=n_parity, size=S, seed=0, phantoms=phantoms)
        inputs = images.inputs(src.spec)
        ref_logits = run_torch(src.model, inputs)
        ref = P.make_reference(src.task, ref_logits, images.images, images.masks, images.labels, src.threshold, images.source)
        bar.done()

        bar.step("ONNX export")
        artifacts: dict[str, str] = {}
        onnx_path = export_onnx(src.model, work / FILES["onnx"], size=S, opset=opset, max_batch=max(hi, 64))
        artifacts["onnx"] = FILES["onnx"]
        outputs: dict[tuple[str, str], np.ndarray] = {("onnx", "fp32"): run_onnx(ort_session(onnx_path), inputs)}
        bar.done()

        calib: ImageSet | None = None
        if "onnx_int8" in formats:
            calib = image_set(pack=pack, data=data, split="train", n=calibration_images, size=S, seed=1,
                              phantoms=phantoms, purpose="INT8 calibration")
            np.savez_compressed(work / CALIBRATION_NAME, images=calib.images, source=np.array(calib.source))

        trt_info: dict[str, Any] = {"precisions": precisions, "built": []}
        for fmt in formats:
            if fmt == "onnx":
                bar.done()
                continue
            bar.step(f"{fmt} export")
            if fmt == "torchscript":
                from edge_bus.exporting.to_torchscript import export_torchscript, load_torchscript  # noqa: PLC0415

                export_torchscript(src.model, work / FILES["torchscript"], size=S)
                artifacts["torchscript"] = FILES["torchscript"]
                outputs[("torchscript", "fp32")] = run_torch(load_torchscript(work / FILES["torchscript"]), inputs)
            elif fmt == "onnx_int8":
                from edge_bus.exporting.quantize import quantize_int8  # noqa: PLC0415

                calib_inputs = calib.inputs(src.spec)
                for kind, for_tensorrt in (("onnx_int8", False), ("onnx_int8_tensorrt", True)):
                    quantize_int8(onnx_path, work / FILES[kind], calib_inputs, for_tensorrt=for_tensorrt)
                    artifacts[kind] = FILES[kind]
                    outputs[(kind, "int8")] = run_onnx(ort_session(work / FILES[kind]), inputs)
            elif fmt == "tensorrt":
                target, reason = _tensorrt_target_or_reason()
                if target is None:
                    trt_info["skipped"] = reason
                    messages.append(
                        f"TensorRT engines not built here ({reason.split(' (')[0]}). The rest of the bundle is written; "
                        f"build them on the target with: edge-bus export build-engine {root} --precision {','.join(precisions)}"
                    )
                else:
                    records = _build_and_run(work, src, artifacts, target, precisions, (lo, hi), workspace_gb,
                                             inputs, outputs)
                    trt_info["built"] = [r.to_dict() for r in records]
            bar.done()

        bar.step("parity gate")
        # The TensorRT QDQ model is not run by ONNX Runtime in use; what ONNX Runtime makes of it is
        # recorded for information, and the engine built from it is gated on the target GPU.
        informative = {"onnx_int8_tensorrt"} | ({"onnx_int8"} if latency_only else set())
        records = []
        for (kind, prec), out in outputs.items():
            if kind in informative:
                records.append({**P.compare(ref, out, artifact=kind, precision=prec), "informative_only": True})
            elif latency_only:
                records.append(P.numeric_check(ref_logits, out, artifact=kind))
            else:
                records.append(P.compare(ref, out, artifact=kind, precision=prec))
        report = P.summarize(records, latency_only=latency_only, source=ref.source)
        status = "unchecked" if latency_only else ("accepted" if report["passed"] else "rejected")
        P.write_parity(report, work / PARITY_NAME)
        P.save_reference(ref, work / P.REFERENCE_NAME)
        bar.done()

    export_settings = {
        "formats": formats,
        "precisions": precisions,
        "batch_range": [lo, hi],
        "input_size": S,
        "opset": opset,
        "onnx_exporter": "torch.onnx.export(dynamo=True)",
        "onnx_sha256": sha256_file(onnx_path),
        "parity_images": ref.source,
        "parity_count": len(ref),
        "calibration": calib.describe() if calib is not None else None,
        "workspace_gb": workspace_gb,
        "tensorrt": trt_info,
        "recipe": recipe,
    }
    manifest = _manifest(src, artifacts=artifacts, batch_range=(lo, hi), export=export_settings, status=status,
                         latency_only=latency_only, parity_summary={"passed": report["passed"], "file": PARITY_NAME})
    manifest.engines = [r for r in trt_info.get("built", [])]
    if manifest.engines:
        manifest.artifacts["tensorrt"] = manifest.engines[-1]["path"]
    write_manifest(manifest, work / MANIFEST_NAME)
    return manifest, report


def _build_and_run(work, src, artifacts, target, precisions, batch_range, workspace_gb, inputs, outputs):
    """Build each TensorRT precision and run it on the parity inputs (export on a GPU machine).

    INT8 is built from the symmetric QDQ model.int8.tensorrt.onnx (explicit quantization)."""
    from edge_bus.bundle import Bundle  # noqa: PLC0415
    from edge_bus.exporting.to_tensorrt import build_engine  # noqa: PLC0415
    from edge_bus.runtime.backends.base import BackendOptions  # noqa: PLC0415
    from edge_bus.runtime.backends.tensorrt import TensorRTBackend  # noqa: PLC0415

    records = []
    for precision in precisions:
        onnx_file = work / artifacts[source_kind(precision, artifacts)]
        rec = build_engine(onnx_file, work, model=src.name, target=target, precision=precision,
                           batch_range=batch_range, size=src.spec.size, workspace_gb=workspace_gb)
        records.append(rec)
        manifest = _manifest(src, artifacts=dict(artifacts), batch_range=batch_range, export={},
                             status="unchecked", latency_only=False, parity_summary={})
        backend = TensorRTBackend(Bundle(work, manifest), work / rec.path, precision, BackendOptions(precision=precision))
        try:
            outputs[("tensorrt", precision)] = backend(inputs)["logits"]
        finally:
            backend.close()
    return records


def fresh_bundle(model_name: str, out_dir: str | Path, size: int = 256, formats: Iterable[str] = ("onnx",),
                 **kwargs: Any) -> ExportResult:
    """A latency-only bundle of a freshly initialized roster model (status 'unchecked').

    Extra keyword arguments go to export_bundle (e.g. batch_range, precisions); `model_kwargs`
    goes to the model builder (e.g. {"width": 8}).
    """
    model_kwargs = kwargs.pop("model_kwargs", {}) or {}
    return export_bundle(ModelSpec(model_name, dict(model_kwargs), size=size), out_dir, formats=formats,
                         latency_only=True, **kwargs)


def build_engines(
    bundle_dir: str | Path,
    *,
    precisions: str | Iterable[str] = ("fp16",),
    workspace_gb: float = 2.0,
    pack: str | Path | None = None,
    data: str | Path | None = None,
    calibration_images: int = 64,
    force: bool = False,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """On the target: build (or rebuild stale) engines for this GPU and record them in the manifest.

    Each new engine is gated against parity_reference.npz (no torch needed); a failure marks the
    bundle rejected. Returns (engine records, messages).
    """
    from edge_bus.engine_cache import current_target  # noqa: PLC0415
    from edge_bus.exporting.to_tensorrt import build_engine  # noqa: PLC0415

    from edge_bus.exporting.to_onnx import check_onnx  # noqa: PLC0415

    bundle = open_bundle(bundle_dir)
    precisions = parse_precisions(precisions)
    m = bundle.manifest
    sources: dict[str, tuple[Path, str]] = {}  # precision -> (ONNX file it is built from, its sha256)
    for precision in precisions:
        path = bundle.artifact_path(source_kind(precision, m.artifacts))
        check_onnx(path)
        sources[precision] = (path, sha256_file(path))
    target = current_target()
    messages: list[str] = []
    built: list[dict[str, Any]] = []
    existing = bundle_records(bundle.root, m.engines)
    ref_path = bundle.root / P.REFERENCE_NAME
    ref = P.load_reference(ref_path) if ref_path.is_file() else None
    parity = P.read_parity(bundle.root / PARITY_NAME)
    for precision in precisions:
        onnx_path, sha = sources[precision]
        found = lookup(bundle.root, model=m.model, onnx_sha256=sha, target=target, precision=precision, records=existing)
        if found.status == "fresh" and not force:
            messages.append(f"{bundle.root / found.record.path}: up to date for {target.describe()}")
            continue
        if found.status == "stale":
            messages.append(f"rebuilding: {found.message(bundle.root)}")
            stale_file = bundle.root / found.record.path
            if found.record.onnx_sha256 != sha or (found.record.trt_version, found.record.gpu_name) == (target.trt_version, target.gpu_name):
                stale_file.unlink(missing_ok=True)
        calib = None
        calib_info = None
        if precision == "int8" and onnx_path.name != FILES["onnx_int8_tensorrt"]:  # no QDQ model: implicit calibration
            calib_set = _calibration_for(bundle, pack, data, calibration_images)
            calib, calib_info = calib_set.inputs(m.preprocessing), calib_set.describe()
        rec = build_engine(onnx_path, bundle.root, model=m.model, target=target, precision=precision,
                           batch_range=m.batch_range, size=m.preprocessing.size, workspace_gb=workspace_gb,
                           calibration=calib, calibration_info=calib_info)
        built.append(rec.to_dict())
        messages.append(f"built {bundle.root / rec.path} in {rec.build_seconds} s for {target.describe()}")
        if ref is not None:
            parity = _gate_engine(bundle, rec, ref, parity)
    if built:
        keep = {r["path"]: r for r in m.engines}
        for rec in built:
            keep[rec["path"]] = rec
        m.engines = [r for r in keep.values() if (bundle.root / r["path"]).is_file()]
        m.artifacts["tensorrt"] = built[-1]["path"]
        if ref is not None and not m.latency_only:
            m.status = "accepted" if parity.get("passed") else "rejected"
            P.write_parity(parity, bundle.root / PARITY_NAME)
        write_manifest(m, bundle.root / MANIFEST_NAME)
    return built, messages


def _calibration_for(bundle, pack, data, n: int) -> ImageSet:
    """INT8 calibration images for a bundle: the set stored at export, --pack/--data, the training
    pack recorded in the manifest, phantoms for latency-only bundles; else ConfigError."""
    root, m = bundle.root, bundle.manifest
    stored = root / CALIBRATION_NAME
    if not pack and not data and stored.is_file():
        with np.load(stored, allow_pickle=False) as z:
            images = z["images"]
            source = str(z["source"])
        return ImageSet(images, np.zeros_like(images), np.full(len(images), -1, np.int64), f"bundle:{source}")
    if not pack and not data and not m.latency_only:
        recorded = (m.provenance.get("train") or {}).get("pack")
        pack = training_pack(recorded, m.provenance.get("split_hash") or "", str(root / MANIFEST_NAME))
    return image_set(pack=pack, data=data, split="train", n=n, size=m.preprocessing.size, seed=1,
                     phantoms=m.latency_only, purpose=f"INT8 calibration of {root}")


def _gate_engine(bundle, rec, ref, parity: dict[str, Any]) -> dict[str, Any]:
    from edge_bus.runtime.backends.base import BackendOptions  # noqa: PLC0415
    from edge_bus.runtime.backends.tensorrt import TensorRTBackend  # noqa: PLC0415
    from edge_bus.data.preprocess import normalize  # noqa: PLC0415

    backend = TensorRTBackend(bundle, bundle.root / rec.path, rec.precision, BackendOptions(precision=rec.precision))
    try:
        logits = backend(normalize(ref.images, bundle.manifest.preprocessing))["logits"]
    finally:
        backend.close()
    record = {**P.compare(ref, logits, artifact="tensorrt", precision=rec.precision), "engine": rec.path,
              "target": rec.target.describe()}
    records = [r for r in parity.get("artifacts", []) if not (r.get("artifact") == "tensorrt" and r.get("engine") == rec.path)]
    records.append(record)
    out = {**parity, "artifacts": records}
    out["passed"] = all(r.get("passed", False) for r in records if not r.get("informative_only"))
    return out


def verify_bundle(bundle_dir: str | Path) -> dict[str, Any]:
    """Re-run the parity gate of an existing bundle on this machine (ONNX, INT8 ONNX, TorchScript
    where torch is present) against its parity_reference.npz; rewrites parity.json and the status."""
    from edge_bus.data.preprocess import normalize  # noqa: PLC0415
    from edge_bus.exporting.to_onnx import check_onnx, ort_session, run_onnx  # noqa: PLC0415

    bundle = open_bundle(bundle_dir)
    m = bundle.manifest
    ref = P.load_reference(bundle.root / P.REFERENCE_NAME)
    inputs = normalize(ref.images, m.preprocessing)
    records = []
    for kind, precision in (("onnx", "fp32"), ("onnx_int8", "int8"), ("onnx_int8_tensorrt", "int8"), ("torchscript", "fp32")):
        if kind not in m.artifacts:
            continue
        path = bundle.artifact_path(kind)
        if kind == "torchscript":
            try:
                from edge_bus.exporting.to_torchscript import load_torchscript, run_torch  # noqa: PLC0415

                logits = run_torch(load_torchscript(path), inputs)
            except ImportError:
                continue
        else:
            check_onnx(path)
            logits = run_onnx(ort_session(path), inputs)
        record = P.compare(ref, logits, artifact=kind, precision=precision)
        records.append({**record, "informative_only": True} if kind == "onnx_int8_tensorrt" else record)
    old = P.read_parity(bundle.root / PARITY_NAME)
    records += [r for r in old.get("artifacts", []) if r.get("artifact") == "tensorrt"]
    report = P.summarize(records, latency_only=False, source=ref.source)
    P.write_parity(report, bundle.root / PARITY_NAME)
    if not m.latency_only:
        m.status = "accepted" if report["passed"] else "rejected"
        write_manifest(m, bundle.root / MANIFEST_NAME)
    return report
