"""The benchmark run: check everything first, then export, measure, score and report.

Order of work (every rejection of bad input happens in `prepare`, before any export or timing):
    prepare   validate options; plan each model's bundle (manifests only); check batch sizes
              against each bundle's batch_range and backends against this machine
    run       per model: get the bundle (export a default one if needed) -> PyTorch eager baseline
              (FP32, batch 1) -> per backend x precision: open the backend -> per batch size:
              warm-up + timed end-to-end loop -> accuracy of the artifact on the test split
"""

from __future__ import annotations

import importlib.util
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
from edge_bus.benchmarking.pipeline import FrameFeed, end_to_end_step, postprocess
from edge_bus.benchmarking.records import BASELINE_BACKEND, BenchmarkReport, ConfigResult
from edge_bus.bundle import Bundle, open_bundle
from edge_bus.errors import BackendError, ConfigError


@dataclass
class Prepared:
    config: BenchmarkConfig
    plans: list[BundlePlan]

    @property
    def steps(self) -> int:
        c = self.config
        per_model = (1 if c.baseline else 0) + len(c.backends) * len(c.precisions) * len(c.batches)
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


def prepare(config: BenchmarkConfig) -> Prepared:
    """All checks that need no export and no timing. Raises ConfigError/BundleError listing choices."""
    config.validate()
    for backend in config.backends:
        _check_backend_here(backend)
    if config.baseline and importlib.util.find_spec("torch") is None:
        raise ConfigError("the PyTorch eager baseline needs torch, which is not installed here; pass --no-baseline")
    needed = needed_artifacts(config.backends, config.precisions)
    plans = []
    for model in config.models:
        plan = plan_bundle(model, bundles_dir=config.bundles_dir, cache=config.cache_dir, size=config.size, needed=needed)
        check_batches(config.batches, plan.batch_range, f"the {model} bundle ({plan.path})")
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


def _run_model(config: BenchmarkConfig, bundle: Bundle, feed: FrameFeed, test_set, report: BenchmarkReport, progress: _Progress) -> None:
    from edge_bus.runtime.backends import BackendOptions, open_backend  # noqa: PLC0415

    m = bundle.manifest
    baseline_row = None
    reference = None
    if config.baseline:
        from edge_bus.benchmarking.baseline import eager_model  # noqa: PLC0415

        progress.describe(f"{m.model} pytorch eager fp32 b1")
        eager = eager_model(bundle, device=config.device, threads=config.threads)
        baseline_row = _measure_rows(
            config, feed, bundle, eager.infer, eager.sync, 1,
            backend=BASELINE_BACKEND, backend_detail=eager.detail, precision="fp32", baseline=True,
            note="naive baseline: PyTorch eager, FP32, one frame at a time",
        )
        baseline_row.speedup_vs_baseline = 1.0
        if test_set is not None and eager.trained:
            logits = acc.predict(eager.infer, test_set, m.preprocessing, max(config.batches))
            reference = acc.score(m.task, logits, test_set, m.classes, m.threshold)
            baseline_row.accuracy = reference
        report.results.append(baseline_row)
        progress.advance()
        del eager
    for backend_name in config.backends:
        for precision in config.precisions:
            options = BackendOptions(device=config.device, precision=precision, threads=config.threads)
            try:
                backend = open_backend(backend_name, bundle, options)
            except BackendError as exc:
                report.skipped.append({"model": m.model, "backend": backend_name, "precision": precision, "reason": str(exc)})
                for _ in config.batches:
                    progress.advance()
                continue
            output = m.output.name

            def infer(x, _backend=backend, _out=output):
                return _backend(x)[_out]

            try:
                scores = None
                rows = []
                for batch in config.batches:
                    progress.describe(f"{m.model} {backend_name} {precision} b{batch}")
                    row = _measure_rows(
                        config, feed, bundle, infer, no_sync, batch,
                        backend=backend_name, backend_detail=backend.name, precision=precision, baseline=False,
                        note="latency only: freshly initialized model" if m.latency_only else "",
                    )
                    if baseline_row is not None:
                        row.speedup_vs_baseline = row.throughput_fps / baseline_row.throughput_fps
                    rows.append(row)
                    progress.advance()
                if test_set is not None and m.latency_only:
                    note = f"{m.model}: accuracy not measured, latency-only bundle (freshly initialized model)"
                    if note not in report.notes:
                        report.notes.append(note)
                if test_set is not None and not m.latency_only:
                    progress.describe(f"{m.model} {backend_name} {precision} accuracy")
                    logits = acc.predict(infer, test_set, m.preprocessing, min(max(config.batches), m.batch_range[1]))
                    scores = acc.score(m.task, logits, test_set, m.classes, m.threshold)
                for row in rows:
                    row.accuracy = scores
                    row.accuracy_reference = reference
                report.results.extend(rows)
            finally:
                backend.close()
