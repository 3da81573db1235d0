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
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from edge_bus.bundle import MANIFEST_NAME, PARITY_NAME, Bundle, Manifest, TensorSpec, open_bundle, write_manifest
from edge_bus.engine_cache import (
    ENGINES_DIR,
    PRECISIONS,
    EngineRecord,
    StagedEngine,
    bundle_records,
    check_precision,
    lookup,
    source_kind,
)
from edge_bus.errors import BackendError, BundleError, ConfigError
from edge_bus.exporting import parity as P
from edge_bus.exporting.calibration import ImageSet, data_split, image_set, training_pack
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


def check_count(option: str, value: Any, *, sep: str = ": ") -> int:
    """A number of images: a whole number >= 1 (0 would gate nothing, a negative one slices oddly).

    The error reads "<option><sep>must be a whole number >= 1" (recipes pass their file and key)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{option}{sep}must be a whole number >= 1, got {value!r}")
    return value


def int8_models(formats: list[str], precisions: list[str]) -> tuple[str, ...]:
    """Which INT8 ONNX files to write: onnx_int8 (ONNX Runtime's, gated) when asked for, with its
    TensorRT twin onnx_int8_tensorrt; the twin alone when only a TensorRT INT8 engine needs it."""
    if "onnx_int8" in formats:
        return ("onnx_int8", "onnx_int8_tensorrt")
    if "tensorrt" in formats and "int8" in precisions:
        return ("onnx_int8_tensorrt",)
    return ()


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
    split: str | Path | None = None,
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
    other formats, engines/ (TensorRT where importable; only engines that passed their gate),
    parity.json and parity_reference.npz. The manifest status is "accepted"/"rejected" from the
    gate, "unchecked" when latency_only.

    Parity and INT8 calibration images: --pack / --data (divided by the model's split manifest,
    see calibration.data_split; `split` is --split), else (trained models) the pack recorded in
    the checkpoint when it still holds the training split, else ConfigError. Phantoms only for
    untrained or latency-only exports.

    The bundle is built in a sibling folder OUT.tmp-<pid> and moved into place only when every
    step succeeded: a failed export leaves an existing bundle untouched and never blocks a retry.
    """
    formats = parse_formats(formats)
    formats.sort(key=FORMATS.index)
    precisions = parse_precisions(precisions)
    check_count("--parity-images", parity_images)
    check_count("--calibration-images", calibration_images)
    lo, hi = parse_batch(batch_range)
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise BundleError(f"{root}: exists and is not a folder; choose another --out")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise BundleError(f"{root}: folder is not empty; choose another --out or allow overwriting")
        if not (root / MANIFEST_NAME).is_file():
            raise BundleError(f"{root}: not empty and not a bundle; refusing to write into it, choose another --out")
    if split and not data:
        raise ConfigError("--split: divides a --data folder into val and train images; pass --data too (a pack carries its own split)")
    src = resolve_source(source, size=size)
    if expect_model and src.name != expect_model:
        raise ConfigError(
            f"{recipe or 'recipe'}: written for model '{expect_model}' but {source} holds '{src.name}'; "
            "pick the recipe of that model"
        )
    messages: list[str] = []
    phantoms = latency_only or not src.trained
    split_manifest = data_split(split, src.split_hash, str(source)) if data else None
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
    if data and split_manifest is None:
        messages.append(f"warning: {source} records no split; parity and calibration use disjoint seeded halves of {data}")
    int8 = int8_models(formats, precisions)
    if int8 == ("onnx_int8_tensorrt",):
        messages.append("INT8 TensorRT engine asked for: wrote its input model.int8.tensorrt.onnx only; the ONNX Runtime "
                        "INT8 model is not part of this bundle (add onnx_int8 to --formats to export and gate one)")

    work = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / ENGINES_DIR).mkdir(parents=True)
    try:
        manifest, report = _export_into(
            work, root, src, formats=formats, int8=int8, precisions=precisions, batch=(lo, hi), pack=pack,
            data=data, split_manifest=split_manifest, phantoms=phantoms, parity_images=parity_images,
            calibration_images=calibration_images, workspace_gb=workspace_gb, opset=opset,
            latency_only=latency_only, recipe=recipe, messages=messages, progress=progress,
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


def _export_into(work: Path, root: Path, src, *, formats, int8, precisions, batch, pack, data, split_manifest,
                 phantoms, parity_images, calibration_images, workspace_gb, opset, latency_only, recipe, messages,
                 progress):
    """Every export step, writing into `work`; messages name the final folder `root`."""
    from edge_bus.exporting.to_onnx import export_onnx, ort_session, run_onnx  # noqa: PLC0415
    from edge_bus.exporting.to_torchscript import run_torch  # noqa: PLC0415

    lo, hi = batch
    S = src.spec.size
    pick = {"pack": pack, "data": data, "split_manifest": split_manifest, "size": S, "phantoms": phantoms}
    bar = _Progress(progress, 3 + bool(int8) + ("torchscript" in formats) + ("tensorrt" in formats))
    with bar.run():
        # Reference outputs of the FP32 PyTorch model on the parity images.
        bar.step("parity images + FP32 reference")
        n_parity = min(parity_images, 4) if latency_only else parity_images
        images: ImageSet = image_set(split="val", n=n_parity, seed=0, **pick)
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
        if int8:
            bar.step("INT8 quantization")
            from edge_bus.exporting.quantize import quantize_int8  # noqa: PLC0415

            calib = image_set(split="train", n=calibration_images, seed=1, purpose="INT8 calibration", **pick)
            np.savez_compressed(work / CALIBRATION_NAME, images=calib.images, source=np.array(calib.source))
            calib_inputs = calib.inputs(src.spec)
            for kind in int8:
                quantize_int8(onnx_path, work / FILES[kind], calib_inputs, for_tensorrt=kind == "onnx_int8_tensorrt")
                artifacts[kind] = FILES[kind]
                session = ort_session(work / FILES[kind], emulate_qdq=kind == "onnx_int8_tensorrt")
                outputs[(kind, "int8")] = run_onnx(session, inputs)
            bar.done()

        if "torchscript" in formats:
            bar.step("TorchScript export")
            from edge_bus.exporting.to_torchscript import export_torchscript, load_torchscript  # noqa: PLC0415

            export_torchscript(src.model, work / FILES["torchscript"], size=S)
            artifacts["torchscript"] = FILES["torchscript"]
            outputs[("torchscript", "fp32")] = run_torch(load_torchscript(work / FILES["torchscript"]), inputs)
            bar.done()

        trt_info: dict[str, Any] = {"precisions": precisions, "built": []}
        engine_gates: list[dict[str, Any]] = []
        if "tensorrt" in formats:
            bar.step("TensorRT engines")
            target, reason = _tensorrt_target_or_reason()
            if target is None:
                trt_info["skipped"] = reason
                messages.append(
                    f"TensorRT engines not built here ({reason.split(' (')[0]}). The rest of the bundle is written; "
                    f"build them on the target with: edge-bus export build-engine {root} --precision {','.join(precisions)}"
                )
            else:
                # "unchecked" (latency-only) installs engines ungated; "rejected" until the gate below says otherwise
                pending = "unchecked" if latency_only else "rejected"
                engine_bundle = Bundle(work, _manifest(src, artifacts=dict(artifacts), batch_range=(lo, hi), export={},
                                                       status=pending, latency_only=latency_only, parity_summary={}))
                engine_gates = _export_engines(engine_bundle, target, precisions, workspace_gb, ref, ref_logits, messages)
                trt_info["built"] = list(engine_bundle.manifest.engines)
            bar.done()

        bar.step("parity gate")
        records = [_gate_record(ref, ref_logits, out, kind, prec, latency_only) for (kind, prec), out in outputs.items()]
        report = P.summarize(records + engine_gates, latency_only=latency_only, source=ref.source)
        status = "unchecked" if latency_only else ("accepted" if report["passed"] else "rejected")
        P.write_parity(report, work / PARITY_NAME)
        P.save_reference(ref, work / P.REFERENCE_NAME)
        bar.done()

    export_settings = {
        "formats": formats,
        "int8_models": list(int8),
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


def _gate_record(ref, ref_logits, logits, kind: str, precision: str, latency_only: bool) -> dict[str, Any]:
    """One artifact's parity record at export. The TensorRT QDQ model is not what ONNX Runtime runs
    in use: its record is informative (the engine built from it is gated on the GPU); so are reduced
    precision records of latency-only bundles, whose gate is numeric."""
    if latency_only:
        record = P.numeric_check(ref_logits, logits, artifact=kind)
        informative = kind == "onnx_int8_tensorrt" or precision != "fp32"
    else:
        record = P.compare(ref, logits, artifact=kind, precision=precision)
        informative = kind == "onnx_int8_tensorrt"
    record.setdefault("precision", precision)
    return {**record, "informative_only": True} if informative else record


def _run_engine(bundle: Bundle, engine_path: Path, precision: str, inputs: np.ndarray) -> np.ndarray:
    """Logits of one TensorRT engine file on `inputs` (float32 (N,1,S,S))."""
    from edge_bus.runtime.backends.base import BackendOptions  # noqa: PLC0415
    from edge_bus.runtime.backends.tensorrt import TensorRTBackend  # noqa: PLC0415

    backend = TensorRTBackend(bundle, engine_path, precision, BackendOptions(precision=precision))
    try:
        return backend(inputs)["logits"]
    finally:
        backend.close()


def _ungated(m: Manifest) -> bool:
    """Engines of an unchecked (latency-only) bundle are installed whatever their gate says; those of
    every other bundle only when they passed. The status decides, not latency_only alone: a bundle
    can be latency_only and accepted (nothing may go into it ungated then)."""
    return m.status == "unchecked"


def _gate_staged(bundle: Bundle, staged: StagedEngine, ref, ref_logits=None) -> dict[str, Any]:
    """Parity record of a staged (unpublished) engine.

    `ref_logits` (export of a latency-only bundle): the numeric check instead of task metrics."""
    from edge_bus.data.preprocess import normalize  # noqa: PLC0415

    m, rec = bundle.manifest, staged.record
    logits = _run_engine(bundle, staged.path, rec.precision, normalize(ref.images, m.preprocessing))
    if m.latency_only and ref_logits is not None:  # at export: the numeric check
        record = P.numeric_check(ref_logits, logits, artifact="tensorrt")
        record["precision"] = rec.precision
    else:
        record = P.compare(ref, logits, artifact="tensorrt", precision=rec.precision)
    if _ungated(m):
        record["informative_only"] = True  # an unchecked bundle is unchecked whatever its engines do
    return {**record, "engine": rec.path, "target": rec.target.describe()}


def _is_engine_record(record: dict[str, Any]) -> bool:
    return record.get("artifact") == "tensorrt"


def _installed_engines_only(bundle: Bundle, parity: dict[str, Any]) -> dict[str, Any]:
    """parity.json's records less those of TensorRT engines that are not installed in the bundle.

    An engine that failed its gate (at export on a workstation, on another cart) was never
    installed: its record must not reject the bundle once this machine has built its own."""
    def installed(r: dict[str, Any]) -> bool:
        engine = r.get("engine")
        return isinstance(engine, str) and (bundle.root / engine).is_file()

    records = [r for r in parity.get("artifacts", []) if not _is_engine_record(r) or installed(r)]
    return {**parity, "artifacts": records, "passed": P.gate_passed(records)}


def _with_engine_gate(parity: dict[str, Any], gate: dict[str, Any] | None, engine: str | None = None) -> dict[str, Any]:
    """parity.json's records with `gate` replacing any earlier record of the same engine file
    (`engine`: drop that file's record and add none)."""
    engine = gate["engine"] if gate is not None else engine
    records = [r for r in parity.get("artifacts", []) if not (_is_engine_record(r) and r.get("engine") == engine)]
    records += [gate] if gate is not None else []
    return {**parity, "artifacts": records, "passed": P.gate_passed(records)}


@dataclass
class _Gated:
    """One engine through the gate: `installed` is its record when it was published; `kept` the
    path of an engine installed earlier at the same file that stays (the new one failed)."""

    gate: dict[str, Any]
    installed: EngineRecord | None = None
    kept: str | None = None


class _EngineGate:
    """Build -> gate -> publish or discard, for each engine of one bundle in one run (export or
    build-engine). `parity` starts as the bundle's gate outcome less the records of engines not
    installed here, and is updated in memory (the caller writes it with _write_gate_outcome).

    An engine that passed (any engine of an unchecked bundle) is published: file, record, manifest
    entry. One that failed only loses its staging file: an engine already installed at that file (a
    --force rebuild) stays with its passing record, and its failure is reported, not recorded.
    The staging file never outlives the gate (Ctrl-C, a crash of the engine or of the comparison)."""

    def __init__(self, bundle: Bundle, parity: dict[str, Any], ref, ref_logits=None):
        self.bundle, self.ref, self.ref_logits = bundle, ref, ref_logits
        self.parity = _installed_engines_only(bundle, parity)

    def uninstall(self, rel: str) -> None:
        """Remove the engine at `rel` (a stale one): file, record, manifest entry and parity record."""
        _uninstall_engine(self.bundle, rel)
        self.parity = _with_engine_gate(self.parity, None, engine=rel)

    def run(self, build: Callable[[], StagedEngine]) -> _Gated:
        bundle = self.bundle
        staged = build()
        try:
            gate = _gate_staged(bundle, staged, self.ref, self.ref_logits)
            rel = staged.record.path
            if gate["passed"] or _ungated(bundle.manifest):
                rec = staged.publish(bundle.root)
                _list_engine(bundle, rec.to_dict())
                self.parity = _with_engine_gate(self.parity, gate)
                return _Gated(gate, installed=rec)
            earlier = [r for r in self.parity["artifacts"] if _is_engine_record(r) and r.get("engine") == rel]
            if (bundle.root / rel).is_file() and earlier and all(r.get("passed") for r in earlier):
                return _Gated(gate, kept=rel)
            if (bundle.root / rel).is_file():  # installed without a passing gate: never "fresh" again
                self.uninstall(rel)
            self.parity = _with_engine_gate(self.parity, gate)
            return _Gated(gate)
        finally:
            staged.discard()  # nothing left after a publish (the file was moved)


def _gate_summary(gate: dict[str, Any]) -> str:
    return "{} {}".format(*P.gate_metric(gate))


def _export_engines(bundle: Bundle, target, precisions, workspace_gb, ref, ref_logits, messages) -> list[dict[str, Any]]:
    """Build, gate and (when it passed) publish each TensorRT precision into the export folder.

    INT8 is built from the symmetric QDQ model.int8.tensorrt.onnx (explicit quantization).
    Installed engines are listed in bundle.manifest.engines; returns the engines' parity records."""
    from edge_bus.exporting.to_tensorrt import build_engine  # noqa: PLC0415

    m = bundle.manifest
    gates = _EngineGate(bundle, {"artifacts": [], "passed": True}, ref, ref_logits)
    for precision in precisions:
        onnx_file = bundle.root / m.artifacts[source_kind(precision, m.artifacts)]
        outcome = gates.run(lambda: build_engine(
            onnx_file, bundle.root, model=m.model, target=target, precision=precision, batch_range=m.batch_range,
            size=m.preprocessing.size, workspace_gb=workspace_gb))
        if outcome.installed is None:
            messages.append(f"the {precision} TensorRT engine failed its parity gate ({_gate_summary(outcome.gate)}) "
                            f"and was not installed (see {PARITY_NAME})")
    return gates.parity["artifacts"]


@dataclass
class EngineBuilds:
    """What build_engines did; unpacks as (built, messages)."""

    built: list[dict[str, Any]]  # records of the engines installed by this run
    messages: list[str]
    failed: list[str] = field(default_factory=list)  # precisions whose new engine failed its gate (not installed)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.built, self.messages))


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
    split: str | Path | None = None,
    calibration_images: int = 64,
    force: bool = False,
    progress: bool = False,
) -> EngineBuilds:
    """On the target: build (or rebuild stale) engines for this GPU, gate each, install those that pass.

    Each engine is built into a staging file and gated against parity_reference.npz (no torch
    needed; without that file nothing is built). One that passes is published (engine file, then
    its record); one that fails is not installed, and an engine already installed at its file (a
    --force rebuild) is kept. After each engine parity.json and the manifest status are written: a
    failure that leaves no passing engine in its place rejects the bundle (unchecked bundles stay
    unchecked). Records of engines not installed here (failed elsewhere) no longer count.
    Returns EngineBuilds: the installed records, messages, and the precisions that failed.
    """
    from edge_bus.engine_cache import current_target  # noqa: PLC0415
    from edge_bus.exporting.to_onnx import check_onnx  # noqa: PLC0415

    check_count("--calibration-images", calibration_images)
    bundle = open_bundle(bundle_dir)
    precisions = parse_precisions(precisions)
    m = bundle.manifest
    sources: dict[str, tuple[Path, str]] = {}  # precision -> (ONNX file it is built from, its sha256)
    for precision in precisions:
        path = bundle.artifact_path(source_kind(precision, m.artifacts))
        check_onnx(path)
        sources[precision] = (path, sha256_file(path))
    ref, parity = _gate_inputs(bundle)
    target = current_target()
    result = EngineBuilds([], [])
    messages = result.messages
    gates = _EngineGate(bundle, parity, ref)
    existing = bundle_records(bundle.root, m.engines)
    for precision in precisions:
        onnx_path, sha = sources[precision]
        found = lookup(bundle.root, model=m.model, onnx_sha256=sha, target=target, precision=precision, records=existing)
        if found.status == "fresh" and not force:
            messages.append(f"{bundle.root / found.record.path}: up to date for {target.describe()}")
            continue
        if found.status == "stale":
            messages.append(f"rebuilding: {found.message(bundle.root)}")
            same_target = (found.record.trt_version, found.record.gpu_name) == (target.trt_version, target.gpu_name)
            if found.record.onnx_sha256 != sha or same_target:  # useless everywhere (another GPU's engine stays)
                gates.uninstall(found.record.path)
                write_manifest(m, bundle.root / MANIFEST_NAME)
        outcome = gates.run(lambda: _build_for_bundle(bundle, onnx_path, precision, target, workspace_gb, pack, data,
                                                      split, calibration_images))
        if outcome.installed is not None:
            rec = outcome.installed
            result.built.append(rec.to_dict())
            verdict = "passed" if outcome.gate["passed"] else "failed (not gated: the bundle is unchecked)"
            messages.append(f"built {bundle.root / rec.path} in {rec.build_seconds} s for {target.describe()}; "
                            f"parity gate {verdict}")
        else:
            result.failed.append(precision)
            kept = (f"; kept the installed engine {bundle.root / outcome.kept}, which passed its gate" if outcome.kept
                    else f" (see {bundle.root / PARITY_NAME})")
            messages.append(f"the {precision} engine built for {target.describe()} failed its parity gate "
                            f"({_gate_summary(outcome.gate)}) and was not installed{kept}")
        _write_gate_outcome(bundle, gates.parity)
    return result


def _gate_inputs(bundle: Bundle) -> tuple[Any, dict[str, Any]]:
    """The parity reference and the recorded outcome an engine is gated with; BundleError without them."""
    ref_path = bundle.root / P.REFERENCE_NAME
    if not ref_path.is_file():
        raise BundleError(
            f"{ref_path}: missing, and build-engine builds no engine it cannot gate; re-export the bundle with "
            "`edge-bus export CHECKPOINT` (it writes the parity reference)"
        )
    return P.load_reference(ref_path), P.read_parity(bundle.root / PARITY_NAME)


def _build_for_bundle(bundle, onnx_path, precision, target, workspace_gb, pack, data, split, calibration_images):
    """Build one staged engine; INT8 without a QDQ model calibrates on the bundle's training images."""
    from edge_bus.exporting.to_tensorrt import build_engine  # noqa: PLC0415

    m = bundle.manifest
    calib = calib_info = None
    if precision == "int8" and onnx_path.name != FILES["onnx_int8_tensorrt"]:  # no QDQ model: implicit calibration
        calib_set = _calibration_for(bundle, pack, data, split, calibration_images)
        calib, calib_info = calib_set.inputs(m.preprocessing), calib_set.describe()
    return build_engine(onnx_path, bundle.root, model=m.model, target=target, precision=precision,
                        batch_range=m.batch_range, size=m.preprocessing.size, workspace_gb=workspace_gb,
                        calibration=calib, calibration_info=calib_info)


def _list_engine(bundle: Bundle, record: dict[str, Any]) -> None:
    m = bundle.manifest
    m.engines = [e for e in m.engines if e["path"] != record["path"] and (bundle.root / e["path"]).is_file()] + [record]
    m.artifacts["tensorrt"] = record["path"]


def _uninstall_engine(bundle: Bundle, rel: str) -> None:
    """Remove the engine at `rel` (stale: built from another model.onnx, or damaged): file, record and manifest entry."""
    from edge_bus.engine_cache import sidecar_path  # noqa: PLC0415

    (bundle.root / rel).unlink(missing_ok=True)
    sidecar_path(bundle.root / rel).unlink(missing_ok=True)
    m = bundle.manifest
    m.engines = [e for e in m.engines if e["path"] != rel]
    if m.artifacts.get("tensorrt") == rel:
        m.artifacts.pop("tensorrt")
        if m.engines:
            m.artifacts["tensorrt"] = m.engines[-1]["path"]


def _write_gate_outcome(bundle: Bundle, parity: dict[str, Any]) -> None:
    """parity.json and the manifest status that follows from it (an unchecked bundle stays unchecked).

    Ordered so that a crash between the two writes never leaves "accepted" beside a failed gate:
    a rejected manifest goes first, an accepted one after the parity.json that passed."""
    m = bundle.manifest
    if not _ungated(m):
        m.status = "accepted" if parity["passed"] else "rejected"
    if m.status == "rejected":
        write_manifest(m, bundle.root / MANIFEST_NAME)
        P.write_parity(parity, bundle.root / PARITY_NAME)
    else:
        P.write_parity(parity, bundle.root / PARITY_NAME)
        write_manifest(m, bundle.root / MANIFEST_NAME)


def _calibration_for(bundle, pack, data, split, n: int) -> ImageSet:
    """INT8 calibration images for a bundle: the set stored at export, --pack/--data (with the
    bundle's split, see calibration.data_split), the training pack recorded in the manifest,
    phantoms for latency-only bundles; else ConfigError."""
    root, m = bundle.root, bundle.manifest
    stored = root / CALIBRATION_NAME
    if not pack and not data and stored.is_file():
        with np.load(stored, allow_pickle=False) as z:
            images = z["images"]
            source = str(z["source"])
        return ImageSet(images, np.zeros_like(images), np.full(len(images), -1, np.int64), f"bundle:{source}")
    split_hash = m.provenance.get("split_hash") or ""
    if not pack and not data and not m.latency_only:
        recorded = (m.provenance.get("train") or {}).get("pack")
        pack = training_pack(recorded, split_hash, str(root / MANIFEST_NAME))
    split_manifest = data_split(split, split_hash, str(root / MANIFEST_NAME)) if data else None
    return image_set(pack=pack, data=data, split="train", n=n, size=m.preprocessing.size, seed=1,
                     phantoms=m.latency_only, purpose=f"INT8 calibration of {root}", split_manifest=split_manifest)


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
            logits = run_onnx(ort_session(path, emulate_qdq=kind == "onnx_int8_tensorrt"), inputs)
        record = P.compare(ref, logits, artifact=kind, precision=precision)
        records.append({**record, "informative_only": True} if kind == "onnx_int8_tensorrt" else record)
    old_path = bundle.root / PARITY_NAME
    old = _installed_engines_only(bundle, P.read_parity(old_path) if old_path.is_file() else {"artifacts": []})
    records += [r for r in old["artifacts"] if _is_engine_record(r)]
    report = P.summarize(records, latency_only=False, source=ref.source)
    _write_gate_outcome(bundle, report)
    return report
