"""Pipeline throughput vs. the bare backend's, same bundle and batch, in one run.

    python benchmarks/runtime/bench_pipeline.py --clip ../shared/data/video/cine/butterfly-ocular-phantom.mp4

1. Bundle: a fresh (untrained) model exported with torch.onnx through edge_bus.exporting.fresh_bundle
   (or --bundle DIR to reuse one). Only the export needs torch; the measurement does not.
2. Bare backend: the clip's first `batch` frames, preprocessed once, run back to back
   (warm-up, then `--batches` timed calls) -> frames/s.
3. Pipeline: the same opened backend inside Pipeline on the clip (decode, auto ROI, preprocess,
   inference, postprocess, JSONL sink), `--frames` frames -> frames/s. Steps 2 and 3 alternate
   `--repeats` times; the ratio of the means is reported.
4. Live: synthetic:// at `--live-fps` (faster than the model) for `--live-seconds`: drops counted,
   total latency p50/p99 stays bounded by the queue.

Writes benchmarks/runtime/results/<UTC date>-<host>.json and prints a Markdown block for README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_bus.fileio import write_json_atomic

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_bundle(model: str, size: int, out: Path, width: int | None) -> Path:
    from edge_bus.exporting import fresh_bundle

    kwargs = {"width": width} if width else {}
    return fresh_bundle(model, out, size=size, batch_range=(1, 8), model_kwargs=kwargs).root


def bare_fps(model, frames: list[np.ndarray], batch: int, batches: int, warmup: int = 3) -> float:
    from edge_bus.data.preprocess import preprocess_batch

    x = preprocess_batch((frames * batch)[:batch], model.manifest.preprocessing)
    for _ in range(warmup):
        model.backend(x)
    t0 = time.perf_counter()
    for _ in range(batches):
        model.backend(x)
    return batches * batch / (time.perf_counter() - t0)


def pipeline_run(model, clip: str, batch: int, frames: int, out: Path, roi: str) -> dict:
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    cfg = RunConfig(source=clip, segmenter="in-memory", out=str(out), batch=batch, roi=roi, sinks=["jsonl"],
                    max_frames=frames, queue_size=8)
    pipeline = Pipeline(cfg, models=[model])
    pipeline.open()
    t0 = time.perf_counter()
    summary = pipeline.run()
    wall = time.perf_counter() - t0
    summary["wall_fps"] = summary["frames"] / wall
    return summary


def live_run(model, fps: float, seconds: float, batch: int, out: Path) -> dict:
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    cfg = RunConfig(source=f"synthetic://?fps={fps}&size=640x480", segmenter="in-memory", out=str(out), batch=batch,
                    sinks=["jsonl"], queue_size=2, max_wait_ms=5.0)
    pipeline = Pipeline(cfg, models=[model])
    pipeline.open()
    timer = __import__("threading").Timer(seconds, pipeline.stop)
    timer.start()
    try:
        return pipeline.run()
    finally:
        timer.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(HERE.parents[2] / "shared/data/video/cine/butterfly-ocular-phantom.mp4"))
    parser.add_argument("--bundle", help="bundle folder to use instead of exporting a fresh model")
    parser.add_argument("--model", default="unet")
    parser.add_argument("--model-width", type=int, default=16, help="U-Net base width (64 = the paper's; 16 keeps CPU runs short)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20, help="timed calls of the bare backend")
    parser.add_argument("--frames", type=int, default=120, help="frames through the pipeline per repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--roi", default="auto")
    parser.add_argument("--live-fps", type=float, default=60.0)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: library)")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)

    from edge_bus.runtime.backends import BackendOptions
    from edge_bus.runtime.models import load_model
    from edge_bus.runtime.sources import open_source

    work = Path(tempfile.mkdtemp(prefix="edge-bus-bench-"))
    bundle = Path(args.bundle) if args.bundle else make_bundle(args.model, args.size, work / "bundle", args.model_width)
    model = load_model("segmenter", bundle, "auto", BackendOptions(threads=args.threads), allow_unchecked=True)  # a fresh U-Net: speed only
    with open_source(args.clip) as src:
        frames = [src.read().image for _ in range(args.batch)]

    bare, piped, summaries = [], [], []
    for i in range(args.repeats):
        bare.append(bare_fps(model, frames, args.batch, args.batches))
        s = pipeline_run(model, args.clip, args.batch, args.frames, work / f"run{i}", args.roi)
        summaries.append(s)
        piped.append(s["wall_fps"])
        print(f"repeat {i}: bare {bare[-1]:.2f} fps, pipeline {piped[-1]:.2f} fps", file=sys.stderr)
    live = live_run(model, args.live_fps, args.live_seconds, 1, work / "live")  # batch 1: lowest latency
    model.close()

    ratio = statistics.mean(piped) / statistics.mean(bare)
    now = dt.datetime.now(dt.timezone.utc)
    import onnxruntime
    import cv2

    record = {
        "date": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__},
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "bundle": {"model": model.manifest.model, "model_width": None if args.bundle else args.model_width, "size": model.manifest.preprocessing.size, "path": str(bundle)},
        "backend": model.backend.name,
        "clip": args.clip,
        "batch": args.batch,
        "bare_fps": [round(v, 3) for v in bare],
        "pipeline_fps": [round(v, 3) for v in piped],
        "ratio": round(ratio, 4),
        "pipeline_latency_ms": summaries[-1]["latency_ms"],
        "pipeline_roi": summaries[-1]["roi"],
        "live": {"fps_in": args.live_fps, "seconds": args.live_seconds, "frames": live["frames"], "drops": live["drops"],
                 "fps_out": live["fps"], "latency_total_ms": live["latency_ms"]["total"], "queue_size": 2, "batch": 1},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{now:%Y-%m-%d}-{record['host']}.json"
    write_json_atomic(path, record)
    lt = record["live"]["latency_total_ms"]
    print(json.dumps(record, indent=2))
    print(f"""
| date (UTC) | machine | backend | model, batch | bare fps | pipeline fps | ratio |
|---|---|---|---|---|---|---|
| {record['date']} | {record['machine']['cpu']}, {record['machine']['cores']} cores | {record['backend']} | {record['bundle']['model']} {record['bundle']['size']}px, {args.batch} | {statistics.mean(bare):.2f} | {statistics.mean(piped):.2f} | {ratio:.3f} |

Live synthetic:// at {args.live_fps:g} fps for {args.live_seconds:g} s: {live['frames']} frames processed, {live['drops']} dropped, total latency p50 {lt['p50']} ms, p99 {lt['p99']} ms.
Results: {path}""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
