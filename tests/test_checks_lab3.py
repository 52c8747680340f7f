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
                                  check_keep_indices, check_plan_for_mac_budget, check_prune_conv_bn_conv,
                                  check_prune_residual_group, check_sensitivity_scan,
                                  reference_channel_l2_importance, reference_conv_macs, reference_keep_indices,
                                  reference_plan_for_mac_budget, reference_prune_conv_bn_conv,
                                  reference_prune_residual_group, reference_sensitivity_scan)
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


def test_conv_macs_covers_every_sentence_of_its_contract():
    def no_dilation(conv, hw):                           # out = (in + 2p - k) // s + 1
        (h, w), (kh, kw) = hw, conv.kernel_size
        out_h = (h + 2 * conv.padding[0] - kh) // conv.stride[0] + 1
        out_w = (w + 2 * conv.padding[1] - kw) // conv.stride[1] + 1
        return out_h * out_w * conv.out_channels * conv.in_channels // conv.groups * kh * kw

    def square_only(conv, hw):                           # reads [0] of every pair
        h, k, s, p, d = hw[0], conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
        out = (h + 2 * p - d * (k - 1) - 1) // s + 1
        return out * out * conv.out_channels * conv.in_channels // conv.groups * k * k

    def square_stride_padding(conv, hw):                 # kernel and input as pairs, stride/padding/dilation not
        (h, w), (kh, kw), s, p, d = hw, conv.kernel_size, conv.stride[0], conv.padding[0], conv.dilation[0]
        out_h, out_w = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1
        return out_h * out_w * conv.out_channels * conv.in_channels // conv.groups * kh * kw

    rejected(check_conv_macs, no_dilation, "dilation")
    rejected(check_conv_macs, square_only, "pairs")
    rejected(check_conv_macs, square_stride_padding, "pairs")
    rejected(check_conv_macs, lambda conv, hw: torch.tensor(reference_conv_macs(conv, hw)), "int")
    rejected(check_conv_macs, lambda conv, hw: float(reference_conv_macs(conv, hw)), "int")
    rejected(check_conv_macs, lambda conv, hw: True, "int")


def test_prune_conv_bn_conv_needs_the_dilation():
    @torch.no_grad()
    def forgets_dilation(conv, bn, nxt, keep):
        new_conv, new_bn, new_next = reference_prune_conv_bn_conv(conv, bn, nxt, keep)
        plain = nn.Conv2d(new_conv.in_channels, new_conv.out_channels, new_conv.kernel_size, new_conv.stride,
                          new_conv.padding, bias=new_conv.bias is not None)
        plain.load_state_dict(new_conv.state_dict())
        return plain, new_bn, new_next
    rejected(check_prune_conv_bn_conv, forgets_dilation, "dilation")


# ----------------------------------------------------------------------------- sensitivity_scan
def _scan_with(cumulative=False, train_mode=False, importance="l2", transform=lambda acc, dense: acc,
               as_tensor=False):
    """A sensitivity scan with one deliberate mistake."""
    @torch.no_grad()
    def scan(model, amounts, images, labels):
        dense = (model.eval()(images).argmax(1) == labels).float().mean().item()
        current, out = model, {}
        for group in dependency_groups(model):
            accs = []
            for amount in amounts:
                pruned = prune_channels(current, {group.name: amount}, importance=importance)
                pruned.train(train_mode)
                acc = (pruned(images).argmax(1) == labels).float().mean()
                accs.append(acc if as_tensor else transform(acc.item(), dense))
            if cumulative:                               # keeps the last pruning for the next group
                current = pruned
            out[group.name] = accs
        return out
    return scan


def test_sensitivity_scan_rejects_wrong_answers():
    rejected(check_sensitivity_scan, _scan_with(cumulative=True), "ONE group")
    rejected(check_sensitivity_scan, _scan_with(train_mode=True), "eval mode")
    rejected(check_sensitivity_scan, _scan_with(importance="bn"), "L2")
    rejected(check_sensitivity_scan, _scan_with(transform=lambda acc, dense: 1 - acc), "error rates")
    rejected(check_sensitivity_scan, _scan_with(transform=lambda acc, dense: 100 * acc), "percentage")
    rejected(check_sensitivity_scan, _scan_with(transform=lambda acc, dense: dense - acc), "DROP")
    rejected(check_sensitivity_scan, _scan_with(as_tensor=True), "float")

    def runs_the_original_in_train_mode(model, amounts, images, labels):
        model(images)                                    # updates the BatchNorm statistics
        return reference_sensitivity_scan(model, amounts, images, labels)
    rejected(check_sensitivity_scan, runs_the_original_in_train_mode, "changed the model")

    def skips_the_last_group(model, amounts, images, labels):
        scan = reference_sensitivity_scan(model, amounts, images, labels)
        return dict(list(scan.items())[:-1])
    rejected(check_sensitivity_scan, skips_the_last_group, "groups")


def test_sensitivity_scan_accepts_a_learner_style_loop():
    def by_hand(model, amounts, images, labels):        # own keep_indices + shrink, a list comprehension
        out = {}
        for g in dependency_groups(model):
            scores = sum(reference_channel_l2_importance(model.get_submodule(p).weight) for p in g.producers)
            models = [shrink(model, {g.name: reference_keep_indices(scores, a)}).eval() for a in amounts]
            with torch.no_grad():
                out[g.name] = [float((m(images).argmax(-1) == labels).sum()) / len(labels) for m in models]
        return out
    assert check_sensitivity_scan(by_hand, strict=False)


# ----------------------------------------------------------------------------- plan_for_mac_budget
def _plan_with(order=sorted, pick=max, fits=lambda macs, budget: macs <= budget, raise_error=True, estimate=False):
    """plan_for_mac_budget with one deliberate mistake."""
    def plan_fn(model, amounts, scan, dense_accuracy, mac_budget, input_shape):
        dense_macs = count_macs(model, input_shape)["dense"]
        drops = {g: [dense_accuracy - a for a in accs] for g, accs in scan.items()}
        for t in order({d for ds in drops.values() for d in ds}):
            plan = {g: pick([a for a, d in zip(amounts, ds) if d <= t], default=0.0) for g, ds in drops.items()}
            if estimate:
                macs = dense_macs * (1 - sum(plan.values()) / len(plan)) ** 2
            else:
                macs = count_macs(prune_channels(model, plan), input_shape)["dense"]
            if fits(macs, mac_budget):
                return plan
        if raise_error:
            raise ValueError("no plan fits")
        return {g: max(amounts) for g in scan}
    return plan_fn


def test_plan_for_mac_budget_rejects_wrong_answers():
    rejected(check_plan_for_mac_budget, _plan_with(order=lambda ts: sorted(ts, reverse=True)), "smallest tolerance")
    rejected(check_plan_for_mac_budget, _plan_with(pick=min), "largest amount")
    rejected(check_plan_for_mac_budget, _plan_with(fits=lambda macs, budget: macs < budget), "equal is allowed")
    rejected(check_plan_for_mac_budget, _plan_with(estimate=True), "count the MACs")
    rejected(check_plan_for_mac_budget, _plan_with(raise_error=False), "ValueError")

    def only_pruned_groups(*args):
        return {g: a for g, a in reference_plan_for_mac_budget(*args).items() if a > 0}
    rejected(check_plan_for_mac_budget, only_pruned_groups, "every group")

    def threshold_on_accuracy(model, amounts, scan, dense_accuracy, mac_budget, input_shape):
        for t in sorted({a for accs in scan.values() for a in accs}):
            plan = {g: max([a for a, acc in zip(amounts, accs) if acc <= t], default=0.0) for g, accs in scan.items()}
            if count_macs(prune_channels(model, plan), input_shape)["dense"] <= mac_budget:
                return plan
        raise ValueError
    rejected(check_plan_for_mac_budget, threshold_on_accuracy, "DROP")


def test_plan_for_mac_budget_accepts_a_loop_over_sorted_drops():
    def learner(model, amounts, scan, dense_accuracy, mac_budget, input_shape):
        tolerances = sorted(set(dense_accuracy - acc for accs in scan.values() for acc in accs))
        for t in tolerances:
            plan = {}
            for g, accs in scan.items():
                ok = [a for a, acc in zip(amounts, accs) if dense_accuracy - acc <= t]
                plan[g] = ok[-1] if ok else 0.0          # amounts are ascending
            small = prune_channels(model, plan)
            if count_macs(small, input_shape)["dense"] <= mac_budget:
                return plan
        raise ValueError(f"nothing fits {mac_budget}")
    assert check_plan_for_mac_budget(learner, strict=False)


# ----------------------------------------------------------------------------- prune_residual_group
def _prune_group_with(score="sum", keep_lowest=False, skip_norms=False, fresh_stats=False, in_place=False,
                      skip_consumer=None, flat_columns=False):
    """A hand-written group surgery with one deliberate mistake."""
    @torch.no_grad()
    def fn(model, group, amount):
        g = {grp.name: grp for grp in dependency_groups(model)}[group]
        norms = [reference_channel_l2_importance(model.get_submodule(p).weight) for p in g.producers]
        scores = {"sum": lambda: sum(norms), "first": lambda: norms[0],
                  "max": lambda: torch.stack(norms).max(0).values}[score]()
        keep = reference_keep_indices(-scores if keep_lowest else scores, amount)
        new = model if in_place else copy.deepcopy(model)

        def put(name, module):
            parent, _, child = name.rpartition(".")
            setattr(new.get_submodule(parent) if parent else new, child, module)

        for name in g.producers:
            old = new.get_submodule(name)
            conv = nn.Conv2d(old.in_channels, len(keep), old.kernel_size, old.stride, old.padding,
                             bias=old.bias is not None)
            conv.weight.copy_(old.weight[keep])
            if old.bias is not None:
                conv.bias.copy_(old.bias[keep])
            put(name, conv)
        for name in () if skip_norms else g.norms:
            old = new.get_submodule(name)
            bn = nn.BatchNorm2d(len(keep), eps=old.eps, momentum=old.momentum)
            bn.weight.copy_(old.weight[keep])
            bn.bias.copy_(old.bias[keep])
            if not fresh_stats:
                bn.running_mean.copy_(old.running_mean[keep])
                bn.running_var.copy_(old.running_var[keep])
            put(name, bn.eval())
        for consumer in g.consumers:
            if skip_consumer and skip_consumer in consumer.name:
                continue
            old = new.get_submodule(consumer.name)
            if isinstance(old, nn.Linear):
                cols = keep if flat_columns else \
                    (keep[:, None] * consumer.spatial + torch.arange(consumer.spatial)).flatten()
                layer = nn.Linear(len(cols), old.out_features)
                layer.weight.copy_(old.weight[:, cols])
                layer.bias.copy_(old.bias)
            else:
                layer = nn.Conv2d(len(keep), old.out_channels, old.kernel_size, old.stride, old.padding,
                                  bias=old.bias is not None)
                layer.weight.copy_(old.weight[:, keep])
                if old.bias is not None:
                    layer.bias.copy_(old.bias)
            put(consumer.name, layer)
        return new.eval()
    return fn


def test_prune_residual_group_accepts_a_hand_written_surgery():
    assert check_prune_residual_group(_prune_group_with(), strict=False)


def test_prune_residual_group_rejects_wrong_answers():
    rejected(check_prune_residual_group, _prune_group_with(score="first"), "first producer")
    rejected(check_prune_residual_group, _prune_group_with(score="max"), "max")
    rejected(check_prune_residual_group, _prune_group_with(keep_lowest=True), "LOWEST")
    rejected(check_prune_residual_group, _prune_group_with(skip_norms=True), "BatchNorm")
    rejected(check_prune_residual_group, _prune_group_with(fresh_stats=True), "running")
    rejected(check_prune_residual_group, _prune_group_with(in_place=True), "changed the input model")
    rejected(check_prune_residual_group, _prune_group_with(skip_consumer="shortcut"), "INPUT channels")
    rejected(check_prune_residual_group, _prune_group_with(flat_columns=True), "fc1")
    rejected(check_prune_residual_group, lambda model, group, amount: model, "input model itself")


def test_reference_prune_residual_group_matches_prune_channels_on_resnet20():
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    for name in ("stage1", "stage2", "stage3", "stage2.1.conv1"):
        ours, theirs = reference_prune_residual_group(model, name, 0.25), prune_channels(model, {name: 0.25})
        for (n1, p1), (n2, p2) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            assert n1 == n2 and torch.equal(p1, p2), (name, n1)
