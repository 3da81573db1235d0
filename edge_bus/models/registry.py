"""Model registry: every network of the roster by name.

`create(name, *, num_classes=None, weights=None, init=None, **kwargs)` builds a network that takes
float32 (N, 1, H, W): classifiers return logits (N, C), segmenters logits (N, 1, H, W).
`weights="imagenet"` loads torchvision's ImageNet weights (first convolution summed over the
input channels); `init=PATH` then loads a local state dict. Extra keyword arguments (e.g. `width`)
are the model's own and are stored in checkpoints as `model_kwargs`.

`classical` and `ensemble` are part of the roster but not networks built from nothing: see
edge_bus.models.classical and edge_bus.models.ensemble (they are listed in `ROSTER`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

TASKS = ("classification", "segmentation")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    builder: Callable[..., Any]  # builder(num_classes=..., weights=..., **kwargs) -> nn.Module
    imagenet: bool  # whether weights="imagenet" is available
    doc: str = ""
    # Keyword values the ImageNet weights fit (e.g. {"width": 64}): given defaults, checked when asked.
    imagenet_kwargs: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}
# Roster members that are not built by `create` (fitted or combined from other models).
NON_NETWORK_MODELS = {"classical": "segmentation", "ensemble": "segmentation"}


def register(name: str, *, task: str, imagenet: bool = True, imagenet_kwargs: dict[str, Any] | None = None) -> Callable:
    """Decorator: register `builder` under `name`. `imagenet_kwargs`: keyword values (the builder's
    defaults) that weights="imagenet" needs, such as the channel width the weights were made for."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, task, builder, imagenet, (builder.__doc__ or "").strip(), dict(imagenet_kwargs or {}))
        return builder

    return decorate


def _load_builders() -> None:
    # Importing the modules runs their @register decorators.
    from edge_bus.models import classifiers, deeplab, unet  # noqa: F401


def list_models(task: str | None = None) -> list[str]:
    """Names `create` can build, optionally only those of one task."""
    _load_builders()
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)


def roster(task: str | None = None) -> list[str]:
    """Every model of the roster, networks plus `classical` and `ensemble`."""
    names = list_models(task) + [n for n, t in NON_NETWORK_MODELS.items() if task is None or t == task]
    return sorted(names)


def check_model_name(name: str) -> None:
    """ValueError listing the roster when `name` is none of its models (the one "unknown model"
    message: `create`, `TrainConfig.check` and `edge-bus train` all come here)."""
    names = roster()
    if name not in names:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(names)}")


def _entry(name: str) -> ModelEntry:
    check_model_name(name)
    if name in NON_NETWORK_MODELS:
        raise ValueError(
            f"'{name}' is not a network that create() builds; use edge_bus.models.{name} "
            f"(or `edge-bus train {name}`). Networks: {', '.join(list_models())}"
        )
    return _REGISTRY[name]


def model_task(name: str) -> str:
    """'classification' or 'segmentation' for any roster name."""
    if name in NON_NETWORK_MODELS:
        return NON_NETWORK_MODELS[name]
    return _entry(name).task


def has_imagenet_weights(name: str) -> bool:
    """Whether `create(name, weights="imagenet")` is available (False for non-network names)."""
    return name not in NON_NETWORK_MODELS and _entry(name).imagenet


def check_imagenet_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """ValueError when `kwargs` set a value the ImageNet weights of network `name` do not fit
    (e.g. unet_vgg19 with width != 64): cheap, so callers run it before any packing or download."""
    for key, needed in _entry(name).imagenet_kwargs.items():
        if key in kwargs and kwargs[key] != needed:
            raise ValueError(f"{name} ImageNet weights need {key}={needed}, got {key}={kwargs[key]}")


def create(
    name: str,
    *,
    num_classes: int | None = None,
    weights: str | None = None,
    init: str | None = None,
    **kwargs: Any,
):
    """Build the network `name` (see the module docstring)."""
    entry = _entry(name)
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None or 'imagenet', got {weights!r} (for a local file use init=PATH)")
    if weights == "imagenet" and not entry.imagenet:
        raise ValueError(f"model {name!r} has no ImageNet weights; train it from scratch or use init=PATH")
    if weights == "imagenet":
        check_imagenet_kwargs(name, kwargs)
    if entry.task == "classification":
        if num_classes is None:
            num_classes = 3
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        model = entry.builder(num_classes=num_classes, weights=weights, **kwargs)
    else:
        if num_classes not in (None, 1):
            raise ValueError(f"segmenter {name!r} has one output channel (lesion); got num_classes={num_classes}")
        model = entry.builder(weights=weights, **kwargs)
    if init is not None:
        from edge_bus.models.weights import load_init

        load_init(model, init)
    return model
