"""Result records of a benchmark run: plain dataclasses that become the JSON file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_bus.benchmarking.latency import LatencyStats, Measurement

STAGES = ("decode", "preprocess", "inference", "postprocess")
BASELINE_BACKEND = "pytorch-eager"


@dataclass
class ConfigResult:
    """One model x backend x precision x batch size."""

    model: str
    task: str
    backend: str  # requested name, or "pytorch-eager" for the baseline
    backend_detail: str  # what actually ran, e.g. "onnxruntime[CPUExecutionProvider]"
    precision: str  # what ran (the backend's own `precision`), never "auto"
    batch: int
    latency_only: bool
    baseline: bool
    warmup: int
    iterations: int
    stopped_by: str
    wall_s: float
    end_to_end: LatencyStats  # per batch, decode -> postprocess
    stages: dict[str, LatencyStats]  # per batch
    samples_ms: dict[str, list[float]]  # raw per-iteration times: "end_to_end" and each stage
    throughput_fps: float  # frames per second, end to end
    inference_fps: float  # frames per second, inference stage only
    speedup_vs_baseline: float | None = None  # throughput / the same model's eager throughput
    accuracy: dict[str, Any] | None = None
    accuracy_reference: dict[str, Any] | None = None  # PyTorch FP32 on the same images
    # this artifact minus the FP32 reference, paired by image: figure, difference, interval, a_ahead
    accuracy_vs_reference: dict[str, Any] | None = None
    note: str = ""
    requested_precision: str = ""  # as asked (e.g. "auto"); `precision` is what ran

    @classmethod
    def from_measurement(cls, m: Measurement, **fields: Any) -> "ConfigResult":
        e2e = m.stats()
        stages = {s: m.stats(s) for s in STAGES if s in m.stages}
        batch = fields["batch"]
        inf = stages.get("inference", e2e)
        return cls(
            warmup=m.warmup,
            iterations=m.iterations,
            stopped_by=m.stopped_by,
            wall_s=m.wall_s,
            end_to_end=e2e,
            stages=stages,
            samples_ms={"end_to_end": list(m.total_ms), **{s: list(m.stages[s]) for s in stages}},
            throughput_fps=batch * 1000.0 / e2e.mean_ms if e2e.mean_ms > 0 else float("inf"),
            inference_fps=batch * 1000.0 / inf.mean_ms if inf.mean_ms > 0 else float("inf"),
            **fields,
        )

    @property
    def label(self) -> str:
        return f"{self.model} {self.backend} {self.precision} b{self.batch}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "backend": self.backend,
            "backend_detail": self.backend_detail,
            "precision": self.precision,
            "requested_precision": self.requested_precision or self.precision,
            "batch": self.batch,
            "latency_only": self.latency_only,
            "baseline": self.baseline,
            "warmup": self.warmup,
            "iterations": self.iterations,
            "stopped_by": self.stopped_by,
            "wall_s": self.wall_s,
            "end_to_end_ms": self.end_to_end.to_dict(),
            "per_frame_ms": self.end_to_end.mean_ms / self.batch,
            "stages_ms": {k: v.to_dict() for k, v in self.stages.items()},
            "throughput_fps": self.throughput_fps,
            "inference_fps": self.inference_fps,
            "speedup_vs_baseline": self.speedup_vs_baseline,
            "accuracy": self.accuracy,
            "accuracy_reference": self.accuracy_reference,
            "accuracy_vs_reference": self.accuracy_vs_reference,
            "note": self.note,
            "samples_ms": self.samples_ms,
        }


PIPELINE_STAGES = ("decode", "preprocess", "inference", "postprocess", "total")


@dataclass
class PipelineResult:
    """One model x backend x precision streamed through the runtime's threaded Pipeline
    (`edge-bus run` without sinks) at the largest requested batch."""

    model: str
    task: str
    backend: str
    backend_detail: str  # the pipeline's own backend string, e.g. "segmenter=onnxruntime[CPUExecutionProvider]"
    precision: str  # what ran
    batch: int  # the batcher's maximum batch
    frames: int  # frames processed
    frames_asked: int  # max_frames
    fps: float  # the pipeline's own fps (frames / streaming time)
    latency_ms: dict[str, dict[str, float | None]]  # stage -> {p50, p90, p99, mean}, per frame
    sequential_fps: float | None  # the sequential loop's fps at the same batch, same run
    stopped_by: str
    time_box_s: float
    wall_s: float
    drops: int = 0
    bad_frames: int = 0
    batches: int = 0
    latency_only: bool = False
    summary: dict[str, Any] = field(default_factory=dict)  # the pipeline's summary as returned

    @property
    def ratio(self) -> float | None:
        """Pipeline fps / sequential-loop fps (> 1: the threads overlap the stages)."""
        if not self.sequential_fps:
            return None
        return self.fps / self.sequential_fps

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "backend": self.backend,
            "backend_detail": self.backend_detail,
            "precision": self.precision,
            "batch": self.batch,
            "frames": self.frames,
            "frames_asked": self.frames_asked,
            "fps": self.fps,
            "latency_ms": self.latency_ms,
            "sequential_fps": self.sequential_fps,
            "fps_ratio_vs_sequential": self.ratio,
            "stopped_by": self.stopped_by,
            "time_box_s": self.time_box_s,
            "wall_s": self.wall_s,
            "drops": self.drops,
            "bad_frames": self.bad_frames,
            "batches": self.batches,
            "latency_only": self.latency_only,
            "summary": self.summary,
        }


@dataclass
class BenchmarkReport:
    started: str  # ISO date-time
    command: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    bundles: dict[str, dict[str, Any]]  # model -> {path, trained, latency_only, ...}
    results: list[ConfigResult] = field(default_factory=list)
    pipeline: list[PipelineResult] = field(default_factory=list)  # end to end through the runtime's Pipeline
    skipped: list[dict[str, str]] = field(default_factory=list)  # configurations that could not run, and why
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "edge-bus-benchmark",
            "version": 1,
            "started": self.started,
            "command": self.command,
            "wall_s": self.wall_s,
            "settings": self.settings,
            "machine": self.machine,
            "bundles": self.bundles,
            "notes": self.notes,
            "skipped": self.skipped,
            "results": [r.to_dict() for r in self.results],
            "pipeline": [p.to_dict() for p in self.pipeline],
        }
