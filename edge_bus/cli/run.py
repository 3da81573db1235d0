"""`edge-bus run`: stream a source through a classifier and/or a segmenter bundle.

Options override `--config FILE` (YAML, see edge_bus.runtime.config). Never imports torch.

Exit codes: 0 when the run ended normally (end of a file source, max_frames, Ctrl-C, SIGTERM);
2 for a user error (bad option, config, bundle or source: one line saying what to do);
3 (EXIT_SOURCE_LOST) when a live source was lost and did not come back after its reconnect
attempts, so that systemd's Restart=on-failure starts the run again; 130 for Ctrl-C and 143 for
SIGTERM while the models load (SuccessExitStatus= of the deployed units: a stop is no failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from edge_bus.cli._common import console, err_console, user_errors

EXIT_SOURCE_LOST = 3


def _status_line(s: dict[str, Any]) -> str:
    p50 = s["latency_ms"]["total"]["p50"]
    lat = f"{p50:.0f} ms" if p50 is not None else "-"
    return (f"[bold]{s['frames']}[/] frames  {s['fps']:.1f} fps  latency p50 {lat}  "
            f"drops {s['drops']}  bad {s['bad_frames']}  reconnects {s['reconnects']}")


def print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="edge-bus run", show_header=False, box=None)
    table.add_row("source", str(summary["source"]))
    table.add_row("backend", str(summary["backend"]))
    if summary.get("roi"):
        table.add_row("roi", ",".join(map(str, summary["roi"])))
    table.add_row("frames", str(summary["frames"]))
    table.add_row("drops", str(summary["drops"]))
    table.add_row("bad frames", str(summary["bad_frames"]))
    table.add_row("reconnects", str(summary["reconnects"]))
    table.add_row("fps", f"{summary['fps']:.2f}")
    capture = summary.get("capture_format")
    if capture and capture.get("mismatch"):
        from edge_bus.runtime.sources import describe_capture

        table.add_row("capture format", describe_capture(capture))
    for stage, v in summary["latency_ms"].items():
        if v["p50"] is not None:
            table.add_row(f"{stage} ms", f"p50 {v['p50']:.2f}  p99 {v['p99']:.2f}")
    table.add_row("ended", summary.get("ended_because") or "-")
    if summary.get("last_error"):
        table.add_row("last error", str(summary["last_error"]))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `edge-bus run`."""

    @app.command("run")
    @user_errors
    def run(
        source: Optional[str] = typer.Option(None, "--source", "-s", help="URI: clip.mp4, folder, 'dir/*.png', v4l2:///dev/video0, rtsp://..., udp://..., gst://...appsink, synthetic://?fps=30"),
        classifier: Optional[Path] = typer.Option(None, "--classifier", help="classification bundle folder"),
        segmenter: Optional[Path] = typer.Option(None, "--segmenter", help="segmentation bundle folder"),
        backend: Optional[str] = typer.Option(None, "--backend", help="auto | tensorrt | onnxruntime | torchscript (default auto)"),
        precision: Optional[str] = typer.Option(None, "--precision", help="auto | fp32 | fp16 | int8 (default auto: the best fresh TensorRT engine, else FP32)"),
        device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="results folder (results.jsonl, overlay.mp4, masks/)"),
        batch: Optional[int] = typer.Option(None, "--batch", help="max batch of the dynamic batcher (default 4)"),
        max_wait_ms: Optional[float] = typer.Option(None, "--max-wait-ms", help="max wait of the batcher (default 20)"),
        queue_size: Optional[int] = typer.Option(None, "--queue-size", help="frames queued between capture and inference"),
        roi: Optional[str] = typer.Option(None, "--roi", help="none | auto | x,y,w,h"),
        sinks: Optional[str] = typer.Option(None, "--sinks", help="comma list of jsonl, overlay, masks, window (default jsonl)"),
        max_frames: Optional[int] = typer.Option(None, "--max-frames", help="stop after this many frames"),
        width: Optional[int] = typer.Option(None, "--width", help="capture width (live sources)"),
        height: Optional[int] = typer.Option(None, "--height", help="capture height (live sources)"),
        fps: Optional[float] = typer.Option(None, "--fps", help="capture frame rate (live sources)"),
        pixel_format: Optional[str] = typer.Option(None, "--pixel-format", help="FOURCC, e.g. YUYV or MJPG (v4l2)"),
        health_file: Optional[Path] = typer.Option(None, "--health-file", help="write a JSON health report here"),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML run configuration; options override it"),
        allow_rejected: bool = typer.Option(False, "--allow-rejected", help="run bundles that failed their parity gate"),
        allow_unchecked: bool = typer.Option(False, "--allow-unchecked", help="run untrained / latency-only bundles (no accuracy checked)"),
        per_run_folder: bool = typer.Option(False, "--per-run-folder", help="write to OUT/<UTC start>-<pid>/ (and OUT/latest) instead of OUT itself"),
        keep_runs: Optional[int] = typer.Option(None, "--keep-runs", help="with --per-run-folder: runs kept, counting only runs that processed frames (the oldest deleted when a run with frames ends)"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run's results in OUT (refused otherwise)"),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads per backend (default: library default)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line"),
    ) -> None:
        """Run the models on a stream; print a live status line and a summary."""
        from rich.live import Live
        from rich.text import Text

        from edge_bus.runtime.config import RunConfig, load_run_config
        from edge_bus.runtime.pipeline import Pipeline, write_summary

        overrides = dict(
            source=source, classifier=str(classifier) if classifier else None,
            segmenter=str(segmenter) if segmenter else None, backend=backend, precision=precision, device=device,
            out=str(out) if out else None, batch=batch, max_wait_ms=max_wait_ms, queue_size=queue_size, roi=roi,
            sinks=sinks, max_frames=max_frames, width=width, height=height, fps=fps, pixel_format=pixel_format,
            health_file=str(health_file) if health_file else None, allow_rejected=True if allow_rejected else None,
            allow_unchecked=True if allow_unchecked else None, out_per_run=True if per_run_folder else None,
            keep_runs=keep_runs,
        )
        if config is not None:
            cfg = load_run_config(config, **overrides)
        else:
            cfg = RunConfig.from_dict({k: v for k, v in overrides.items() if v is not None}, where="options")

        live = None if quiet else Live(Text(""), console=err_console, transient=True, refresh_per_second=4)

        def progress(snapshot: dict[str, Any]) -> None:
            if live is not None:
                live.update(Text.from_markup(_status_line(snapshot)))

        pipeline = Pipeline(cfg, on_progress=progress, threads=threads, overwrite=overwrite)
        pipeline.open()
        err_console.print(f"source {pipeline.source.uri}  backend {pipeline.stats.backend}", highlight=False)
        if live is not None:
            live.start()
        try:
            summary = pipeline.run()
        finally:
            if live is not None:
                live.stop()
        path = write_summary(summary, pipeline.out_dir)
        print_summary(summary)
        if path is not None:
            console.print(f"results in {pipeline.out_dir}", highlight=False)
        if summary.get("source_lost"):
            err_console.print(f"[bold red]error:[/] {summary['source']}: {summary['ended_because']}; exit code "
                              f"{EXIT_SOURCE_LOST} (a service manager restarts the run)", highlight=False, soft_wrap=True)
            raise typer.Exit(code=EXIT_SOURCE_LOST)
