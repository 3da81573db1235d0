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
        self.frames = 0
        self.drops = 0
        self.bad_frames = 0
        self.reconnects = 0
        self.batches = 0
        self.last_error: str | None = None
        self.backend = ""
        self.source = ""
        self.ended_because = ""
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

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def fps(self) -> float:
        elapsed = self.elapsed()
        return self.frames / elapsed if elapsed > 0 else 0.0

    def percentile(self, stage: str, q: float) -> float | None:
        with self._lock:
            values = list(self._latency[stage])
        return float(np.percentile(values, q)) if values else None

    def snapshot(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "frames": self.frames,
            "drops": self.drops,
            "bad_frames": self.bad_frames,
            "reconnects": self.reconnects,
            "batches": self.batches,
            "fps": round(self.fps(), 3),
            "elapsed_s": round(self.elapsed(), 3),
            "latency_ms": {s: {"p50": r(self.percentile(s, 50)), "p99": r(self.percentile(s, 99))} for s in STAGES},
            "last_error": self.last_error,
            "backend": self.backend,
            "source": self.source,
            "ended_because": self.ended_because,
        }
