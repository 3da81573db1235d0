"""`edge-bus info`: what the runtime finds on this machine, and whether a run configuration can work here.

The source is opened as `edge-bus run` opens it: a file, folder or glob is opened and one frame
read; a capture device is opened with the configured width/height/fps/pixel_format and the format it
really gives is read back; access problems of the current user are named. Network streams are not
contacted and GStreamer pipelines not started.

Exit codes: 0 when every check passes (warnings allowed), 1 when a check fails (the advice says
what to do), 2 for a bad option or config file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from edge_bus.cli._common import console, user_errors


def _yes(flag: Any) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def _or_reason(value: Any, section: dict[str, Any]) -> str:
    if value:
        return str(value)
    from rich.markup import escape

    return f"[dim]not found ({escape(str(section.get('reason', 'unknown')))})[/]"


def _facts_table(info: dict[str, Any]):
    from rich.table import Table

    table = Table(title="edge-bus info: this machine", show_header=True, header_style="bold")
    table.add_column("item")
    table.add_column("found")
    host, cpu, mem, gpu = info["host"], info["cpu"], info["memory"], info["gpu"]
    table.add_row("edge-bus", f"{host['edge_bus']} (Python {host['python']})")
    table.add_row("OS", host["os"])
    table.add_row("CPU", f"{cpu['model']} ({cpu['arch']}, {cpu['usable_cores']}/{cpu['cores']} cores usable)")
    table.add_row("memory", f"{mem['total_gib']} GiB" if mem.get("total_gib") else _or_reason(None, mem))
    if gpu.get("available"):
        extra = ", ".join(
            f"{k} {gpu[k]}" for k in ("driver", "compute_capability", "memory_mib") if gpu.get(k) is not None
        )
        table.add_row("GPU", f"{gpu['name']} ({extra}; via {gpu['source']})")
    else:
        table.add_row("GPU", f"[yellow]no GPU[/] [dim]({gpu.get('reason')})[/]")
    jetson, power = info["jetson"], info["power"]
    if jetson.get("is_jetson"):
        table.add_row("Jetson", f"{jetson.get('model')} (L4T {jetson.get('l4t') or 'unknown'})")
        table.add_row("power mode", _or_reason(power.get("nvpmodel"), power))
        clocks = power.get("clocks")
        table.add_row("clocks", "; ".join(clocks) if clocks else f"[dim]{power.get('clocks_reason', 'unknown')}[/]")
    else:
        table.add_row("Jetson", "[dim]no[/]")
    table.add_row("TensorRT", _or_reason(info["tensorrt"].get("version"), info["tensorrt"]))
    cuda = info.get("cuda_python", {})
    found = cuda.get("module") and f"{cuda.get('version') or 'unknown version'} ({cuda['module']})"
    table.add_row("cuda-python", _or_reason(found, cuda))
    ort = info["onnxruntime"]
    table.add_row(
        "ONNX Runtime",
        f"{ort['version']} ({', '.join(ort['providers'])})" if ort.get("version") else _or_reason(None, ort),
    )
    cv = info["opencv"]
    if cv.get("version"):
        table.add_row(
            "OpenCV",
            f"{cv['version']}: GStreamer {_yes(cv['gstreamer'])}, V4L2 {_yes(cv['v4l2'])}, FFMPEG {_yes(cv['ffmpeg'])}",
        )
    else:
        table.add_row("OpenCV", _or_reason(None, cv))
    torch = info["torch"]
    table.add_row("PyTorch", torch["version"] if torch.get("version") else f"[dim]{torch.get('reason')}[/]")
    devices = info["capture_devices"]
    table.add_row(
        "capture devices",
        "\n".join(f"{d['path']} ({d.get('name') or 'unnamed'})" for d in devices) if devices else "[dim]none[/]",
    )
    return table


def _checks_table(checks):
    from rich.markup import escape
    from rich.table import Table

    style = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}
    table = Table(title="can this configuration run here?", show_header=True, header_style="bold")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail / advice", overflow="fold")
    for check in checks:
        text = escape(check.detail) + (f"\n[cyan]-> {escape(check.advice)}[/]" if check.advice else "")
        table.add_row(check.name, style[check.status], text)
    return table


def info(
    config: Optional[Path] = typer.Option(None, "--config", help="Run configuration (YAML) to check."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Backend to check (overrides the config)."),
    source: Optional[str] = typer.Option(None, "--source", help="Source URI to check (overrides the config)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine facts and checks as JSON."),
) -> None:
    """Show what the runtime finds on this machine (GPU, TensorRT, ONNX Runtime, OpenCV, capture
    devices) and check that the configured backend and source can work here (the source is opened)."""
    _info(config, backend, source, as_json)


@user_errors
def _info(config: Optional[Path], backend: Optional[str], source: Optional[str], as_json: bool) -> None:
    from edge_bus.runtime.config import load_run_config
    from edge_bus.sysinfo import diagnose, machine_info

    run_config = load_run_config(config, backend=backend, source=source) if config is not None else None
    facts = machine_info()
    checks = diagnose(facts, run_config, backend=backend, source=source)
    failed = [c for c in checks if c.failed]
    if as_json:
        doc = {"machine": facts, "checks": [c.to_dict() for c in checks], "ok": not failed}
        typer.echo(json.dumps(doc, indent=2, default=str))
    else:
        console.print(_facts_table(facts))
        if checks:
            console.print(_checks_table(checks))
            if failed:
                console.print(f"[bold red]{len(failed)} check(s) failed[/]: see the advice above.")
            else:
                console.print("[green]all checks passed[/]")
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `edge-bus info` to the main app."""
    app.command("info")(info)
