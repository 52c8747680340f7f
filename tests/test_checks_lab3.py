"""Lab 3's checks accept the references and reject typical wrong answers, with a useful hint.
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from checks_helpers import rejected
from prunekit.checks.lab3 import (check_bn_gamma_importance, check_channel_l2_importance, check_conv_macs,
                                  check_keep_indices, check_prune_conv_bn_conv, check_residual_group_importance,
                                  reference_channel_l2_importance,
                                  reference_conv_macs, reference_keep_indices, reference_prune_conv_bn_conv,
                                  reference_residual_group_importance)
from prunekit.measure import count_macs
from prunekit.models import build_model
from prunekit.surgery import channel_masks_as_zeros, dependency_groups, prune_channels, prune_conv_bn_conv, shrink


# ----------------------------------------------------------------------------- channel_l2_importance
def test_channel_l2_rejects_wrong_answers():
    rejected(check_channel_l2_importance, lambda w: w.flatten(1).abs().sum(1), "L1")
    rejected(check_channel_l2_importance, lambda w: w.pow(2).sum(dim=(1, 2, 3)), "square root")
    rejected(check_channel_l2_importance, lambda w: w.pow(2).sum(dim=(0, 2, 3)).sqrt(), "dim 0")
    rejected(check_channel_l2_importance, lambda w: w.norm(dim=0), "dim 0")
    rejected(check_channel_l2_importance, lambda w: w.flatten(1).sum(1), "cancel")
    rejected(check_channel_l2_importance, lambda w: w.flatten(1).pow(2).mean(1).sqrt(), "mean")
    rejected(check_channel_l2_importance, lambda w: w.norm(), "shape")


def test_channel_l2_rejects_in_place_changes():
    def normalises_in_place(w):
        scores = w.detach().flatten(1).norm(dim=1)
        w.data.div_(2)
        return scores
    rejected(check_channel_l2_importance, normalises_in_place, "in place")


def test_channel_l2_accepts_equivalent_forms():
    assert check_channel_l2_importance(lambda w: w.pow(2).sum(dim=(1, 2, 3)).sqrt(), strict=False)
    assert check_channel_l2_importance(lambda w: torch.linalg.vector_norm(w, dim=(1, 2, 3)), strict=False)


# ----------------------------------------------------------------------------- bn_gamma_importance
def test_bn_gamma_rejects_wrong_answers():
    rejected(check_bn_gamma_importance, lambda bn: bn.weight.detach(), "absolute")
    rejected(check_bn_gamma_importance, lambda bn: bn.bias.detach().abs(), "β")
    rejected(check_bn_gamma_importance, lambda bn: bn.weight.detach() ** 2, "γ²")
    rejected(check_bn_gamma_importance, lambda bn: bn.running_var.clone(), "running")
    rejected(check_bn_gamma_importance, lambda bn: bn.weight.abs().sum(), "shape")

    def in_place(bn):
        with torch.no_grad():
            return bn.weight.abs_()
    rejected(check_bn_gamma_importance, in_place, "changed")


def test_bn_gamma_accepts_a_tensor_with_grad():
    assert check_bn_gamma_importance(lambda bn: bn.weight.abs(), strict=False)


# ----------------------------------------------------------------------------- keep_indices
def test_keep_indices_rejects_wrong_answers():
    def keeps_lowest(scores, amount):
        n = scores.numel()
        return torch.sort(scores).indices[: n - min(round(amount * n), n - 1)].sort().values

    def returns_removed(scores, amount):
        n = scores.numel()
        return torch.sort(scores).indices[: min(round(amount * n), n - 1)].sort().values

    def truncates(scores, amount):
        n = scores.numel()
        return torch.sort(scores).indices[min(int(amount * n), n - 1):].sort().values

    def can_remove_all(scores, amount):
        return torch.sort(scores).indices[round(amount * scores.numel()):].sort().values

    def unsorted(scores, amount):
        n = scores.numel()
        return torch.sort(scores, descending=True).indices[: n - min(round(amount * n), n - 1)]

    def mask(scores, amount):
        keep = torch.zeros(scores.numel(), dtype=torch.bool)
        keep[reference_keep_indices(scores, amount)] = True
        return keep

    rejected(check_keep_indices, keeps_lowest, "LOWEST")
    rejected(check_keep_indices, returns_removed, "REMOVE")
    rejected(check_keep_indices, truncates, "int(amount * n)")
    rejected(check_keep_indices, can_remove_all, "at least one")
    rejected(check_keep_indices, unsorted, "sorted")
    rejected(check_keep_indices, mask, "nonzero")
    rejected(check_keep_indices, lambda s, a: reference_keep_indices(s, a).float(), "integer")


def test_keep_indices_accepts_other_tie_breaks():
    def descending_ties(scores, amount):
        n = scores.numel()
        order = torch.sort(scores, descending=True, stable=True).indices
        return order[: n - min(round(amount * n), n - 1)].sort().values
    assert check_keep_indices(descending_ties, strict=False)


# ----------------------------------------------------------------------------- prune_conv_bn_conv
def _fresh_bn(bn, keep, copy_stats=True, copy_affine=True):
    new = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum)
    with torch.no_grad():
        if copy_affine:
            new.weight.copy_(bn.weight[keep])
            new.bias.copy_(bn.bias[keep])
        if copy_stats:
            new.running_mean.copy_(bn.running_mean[keep])
            new.running_var.copy_(bn.running_var[keep])
    return new.train(bn.training)


def _variant(forget_stats=False, forget_bias=False, slice_next_outputs=False, keep_is_drop=False,
             forget_affine=False, in_place=False, detached=False, keep_attrs=False, forget_next_bias=False):
    """The reference with one deliberate mistake."""
    @torch.no_grad()
    def fn(conv, bn, next_conv, keep):
        if keep_is_drop:
            keep = torch.tensor([i for i in range(conv.out_channels) if i not in set(keep.tolist())])
        if in_place:
            conv.weight = nn.Parameter(conv.weight[keep])
            if conv.bias is not None:
                conv.bias = nn.Parameter(conv.bias[keep])
            conv.out_channels = len(keep)
            new_conv = conv
        else:
            new_conv = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, conv.stride, conv.padding,
                                 bias=conv.bias is not None and not forget_bias)
            new_conv.weight.copy_(conv.weight[keep])
            if new_conv.bias is not None:
                new_conv.bias.copy_(conv.bias[keep])
        new_bn = _fresh_bn(bn, keep, copy_stats=not forget_stats, copy_affine=not forget_affine)
        if slice_next_outputs:
            w = next_conv.weight[keep]
            new_next = nn.Conv2d(w.shape[1], w.shape[0], next_conv.kernel_size, next_conv.stride, next_conv.padding)
            new_next.weight.copy_(w)
        else:
            n_in = next_conv.in_channels if keep_attrs else len(keep)
            new_next = nn.Conv2d(n_in, next_conv.out_channels, next_conv.kernel_size, next_conv.stride,
                                 next_conv.padding, bias=next_conv.bias is not None)
            if keep_attrs:
                new_next.weight = nn.Parameter(next_conv.weight[:, keep].clone())
            else:
                new_next.weight.copy_(next_conv.weight[:, keep])
            if new_next.bias is not None:
                if forget_next_bias:
                    new_next.bias.zero_()
                else:
                    new_next.bias.copy_(next_conv.bias)
        if detached:
            new_conv.weight = nn.Parameter(conv.weight[keep].clone(), requires_grad=False)
        return new_conv, new_bn, new_next
    return fn


def test_prune_conv_bn_conv_rejects_wrong_answers():
    rejected(check_prune_conv_bn_conv, _variant(forget_stats=True), "running")
    rejected(check_prune_conv_bn_conv, _variant(forget_bias=True), "bias")
    rejected(check_prune_conv_bn_conv, _variant(slice_next_outputs=True), "INPUT channels")
    rejected(check_prune_conv_bn_conv, _variant(keep_is_drop=True), "KEEP")
    rejected(check_prune_conv_bn_conv, _variant(forget_affine=True), "γ")
    rejected(check_prune_conv_bn_conv, _variant(in_place=True), "changed the input")
    rejected(check_prune_conv_bn_conv, _variant(detached=True), "grad")
    rejected(check_prune_conv_bn_conv, _variant(keep_attrs=True), "in_channels")
    rejected(check_prune_conv_bn_conv, _variant(forget_next_bias=True), "whole bias")
    rejected(check_prune_conv_bn_conv, lambda conv, bn, nxt, keep: (conv, bn, nxt), "new")
    rejected(check_prune_conv_bn_conv, lambda conv, bn, nxt, keep: [copy.deepcopy(conv)], "tuple")


def test_prune_conv_bn_conv_accepts_the_library_and_a_bool_free_variant():
    assert check_prune_conv_bn_conv(prune_conv_bn_conv, strict=False)

    def via_list(conv, bn, nxt, keep):
        return reference_prune_conv_bn_conv(conv, bn, nxt, keep.tolist())
    assert check_prune_conv_bn_conv(via_list, strict=False)


def test_reference_surgery_matches_the_library_on_the_vgg():
    torch.manual_seed(0)
    vgg = build_model("vgg").eval()
    for bn in (m for m in vgg.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_(0, 0.3)
        bn.running_mean.normal_(0, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    keep = torch.tensor([0, 3, 5, 9, 17, 30, 31, 44, 63])
    small = copy.deepcopy(vgg)
    small.conv3, small.bn3, small.conv4 = reference_prune_conv_bn_conv(vgg.conv3, vgg.bn3, vgg.conv4, keep)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(small(x), shrink(vgg, {"conv3": keep})(x), atol=1e-5)
        assert torch.allclose(small(x), channel_masks_as_zeros(vgg, {"conv3": keep})(x), atol=1e-5)


# ----------------------------------------------------------------------------- conv_macs
def test_conv_macs_rejects_wrong_answers():
    def input_size(conv, hw):
        return hw[0] * hw[1] * conv.out_channels * conv.in_channels // conv.groups * conv.kernel_size[0] * \
            conv.kernel_size[1]

    def no_groups(conv, hw):
        return reference_conv_macs(conv, hw) * conv.groups

    def no_kernel(conv, hw):
        return reference_conv_macs(conv, hw) // (conv.kernel_size[0] * conv.kernel_size[1])

    rejected(check_conv_macs, input_size, "INPUT size")
    rejected(check_conv_macs, no_groups, "groups")
    rejected(check_conv_macs, no_kernel, "kh · kw")
    rejected(check_conv_macs, lambda conv, hw: conv.weight.numel(), "number of weights")
    rejected(check_conv_macs, lambda conv, hw: float(reference_conv_macs(conv, hw)) + 0.5, "whole number")


def test_conv_macs_accepts_running_the_layer():
    def by_running(conv, hw):
        with torch.no_grad():
            out = conv(torch.zeros(1, conv.in_channels, *hw))
        kh, kw = conv.kernel_size
        return out.shape[2] * out.shape[3] * conv.out_channels * conv.in_channels // conv.groups * kh * kw
    assert check_conv_macs(by_running, strict=False)


@pytest.mark.parametrize("name", ["vgg", "resnet20"])
def test_reference_conv_macs_adds_up_to_count_macs(name):
    model = build_model(name)
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, tuple(i[0].shape[-2:])))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    model.eval()(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    convs = dict(model.named_modules())
    total = sum(reference_conv_macs(convs[n], hw) for n, hw in sizes.items()) + model.fc.weight.numel()
    assert total == count_macs(model, (3, 32, 32))["dense"]


# ----------------------------------------------------------------------------- residual_group_importance
def test_residual_group_importance_rejects_wrong_answers():
    norm = reference_channel_l2_importance
    rejected(check_residual_group_importance, lambda ws: norm(ws[0]), "first member")
    rejected(check_residual_group_importance, lambda ws: norm(ws[-1]), "last member")
    rejected(check_residual_group_importance,
             lambda ws: torch.cat([w.flatten(1) for w in ws], dim=1).norm(dim=1), "one L2 norm")
    rejected(check_residual_group_importance, lambda ws: torch.stack([norm(w) for w in ws]).mean(0), "mean")
    rejected(check_residual_group_importance, lambda ws: torch.stack([norm(w) for w in ws]).max(0).values, "max")
    rejected(check_residual_group_importance, lambda ws: sum(norm(w) ** 2 for w in ws), "squared")


def test_residual_group_importance_matches_prune_channels_on_resnet20():
    torch.manual_seed(0)
    model = build_model("resnet20")
    groups = {g.name: g for g in dependency_groups(model)}
    keep = {}
    for name in ("stage1", "stage2", "stage3"):
        weights = [model.get_submodule(p).weight for p in groups[name].producers]
        keep[name] = reference_keep_indices(reference_residual_group_importance(weights), 0.25)
    ours = shrink(model, keep)
    theirs = prune_channels(model, {"stage1": 0.25, "stage2": 0.25, "stage3": 0.25})
    for (n1, p1), (n2, p2) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2), n1
