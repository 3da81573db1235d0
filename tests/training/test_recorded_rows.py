"""Rows of benchmarks/training/README.md reproduced from their committed checkpoints on real BUSI.

The issue's promise is that `edge-bus evaluate` reproduces a row from its checkpoint. Most
checkpoints are too large for the repository; the small ones are committed beside their reports
(`benchmarks/training/results/cpu128-2026-12-02/`), and this test packs the shared split afresh and
evaluates them: a change to the split, the preprocessing, the pack, the loading or the metrics that
moves a recorded figure fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "training" / "results" / "cpu128-2026-12-02"
# (row, model file, committed test report, tolerance): classical is plain NumPy/OpenCV, compared exactly;
# the U-Net runs on torch, whose CPU kernels may round a probability at the threshold differently on another CPU kind.
ROWS = [
    ("classical", RESULTS / "classical" / "classical.json", RESULTS / "classical" / "report.json", 0.0),
    ("unet", RESULTS / "unet" / "best.pt", RESULTS / "unet" / "report.json", 1e-3),
]

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def pack128(busi_dir, tmp_path_factory) -> Path:
    from edge_bus.data.pack import pack_split
    from edge_bus.data.split import load_split

    return pack_split(load_split(REPO / "splits" / "busi-seed0.json"), busi_dir,
                      tmp_path_factory.mktemp("pack128") / "pack.npz", size=128)


@pytest.mark.parametrize(("row", "model_file", "recorded_report", "tolerance"), ROWS, ids=[r[0] for r in ROWS])
def test_row_reproduces_from_its_committed_checkpoint(row, model_file, recorded_report, tolerance, pack128, tmp_path):
    pytest.importorskip("torch")
    from edge_bus.training.evaluate import evaluate

    recorded = json.loads(recorded_report.read_text())
    report = evaluate(model_file, pack128, tmp_path / row, split="test")

    assert report["pack_sha256"] == recorded["pack_sha256"], "the shared split no longer packs to the recorded pixels"
    if "weights_sha256" in recorded:
        assert report["weights_sha256"] == recorded["weights_sha256"]
    got = report["segmentation"]
    want = recorded["segmentation"]
    assert [p["id"] for p in got["per_image"]] == [p["id"] for p in want["per_image"]]
    for subset in ("all_images", "lesion_only"):
        for figure in ("iou", "dice"):
            assert got[subset][figure] == pytest.approx(want[subset][figure], abs=tolerance), (row, subset, figure)
            # the bracketed bounds of the README come from here
            assert report["intervals"][subset][figure] == pytest.approx(recorded["intervals"][subset][figure],
                                                                        abs=10 * tolerance), (row, subset, figure)
