"""`edge-bus train MODEL`: train a network, fit the classical baseline or combine an ensemble.

Every option is checked before the pack is built: packing BUSI takes a while, and a typo in the
model name should not cost that wait."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from edge_bus.cli._common import console, torch_required, user_errors

PACK_NAME = "pack.npz"


def resolve_pack(pack: Optional[Path], data: Optional[Path], split: Optional[Path], out: Path, size: int) -> Path:
    """--pack when given; else build one from --data and the split manifest into OUT/pack.npz
    (reused if present). Callers run check_pack_options first, before any slow work."""
    if pack is not None:
        return pack
    from edge_bus.data.pack import load_pack, pack_split
    from edge_bus.data.split import load_split

    manifest = load_split(split)
    path = out / PACK_NAME
    if path.is_file():
        existing = load_pack(path)
        if existing.split_hash == manifest.hash and existing.spec.size == size:
            return path
    console.print(escape(f"packing {split} from {data} at {size} px into {path}"))
    return pack_split(manifest, data, path, size=size, progress=True)


def check_pack_options(
    pack: Optional[Path], data: Optional[Path], split: Optional[Path], *, split_option: str = "--split"
) -> None:
    """ConfigError unless --pack, or --data with the manifest option (`split_option` in the calling command), is given."""
    from edge_bus.errors import ConfigError

    if pack is None and (data is None or split is None):
        raise ConfigError(f"give --pack CACHE.npz, or --data DIR with {split_option} MANIFEST to build one")


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


def check_model_options(model: str, members: list[Path], mode: Optional[str], starts: tuple[str, ...] = ()) -> None:
    """ConfigError for a name outside the roster, for --member / --mode given to anything but
    `train ensemble`, which needs a known mode and at least two existing members, and for `starts`
    (the weight options given: --weights, --init, --encoder-from) given to the fitted models."""
    from edge_bus.errors import ConfigError
    from edge_bus.models.registry import NON_NETWORK_MODELS, check_model_name

    try:
        check_model_name(model)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if model in NON_NETWORK_MODELS and starts:
        raise ConfigError(f"{' and '.join(starts)} start a network's weights; {model!r} is fitted, not trained from weights")
    if model != "ensemble":
        if members or mode is not None:
            raise ConfigError(f"--member and --mode apply to `edge-bus train ensemble` only, not to {model!r}")
        return
    from edge_bus.models.ensemble import ENSEMBLE_MODES, check_ensemble_options

    check_ensemble_options(members, mode or ENSEMBLE_MODES[0])


def stopped_note(stop_reason: Optional[str], patience: int, max_minutes: Optional[float]) -> str:
    if stop_reason == "patience":
        return f" [stopped early: no val improvement in {patience} epochs]"
    if stop_reason == "time_budget":
        return f" [stopped: time budget of {max_minutes:g} min used up]"
    return ""


def register(app: typer.Typer) -> None:
    @app.command("train")
    @user_errors
    def train_command(
        model: str = typer.Argument(..., help="vgg19, resnet50, efficientnet_b0, unet, unet_vgg19, deeplabv3_resnet101, classical or ensemble"),
        data: Optional[Path] = typer.Option(None, "--data", help="BUSI-layout folder (to build the pack)"),
        split: Optional[Path] = typer.Option(None, "--split", help="split manifest (to build the pack)"),
        pack: Optional[Path] = typer.Option(None, "--pack", help="packed cache .npz (skips packing)"),
        out: Path = typer.Option(..., "--out", help="output folder (best.pt, last_state.pt, history.json)"),
        epochs: int = typer.Option(30, "--epochs", min=1),
        batch_size: int = typer.Option(8, "--batch-size", min=1),
        lr: float = typer.Option(3e-4, "--lr", min=0.0, help="peak learning rate of the one-cycle schedule"),
        resolution: Optional[int] = typer.Option(None, "--resolution", min=8, help="train at this size (default: the pack's; at most the pack's)"),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
        seed: int = typer.Option(0, "--seed", min=0),
        weights: Optional[str] = typer.Option(None, "--weights", help="'imagenet' for torchvision's pretrained weights"),
        init: Optional[Path] = typer.Option(None, "--init", help="local state dict to start from"),
        encoder_from: Optional[Path] = typer.Option(
            None, "--encoder-from", help="start the VGG-19 encoder from this checkpoint (vgg19 <-> unet_vgg19, same split)"
        ),
        resume: bool = typer.Option(False, "--resume", help="continue from OUT/last_state.pt"),
        patience: int = typer.Option(10, "--patience", min=1, help="early stopping: epochs without val improvement"),
        max_minutes: Optional[float] = typer.Option(
            None, "--max-minutes", min=0.0, help="time budget: stop after the epoch that ends past it (recorded in history.json)"
        ),
        width: Optional[int] = typer.Option(None, "--width", min=1, help="U-Net width (channels at full resolution)"),
        model_arg: list[str] = typer.Option([], "--model-arg", help="extra model keyword KEY=VALUE (repeatable)"),
        member: list[Path] = typer.Option([], "--member", help="ensemble: a member checkpoint (repeat, at least 2)"),
        mode: Optional[str] = typer.Option(None, "--mode", help="ensemble: 'weighted' (weights chosen on val, the default) or 'mean'"),
        augment: bool = typer.Option(True, "--augment/--no-augment"),
        workers: int = typer.Option(0, "--workers", min=0, help="data-loader worker processes"),
    ) -> None:
        """Train MODEL on the train split with early stopping on val (classical: parameter search on
        train; ensemble: weights chosen on val, or the plain mean). Multi-GPU: `torchrun --nproc_per_node N $(which edge-bus) train ...`."""
        torch_required("edge-bus train")
        from edge_bus.errors import ConfigError

        given = (("--weights", weights), ("--init", init), ("--encoder-from", encoder_from))
        check_model_options(model, member, mode, tuple(name for name, value in given if value is not None))
        check_pack_options(pack, data, split)
        cfg = None
        if model not in ("classical", "ensemble"):
            from edge_bus.training.loop import TrainConfig

            cfg = TrainConfig(  # its pack is set once resolve_pack has found or built it
                model=model, pack=pack, out=out, epochs=epochs,
                batch_size=batch_size, lr=lr, resolution=resolution if pack is not None else None, device=device,
                seed=seed, weights=weights, init=str(init) if init else None,
                encoder_from=str(encoder_from) if encoder_from else None, resume=resume, patience=patience,
                model_kwargs=parse_model_args(model_arg, width), augment=augment, num_workers=workers,
                max_minutes=max_minutes,
            )
            cfg.check()
        out.mkdir(parents=True, exist_ok=True)
        pack_path = resolve_pack(pack, data, split, out, resolution or 256)
        if model == "classical":
            from edge_bus.training.baselines import fit_classical_pack

            path = fit_classical_pack(pack_path, out, resolution)
            console.print(escape(f"classical baseline written to {path}"))
            return
        if model == "ensemble":
            from edge_bus.models.ensemble import ENSEMBLE_MODES
            from edge_bus.training.baselines import fit_ensemble

            mode = mode or ENSEMBLE_MODES[0]
            path = fit_ensemble(member, pack_path, out, device="cpu" if device == "auto" else device, mode=mode)
            console.print(escape(f"ensemble ({mode}) written to {path}"))
            return
        from edge_bus.training.loop import train

        try:
            result = train(dataclasses.replace(cfg, pack=pack_path))
        except ValueError as exc:  # model construction: bad keyword
            raise ConfigError(str(exc)) from None
        console.print(escape(
            f"best epoch {result.best_epoch} (val score {result.best_score:.4f}); checkpoint {result.best_checkpoint}"
            + stopped_note(result.stop_reason, patience, max_minutes)
        ))
