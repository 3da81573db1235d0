"""A bundle opened for the runtime: its manifest, its role and the backend that runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_bus.bundle import Manifest, open_bundle
from edge_bus.errors import BundleError
from edge_bus.runtime.backends import Backend, BackendOptions, open_backend

ROLES = {"classifier": "classification", "segmenter": "segmentation"}


@dataclass
class LoadedModel:
    role: str  # "classifier" | "segmenter"
    manifest: Manifest
    backend: Backend
    root: Path | None = None

    @property
    def max_batch(self) -> int:
        return self.manifest.batch_range[1]

    def close(self) -> None:
        self.backend.close()


def load_model(role: str, path: str | Path, backend: str = "auto", options: BackendOptions | None = None, *,
               allow_unchecked: bool = False) -> LoadedModel:
    """Open bundle `path` for `role`; BundleError when it is of the other task, rejected (unless
    options.allow_rejected) or unchecked, i.e. latency-only / untrained (unless allow_unchecked)."""
    options = options or BackendOptions()
    bundle = open_bundle(path)
    task = ROLES[role]
    if bundle.manifest.task != task:
        other = "segmenter" if role == "classifier" else "classifier"
        raise BundleError(f"{bundle.root}: is a {bundle.manifest.task} bundle, not {task}; pass it as --{other}")
    bundle.require_accepted(allow_rejected=options.allow_rejected, allow_unchecked=allow_unchecked)
    return LoadedModel(role=role, manifest=bundle.manifest, backend=open_backend(backend, bundle, options), root=bundle.root)
