"""Latency, throughput and accuracy measurement shared by `edge-bus benchmark` and benchmarks/.

No torch at import: torch is loaded only to run the PyTorch eager baseline or to export default
bundles. Modules: latency (timers, percentiles, the timed loop), pipeline (one end-to-end
iteration, stage by stage, with the runtime's postprocessing; and a run of the runtime's own
threaded Pipeline), config (options and their checks), defaults (which bundle runs),
baseline (PyTorch eager), accuracy (test-split metrics), machine, records, report (writers),
runner (the run).
"""

from edge_bus.benchmarking.config import DEPLOYED_MODELS, BenchmarkConfig
from edge_bus.benchmarking.latency import LatencyStats, Timer, measure, percentile
from edge_bus.benchmarking.records import BenchmarkReport, ConfigResult
from edge_bus.benchmarking.runner import prepare, run_benchmark

__all__ = [
    "DEPLOYED_MODELS",
    "BenchmarkConfig",
    "BenchmarkReport",
    "ConfigResult",
    "LatencyStats",
    "Timer",
    "measure",
    "percentile",
    "prepare",
    "run_benchmark",
]
