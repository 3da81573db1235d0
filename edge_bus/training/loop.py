"""The training loop: AdamW + one-cycle schedule, class-weighted cross-entropy or BCE + Dice,
AMP on CUDA, early stopping on the validation metric, an optional time budget, resumable, DDP
under torchrun.

Files in `out`: best.pt (checkpoint of the best validation epoch, see checkpoint.py),
last_state.pt (model, optimizer, scheduler, scaler, epoch, RNG: what --resume needs) and
history.json (per-epoch loss and validation metrics; the last record of a run that stopped itself
carries `stop_reason`: "patience", "time_budget" or "epoch_limit" (max_epochs_this_run)).

Under DDP every stopping decision is taken on rank 0 and broadcast, once per epoch with the
validation figures: ranks hold different BatchNorm statistics after their last batches, so scores
computed on each rank's copy can differ, and a rank that stopped alone would leave the others
waiting in the next all-reduce forever. A validation that fails on rank 0 is broadcast too, so
every rank raises ValidationError instead of waiting for a broadcast that never comes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from edge_bus.data.augment import Augmenter
from edge_bus.data.pack import load_pack
from edge_bus.errors import CheckpointError, ConfigError
from edge_bus.models import create, model_task
from edge_bus.models.registry import NON_NETWORK_MODELS, check_imagenet_kwargs, check_model_name, has_imagenet_weights
from edge_bus.training import distributed
from edge_bus.training.checkpoint import save_checkpoint, unwrap
from edge_bus.training.data import PackDataset, class_weights, spec_at, split_arrays
from edge_bus.fileio import write_json_atomic
from edge_bus.training.losses import make_loss
from edge_bus.training.progress import Progress, epoch_line
from edge_bus.training.safe_load import safe_torch_load
from edge_bus.training.predict import predict_arrays, task_metrics

BEST_NAME = "best.pt"
LAST_STATE_NAME = "last_state.pt"
HISTORY_NAME = "history.json"


class ValidationError(distributed.MainRankError):
    """Under DDP: rank 0's validation raised; every rank raises this with rank 0's message."""


class SaveError(distributed.MainRankError):
    """Under DDP: rank 0 could not write the checkpoint, state or history; every rank raises this."""


@dataclass
class TrainConfig:
    model: str
    pack: Path
    out: Path
    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-4
    resolution: int | None = None  # None: the pack's size
    device: str = "auto"
    seed: int = 0
    weights: str | None = None
    init: str | None = None
    encoder_from: str | None = None  # an edge-bus checkpoint whose VGG-19 encoder starts this model's
    resume: bool = False
    patience: int = 10  # epochs without validation improvement before stopping
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    num_workers: int = 0
    progress: bool = True
    # Stop after this many epochs in this invocation (time-boxed or preemptible jobs); the run
    # continues with resume=True. Not part of the resumable settings.
    max_epochs_this_run: int | None = None
    # Time budget of this invocation: stop after the first epoch that ends past it.
    max_minutes: float | None = None

    def check(self) -> None:
        """ConfigError naming the first bad option; cheap, so callers run it before packing."""
        self._check_model()
        self._check_numbers()
        self._check_weights()
        distributed.resolve_device(self.device)

    def _check_model(self) -> None:
        try:
            check_model_name(self.model)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.model in NON_NETWORK_MODELS:
            raise ConfigError(f"'{self.model}' is fitted, not trained by this loop; use `edge-bus train {self.model}`")

    def _check_numbers(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"--max-minutes must be positive, got {self.max_minutes}")
        if self.resolution is not None and self.resolution < 8:
            raise ConfigError(f"--resolution {self.resolution}: use at least 8 pixels")

    def _check_weights(self) -> None:
        if self.weights not in (None, "imagenet"):
            raise ConfigError(f"--weights {self.weights!r}: the only choice is 'imagenet' (for a local file use --init PATH)")
        if self.weights == "imagenet" and not has_imagenet_weights(self.model):
            raise ConfigError(f"--weights imagenet: model {self.model!r} has no ImageNet weights; train it without --weights")
        if self.weights == "imagenet":
            try:
                check_imagenet_kwargs(self.model, self.model_kwargs)
            except ValueError as exc:
                raise ConfigError(f"--weights imagenet: {exc}") from None
        if self.init is not None and not Path(self.init).is_file():
            raise ConfigError(f"--init {self.init}: no such file (a state dict saved with torch.save or an edge-bus checkpoint)")
        if self.encoder_from is not None:
            self._check_encoder_from()

    def _check_encoder_from(self) -> None:
        from edge_bus.models.transfer import ENCODER_PREFIXES, check_encoder_kwargs

        if self.init is not None or self.weights is not None:
            raise ConfigError("--encoder-from starts the encoder; --init and --weights start the whole model: use one of them")
        if self.model not in ENCODER_PREFIXES:
            raise ConfigError(f"--encoder-from: model {self.model!r} shares no encoder with another model; it works for {sorted(ENCODER_PREFIXES)}")
        try:
            check_encoder_kwargs(self.model, self.model_kwargs)
        except ValueError as exc:
            raise ConfigError(f"--encoder-from: {exc}") from None
        if not Path(self.encoder_from).is_file():
            raise ConfigError(f"--encoder-from {self.encoder_from}: no such file (an edge-bus checkpoint, e.g. OUT/best.pt of `edge-bus train unet_vgg19`)")


@dataclass
class TrainResult:
    best_checkpoint: Path
    last_state: Path
    history: list[dict[str, Any]]
    best_score: float
    best_epoch: int
    stop_reason: str | None = None  # "patience", "time_budget", "epoch_limit" or None (ran its epochs)

    @property
    def stopped_early(self) -> bool:
        """Stopped by early stopping (no validation improvement in `patience` epochs)."""
        return self.stop_reason == "patience"


def _resumable_config(cfg: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share with the original one."""
    keys = ("model", "epochs", "batch_size", "lr", "weight_decay", "resolution", "seed", "model_kwargs",
            "weights", "init", "encoder_from")  # states saved before the last three resume as if they were None
    return {k: getattr(cfg, k) for k in keys}


def _warm_start(model: torch.nn.Module, cfg: TrainConfig, split_hash: str) -> dict[str, Any]:
    """Load --init or --encoder-from into `model`; what was loaded, for the checkpoint's train record."""
    from edge_bus.training.warm_start import init_from, load_encoder_from

    if cfg.init is not None:
        return {"init_source": init_from(model, cfg.init, split_hash, Path(cfg.pack))}
    if cfg.encoder_from is not None:
        return {"encoder_source": load_encoder_from(model, cfg.model, cfg.encoder_from, split_hash, Path(cfg.pack))}
    return {}


def train(cfg: TrainConfig) -> TrainResult:
    cfg.check()
    info, device = distributed.setup(cfg.device)
    try:
        return _train(cfg, info, device)
    except distributed.MainRankError:
        distributed.barrier(info)  # every rank raised it after the same broadcast: leave the group together
        raise
    finally:
        distributed.teardown(info)


def _train(cfg: TrainConfig, info: distributed.DistInfo, device: torch.device) -> TrainResult:
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pack = load_pack(cfg.pack)
    spec = spec_at(pack, cfg.resolution)
    task = model_task(cfg.model)
    classes = pack.classes
    train_arrays = split_arrays(pack, "train", spec.size)
    val_arrays = split_arrays(pack, "val", spec.size)
    if len(train_arrays) == 0 or len(val_arrays) == 0:
        raise ConfigError(f"{cfg.pack}: training needs non-empty train and val splits ({len(train_arrays)}, {len(val_arrays)})")

    num_classes = len(classes) if task == "classification" else None
    model = create(cfg.model, num_classes=num_classes, weights=cfg.weights, **cfg.model_kwargs)
    # a resumed run's weights come from its state, and what started it from the state's record
    starts = {} if cfg.resume else _warm_start(model, cfg, pack.split_hash)
    model = model.to(device)
    net = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    dataset = PackDataset(train_arrays, spec, Augmenter() if cfg.augment else None, seed=cfg.seed)
    per_step = cfg.batch_size * info.world_size
    drop_last = len(dataset) > per_step  # BatchNorm cannot train on a last batch of one sample
    sampler = (
        DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=drop_last)
        if info.enabled
        else None
    )
    generator = torch.Generator()
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        generator=generator,
        pin_memory=device.type == "cuda",
    )
    steps_per_epoch = max(len(loader), 1)
    weights = class_weights(train_arrays.labels, len(classes)).to(device) if task == "classification" else None
    criterion = make_loss(task, weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    history: list[dict[str, Any]] = []
    best_score, best_epoch, start_epoch, stale = -math.inf, -1, 0, 0
    last_state = out / LAST_STATE_NAME
    best_path = out / BEST_NAME
    if cfg.resume:
        state = _load_state(last_state, cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        start_epoch, best_score, best_epoch, stale = state["epoch"] + 1, state["best_score"], state["best_epoch"], state["stale"]
        history = json.loads(state["history"])
        starts = json.loads(state.get("starts") or "{}")

    train_info = {
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "world_size": info.world_size,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "optimizer": "AdamW",
        "schedule": "one-cycle",
        "device": device.type,
        "amp": amp,
        "resolution": spec.size,
        "seed": cfg.seed,
        "weights": cfg.weights,
        "init": cfg.init,
        "encoder_from": cfg.encoder_from,
        **starts,
        "augment": cfg.augment,
        "patience": cfg.patience,
        "max_minutes": cfg.max_minutes,
        "pack": str(Path(cfg.pack).resolve()),
        # What a bit-for-bit rerun needs besides the options: the same pixels, and on the CPU the
        # same kernels and thread count (floating-point sums are split by both).
        "pack_sha256": pack.content_sha256(),
        **_compute_record(device),
    }
    stop_reason = None
    run_started = time.perf_counter()
    total_steps = (cfg.epochs - start_epoch) * steps_per_epoch
    with Progress(cfg.model, total=total_steps, enabled=cfg.progress and info.is_main) as progress:
        for epoch in range(start_epoch, cfg.epochs):
            started = time.perf_counter()
            dataset.set_epoch(epoch)
            generator.manual_seed(cfg.seed * 100003 + epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            net.train()
            total, count = torch.zeros((), device=device), torch.zeros((), device=device)
            for x, y, label in loader:
                x, y, label = x.to(device, non_blocking=True), y.to(device, non_blocking=True), label.to(device)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                    logits = net(x)
                    loss = criterion(logits.float(), label if task == "classification" else y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                total += loss.detach() * len(x)
                count += len(x)
                if progress.live:
                    progress.advance(description=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs} loss {loss.item():.4f}")
            if info.enabled:
                torch.distributed.all_reduce(total)
                torch.distributed.all_reduce(count)
            train_loss = float(total / count.clamp(min=1))
            val, out_of_time = _validate(
                info, model, val_arrays, spec, device, task, classes, max(cfg.batch_size, 8),
                budget=lambda: _past_budget(cfg.max_minutes, run_started), epoch=epoch + 1,
            )
            record = {"epoch": epoch + 1, "train_loss": train_loss, "val": val, "lr": scheduler.get_last_lr()[0],
                      "seconds": round(time.perf_counter() - started, 3)}
            history.append(record)
            improved = val["score"] > best_score
            if improved:
                best_score, best_epoch, stale = val["score"], epoch + 1, 0
            else:
                stale += 1
            epoch_limit = cfg.max_epochs_this_run is not None and epoch + 1 - start_epoch >= cfg.max_epochs_this_run
            stop_reason = (
                "patience" if stale >= cfg.patience else "time_budget" if out_of_time else "epoch_limit" if epoch_limit else None
            )
            if stop_reason is not None:
                record["stop_reason"] = stop_reason

            def save() -> None:
                if improved:
                    save_checkpoint(
                        best_path, model, model=cfg.model, model_kwargs=dict(cfg.model_kwargs), task=task, classes=classes,
                        preprocessing=spec, threshold=0.5, split_hash=pack.split_hash, dataset_sha256=pack.dataset_sha256,
                        metrics={"val": val}, train={**train_info, "best_epoch": epoch + 1, "epochs_run": epoch + 1},
                    )
                _save_state(last_state, cfg, model, optimizer, scheduler, scaler, epoch, best_score, best_epoch, stale, history, starts)
                write_json_atomic(out / HISTORY_NAME, history)
                progress.log(epoch_line(epoch + 1, cfg.epochs, train_loss, val["score"], record["seconds"], improved))

            # rank 0 writes; the broadcast of its outcome is the epoch's barrier
            distributed.run_on_main(info, save, lambda reason: SaveError(
                f"saving epoch {epoch + 1} failed on rank 0 ({reason}); all {info.world_size} ranks stop"))
            if stop_reason is not None:
                break
    return TrainResult(best_path, last_state, history, best_score, best_epoch, stop_reason)


def _validate(info, model, val_arrays, spec, device, task, classes, batch_size, *, budget, epoch) -> tuple[dict[str, Any], bool]:
    """(validation figures, out of time) as rank 0 finds them, on every rank, in one broadcast.

    Rank 0 scores the val split with its copy of the model (the one it saves) and asks `budget()`
    whether the time is up, so all ranks take the same best-epoch and stopping decisions. Under
    DDP, an exception on rank 0 (CUDA out of memory, a metric error) is broadcast as its message
    and raised as ValidationError on every rank; in one process it propagates unchanged."""
    def score() -> tuple[dict[str, Any], bool]:
        outputs = predict_arrays(model, val_arrays.images, spec, device, batch_size=batch_size)
        return task_metrics(task, outputs, val_arrays, classes), budget()

    return distributed.run_on_main(info, score, lambda reason: ValidationError(
        f"validation failed on rank 0 at epoch {epoch} ({reason}); all {info.world_size} ranks stop"))


def _compute_record(device: torch.device) -> dict[str, Any]:
    from edge_bus.sysinfo import cpu_info

    record: dict[str, Any] = {"threads": torch.get_num_threads(), "cpu": cpu_info()["model"],
                              "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def _past_budget(max_minutes: float | None, started: float) -> bool:
    return max_minutes is not None and time.perf_counter() - started >= max_minutes * 60


def _save_state(path, cfg, model, optimizer, scheduler, scaler, epoch, best_score, best_epoch, stale, history, starts) -> None:
    state = {
        "format": "edge-bus-train-state",
        "version": 1,
        "config": json.dumps(_resumable_config(cfg), sort_keys=True),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": torch.get_rng_state(),
        "epoch": epoch,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "stale": stale,
        "history": json.dumps(history),
        "starts": json.dumps(starts),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_state(path: Path, cfg: TrainConfig) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: nothing to resume from (no last-state file); train without --resume first")
    state = safe_torch_load(path, what="last-state file", hint="train without --resume")
    if not isinstance(state, dict) or state.get("format") != "edge-bus-train-state":
        raise CheckpointError(f"{path}: not an edge-bus last-state file")
    saved = json.loads(state["config"])
    now = json.loads(json.dumps(_resumable_config(cfg), sort_keys=True))
    diff = sorted(k for k in now if saved.get(k) != now[k])
    if diff:
        raise ConfigError(
            f"{path}: --resume needs the original settings; these differ: "
            + ", ".join(f"{k} (was {saved.get(k)!r}, now {now[k]!r})" for k in diff)
        )
    return state


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    data = asdict(cfg)
    data["pack"], data["out"] = str(Path(cfg.pack).resolve()), str(cfg.out)
    return data
