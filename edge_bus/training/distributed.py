"""torchrun support: one process per device, DistributedDataParallel, gloo on CPU, nccl on CUDA.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them training runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; return the info and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    dev = resolve_device(device)
    if dev.type == "cuda" and info.enabled:
        dev = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(dev)
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return info, dev


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_from_main(info: DistInfo, value: Any) -> Any:
    """Rank 0's `value` on every rank (a picklable object; other ranks may pass None)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


T = TypeVar("T")


class MainRankError(RuntimeError):
    """Under DDP: work that only rank 0 does raised there; every rank raises this, at the same point."""


def run_on_main(info: DistInfo, work: Callable[[], T], failed: Callable[[str], MainRankError]) -> T:
    """`work()` on rank 0 and its result on every rank, in one broadcast. When it raises on rank 0,
    every rank raises `failed(reason)` instead, so no rank is left waiting in the next collective
    for a rank that has gone. In one process `work()` runs and its exceptions propagate unchanged."""
    if not info.enabled:
        return work()
    message, failure = None, None
    if info.is_main:
        try:
            message = ("ok", work())
        except Exception as exc:  # noqa: BLE001 - every rank must hear of it, whatever it is
            failure = exc
            message = ("error", f"{type(exc).__name__}: {exc}")
    status, payload = broadcast_from_main(info, message)
    if status == "error":
        raise failed(payload) from failure
    return payload


def resolve_device(device: str) -> torch.device:
    from edge_bus.errors import ConfigError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA GPU here; use --device cpu")
    return dev
