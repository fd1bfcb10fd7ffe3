"""ResNet-18 and -34 in torchvision's layout and parameter names, with a CIFAR or ImageNet stem
and any width; registered as ``resnet18`` and ``resnet34``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..catalog.archs import register_model
from ..exceptions import RPGConfigError
from ..rpg.rpgify import is_generated


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with BasicBlocks. ``variant='imagenet'``: 7x7/2 stem + maxpool (torchvision's
    layout and parameter count at width 1); ``'cifar'``: 3x3/1 stem, no maxpool."""

    def __init__(
        self,
        layers: list[int],
        *,
        variant: str = "cifar",
        width: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        if variant == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1)
        elif variant == "cifar":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise RPGConfigError(f"model.variant must be 'cifar' or 'imagenet', got {variant!r}")
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = widths[0]
        stages = []
        for i, (w, n) in enumerate(zip(widths, layers, strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(inplanes, w, stride=2 if (i > 0 and j == 0) else 1))
                inplanes = w
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out) ordinary convs, unit batchnorms (generated convs: skipped)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not is_generated(m):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.features(x)).flatten(1))


@register_model("resnet18")
def resnet18(**kwargs: Any) -> nn.Module:
    return ResNet([2, 2, 2, 2], **kwargs)


@register_model("resnet34")
def resnet34(**kwargs: Any) -> nn.Module:
    return ResNet([3, 4, 6, 3], **kwargs)
