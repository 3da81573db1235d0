"""A tiny bundle (a width-4 U-Net at 32x32, ONNX) built once for the benchmark tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory) -> Path:
    """<dir>/unet/ holding a latency-only bundle of a tiny U-Net (batch range 1..4)."""
    pytest.importorskip("torch")
    from edge_bus.exporting import fresh_bundle

    root = tmp_path_factory.mktemp("bundles")
    fresh_bundle("unet", root / "unet", size=32, formats=("onnx",), model_kwargs={"width": 4, "depth": 2}, batch_range=(1, 4))
    return root
