"""Which bundle each model runs: a trained one where present, else a cached default.

Trained bundles are looked up in `--bundles DIR` (default: $EDGE_BUS_BUNDLES, else
~/.local/share/edge-bus/bundles) as `<DIR>/<model>/manifest.json`. A model with no trained
bundle gets a *default bundle*: exported from a freshly initialized network, marked
`latency_only` (its outputs mean nothing; its speed is the real network's speed), and cached under
~/.cache/edge-bus/default-bundles/edge-bus-<version>-torch-<version>/<model>-<size>/ (or
$EDGE_BUS_CACHE/default-bundles) so the second run starts at once.

Only the export needs torch; it is imported inside `export_default`.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge_bus.benchmarking.config import ARTIFACT_FOR, DEFAULT_BATCH_RANGE
from edge_bus.bundle import Bundle, open_bundle
from edge_bus.errors import BundleError, ConfigError


def default_bundles_dir() -> Path:
    env = os.environ.get("EDGE_BUS_BUNDLES")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "edge-bus" / "bundles"


def cache_root() -> Path:
    env = os.environ.get("EDGE_BUS_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "edge-bus") / "default-bundles"


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "none"


def cache_dir_for(model: str, size: int, root: Path | None = None) -> Path:
    """Cache folder of a default bundle, keyed by the edge-bus and torch versions."""
    key = f"edge-bus-{_version('edge-bus')}-torch-{_version('torch')}"
    return (root or cache_root()) / key / f"{model}-{size}"


@dataclass
class BundlePlan:
    model: str
    path: Path
    trained: bool  # found in the bundles folder (else a default bundle)
    ready: bool  # the folder holds a complete bundle now (else it is exported at run time)
    batch_range: tuple[int, int]
    artifacts: tuple[str, ...]  # kinds present, or to be exported
    latency_only: bool

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "trained": self.trained,
            "latency_only": self.latency_only,
            "batch_range": list(self.batch_range),
            "artifacts": list(self.artifacts),
            "source": "bundles folder" if self.trained else "default bundle (freshly initialized model)",
        }


def needed_artifacts(backends: list[str], precisions: list[str]) -> set[str]:
    return {ARTIFACT_FOR[b][p] for b in backends for p in precisions if p in ARTIFACT_FOR[b]}


def plan_bundle(model: str, *, bundles_dir: Path | None, cache: Path | None, size: int, needed: set[str]) -> BundlePlan:
    """Decide where `model`'s bundle comes from, reading manifests only (no export, no model load)."""
    explicit = bundles_dir is not None
    folder = Path(bundles_dir) if explicit else default_bundles_dir()
    candidate = folder / model
    if (candidate / "manifest.json").is_file():
        bundle = open_bundle(candidate)
        missing = sorted(needed - set(bundle.manifest.artifacts))
        # Some of what was asked is missing (e.g. no INT8 model): the rest is measured and the
        # missing combinations are listed as skipped, with the backend's reason.
        if missing and not needed & set(bundle.manifest.artifacts):
            raise ConfigError(
                f"{candidate}: bundle has no {', '.join(missing)} artifact (it has {', '.join(sorted(bundle.manifest.artifacts)) or 'none'}); "
                f"re-export it with `edge-bus export ... --formats {','.join(sorted(needed))}` or choose another --backend/--precision"
            )
        m = bundle.manifest
        return BundlePlan(model, candidate, True, True, tuple(m.batch_range), tuple(sorted(m.artifacts)), m.latency_only)
    if explicit and not folder.is_dir():
        raise ConfigError(f"--bundles {folder}: no such folder; it should hold <model>/manifest.json for each model")
    cached = cache_dir_for(model, size, cache)
    exportable = {"onnx", "torchscript"}
    if needed - exportable:
        raise ConfigError(
            f"no trained bundle for {model} in {folder}, and default bundles carry only {', '.join(sorted(exportable))}; "
            f"{', '.join(sorted(needed - exportable))} needs a bundle exported from a checkpoint (`edge-bus export`)"
        )
    ready = False
    batch_range = DEFAULT_BATCH_RANGE
    artifacts = tuple(sorted(needed))
    if (cached / "manifest.json").is_file():
        try:
            m = open_bundle(cached).manifest
            if needed <= set(m.artifacts) and all((cached / p).is_file() for p in m.artifacts.values()):
                ready, batch_range, artifacts = True, tuple(m.batch_range), tuple(sorted(m.artifacts))
        except BundleError:
            ready = False  # a broken cache entry is exported again
    return BundlePlan(model, cached, False, ready, batch_range, artifacts, True)


def export_default(plan: BundlePlan, size: int) -> Bundle:
    """Export a freshly initialized `plan.model` into its cache folder (atomically: tmp + rename)."""
    if plan.ready:
        return open_bundle(plan.path)
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        raise BundleError(
            f"no bundle for {plan.model}: default bundles are exported with PyTorch, which is not installed here; "
            f"pass --bundles DIR with exported bundles, or install edge-bus[train]"
        ) from None
    tmp = plan.path.with_name(plan.path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    _fresh_bundle(plan.model, tmp, size, tuple(sorted(plan.artifacts)))
    shutil.rmtree(plan.path, ignore_errors=True)
    tmp.rename(plan.path)
    bundle = open_bundle(plan.path)
    if not bundle.manifest.latency_only:
        raise BundleError(f"{plan.path}: a default bundle must be marked latency_only; the exporter did not mark it")
    return bundle


def _fresh_bundle(model: str, out_dir: Path, size: int, formats: tuple[str, ...]) -> None:
    """The exporting package's fresh_bundle (a latency-only bundle from a freshly initialized model)."""
    from edge_bus.exporting import fresh_bundle  # noqa: PLC0415

    fresh_bundle(model, out_dir, size=size, formats=formats, batch_range=DEFAULT_BATCH_RANGE, parity_images=2)
