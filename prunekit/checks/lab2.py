"""Checks for Lab 2 (neuron pruning).

=========================  ================================================  ==================================
exercise                   contract                                          check
=========================  ================================================  ==================================
``neuron_statistics``      ``(model, x, batch_size) -> {relu: {"apoz",         :func:`check_neuron_statistics`
                           "mean"}}``: per-unit fraction of zero outputs and
                           mean output of every nn.ReLU child, with forward
                           hooks, over all of x in slices; hooks removed
``neuron_l2_scores``       ``(weight (out, in)) -> (out,)``: ``‖W[j, :]‖₂``   :func:`check_neuron_l2_scores`
``remove_neurons``         ``(fc_in, fc_out, keep) -> (new_in, new_out)``:    :func:`check_remove_neurons`
                           two new, smaller ``nn.Linear`` computing what the
                           network computes with only neurons ``keep``
``shrink_mlp``             ``(model, keep {linear: indices}) -> model``: a    :func:`check_shrink_mlp`
                           new, smaller nn.Sequential equal (1e-5) to the
                           model with the other neurons silenced
``group_lasso``            ``(weight (out, in)) -> scalar``:                  :func:`check_group_lasso`
                           ``Σ_j ‖W[j, :]‖₂``, finite gradient at zero rows
``train_group_lasso``      ``(model, x, y, lam, lr, steps) -> model``: full-  :func:`check_train_group_lasso`
                           batch proximal gradient descent, group = a hidden
                           neuron's (weights, bias)
``select_input_pixels``    ``(weight, k) -> bool (in,)``: True for exactly k   :func:`check_select_input_pixels`
                           input columns of largest ``‖W[:, i]‖₂``
``recursive_elimination``  ``(x, y, k, step) -> ranks (features,)``: RFE      :func:`check_recursive_elimination`
                           with least squares + intercept, as sklearn's
=========================  ================================================  ==================================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`. The answers it
compares with, the ``reference_*`` functions, live in :mod:`prunekit.checks.references.lab2` (re-exported
here); :func:`~prunekit.checks.core.use_or_reference` falls back to them.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import skip_init

from .core import Case, CheckResult, as_mask, call, describe_tensor, expect, same, snapshot
from .core import run_check
from .references.lab2 import (reference_group_lasso, reference_neuron_l2_scores, reference_neuron_statistics,
                              reference_recursive_elimination, reference_remove_neurons, reference_select_input_pixels,
                              reference_shrink_mlp, reference_train_group_lasso, _children_linears)

__all__ = [
    "check_neuron_statistics", "check_neuron_l2_scores", "check_remove_neurons", "check_shrink_mlp",
    "check_group_lasso", "check_train_group_lasso", "check_select_input_pixels", "check_recursive_elimination",
    "reference_neuron_statistics", "reference_neuron_l2_scores", "reference_remove_neurons", "reference_shrink_mlp",
    "reference_group_lasso", "reference_train_group_lasso", "reference_select_input_pixels",
    "reference_recursive_elimination",
]

# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "neuron_statistics": ["prunekit.activations.activation_statistics", "prunekit.channel_criteria.apoz",
                          "prunekit.channel_criteria.mean_activation"],
    "neuron_l2_scores": ["prunekit.channel_criteria.neuron_norm"],
    "remove_neurons": ["prunekit.surgery.prune_conv_bn_conv", "prunekit.surgery.shrink"],
    "shrink_mlp": ["prunekit.surgery.shrink", "prunekit.surgery.prune_channels"],
    "group_lasso": ["prunekit.regularizers.group_lasso_penalty"],
    "train_group_lasso": ["prunekit.train.train", "prunekit.train.fine_tune"],
    "recursive_elimination": ["sklearn.feature_selection.RFE", "sklearn.feature_selection.RFECV"],
}


# Every statement of each exercise's contract (as the notebook states it) and the cases that test it
# (a case counts when its label contains the text); tests/test_checks_contract.py runs the checks and
# fails for a statement without a case (issue 18, point 7).
CONTRACT = {
    "neuron_statistics": {
        "every nn.ReLU child, keyed by its name": ["two hidden layers", "unnamed nn.Sequential"],
        "statistics over ALL examples, the last slice shorter (not a mean of batch means)": ["last batch of 2"],
        "batch_size larger than N, and batches of 1": ["batch larger than N", "batch of 1"],
        "APoZ counts exact zeros; mean of the outputs; float tensors (units,)": ["10 positive inputs",
                                                                               "LeNet-300-100 sizes"],
        "only ReLU outputs, through Flatten and Dropout": ["Flatten, dropout"],
        "hooks removed, model and x unchanged (every case)": ["3 -> 4 -> 2"],
        "float64 models": ["float64 model"],
    },
    "neuron_l2_scores": {
        "one L2 norm per ROW (out,)": ["3 neurons x 2 inputs", "square weight (rows, not columns)"],
        "L2, not L1 or squared; signs do not cancel": ["L2, not L1", "negative weights count"],
        "floating point, float64 and Parameters; weight unchanged": ["an nn.Parameter", "float64"],
    },
    "remove_neurons": {
        "rows of W_in and b_in, columns of W_out, b_out whole": ["3 -> 4 -> 5, keep [0, 2]"],
        "keep as a list or a LongTensor, in its order (sorted accepted)": ["given as a Python list",
                                                                            "unsorted keep [3, 0, 2]"],
        "one neuron, all neurons: still new layers": ["keep one neuron", "keep all 4 neurons"],
        "a bias only where the original had one": ["fc_in without bias", "fc_out without bias"],
        "same dtype": ["float64 layers"],
        "the same function to 1e-5, inputs unchanged, independent copies": ["random 784 -> 300 -> 100"],
    },
    "shrink_mlp": {
        "a hidden Linear loses rows, the NEXT Linear the matching columns": ["first hidden layer only",
                                                                          "second hidden layer only"],
        "a middle layer cut twice (columns, then rows)": ["both hidden layers", "three hidden layers"],
        "keep in any order, lists or tensors; an empty keep is a copy": ["unsorted keep", "keep {}"],
        "same children, names and order (Flatten, ReLU, Dropout stay)": ["Flatten first"],
        "the function of the silenced model to 1e-5; model unchanged; trainable copies": ["LeNet-300-100 sizes"],
        "float64 models": ["float64 model"],
    },
    "group_lasso": {
        "sum over rows of the unsquared L2 row norms": ["[[3, 4], [1, 0]] -> 5 + 1", "square weight: rows"],
        "differentiable scalar, finite gradient at a zero row": ["a row of zeros"],
        "signs, one row, float64": ["negative weights", "one neuron", "float64"],
    },
    "train_group_lasso": {
        "plain full-batch gradient step on the mean cross-entropy": ["lam = 0"],
        "then block soft-thresholding with t = lr * lam (gradient first)": ["one step", "lr matters"],
        "group = a neuron's weights AND bias; exact zeros": ["exact zeros"],
        "every hidden Linear, not the output layer": ["two hidden layers"],
        "steps = 0 leaves the model; float32 models": ["0 steps", "float32 model"],
    },
    "select_input_pixels": {
        "columns, not rows; L2 norm": ["columns, not rows", "L2, not L1"],
        "exactly k True, ties included": ["ties: 6 equal columns", "k = 0 keeps nothing", "k = all inputs"],
        "signs count; Parameters and float64": ["large negative weights", "an nn.Parameter, float64"],
    },
    "recursive_elimination": {
        "ranks as sklearn's RFE(LinearRegression()): 1 = kept, eliminated first = largest": ["keep 1"],
        "refit after every round (correlated features)": ["60 examples x 8 features, keep 3, step 1"],
        "step features per round, fewer in the last": ["step 2", "step 3", "step 7"],
        "least squares WITH an intercept (features with a nonzero mean)": ["20 features, keep 5"],
        "k equal to all features: nothing eliminated": ["keep 6, step 1"],
        "integer ranks; float32 inputs": ["float32 features"],
    },
}


# ============================================================================ shared helpers
def _as_mask(out, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """:func:`~prunekit.checks.core.as_mask`, accepting 0/1 float or int tensors too."""
    if isinstance(out, torch.Tensor) and out.dtype != torch.bool and not out.is_complex() and \
            tuple(out.shape) == tuple(shape) and bool(((out == 0) | (out == 1)).all()):
        out = out != 0
    return as_mask(out, shape, what)


def _is_topk(keep: torch.Tensor, scores: torch.Tensor, k: int) -> bool:
    """``keep`` holds exactly k entries, none scoring below a dropped one (any tie-break)."""
    if int(keep.sum()) != k:
        return False
    if k in (0, keep.numel()):
        return True
    return scores[keep].min().item() >= scores[~keep].max().item()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_float_tensor(out) -> bool:
    return isinstance(out, torch.Tensor) and out.is_floating_point()


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().double(), b.detach().double(), rtol=tol, atol=tol)


def _scores_out(out, n: int, name: str, hint: str, dtype_hint: str) -> torch.Tensor:
    """Validate a (n,) floating-point score vector."""
    expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a torch.Tensor", hint)
    expect(tuple(out.shape) == (n,), f"returned shape {tuple(out.shape)}, expected ({n},): one {name} per unit",
           hint)
    expect(out.is_floating_point(), f"returned dtype {out.dtype}, expected a floating-point tensor", dtype_hint)
    return out.detach()


# ============================================================================ neuron_l2_scores
_L2_HINT = ("neuron j of a Linear owns row j of its weight (out, in); its score is the L2 norm of that row: "
            "`weight.norm(dim=1)` or `torch.linalg.vector_norm(weight, dim=1)`")


def _l2_case(label: str, weight: torch.Tensor, expected=None) -> Case:
    def run(fn):
        out = call(fn, weight)
        w = weight.detach().double()
        rows, cols = w.shape
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (cols,) and rows != cols:
            expect(False, f"returned shape ({cols},): one value per input column",
                   "a neuron's incoming weights are a ROW of the (out, in) weight: reduce over dim 1")
        got = _scores_out(out, rows, "score", _L2_HINT, "norms are real numbers: do not round or cast them to int")
        want = w.norm(dim=1) if expected is None else torch.tensor(expected, dtype=torch.float64)
        hint = _L2_HINT
        if _close(got, w.abs().sum(1)):
            hint = "that is the L1 norm (sum of |w|); the L2 norm is sqrt(sum of w²)"
        elif _close(got, (w ** 2).sum(1)):
            hint = "that is the squared norm; take the square root"
        elif rows == cols and _close(got, w.norm(dim=0)):
            hint = "you took column norms; a neuron's incoming weights are its ROW (dim 1 is reduced)"
        elif _close(got, w.sum(1)):
            hint = "signed sums cancel; the norm uses squares (a large negative weight matters)"
        expect(_close(got, want, 1e-5), f"got {describe_tensor(got)}, expected {describe_tensor(want)}", hint)
    return Case(label, run)


def _l2_cases() -> list[Case]:
    cases = [
        _l2_case("3 neurons x 2 inputs", torch.tensor([[3., -4.], [1., 0.], [0., 2.]]), [5.0, 1.0, 2.0]),
        _l2_case("square weight (rows, not columns)", torch.tensor([[3., 4.], [0., 0.]]), [5.0, 0.0]),
        _l2_case("negative weights count", torch.tensor([[-2., -2., -1.], [1., -1., 0.]]), [3.0, 2 ** 0.5]),
        _l2_case("L2, not L1", torch.tensor([[0.6, 0.8, 0., 0.], [0.5, 0.5, 0.5, 0.5]]), [1.0, 1.0]),
        _l2_case("an nn.Parameter", nn.Parameter(torch.tensor([[1., 2., 2.]])), [3.0]),
        _l2_case("float64", torch.tensor([[0.3, 0.4]], dtype=torch.float64), [0.5]),
    ]
    g = _gen(22)
    for shape in [(300, 784), (10, 3), (100, 300), (8, 8)]:
        cases.append(_l2_case(f"random {shape}", torch.randn(shape, generator=g) * 0.1))
    return cases


def check_neuron_l2_scores(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``neuron_l2_scores(weight)``: for a Linear weight (out, in), the (out,) L2 norms of the rows."""
    return run_check("neuron_l2_scores", fn, _l2_cases, hint=_L2_HINT,
                     passed="rows not columns, L2 not L1, signs, float64, Parameters", strict=strict)


# ============================================================================ remove_neurons
_REMOVE_HINT = ("neuron j is row j of fc_in.weight, entry j of fc_in.bias and column j of fc_out.weight; "
                "build new layers `nn.Linear(fc_in.in_features, len(keep))` and "
                "`nn.Linear(len(keep), fc_out.out_features)` and copy `W_in[keep]`, `b_in[keep]`, "
                "`W_out[:, keep]` and all of `b_out` into them under torch.no_grad()")


def _layers(seed: int, sizes: tuple[int, int, int], bias_in: bool = True, bias_out: bool = True,
            dtype=torch.float32) -> tuple[nn.Linear, nn.Linear]:
    g = _gen(seed)
    fc_in = nn.Linear(sizes[0], sizes[1], bias=bias_in, dtype=dtype)
    fc_out = nn.Linear(sizes[1], sizes[2], bias=bias_out, dtype=dtype)
    with torch.no_grad():
        for layer in (fc_in, fc_out):
            # scaled like PyTorch's default init, so outputs are O(1) and 1e-5 is a fair tolerance
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g, dtype=dtype) / layer.in_features ** 0.5)
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=dtype))
    return fc_in, fc_out


def _masked_forward(fc_in: nn.Linear, fc_out: nn.Linear, keep: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """What the full network computes when the other hidden neurons output 0."""
    mask = torch.zeros(fc_in.out_features, dtype=x.dtype)
    mask[keep] = 1
    return fc_out(torch.relu(fc_in(x)) * mask)


def _remove_case(label: str, fc_in: nn.Linear, fc_out: nn.Linear, keep, expect_weights=None) -> Case:
    def run(fn):
        keep_idx = torch.as_tensor(keep, dtype=torch.long)
        k, hidden = len(keep_idx), fc_in.out_features
        before = {n: snapshot(p) for n, p in
                  [("fc_in", dict(fc_in.named_parameters())), ("fc_out", dict(fc_out.named_parameters()))]}
        shapes = (fc_in.in_features, fc_in.out_features, fc_out.in_features, fc_out.out_features)
        keep_before = snapshot(keep)
        out = fn(fc_in, fc_out, keep)   # not `call`: modules are compared below, parameter by parameter
        expect(same(keep_before, keep), "your function changed `keep` in place", "read keep, do not modify it")
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               f"returned {type(out).__name__}, expected a pair (new_fc_in, new_fc_out)",
               "`return new_in, new_out`")
        new_in, new_out = out
        # -- the inputs must be untouched
        same_inputs = (shapes == (fc_in.in_features, fc_in.out_features, fc_out.in_features, fc_out.out_features)
                       and all(torch.equal(before["fc_in"][n], p) for n, p in fc_in.named_parameters())
                       and all(torch.equal(before["fc_out"][n], p) for n, p in fc_out.named_parameters())
                       and fc_in.weight.shape[0] == hidden)
        expect(same_inputs and new_in is not fc_in and new_out is not fc_out,
               "the layers you were given were modified (or returned) instead of new ones",
               "build NEW nn.Linear layers and copy the kept weights into them; the original model must keep "
               "working (you compare against it)")
        for what, layer, ref in (("new_fc_in", new_in, fc_in), ("new_fc_out", new_out, fc_out)):
            expect(isinstance(layer, nn.Linear), f"{what} is a {type(layer).__name__}, expected an nn.Linear",
                   _REMOVE_HINT)
            expect(layer.weight.dtype == ref.weight.dtype,
                   f"{what} has dtype {layer.weight.dtype}, expected {ref.weight.dtype}",
                   "create the layers with `dtype=fc_in.weight.dtype` (nn.Linear defaults to float32)")
        # -- shapes
        w_in, w_out = new_in.weight, new_out.weight
        if tuple(w_out.shape) == (fc_out.out_features, hidden) and k != hidden:
            expect(False, f"new_fc_out.weight has shape {tuple(w_out.shape)}: fc_out was not cut",
                   "fc_out reads the hidden neurons through its weight COLUMNS: keep `W_out[:, keep]`")
        if tuple(w_out.shape) == (k, hidden) and k != fc_out.out_features:
            expect(False, f"new_fc_out.weight has shape {tuple(w_out.shape)}, expected ({fc_out.out_features}, {k})",
                   "you cut the rows of fc_out (its outputs); cut its COLUMNS: `W_out[:, keep]`")
        if tuple(w_in.shape) == (hidden - k, fc_in.in_features) and k != hidden - k:
            expect(False, f"new_fc_in keeps {hidden - k} neurons, expected {k}",
                   "`keep` lists the neurons to KEEP, not the ones to remove")
        expect(tuple(w_in.shape) == (k, fc_in.in_features),
               f"new_fc_in.weight has shape {tuple(w_in.shape)}, expected ({k}, {fc_in.in_features})",
               "fc_in loses ROWS: `W_in[keep, :]`")
        expect(tuple(w_out.shape) == (fc_out.out_features, k),
               f"new_fc_out.weight has shape {tuple(w_out.shape)}, expected ({fc_out.out_features}, {k})",
               "fc_out loses COLUMNS: `W_out[:, keep]`")
        expect((new_in.in_features, new_in.out_features) == (fc_in.in_features, k)
               and (new_out.in_features, new_out.out_features) == (k, fc_out.out_features),
               f"the layers say in/out features ({new_in.in_features}, {new_in.out_features}) and "
               f"({new_out.in_features}, {new_out.out_features}), not those of their weights",
               "create the layers with nn.Linear(in, out) instead of replacing .weight of an old layer")
        # -- biases
        if fc_in.bias is None:
            expect(new_in.bias is None, "fc_in has no bias but new_fc_in has one", "use `bias=fc_in.bias is not None`")
        else:
            expect(new_in.bias is not None and tuple(new_in.bias.shape) == (k,),
                   f"new_fc_in.bias is {None if new_in.bias is None else tuple(new_in.bias.shape)}, expected ({k},)",
                   "fc_in's bias has one entry per neuron: keep `b_in[keep]`")
        if fc_out.bias is None:
            expect(new_out.bias is None, "fc_out has no bias but new_fc_out has one",
                   "use `bias=fc_out.bias is not None`")
        else:
            expect(new_out.bias is not None and tuple(new_out.bias.shape) == (fc_out.out_features,),
                   f"new_fc_out.bias is {None if new_out.bias is None else tuple(new_out.bias.shape)}, expected "
                   f"({fc_out.out_features},)",
                   "fc_out's bias belongs to its outputs, which do not change: copy it whole")
            expect(torch.equal(new_out.bias.detach(), fc_out.bias.detach()), "new_fc_out.bias differs from fc_out.bias",
                   "fc_out's bias belongs to its outputs, which do not change: copy it whole")
        for what, layer in (("new_fc_in", new_in), ("new_fc_out", new_out)):
            expect(all(p.requires_grad for p in layer.parameters()),
                   f"{what}'s parameters do not require grad: the smaller model could not be fine-tuned",
                   "copy values into a fresh layer's parameters under torch.no_grad(); do not detach them")
        # -- the kept weights, in the order of keep (sorting keep first is accepted)
        sorted_keep = keep_idx.sort().values
        rows_ok = any(torch.equal(w_in.detach(), fc_in.weight.detach()[order]) for order in (keep_idx, sorted_keep))
        if not rows_ok and torch.equal(w_in.detach(), fc_in.weight.detach()[:k]):
            expect(False, "new_fc_in holds the FIRST k rows, not the rows listed in keep",
                   "index with keep: `fc_in.weight[keep]`")
        dropped = torch.tensor([j for j in range(hidden) if j not in set(keep_idx.tolist())], dtype=torch.long)
        if not rows_ok and len(dropped) == k and torch.equal(w_in.detach(), fc_in.weight.detach()[dropped]):
            expect(False, "new_fc_in holds the rows NOT listed in keep",
                   "`keep` lists the neurons to KEEP, not the ones to remove")
        expect(rows_ok, "new_fc_in.weight is not the rows `fc_in.weight[keep]`", _REMOVE_HINT)
        # -- the function: equal to the full network with the other neurons silenced
        g = _gen(23)
        x = torch.randn(16, fc_in.in_features, generator=g, dtype=fc_in.weight.dtype)
        with torch.no_grad():
            want = _masked_forward(fc_in, fc_out, keep_idx, x)
            got = new_out(torch.relu(new_in(x)))
        if fc_in.bias is not None and new_in.bias is not None and not torch.equal(
                new_in.bias.detach(), fc_in.bias.detach()[keep_idx]) and not torch.equal(
                new_in.bias.detach(), fc_in.bias.detach()[sorted_keep]):
            expect(False, "new_fc_in.bias is not `fc_in.bias[keep]`",
                   "each kept neuron keeps its own bias entry, in the same order as its weight row")
        err = (got.double() - want.double()).abs().max().item() / max(1.0, want.abs().max().item())
        expect(err <= 1e-5,
               f"outputs differ from the network with the other neurons silenced (relative error {err:.3g})",
               "keep the same neurons, in the same order, in W_in's rows, b_in and W_out's columns")
        if expect_weights is not None:
            w_in_want, w_out_want = expect_weights
            expect(torch.equal(w_in.detach(), torch.tensor(w_in_want, dtype=w_in.dtype)) and
                   torch.equal(w_out.detach(), torch.tensor(w_out_want, dtype=w_out.dtype)),
                   "the new weights are not the expected rows / columns", _REMOVE_HINT)
        # -- independent copies
        with torch.no_grad():
            for p in list(new_in.parameters()) + list(new_out.parameters()):
                p.add_(1.0)
        expect(all(torch.equal(before["fc_in"][n], p) for n, p in fc_in.named_parameters())
               and all(torch.equal(before["fc_out"][n], p) for n, p in fc_out.named_parameters()),
               "changing the new layers changed the old ones: they share memory",
               "copy the values (`.clone()` or `param.copy_(...)` into a fresh layer), do not reuse the tensors")
    return Case(label, run)


def _remove_cases() -> list[Case]:
    fc_in = nn.Linear(3, 4)
    fc_out = nn.Linear(4, 5)
    with torch.no_grad():
        fc_in.weight.copy_(torch.arange(12.0).view(4, 3) / 8)
        fc_in.bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        fc_out.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0],
                                          [2.0, -2.0, 0.5, 0.0], [0.25, 0.5, 0.75, 1.0]]))
        fc_out.bias.copy_(torch.tensor([0.25, -0.25, 0.0, 1.0, -1.0]))
    cases = [
        _remove_case("3 -> 4 -> 5, keep [0, 2]", fc_in, fc_out, torch.tensor([0, 2]),
                     ([[0.0, 0.125, 0.25], [0.75, 0.875, 1.0]],
                      [[1.0, 3.0], [-1.0, 1.0], [0.0, 0.0], [2.0, 0.5], [0.25, 0.75]])),
        _remove_case("keep [1, 3] given as a Python list", fc_in, fc_out, [1, 3],
                     ([[0.375, 0.5, 0.625], [1.125, 1.25, 1.375]],
                      [[2.0, 4.0], [0.0, 0.5], [0.0, 1.0], [-2.0, 0.0], [0.5, 1.0]])),
        _remove_case("keep one neuron", fc_in, fc_out, torch.tensor([3])),
        _remove_case("keep all 4 neurons (still new layers)", fc_in, fc_out, torch.arange(4)),
        _remove_case("unsorted keep [3, 0, 2]", fc_in, fc_out, torch.tensor([3, 0, 2])),
        _remove_case("fc_in without bias", *_layers(24, (5, 6, 3), bias_in=False), torch.tensor([1, 2, 5])),
        _remove_case("fc_out without bias", *_layers(25, (5, 6, 3), bias_out=False), torch.tensor([0, 4])),
        _remove_case("float64 layers", *_layers(26, (4, 5, 2), dtype=torch.float64), torch.tensor([0, 1, 3])),
    ]
    g = _gen(27)
    for i, sizes in enumerate([(20, 30, 7), (784, 300, 100), (10, 8, 10), (6, 50, 4)]):
        k = int(torch.randint(1, sizes[1], (), generator=g))
        keep = torch.randperm(sizes[1], generator=g)[:k]
        if i % 2 == 0:
            keep = keep.sort().values
        cases.append(_remove_case(f"random {sizes[0]} -> {sizes[1]} -> {sizes[2]}, keep {k}",
                                  *_layers(28 + i, sizes), keep))
    return cases


def check_remove_neurons(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``remove_neurons(fc_in, fc_out, keep)``: two NEW ``nn.Linear`` with ``W_in[keep]``, ``b_in[keep]``,
    ``W_out[:, keep]`` and ``b_out``, computing (to 1e-5) what the network computes with only the kept neurons;
    shapes, biases (or none), dtype, trainable parameters, inputs untouched, no shared memory."""
    return run_check("remove_neurons", fn, _remove_cases, hint=_REMOVE_HINT,
                     passed="same function to 1e-5, shapes, biases, order of keep, dtype, inputs untouched, "
                            "independent copies", strict=strict)


# ============================================================================ group_lasso
_GROUP_HINT = ("sum over the rows of the (out, in) weight of each row's L2 norm, as a differentiable scalar "
               "tensor: `weight.norm(dim=1).sum()` (no .item(), no squares)")


def _group_case(label: str, weight: torch.Tensor, expected: float | None = None) -> Case:
    def run(fn):
        w = weight.detach().clone().requires_grad_(True)
        out = call(fn, w)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a scalar torch.Tensor",
               "keep it a tensor (no .item() or float()): the training loss must be able to backpropagate")
        expect(out.numel() == 1, f"returned shape {tuple(out.shape)}, expected one number",
               "sum the row norms into a single scalar")
        expect(out.is_floating_point(), f"returned dtype {out.dtype}")
        wd = weight.detach().double()
        got = out.detach().double().reshape(())
        want = wd.norm(dim=1).sum() if expected is None else torch.tensor(expected, dtype=torch.float64)
        hint = _GROUP_HINT
        if torch.isclose(got, (wd ** 2).sum(), rtol=1e-5):
            hint = "that is the sum of squares (L2 weight decay); take the norm of each row, not squared"
        elif torch.isclose(got, wd.norm(), rtol=1e-5):
            hint = "that is the norm of the whole matrix; sum the norms of the rows, one group per neuron"
        elif torch.isclose(got, wd.norm(dim=0).sum(), rtol=1e-5):
            hint = "you summed column norms; a neuron's group is its ROW: `weight.norm(dim=1)`"
        elif torch.isclose(got, wd.abs().sum(), rtol=1e-5):
            hint = "that is the L1 norm of all weights (unstructured); use each row's L2 norm"
        elif torch.isclose(got, wd.norm(dim=1).mean(), rtol=1e-5):
            hint = "sum the row norms, do not average them"
        expect(torch.isclose(got, want, rtol=1e-5, atol=1e-7), f"got {got.item():.6g}, expected {want.item():.6g}",
               hint)
        expect(out.requires_grad, "the result does not require grad: training would ignore the penalty",
               "compute it with torch operations on the weight; no .detach(), .item() or numpy")
        grad, = torch.autograd.grad(out.reshape(()), w)
        expect(bool(torch.isfinite(grad).all()),
               "the gradient contains NaN (a row of zeros: the derivative of sqrt at 0 is infinite)",
               "use `weight.norm(dim=1)` or `torch.linalg.vector_norm(weight, dim=1)`: PyTorch gives them a "
               "zero gradient at a zero row, while `(w ** 2).sum(1).sqrt()` gives NaN and ruins training")
        norms = wd.norm(dim=1, keepdim=True)
        nonzero = norms.flatten() > 0
        want_grad = wd / norms.clamp_min(1e-300)
        expect(torch.allclose(grad.double()[nonzero], want_grad[nonzero], rtol=1e-4, atol=1e-6),
               "the gradient is not W[j] / ‖W[j]‖ on the nonzero rows", _GROUP_HINT)
    return Case(label, run)


def _group_cases() -> list[Case]:
    cases = [
        _group_case("[[3, 4], [1, 0]] -> 5 + 1", torch.tensor([[3., 4.], [1., 0.]]), 6.0),
        _group_case("a row of zeros (value and a finite gradient)", torch.tensor([[3., 4.], [0., 0.], [0., -2.]]),
                    7.0),
        _group_case("square weight: rows, not columns", torch.tensor([[3., 4.], [0., 5.]]), 10.0),
        _group_case("negative weights", torch.tensor([[-6., -8.], [0.5, -0.5], [0., 0.]]), 10.0 + 0.5 ** 0.5),
        _group_case("one neuron", torch.tensor([[1., 2., 2.]]), 3.0),
        _group_case("float64", torch.tensor([[0.3, 0.4], [0.0, 0.1]], dtype=torch.float64), 0.6),
    ]
    g = _gen(29)
    for shape in [(30, 20), (5, 100), (100, 300), (12, 12)]:
        w = torch.randn(shape, generator=g) * 0.1
        w[::3] = 0.0  # some dead rows, as after group-lasso training
        cases.append(_group_case(f"random {shape} with zero rows", w))
    return cases


def check_group_lasso(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``group_lasso(weight)``: ``Σ_j ‖W[j, :]‖₂`` as a differentiable scalar tensor, with a finite
    gradient (``W[j] / ‖W[j]‖``, and no NaN at rows of zeros)."""
    return run_check("group_lasso", fn, _group_cases, hint=_GROUP_HINT,
                     passed="rows, L2 not squared, sum, differentiable, no NaN at zero rows", strict=strict)


# ============================================================================ select_input_pixels
_PIXEL_HINT = ("input i of a Linear is COLUMN i of its (out, in) weight; score each column by its L2 norm "
               "(`weight.norm(dim=0)`) and keep exactly the k largest (torch.topk gives their indices)")


def _pixel_case(label: str, weight: torch.Tensor, k: int, expected=None) -> Case:
    def run(fn):
        rows, cols = weight.shape
        out = call(fn, weight, k)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (rows,) and rows != cols:
            expect(False, f"returned shape ({rows},): one value per neuron",
                   "one answer per INPUT: score the columns of the weight (dim 0 is reduced)")
        if isinstance(out, torch.Tensor) and out.ndim == 1 and out.numel() == k and k != cols and \
                not out.dtype == torch.bool:
            expect(False, f"returned {k} values: indices, not a mask",
                   f"return a bool mask of shape ({cols},): `mask = torch.zeros({cols}, dtype=torch.bool); "
                   "mask[indices] = True`")
        keep = _as_mask(out, (cols,), "your mask")
        wd = weight.detach().double()
        norms = wd.norm(dim=0)
        kept = int(keep.sum())
        hint = _PIXEL_HINT
        if kept == cols - k and kept != k:
            hint = "you kept the k SMALLEST columns (or dropped the k largest); keep the k largest"
        elif kept > k:
            hint = ("more than k inputs kept: a threshold test (`norms >= kth_largest`) keeps every tie; pick "
                    "exactly k indices with torch.topk")
        expect(kept == k, f"kept {kept} of {cols} inputs, expected exactly k = {k}", hint)
        if 0 < k < cols:
            hint = _PIXEL_HINT
            if rows == cols and _is_topk(keep, wd.norm(dim=1), k):
                hint = "you scored the rows (neurons); score the COLUMNS (inputs): `weight.norm(dim=0)`"
            elif _is_topk(keep, wd.abs().sum(0), k):
                hint = "that ranks by the L1 norm; rank the columns by their L2 norm"
            elif _is_topk(keep, wd.sum(0), k):
                hint = "signed sums cancel and ignore large negative weights; rank by the L2 norm"
            worst_kept, best_dropped = norms[keep].min().item(), norms[~keep].max().item()
            expect(worst_kept >= best_dropped, f"kept an input with norm {worst_kept:.4g} but dropped one with "
                   f"{best_dropped:.4g}", hint)
        if expected is not None:
            want = torch.tensor(expected, dtype=torch.bool)
            expect(torch.equal(keep, want),
                   f"got {describe_tensor(keep.int())}, expected {describe_tensor(want.int())}",
                   _PIXEL_HINT)
    return Case(label, run)


def _pixel_cases() -> list[Case]:
    w = torch.tensor([[1., 0., 3.], [0., 0., 4.], [1., 0., 0.]])      # column norms √2, 0, 5
    cases = [
        _pixel_case("3 x 3, k = 1", w, 1, [0, 0, 1]),
        _pixel_case("3 x 3, k = 2", w, 2, [1, 0, 1]),
        _pixel_case("k = 0 keeps nothing", w, 0, [0, 0, 0]),
        _pixel_case("k = all inputs", w, 3, [1, 1, 1]),
        _pixel_case("large negative weights count", torch.tensor([[-5., 1., 0.5], [-5., 1., 0.5]]), 1, [1, 0, 0]),
        _pixel_case("2 neurons x 4 inputs: columns, not rows", torch.tensor([[0., 9., 0., 1.], [0., 9., 2., 1.]]), 2,
                    [0, 1, 1, 0]),
        _pixel_case("L2, not L1: [3, 0, 0, 0] beats [1, 1, 1, 1]",
                    torch.tensor([[3., 1.], [0., 1.], [0., 1.], [0., 1.]]),
                    1, [1, 0]),
        _pixel_case("ties: 6 equal columns, k = 4", torch.ones(3, 6), 4),
        _pixel_case("an nn.Parameter, float64", nn.Parameter(torch.tensor([[0.1, -0.3, 0.2]], dtype=torch.float64)), 2,
                    [0, 1, 1]),
    ]
    g = _gen(31)
    for shape, k in [((300, 784), 100), ((10, 50), 7), ((64, 64), 10), ((5, 30), 29)]:
        w = torch.randn(shape, generator=g)
        w[:, torch.rand(shape[1], generator=g) < 0.3] = 0.0   # dead inputs, e.g. MNIST's border pixels
        cases.append(_pixel_case(f"random {shape}, k = {k}", w, k))
    return cases


def check_select_input_pixels(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``select_input_pixels(weight, k)``: a bool mask (in,) with exactly ``k`` True, at input columns
    whose L2 norm is at least that of every dropped column (ties: any choice)."""
    return run_check("select_input_pixels", fn, _pixel_cases, hint=_PIXEL_HINT,
                     passed="columns, L2 norm, exactly k with ties, k = 0 and all", strict=strict)


# ============================================================================ neuron_statistics (capstone)
_STATS_HINT = ("register a forward hook on every nn.ReLU child of the model (`model.named_children()`), run x "
               "through the model in slices of `batch_size` under torch.no_grad(), add up per unit the zeros "
               "(`(output == 0).sum(0)`) and the outputs (`output.sum(0)`), divide by N at the end, and remove "
               "every hook in a `finally:`")


def _forward_hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def _mlp(seed: int, sizes: tuple[int, ...], names: bool = True, flatten: bool = False, dropout: bool = False,
         dtype=torch.float32) -> nn.Sequential:
    """A small ReLU MLP (Linear, ReLU, ..., Linear) with named children like LeNet-300-100's."""
    g = _gen(seed)
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())] if flatten else []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        fc = skip_init(nn.Linear, a, b, dtype=dtype)
        with torch.no_grad():
            fc.weight.copy_(torch.randn(b, a, generator=g, dtype=dtype) / a ** 0.5)
            fc.bias.copy_(torch.randn(b, generator=g, dtype=dtype) * 0.3)
        layers.append((f"fc{i + 1}", fc))
        if i < len(sizes) - 2:
            layers.append((f"relu{i + 1}", nn.ReLU()))
            if dropout:
                layers.append((f"drop{i + 1}", nn.Dropout(0.5)))
    if names:
        return nn.Sequential(OrderedDict(layers)).eval()
    return nn.Sequential(*[m for _, m in layers]).eval()


def _stats_case(label: str, model: nn.Sequential, x: torch.Tensor, batch_size: int) -> Case:
    def run(fn):
        params = snapshot(dict(model.state_dict()))
        want = reference_neuron_statistics(model, x, batch_size)
        x_before = x.clone()
        out = fn(model, x, batch_size)     # not `call`: the model is compared through its state dict
        expect(torch.equal(x_before, x), "your function changed x in place", "read x, never write into it")
        expect(_forward_hook_count(model) == 0, "hooks are still attached to the model after your function returned",
               "keep the handles of `register_forward_hook` and call `handle.remove()` on each, in a `finally:`")
        expect(same(params, dict(model.state_dict())), "the model's parameters changed",
               "only run the model forward, under torch.no_grad()")
        expect(isinstance(out, dict), f"returned {type(out).__name__}, expected a dict {{relu_name: {{...}}}}",
               _STATS_HINT)
        linear_names = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
        if set(out) & set(linear_names):
            expect(False, f"returned statistics for {sorted(set(out) & set(linear_names))}: Linear layers",
                   "APoZ is about the ReLU outputs: hook the nn.ReLU modules, not the Linear layers")
        expect(set(out) == set(want), f"returned keys {sorted(map(str, out))}, expected the ReLU names {sorted(want)}",
               "use the names from `model.named_children()` of every nn.ReLU")
        n = len(x)
        for name, ref in want.items():
            stats = out[name]
            expect(isinstance(stats, dict) and {"apoz", "mean"} <= set(stats),
                   f"out[{name!r}] should be a dict with keys 'apoz' and 'mean'", _STATS_HINT)
            units = ref["apoz"].numel()
            for key in ("apoz", "mean"):
                got = stats[key]
                expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (units,),
                       f"out[{name!r}][{key!r}] is "
                       f"{describe_tensor(got) if isinstance(got, torch.Tensor) else type(got).__name__}, "
                       f"expected shape ({units},)", "one value per unit: reduce over the examples (dim 0)")
                expect(got.is_floating_point(), f"out[{name!r}][{key!r}] has dtype {got.dtype}",
                       "fractions and means are floats: convert with `.double()` or `.float()` before summing")
                if _close(got, ref[key]):
                    continue
                hint = _STATS_HINT
                # diagnose the usual slips against what they would have produced
                first = reference_neuron_statistics(model, x[:batch_size], batch_size)[name][key]
                per_batch = [reference_neuron_statistics(model, x[s:s + batch_size], batch_size)[name][key]
                             for s in range(0, n, batch_size)]
                if n % batch_size and len(per_batch) > 1 and _close(got, torch.stack(per_batch).mean(0)):
                    hint = (f"you averaged the batch averages; the last batch has only {n % batch_size} examples: "
                            "add up zeros and sums over all examples and divide by N once")
                elif batch_size < n and _close(got, first):
                    hint = "you kept only the first batch: accumulate over ALL slices of x"
                elif key == "apoz" and _close(got, 1 - ref["apoz"]):
                    hint = "APoZ is the fraction of ZERO outputs, not of active ones"
                elif key == "apoz" and _close(got, ref["apoz"] * n):
                    hint = "that is a count of zeros; divide by the number of examples N"
                elif n % batch_size and _close(got, ref[key] * n / (len(per_batch) * batch_size)):
                    hint = "divide by the number of examples N = len(x), not batches x batch_size"
                expect(False, f"out[{name!r}][{key!r}] = {describe_tensor(got)}, expected {describe_tensor(ref[key])}",
                       hint)
    return Case(label, run)


def _stats_cases() -> list[Case]:
    g = _gen(210)
    small = _mlp(211, (3, 4, 2))
    with torch.no_grad():  # unit 0 always off, unit 1 always on for positive inputs
        small.fc1.weight.copy_(torch.tensor([[-1., -1., -1.], [1., 1., 1.], [1., -1., 0.], [0., 0., 1.]]))
        small.fc1.bias.zero_()
    x_pos = torch.rand(10, 3, generator=g) + 0.1
    return [
        _stats_case("3 -> 4 -> 2, 10 positive inputs, batch 4 (last batch of 2)", small, x_pos, 4),
        _stats_case("batch larger than N", small, x_pos, 64),
        _stats_case("batch of 1", _mlp(212, (5, 6, 3)), torch.randn(7, 5, generator=g), 1),
        _stats_case("two hidden layers, 25 examples, batch 10", _mlp(213, (8, 16, 12, 4)),
                    torch.randn(25, 8, generator=g), 10),
        _stats_case("unnamed nn.Sequential (names '1', '3')", _mlp(214, (6, 9, 7, 3), names=False),
                    torch.randn(13, 6, generator=g), 5),
        _stats_case("images through a Flatten, dropout after the ReLUs (eval mode)",
                    _mlp(215, (16, 10, 8, 3), flatten=True, dropout=True), torch.randn(11, 1, 4, 4, generator=g), 4),
        _stats_case("float64 model", _mlp(216, (4, 5, 2), dtype=torch.float64),
                    torch.randn(9, 4, generator=g, dtype=torch.float64), 2),
        _stats_case("LeNet-300-100 sizes, 70 examples, batch 32", _mlp(217, (784, 300, 100, 10), flatten=True),
                    torch.rand(70, 1, 28, 28, generator=g), 32),
    ]


def check_neuron_statistics(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``neuron_statistics(model, x, batch_size)``: ``{relu_name: {"apoz": (units,), "mean": (units,)}}``
    for every nn.ReLU child, collected with forward hooks over all of ``x`` in slices, hooks removed."""
    return run_check("neuron_statistics", fn, _stats_cases, hint=_STATS_HINT,
                     passed="every ReLU, uneven last batch, hooks removed, model untouched", strict=strict)


# ============================================================================ shrink_mlp (capstone)
_SHRINK_HINT = ("work on `copy.deepcopy(model)`; for each Linear named in `keep`, find the NEXT nn.Linear after it, "
                "and replace both with `remove_neurons(this, next, keep[name])` (setattr on the copy); do it layer "
                "by layer in order, so a middle layer is cut twice: its columns, then its rows")


def _silenced_forward(model: nn.Sequential, keep: dict, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with the neurons not kept forced to output 0 right after their Linear."""
    masks = {}
    for name, idx in keep.items():
        m = torch.zeros(getattr(model, name).out_features, dtype=x.dtype)
        m[torch.as_tensor(idx, dtype=torch.long)] = 1
        masks[name] = m
    for name, module in model.named_children():
        x = module(x)
        if name in masks:
            x = x * masks[name]
    return x


def _shrink_case(label: str, model: nn.Sequential, keep: dict, x: torch.Tensor) -> Case:
    def run(fn):
        before = snapshot(dict(model.state_dict()))
        keep_before = snapshot(keep)
        out = fn(model, keep)              # not `call`: the model is compared through its state dict
        expect(same(keep_before, keep), "your function changed `keep` in place", "read keep, never modify it")
        expect(same(before, dict(model.state_dict())) and out is not model,
               "the model you were given was modified (or returned) instead of a new, smaller one",
               "start from `small = copy.deepcopy(model)` and change only the copy")
        expect(isinstance(out, nn.Module), f"returned {type(out).__name__}, expected an nn.Sequential", _SHRINK_HINT)
        names = [n for n, _ in model.named_children()]
        got_names = [n for n, _ in out.named_children()]
        expect(got_names == names, f"the new model's children are {got_names}, expected {names}",
               "keep every module of the model (Flatten, ReLU, Dropout) in place; only replace Linear layers")
        linears = _children_linears(model)
        for name, nxt in zip(linears, linears[1:] + [None]):
            layer = getattr(out, name)
            expect(isinstance(layer, nn.Linear), f"{name} is a {type(layer).__name__}, expected nn.Linear",
                   _SHRINK_HINT)
            n_out = len(keep[name]) if name in keep else getattr(model, name).out_features
            prev = linears[linears.index(name) - 1] if linears.index(name) else None
            n_in = len(keep[prev]) if prev in keep else getattr(model, name).in_features
            if (layer.out_features, layer.in_features) != (n_out, n_in):
                hint = _SHRINK_HINT
                if prev in keep and layer.in_features == getattr(model, name).in_features:
                    hint = (f"{name} still reads all {layer.in_features} neurons of {prev}: the Linear AFTER a cut "
                            "layer loses the matching COLUMNS")
                elif name in keep and layer.out_features == getattr(model, name).out_features - len(keep[name]):
                    hint = "`keep` lists the neurons to KEEP, not those to remove"
                expect(False, f"{name} maps {layer.in_features} -> {layer.out_features}, expected {n_in} -> {n_out}",
                       hint)
        with torch.no_grad():
            want = _silenced_forward(model, keep, x)
            got = out(x)
        err = (got.double() - want.double()).abs().max().item() / max(1.0, want.abs().max().item())
        expect(err <= 1e-5, f"outputs differ from the model with the other neurons silenced (relative error {err:.3g})",
               "each kept neuron keeps its row and bias entry in its layer AND its column in the next Linear, "
               "in the same order; the next layer's bias is copied whole")
        expect(all(p.requires_grad for p in out.parameters()),
               "some parameters of the new model do not require grad: it could not be fine-tuned",
               "build new layers and copy values in under torch.no_grad(); do not detach them")
        with torch.no_grad():
            for p in out.parameters():
                p.add_(1.0)
        expect(same(before, dict(model.state_dict())), "changing the new model changed the old one: they share memory",
               "deep-copy the model and copy the kept values into new layers")
    return Case(label, run)


def _shrink_cases() -> list[Case]:
    g = _gen(220)
    three = _mlp(221, (6, 8, 5, 3))
    deep = _mlp(222, (10, 12, 9, 7, 4))
    return [
        _shrink_case("6 -> 8 -> 5 -> 3, cut the first hidden layer only", three, {"fc1": [0, 2, 3, 7]},
                     torch.randn(9, 6, generator=g)),
        _shrink_case("cut the second hidden layer only", three, {"fc2": [1, 4]}, torch.randn(9, 6, generator=g)),
        _shrink_case("cut both hidden layers (the middle one loses rows AND columns)", three,
                     {"fc1": torch.tensor([1, 5, 6]), "fc2": torch.tensor([0, 2, 3])}, torch.randn(9, 6, generator=g)),
        _shrink_case("keep {} (nothing removed, still a copy)", three, {}, torch.randn(4, 6, generator=g)),
        _shrink_case("three hidden layers, unsorted keep", deep,
                     {"fc1": [11, 0, 5, 3], "fc2": [8, 1], "fc3": [6, 2, 4]}, torch.randn(7, 10, generator=g)),
        _shrink_case("a Flatten first and Dropout after each ReLU",
                     _mlp(223, (16, 10, 8, 3), flatten=True, dropout=True),
                     {"fc1": [0, 1, 2, 9], "fc2": [7]}, torch.randn(5, 1, 4, 4, generator=g)),
        _shrink_case("LeNet-300-100 sizes, 90 % of the neurons removed", _mlp(224, (784, 300, 100, 10), flatten=True),
                     {"fc1": torch.randperm(300, generator=g)[:30].sort().values,
                      "fc2": torch.randperm(100, generator=g)[:10].sort().values},
                     torch.rand(6, 1, 28, 28, generator=g)),
        _shrink_case("float64 model", _mlp(225, (4, 6, 5, 2), dtype=torch.float64), {"fc1": [2, 3], "fc2": [0, 4]},
                     torch.randn(5, 4, generator=g, dtype=torch.float64)),
    ]


def check_shrink_mlp(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``shrink_mlp(model, keep)``: a NEW smaller nn.Sequential computing (to 1e-5) what ``model`` computes
    with only the neurons ``keep[name]`` of each listed hidden Linear; ``model`` untouched."""
    return run_check("shrink_mlp", fn, _shrink_cases, hint=_SHRINK_HINT,
                     passed="rows and next columns, middle layer cut twice, function to 1e-5, a copy", strict=strict)


# ============================================================================ train_group_lasso (capstone)
_PROX_HINT = ("each step: zero the grads, loss = F.cross_entropy(model(x), y) (the mean), backward, "
              "`p -= lr * p.grad` for every parameter, THEN for every hidden Linear (all but the last) shrink each "
              "neuron's group g = [W[j, :], b[j]] to `g * max(0, 1 - lr * lam / ‖g‖)`")


def _prox_data(seed: int, n: int, d: int, classes: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def _prox_case(label: str, sizes: tuple[int, ...], lam: float, lr: float, steps: int, seed: int,
               dtype=torch.float64, expect_dead: bool = False) -> Case:
    def run(fn):
        x, y = _prox_data(seed, 40, sizes[0], sizes[-1], dtype)
        model = _mlp(seed, sizes, dtype=dtype)
        want = reference_train_group_lasso(copy.deepcopy(model), x, y, lam, lr, steps)
        out = fn(model, x, y, lam, lr, steps)
        expect(out is model or out is None or isinstance(out, nn.Module),
               f"returned {type(out).__name__}, expected the trained model", "train in place and `return model`")
        got = model if out is None else out
        ref_params, got_params = dict(want.named_parameters()), dict(got.named_parameters())
        expect(set(ref_params) == set(got_params), "the model's parameters changed names or shapes",
               "train the model you were given, in place")
        names = [n for n, m in want.named_children() if isinstance(m, nn.Linear)]
        for layer_name in names[:-1]:
            ref_zero = torch.linalg.vector_norm(getattr(want, layer_name).weight.detach(), dim=1) == 0
            got_zero = torch.linalg.vector_norm(getattr(got, layer_name).weight.detach(), dim=1) == 0
            if expect_dead:
                expect(int(got_zero.sum()) > 0 or int(ref_zero.sum()) == 0,
                       f"{layer_name}: no neuron has exactly zero weights ({int(ref_zero.sum())} expected)",
                       "a penalty's (sub)gradient never lands exactly on 0: apply the PROXIMAL step "
                       "(block soft-thresholding) after the gradient step")
        for name, p in ref_params.items():
            q = got_params[name].detach()
            if not _close(q, p.detach(), 1e-5):
                hint = _PROX_HINT
                last = names[-1]
                if name.startswith(last + "."):
                    hint = "the output layer is not penalised: apply the proximal step to the hidden Linears only"
                expect(False, f"after {steps} steps {name} differs from the proximal-gradient result "
                              f"(max difference {(q.double() - p.detach().double()).abs().max().item():.3g})", hint)
    return Case(label, run)


def _prox_cases() -> list[Case]:
    return [
        _prox_case("lam = 0: plain full-batch gradient descent, 5 steps", (5, 6, 3), 0.0, 0.1, 5, 230),
        _prox_case("one step, lam 0.5, lr 0.1", (5, 6, 3), 0.5, 0.1, 1, 231),
        _prox_case("lam 0.5 kills some neurons: exact zeros", (6, 8, 3), 0.5, 0.2, 10, 232, expect_dead=True),
        _prox_case("two hidden layers, 20 steps", (6, 10, 7, 3), 0.5, 0.1, 20, 233, expect_dead=True),
        _prox_case("lr matters in the threshold (lr 0.02, lam 2)", (4, 6, 3), 2.0, 0.02, 8, 234),
        _prox_case("float32 model", (5, 7, 4), 1.0, 0.1, 6, 235, dtype=torch.float32),
        _prox_case("0 steps: the model is unchanged", (4, 5, 2), 1.0, 0.1, 0, 236),
    ]


def check_train_group_lasso(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``train_group_lasso(model, x, y, lam, lr, steps)``: full-batch proximal gradient descent with a
    group lasso over each hidden neuron's (weights, bias), matched parameter by parameter to 1e-5."""
    return run_check("train_group_lasso", fn, _prox_cases, hint=_PROX_HINT,
                     passed="gradient step then block soft-threshold lr·lam, hidden layers only, exact zeros",
                     strict=strict)


# ============================================================================ recursive_elimination
_RFE_HINT = ("start with every feature; while more than k are left: fit least squares WITH an intercept on the "
             "features left (e.g. sklearn's LinearRegression), drop the min(step, left - k) features with the "
             "smallest |coefficient|, and add 1 to the rank of every feature dropped so far; ranks start at 1")


def _rfe_data(seed: int, n: int, d: int, shift: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    base = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = base + 0.8 * base.roll(1, dims=1) + shift   # correlated neighbours and a nonzero mean
    w = torch.randn(d, generator=g, dtype=torch.float64)
    y = x @ w + 0.5 * torch.randn(n, generator=g, dtype=torch.float64) + 4.0
    return x, y


def _rfe_case(label: str, x: torch.Tensor, y: torch.Tensor, k: int, step: int) -> Case:
    def run(fn):
        want = reference_recursive_elimination(x, y, k, step)
        out = call(fn, x, y, k, step)
        d = x.shape[1]
        expect(isinstance(out, torch.Tensor) and tuple(out.shape) == (d,),
               f"returned {type(out).__name__}{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}, "
               f"expected a tensor of {d} ranks", _RFE_HINT)
        expect(not out.is_floating_point() and out.dtype != torch.bool,
               f"returned dtype {out.dtype}, expected integers",
               "ranks are integers (torch.long); a mask is not a ranking")
        got = out.long()
        if torch.equal(got, want):
            return
        hint = _RFE_HINT
        if int((got == 1).sum()) != k:
            hint = f"exactly k = {k} features have rank 1 (the ones kept)"
        elif torch.equal(got == 1, want == 1) is False and torch.equal(
                reference_recursive_elimination(-x, y, k, step) == 1, got == 1):
            hint = "use |coefficient|: a large negative coefficient is an important feature"
        elif torch.equal(got.max() + 1 - got, want):
            hint = "ranks run the other way: 1 = kept, the largest rank = eliminated FIRST"
        elif step > 1 and torch.equal(got, reference_recursive_elimination(x, y, k, 1)):
            hint = f"drop `step` = {step} features per round, not one"
        elif torch.equal(got == 1, want == 1):
            hint = ("the kept features are right; the ranks of the eliminated ones are not: "
                    "+1 to all dropped so far, each round")
        expect(False, f"ranking {describe_tensor(got, 12)}, expected {describe_tensor(want, 12)}", hint)
    return Case(label, run)


def _rfe_cases() -> list[Case]:
    x0, y0 = torch.tensor([[1., 0., 2.], [2., 1., 0.], [3., 1., 1.], [4., 3., 5.], [5., 2., 3.]],
                          dtype=torch.float64), \
        torch.tensor([2.1, 4.3, 5.9, 8.2, 9.8], dtype=torch.float64)
    cases = [_rfe_case("5 examples x 3 features, keep 1", x0, y0, 1, 1)]
    for i, (n, d, k, step) in enumerate([(60, 8, 3, 1), (60, 8, 3, 2), (80, 12, 4, 3), (100, 20, 5, 4),
                                         (50, 6, 6, 1), (200, 30, 1, 7)]):
        x, y = _rfe_data(240 + i, n, d)
        cases.append(_rfe_case(f"{n} examples x {d} features, keep {k}, step {step}", x, y, k, step))
    x, y = _rfe_data(250, 60, 10, shift=0.0)
    cases.append(_rfe_case("float32 features", x.float(), y.float(), 4, 1))
    return cases


def check_recursive_elimination(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``recursive_elimination(x, y, k, step)``: the ranks of scikit-learn's RFE with LinearRegression."""
    return run_check("recursive_elimination", fn, _rfe_cases, hint=_RFE_HINT,
                     passed="same ranks as sklearn's RFE(LinearRegression()), refit each round, step, intercept",
                     strict=strict)
