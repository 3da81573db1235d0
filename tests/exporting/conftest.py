"""Fixtures for export tests: the phantom BUSI set split and packed at 64 px (real images for the gate)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def export_pack(synthetic_busi, tmp_path_factory):
    from edge_bus.data.busi import index_busi
    from edge_bus.data.pack import pack_split
    from edge_bus.data.split import make_split

    return pack_split(make_split(index_busi(synthetic_busi), seed=0), synthetic_busi,
                      tmp_path_factory.mktemp("export_pack") / "pack.npz", size=64)
