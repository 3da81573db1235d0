"""The benchmark run: check everything first, then export, measure, score and report.

Order of work (every rejection of bad input happens in `prepare`, before any export or timing):
    prepare   validate options; plan each model's bundle (manifests only); check batch sizes
              against each bundle's batch_range and backends against this machine
    run       per model: get the bundle (export a default one if needed) -> PyTorch eager baseline
              (FP32, batch 1; with --data also the FP32 reference accuracy of the bundle's checkpoint)
              -> per backend x precision: open the backend (rows are labelled with the precision it
              runs) -> per batch size: warm-up + timed sequential loop -> accuracy of the artifact on
              the test split -> the runtime's threaded Pipeline at the largest batch, time-boxed
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_bus.benchmarking import accuracy as acc
from edge_bus.benchmarking.config import BenchmarkConfig, check_batches
from edge_bus.benchmarking.defaults import BundlePlan, export_default, needed_artifacts, plan_bundle
from edge_bus.benchmarking.latency import measure, no_sync
from edge_bus.benchmarking.machine import machine_info
from edge_bus.benchmarking.pipeline import FrameFeed, end_to_end_step, postprocess, run_runtime_pipeline
from edge_bus.benchmarking.records import BASELINE_BACKEND, PIPELINE_STAGES, BenchmarkReport, ConfigResult, PipelineResult
from edge_bus.bundle import Bundle, open_bundle
from edge_bus.errors import BackendError, ConfigError, EdgeBusError


@dataclass
class Prepared:
    config: BenchmarkConfig
    plans: list[BundlePlan]

    @property
    def steps(self) -> int:
        c = self.config
        per_model = (1 if c.baseline else 0) + len(c.backends) * len(c.precisions) * (len(c.batches) + (1 if c.pipeline else 0))
        exports = sum(1 for p in self.plans if not p.ready)
        return exports + len(self.plans) * per_model


def _check_backend_here(backend: str) -> None:
    need = {"onnxruntime": "onnxruntime", "torchscript": "torch", "tensorrt": "tensorrt"}[backend]
    if importlib.util.find_spec(need) is None:
        here = [b for b, lib in (("onnxruntime", "onnxruntime"), ("torchscript", "torch"), ("tensorrt", "tensorrt"))
                if importlib.util.find_spec(lib) is not None]
        raise ConfigError(
            f"--backend {backend} needs the '{need}' package, which is not installed here; "
            f"backends available on this machine: {', '.join(here) or 'none'}"
        )


TRT_EP = "TensorrtExecutionProvider"


def _check_precision_here(backend: str, precision: str, device: str) -> None:
    """FP16 outside TensorRT exists only where the backends can run it; refuse it here, with the reason,
    rather than after the exports (the backends would raise BackendError; they never run FP32 instead)."""
    if precision != "fp16":
        return
    if backend == "onnxruntime":
        import onnxruntime as ort  # noqa: PLC0415

        providers = ort.get_available_providers()
        if device == "cpu" or TRT_EP not in providers:
            raise ConfigError(
                f"--precision fp16 is not available with --backend onnxruntime here: ONNX Runtime runs FP16 only "
                f"through its {TRT_EP} on a GPU (device '{device}', providers {', '.join(providers)}); "
                "use --precision auto or fp32 (FP32) or int8, or --backend tensorrt"
            )
    elif backend == "torchscript":
        cuda = False
        if device != "cpu":
            import torch  # noqa: PLC0415

            cuda = torch.cuda.is_available()
        if not cuda:
            raise ConfigError(
                f"--precision fp16 is not available with --backend torchscript here: TorchScript runs FP16 on a "
                f"CUDA GPU only (device '{device}'); use --precision auto or fp32 (FP32), or --backend tensorrt"
            )


def prepare(config: BenchmarkConfig) -> Prepared:
    """All checks that need no export and no timing. Raises ConfigError/BundleError listing choices."""
    config.validate()
    for backend in config.backends:
        _check_backend_here(backend)
        for precision in config.precisions:
            _check_precision_here(backend, precision, config.device)
    if config.baseline and importlib.util.find_spec("torch") is None:
        raise ConfigError("the PyTorch eager baseline needs torch, which is not installed here; pass --no-baseline")
    needed = needed_artifacts(config.backends, config.precisions)
    plans = []
    for model in config.models:
        plan = plan_bundle(model, bundles_dir=config.bundles_dir, cache=config.cache_dir, size=config.size, needed=needed)
        check_batches(config.batches, plan.batch_range, f"the {model} bundle ({plan.path})")
        if plan.ready and not config.allow_rejected:
            status = open_bundle(plan.path).manifest.status
            if status == "rejected":
                raise ConfigError(
                    f"{plan.path}: bundle failed its parity gate (see {plan.path / 'parity.json'}); "
                    "fix the export, leave the model out (--model), or pass --allow-rejected to measure it anyway"
                )
        plans.append(plan)
    return Prepared(config, plans)


class _Progress:
    """A rich progress bar (or nothing): one bar over every export and configuration."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("benchmark", total=total)

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _settings(config: BenchmarkConfig) -> dict[str, Any]:
    data = asdict(config)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def run_benchmark(config: BenchmarkConfig, *, show_progress: bool = True, prepared: Prepared | None = None) -> BenchmarkReport:
    prepared = prepared or prepare(config)
    t_start = time.perf_counter()
    report = BenchmarkReport(
        started=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        command=config.command,
        settings=_settings(config),
        machine=machine_info(),
        bundles={},
    )
    test_sets = _TestSets(config, report) if config.data is not None else None
    feed = FrameFeed(config.source)
    progress = _Progress(prepared.steps, show_progress)
    try:
        for plan in prepared.plans:
            if not plan.ready:
                progress.describe(f"export {plan.model} (first run only; cached in {plan.path.parent})")
                t0 = time.perf_counter()
                bundle = export_default(plan, config.size)
                report.notes.append(f"exported default bundle {plan.model} in {time.perf_counter() - t0:.1f} s (cached at {plan.path})")
                progress.advance()
            else:
                bundle = open_bundle(plan.path)
            report.bundles[plan.model] = plan.to_dict() | {"latency_only": bundle.manifest.latency_only}
            _run_model(config, bundle, feed, test_sets.get(bundle.manifest.preprocessing.size) if test_sets else None, report, progress)
    finally:
        progress.close()
        feed.close()
    report.wall_s = time.perf_counter() - t_start
    if any(r.stopped_by == "time limit" for r in report.results):
        report.notes.append(f"some configurations were time-boxed at {config.max_seconds:g} s of timed loop (see 'iterations')")
    return report


class _TestSets:
    """The test split at each model input size, loaded once per size."""

    def __init__(self, config: BenchmarkConfig, report: BenchmarkReport):
        self.config, self.report, self.sets = config, report, {}

    def get(self, size: int):
        if size not in self.sets:
            c = self.config
            test = acc.load_test_set(Path(c.data), c.split, size, c.max_eval_images)
            self.report.notes.append(f"accuracy at {size}x{size} on {len(test)} test images ({test.source}; split hash {test.split_hash[:12]})")
            self.sets[size] = test
        return self.sets[size]


def _measure_rows(config, feed, bundle: Bundle, infer, sync, batch: int, **fields) -> ConfigResult:
    m = bundle.manifest
    step = end_to_end_step(feed, batch, m.preprocessing, infer, postprocess(m.task, m.threshold))
    measurement = measure(
        step, warmup=config.warmup, iters=config.iters, min_iters=config.min_iters, max_seconds=config.max_seconds, sync=sync
    )
    return ConfigResult.from_measurement(
        measurement, model=m.model, task=m.task, batch=batch, latency_only=m.latency_only, **fields
    )


def _eager_or_note(config: BenchmarkConfig, bundle: Bundle, report: BenchmarkReport):
    from edge_bus.benchmarking.baseline import eager_model  # noqa: PLC0415

    try:
        return eager_model(bundle, device=config.device, threads=config.threads)
    except (ImportError, EdgeBusError, ValueError, RuntimeError) as exc:
        report.notes.append(f"{bundle.manifest.model}: no PyTorch eager model ({type(exc).__name__}: {exc})")
        return None


def _run_model(config: BenchmarkConfig, bundle: Bundle, feed: FrameFeed, test_set, report: BenchmarkReport, progress: _Progress) -> None:
    from edge_bus.runtime.backends import BackendOptions, open_backend  # noqa: PLC0415

    m = bundle.manifest
    baseline_row = None
    reference = None
    scored = test_set is not None and not m.latency_only
    if scored:
        trained_on = m.provenance.get("split_hash")
        if trained_on and trained_on != test_set.split_hash:
            report.notes.append(
                f"{m.model}: trained on split {str(trained_on)[:12]}, scored on split {test_set.split_hash[:12]} "
                "(another split, or the same one written for another data folder): test images may have been seen in training"
            )
    if config.baseline or scored:
        progress.describe(f"{m.model} pytorch eager fp32")
        eager = _eager_or_note(config, bundle, report) if (config.baseline or _has_torch()) else None
        if eager is not None and config.baseline:
            baseline_row = _measure_rows(
                config, feed, bundle, eager.infer, eager.sync, 1,
                backend=BASELINE_BACKEND, backend_detail=eager.detail, precision="fp32", requested_precision="fp32",
                baseline=True, note="naive baseline: PyTorch eager, FP32, one frame at a time",
            )
            baseline_row.speedup_vs_baseline = 1.0
        if scored:
            if eager is not None and eager.trained:
                progress.describe(f"{m.model} pytorch eager fp32 reference accuracy")
                logits = acc.predict(eager.infer, test_set, m.preprocessing, max(config.batches))
                reference = acc.score(m.task, logits, test_set, m.classes, m.threshold)
            else:
                if eager is not None:
                    why = eager.reason
                else:
                    why = "the PyTorch model could not be built (note above)" if _has_torch() else "torch is not installed"
                report.notes.append(f"{m.model}: no PyTorch FP32 reference accuracy: {why}")
        if baseline_row is not None:
            if reference is not None:
                baseline_row.accuracy = baseline_row.accuracy_reference = reference.figures
            report.results.append(baseline_row)
        if config.baseline:
            progress.advance()
        del eager
    if test_set is not None and m.latency_only:
        note = f"{m.model}: accuracy not measured, latency-only bundle (freshly initialized model)"
        if note not in report.notes:
            report.notes.append(note)
    measured: dict[tuple[str, str], str] = {}  # (backend, precision that ran) -> precision asked
    steps = len(config.batches) + (1 if config.pipeline else 0)
    for backend_name in config.backends:
        for precision in config.precisions:
            options = BackendOptions(device=config.device, precision=precision, threads=config.threads,
                                     allow_rejected=config.allow_rejected)
            try:
                backend = open_backend(backend_name, bundle, options)
            except BackendError as exc:
                report.skipped.append({"model": m.model, "backend": backend_name, "precision": precision, "reason": str(exc)})
                for _ in range(steps):
                    progress.advance()
                continue
            ran = getattr(backend, "precision", None) or precision
            if (backend_name, ran) in measured:
                backend.close()
                report.notes.append(f"{m.model} {backend_name}: --precision {precision} runs {ran}, already measured "
                                    f"(as --precision {measured[(backend_name, ran)]}); not repeated")
                for _ in range(steps):
                    progress.advance()
                continue
            measured[(backend_name, ran)] = precision
            rows = _backend_rows(config, bundle, backend, backend_name, precision, ran, feed, test_set, baseline_row, reference, progress)
            report.results.extend(rows)
            if config.pipeline:
                progress.describe(f"{m.model} {backend_name} {ran} runtime pipeline b{max(config.batches)}")
                _pipeline_row(config, bundle, backend_name, ran, rows[-1], report)
                progress.advance()


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _backend_rows(config, bundle, backend, backend_name, precision, ran, feed, test_set, baseline_row, reference, progress):
    """The sequential loop at every batch size, then the artifact's accuracy; closes the backend."""
    m = bundle.manifest
    output = m.output.name

    def infer(x, _backend=backend, _out=output):
        return _backend(x)[_out]

    rows = []
    try:
        for batch in sorted(config.batches):
            progress.describe(f"{m.model} {backend_name} {ran} b{batch}")
            row = _measure_rows(
                config, feed, bundle, infer, no_sync, batch,
                backend=backend_name, backend_detail=backend.name, precision=ran, requested_precision=precision,
                baseline=False, note="latency only: freshly initialized model" if m.latency_only else "",
            )
            if baseline_row is not None:
                row.speedup_vs_baseline = row.throughput_fps / baseline_row.throughput_fps
            rows.append(row)
            progress.advance()
        scores = None
        if test_set is not None and not m.latency_only:
            progress.describe(f"{m.model} {backend_name} {ran} accuracy")
            logits = acc.predict(infer, test_set, m.preprocessing, min(max(config.batches), m.batch_range[1]))
            scores = acc.score(m.task, logits, test_set, m.classes, m.threshold)
        versus = acc.versus_reference(scores, reference, len(m.classes)) if scores is not None and reference is not None else None
        for row in rows:
            row.accuracy = scores.figures if scores is not None else None
            row.accuracy_reference = reference.figures if reference is not None else None
            row.accuracy_vs_reference = versus
    finally:
        backend.close()
    return rows


def pipeline_frames(sequential_fps: float, batch: int, iters: int, max_seconds: float) -> int:
    """Frames for one pipeline run: what the sequential loop got through in the time box, in whole
    batches, at least 2 and at most `iters` batches. Frames already queued when a run is stopped are
    still processed (the drain), so the run is bounded by its frame count; a stop at twice the time
    box is only the backstop."""
    want = math.ceil(sequential_fps * max_seconds / batch) if math.isfinite(sequential_fps) else iters
    return batch * max(2, min(iters, want))


def _pipeline_row(config: BenchmarkConfig, bundle: Bundle, backend_name: str, precision: str, sequential: ConfigResult,
                  report: BenchmarkReport) -> None:
    """The same model, backend and precision streamed through the runtime's Pipeline at the largest batch."""
    m = bundle.manifest
    batch = sequential.batch
    frames = config.pipeline_frames or pipeline_frames(sequential.throughput_fps, batch, config.iters, config.max_seconds)
    try:
        run = run_runtime_pipeline(
            config.source, role="classifier" if m.task == "classification" else "segmenter", bundle_dir=str(bundle.root),
            backend=backend_name, precision=precision, batch=batch, frames=frames, time_box_s=2 * config.max_seconds,
            device=config.device, threads=config.threads, allow_rejected=config.allow_rejected, warmup=config.warmup,
        )
    except EdgeBusError as exc:
        report.skipped.append({"model": m.model, "backend": backend_name, "precision": precision,
                               "reason": f"runtime pipeline: {exc}"})
        return
    s = run.summary
    report.pipeline.append(PipelineResult(
        model=m.model, task=m.task, backend=backend_name, backend_detail=str(s.get("backend", "")), precision=precision,
        batch=batch, frames=int(s.get("frames", 0)), frames_asked=frames, fps=float(s.get("fps", 0.0)),
        latency_ms={k: dict(v) for k, v in (s.get("latency_ms") or {}).items() if k in PIPELINE_STAGES},
        sequential_fps=sequential.throughput_fps, stopped_by=run.stopped_by, time_box_s=run.time_box_s, wall_s=run.wall_s,
        drops=int(s.get("drops", 0)), bad_frames=int(s.get("bad_frames", 0)), batches=int(s.get("batches", 0)),
        latency_only=m.latency_only, summary=s,
    ))
