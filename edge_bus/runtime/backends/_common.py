"""What the backend implementations share: artifact choice, batch splitting, input checks."""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

from edge_bus.bundle import Bundle
from edge_bus.errors import BackendError, BundleError
from edge_bus.runtime.backends.base import BackendOptions

PRECISIONS = ("auto", "fp32", "fp16", "int8")


def check_bundle(bundle: Bundle, options: BackendOptions) -> None:
    """Refuse a rejected bundle (unless allowed) and an unknown precision. Unchecked (latency-only)
    bundles open here: a backend is a timing and inference seam; refusing them for a clinical run is
    `runtime.models.load_model`'s job (`edge-bus run --allow-unchecked`)."""
    bundle.require_accepted(allow_rejected=options.allow_rejected, allow_unchecked=True)
    if options.precision not in PRECISIONS:
        raise BackendError(f"unknown precision '{options.precision}'; choose one of {', '.join(PRECISIONS)}")


def resolved_precision(options: BackendOptions) -> str:
    """The precision a non-TensorRT backend runs: "auto" means FP32 (the parity-gated reference)."""
    return "fp32" if options.precision == "auto" else options.precision


def artifact(bundle: Bundle, kind: str, backend: str) -> str:
    """Path of an artifact as str; a missing one is a BackendError so that 'auto' tries the next backend."""
    try:
        return str(bundle.artifact_path(kind))
    except BundleError as exc:
        raise BackendError(f"backend '{backend}' cannot run this bundle: {exc}") from None


def cuda_device_index(device: str | None, *, choices: str = "cuda or cuda:N") -> int:
    """The CUDA device index of a --device value: auto / cuda -> 0, cuda:N -> N; BackendError for
    anything else (`choices`: the devices the calling backend accepts, for the message)."""
    text = (device or "auto").strip().lower()
    if text in ("auto", "cuda"):
        return 0
    match = re.fullmatch(r"cuda:(\d+)", text)
    if match is None:
        raise BackendError(f"unknown device {device!r}; use {choices}")
    return int(match.group(1))


def max_batch(bundle: Bundle, options: BackendOptions) -> int:
    limit = bundle.manifest.batch_range[1]
    return min(limit, options.max_batch) if options.max_batch else limit


def check_input(batch: np.ndarray, size: int, name: str) -> None:
    if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != (1, size, size):
        got = f"{batch.dtype} {batch.shape}" if isinstance(batch, np.ndarray) else type(batch).__name__
        raise BackendError(f"{name}: expected a float32 batch (N, 1, {size}, {size}), got {got}; use edge_bus.data.preprocess.preprocess_batch")


def run_split(run: Callable[[np.ndarray], dict[str, np.ndarray]], batch: np.ndarray, limit: int) -> dict[str, np.ndarray]:
    """Run `batch` in chunks of at most `limit` (the bundle's batch_range maximum); never sent whole."""
    n = batch.shape[0]
    if n <= limit:
        return run(batch)
    parts = [run(batch[i : i + limit]) for i in range(0, n, limit)]
    return {key: np.concatenate([p[key] for p in parts], axis=0) for key in parts[0]}
