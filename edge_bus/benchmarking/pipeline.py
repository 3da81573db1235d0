"""One end-to-end iteration, stage by stage: decode -> preprocess -> inference -> postprocess.

The runtime's pipeline overlaps these stages in threads; here they run one after the other so each
can be timed on its own. Frames come from the runtime's sources (`open_source`), preprocessing is
THE preprocessing (edge_bus.data.preprocess) and postprocessing is the runtime's own
(edge_bus.runtime.postprocess): class probabilities, or the largest lesion in frame pixels.

`run_runtime_pipeline` measures the same bundle end to end through the runtime's threaded Pipeline
(what `edge-bus run` executes), time-boxed like the sequential loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edge_bus.benchmarking.latency import Step
from edge_bus.data.preprocess import PreprocessSpec, preprocess_batch
from edge_bus.errors import SourceError
from edge_bus.runtime.postprocess import classify_batch, segment_frame

Infer = Callable[[np.ndarray], np.ndarray]  # float32 (N,1,S,S) -> logits, device-synchronized


class FrameFeed:
    """Endless frames from a source URI (a file source is reopened at its end)."""

    def __init__(self, uri: str):
        from edge_bus.runtime.sources import open_source

        self.uri = uri
        self.source = open_source(uri)

    def read(self) -> np.ndarray:
        frame = self.source.read()
        if frame is None:
            self.source.reopen()
            frame = self.source.read()
            if frame is None:
                raise SourceError(f"{self.uri}: the source gave no frame; pass a readable video, folder or synthetic://")
        if frame.error is not None:
            raise SourceError(f"{self.uri}: frame {frame.id} could not be decoded ({frame.error})")
        return frame.image

    def close(self) -> None:
        self.source.close()


def postprocess(task: str, threshold: float) -> Callable[[np.ndarray, list[np.ndarray]], list]:
    """logits of a batch -> per-frame result, with the runtime's own postprocessing
    (edge_bus.runtime.postprocess): class index and probabilities, or the largest lesion in frame pixels."""
    if task == "classification":

        def classify(logits: np.ndarray, frames: list[np.ndarray]) -> list:
            indices, probs = classify_batch(logits)
            return list(zip(indices.tolist(), probs))

        return classify

    def segment(logits: np.ndarray, frames: list[np.ndarray]) -> list:
        return [segment_frame(one, threshold, f.shape) for one, f in zip(np.asarray(logits), frames)]

    return segment


def end_to_end_step(
    feed: FrameFeed,
    batch: int,
    spec: PreprocessSpec,
    infer: Infer,
    post: Callable[[np.ndarray, list[np.ndarray]], list],
    clock: Callable[[], float] = time.perf_counter,
) -> Step:
    """A Step for latency.measure: times each stage of one batch in milliseconds."""
    buffer = np.empty((batch, 1, spec.size, spec.size), dtype=np.float32)

    def step() -> dict[str, float]:
        t0 = clock()
        frames = [feed.read() for _ in range(batch)]
        t1 = clock()
        x = preprocess_batch(frames, spec, out=buffer)
        t2 = clock()
        logits = infer(x)
        t3 = clock()
        post(logits, frames)
        t4 = clock()
        return {
            "decode": (t1 - t0) * 1e3,
            "preprocess": (t2 - t1) * 1e3,
            "inference": (t3 - t2) * 1e3,
            "postprocess": (t4 - t3) * 1e3,
        }

    return step


@dataclass
class PipelineRun:
    """One run of the runtime's Pipeline: its summary plus how the run was bounded."""

    summary: dict[str, Any]
    frames_asked: int
    time_box_s: float
    wall_s: float
    stopped_by: str  # "max_frames", "time limit", "end of source", ...
    notes: list[str] = field(default_factory=list)


def run_runtime_pipeline(
    uri: str,
    *,
    role: str,
    bundle_dir: str,
    backend: str,
    precision: str,
    batch: int,
    frames: int,
    time_box_s: float,
    device: str = "auto",
    threads: int | None = None,
    allow_rejected: bool = False,
    warmup: int = 1,
) -> PipelineRun:
    """`Pipeline(RunConfig(..., sinks=[]), handle_sigint=False).run()` for one bundle, stopped after
    `frames` frames or `time_box_s` seconds of streaming (queued frames are then drained).

    Model loading is outside the measurement (the pipeline's fps counts streaming time only), and
    the loaded backends get `warmup` untimed single-frame calls first (cheap on slow CPUs; enough for
    first-call set-up such as TensorRT contexts and memory arenas)."""
    from edge_bus.runtime.config import RunConfig  # noqa: PLC0415
    from edge_bus.runtime.pipeline import Pipeline  # noqa: PLC0415
    from edge_bus.runtime.sources import open_source  # noqa: PLC0415

    config = RunConfig(
        source=uri,
        classifier=bundle_dir if role == "classifier" else None,
        segmenter=bundle_dir if role == "segmenter" else None,
        backend=backend,
        precision=precision,
        device=device,
        batch=batch,
        max_frames=frames,
        sinks=[],
        allow_rejected=allow_rejected,
        allow_unchecked=True,  # latency-only default bundles are timed, and labelled so; never scored
    )
    config.validate()
    source = open_source(uri)  # an unpaced synthetic:// source is read like a file: no drops
    pipeline = Pipeline(config, source=source, handle_sigint=False, threads=threads)
    timer = threading.Timer(time_box_s, pipeline.stop)
    timer.daemon = True
    t0 = time.perf_counter()
    try:
        pipeline.open()  # models load outside the time box
        for model in pipeline.models or []:
            size = model.manifest.preprocessing.size
            for _ in range(max(0, warmup)):
                model.backend(np.zeros((1, 1, size, size), np.float32))
        timer.start()
        summary = pipeline.run()
    finally:
        timer.cancel()
        source.close()
    wall = time.perf_counter() - t0
    ended = summary.get("ended_because") or ""
    stopped_by = "time limit" if ended == "stopped" else ended
    return PipelineRun(summary=summary, frames_asked=frames, time_box_s=time_box_s, wall_s=wall, stopped_by=stopped_by)
