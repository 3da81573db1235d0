"""Weights reused on a split must have been trained on that split: a model trained on another split
may have seen its val or test images, and every figure measured on them would be inflated.

Used where trained weights meet a pack they were not trained by: ensemble members (weights chosen on
val) and warm starts (`--init`, `--encoder-from`).
"""

from __future__ import annotations

from pathlib import Path

from edge_bus.errors import ConfigError


def check_trained_on_split(source: Path, source_split: str, split_hash: str, pack_path: Path, *, role: str, risk: str) -> None:
    """ConfigError unless `source` (a `role`, e.g. "member") records the split `split_hash` of the
    pack at `pack_path`; `risk` says what a mismatch would spoil."""
    if not split_hash:
        raise ConfigError(f"{pack_path}: the pack records no split hash; rebuild it with `edge-bus data pack`")
    if not source_split:
        raise ConfigError(
            f"{source}: this {role} records no split hash, so it cannot be shown to be trained on the split of "
            f"{pack_path} ({split_hash[:12]}); retrain it with `edge-bus train` on that pack"
        )
    if source_split != split_hash:
        raise ConfigError(
            f"{source}: {role} trained on split {source_split[:12]}, but the pack {pack_path} is split "
            f"{split_hash[:12]}; {risk}. Use a {role} trained on the same split as the pack"
        )
