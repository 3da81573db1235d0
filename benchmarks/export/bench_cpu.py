"""ONNX Runtime FP32 and INT8 (QDQ) against PyTorch eager on this CPU, in one run.

    python benchmarks/export/bench_cpu.py --model vgg19 --size 256 --batch 1 --threads 2 --iters 10

Freshly initialized weights (latency does not depend on training). Warm-up, then timed rounds in
which the three backends take turns (one call each per round), so that a change of machine load
during the run hits all three alike; prints a Markdown row set with medians and the ratios to PyTorch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def timed_in_turns(fns: dict, iters: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each function, the functions interleaved round by round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="vgg19")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--calib", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from edge_bus.exporting.calibration import from_phantoms
    from edge_bus.exporting.quantize import quantize_int8
    from edge_bus.exporting.to_onnx import export_onnx, ort_session
    from edge_bus.models import create
    from edge_bus.data.preprocess import PreprocessSpec

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create(args.model).eval()
    spec = PreprocessSpec(size=args.size)
    x = from_phantoms(args.batch, args.size, seed=5).inputs(spec)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "m.onnx", size=args.size)
        int8 = quantize_int8(fp32, Path(tmp) / "m.int8.onnx", from_phantoms(args.calib, args.size, seed=1001).inputs(spec))
        xt = torch.from_numpy(x)

        def eager():
            with torch.no_grad():
                model(xt)

        fns = {"pytorch_eager_fp32": eager}
        for name, path in (("onnxruntime_fp32", fp32), ("onnxruntime_int8_qdq", int8)):
            s = ort_session(path, threads=args.threads)
            fns[name] = lambda s=s: s.run(None, {"input": x})
        results = timed_in_turns(fns, args.iters, args.warmup)
    base = statistics.median(results["pytorch_eager_fp32"])
    print(f"| backend | median ms | p90 ms | speed-up vs PyTorch eager |\n|---|---|---|---|")
    summary = {}
    for name, ts in results.items():
        med = statistics.median(ts)
        p90 = float(np.percentile(ts, 90))
        summary[name] = {"median_ms": med, "p90_ms": p90, "speedup_vs_eager": base / med, "iters": len(ts)}
        print(f"| {name} | {med:.1f} | {p90:.1f} | {base / med:.2f}x |")
    if args.json:
        import datetime
        import os
        import platform

        import onnxruntime

        meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "load_average_after": os.getloadavg(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": summary, **meta}, indent=2))


if __name__ == "__main__":
    main()
