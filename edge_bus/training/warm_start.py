"""Where a training run's first weights come from, checked and recorded.

`--init PATH` loads a whole state dict (models.weights.load_init); `--encoder-from CHECKPOINT` loads
only the shared VGG-19 encoder of another model's checkpoint (models.transfer). An edge-bus
checkpoint used either way must have been trained on the pack's split (training.provenance): its
weights carry what they saw. A raw state dict records nothing about its data; it is accepted (it may
come from anywhere, e.g. ImageNet) and recorded as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from edge_bus.errors import CheckpointError
from edge_bus.models.transfer import transfer_encoder
from edge_bus.models.weights import apply_init, read_init
from edge_bus.training.checkpoint import FORMAT, checkpoint_from_data, load_checkpoint
from edge_bus.training.provenance import check_trained_on_split

UNRECORDED = "a raw state dict: the data it was trained on is not recorded"
_RISK = "its weights may have seen this split's val or test images, which would inflate every figure measured on them"


def init_from(model: nn.Module, path: str | Path, split_hash: str, pack_path: Path) -> dict[str, Any]:
    """Load `--init path` into `model`; what it was, for the checkpoint's `train.init_source`.
    ConfigError when it is an edge-bus checkpoint of another split."""
    p = Path(path)
    data = read_init(p)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        checkpoint = checkpoint_from_data(p, data)  # its version and weights fingerprint checked too
        check_trained_on_split(p, checkpoint.split_hash, split_hash, pack_path, role="--init checkpoint", risk=_RISK)
        apply_init(model, checkpoint.state_dict, p)
        return {"path": str(p), "kind": "edge-bus checkpoint", "model": checkpoint.model,
                "weights_sha256": checkpoint.weights_sha256, "split_hash": split_hash}
    apply_init(model, data, p)
    return {"path": str(p), "kind": UNRECORDED}


def load_encoder_from(model: nn.Module, model_name: str, path: str | Path, split_hash: str, pack_path: Path) -> dict[str, Any]:
    """Load the encoder of the edge-bus checkpoint at `path` into `model`; what was loaded, for
    the checkpoint's `train.encoder_source`."""
    source = load_checkpoint(path)  # checks the weights' fingerprint too
    check_trained_on_split(source.path, source.split_hash, split_hash, pack_path, role="--encoder-from checkpoint", risk=_RISK)
    try:
        tensors = transfer_encoder(model, model_name, source.model, source.state_dict)
    except CheckpointError as exc:
        raise CheckpointError(f"{source.path}: {exc}") from None
    return {"path": str(source.path), "model": source.model, "model_kwargs": dict(source.model_kwargs),
            "weights_sha256": source.weights_sha256, "tensors": tensors,
            "source_val": {k: v for k, v in source.metrics.get("val", {}).items() if isinstance(v, (int, float))}}
