"""Moving a trained encoder from one model of the roster to another.

The modified U-Net's encoder (`unet_vgg19`, width 64) is laid out index by index like the VGG-19
batch-norm classifier's `features` (`vgg19` with `batch_norm=true`): both are torchvision's
`vgg19_bn().features` with one input channel (the classifier keeps the last max-pool, which holds no
weights). So a segmenter trained on the training split's masks can hand its encoder to the
classifier, and the other way round. The activations differ (the modified U-Net has LeakyReLU with
slope 0.01 where VGG-19 has ReLU), so a moved encoder computes nearly, not exactly, what it did: a
starting point for training, not a finished model. No other pair of the roster shares a backbone (DeepLabV3 is
built on ResNet-101, the classifier on ResNet-50).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from edge_bus.errors import CheckpointError

# model name -> prefix of its VGG-19 batch-norm encoder in the state dict
ENCODER_PREFIXES = {"vgg19": "features.", "unet_vgg19": "encoder."}
# model name -> (keyword, the value that gives that encoder, the builder's default)
ENCODER_KWARGS = {"vgg19": ("batch_norm", True, False), "unet_vgg19": ("width", 64, 64)}
_FITS = "the encoder needs vgg19 with --model-arg batch_norm=true, or unet_vgg19 at width 64"


def check_encoder_kwargs(name: str, kwargs: dict) -> None:
    """ValueError unless `name` built with `kwargs` has the shared encoder (checked before any data is read)."""
    key, needed, default = ENCODER_KWARGS[name]
    if kwargs.get(key, default) != needed:
        raise ValueError(f"{name} with {key}={kwargs.get(key, default)!r} has no VGG-19 batch-norm encoder; {_FITS}")


def transfer_encoder(model: nn.Module, model_name: str, source_model: str, source_state: Mapping[str, torch.Tensor]) -> int:
    """Load the encoder of `source_state` (a `source_model` state dict) into `model` (a `model_name`
    network), leaving the rest of `model` as it is; returns how many tensors were loaded.
    CheckpointError when either model has no shared encoder or the encoders do not fit."""
    for name in (model_name, source_model):
        if name not in ENCODER_PREFIXES:
            raise CheckpointError(
                f"model {name!r} shares no encoder with another model; encoders move between {sorted(ENCODER_PREFIXES)}"
            )
    src, dst = ENCODER_PREFIXES[source_model], ENCODER_PREFIXES[model_name]
    renamed = {dst + k[len(src):]: v for k, v in source_state.items() if k.startswith(src)}
    own = model.state_dict()
    wanted = [k for k in own if k.startswith(dst)]
    missing = [k for k in wanted if k not in renamed]
    shapes = [f"{k} {tuple(renamed[k].shape)} vs {tuple(own[k].shape)}" for k in wanted
              if k in renamed and tuple(renamed[k].shape) != tuple(own[k].shape)]
    # the source's encoder must land whole: a tensor of it without a place means the layouts differ
    homeless = [k for k in renamed if k not in own]
    if missing or shapes or homeless or not wanted:
        parts = [f"{len(missing)} encoder tensor(s) not in the source, e.g. {missing[:2]}" if missing else "",
                 f"{len(shapes)} of another shape, e.g. {shapes[:2]}" if shapes else "",
                 f"{len(homeless)} source tensor(s) with no place, e.g. {homeless[:2]}" if homeless else ""]
        detail = "; ".join(p for p in parts if p) or "no encoder tensors"
        raise CheckpointError(f"the {source_model} encoder does not fit this {model_name} ({detail}); {_FITS}")
    model.load_state_dict({k: renamed[k] for k in wanted}, strict=False)
    return len(wanted)
