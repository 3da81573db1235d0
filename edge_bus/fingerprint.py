"""Content fingerprints: SHA-256 of what a result was computed from, so a report can say which
weights and which preprocessed pixels produced it, and a rerun can be checked bit for bit.

`array_sha256` hashes NumPy arrays (the pack); `state_dict_sha256` hashes a torch state dict
(imported lazily: the runtime imports this module without torch). Both cover names, dtypes and
shapes as well as the bytes, so a reshaped or retyped tensor is a different fingerprint.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

import numpy as np


def _update(digest: "hashlib._Hash", name: str, dtype: str, shape: tuple[int, ...], data: bytes | memoryview) -> None:
    header = f"{name}\0{dtype}\0{','.join(map(str, shape))}\0{len(data)}\0".encode()
    digest.update(header)
    digest.update(data)


def array_sha256(named_arrays: Iterable[tuple[str, np.ndarray]]) -> str:
    """SHA-256 over (name, array) pairs in the order given."""
    digest = hashlib.sha256()
    for name, array in named_arrays:
        a = np.ascontiguousarray(array)
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects; only plain arrays have a fingerprint")
        _update(digest, name, a.dtype.str, a.shape, a.tobytes())
    return digest.hexdigest()


def state_dict_sha256(state_dict: Mapping[str, Any]) -> str:
    """SHA-256 of a torch state dict in its key order (the order the module defines)."""
    import torch

    digest = hashlib.sha256()
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.empty(0, np.uint8)
        _update(digest, name, str(t.dtype), tuple(t.shape), raw.tobytes())
    return digest.hexdigest()
