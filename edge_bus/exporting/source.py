"""What gets exported: a checkpoint or an ensemble file (trained), or a model spec (freshly
initialized), with the metadata the manifest needs (task, classes, preprocessing, threshold,
metrics, provenance).

A segmentation manifest always has classes ["lesion"] (its one output channel); the data classes a
segmenter was trained on go to provenance["data_classes"]. A trained source also names the pack it
was trained from (`recorded_pack`), so that the parity gate runs on its images by default."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from edge_bus.data.busi import CLASSES
from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import CheckpointError, ConfigError
from edge_bus.fileio import read_json, sha256_file

SEGMENTATION_CLASSES = ["lesion"]


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
    split_hash: str = ""  # the split the model was trained on ("" when unknown)
    recorded_pack: str | None = None  # the pack it was trained from (checkpoint train["pack"])


def library_versions() -> dict[str, str]:
    import importlib.metadata as md  # noqa: PLC0415

    versions = {"python": platform.python_version()}
    for dist in ("edge-bus", "torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "numpy", "opencv-python-headless", "tensorrt"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return versions


def _manifest_classes(task: str, classes) -> list[str]:
    return list(classes) if task == "classification" else list(SEGMENTATION_CLASSES)


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
        classes=_manifest_classes(ckpt.task, ckpt.classes),
        spec=spec,
        threshold=float(ckpt.threshold),
        metrics=dict(ckpt.metrics),
        provenance={
            "checkpoint": str(Path(path).resolve()),
            "checkpoint_sha256": sha256_file(path),
            # the fingerprint evaluation reports quote (the file hash above also covers metadata)
            "weights_sha256": ckpt.weights_sha256,
            "model_kwargs": dict(ckpt.model_kwargs),
            "data_classes": list(ckpt.classes),
            "split_hash": ckpt.split_hash,
            "dataset_sha256": ckpt.dataset_sha256,
            "train": dict(ckpt.train),
            "training_versions": dict(ckpt.versions),
        },
        trained=True,
        split_hash=ckpt.split_hash,
        recorded_pack=(ckpt.train or {}).get("pack") or None,
    )


def _member_pack(members: list[Path]) -> str | None:
    """The training pack recorded by the first ensemble member that has one."""
    from edge_bus.training.checkpoint import load_checkpoint  # noqa: PLC0415

    for member in members:
        try:
            pack = (load_checkpoint(member, mmap=True).train or {}).get("pack")
        except CheckpointError:
            continue
        if pack:
            return str(pack)
    return None


def from_ensemble(path: str | Path, data: dict, *, size: int | None = None) -> ExportSource:
    """An ensemble file: its EnsembleSegmenter (one network returning logits) exported as a segmenter."""
    from edge_bus.models.ensemble import load_ensemble  # noqa: PLC0415

    ens = load_ensemble(path, data)
    model = ens.build_model()
    spec = ens.preprocessing
    if size and size != spec.size:
        spec = PreprocessSpec(**{**spec.to_dict(), "size": int(size)})
    return ExportSource(
        model=model,
        name="ensemble",
        task="segmentation",
        classes=list(SEGMENTATION_CLASSES),
        spec=spec,
        threshold=float(ens.threshold),
        metrics=dict(ens.metrics),
        provenance={
            "ensemble": str(Path(path).resolve()),
            "ensemble_sha256": sha256_file(path),
            "mode": ens.mode,
            "weights": list(ens.weights),
            "members": [str(Path(m).resolve()) for m in ens.members],
            "member_sha256": [sha256_file(m) for m in ens.members],
            "member_weights_sha256": list(ens.member_weights_sha256),
            "data_classes": list(ens.classes),
            "split_hash": ens.split_hash,
            "dataset_sha256": ens.dataset_sha256,
        },
        trained=True,
        split_hash=ens.split_hash,
        recorded_pack=_member_pack(ens.members),
    )


def from_file(path: str | Path, *, size: int | None = None) -> ExportSource:
    """Dispatch on the file's content, as training.evaluate.load_any does: a JSON ensemble or
    classical file, else a torch checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such model file (a .pt checkpoint from `edge-bus train`, or an ensemble.json)")
    with open(p, "rb") as fh:
        head = fh.read(64).lstrip()
    if p.suffix.lower() == ".json" or head.startswith(b"{"):
        data = read_json(p, CheckpointError, what="model file", fix="export a .pt checkpoint or an ensemble.json")
        kind = data.get("format") if isinstance(data, dict) else None
        if kind == "edge-bus-ensemble":
            return from_ensemble(p, data, size=size)
        if kind == "edge-bus-classical":
            raise ConfigError(
                f"{p}: the classical baseline is not a network and is not exported; it runs in the evaluation only "
                f"(`edge-bus evaluate {p} --pack PACK --out DIR`); export a trained network checkpoint or an ensemble instead"
            )
        raise CheckpointError(f"{p}: unknown model file format {kind!r}; expected edge-bus-ensemble or a .pt checkpoint")
    return from_checkpoint(p, size=size)


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
        classes=_manifest_classes(task, spec.classes),
        spec=PreprocessSpec(size=spec.size),
        threshold=spec.threshold,
        provenance={"checkpoint": None, "fresh_init_seed": spec.seed, "model_kwargs": dict(spec.kwargs)},
        trained=False,
    )


def resolve_source(source: Any, *, size: int | None = None) -> ExportSource:
    """A checkpoint/ensemble path, a ModelSpec, or an ExportSource (returned as is)."""
    if isinstance(source, ExportSource):
        return source
    if isinstance(source, ModelSpec):
        return from_spec(source if size is None else ModelSpec(**{**source.__dict__, "size": size}))
    return from_file(source, size=size)
