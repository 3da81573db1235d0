"""`edge-bus benchmark`: latency, throughput and accuracy of the deployed models on this machine.

With no options it runs on a fresh machine with no GPU and no data set: default bundles (trained
ones from --bundles where present, else exported once from freshly initialized models and cached),
ONNX Runtime, synthetic frames, batch sizes 1 and 4, and the PyTorch eager baseline side by side.
No torch at import time.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from edge_bus.cli._common import console, user_errors


def _split_list(values: Optional[List[str]], default: list[str]) -> list[str]:
    if not values:
        return list(default)
    out: list[str] = []
    for v in values:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _batches(values: Optional[List[str]], default: list[int]) -> list[int]:
    from edge_bus.errors import ConfigError

    out = []
    for text in _split_list(values, [str(b) for b in default]):
        try:
            out.append(int(text))
        except ValueError:
            raise ConfigError(f"--batch '{text}' is not an integer; give batch sizes like --batch 1,4") from None
    return out


def register(app: typer.Typer) -> None:
    @app.command("benchmark")
    @user_errors
    def benchmark(
        model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="Model(s), comma-separated or repeated. Default: every bundle in --bundles when given, else vgg19, unet_vgg19, deeplabv3_resnet101."),
        backend: Optional[List[str]] = typer.Option(None, "--backend", "-b", help="onnxruntime | torchscript | tensorrt (comma-separated or repeated). Default: onnxruntime."),
        precision: Optional[List[str]] = typer.Option(None, "--precision", "-p", help="auto | fp32 | fp16 | int8 (comma-separated or repeated). Default: auto, the runtime's default (TensorRT: best fresh engine; ONNX Runtime, TorchScript: FP32); rows show what ran."),
        batch: Optional[List[str]] = typer.Option(None, "--batch", help="Batch sizes, e.g. 1,4 (must lie in each bundle's batch_range). Default: 1,4."),
        bundles: Optional[Path] = typer.Option(None, "--bundles", help="Folder of trained bundles <DIR>/<model>/manifest.json. Default: $EDGE_BUS_BUNDLES or ~/.local/share/edge-bus/bundles; models without one get a cached latency-only default bundle."),
        data: Optional[Path] = typer.Option(None, "--data", help="BUSI folder (class folders with masks): adds accuracy on the test split."),
        split: Optional[Path] = typer.Option(None, "--split", help="Split manifest for --data (default: a seed-0 split made here)."),
        source: str = typer.Option("synthetic://?fps=0&size=640x480", "--source", help="Frames for the end-to-end loop: synthetic://..., a video file or an image folder."),
        warmup: int = typer.Option(1, "--warmup", help="Untimed warm-up iterations per configuration."),
        iters: int = typer.Option(10, "--iters", help="Timed iterations per configuration (at most)."),
        min_iters: int = typer.Option(2, "--min-iters", help="Timed iterations before the time box may stop a configuration."),
        max_seconds: float = typer.Option(3.0, "--max-seconds", help="Time box of the timed loop of one configuration, seconds."),
        baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also run the PyTorch eager FP32 batch-1 baseline (needs torch)."),
        pipeline: bool = typer.Option(True, "--pipeline/--no-pipeline", help="Also stream each model x backend x precision through the runtime's threaded pipeline (edge-bus run, no sinks) at the largest batch."),
        pipeline_frames: Optional[int] = typer.Option(None, "--pipeline-frames", help="Frames per pipeline run (default: largest batch x --iters); time-boxed by --max-seconds."),
        allow_rejected: bool = typer.Option(False, "--allow-rejected", help="Measure bundles that failed their parity gate."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for ONNX Runtime and torch (default: library default)."),
        max_eval_images: Optional[int] = typer.Option(None, "--max-eval-images", help="Cap on test images scored per artifact."),
        out: Path = typer.Option(Path("benchmark-results"), "--out", "-o", help="Folder for benchmark.json, benchmark.md and the PNG plots."),
        plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the PNG plots."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    ) -> None:
        """Measure latency p50/p90/p99/max, throughput, per-stage times and accuracy of each model x backend x precision x batch, and the runtime pipeline's end-to-end fps."""
        from edge_bus.benchmarking import report as writers
        from edge_bus.benchmarking.config import DEFAULT_BATCHES, DEFAULT_PRECISIONS, BenchmarkConfig
        from edge_bus.benchmarking.runner import prepare, run_benchmark

        config = BenchmarkConfig(
            models=_split_list(model, []) or None,  # None: every bundle in --bundles, else the deployed models
            backends=_split_list(backend, ["onnxruntime"]),
            precisions=_split_list(precision, list(DEFAULT_PRECISIONS)),
            batches=_batches(batch, list(DEFAULT_BATCHES)),
            bundles_dir=bundles,
            data=data,
            split=split,
            source=source,
            warmup=warmup,
            iters=iters,
            min_iters=min_iters,
            max_seconds=max_seconds,
            baseline=baseline,
            pipeline=pipeline,
            pipeline_frames=pipeline_frames,
            allow_rejected=allow_rejected,
            device=device,
            threads=threads,
            max_eval_images=max_eval_images,
            out=out,
            plots=plots,
            command=" ".join(["edge-bus", *map(shlex.quote, sys.argv[1:])]) if sys.argv[1:2] == ["benchmark"] else "edge-bus benchmark",
        )
        prepared = prepare(config)  # every bad option is rejected here, before any export or timing
        exports = [p.model for p in prepared.plans if not p.ready]
        console.print(
            f"benchmark: {', '.join(config.models)} x {', '.join(config.backends)} x {', '.join(config.precisions)} x batch "
            f"{', '.join(map(str, config.batches))}; {config.warmup} warm-up + up to {config.iters} timed iterations "
            f"(time box {config.max_seconds:g} s) per configuration; frames: {config.source}"
            + (f"; baseline: PyTorch eager FP32 batch 1" if config.baseline else "")
            + (f"; runtime pipeline at batch {max(config.batches)}" if config.pipeline else "")
            + (f"; first run: exporting default bundles for {', '.join(exports)}" if exports else ""),
            highlight=False,
        )
        for plan in prepared.plans:
            if plan.latency_only:
                console.print(f"{plan.model}: latency only (freshly initialized model, {plan.path})", highlight=False)
        result = run_benchmark(config, show_progress=progress and console.is_terminal, prepared=prepared)
        writers.print_table(result, console)
        paths = writers.write_all(result, out, plots=plots)
        console.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)
