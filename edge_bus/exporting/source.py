"""What gets exported: a checkpoint (trained) or a model spec (freshly initialized), with the
metadata the manifest needs (task, classes, preprocessing, threshold, metrics, provenance)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.engine_cache import file_sha256

CLASSES = ("benign", "malignant", "normal")


@dataclass
class ModelSpec:
    """A roster model by name, freshly initialized (for latency-only bundles)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    size: int = 256
    classes: tuple[str, ...] = CLASSES
    threshold: float = 0.5
    seed: int = 0


@dataclass
class ExportSource:
    model: Any  # nn.Module in eval mode
    name: str
    task: str
    classes: list[str]
    spec: PreprocessSpec
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    trained: bool = True


def library_versions() -> dict[str, str]:
    import importlib.metadata as md  # noqa: PLC0415

    versions = {"python": platform.python_version()}
    for dist in ("edge-bus", "torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "numpy", "opencv-python-headless", "tensorrt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return versions


def from_checkpoint(path: str | Path, *, size: int | None = None) -> ExportSource:
    from edge_bus.training.checkpoint import load_checkpoint  # noqa: PLC0415

    ckpt = load_checkpoint(path)
    model = ckpt.build_model()
    spec = ckpt.preprocessing
    if size and size != spec.size:
        spec = PreprocessSpec(**{**spec.to_dict(), "size": int(size)})
    return ExportSource(
        model=model,
        name=ckpt.model,
        task=ckpt.task,
        classes=list(ckpt.classes),
        spec=spec,
        threshold=float(ckpt.threshold),
        metrics=dict(ckpt.metrics),
        provenance={
            "checkpoint": str(Path(path).resolve()),
            "checkpoint_sha256": file_sha256(path),
            "model_kwargs": dict(ckpt.model_kwargs),
            "split_hash": ckpt.split_hash,
            "dataset_sha256": ckpt.dataset_sha256,
            "train": dict(ckpt.train),
            "training_versions": dict(ckpt.versions),
        },
        trained=True,
    )


def from_spec(spec: ModelSpec) -> ExportSource:
    import torch  # noqa: PLC0415

    from edge_bus.models import create, model_task  # noqa: PLC0415

    task = model_task(spec.name)
    torch.manual_seed(spec.seed)
    kwargs = dict(spec.kwargs)
    if task == "classification":
        kwargs.setdefault("num_classes", len(spec.classes))
    model = create(spec.name, **kwargs).eval()
    return ExportSource(
        model=model,
        name=spec.name,
        task=task,
        classes=list(spec.classes) if task == "classification" else ["lesion"],
        spec=PreprocessSpec(size=spec.size),
        threshold=spec.threshold,
        provenance={"checkpoint": None, "fresh_init_seed": spec.seed, "model_kwargs": dict(spec.kwargs)},
        trained=False,
    )


def resolve_source(source: Any, *, size: int | None = None) -> ExportSource:
    """A checkpoint path, a ModelSpec, or an ExportSource (returned as is)."""
    if isinstance(source, ExportSource):
        return source
    if isinstance(source, ModelSpec):
        return from_spec(source if size is None else ModelSpec(**{**source.__dict__, "size": size}))
    return from_checkpoint(source, size=size)
