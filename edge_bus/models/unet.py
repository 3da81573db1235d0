"""U-Nets: the standard U-Net and the study's modified U-Net with a VGG-19 encoder."""

from __future__ import annotations

import torch
from torch import nn

from edge_bus.models.registry import register
from edge_bus.models.weights import imagenet_state_dict, load_pretrained


def _check_input(x: torch.Tensor, multiple: int, name: str) -> None:
    """Clear error for sizes the encoder cannot halve `log2(multiple)` times (skipped while exporting)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} expects float32 (N, 1, H, W) input, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{name} needs H and W divisible by {multiple}, got {h}x{w}; "
            f"resize to e.g. {(h // multiple + 1) * multiple}x{(w // multiple + 1) * multiple}"
        )


def _conv_block(cin: int, cout: int, n: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), act()]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Ronneberger's U-Net (with batch norm): `depth` halvings, channels width * 2**level,
    transposed-convolution upsampling, one lesion logit per pixel."""

    def __init__(self, width: int = 64, depth: int = 4):
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"unet needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        chans = [width * 2**i for i in range(depth + 1)]
        self.multiple = 2**depth
        self.down = nn.ModuleList([_conv_block(1, chans[0], 2, nn.ReLU)])
        self.down.extend(_conv_block(chans[i], chans[i + 1], 2, nn.ReLU) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_conv_block(2 * chans[i], chans[i], 2, nn.ReLU) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.multiple, "unet")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


# VGG-19 layout: convolutions per stage, channels per stage as multiples of `width` (64 in VGG).
_VGG19_CONVS = (2, 2, 4, 4, 4)
_VGG19_MULT = (1, 2, 4, 8, 8)


class UNetVGG19(nn.Module):
    """The study's modified U-Net: a VGG-19 (batch-norm) encoder, a decoder that mirrors it stage
    by stage (transposed convolution up, concatenation with the encoder stage, as many 3x3
    convolutions as that encoder stage), a final 1x1 convolution, and LeakyReLU everywhere in
    place of ReLU.

    The encoder is one Sequential laid out exactly like torchvision's `vgg19_bn().features`
    without its last max-pool, so ImageNet weights load by index (width=64 only).
    """

    def __init__(self, width: int = 64, negative_slope: float = 0.01):
        super().__init__()
        act = lambda: nn.LeakyReLU(negative_slope, inplace=True)  # noqa: E731
        chans = [width * m for m in _VGG19_MULT]
        layers: list[nn.Module] = []
        cin = 1
        for stage, (n, c) in enumerate(zip(_VGG19_CONVS, chans)):
            if stage > 0:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(n):
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), act()]
                cin = c
        self.encoder = nn.Sequential(*layers)
        self.multiple = 2 ** (len(chans) - 1)
        ups, decs = [], []
        for stage in reversed(range(len(chans) - 1)):
            ups.append(nn.ConvTranspose2d(chans[stage + 1], chans[stage], 2, stride=2))
            decs.append(_conv_block(2 * chans[stage], chans[stage], _VGG19_CONVS[stage], act))
        self.up = nn.ModuleList(ups)
        self.dec = nn.ModuleList(decs)
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.multiple, "unet_vgg19")
        skips = []
        for layer in self.encoder:
            if isinstance(layer, nn.MaxPool2d):
                skips.append(x)
            x = layer(x)
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


@register("unet", task="segmentation", imagenet=False)
def unet(*, weights: str | None = None, width: int = 64, depth: int = 4) -> nn.Module:
    """Standard U-Net; `width` channels at full resolution (64 in the paper)."""
    return UNet(width=width, depth=depth)


@register("unet_vgg19", task="segmentation", imagenet_kwargs={"width": 64})  # create() checks the width
def unet_vgg19(*, weights: str | None = None, width: int = 64) -> nn.Module:
    """Modified U-Net with a VGG-19 encoder, mirrored transposed-convolution decoder, LeakyReLU."""
    model = UNetVGG19(width=width)
    if weights == "imagenet":
        load_pretrained(
            model,
            imagenet_state_dict("VGG19_BN_Weights.IMAGENET1K_V1"),
            first_conv="encoder.0.weight",
            skip_prefixes=("classifier.",),
            rename=("features.", "encoder."),
            covers=("encoder.",),  # the decoder and head start fresh
        )
    return model
