"""The one place that turns a failed `torch.load` into a one-line CheckpointError naming the file.

Used by checkpoint.load_checkpoint, resume (loop._load_state) and --init (models.weights.read_init). Always `weights_only=True`: a file from elsewhere cannot run code when loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_bus.errors import CheckpointError


def load_error_message(path: str | os.PathLike, exc: BaseException, what: str = "file", hint: str | None = None) -> str:
    """'<path>: not a readable <what> (<Type>: <first line of the error, 200 chars>); <hint>'."""
    lines = str(exc).strip().splitlines()
    detail = lines[0][:200] if lines else ""
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return f"{Path(path)}: not a readable {what} ({reason}); " + (
        hint or "the file is corrupt or was not written by edge-bus"
    )


def safe_torch_load(
    path: str | os.PathLike, *, what: str = "file", hint: str | None = None, mmap: bool = False
) -> Any:
    """torch.load(path, map_location="cpu", weights_only=True), or CheckpointError (one line)
    naming `path` when it is missing, truncated, not a torch file or holds non-tensor objects."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such {what}" + (f"; {hint}" if hint else ""))
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # pickle, zip, EOF, weights_only refusals: all mean "this file is unusable"
        raise CheckpointError(load_error_message(p, exc, what, hint)) from None
