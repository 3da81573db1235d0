"""Classifiers (torchvision builders) for one gray channel: vgg19 (the study's primary), resnet50,
efficientnet_b0."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from edge_bus.models.registry import register
from edge_bus.models.weights import imagenet_state_dict, load_pretrained, single_channel_conv


class VGG19Classifier(nn.Module):
    """VGG-19 features, global average pooling and a small head (512 -> hidden -> classes).

    Why not torchvision's head: its AdaptiveAvgPool2d((7, 7)) sees 8x8 features at a 256 input, a
    non-integer pooling ratio that the TorchScript-based ONNX exporter cannot express (and
    TensorRT would not like either). Global average pooling exports everywhere and works at any
    input size, and the 25088x4096 Linear (100M parameters) becomes 512xhidden. The head no longer
    matches ImageNet's, which costs nothing: it is replaced for 3 classes anyway.
    """

    def __init__(self, num_classes: int = 3, *, hidden: int = 256, dropout: float = 0.5, batch_norm: bool = False):
        super().__init__()
        builder = tvm.vgg19_bn if batch_norm else tvm.vgg19
        self.features = builder(weights=None).features
        self.features[0] = single_channel_conv(self.features[0])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Dropout(dropout),
            nn.Linear(512, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


@register("vgg19", task="classification")
def vgg19(*, num_classes: int, weights: str | None = None, hidden: int = 256, batch_norm: bool = False) -> nn.Module:
    """VGG-19 with global average pooling and a small head (see VGG19Classifier)."""
    model = VGG19Classifier(num_classes, hidden=hidden, batch_norm=batch_norm)
    if weights == "imagenet":
        name = "VGG19_BN_Weights.IMAGENET1K_V1" if batch_norm else "VGG19_Weights.IMAGENET1K_V1"
        load_pretrained(model, imagenet_state_dict(name), first_conv="features.0.weight", skip_prefixes=("classifier.",))
    return model


@register("resnet50", task="classification")
def resnet50(*, num_classes: int, weights: str | None = None) -> nn.Module:
    """torchvision ResNet-50, one input channel, new fc for `num_classes`."""
    model = tvm.resnet50(weights=None, num_classes=num_classes)
    model.conv1 = single_channel_conv(model.conv1)
    if weights == "imagenet":
        load_pretrained(model, imagenet_state_dict("ResNet50_Weights.IMAGENET1K_V2"), first_conv="conv1.weight", skip_prefixes=("fc.",))
    return model


@register("efficientnet_b0", task="classification")
def efficientnet_b0(*, num_classes: int, weights: str | None = None) -> nn.Module:
    """torchvision EfficientNet-B0, one input channel, new classifier for `num_classes`."""
    model = tvm.efficientnet_b0(weights=None, num_classes=num_classes)
    model.features[0][0] = single_channel_conv(model.features[0][0])
    if weights == "imagenet":
        load_pretrained(
            model,
            imagenet_state_dict("EfficientNet_B0_Weights.IMAGENET1K_V1"),
            first_conv="features.0.0.weight",
            skip_prefixes=("classifier.",),
        )
    return model
