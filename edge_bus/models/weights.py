"""Pretrained and local weights: torchvision's ImageNet weights adapted to one gray channel, and
state dicts from local files.

Gray input: instead of copying the image into three channels at run time, the first convolution's
ImageNet kernel is summed over its three input channels. A gray image copied to RGB gives exactly
the same response, at a third of the first layer's cost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from edge_bus.errors import CheckpointError


def single_channel_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of `conv` taking one input channel, its kernel summed over the input channels."""
    new = nn.Conv2d(
        1,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=1,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def imagenet_state_dict(weights_name: str) -> dict[str, torch.Tensor]:
    """torchvision weights (e.g. "VGG19_Weights.IMAGENET1K_V1") as a state dict.

    Uses the torch hub cache; offline and not cached, raises CheckpointError naming the file and
    the folder to put it in.
    """
    from torchvision.models import get_weight

    weights = get_weight(weights_name)
    filename = os.path.basename(weights.url)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return torch.hub.load_state_dict_from_url(weights.url, progress=False, check_hash=True)
    except Exception as exc:  # URLError, socket errors, hash mismatch: all mean "get the file"
        raise CheckpointError(
            f"could not load ImageNet weights {weights_name} ({type(exc).__name__}: {exc}). "
            f"Without internet, download {weights.url} elsewhere and place it as {cache / filename} "
            f"(the torch hub cache; set TORCH_HOME to move it), or train without --weights"
        ) from None


def adapt_first_conv(state: dict[str, torch.Tensor], key: str) -> dict[str, torch.Tensor]:
    """Sum the 3-channel kernel `key` over its input channels, in a copy of `state`."""
    state = dict(state)
    if key not in state:
        raise CheckpointError(f"pretrained weights have no first convolution '{key}'")
    state[key] = state[key].sum(dim=1, keepdim=True)
    return state


def load_pretrained(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    *,
    first_conv: str,
    skip_prefixes: Iterable[str] = (),
    rename: tuple[str, str] | None = None,
    covers: Iterable[str] | None = None,
) -> None:
    """Load ImageNet `state` into `model`: adapt `first_conv`, drop keys under `skip_prefixes`
    (the replaced head), optionally rename a key prefix. Every model key under `covers` (default:
    every key not under `skip_prefixes`) must be filled; the rest keeps its fresh initialisation
    (e.g. a U-Net's decoder, which ImageNet has no weights for)."""
    skip = tuple(skip_prefixes)
    if rename is not None:
        old, new = rename
        state = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(skip)} if skip else dict(state)
    state = adapt_first_conv(state, first_conv)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own}
    missing = [k for k in _required_keys(own, skip, covers) if k not in state]
    if missing:
        raise CheckpointError(f"pretrained weights do not cover {len(missing)} parameters, e.g. {missing[:3]}")
    model.load_state_dict(state, strict=False)


def _required_keys(own: dict[str, torch.Tensor], skip: tuple[str, ...], covers: Iterable[str] | None) -> list[str]:
    keys = [k for k in own if not k.endswith("num_batches_tracked")]
    if covers is not None:
        return [k for k in keys if k.startswith(tuple(covers))]
    return [k for k in keys if not k.startswith(skip)]  # startswith(()) is False: nothing skipped


def load_init(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a local state dict (a raw state dict or an edge-bus checkpoint) into `model`."""
    apply_init(model, read_init(path), path)


def read_init(path: str | os.PathLike) -> object:
    """What torch.load finds in an --init file (safely); CheckpointError when it is missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file (--init expects a state dict saved with torch.save)")
    from edge_bus.training.safe_load import safe_torch_load

    return safe_torch_load(p, what="state dict", hint="--init expects a state dict saved with torch.save or an edge-bus checkpoint")


def apply_init(model: nn.Module, data: object, path: str | os.PathLike) -> None:
    """Load `data` (a raw state dict or an edge-bus checkpoint's dict, read from `path`) into `model`, strictly."""
    p = Path(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{p}: expected a state dict (names -> tensors) or an edge-bus checkpoint")
    try:
        model.load_state_dict(data, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise CheckpointError(f"{p}: state dict does not fit this model: {' '.join(first)}") from None
