"""Classifiers: torchvision ResNets trained from scratch, with a grayscale stem and an MLP head.

The dissertation's networks: ``torchvision.models.resnet18(weights=None)`` whose first
convolution takes 1 channel, and whose ``fc`` is an MLP, 512-256-128-10 (CIFAR-10),
512-256-102 (Flowers102), 512-256-10 (Imagenette), with ReLU and dropout between layers.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["ARCHS", "make_classifier", "model_meta", "classifier_from_meta"]

ARCHS = ("resnet18", "resnet34", "resnet50")


def make_classifier(arch: str = "resnet18", *, num_classes: int, in_channels: int = 1,
                    hidden: Sequence[int] = (256, 128), dropout: float = 0.5) -> nn.Module:
    """A randomly initialised ResNet with an ``in_channels`` stem and an MLP head.

    The head maps the pooled features (512 for ResNet-18/34, 2048 for ResNet-50) through
    ``Linear -> ReLU -> Dropout(dropout)`` for each width in ``hidden``, then to ``num_classes``.
    """
    import torchvision
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    net = getattr(torchvision.models, arch)(weights=None)
    old = net.conv1
    # Same geometry as torchvision's stem (7x7, stride 2), only the input channels change.
    net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                          padding=old.padding, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    layers: list = []
    width = net.fc.in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = int(h)
    layers.append(nn.Linear(width, num_classes))
    net.fc = nn.Sequential(*layers)
    return net


def model_meta(arch: str, num_classes: int, in_channels: int, hidden: Sequence[int], dropout: float,
               **extra) -> dict:
    """What a checkpoint must record to rebuild its model (plus dataset facts in ``extra``)."""
    return dict(arch=arch, num_classes=int(num_classes), in_channels=int(in_channels),
                hidden=[int(h) for h in hidden], dropout=float(dropout), **extra)


def classifier_from_meta(meta: dict) -> nn.Module:
    return make_classifier(meta["arch"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                           hidden=meta["hidden"], dropout=meta["dropout"])
