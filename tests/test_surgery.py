"""Surgery must compute exactly what the masked model computes, on every zoo architecture."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from prunekit.models import build_model
from prunekit.pruning import apply_masks, get_masks
from prunekit.surgery import (ChannelGroup, Consumer, channel_masks_as_zeros, channels_to_keep,
                              dependency_groups, prune_channels, prune_conv_bn_conv, remove_neurons, shrink)
from prunekit.zoo import checkpoint_path, load_pretrained

TOL = 1e-5
INPUTS = {"lenet300": (1, 28, 28), "lenet5": (1, 28, 28), "vgg": (3, 32, 32), "resnet20": (3, 32, 32)}


def random_model(name: str, seed: int = 0) -> nn.Module:
    """A random model in eval mode whose BatchNorms are not the identity (random γ, β, μ, σ²)."""
    torch.manual_seed(seed)
    model = build_model(name)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.empty(c).uniform_(0.5, 1.5) * torch.randn(c).sign()
            m.bias.data = torch.randn(c) * 0.5
            m.running_mean = torch.randn(c) * 0.5
            m.running_var = torch.empty(c).uniform_(0.5, 2.0)
    return model.eval()


def batch(name: str, n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *INPUTS[name], generator=torch.Generator().manual_seed(seed))


def random_keep(size: int, n_keep: int, seed: int) -> torch.Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n_keep]


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_equivalent(model: nn.Module, keep: dict, name: str) -> nn.Module:
    """shrink(model, keep) == masked model; and the removal really changed the function."""
    small, masked, x = shrink(model, keep), channel_masks_as_zeros(model, keep), batch(name)
    assert max_diff(small, masked, x) <= TOL
    assert max_diff(model, masked, x) > 1e-3, "removing channels should change the output"
    return small


# ----------------------------------------------------------------------------- dependency groups
def test_groups_of_plain_chains():
    assert [(g.name, g.size) for g in dependency_groups(build_model("lenet300"))] == [("fc1", 300), ("fc2", 100)]
    lenet5 = {g.name: g for g in dependency_groups(build_model("lenet5"))}
    assert lenet5["conv2"] == ChannelGroup("conv2", 50, ("conv2",), (), (Consumer("fc1", 16),))
    vgg = {g.name: g for g in dependency_groups(build_model("vgg"))}
    assert list(vgg) == [f"conv{i}" for i in range(1, 9)]
    assert vgg["conv3"].norms == ("bn3",) and vgg["conv8"].consumers == (Consumer("fc", 1),)


def test_groups_of_resnet20_join_residual_additions():
    groups = {g.name: g for g in dependency_groups(build_model("resnet20"))}
    assert len(groups) == 3 + 9                    # 3 stage groups + one inner group per block
    stage1 = groups["stage1"]
    assert stage1.size == 16
    assert stage1.producers == ("conv1", "stage1.0.conv2", "stage1.1.conv2", "stage1.2.conv2")
    assert stage1.norms == ("bn1", "stage1.0.bn2", "stage1.1.bn2", "stage1.2.bn2")
    assert {c.name for c in stage1.consumers} == {"stage1.0.conv1", "stage1.1.conv1", "stage1.2.conv1",
                                                  "stage2.0.conv1", "stage2.0.shortcut.conv"}
    stage3 = groups["stage3"]
    assert stage3.producers[0] == "stage3.0.shortcut.conv" and "stage3.0.shortcut.bn" in stage3.norms
    assert Consumer("fc", 1) in stage3.consumers and Consumer("stage3.0.conv1") not in stage3.consumers
    assert groups["stage2.1.conv1"].consumers == (Consumer("stage2.1.conv2"),)


class Doubler(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.mark.parametrize("layers, bad", [
    ([("conv", nn.Conv2d(3, 8, 3)), ("mystery", Doubler()), ("conv2", nn.Conv2d(8, 8, 3))], "mystery"),
    ([("conv", nn.Conv2d(3, 8, 3)), ("dw", nn.Conv2d(8, 8, 3, groups=8))], "dw"),
    ([("conv", nn.Conv2d(3, 8, 3)), ("fc", nn.Linear(8, 2))], "fc"),            # no Flatten
    ([("conv", nn.Conv2d(3, 8, 3)), ("flatten", nn.Flatten()), ("fc", nn.Linear(30, 2))], "fc"),
    ([("fc1", nn.Linear(4, 8)), ("act", nn.Sigmoid()), ("fc2", nn.Linear(8, 2))], "act"),  # sigmoid(0) != 0
])
def test_unsupported_layers_are_named(layers, bad):
    model = nn.Sequential(OrderedDict(layers))
    with pytest.raises(ValueError, match=repr(bad)):
        dependency_groups(model)
    with pytest.raises(ValueError, match=repr(bad)):
        prune_channels(model, 0.5)


def test_model_with_its_own_forward_is_rejected():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            return self.fc2(self.fc1(x))

    with pytest.raises(TypeError, match="nn.Sequential"):
        dependency_groups(Net())


# ----------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("layer, size", [("fc1", 300), ("fc2", 100)])
def test_remove_neurons_lenet300_matches_masked_model(layer, size):
    model = random_model("lenet300")
    keep = random_keep(size, size // 3, seed=size)
    nxt = {"fc1": "fc2", "fc2": "fc3"}[layer]
    small = copy.deepcopy(model)
    new_in, new_out = remove_neurons(getattr(model, layer), getattr(model, nxt), keep)
    setattr(small, layer, new_in)
    setattr(small, nxt, new_out)
    assert new_in.out_features == new_out.in_features == size // 3
    kept = keep.sort().values
    assert torch.equal(new_in.bias, getattr(model, layer).bias[kept])
    assert torch.equal(new_out.weight, getattr(model, nxt).weight[:, kept])
    masked = channel_masks_as_zeros(model, {layer: keep})
    assert max_diff(small, masked, batch("lenet300")) <= TOL
    assert max_diff(small, shrink(model, {layer: keep}), batch("lenet300")) == 0.0


def test_zeroing_weights_but_not_biases_is_not_removal():
    """The ln_structured pitfall: a zeroed row whose bias survives still feeds the next layer."""
    model = random_model("lenet300")
    keep = torch.arange(0, 300, 2)
    weights_only = copy.deepcopy(model)
    with torch.no_grad():
        weights_only.fc1.weight[1::2] = 0
    small = shrink(model, {"fc1": keep})
    assert max_diff(small, weights_only, batch("lenet300")) > 1e-3
    assert max_diff(small, channel_masks_as_zeros(model, {"fc1": keep}), batch("lenet300")) <= TOL


def test_remove_neurons_without_bias_keeps_dtype_and_sorts_keep():
    torch.manual_seed(0)
    fc_in, fc_out = nn.Linear(5, 4, bias=False).double(), nn.Linear(4, 3).double()
    a, b = remove_neurons(fc_in, fc_out, torch.tensor([3, 0]))
    assert a.bias is None and a.weight.dtype == b.weight.dtype == torch.float64
    assert torch.equal(a.weight, fc_in.weight[[0, 3]]) and torch.equal(b.weight, fc_out.weight[:, [0, 3]])
    with pytest.raises(ValueError, match="repeated"):
        remove_neurons(fc_in, fc_out, [1, 1])
    with pytest.raises(ValueError, match="at least one"):
        remove_neurons(fc_in, fc_out, [])
    with pytest.raises(ValueError, match="at least one"):
        remove_neurons(fc_in, fc_out, torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        remove_neurons(fc_in, fc_out, [4])


def test_lenet5_flatten_boundary_removes_16_columns_per_channel():
    model = random_model("lenet5")
    keep = random_keep(50, 20, seed=3)
    conv, bn, fc = prune_conv_bn_conv(model.conv2, None, model.fc1, keep, spatial=16)
    kept = keep.sort().values
    columns = (kept[:, None] * 16 + torch.arange(16)).flatten()
    assert bn is None and conv.out_channels == 20 and fc.in_features == 20 * 16
    assert torch.equal(fc.weight, model.fc1.weight[:, columns])
    assert torch.equal(conv.weight, model.conv2.weight[kept]) and torch.equal(conv.bias, model.conv2.bias[kept])
    with pytest.raises(ValueError, match="spatial"):
        prune_conv_bn_conv(model.conv2, None, model.fc1, keep)           # forgot spatial=16
    check_equivalent(model, {"conv2": keep, "conv1": random_keep(20, 7, seed=4)}, "lenet5")


def test_prune_conv_bn_conv_copies_batchnorm():
    model = random_model("vgg")
    model.bn1.eps, model.bn1.momentum = 1e-3, 0.3
    conv, bn, nxt = prune_conv_bn_conv(model.conv1, model.bn1, model.conv2, [5, 1, 30])
    for stat in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(bn, stat), getattr(model.bn1, stat)[[1, 5, 30]])
    assert (bn.eps, bn.momentum, bn.affine, bn.training) == (1e-3, 0.3, True, False)
    assert nxt.weight.shape == (32, 3, 3, 3) and conv.bias is None and conv.padding == (1, 1)


# ----------------------------------------------------------------------------- whole models
def test_vgg_half_channels_matches_masked_model():
    model = random_model("vgg")
    keep = channels_to_keep(model, 0.5)
    assert {n: len(k) for n, k in keep.items()} == {f"conv{i}": c // 2 for i, c in
                                                    enumerate((32, 32, 64, 64, 128, 128, 256, 256), 1)}
    small = check_equivalent(model, keep, "vgg")
    assert torch.equal(small.conv1.weight, model.conv1.weight[keep["conv1"]])
    assert max_diff(small, prune_channels(model, 0.5), batch("vgg")) == 0.0


def test_vgg_parameter_count_after_halving_every_conv():
    widths = (16, 16, 32, 32, 64, 64, 128, 128)          # half of 32-32-64-64-128-128-256-256
    convs = sum(c_in * c_out * 3 * 3 for c_in, c_out in zip((3,) + widths[:-1], widths))   # no conv bias
    norms = sum(2 * c for c in widths)                    # γ and β
    fc = 128 * 10 + 10
    assert n_params(prune_channels(build_model("vgg"), 0.5)) == convs + norms + fc == 295_290


def test_resnet20_inner_and_stage_groups_match_masked_model():
    model = random_model("resnet20")
    groups = dependency_groups(model)
    keep = {g.name: random_keep(g.size, g.size // 2 + 1, seed=i) for i, g in enumerate(groups)}
    small = check_equivalent(model, keep, "resnet20")
    assert small.conv1.out_channels == small.stage1[2].conv2.out_channels == 9
    assert small.stage2[0].shortcut.conv.in_channels == 9 and small.stage2[0].shortcut.bn.num_features == 17
    assert small.fc.in_features == 33 and small.stage3[1].conv1.out_channels == 33
    assert n_params(small) < n_params(model) / 3


@pytest.mark.parametrize("importance", ["l1", "l2", "bn"])
def test_resnet20_prune_channels_each_importance(importance):
    model = random_model("resnet20")
    keep = channels_to_keep(model, 0.25, importance=importance, exclude=["stage3"])
    assert "stage3" not in keep and len(keep["stage2"]) == 24
    check_equivalent(model, keep, "resnet20")


def test_importance_removes_the_smallest_channels():
    model = random_model("vgg")
    with torch.no_grad():
        model.conv8.weight[[3, 7]] *= 1e-3              # two tiny filters
        model.bn8.weight[[10, 11]] = 1e-4               # two tiny γ
    removed = lambda keep: sorted(set(range(256)) - set(keep["conv8"].tolist()))
    assert removed(channels_to_keep(model, {"conv8": 2 / 256}, "l2")) == [3, 7]
    assert removed(channels_to_keep(model, {"conv8": 2 / 256}, "l1")) == [3, 7]
    assert removed(channels_to_keep(model, {"conv8": 2 / 256}, "bn")) == [10, 11]


def test_input_model_is_not_mutated():
    model = random_model("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules = dict(model.named_modules())
    small = prune_channels(model, 0.5)
    channel_masks_as_zeros(model, channels_to_keep(model, 0.5))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert dict(model.named_modules()) == modules and not get_masks(model)
    assert small.stage1[0].conv1 is not model.stage1[0].conv1


def test_every_group_keeps_at_least_one_channel():
    for name in ("lenet300", "vgg", "resnet20"):
        model = random_model(name)
        small = prune_channels(model, 1.0)
        assert all(len(k) == 1 for k in channels_to_keep(model, 1.0).values())
        assert small(batch(name)).shape == (4, 10)


@pytest.mark.parametrize("amount", [1.3, -0.1, {"conv1": 1.3}])
def test_bad_amount_raises(amount):
    with pytest.raises(ValueError, match="amount"):
        prune_channels(build_model("vgg"), amount)


def test_bad_group_and_importance_names_raise():
    with pytest.raises(ValueError, match="conv9"):
        shrink(build_model("vgg"), {"conv9": [0]})
    with pytest.raises(ValueError, match="fc"):           # the output layer is not a group
        prune_channels(build_model("vgg"), 0.5, exclude=["fc"])
    with pytest.raises(ValueError, match="importance"):
        prune_channels(build_model("vgg"), 0.5, importance="taylor")
    with pytest.raises(ValueError, match="'bn'"):
        prune_channels(build_model("lenet300"), 0.5, importance="bn")


def test_prunekit_masks_are_carried_over():
    model = random_model("lenet300")
    apply_masks(model, {"fc2.weight": torch.rand(100, 300) > 0.5})
    keep = torch.arange(0, 300, 2)
    small = shrink(model, {"fc1": keep})
    assert torch.equal(get_masks(small)["fc2.weight"], get_masks(model)["fc2.weight"][:, keep])
    with torch.no_grad():
        small.fc2.weight.fill_(1.0)                      # e.g. an optimizer step
    small(batch("lenet300"))                             # the forward pre-hook re-applies the mask
    assert torch.equal(small.fc2.weight != 0, get_masks(small)["fc2.weight"])


def test_masked_model_keeps_its_zeros():
    model = random_model("vgg")
    masked = channel_masks_as_zeros(model, {"conv2": [0, 1]})
    assert masked.conv2.weight[2:].abs().sum() == 0 and masked.bn2.bias[2:].abs().sum() == 0
    assert set(get_masks(masked)) == {"conv2.weight", "bn2.weight", "bn2.bias"}


# ----------------------------------------------------------------------------- trained checkpoints
@pytest.mark.parametrize("name", ["lenet300", "lenet5", "vgg", "resnet20"])
def test_trained_checkpoint_surgery_matches_masked_model(name):
    if not checkpoint_path(name).exists():
        pytest.skip(f"{checkpoint_path(name)} not shipped yet (train it: python -m prunekit.zoo train {name})")
    model = load_pretrained(name)
    keep = channels_to_keep(model, 0.5)
    small, masked, x = shrink(model, keep), channel_masks_as_zeros(model, keep), batch(name, n=8)
    assert max_diff(small, masked, x) <= TOL
