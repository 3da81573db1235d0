from __future__ import annotations

import numpy as np
import torch

from edge_bus.training.data import class_weights
from edge_bus.training.losses import BCEDiceLoss


def test_bce_dice_prefers_the_right_mask():
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:10, 4:10] = 1
    loss = BCEDiceLoss()
    right = loss(target * 20 - 10, target)
    wrong = loss(10 - target * 20, target)
    assert right < 0.05 < wrong


def test_class_weights_favour_rare_classes():
    w = class_weights(np.array([0] * 6 + [1] * 3 + [2]), 3)
    assert w[2] > w[1] > w[0]
    assert torch.isclose(w.mean(), torch.tensor(1.0))
