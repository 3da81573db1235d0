"""Plots: PNG files of the right kind; bad input rejected; importing edge_bus.plots loads no matplotlib."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_bus.plots import plot_class_distribution, plot_confusion_matrix


def test_confusion_matrix_png(tmp_path):
    path = plot_confusion_matrix([[5, 1, 0], [2, 7, 1], [0, 0, 0]], ["benign", "malignant", "normal"], tmp_path / "a" / "cm.png", title="val")
    image = cv2.imread(str(path))
    assert image is not None and min(image.shape[:2]) > 200
    assert image.std() > 10  # something was drawn
    with pytest.raises(ValueError, match="does not fit 2 classes"):
        plot_confusion_matrix(np.zeros((3, 3)), ["a", "b"], tmp_path / "bad.png")


def test_class_distribution_flat_and_grouped(tmp_path):
    flat = cv2.imread(str(plot_class_distribution({"benign": 4, "malignant": 2, "normal": 1}, tmp_path / "flat.png")))
    grouped = cv2.imread(
        str(plot_class_distribution({"train": {"benign": 4, "normal": 1}, "val": {"benign": 1, "normal": 1}}, tmp_path / "g.png"))
    )
    assert flat is not None and grouped is not None
    assert not np.array_equal(flat.shape, grouped.shape) or not np.array_equal(flat, grouped)


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, edge_bus.plots, edge_bus.metrics; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
