"""`edge-bus train MODEL`: train a network, fit the classical baseline or choose ensemble weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edge_bus.cli._common import console, torch_required, user_errors


def resolve_pack(pack: Optional[Path], data: Optional[Path], split: Optional[Path], out: Path, size: int) -> Path:
    """--pack when given; else build one from --data/--split into OUT/pack.npz (reused if present)."""
    from edge_bus.errors import ConfigError

    if pack is not None:
        return pack
    if data is None or split is None:
        raise ConfigError("give --pack CACHE.npz, or --data DIR with --split MANIFEST to build one")
    from edge_bus.data.pack import load_pack, pack_split
    from edge_bus.data.split import load_split

    manifest = load_split(split)
    path = out / "pack.npz"
    if path.is_file():
        existing = load_pack(path)
        if existing.split_hash == manifest.hash and existing.spec.size == size:
            return path
    console.print(f"packing {split} from {data} at {size} px into {path}")
    return pack_split(manifest, data, path, size=size, progress=True)


def parse_model_args(pairs: list[str], width: Optional[int]) -> dict:
    from edge_bus.errors import ConfigError

    kwargs: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-arg {pair!r}: use KEY=VALUE, e.g. width=32")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key] = value
    if width is not None:
        kwargs["width"] = width
    return kwargs


def register(app: typer.Typer) -> None:
    @app.command("train")
    @user_errors
    def train_command(
        model: str = typer.Argument(..., help="vgg19, resnet50, efficientnet_b0, unet, unet_vgg19, deeplabv3_resnet101, classical or ensemble"),
        data: Optional[Path] = typer.Option(None, "--data", help="BUSI-layout folder (to build the pack)"),
        split: Optional[Path] = typer.Option(None, "--split", help="split manifest (to build the pack)"),
        pack: Optional[Path] = typer.Option(None, "--pack", help="packed cache .npz (skips packing)"),
        out: Path = typer.Option(..., "--out", help="output folder (best.pt, last_state.pt, history.json)"),
        epochs: int = typer.Option(30, "--epochs"),
        batch_size: int = typer.Option(8, "--batch-size"),
        lr: float = typer.Option(3e-4, "--lr", help="peak learning rate of the one-cycle schedule"),
        resolution: Optional[int] = typer.Option(None, "--resolution", help="train at this size (default: the pack's)"),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
        seed: int = typer.Option(0, "--seed"),
        weights: Optional[str] = typer.Option(None, "--weights", help="'imagenet' for torchvision's pretrained weights"),
        init: Optional[Path] = typer.Option(None, "--init", help="local state dict to start from"),
        resume: bool = typer.Option(False, "--resume", help="continue from OUT/last_state.pt"),
        patience: int = typer.Option(10, "--patience", help="early stopping: epochs without val improvement"),
        width: Optional[int] = typer.Option(None, "--width", help="U-Net width (channels at full resolution)"),
        model_arg: list[str] = typer.Option([], "--model-arg", help="extra model keyword KEY=VALUE (repeatable)"),
        member: list[Path] = typer.Option([], "--member", help="ensemble: a member checkpoint (repeat, at least 2)"),
        augment: bool = typer.Option(True, "--augment/--no-augment"),
        workers: int = typer.Option(0, "--workers", help="data-loader worker processes"),
    ) -> None:
        """Train MODEL on the train split with early stopping on val (classical: parameter search on
        train; ensemble: weights chosen on val). Multi-GPU: `torchrun --nproc_per_node N $(which edge-bus) train ...`."""
        torch_required("edge-bus train")
        from edge_bus.errors import ConfigError

        out.mkdir(parents=True, exist_ok=True)
        pack_path = resolve_pack(pack, data, split, out, resolution or 256)
        if model == "classical":
            from edge_bus.training.baselines import fit_classical_pack

            path = fit_classical_pack(pack_path, out, resolution)
            console.print(f"classical baseline written to {path}")
            return
        if model == "ensemble":
            from edge_bus.training.baselines import fit_ensemble

            path = fit_ensemble(member, pack_path, out, device="cpu" if device == "auto" else device)
            console.print(f"ensemble written to {path}")
            return
        if resolution is not None and pack is None:
            resolution = None  # the pack was built at this resolution
        from edge_bus.training.loop import TrainConfig, train

        cfg = TrainConfig(
            model=model, pack=pack_path, out=out, epochs=epochs, batch_size=batch_size, lr=lr, resolution=resolution,
            device=device, seed=seed, weights=weights, init=str(init) if init else None, resume=resume, patience=patience,
            model_kwargs=parse_model_args(model_arg, width), augment=augment, num_workers=workers,
        )
        try:
            result = train(cfg)
        except ValueError as exc:  # model construction: unknown name or bad keyword
            raise ConfigError(str(exc)) from None
        console.print(
            f"best epoch {result.best_epoch} (val score {result.best_score:.4f}); checkpoint {result.best_checkpoint}"
            + (" [stopped early]" if result.stopped_early else "")
        )
