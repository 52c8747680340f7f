"""Lab 2's checks reject known-wrong implementations with a useful hint.
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
import copy

import torch
from torch import nn

from checks_helpers import rejected
from prunekit.checks import lab2
from prunekit.surgery import remove_neurons as library_remove_neurons


# ----------------------------------------------------------------------------- apoz_scores
def test_apoz_wrong_implementations():
    rejected(lab2.check_apoz_scores, lambda a: (a != 0).float().mean(0), "non-zero")
    rejected(lab2.check_apoz_scores, lambda a: (a <= 0).float().mean(0), "negative")
    rejected(lab2.check_apoz_scores, lambda a: (a < 0).float().mean(0), "negative")
    rejected(lab2.check_apoz_scores, lambda a: (a == 0).float().mean(1), "dim")
    rejected(lab2.check_apoz_scores, lambda a: (a == 0).sum(0), "fraction")
    rejected(lab2.check_apoz_scores, lambda a: (a == 0).float().sum(0), "divide by n")
    rejected(lab2.check_apoz_scores, lambda a: (a.abs() < 1e-3).float().mean(0), "exact zeros")
    rejected(lab2.check_apoz_scores, lambda a: (a == 0).float().mean(), "shape")


def test_apoz_accepts_float64_results_and_library():
    from prunekit.channel_criteria import apoz
    assert lab2.check_apoz_scores(apoz, strict=False)
    assert lab2.check_apoz_scores(lambda a: (a == 0).double().mean(0), strict=False)


def test_apoz_must_not_modify_input():
    def relu_in_place(a):
        a.clamp_(min=0)
        return (a == 0).float().mean(0)
    rejected(lab2.check_apoz_scores, relu_in_place, "in place")


# ----------------------------------------------------------------------------- neuron_l2_scores
def test_neuron_l2_wrong_implementations():
    rejected(lab2.check_neuron_l2_scores, lambda w: w.abs().sum(1), "l1")
    rejected(lab2.check_neuron_l2_scores, lambda w: (w ** 2).sum(1), "square root")
    rejected(lab2.check_neuron_l2_scores, lambda w: w.norm(dim=0), "column")
    rejected(lab2.check_neuron_l2_scores, lambda w: w.sum(1), "signed")
    rejected(lab2.check_neuron_l2_scores, lambda w: w.norm(dim=1).long(), "int")


def test_neuron_l2_accepts_library():
    from prunekit.channel_criteria import neuron_norm
    assert lab2.check_neuron_l2_scores(neuron_norm, strict=False)


# ----------------------------------------------------------------------------- remove_neurons
def _fresh(fc_in, fc_out, keep):
    keep = torch.as_tensor(keep, dtype=torch.long)
    return fc_in, fc_out, keep


@torch.no_grad()
def _build(fc_in, fc_out, w_in, b_in, w_out, b_out):
    new_in = nn.Linear(w_in.shape[1], w_in.shape[0], bias=b_in is not None, dtype=fc_in.weight.dtype)
    new_out = nn.Linear(w_out.shape[1], w_out.shape[0], bias=b_out is not None, dtype=fc_out.weight.dtype)
    new_in.weight.copy_(w_in)
    new_out.weight.copy_(w_out)
    if b_in is not None:
        new_in.bias.copy_(b_in)
    if b_out is not None:
        new_out.bias.copy_(b_out)
    return new_in, new_out


def _bias(layer, index=None):
    if layer.bias is None:
        return None
    return layer.bias if index is None else layer.bias[index]


def test_remove_neurons_wrong_dimension_of_fc_out():
    def wrong(fc_in, fc_out, keep):   # copies of the layers with replaced parameters: rows of fc_out cut
        keep = torch.as_tensor(keep)
        new_in, new_out = copy.deepcopy(fc_in), copy.deepcopy(fc_out)
        new_in.weight = nn.Parameter(fc_in.weight[keep].detach().clone())
        if fc_in.bias is not None:
            new_in.bias = nn.Parameter(fc_in.bias[keep].detach().clone())
        new_out.weight = nn.Parameter(fc_out.weight[keep].detach().clone())
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "columns")

    def stale_features(fc_in, fc_out, keep):   # right tensors, but in/out_features still the old ones
        keep = torch.as_tensor(keep)
        new_in, new_out = copy.deepcopy(fc_in), copy.deepcopy(fc_out)
        new_in.weight = nn.Parameter(fc_in.weight[keep].detach().clone())
        if fc_in.bias is not None:
            new_in.bias = nn.Parameter(fc_in.bias[keep].detach().clone())
        new_out.weight = nn.Parameter(fc_out.weight[:, keep].detach().clone())
        return new_in, new_out
    rejected(lab2.check_remove_neurons, stale_features, "features")


def test_remove_neurons_fc_out_not_cut():
    def wrong(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        return _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight, _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "not cut")


def test_remove_neurons_forgets_fc_in_bias():
    def wrong(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        new_in, new_out = _build(fc_in, fc_out, fc_in.weight[keep], None, fc_out.weight[:, keep], _bias(fc_out))
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "bias")


def test_remove_neurons_keeps_default_bias_of_fc_in():
    def wrong(fc_in, fc_out, keep):   # a fresh layer's random bias instead of b_in[keep]
        keep = torch.as_tensor(keep)
        new_in = nn.Linear(fc_in.in_features, len(keep))
        new_out = nn.Linear(len(keep), fc_out.out_features)
        with torch.no_grad():
            new_in.weight.copy_(fc_in.weight[keep])
            new_out.weight.copy_(fc_out.weight[:, keep])
            new_out.bias.copy_(fc_out.bias)
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "bias")


def test_remove_neurons_cuts_fc_out_bias():
    def wrong(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        new_in, new_out = _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight[:, keep],
                                 _bias(fc_out))
        if fc_out.bias is not None:
            new_out.bias = nn.Parameter(fc_out.bias[keep].detach().clone())
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "outputs, which do not change")


def test_remove_neurons_drops_instead_of_keeps():
    def wrong(fc_in, fc_out, keep):
        drop = torch.as_tensor(keep)
        keep = torch.tensor([j for j in range(fc_in.out_features) if j not in drop.tolist()], dtype=torch.long)
        return _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight[:, keep], _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "not listed in keep")


def test_remove_neurons_modifies_the_inputs():
    def wrong(fc_in, fc_out, keep):   # "surgery" on the given layers
        keep = torch.as_tensor(keep)
        with torch.no_grad():
            fc_in.weight = nn.Parameter(fc_in.weight[keep].clone())
            if fc_in.bias is not None:
                fc_in.bias = nn.Parameter(fc_in.bias[keep].clone())
            fc_out.weight = nn.Parameter(fc_out.weight[:, keep].clone())
        fc_in.out_features = fc_out.in_features = len(keep)
        return fc_in, fc_out
    rejected(lab2.check_remove_neurons, wrong, "modified")


def test_remove_neurons_shares_memory():
    def wrong(fc_in, fc_out, keep):   # new modules, but the SAME parameter tensors when keep is everything
        keep = torch.as_tensor(keep)
        new_in, new_out = copy.copy(fc_in), copy.copy(fc_out)
        new_in._parameters = dict(fc_in._parameters)
        new_out._parameters = dict(fc_out._parameters)
        if len(keep) < fc_in.out_features:
            return reference_pair(fc_in, fc_out, keep)
        return new_in, new_out
    reference_pair = lab2.reference_remove_neurons
    rejected(lab2.check_remove_neurons, wrong, "share memory")


def test_remove_neurons_first_k_rows():
    def wrong(fc_in, fc_out, keep):
        k = len(keep)
        return _build(fc_in, fc_out, fc_in.weight[:k], _bias(fc_in, slice(0, k)), fc_out.weight[:, :k],
                      _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "first k")


def test_remove_neurons_inconsistent_order():
    def wrong(fc_in, fc_out, keep):   # rows in the given order, columns sorted
        keep = torch.as_tensor(keep)
        return _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight[:, keep.sort().values],
                      _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "order")


def test_remove_neurons_wrong_dtype_and_frozen_parameters():
    def float32_only(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        new_in = nn.Linear(fc_in.in_features, len(keep), bias=fc_in.bias is not None)
        new_out = nn.Linear(len(keep), fc_out.out_features, bias=fc_out.bias is not None)
        with torch.no_grad():
            new_in.weight.copy_(fc_in.weight[keep])
            new_out.weight.copy_(fc_out.weight[:, keep])
            if fc_in.bias is not None:
                new_in.bias.copy_(fc_in.bias[keep])
            if fc_out.bias is not None:
                new_out.bias.copy_(fc_out.bias)
        return new_in, new_out
    rejected(lab2.check_remove_neurons, float32_only, "dtype")

    def frozen(fc_in, fc_out, keep):
        new_in, new_out = lab2.reference_remove_neurons(fc_in, fc_out, keep)
        for p in list(new_in.parameters()) + list(new_out.parameters()):
            p.requires_grad_(False)
        return new_in, new_out
    rejected(lab2.check_remove_neurons, frozen, "grad")


def test_remove_neurons_accepts_sorted_order_and_the_library():
    assert lab2.check_remove_neurons(library_remove_neurons, strict=False)


def test_remove_neurons_reference_keeps_order():
    fc_in, fc_out = nn.Linear(3, 4), nn.Linear(4, 2)
    a, b = lab2.reference_remove_neurons(fc_in, fc_out, [3, 1])
    assert torch.equal(a.weight, fc_in.weight[[3, 1]]) and torch.equal(b.weight, fc_out.weight[:, [3, 1]])
    assert a.weight.requires_grad and fc_in.weight.shape == (4, 3)


# ----------------------------------------------------------------------------- group_lasso
def test_group_lasso_wrong_implementations():
    rejected(lab2.check_group_lasso, lambda w: (w ** 2).sum(), "sum of squares")
    rejected(lab2.check_group_lasso, lambda w: w.norm(), "whole matrix")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=0).sum(), "column")
    rejected(lab2.check_group_lasso, lambda w: w.abs().sum(), "l1")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=1).mean(), "average")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=1), "one number")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=1).sum().item(), "tensor")
    rejected(lab2.check_group_lasso, lambda w: w.detach().norm(dim=1).sum(), "require grad")
    rejected(lab2.check_group_lasso, lambda w: (w ** 2).sum(1).sqrt().sum(), "nan")


def test_group_lasso_accepts_alternatives():
    assert lab2.check_group_lasso(lambda w: w.norm(dim=1).sum(), strict=False)
    assert lab2.check_group_lasso(lambda w: torch.linalg.norm(w, dim=1).sum(), strict=False)


# ----------------------------------------------------------------------------- dead_neurons
def test_dead_neurons_wrong_implementations():
    rejected(lab2.check_dead_neurons, lambda w, t: w.norm(dim=1) > t, "living")
    rejected(lab2.check_dead_neurons, lambda w, t: w.norm(dim=1) < t, "<=")
    rejected(lab2.check_dead_neurons, lambda w, t: w.abs().sum(1) <= t, "l1")
    rejected(lab2.check_dead_neurons, lambda w, t: (w ** 2).sum(1) <= t, "square")
    rejected(lab2.check_dead_neurons, lambda w, t: w.norm(dim=0) <= t, "column")
    rejected(lab2.check_dead_neurons, lambda w, t: (w.abs() <= t).all(1), "whole row")


def test_dead_neurons_accepts_float_masks():
    assert lab2.check_dead_neurons(lambda w, t: (w.norm(dim=1) <= t).float(), strict=False)


# ----------------------------------------------------------------------------- select_input_pixels
def _topk_mask(scores, k):
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        keep[scores.topk(k).indices] = True
    return keep


def test_select_input_pixels_wrong_implementations():
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(w.norm(dim=1), k), "neuron")
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(w.abs().sum(0), k), "l1")
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(w.sum(0), k), "signed")
    rejected(lab2.check_select_input_pixels, lambda w, k: ~_topk_mask(w.norm(dim=0), k), "smallest")
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(-w.norm(dim=0), k), "norm")
    rejected(lab2.check_select_input_pixels, lambda w, k: w.norm(dim=0).topk(k).indices, "mask")

    def threshold(w, k):
        norms = w.norm(dim=0)
        if k == 0:
            return torch.zeros_like(norms, dtype=torch.bool)
        return norms >= norms.topk(k).values[-1]
    rejected(lab2.check_select_input_pixels, threshold, "ties")


def test_select_input_pixels_accepts_topk_any_tie_break():
    assert lab2.check_select_input_pixels(lambda w, k: _topk_mask(w.norm(dim=0), k), strict=False)
    assert lab2.check_select_input_pixels(lambda w, k: _topk_mask(w.double().norm(dim=0), k).int(),
                                          strict=False)


def test_reference_select_input_pixels_ties_go_to_lower_index():
    keep = lab2.reference_select_input_pixels(torch.ones(2, 5), 2)
    assert keep.tolist() == [True, True, False, False, False]
