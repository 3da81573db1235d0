"""`edge-bus evaluate MODEL_FILE`: metrics, Markdown/JSON report and figures on one split."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edge_bus.cli._common import console, err_console, torch_required, user_errors


def check_split_name(split: str) -> None:
    """--split names a split here (train's --split is a manifest): say so when given a file."""
    from edge_bus.data.split import SPLITS
    from edge_bus.errors import ConfigError

    if split in SPLITS:
        return
    hint = "; give the split manifest with --split-manifest" if split.endswith(".json") or "/" in split else ""
    raise ConfigError(f"--split {split!r}: use {', '.join(SPLITS[:-1])} or {SPLITS[-1]}{hint}")


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @user_errors
    def evaluate_command(
        checkpoint: Path = typer.Argument(..., help="best.pt checkpoint, classical.json or ensemble.json"),
        split: str = typer.Option("test", "--split", help="train, val or test"),
        pack: Optional[Path] = typer.Option(None, "--pack", help="packed cache .npz"),
        data: Optional[Path] = typer.Option(None, "--data", help="BUSI-layout folder (to build a pack)"),
        split_manifest: Optional[Path] = typer.Option(None, "--split-manifest", help="split manifest (to build a pack)"),
        out: Path = typer.Option(..., "--out", help="report folder"),
        device: str = typer.Option("cpu", "--device"),
        batch_size: int = typer.Option(16, "--batch-size", min=1),
    ) -> None:
        """Evaluate a trained model: report.json, report.md, confusion_matrix.png or overlays.png."""
        torch_required("edge-bus evaluate")
        from edge_bus.cli.train import check_pack_options, resolve_pack
        from edge_bus.training.evaluate import evaluate, load_any

        check_split_name(split)
        check_pack_options(pack, data, split_manifest, split_option="--split-manifest")
        size = 256
        if pack is None:
            size = load_any(checkpoint).spec.size
        out.mkdir(parents=True, exist_ok=True)
        pack_path = resolve_pack(pack, data, split_manifest, out, size)
        report = evaluate(checkpoint, pack_path, out, split=split, device=device, batch_size=batch_size)
        for warning in report["warnings"]:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        from edge_bus.intervals import text as bounds

        ci = report["intervals"]
        if report["task"] == "classification":
            console.print(escape(f"{report['model']} on {split}: weighted F1 {report['classification']['weighted_f1']:.4f}"
                                 f"{bounds(ci['weighted_f1'])}"), highlight=False)
        else:
            seg = report["segmentation"]
            lesion = seg["lesion_only"]["iou"]
            console.print(escape(
                f"{report['model']} on {split}: mean IoU {seg['all_images']['iou']:.4f}{bounds(ci['all_images']['iou'])} "
                f"(all images), {lesion if lesion is not None else float('nan'):.4f}{bounds(ci['lesion_only']['iou'])} "
                "(lesion only)"), highlight=False)
        console.print(escape(f"in brackets: {ci['level']:.0%} intervals, {ci['method']}"), highlight=False)
        console.print(escape(f"report written to {out / 'report.md'}"))

    @app.command("compare")
    @user_errors
    def compare_command(
        report_a: Path = typer.Argument(..., help="report.json of model A (or its folder)"),
        report_b: Path = typer.Argument(..., help="report.json of model B, same split"),
        out: Optional[Path] = typer.Option(None, "--out", help="folder for comparison.json and comparison.md"),
        resamples: int = typer.Option(2000, "--resamples", min=100, help="bootstrap resamples"),
        seed: int = typer.Option(0, "--seed", min=0, help="seed of the resampling"),
    ) -> None:
        """Is A better than B? Paired bootstrap over the images two `evaluate` reports share (no torch needed)."""
        from edge_bus.comparison import compare, markdown
        from edge_bus.errors import ConfigError
        from edge_bus.fileio import write_json_atomic, write_text_atomic

        if out is not None and out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: is a file; give a folder")
        result = compare(report_a, report_b, resamples=resamples, seed=seed)
        text = markdown(result)
        console.print(escape(text), highlight=False, soft_wrap=True)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "comparison.json", result)
            write_text_atomic(out / "comparison.md", text)
            console.print(escape(f"written to {out / 'comparison.md'}"))
