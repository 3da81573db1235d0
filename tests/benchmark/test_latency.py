"""Percentiles, timers and the timed loop, checked against numpy and a fake clock."""

import numpy as np
import pytest

from edge_bus.benchmarking.latency import LatencyStats, Timer, measure, percentile


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
@pytest.mark.parametrize("q", [0, 1, 50, 90, 99, 99.9, 100])
def test_percentile_matches_numpy(n, q):
    values = np.random.default_rng(n).lognormal(2.0, 0.7, n)
    assert percentile(values.tolist(), q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)


def test_percentile_rejects_empty_and_bad_q():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_stats_are_ordered_and_match_numpy():
    values = np.random.default_rng(0).exponential(10.0, 500)
    s = LatencyStats.from_samples(values)
    assert s.n == 500
    assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert s.mean_ms == pytest.approx(values.mean())
    assert s.p99_ms == pytest.approx(np.percentile(values, 99))
    assert s.max_ms == pytest.approx(values.max())


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_timer_syncs_before_and_after_and_uses_the_clock():
    clock, calls = FakeClock(), []

    def sync():
        calls.append(clock.t)

    with Timer(sync, clock) as t:
        clock.t += 0.25
    assert t.ms == pytest.approx(250.0)
    assert calls == [0.0, 0.25]  # synchronized at start and at end


def test_measure_excludes_warmup_and_records_stages():
    clock = FakeClock()
    durations = iter([5.0, 5.0, 0.010, 0.020, 0.030])  # two slow warm-ups, then three timed calls

    def step():
        d = next(durations)
        clock.t += d
        return {"inference": d * 1000.0}

    m = measure(step, warmup=2, iters=3, clock=clock)
    assert m.iterations == 3 and m.warmup == 2
    assert m.total_ms == pytest.approx([10.0, 20.0, 30.0])
    assert m.stages["inference"] == pytest.approx([10.0, 20.0, 30.0])
    assert m.stopped_by == "iterations"
    assert m.stats().max_ms == pytest.approx(30.0)


def test_measure_time_box_stops_after_min_iters():
    clock = FakeClock()

    def step():
        clock.t += 1.0
        return {}

    m = measure(step, warmup=0, iters=100, min_iters=3, max_seconds=2.0, clock=clock)
    assert m.iterations == 3  # 3 s > 2 s, but never fewer than min_iters
    assert m.stopped_by == "time limit"


def test_measure_calls_the_device_sync_around_each_iteration():
    count = {"sync": 0}

    def sync():
        count["sync"] += 1

    measure(lambda: {}, warmup=1, iters=4, sync=sync)
    assert count["sync"] == 1 + 2 * 4  # once after warm-up, twice per timed iteration
