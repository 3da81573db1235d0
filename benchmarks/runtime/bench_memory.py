"""Resident memory of a long `edge-bus run`: does it stay flat?

    python benchmarks/runtime/bench_memory.py --frames 6000

The runtime's own Pipeline (what `edge-bus run` executes) streams `--frames` unpaced synthetic://
phantom frames (read like a file: nothing dropped) through a freshly exported U-Net (exported in a
child process, so that this one runs without torch, as on a cart) with every
file sink on (JSON Lines, mask PNGs, overlay video), and samples the process's resident set size
(/proc/self/statm) once a second. Reported: RSS after the warm-up part (the first 10% of frames),
at the end and at most, and the growth per 1000 frames fitted over the second half of the run.
Writes results/<UTC date>-<host>-memory.json and prints a Markdown row for README.md. Linux only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6000)
    parser.add_argument("--frame-size", default="776x1080", help="WxH of the synthetic frames (default: the butterfly clip's)")
    parser.add_argument("--size", type=int, default=128, help="model input size")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--bundle", help="a segmenter bundle to use instead of a freshly exported U-Net")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)

    from edge_bus.fileio import write_json_atomic
    from edge_bus.runtime.backends import BackendOptions
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.models import load_model
    from edge_bus.runtime.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="edge-bus-mem-"))
    bundle = Path(args.bundle) if args.bundle else work / "bundle"
    if not args.bundle:  # exported in a child process: this one never imports torch, like a cart
        code = (f"from edge_bus.exporting import fresh_bundle; fresh_bundle('unet', {str(bundle)!r}, size={args.size}, "
                "batch_range=(1, 8), model_kwargs={'width': 16})")
        subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    model = load_model("segmenter", bundle, "auto", BackendOptions(), allow_unchecked=not args.bundle)  # a fresh U-Net: memory only
    cfg = RunConfig(source=f"synthetic://?fps=0&size={args.frame_size}", segmenter="in-memory", out=str(work / "run"),
                    batch=args.batch, roi="none", sinks=["jsonl", "masks", "overlay"], max_frames=args.frames)
    samples: list[tuple[int, float]] = []  # (frames done, RSS MB)
    pipeline = Pipeline(cfg, models=[model])
    pipeline.progress_interval_s = 1.0
    pipeline.on_progress = lambda s: samples.append((int(s["frames"]), rss_mb()))
    pipeline.open()
    start_rss, t0 = rss_mb(), time.perf_counter()
    summary = pipeline.run()
    wall = time.perf_counter() - t0
    samples.append((int(summary["frames"]), rss_mb()))
    model.close()

    frames = np.array([f for f, _ in samples], dtype=float)
    rss = np.array([m for _, m in samples])
    warm = rss[frames >= 0.1 * args.frames]
    half = frames >= 0.5 * args.frames
    slope = float(np.polyfit(frames[half], rss[half], 1)[0] * 1000) if half.sum() >= 3 else float("nan")
    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "date": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cores": os.cpu_count(),
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "frames": summary["frames"], "drops": summary["drops"], "wall_s": round(wall, 1), "fps": summary["fps"],
        "sinks": cfg.sinks, "frame_size": args.frame_size, "batch": args.batch, "torch_imported": "torch" in sys.modules,
        "model": args.bundle or f"unet w16 {args.size}px (fresh)",
        "rss_mb": {"before_run": round(start_rss, 1), "after_warmup": round(float(warm[0]), 1) if len(warm) else None,
                   "end": round(float(rss[-1]), 1), "max": round(float(rss.max()), 1)},
        "growth_mb_per_1000_frames_second_half": round(slope, 3),
        "samples": [[int(f), round(float(m), 1)] for f, m in zip(frames, rss)],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{now:%Y-%m-%d}-{record['host']}-memory.json"
    write_json_atomic(path, record)
    r = record["rss_mb"]
    print(f"""| date (UTC) | frames | wall s | RSS MB after warm-up | RSS MB at end | RSS MB max | growth MB / 1000 frames (2nd half) |
|---|---|---|---|---|---|---|
| {record['date']} | {record['frames']} | {record['wall_s']} | {r['after_warmup']} | {r['end']} | {r['max']} | {record['growth_mb_per_1000_frames_second_half']} |
Results: {path}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
