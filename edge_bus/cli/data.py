"""`edge-bus data inspect | split | pack | synth`: look at a BUSI folder, split it, cache it, fake it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from edge_bus.cli._common import console, err_console, fail, user_errors

data_app = typer.Typer(help="BUSI data: inspect, split, pack into a cache, write synthetic phantoms.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's command(s) to the main app."""
    app.add_typer(data_app, name="data")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _check_out_folder(out: Path) -> None:
    """--out names a folder to create or reuse: refuse an existing file there or above it."""
    from edge_bus.errors import ConfigError
    from edge_bus.fileio import file_above

    blocker = out if out.exists() and not out.is_dir() else file_above(out)
    if blocker is not None:
        raise ConfigError(f"--out {out}: {blocker} is a file, not a folder; give a folder path for the report")


def _print_problems(index, limit: int = 20) -> None:
    if not index.problems:
        return
    err_console.print(f"[yellow]{len(index.problems)} file(s) skipped or ignored:[/]")
    for p in index.problems[:limit]:
        err_console.print(f"  {_rel(p.path, index.root)}: {p.reason}", highlight=False, markup=False)
    if len(index.problems) > limit:
        err_console.print(f"  ... and {len(index.problems) - limit} more (all listed in the JSON report)")


def _size_stats(values: list[int]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values)
    return {"min": int(arr.min()), "median": float(np.median(arr)), "max": int(arr.max())}


def _inspection(index, duplicates, timings: dict[str, float]) -> dict[str, Any]:
    """The JSON report of `data inspect`."""
    from collections import Counter

    samples = index.samples
    sizes = Counter((s.width, s.height) for s in samples)
    return {
        "root": str(index.root),
        "images": len(samples),
        "counts": index.counts(),
        "skipped_or_ignored": len(index.problems),
        "problems": [{"path": _rel(p.path, index.root), "reason": p.reason} for p in index.problems],
        "multi_mask": {s.id: len(s.masks) for s in index.multi_mask()},
        "image_size": {
            "width": _size_stats([s.width for s in samples]),
            "height": _size_stats([s.height for s in samples]),
            "distinct_sizes": len(sizes),
            "most_common": [{"width": w, "height": h, "images": n} for (w, h), n in sizes.most_common(5)],
        },
        "duplicates": {
            "thresholds": duplicates.thresholds,
            "groups": len(duplicates.groups),
            "cross_class_groups": len(duplicates.cross_class),
            "exact_groups": sum(g.kind == "exact" for g in duplicates.groups),
            "images_in_groups": sum(len(g.ids) for g in duplicates.groups),
            "group_list": [{**g.to_dict(), "labels": g.labels} for g in duplicates.groups],
            "pairs": [
                {"a": a, "b": b, "kind": kind, "phash_distance": dp, "dhash_distance": dd}
                for a, b, kind, dp, dd in duplicates.pairs
            ],
        },
        "timing_s": {k: round(v, 3) for k, v in timings.items()},
    }


@data_app.command("inspect")
@user_errors
def inspect(
    data_dir: Path = typer.Argument(..., help="BUSI-layout folder (benign/, malignant/, normal/)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder for inspect.json and class_distribution.png [default: reports/inspect-<folder name>]."
    ),
    show_groups: int = typer.Option(15, "--show-groups", min=0, help="Duplicate groups to list on the terminal."),
) -> None:
    """Per-class counts, image sizes, multi-mask images, duplicate groups and a class-distribution plot."""
    from rich.table import Table

    from edge_bus.data.busi import CLASSES, index_busi
    from edge_bus.data.dedup import find_duplicates
    from edge_bus.fileio import write_json_atomic
    from edge_bus.plots import plot_class_distribution

    if out is not None:
        _check_out_folder(out)
    t0 = time.perf_counter()
    index = index_busi(data_dir, progress=True)
    t1 = time.perf_counter()
    duplicates = find_duplicates(index, progress=True)
    t2 = time.perf_counter()
    report = _inspection(index, duplicates, {"index": t1 - t0, "duplicates": t2 - t1})

    if out is None:
        out = Path("reports") / f"inspect-{index.root.name}"
        _check_out_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "inspect.json", report)
    plot_class_distribution(report["counts"], out / "class_distribution.png", title=f"{index.root.name}: images per class")

    table = Table(title=f"{index.root}")
    for col in ("class", "images", "with >1 mask", "width min/med/max", "height min/med/max"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for label in CLASSES:
        group = [s for s in index.samples if s.label == label]
        if group:
            w, h = _size_stats([s.width for s in group]), _size_stats([s.height for s in group])
            dims = (f"{w['min']}/{w['median']:g}/{w['max']}", f"{h['min']}/{h['median']:g}/{h['max']}")
        else:
            dims = ("-", "-")
        table.add_row(label, str(len(group)), str(sum(len(s.masks) > 1 for s in group)), *dims)
    table.add_row("[bold]all", f"[bold]{len(index.samples)}", f"[bold]{len(report['multi_mask'])}", "", "")
    console.print(table)

    dup = report["duplicates"]
    console.print(
        f"duplicate groups: {dup['groups']} ({dup['images_in_groups']} images; {dup['exact_groups']} exact, "
        f"{dup['cross_class_groups']} spanning two classes)"
    )
    if duplicates.groups and show_groups:
        groups = sorted(duplicates.groups, key=lambda g: (not g.cross_class, -len(g.ids), g.group))
        gt = Table(show_header=True)
        gt.add_column("group", justify="right")
        gt.add_column("kind")
        gt.add_column("images")
        for g in groups[:show_groups]:
            flag = " [red](cross-class)[/]" if g.cross_class else ""
            gt.add_row(str(g.group), g.kind + flag, ", ".join(g.ids))
        console.print(gt)
        if len(groups) > show_groups:
            console.print(f"... {len(groups) - show_groups} more groups in the JSON report")
    _print_problems(index)
    console.print(
        f"skipped or ignored: {len(index.problems)}; indexed in {t1 - t0:.1f} s, hashed in {t2 - t1:.1f} s\n"
        f"wrote {out / 'inspect.json'} and {out / 'class_distribution.png'}"
    )


@data_app.command("split")
@user_errors
def split(
    data_dir: Path = typer.Argument(..., help="BUSI-layout folder."),
    out: Path = typer.Option(..., "--out", help="Split manifest to write (JSON)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split."),
    ratios: str = typer.Option("0.7,0.15,0.15", "--ratios", help="train,val,test fractions summing to 1."),
) -> None:
    """A stratified, seeded split that keeps every duplicate group inside one split."""
    from rich.table import Table

    from edge_bus.data.busi import CLASSES, index_busi
    from edge_bus.data.split import SPLITS, load_split, make_split, parse_ratios, same_split_except_root, write_split
    from edge_bus.errors import DataError
    from rich.markup import escape

    from edge_bus.errors import ConfigError
    from edge_bus.fileio import check_out_file

    parsed = parse_ratios(ratios)  # fail on a bad option before reading any data
    check_out_file(out, ConfigError, example="split.json", label="--out")
    index = index_busi(data_dir, progress=True)
    manifest = make_split(index, seed=seed, ratios=parsed, progress=True)
    try:
        previous = load_split(out) if out.is_file() else None
    except DataError:
        previous = None
    write_split(manifest, out)
    if previous is not None and previous.hash != manifest.hash and same_split_except_root(previous, manifest):
        err_console.print(
            f"[yellow]note:[/] the split in {escape(str(out))} is unchanged except data_root "
            f"({escape(previous.data_root)} -> {escape(manifest.data_root)}); the split hash covers data_root, so it changed from {previous.hash[:12]} "
            f"to {manifest.hash[:12]} and checkpoints or packs made with the old manifest name the old hash",
            highlight=False,
        )

    counts = manifest.counts()
    table = Table(title=f"split of {index.root} (seed {seed})")
    table.add_column("split")
    for c in CLASSES:
        table.add_column(c, justify="right")
    table.add_column("total", justify="right")
    for s in SPLITS:
        table.add_row(s, *[str(counts[s][c]) for c in CLASSES], str(sum(counts[s].values())))
    console.print(table)
    _print_problems(index)
    crossing = manifest.groups_across_splits()
    if crossing:  # make_split never does this; the written result is checked all the same
        fail(f"duplicate groups {crossing[:10]} cross splits in {out}; this is a bug in edge-bus", code=1)
    console.print(
        f"{len(manifest.duplicate_groups)} duplicate groups, none crosses splits; "
        f"{len(index.problems)} file(s) skipped or ignored\n"
        f"wrote {out} (hash {manifest.hash[:12]}, dataset {manifest.dataset_sha256[:12]})"
    )


@data_app.command("pack")
@user_errors
def pack(
    manifest_path: Path = typer.Argument(..., metavar="MANIFEST", help="Split manifest from `edge-bus data split`."),
    data: Optional[Path] = typer.Option(None, "--data", help="BUSI folder [default: the manifest's data_root]."),
    out: Path = typer.Option(..., "--out", help="Cache file to write (.npz)."),
    size: int = typer.Option(256, "--size", min=8, help="Side of the square preprocessed images."),
) -> None:
    """Preprocess the split once into a compact uint8 .npz cache for training."""
    from edge_bus.data.pack import pack_split
    from edge_bus.data.split import load_split

    manifest = load_split(manifest_path)
    root = data if data is not None else Path(manifest.data_root)
    t0 = time.perf_counter()
    path = pack_split(manifest, root, out, size=size, progress=True)
    seconds = time.perf_counter() - t0
    counts = {s: sum(v.values()) for s, v in manifest.counts().items()}
    console.print(
        f"wrote {path}: {path.stat().st_size / 1e6:.1f} MB, {size}x{size}, "
        f"train {counts['train']} / val {counts['val']} / test {counts['test']} images, in {seconds:.1f} s"
    )


def _parse_size(text: str) -> tuple[int, int]:
    from edge_bus.errors import ConfigError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {text!r}: expected HEIGHTxWIDTH, e.g. 256x320") from None
    if h < 16 or w < 16:
        raise ConfigError(f"--size {text!r}: use at least 16x16")
    return h, w


@data_app.command("synth")
@user_errors
def synth(
    out: Path = typer.Argument(..., help="Folder to write the BUSI-layout phantoms into."),
    benign: int = typer.Option(40, "--benign", min=0),
    malignant: int = typer.Option(40, "--malignant", min=0),
    normal: int = typer.Option(20, "--normal", min=0),
    size: str = typer.Option("256x256", "--size", help="HEIGHTxWIDTH of every image."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Write synthetic phantoms (speckle, hypoechoic lesions, masks) in the BUSI layout."""
    from edge_bus.data.synthetic import write_busi_phantoms

    hw = _parse_size(size)
    root = write_busi_phantoms(out, counts={"benign": benign, "malignant": malignant, "normal": normal}, size=hw, seed=seed)
    console.print(f"wrote {benign} benign, {malignant} malignant, {normal} normal phantoms ({hw[0]}x{hw[1]}) to {root}")
