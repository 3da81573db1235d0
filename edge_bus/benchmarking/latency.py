"""Timers and latency statistics: warm-up excluded, device-synchronized, time-boxed.

`measure(step, ...)` follows the shape of karpathy/nanoGPT's bench.py: a few untimed warm-up
calls, then a timed loop where every iteration is synchronized with the device (`sync`, e.g.
`torch.cuda.synchronize` or a no-op on the CPU) before the clock is read. The loop stops after
`iters` iterations or once `max_seconds` have passed (but never before `min_iters`), so one slow
configuration cannot stall a whole run; the result says which limit ended it.

No torch and no GPU library here: the device sync is a callable handed in by the caller.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

PERCENTILES = (50, 90, 99)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy.percentile's default."""
    values = sorted(float(v) for v in samples)
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must lie in [0, 100], got {q}")
    pos = (len(values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


@dataclass
class LatencyStats:
    """Summary of one set of latencies in milliseconds."""

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_samples(cls, samples_ms: Iterable[float]) -> "LatencyStats":
        values = [float(v) for v in samples_ms]
        if not values:
            raise ValueError("no latency samples: the timed loop ran zero iterations")
        arr = np.asarray(values, dtype=np.float64)
        return cls(
            n=len(values),
            mean_ms=float(arr.mean()),
            std_ms=float(arr.std()),
            min_ms=float(arr.min()),
            p50_ms=percentile(values, 50),
            p90_ms=percentile(values, 90),
            p99_ms=percentile(values, 99),
            max_ms=float(arr.max()),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def no_sync() -> None:
    """The device sync of a CPU backend: nothing to wait for."""


class Timer:
    """Context manager measuring wall time in milliseconds, synchronizing the device first and last.

        with Timer(sync) as t:
            run()
        t.ms
    """

    def __init__(self, sync: Callable[[], None] = no_sync, clock: Callable[[], float] = time.perf_counter):
        self.sync = sync
        self.clock = clock
        self.ms = float("nan")

    def __enter__(self) -> "Timer":
        self.sync()
        self._t0 = self.clock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.ms = (self.clock() - self._t0) * 1000.0


@dataclass
class Measurement:
    """Per-iteration timings of one configuration: `stages[name][i]` in ms, `total_ms[i]`."""

    warmup: int
    total_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    stopped_by: str = "iterations"  # "iterations" or "time limit"

    @property
    def iterations(self) -> int:
        return len(self.total_ms)

    def stats(self, stage: str | None = None) -> LatencyStats:
        return LatencyStats.from_samples(self.total_ms if stage is None else self.stages[stage])


# A step runs one iteration and returns the time of each of its stages in ms (may be empty).
Step = Callable[[], dict[str, float]]


def measure(
    step: Step,
    *,
    warmup: int = 1,
    iters: int = 10,
    min_iters: int = 2,
    max_seconds: float | None = None,
    sync: Callable[[], None] = no_sync,
    on_iteration: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Warm up `warmup` times untimed, then time `step` up to `iters` times (see module doc).

    The total of an iteration is measured around the whole step (device-synchronized);
    the stage times are whatever the step reports.
    """
    if iters < 1 or min_iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1, min_iters >= 1, warmup >= 0 (got {iters}, {min_iters}, {warmup})")
    min_iters = min(min_iters, iters)
    for _ in range(warmup):
        step()
    sync()
    result = Measurement(warmup=warmup)
    start = clock()
    for i in range(iters):
        with Timer(sync, clock) as t:
            stages = step()
        result.total_ms.append(t.ms)
        for name, ms in (stages or {}).items():
            result.stages.setdefault(name, []).append(float(ms))
        if on_iteration is not None:
            on_iteration()
        if max_seconds is not None and i + 1 >= min_iters and i + 1 < iters and clock() - start >= max_seconds:
            result.stopped_by = "time limit"
            break
    result.wall_s = clock() - start
    return result
