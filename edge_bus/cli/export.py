"""`edge-bus export CHECKPOINT ...` and `edge-bus export build-engine BUNDLE`.

`export` is a group whose default command is the checkpoint export: a first argument that is not a
subcommand name goes to it (DefaultGroup below), so both forms above work. torch, onnx and
tensorrt are imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


import typer
from typer.core import TyperGroup

from edge_bus.cli._common import console, err_console, user_errors

DEFAULT_COMMAND = "checkpoint"


class DefaultGroup(TyperGroup):
    """Route `export X ...` to the default command when X is not a subcommand (or --help)."""

    def parse_args(self, ctx: "object", args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: "object") -> list[str]:
        return [c for c in super().list_commands(ctx) if c != DEFAULT_COMMAND] + [DEFAULT_COMMAND]


export_app = typer.Typer(
    cls=DefaultGroup,
    help=(
        "Export a checkpoint into a bundle (edge-bus export CHECKPOINT --out DIR ...), "
        "or build TensorRT engines on the target (edge-bus export build-engine BUNDLE)."
    ),
    no_args_is_help=True,
)


@export_app.command(DEFAULT_COMMAND, help="Export CHECKPOINT into a bundle folder (the default command).")
@user_errors
def export_checkpoint(
    checkpoint: Path = typer.Argument(..., help="checkpoint written by `edge-bus train`, or an ensemble.json"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="bundle folder (default: <checkpoint stem>-bundle)"),
    formats: Optional[str] = typer.Option(None, help="comma list of onnx, torchscript, onnx_int8, tensorrt [onnx,torchscript,tensorrt]"),
    precision: Optional[str] = typer.Option(None, help="TensorRT precisions, comma list of fp32, fp16, int8 [fp16]"),
    batch: Optional[str] = typer.Option(None, help="batch range MIN:MAX [1:8]"),
    size: Optional[int] = typer.Option(None, help="input size (default: the checkpoint's)"),
    recipe: Optional[Path] = typer.Option(None, help="export recipe (export/*.yaml); options given here override it"),
    pack: Optional[Path] = typer.Option(None, help="packed cache (.npz): parity on its val split, calibration on train [the pack the checkpoint records]"),
    data: Optional[Path] = typer.Option(None, help="BUSI folder to draw parity/calibration images from (no pack)"),
    split: Optional[Path] = typer.Option(None, help="with --data: the split manifest the checkpoint was trained on (parity on its val items, calibration on train) [splits/busi-seed0.json when its hash matches]"),
    parity_images: Optional[int] = typer.Option(None, min=1, help="validation images in the parity gate (all of them up to this many) [128]"),
    calibration_images: Optional[int] = typer.Option(None, min=1, help="INT8 calibration images [64]"),
    workspace_gb: Optional[float] = typer.Option(None, help="TensorRT workspace limit in GiB [2]"),
) -> None:
    from edge_bus.cli._common import torch_required

    torch_required("edge-bus export")
    from edge_bus.exporting import export_bundle
    from edge_bus.exporting.recipe import load_recipe

    r = load_recipe(recipe) if recipe else None

    def pick(value, from_recipe, default):
        return value if value is not None else (from_recipe if from_recipe is not None else default)

    out = out or checkpoint.with_name(checkpoint.stem + "-bundle")
    result = export_bundle(
        checkpoint,
        out,
        formats=pick(formats, r and r.formats, "onnx,torchscript,tensorrt"),
        precisions=pick(precision, r and r.precisions, "fp16"),
        batch_range=pick(batch, r and r.batch, "1:8"),
        size=pick(size, r and r.input_size, None),
        pack=pack,
        data=data,
        split=split,
        parity_images=pick(parity_images, r and r.parity_images, 128),
        calibration_images=pick(calibration_images, r and r.calibration_images, 64),
        workspace_gb=pick(workspace_gb, r and r.workspace_gb, 2.0),
        opset=(r.opset if r and r.opset else 18),
        recipe=str(recipe) if recipe else None,
        expect_model=r.model if r else None,
        progress=True,
    )
    _print_result(result.root, result.parity, result.manifest.status, result.messages)
    if not result.passed:
        raise typer.Exit(code=1)


@export_app.command("build-engine", help="Build (or rebuild stale) TensorRT engines for this GPU into BUNDLE.")
@user_errors
def build_engine_cmd(
    bundle: Path = typer.Argument(..., help="bundle folder written by `edge-bus export`"),
    precision: str = typer.Option("fp16", help="comma list of fp32, fp16, int8"),
    workspace_gb: float = typer.Option(2.0, help="TensorRT workspace limit in GiB"),
    pack: Optional[Path] = typer.Option(None, help="INT8 calibration from this pack's train split"),
    data: Optional[Path] = typer.Option(None, help="INT8 calibration from this BUSI folder"),
    split: Optional[Path] = typer.Option(None, help="with --data: the split manifest the model was trained on (calibration on its train items)"),
    force: bool = typer.Option(False, help="rebuild even when a fresh engine exists"),
) -> None:
    from edge_bus.exporting.bundle_export import build_engines

    result = build_engines(bundle, precisions=precision, workspace_gb=workspace_gb, pack=pack, data=data,
                           split=split, force=force, progress=True)
    for line in result.messages:
        console.print(line, highlight=False)
    from edge_bus.bundle import open_bundle

    status = open_bundle(bundle).manifest.status
    if status == "rejected":
        err_console.print(f"parity gate failed: see {bundle / 'parity.json'}")
        raise typer.Exit(code=1)
    if result.failed:  # e.g. a --force rebuild failed: the engine installed before it was kept
        err_console.print(f"parity gate failed for the new {', '.join(result.failed)} engine(s), not installed; "
                          f"bundle {bundle} stays {status}")
        raise typer.Exit(code=1)


def _print_result(root: Path, parity: dict, status: str, messages: list[str]) -> None:
    from rich.table import Table

    from edge_bus.exporting.parity import gate_metric

    table = Table(title=f"parity gate: {root}")
    for col in ("artifact", "precision", "metric", "value", "passed"):
        table.add_column(col)
    for rec in parity.get("artifacts", []):
        metric, value = gate_metric(rec)
        verdict = "yes" if rec.get("passed") else "[red]NO[/]"
        if rec.get("informative_only"):
            verdict = f"{'yes' if rec.get('passed') else 'no'} (not gated)"
        table.add_row(rec.get("artifact", "?"), rec.get("precision", "fp32"), metric, value, verdict)
    console.print(table)
    if any(r.get("artifact") == "onnx_int8_tensorrt" for r in parity.get("artifacts", [])):
        console.print("onnx_int8_tensorrt is the input of TensorRT's INT8 engine, shown as ONNX Runtime runs it; "
                      "the engine itself is gated when build-engine makes it on the GPU", highlight=False)
    for line in messages:
        console.print(line, highlight=False)
    colour = {"accepted": "green", "rejected": "red"}.get(status, "yellow")
    console.print(f"bundle {root}: status [{colour}]{status}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `export` (checkpoint export + build-engine) to the main app."""
    app.add_typer(export_app, name="export")
