"""Small models for export tests (64x64, a few hundred parameters)."""

from __future__ import annotations

import torch
from torch import nn

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.exporting.source import ExportSource

SIZE = 64


class TinyClassifier(nn.Module):
    """Conv -> adaptive 7x7 pool (the VGG trap at a non-divisible size) -> linear, 3 classes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.head = nn.Linear(4 * 49, 3)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class DarkSegmenter(nn.Module):
    """Logit high where the smoothed image is dark: finds the phantoms' hypoechoic lesions.

    A 1x1 identity convolution first, so that INT8 quantizes a layer besides the float logit head."""

    def __init__(self):
        super().__init__()
        self.pre = nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.pre.weight.fill_(1.0)
            self.pre.bias.zero_()
        self.smooth = nn.Conv2d(1, 1, 5, padding=2, bias=True)
        with torch.no_grad():
            self.smooth.weight.fill_(-4.0 / 25)
            self.smooth.bias.fill_(-3.0)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x):
        return self.bn(self.smooth(torch.relu(self.pre(x) + 2.0) - 2.0))


def source(model: nn.Module, task: str) -> ExportSource:
    torch.manual_seed(0)
    classes = ["benign", "malignant", "normal"] if task == "classification" else ["lesion"]
    return ExportSource(model=model.eval(), name=f"tiny_{task[:3]}", task=task, classes=classes,
                        spec=PreprocessSpec(size=SIZE), provenance={"checkpoint": None}, trained=False)
