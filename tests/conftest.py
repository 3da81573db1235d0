"""Shared fixtures and the hardware/data markers.

Markers: gpu (CUDA present), tensorrt (tensorrt importable and a GPU), data (real BUSI in
../shared/data/busi), video (real cine clips). Tests carrying them are skipped where that is absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGE_BUS_SHARED_DATA", REPO.parent / "shared" / "data"))
BUSI_DIR = SHARED_DATA / "busi"
CINE_DIR = SHARED_DATA / "video" / "cine"


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    have = {
        "gpu": _cuda_available(),
        "tensorrt": importlib.util.find_spec("tensorrt") is not None and _cuda_available(),
        "data": BUSI_DIR.is_dir(),
        "video": CINE_DIR.is_dir(),
    }
    reasons = {
        "gpu": "no CUDA GPU here",
        "tensorrt": "tensorrt not importable or no GPU",
        "data": f"real BUSI data not found at {BUSI_DIR}",
        "video": f"real cine clips not found at {CINE_DIR}",
    }
    for item in items:
        for marker, present in have.items():
            if marker in item.keywords and not present:
                item.add_marker(pytest.mark.skip(reason=reasons[marker]))


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    """The real BUSI folder (tests using it must be marked `data`)."""
    return BUSI_DIR


@pytest.fixture(scope="session")
def cine_dir() -> Path:
    return CINE_DIR


@pytest.fixture(scope="session")
def synthetic_busi(tmp_path_factory) -> Path:
    """A small synthetic BUSI-layout folder: 8 benign, 6 malignant, 4 normal phantoms at 96x80."""
    from edge_bus.data.synthetic import write_busi_phantoms

    root = tmp_path_factory.mktemp("synthetic_busi")
    write_busi_phantoms(root, counts={"benign": 8, "malignant": 6, "normal": 4}, size=(80, 96), seed=0)
    return root
