"""Checks and reference implementations for Lab 2 (neuron pruning).

=======================  ==================================================  ===============================
exercise                 contract                                            check
=======================  ==================================================  ===============================
``apoz_scores``          ``(activations (N, units)) -> (units,)``: the        :func:`check_apoz_scores`
                         fraction of each unit's outputs exactly equal to 0
``neuron_l2_scores``     ``(weight (out, in)) -> (out,)``: ``‖W[j, :]‖₂``     :func:`check_neuron_l2_scores`
``remove_neurons``       ``(fc_in, fc_out, keep) -> (new_in, new_out)``: two  :func:`check_remove_neurons`
                         new, smaller ``nn.Linear`` computing what the
                         network computes with only neurons ``keep``
``group_lasso``          ``(weight (out, in)) -> scalar``: ``Σ_j ‖W[j, :]‖₂``  :func:`check_group_lasso`
                         differentiable, finite gradient at zero rows
``dead_neurons``         ``(weight, threshold) -> bool (out,)``: True where   :func:`check_dead_neurons`
                         ``‖W[j, :]‖₂ <= threshold``
``select_input_pixels``  ``(weight, k) -> bool (in,)``: True for exactly k     :func:`check_select_input_pixels`
                         input columns of largest ``‖W[:, i]‖₂``
=======================  ==================================================  ===============================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`; the
``reference_*`` functions are what :func:`~prunekit.checks.core.use_or_reference` falls back to.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn.utils import skip_init

from .core import Case, CheckResult, as_mask, call, describe_tensor, expect, same, snapshot
from .core import run_check

__all__ = [
    "check_apoz_scores", "check_neuron_l2_scores", "check_remove_neurons", "check_group_lasso",
    "check_dead_neurons", "check_select_input_pixels",
    "reference_apoz_scores", "reference_neuron_l2_scores", "reference_remove_neurons",
    "reference_group_lasso", "reference_dead_neurons", "reference_select_input_pixels",
]


# ============================================================================ reference implementations
def reference_apoz_scores(activations: torch.Tensor) -> torch.Tensor:
    """Average Percentage of Zeros (Hu et al. 2016, "Network Trimming"): for activations (N, units),
    ``apoz[j] = #{n : a[n, j] == 0} / N``, a float tensor (units,). High APoZ = rarely active unit."""
    return (activations.detach() == 0).float().mean(dim=0)


def reference_neuron_l2_scores(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each neuron's incoming weights: ``score[j] = ‖W[j, :]‖₂`` for a Linear weight (out, in)."""
    return torch.linalg.vector_norm(weight.detach(), dim=1)


@torch.no_grad()
def reference_remove_neurons(fc_in: nn.Linear, fc_out: nn.Linear, keep) -> tuple[nn.Linear, nn.Linear]:
    """Two new Linears for ``fc_in -> ReLU -> fc_out`` keeping hidden neurons ``keep`` (in that order):
    ``W_in[keep, :]``, ``b_in[keep]``, ``W_out[:, keep]``; ``b_out`` is unchanged. Inputs are not modified."""
    keep = torch.as_tensor(keep, dtype=torch.long, device=fc_in.weight.device)
    # skip_init: no random initialisation (every value is overwritten), so the global RNG is untouched
    new_in = skip_init(nn.Linear, fc_in.in_features, len(keep), bias=fc_in.bias is not None,
                       dtype=fc_in.weight.dtype, device=fc_in.weight.device)
    new_out = skip_init(nn.Linear, len(keep), fc_out.out_features, bias=fc_out.bias is not None,
                        dtype=fc_out.weight.dtype, device=fc_out.weight.device)
    new_in.weight.copy_(fc_in.weight.index_select(0, keep))
    new_out.weight.copy_(fc_out.weight.index_select(1, keep))
    if fc_in.bias is not None:
        new_in.bias.copy_(fc_in.bias.index_select(0, keep))
    if fc_out.bias is not None:
        new_out.bias.copy_(fc_out.bias)
    return new_in, new_out


def reference_group_lasso(weight: torch.Tensor) -> torch.Tensor:
    """Group lasso over the rows of a Linear weight (Yuan & Lin 2006; Wen et al. 2016):
    ``Σ_j ‖W[j, :]‖₂``, a differentiable scalar. ``vector_norm``'s gradient at a zero row is 0, not NaN."""
    return torch.linalg.vector_norm(weight, dim=1).sum()


def reference_dead_neurons(weight: torch.Tensor, threshold: float) -> torch.Tensor:
    """Bool (out,), True for the neurons whose incoming weights have ``‖W[j, :]‖₂ <= threshold``."""
    return torch.linalg.vector_norm(weight.detach(), dim=1) <= threshold


def reference_select_input_pixels(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Bool (in,) keeping exactly the ``k`` input columns with the largest ``‖W[:, i]‖₂`` (feature selection
    with the first layer; ties go to the lower index)."""
    norms = torch.linalg.vector_norm(weight.detach().double(), dim=0)
    keep = torch.zeros(norms.numel(), dtype=torch.bool)
    if k > 0:
        # a stable descending sort: among equal norms the lower index comes first
        order = torch.sort(norms.cpu(), descending=True, stable=True).indices
        keep[order[:k]] = True
    return keep.to(weight.device)


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


# ============================================================================ apoz_scores
_APOZ_HINT = ("APoZ of unit j is the fraction of the N examples where its output is exactly 0: "
              "`(activations == 0).float().mean(dim=0)`, shape (units,)")


def _apoz_case(label: str, acts: torch.Tensor, expected=None) -> Case:
    def run(fn):
        n, units = acts.shape
        out = call(fn, acts)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (n,) and n != units:
            expect(False, f"returned shape ({n},): one value per example",
                   "average over the examples (dim 0), not over the units: the result has one value per unit")
        if isinstance(out, torch.Tensor) and out.shape == (units,) and not out.is_floating_point():
            expect(False, f"returned dtype {out.dtype}: counts, not fractions",
                   "divide by the number of examples: `(activations == 0).float().mean(dim=0)`")
        got = _scores_out(out, units, "fraction", _APOZ_HINT, "convert before averaging: `(activations == 0).float()`")
        want = reference_apoz_scores(acts) if expected is None else torch.tensor(expected, dtype=torch.float64)
        hint = _APOZ_HINT
        if _close(got, 1 - want.double()):
            hint = "you returned the fraction of NON-zero outputs; APoZ counts the zeros"
        elif _close(got, (acts.detach() <= 0).double().mean(0)) or _close(got, (acts.detach() < 0).double().mean(0)):
            hint = "only outputs exactly equal to 0 count; negative values are not zeros: use `== 0`"
        elif _close(got, (acts.detach() == 0).double().sum(0)):
            hint = "that is the number of zeros; divide by N to get a fraction"
        elif n == units and _close(got, (acts.detach() == 0).double().mean(1)):
            hint = "you averaged over the units (dim 1); average over the examples (dim 0)"
        elif _close(got, (acts.detach().abs() < 1e-3).double().mean(0)):
            hint = "a tiny positive output is still an active unit: count exact zeros (`== 0`), no tolerance"
        expect(_close(got, want), f"got {describe_tensor(got)}, expected {describe_tensor(want.float())}", hint)
    return Case(label, run)


def _apoz_cases() -> list[Case]:
    cases = [
        _apoz_case("4 examples x 2 units", torch.tensor([[0., 1.], [0., 0.], [3., 2.], [0., 5.]]), [0.75, 0.25]),
        _apoz_case("3 x 3 (examples are rows, units are columns)",
                   torch.tensor([[0., 0., 0.], [1., 0., 0.], [2., 3., 0.]]), [1 / 3, 2 / 3, 1.0]),
        _apoz_case("a unit that never fires and one that always does", torch.tensor([[0., 2.], [0., 1.]]),
                   [1.0, 0.0]),
        _apoz_case("tiny positive outputs are not zeros", torch.tensor([[1e-8, 0.], [1e-4, 0.], [0., 7.]]),
                   [1 / 3, 2 / 3]),
        _apoz_case("not from a ReLU: negatives are not zeros", torch.tensor([[-1., 0.], [2., -3.]]), [0.0, 0.5]),
        _apoz_case("one example", torch.tensor([[0., 0.5, 0., 2.]]), [1.0, 0.0, 1.0, 0.0]),
        _apoz_case("float64 activations", torch.tensor([[0., 1.], [2., 0.], [0., 0.]], dtype=torch.float64),
                   [2 / 3, 2 / 3]),
    ]
    g = _gen(21)
    for i, (n, units) in enumerate([(50, 20), (7, 300), (128, 100), (20, 20)]):
        x = torch.relu(torch.randn(n, units, generator=g, dtype=torch.float64 if i == 1 else torch.float32))
        cases.append(_apoz_case(f"random ReLU outputs ({n}, {units})", x))
    return cases


def check_apoz_scores(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``apoz_scores(activations)``: for (N, units) activations, the float (units,) fraction of each
    unit's N outputs that are exactly zero (Hu et al. 2016)."""
    return run_check("apoz_scores", fn, _apoz_cases, hint=_APOZ_HINT,
                     passed="per unit over examples, exact zeros only, fractions, float64", strict=strict)


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
                   f"({fc_out.out_features},)", "fc_out's bias belongs to its outputs, which do not change: copy it whole")
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
        expect(err <= 1e-5, f"outputs differ from the network with the other neurons silenced (relative error {err:.3g})",
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


# ============================================================================ dead_neurons
_DEAD_HINT = ("a neuron is dead when the L2 norm of its incoming weights (its ROW of the (out, in) weight) is "
              "at most the threshold: `weight.norm(dim=1) <= threshold`, a bool tensor (out,)")


def _dead_case(label: str, weight: torch.Tensor, threshold: float, expected=None) -> Case:
    def run(fn):
        out = call(fn, weight, threshold)
        rows, cols = weight.shape
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (cols,) and rows != cols:
            expect(False, f"returned shape ({cols},): one value per input column",
                   "one answer per neuron: reduce each ROW (dim 1) of the weight")
        dead = _as_mask(out, (rows,), "your result")
        wd = weight.detach().double()
        norms = wd.norm(dim=1)
        want = norms <= threshold if expected is None else torch.tensor(expected, dtype=torch.bool)
        hint = _DEAD_HINT
        if torch.equal(dead, ~want):
            hint = "you marked the living neurons; return True for the DEAD ones (small norm)"
        elif torch.equal(dead, norms < threshold):
            hint = "a norm exactly equal to the threshold counts as dead: use <="
        elif torch.equal(dead, wd.abs().sum(1) <= threshold):
            hint = "that is the L1 norm; use the L2 norm of each row"
        elif torch.equal(dead, (wd ** 2).sum(1) <= threshold):
            hint = "compare the norm itself (take the square root), not the squared norm"
        elif rows == cols and torch.equal(dead, wd.norm(dim=0) <= threshold):
            hint = "you used columns; a neuron's incoming weights are its ROW"
        elif torch.equal(dead, (wd.abs() <= threshold).all(1)):
            hint = "compare the norm of the whole row with the threshold, not each weight"
        expect(torch.equal(dead, want), f"got {describe_tensor(dead.int())}, expected {describe_tensor(want.int())}",
               hint)
    return Case(label, run)


def _dead_cases() -> list[Case]:
    # dyadic values, so the norms are exact in float32 too: 5, 0, 2^-7, 0.625, 0.53, 0.75
    w = torch.tensor([[3., 4.], [0., 0.], [0.0078125, 0.], [0.375, 0.5], [0.375, 0.375], [0.75, 0.]])
    cases = [
        _dead_case("6 neurons, threshold 0.625 (a norm of exactly 0.625 is dead)", w, 0.625, [0, 1, 1, 1, 1, 0]),
        _dead_case("threshold 0: only rows of zeros", w, 0.0, [0, 1, 0, 0, 0, 0]),
        _dead_case("threshold above every norm", w, 10.0, [1] * 6),
        _dead_case("square weight: rows, not columns", torch.tensor([[0.1, 0.0], [5.0, 0.0]]), 1.0, [1, 0]),
        _dead_case("negative weights", torch.tensor([[-0.2, -0.1], [-3.0, 0.0]]), 0.5, [1, 0]),
        _dead_case("a row of many small weights is not dead", torch.full((2, 100), 0.05).index_fill(0, torch.tensor([1]), 0.0),
                   0.1, [0, 1]),
        _dead_case("an nn.Parameter, float64",
                   nn.Parameter(torch.tensor([[1e-4, 0.0], [1.0, 1.0]], dtype=torch.float64)), 1e-3, [1, 0]),
    ]
    g = _gen(30)
    for shape in [(300, 784), (100, 300), (16, 5)]:
        w = torch.randn(shape, generator=g) * 0.05
        w[torch.rand(shape[0], generator=g) < 0.4] *= 1e-4   # dead-ish rows, as after group lasso
        norms = w.double().norm(dim=1).sort().values
        threshold = float((norms[len(norms) // 3] + norms[len(norms) // 3 + 1]) / 2)
        cases.append(_dead_case(f"random {shape}, threshold {threshold:.3g}", w, threshold))
    return cases


def check_dead_neurons(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``dead_neurons(weight, threshold)``: bool (out,), True where ``‖W[j, :]‖₂ <= threshold``."""
    return run_check("dead_neurons", fn, _dead_cases, hint=_DEAD_HINT,
                     passed="row L2 norms, <= threshold, True = dead", strict=strict)


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
            expect(torch.equal(keep, want), f"got {describe_tensor(keep.int())}, expected {describe_tensor(want.int())}",
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
        _pixel_case("L2, not L1: [3, 0, 0, 0] beats [1, 1, 1, 1]", torch.tensor([[3., 1.], [0., 1.], [0., 1.], [0., 1.]]),
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
