"""The four networks of the course, written as flat ``nn.Sequential`` stacks with named layers.

Flat stacks are deliberate: a pruning tool (and a learner) can read the order of the layers
from ``model.named_children()`` and see which Linear feeds which, without tracing code.

========== ======== ============ =========================================================
name       data     parameters   layers
========== ======== ============ =========================================================
lenet300   MNIST    266,610      fc1 784→300, fc2 300→100, fc3 100→10 (LeCun et al. 1998)
lenet5     MNIST    431,080      conv 20@5x5, pool, conv 50@5x5, pool, fc 800→500, fc 500→10
                                 (the Caffe variant used by Han et al. 2015)
vgg        CIFAR-10 1,175,786    8 conv-BN-ReLU blocks (32-32-64-64-128-128-256-256),
                                 3 max-pools, global average pooling, fc 256→10
resnet20   CIFAR-10 272,474      He et al. 2016's CIFAR ResNet: 3 stages x 3 basic blocks,
                                 16/32/64 channels (1x1-conv shortcuts where shapes change)
========== ======== ============ =========================================================

A fifth, ``chargpt`` (Tiny Shakespeare, 3,225,665 parameters), is a small decoder-only transformer
that predicts the next character; it lives in :mod:`prunekit.chargpt` (not a flat stack: its blocks
add residuals) and is listed in ``LANGUAGE_MODEL_NAMES``, apart from the four image classifiers.

Example:
    >>> model = build_model("lenet300")
    >>> sum(p.numel() for p in model.parameters())
    266610
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

VGG_CHANNELS = (32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256)


class _Stack(nn.Sequential):
    """An ``nn.Sequential`` whose slices are plain Sequentials: ``model[:4]`` = the first four layers."""

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # nn.Sequential would call our __init__ with an OrderedDict
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


class LeNet300(_Stack):
    """LeNet-300-100: a 784-300-100-10 multilayer perceptron with ReLU. Input (N, 1, 28, 28)."""

    def __init__(self, num_classes: int = 10):
        super().__init__(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(784, 300)), ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(300, 100)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(100, num_classes)),
        ]))


class LeNet5(_Stack):
    """LeNet-5, Caffe variant (conv 20, conv 50, fc 500). Input (N, 1, 28, 28).

    Caffe's version has no non-linearity after the convolutions; we add ReLU there, as most
    re-implementations do (it changes no parameter count and makes activation criteria meaningful).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(1, 20, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(20, 50, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(50 * 4 * 4, 500)), ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(500, num_classes)),
        ]))


class VGG(_Stack):
    """A small VGG for CIFAR-10: conv-BN-ReLU blocks, max-pools, global average pool, one Linear.

    Args:
        channels: output channels per conv block; ``"M"`` inserts a 2x2 max-pool.
        num_classes: size of the output layer.

    Layers are named ``conv1, bn1, relu1, ..., pool1, ..., gap, flatten, fc``.
    """

    def __init__(self, channels=VGG_CHANNELS, num_classes: int = 10, in_channels: int = 3):
        layers, c_in, block, pool = [], in_channels, 0, 0
        for c in channels:
            if c == "M":
                pool += 1
                layers.append((f"pool{pool}", nn.MaxPool2d(2)))
                continue
            block += 1
            layers += [(f"conv{block}", nn.Conv2d(c_in, c, 3, padding=1, bias=False)),
                       (f"bn{block}", nn.BatchNorm2d(c)), (f"relu{block}", nn.ReLU())]
            c_in = c
        layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("fc", nn.Linear(c_in, num_classes))]
        super().__init__(OrderedDict(layers))


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut, then ReLU: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x)``.

    The shortcut is the identity, or a 1x1 conv + BN when the stride or channel count changes.
    Every output channel of the addition is shared by the block's residual path and its
    shortcut, so pruning it means pruning both (a *dependency group*).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)),
                ("bn", nn.BatchNorm2d(out_channels))]))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet20(_Stack):
    """ResNet-20 for CIFAR-10 (He et al. 2016, section 4.2): 6n+2 layers with n = 3.

    Args:
        widths: channels of the three stages (16, 32, 64).
        blocks_per_stage: n (3 gives ResNet-20, 9 gives ResNet-56).

    Layers: ``conv1, bn1, relu1, stage1, stage2, stage3, gap, flatten, fc``; each stage is a
    Sequential of :class:`BasicBlock`.
    """

    def __init__(self, widths=(16, 32, 64), blocks_per_stage: int = 3, num_classes: int = 10):
        layers = [("conv1", nn.Conv2d(3, widths[0], 3, padding=1, bias=False)),
                  ("bn1", nn.BatchNorm2d(widths[0])), ("relu1", nn.ReLU())]
        c_in = widths[0]
        for s, width in enumerate(widths, start=1):
            blocks = [BasicBlock(c_in if b == 0 else width, width, width, stride=2 if (b == 0 and s > 1) else 1)
                      for b in range(blocks_per_stage)]
            layers.append((f"stage{s}", nn.Sequential(*blocks)))
            c_in = width
        layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                   ("fc", nn.Linear(c_in, num_classes))]
        super().__init__(OrderedDict(layers))


MODEL_NAMES = ("lenet300", "lenet5", "vgg", "resnet20")
INPUT_SHAPES = {"lenet300": (1, 28, 28), "lenet5": (1, 28, 28), "vgg": (3, 32, 32), "resnet20": (3, 32, 32)}
DATASET_OF = {"lenet300": "mnist", "lenet5": "mnist", "vgg": "cifar10", "resnet20": "cifar10",
              "chargpt": "tinyshakespeare"}
LANGUAGE_MODEL_NAMES = ("chargpt",)  # next-character models: input ids (B, T), output logits (B, T, vocab)


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialised model by name: ``"lenet300"``, ``"lenet5"``, ``"vgg"``, ``"resnet20"``
    or ``"chargpt"`` (:class:`prunekit.chargpt.CharGPT`; ``num_classes`` does not apply to it).

    Example:
        >>> build_model("vgg")(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    from .chargpt import CharGPT  # local import: the transformer is a module of its own

    if name == "chargpt":
        return CharGPT()
    builders = {"lenet300": LeNet300, "lenet5": LeNet5, "vgg": VGG, "resnet20": ResNet20}
    if name not in builders:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES + LANGUAGE_MODEL_NAMES)}")
    return builders[name](num_classes=num_classes)
