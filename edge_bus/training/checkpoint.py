"""Checkpoints: a torch.save'd dict of plain types and tensors, loaded with weights_only=True.

    {"format": "edge-bus-checkpoint", "version": 1, "model": "vgg19", "model_kwargs": {...},
     "task": "classification", "classes": [...], "preprocessing": {spec dict}, "threshold": 0.5,
     "state_dict": {...}, "split_hash": "...", "dataset_sha256": "...", "metrics": {"val": {...}},
     "train": {"epochs": .., "device": "cpu", "resolution": 256, ...},
     "versions": {"torch": ..., "edge_bus": ...}, "weights_sha256": "..."}

`weights_sha256` (edge_bus.fingerprint.state_dict_sha256 of the state dict) is written with the
weights and checked when they are loaded: a report that quotes it names exactly the weights it
measured, and an ensemble that recorded its members' fingerprints notices a member retrained in
place. Files written before the field existed load unchecked, their fingerprint computed on load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import CheckpointError, PreprocessError
from edge_bus.fingerprint import state_dict_sha256
from edge_bus.training.safe_load import safe_torch_load

FORMAT = "edge-bus-checkpoint"
VERSION = 1
REQUIRED = ("model", "task", "classes", "preprocessing", "state_dict")


def _versions() -> dict[str, str]:
    import torchvision

    from edge_bus import __version__ as edge_bus_version

    import cv2
    import numpy

    # OpenCV and NumPy too: augmentation runs on them, so they are part of what a rerun must match
    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "edge_bus": str(edge_bus_version),
            "numpy": str(numpy.__version__), "opencv": str(cv2.__version__)}


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_checkpoint(path: str | os.PathLike, network: nn.Module, /, **fields: Any) -> Path:
    """Write `network`'s state dict with `fields` (model=<name>, task, classes, preprocessing, ...)
    atomically. The first two parameters are positional-only so that `model=` names the model."""
    missing = [k for k in REQUIRED if k != "state_dict" and k not in fields]
    if missing:
        raise CheckpointError(f"{path}: cannot save a checkpoint without {missing}")
    preprocessing = fields["preprocessing"]
    if isinstance(preprocessing, PreprocessSpec):
        fields["preprocessing"] = preprocessing.to_dict()
    data: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_kwargs": {},
        "threshold": 0.5,
        "split_hash": "",
        "dataset_sha256": "",
        "metrics": {},
        "train": {},
        "versions": _versions(),
    }
    data.update(fields)
    data["classes"] = list(data["classes"])
    data["state_dict"] = {k: v.detach().cpu() for k, v in unwrap(network).state_dict().items()}
    data["weights_sha256"] = state_dict_sha256(data["state_dict"])
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    torch.save(data, tmp)
    tmp.replace(p)
    return p


@dataclass
class Checkpoint:
    path: Path
    model: str
    task: str
    classes: list[str]
    preprocessing: PreprocessSpec
    state_dict: dict[str, torch.Tensor]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    split_hash: str = ""
    dataset_sha256: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # Recorded with the weights and checked on load; computed on load for files written before
    # fingerprints ("" only for those when loaded with mmap=True).
    weights_sha256: str = ""

    def build_model(self) -> nn.Module:
        """The network with these weights, on the CPU, in eval mode."""
        from edge_bus.models import create

        num_classes = len(self.classes) if self.task == "classification" else None
        try:
            model = create(self.model, num_classes=num_classes, **self.model_kwargs)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.path}: cannot build model {self.model!r} with {self.model_kwargs}: {exc}") from None
        problem = state_dict_mismatch(model.state_dict(), self.state_dict)
        if problem:
            raise CheckpointError(
                f"{self.path}: weights do not fit model {self.model!r} with {self.model_kwargs} ({problem}); "
                "the checkpoint's model_kwargs or weights were changed, re-train or pick the matching checkpoint"
            )
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            head = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise CheckpointError(f"{self.path}: weights do not fit model {self.model!r}: {head}") from None
        return model.eval()


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def state_dict_mismatch(expected: dict[str, Any], got: dict[str, Any]) -> str:
    """A short summary of how `got` differs from `expected` ("" when it fits): counts and the
    first 3 keys of each kind, never torch's multi-thousand-character listing."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {tuple(got[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in got and hasattr(got[k], "shape") and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {_first(shapes)}")
    return "; ".join(parts)


ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def load_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> Checkpoint:
    """Read a checkpoint safely; CheckpointError naming the file when it is missing, corrupt or
    unknown, or when its weights no longer match the fingerprint written with them.

    mmap=True maps the tensors instead of reading them and skips the fingerprint check (cheap when
    only the metadata is needed)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file (train one with `edge-bus train`)")
    with open(p, "rb") as fh:
        head = fh.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        what = "a JSON file (ensemble or classical?)" if head.lstrip()[:1] in (b"{", b"[") else f"starts with {head!r}"
        raise CheckpointError(
            f"{p}: not a torch checkpoint ({what}); pass a .pt file written by `edge-bus train`"
        )
    return checkpoint_from_data(p, safe_torch_load(p, what="edge-bus checkpoint", mmap=mmap), check_fingerprint=not mmap)


def checkpoint_from_data(p: Path, data: Any, *, check_fingerprint: bool = True) -> Checkpoint:
    """The Checkpoint in `data`, what torch.load read from `p` (for callers that already hold it):
    format, version, fields and, unless told not to, the weights' fingerprint checked."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{p}: unknown checkpoint format {found!r}; expected {FORMAT!r} written by `edge-bus train`")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{p}: checkpoint version {data.get('version')!r} is not supported (this edge-bus reads {VERSION})")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{p}: checkpoint lacks the fields {missing}")
    try:
        spec = PreprocessSpec.from_dict(data["preprocessing"])
    except (PreprocessError, TypeError) as exc:
        raise CheckpointError(f"{p}: {exc}") from None
    known = set(Checkpoint.__dataclass_fields__) - {"path", "preprocessing"}
    kwargs = {k: v for k, v in data.items() if k in known}
    if not isinstance(data["state_dict"], dict):
        raise CheckpointError(f"{p}: its state_dict is a {type(data['state_dict']).__name__}, not a dict of tensors")
    if check_fingerprint:
        kwargs["weights_sha256"] = _checked_fingerprint(p, data["state_dict"], str(kwargs.get("weights_sha256") or ""))
    return Checkpoint(path=p, preprocessing=spec, **kwargs)


def _checked_fingerprint(path: Path, state_dict: dict[str, Any], recorded: str) -> str:
    """The weights' fingerprint; CheckpointError when it differs from the `recorded` one (if any)."""
    try:
        found = state_dict_sha256(state_dict)
    except TypeError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if recorded and found != recorded:
        raise CheckpointError(
            f"{path}: its weights do not match the fingerprint saved with them ({found[:12]} against {recorded[:12]}); "
            "the file was altered after training: re-train, or restore the original file"
        )
    return found
