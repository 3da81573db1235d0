"""Run statistics with flat memory: counters plus a bounded window of latencies."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

STAGES = ("decode", "preprocess", "inference", "postprocess", "total")


class RunStats:
    def __init__(self, window: int = 4096) -> None:
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.finished: float | None = None  # set by finish(): elapsed and fps stop counting there
        self.frames = 0
        self.drops = 0
        self.bad_frames = 0
        self.reconnects = 0
        self.batches = 0
        self.last_error: str | None = None
        self.backend = ""
        self.source = ""
        self.ended_because = ""
        self.source_lost = False  # a live source did not come back: the run failed (edge-bus run exits 3)
        self._latency: dict[str, deque] = {s: deque(maxlen=window) for s in STAGES}
        self._first_done: float | None = None
        self._last_done: float | None = None

    def add_frame(self, latency_ms: dict[str, float]) -> None:
        now = time.perf_counter()
        with self._lock:
            self.frames += 1
            self._first_done = self._first_done or now
            self._last_done = now
            for stage in STAGES:
                self._latency[stage].append(latency_ms.get(stage, 0.0))

    def add_bad(self, reason: str) -> None:
        with self._lock:
            self.bad_frames += 1
            self.last_error = reason

    def error(self, reason: str) -> None:
        with self._lock:
            self.last_error = reason

    def finish(self) -> None:
        """Freeze elapsed time (and so fps) at the end of streaming; shutdown is not counted."""
        if self.finished is None:
            self.finished = time.perf_counter()

    def elapsed(self) -> float:
        return (self.finished if self.finished is not None else time.perf_counter()) - self.started

    def fps(self) -> float:
        elapsed = self.elapsed()
        return self.frames / elapsed if elapsed > 0 else 0.0

    def percentile(self, stage: str, q: float) -> float | None:
        with self._lock:
            values = list(self._latency[stage])
        return float(np.percentile(values, q)) if values else None

    def latency_summary(self, stage: str) -> dict[str, float | None]:
        """p50, p90, p99 and mean in ms of the last `window` frames (None before the first frame)."""
        with self._lock:
            values = np.asarray(self._latency[stage], dtype=np.float64)
        if not values.size:
            return {"p50": None, "p90": None, "p99": None, "mean": None}
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
                "mean": round(float(values.mean()), 3)}

    def snapshot(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "drops": self.drops,
            "bad_frames": self.bad_frames,
            "reconnects": self.reconnects,
            "batches": self.batches,
            "fps": round(self.fps(), 3),
            "elapsed_s": round(self.elapsed(), 3),
            "latency_ms": {s: self.latency_summary(s) for s in STAGES},
            "last_error": self.last_error,
            "backend": self.backend,
            "source": self.source,
            "ended_because": self.ended_because,
            "source_lost": self.source_lost,
        }
