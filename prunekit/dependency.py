"""Dependency groups: which layers must lose the *same* channels when one channel is removed.

Removing output channel ``c`` of a layer is only possible if everything that touches channel ``c``
changes with it:

* the **producers**: every Conv2d/Linear whose *output* channel ``c`` is part of the tensor
  (one layer in a plain chain; several when outputs are *added*, as in a residual network);
* the **norms**: every BatchNorm on those channels (its γ, β, running mean and variance);
* the **consumers**: every Conv2d/Linear that *reads* the channel, i.e. loses input channel ``c``.
  After a ``Flatten`` a channel becomes ``spatial`` consecutive inputs of the Linear
  (LeNet-5: 50 channels x 4 x 4 positions = 800 inputs, so ``spatial = 16``).

Such a set is a **dependency group**. In a chain ``conv -> BN -> ReLU -> pool -> conv`` the group
is one conv, one BN and one consumer. In a ResNet every block adds its output to the identity
shortcut, so all block outputs of a stage share one channel set: a stage is one group with many
producers and consumers (Li et al. 2017, "Pruning Filters for Efficient ConvNets", section 3.3).

:func:`dependency_groups` reads the groups off a model whose ``forward`` is visible from its
structure: an ``nn.Sequential`` (nested Sequentials are read in order) of Conv2d, Linear,
BatchNorm, ReLU-like activations, pooling, Dropout, Flatten and :class:`prunekit.models.BasicBlock`.
Anything else raises an error naming the layer, because a module with its own ``forward`` could
mix channels in ways a reader of the structure cannot see.

Example:
    >>> from prunekit.models import build_model
    >>> [(g.name, g.size) for g in dependency_groups(build_model("lenet300"))]
    [('fc1', 300), ('fc2', 100)]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from .models import BasicBlock

# Modules that act on each channel separately and map 0 to 0, so a channel that is zero before
# them is zero after them (what makes removing it exact). Sigmoid is absent on purpose: sigmoid(0)=0.5.
ELEMENTWISE_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardtanh,
                     nn.Dropout, nn.Identity)
POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class Consumer(NamedTuple):
    """A layer reading a group's channels: input channel ``c`` is inputs ``c*spatial .. c*spatial+spatial-1``."""

    name: str
    spatial: int = 1


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be removed together, and every layer they touch.

    Attributes:
        name: ``"fc1"``, ``"conv3"``, ``"stage1.0.conv1"`` (named after the producer), or
            ``"stage2"`` for the channels shared through a residual stage's additions.
        size: number of channels.
        producers: names of the Conv2d/Linear layers whose output channels these are.
        norms: names of the BatchNorm layers on these channels.
        consumers: :class:`Consumer` ``(name, spatial)`` of each layer reading these channels.
    """

    name: str
    size: int
    producers: tuple[str, ...]
    norms: tuple[str, ...]
    consumers: tuple[Consumer, ...]


@dataclass
class _OpenGroup:
    """A group while the walk is still collecting its layers."""

    name: str
    size: int
    conv_output: bool                # produced by a Conv2d (4-d), not a Linear (2-d)
    producers: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    residual: bool = False
    order: int = 0

    def freeze(self) -> ChannelGroup:
        return ChannelGroup(self.name, self.size, tuple(self.producers), tuple(self.norms),
                            tuple(self.consumers))


def _unsupported(name: str, module: nn.Module, why: str) -> ValueError:
    return ValueError(f"layer {name!r} ({type(module).__name__}): {why}. Channel surgery supports "
                      "nn.Sequential stacks of Conv2d (groups=1), Linear, BatchNorm, ReLU-like "
                      "activations, pooling, Dropout, Flatten and prunekit BasicBlocks.")


def _is_plain_sequential(module: nn.Module) -> bool:
    """An nn.Sequential (or subclass such as the zoo models) that keeps Sequential's forward."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _check_layer(name: str, module: nn.Module) -> None:
    """Only plain layers: a subclass may override ``forward``, and surgery rebuilds plain layers."""
    if type(module) not in (nn.Conv2d, nn.Linear):
        raise _unsupported(name, module, "a custom subclass of Conv2d/Linear; surgery rebuilds only "
                                         "plain nn.Conv2d / nn.Linear")
    if isinstance(module, nn.Conv2d) and module.groups != 1:
        raise _unsupported(name, module, f"groups={module.groups}: a grouped/depthwise conv ties input "
                                         "and output channels together, which is not supported")


class _Walk:
    """Reads a Sequential in forward order, keeping the group the current tensor belongs to."""

    def __init__(self):
        self.groups: list[tuple[int, ChannelGroup]] = []    # (order of the first producer, group)
        self.opened = 0
        self.current: _OpenGroup | None = None    # None: the tensor is the model input
        self.flattened = False

    def start(self, group: _OpenGroup) -> _OpenGroup:
        self.opened += 1
        group.order = self.opened
        return group

    def close(self, group: _OpenGroup | None = None) -> None:
        """Finish ``group`` (default: the current one), whose consumers are all known now."""
        group = group or self.current
        if group is not None:
            self.groups.append((group.order, group.freeze()))
        if group is self.current:
            self.current = None

    def consume(self, name: str, layer: nn.Module) -> None:
        """``layer`` reads the current tensor: its inputs are the current group's channels."""
        _check_layer(name, layer)
        group = self.current
        if group is None:
            return                                  # reads the model input: nothing to prune
        if isinstance(layer, nn.Conv2d):
            if self.flattened or not group.conv_output:
                raise _unsupported(name, layer, "a Conv2d reading a flattened / Linear output")
            if layer.in_channels != group.size:
                raise _unsupported(name, layer, f"expects {layer.in_channels} input channels but "
                                                f"group {group.name!r} has {group.size}")
            group.consumers.append(Consumer(name))
            return
        if group.conv_output and not self.flattened:
            raise _unsupported(name, layer, "a Linear reading a 4-d conv output without nn.Flatten")
        if layer.in_features % group.size:
            raise _unsupported(name, layer, f"{layer.in_features} inputs is not a multiple of the "
                                            f"{group.size} channels of group {group.name!r}")
        group.consumers.append(Consumer(name, layer.in_features // group.size))

    def layer(self, name: str, layer: nn.Module) -> None:
        """A Conv2d/Linear: consumes the current group, closes it, produces a new one."""
        self.consume(name, layer)
        self.close()
        conv = isinstance(layer, nn.Conv2d)
        size = layer.out_channels if conv else layer.out_features
        self.current = self.start(_OpenGroup(name, size, conv_output=conv, producers=[name]))
        self.flattened = False

    def norm(self, name: str, bn: nn.Module) -> None:
        group = self.current
        if group is None:
            raise _unsupported(name, bn, "a BatchNorm on the model input has no channel to prune with")
        wants_conv = isinstance(bn, nn.BatchNorm2d)
        if wants_conv != (group.conv_output and not self.flattened) or bn.num_features != group.size:
            raise _unsupported(name, bn, f"does not normalise the {group.size} channels of "
                                         f"group {group.name!r}")
        group.norms.append(name)

    def block(self, name: str, block: BasicBlock) -> None:
        """A residual block: an inner group, and an addition that joins (or starts) a stage group."""
        for part in ("conv1", "conv2"):
            _check_layer(f"{name}.{part}", getattr(block, part))
        if self.current is None:
            raise _unsupported(name, block, "a residual block on the model input")
        stage = name.rpartition(".")[0] or name
        self.consume(f"{name}.conv1", block.conv1)
        self.close(self.start(_OpenGroup(f"{name}.conv1", block.conv1.out_channels, True,
                                        [f"{name}.conv1"], [f"{name}.bn1"], [Consumer(f"{name}.conv2")])))
        shortcut = dict(block.shortcut.named_children())
        if not shortcut:                           # identity: the sum keeps the input's channels
            group = self.current
            if block.conv2.out_channels != group.size:
                raise _unsupported(name, block, "identity shortcut with a channel count change")
            group.producers.append(f"{name}.conv2")
            group.norms.append(f"{name}.bn2")
            if not group.residual:
                group.name, group.residual = stage, True
            return
        if set(shortcut) != {"conv", "bn"}:
            raise _unsupported(f"{name}.shortcut", block.shortcut, "expected a shortcut of 'conv' + 'bn'")
        self.consume(f"{name}.shortcut.conv", block.shortcut.conv)
        self.close()
        self.current = self.start(_OpenGroup(stage, block.conv2.out_channels, True,
                                            [f"{name}.shortcut.conv", f"{name}.conv2"],
                                            [f"{name}.shortcut.bn", f"{name}.bn2"], residual=True))

    def sequential(self, prefix: str, seq: nn.Sequential) -> None:
        for child_name, module in seq.named_children():
            name = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self.layer(name, module)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                self.norm(name, module)
            elif isinstance(module, nn.Flatten):
                self.flattened = True
            elif isinstance(module, ELEMENTWISE_TYPES):
                continue
            elif isinstance(module, POOL_TYPES):
                if self.flattened:
                    raise _unsupported(name, module, "2-d pooling after nn.Flatten")
            elif isinstance(module, BasicBlock):
                self.block(name, module)
            elif _is_plain_sequential(module):
                self.sequential(name, module)
            else:
                raise _unsupported(name, module, "surgery cannot see how this module maps channels")


def dependency_groups(model: nn.Module) -> list[ChannelGroup]:
    """Every prunable channel group of ``model``, in forward order.

    The output layer's outputs are never a group (they are the classes). Group names are the
    producer's name for a plain chain, and the stage name (``"stage1"``) for channels joined by
    residual additions; ResNet-20's stem ``conv1`` belongs to group ``"stage1"``.

    Raises:
        TypeError: the model is not an ``nn.Sequential`` (its ``forward`` cannot be read).
        ValueError: a layer surgery cannot handle, named in the message.

    Example:
        >>> from prunekit.models import build_model
        >>> g = {g.name: g for g in dependency_groups(build_model("lenet5"))}
        >>> g["conv2"].consumers
        (Consumer(name='fc1', spatial=16),)
        >>> g = {g.name: g for g in dependency_groups(build_model("resnet20"))}
        >>> g["stage2"].producers
        ('stage2.0.shortcut.conv', 'stage2.0.conv2', 'stage2.1.conv2', 'stage2.2.conv2')
    """
    if not _is_plain_sequential(model):
        raise TypeError(f"dependency_groups reads the layer order of an nn.Sequential; got "
                        f"{type(model).__name__}, whose forward() it cannot see. Rewrite the model as "
                        "an nn.Sequential of named layers (see prunekit/models.py).")
    walk = _Walk()
    walk.sequential("", model)
    # The group still open at the end is the output layer's: its channels are the classes.
    return [group for _, group in sorted(walk.groups, key=lambda pair: pair[0])]
