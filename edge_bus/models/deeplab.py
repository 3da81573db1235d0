"""DeepLabV3 with a ResNet-101 backbone (torchvision), one gray input channel, one output channel."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.segmentation import deeplabv3_resnet101 as tv_deeplabv3_resnet101

from edge_bus.models.registry import register
from edge_bus.models.weights import imagenet_state_dict, load_pretrained, single_channel_conv


class DeepLabV3(nn.Module):
    """torchvision's DeepLabV3 returning the "out" logits as a tensor (export needs a tensor, not a dict)."""

    def __init__(self):
        super().__init__()
        net = tv_deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=1, aux_loss=False)
        net.backbone.conv1 = single_channel_conv(net.backbone.conv1)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


@register("deeplabv3_resnet101", task="segmentation")
def deeplabv3_resnet101(*, weights: str | None = None) -> nn.Module:
    """DeepLabV3-ResNet-101, aux head off; weights="imagenet" loads the ImageNet backbone."""
    model = DeepLabV3()
    if weights == "imagenet":
        # The backbone is an IntermediateLayerGetter over ResNet-101: same keys, under net.backbone.
        load_pretrained(
            model.net.backbone,
            imagenet_state_dict("ResNet101_Weights.IMAGENET1K_V1"),
            first_conv="conv1.weight",
            skip_prefixes=("fc.",),
        )
    return model
