"""Writers of a BenchmarkReport: terminal table, JSON, Markdown and PNG plots.

Files written into the output folder:
    benchmark.json            everything, raw per-iteration samples included
    benchmark.md              the tables, the machine, the exact command, the notes
    latency_vs_batch.png      end-to-end p50 per frame against batch size, one line per model x backend
    latency_hist.png          histogram of end-to-end latencies per configuration (batch 1)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edge_bus.benchmarking.machine import machine_summary
from edge_bus.benchmarking.records import STAGES, BenchmarkReport, ConfigResult, PipelineResult

JSON_NAME = "benchmark.json"
MARKDOWN_NAME = "benchmark.md"
PLOT_BATCH_NAME = "latency_vs_batch.png"
PLOT_HIST_NAME = "latency_hist.png"

LATENCY_COLUMNS = ["model", "backend", "prec", "batch", "iters", "p50", "p90", "p99", "max", "mean", "fps", "x eager"]
STAGE_COLUMNS = ["model", "backend", "prec", "batch", *STAGES, "accuracy"]
COLUMNS = LATENCY_COLUMNS + [f"{s} ms" for s in STAGES] + ["accuracy"]
PIPELINE_COLUMNS = ["model", "backend", "prec", "batch", "frames", "fps", "seq fps", "pipe/seq",
                    "p50", "p90", "p99", "mean", "infer p50", "drops", "stopped by"]
PIPELINE_TERMINAL = ("model", "backend", "prec", "batch", "frames", "fps", "seq fps", "pipe/seq", "p50", "p99")


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def accuracy_text(row: ConfigResult) -> str:
    if row.latency_only:
        return "latency only"
    if row.accuracy is None:
        return "not measured"
    a = row.accuracy
    if "weighted_f1" in a:
        text = f"wF1 {a['weighted_f1']:.4f}"
        if row.accuracy_reference and not row.baseline:
            text += f" (fp32 torch {row.accuracy_reference['weighted_f1']:.4f}{_versus_text(row)})"
        return text
    text = f"IoU {_fmt(a.get('iou'), 3)} Dice {_fmt(a.get('dice'), 3)}"
    if row.accuracy_reference and not row.baseline:
        text += f" (fp32 torch IoU {_fmt(row.accuracy_reference.get('iou'), 3)}{_versus_text(row)})"
    return text


def _versus_text(row: ConfigResult) -> str:
    """', -0.003 [-0.008, +0.001]': this artifact minus the FP32 reference, paired interval."""
    v = row.accuracy_vs_reference
    if not v:
        return ""
    low, high = v["interval"]
    return f", {v['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def latency_row(r: ConfigResult) -> list[str]:
    e = r.end_to_end
    return [
        r.model, r.backend, r.precision, str(r.batch), f"{r.iterations}{'*' if r.stopped_by == 'time limit' else ''}",
        _fmt(e.p50_ms), _fmt(e.p90_ms), _fmt(e.p99_ms), _fmt(e.max_ms), _fmt(e.mean_ms),
        _fmt(r.throughput_fps, 2), "-" if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}x",
    ]


def stage_cells(r: ConfigResult) -> list[str]:
    return [_fmt(r.stages[s].mean_ms) if s in r.stages else "-" for s in STAGES]


def table_rows(report: BenchmarkReport) -> list[list[str]]:
    """One row per configuration with every column of COLUMNS (the Markdown table)."""
    return [latency_row(r) + stage_cells(r) + [accuracy_text(r)] for r in report.results]


def pipeline_row(p: PipelineResult) -> list[str]:
    total = p.latency_ms.get("total") or {}
    infer = p.latency_ms.get("inference") or {}
    return [
        p.model, p.backend, p.precision, str(p.batch), str(p.frames), _fmt(p.fps, 2), _fmt(p.sequential_fps, 2),
        "-" if p.ratio is None else f"{p.ratio:.2f}x",
        _fmt(total.get("p50")), _fmt(total.get("p90")), _fmt(total.get("p99")), _fmt(total.get("mean")),
        _fmt(infer.get("p50")), str(p.drops), p.stopped_by or "-",
    ]


PIPELINE_TITLE = "End to end through the runtime pipeline (edge-bus run, threaded, no sinks), per frame, ms"
PIPELINE_LEGEND = (
    "pipeline rows: the runtime's own Pipeline (capture, batcher + preprocess, inference and postprocess in "
    "overlapping threads) at the largest batch; fps = its frames / streaming time; latency = per frame from "
    "capture to the end of postprocessing (includes queueing and batching waits); seq fps = the sequential "
    "loop's fps at the same batch in this run; pipe/seq = fps / seq fps; p90, mean, inference p50, drops and "
    "how each run ended are in benchmark.md and benchmark.json"
)


def print_table(report: BenchmarkReport, console) -> None:
    from rich.table import Table  # noqa: PLC0415

    text_cols = ("model", "backend", "prec", "accuracy")
    lat = Table(title="End-to-end latency per batch, ms (decode -> postprocess, warm-up excluded)")
    for name in LATENCY_COLUMNS:
        lat.add_column(name, justify="left" if name in text_cols else "right", overflow="fold")
    stages = Table(title="Per-stage mean per batch, ms, and accuracy on the test split")
    for name in STAGE_COLUMNS:
        stages.add_column(name, justify="left" if name in text_cols else "right", overflow="fold")
    for r in report.results:
        lat.add_row(*latency_row(r))
        stages.add_row(*latency_row(r)[:4], *stage_cells(r), accuracy_text(r))
    console.print(lat)
    console.print(stages)
    if report.pipeline:
        pipe = Table(title=PIPELINE_TITLE)
        keep = [PIPELINE_COLUMNS.index(n) for n in PIPELINE_TERMINAL]
        for name in PIPELINE_TERMINAL:
            pipe.add_column(name, justify="left" if name in text_cols else "right", overflow="fold")
        for p in report.pipeline:
            cells = pipeline_row(p)
            pipe.add_row(*[cells[i] for i in keep])
        console.print(pipe)
    console.print(f"machine: {machine_summary(report.machine)}", highlight=False)
    console.print(
        "fps = frames per second end to end; 'x eager' = fps / fps of the same model in PyTorch eager FP32 batch 1 "
        "(same run); * = time-boxed (fewer iterations); prec = the precision that ran", highlight=False
    )
    if report.pipeline:
        console.print(PIPELINE_LEGEND, highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    for skip in report.skipped:
        console.print(f"skipped: {skip['model']} {skip['backend']} {skip['precision']}: {skip['reason']}", highlight=False)


def write_json(report: BenchmarkReport, out: Path) -> Path:
    path = Path(out) / JSON_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    lines = [f"- summary: {machine_summary(machine)}"]
    for key, value in machine.items():
        if key in ("capture_devices",):
            continue
        lines.append(f"- {key}: `{json.dumps(value, default=str)}`")
    return lines


def markdown(report: BenchmarkReport) -> str:
    s = report.settings
    parts = [
        "# edge-bus benchmark",
        "",
        f"- date: {report.started}",
        f"- command: `{report.command}`",
        f"- wall time: {report.wall_s:.1f} s",
        f"- what was run: models {', '.join(s['models'])}; backends {', '.join(s['backends'])}; precisions "
        f"{', '.join(s['precisions'])} (rows show the precision that ran); batch sizes {', '.join(map(str, s['batches']))}; {s['warmup']} warm-up iteration(s), "
        f"then up to {s['iters']} timed iterations per configuration, time-boxed at {s['max_seconds']:g} s "
        f"(at least {s['min_iters']}); frames from `{s['source']}`",
        "",
        "## End-to-end latency and throughput",
        "",
        "Latencies are per batch in milliseconds, decode -> preprocess -> inference -> postprocess, warm-up excluded. "
        "`fps` is frames per second end to end; `x eager` is that throughput divided by the same model's "
        "PyTorch eager FP32 batch-1 throughput measured in the same run. `*` marks time-boxed configurations.",
        "",
        _md_table(COLUMNS, table_rows(report)),
        "",
    ]
    if report.pipeline:
        parts += [
            "## End to end through the runtime pipeline",
            "",
            PIPELINE_LEGEND[0].upper() + PIPELINE_LEGEND[1:] + ". Each run is time-boxed like the sequential loop "
            f"(`stopped by`); frames from the same source.",
            "",
            _md_table(PIPELINE_COLUMNS, [pipeline_row(p) for p in report.pipeline]),
            "",
        ]
    parts += ["## Accuracy on the test split", ""]
    if any(r.accuracy_vs_reference for r in report.results):
        parts += ["In brackets: the FP32 PyTorch model on the same images, then this artifact minus it with a paired "
                  "95 % bootstrap interval over the test images (an interval that holds 0: no difference shown).", ""]
    seen = set()
    acc_rows = []
    for r in report.results:
        key = (r.model, r.backend, r.precision)
        if key in seen:
            continue
        seen.add(key)
        acc_rows.append([r.model, r.backend, r.precision, accuracy_text(r)])
    parts += [_md_table(["model", "backend", "precision", "accuracy"], acc_rows), ""]
    if report.skipped:
        parts += ["## Skipped", ""] + [f"- {k['model']} {k['backend']} {k['precision']}: {k['reason']}" for k in report.skipped] + [""]
    parts += ["## Machine", "", *_machine_lines(report.machine), ""]
    parts += ["## Bundles", ""] + [f"- {name}: `{json.dumps(info, default=str)}`" for name, info in report.bundles.items()] + [""]
    if report.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(parts)


def write_markdown(report: BenchmarkReport, out: Path) -> Path:
    path = Path(out) / MARKDOWN_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(report), encoding="utf-8")
    return path


def write_plots(report: BenchmarkReport, out: Path) -> list[Path]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in report.results:
        key = f"{r.model} {r.backend} {r.precision}"
        series.setdefault(key, []).append((r.batch, r.end_to_end.p50_ms / r.batch, r.end_to_end.p90_ms / r.batch))
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, points in sorted(series.items()):
        points.sort()
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], marker="o", label=key)
    ax.set_xticks(sorted({r.batch for r in report.results}))
    ax.set_xlabel("batch size")
    ax.set_ylabel("end-to-end p50 per frame (ms)")
    ax.set_yscale("log")
    ax.set_title("Latency per frame against batch size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    batch_path = out / PLOT_BATCH_NAME
    fig.savefig(batch_path, dpi=110)
    plt.close(fig)

    rows = [r for r in report.results if r.batch == min(x.batch for x in report.results)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, max(2.0, 1.8 * len(rows))), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        samples = r.samples_ms["end_to_end"]
        ax.hist(samples, bins=min(30, max(5, len(samples))), color="tab:blue", alpha=0.8)
        for q, style in ((r.end_to_end.p50_ms, "-"), (r.end_to_end.p99_ms, "--")):
            ax.axvline(q, color="black", linestyle=style, linewidth=1)
        ax.set_title(f"{r.label}: p50 {r.end_to_end.p50_ms:.1f} ms (solid), p99 {r.end_to_end.p99_ms:.1f} ms (dashed)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("end-to-end latency per batch (ms)")
    fig.tight_layout()
    hist_path = out / PLOT_HIST_NAME
    fig.savefig(hist_path, dpi=110)
    plt.close(fig)
    return [batch_path, hist_path]


def write_all(report: BenchmarkReport, out: Path, *, plots: bool = True) -> list[Path]:
    paths = [write_json(report, out), write_markdown(report, out)]
    if plots and report.results:
        paths += write_plots(report, out)
    return paths
