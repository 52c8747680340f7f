"""Checks for Lab 7 (pruning a small transformer language model).

=============================  ==============================================  ==================================
exercise                       contract                                        check
=============================  ==============================================  ==================================
``perplexity_from_logits``     ``(logits (..., V), targets (...)) -> float``:  :func:`check_perplexity_from_logits`
                               exp of the mean cross-entropy per position
``wanda_mask``                 ``(weight (out, in), input_norm (in,),          :func:`check_wanda_mask`
                               sparsity) -> bool mask``: |W|·‖x‖, each row
                               loses exactly round(s·in) of its lowest
``n_m_mask``                   ``(weight (out, in), n, m) -> bool mask``:       :func:`check_n_m_mask`
                               keep the n largest |w| of every m consecutive
                               inputs of each row
``sparsegpt_update``           ``(weight, hessian, keep) -> new weight``:       :func:`check_sparsegpt_update`
                               columns left to right, each pruned entry's
                               error spread on the columns to its right with
                               the upper Cholesky factor of H⁻¹
``remove_heads``               ``(attn, keep) -> attn`` with only heads         :func:`check_remove_heads`
                               ``keep``: rows of query/key/value, columns of
                               out; the kept heads compute what they did
``head_importance``            ``(model, x, y) -> (n_layer, n_head)``:          :func:`check_head_importance`
                               |∂L/∂ξ_h| of per-head gates ξ = 1 (Michel et
                               al. 2019), one batch
=============================  ==============================================  ==================================

The ``reference_*`` answers (:mod:`prunekit.checks.references.lab7`, re-exported here) wrap prunekit's
own functions (:mod:`prunekit.language`, :mod:`prunekit.sparsegpt`, :mod:`prunekit.heads`). Each check
prints one line and returns a :class:`~prunekit.checks.core.CheckResult`.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .. import heads
from ..chargpt import CausalSelfAttention, CharGPT
from ..masks import nm_mask, num_to_prune
from .core import Case, CheckFailed, CheckResult, as_mask, call, describe_tensor, expect, run_check
from .references.lab7 import (reference_head_importance, reference_n_m_mask, reference_perplexity_from_logits,
                              reference_remove_heads, reference_sparsegpt_update, reference_wanda_mask)

__all__ = [
    "check_perplexity_from_logits", "check_wanda_mask", "check_n_m_mask", "check_sparsegpt_update",
    "check_remove_heads", "check_head_importance",
    "reference_perplexity_from_logits", "reference_wanda_mask", "reference_n_m_mask", "reference_sparsegpt_update",
    "reference_remove_heads", "reference_head_importance",
]

# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "perplexity_from_logits": ["prunekit.language.perplexity", "prunekit.language.mean_loss"],
    "wanda_mask": ["prunekit.pruning.row_topk_mask", "prunekit.criteria.wanda"],
    "n_m_mask": ["prunekit.masks.nm_mask"],
    "sparsegpt_update": ["prunekit.sparsegpt.sparsegpt_layer", "prunekit.sparsegpt.sparsegpt_prune"],
    "remove_heads": ["prunekit.heads.remove_heads", "prunekit.heads.prune_heads"],
    "head_importance": ["prunekit.heads.head_importance"],
}


# Each statement of an exercise's contract and the labels of the cases that test it (tests/test_checks_contract.py).
CONTRACT = {
    "perplexity_from_logits": {
        "exp of the mean cross-entropy: known values": ["known answer", "perplexity 7", "perplexity 1"],
        "mean over every position of every sequence, then exp once": ["random logits (3, 8, 11)", "(4, 16, 65)"],
        "numerically stable for large logits": ["large logits"],
        "any leading shape: (N, V) with (N,) too": ["2-D logits"],
        "returns one number": ["random logits (1, 20, 5)"],
    },
    "wanda_mask": {
        "score |W_ij| times input_norm[j] (column j)": ["the input norms change the ranking", "uneven input norms"],
        "each row loses exactly round(sparsity * in)": ["random (8, 20)", "random (5, 7)"],
        "square weights: norms on columns, groups are rows": ["random (6, 6)", "random (10, 10)"],
        "sparsity 0 and 1": ["sparsity 0 keeps", "sparsity 1 prunes"],
    },
    "n_m_mask": {
        "n largest |w| of every m consecutive inputs per row": ["1 row of 8, 2:4", "random (4, 16), 2:4"],
        "absolute values": ["a large negative weight counts"],
        "other patterns: 4:8 and 1:4": ["4:8", "1:4"],
        "rows and groups when out is a multiple of m too": ["random (8, 8), 2:4", "random (12, 8), 2:4"],
    },
    "sparsegpt_update": {
        "the kept weights right of a pruned one compensate (known answer)": ["w2 becomes 1.5"],
        "nothing left of a pruned column moves": ["prune the LAST input"],
        "keep everything: unchanged": ["keep everything"],
        "column-wise OBS with the upper Cholesky factor of the inverse": ["random (8, 16)", "random (16, 32)"],
        "structured masks": ["2:4 mask"],
        "pruned entries exactly 0, float32, inputs unchanged": ["random (4, 8)"],
    },
    "remove_heads": {
        "rows of query/key/value, columns of out, biases kept": ["keep [0, 2]", "keep [1, 4, 5]"],
        "kept heads compute what they did (to 1e-5)": ["keep only head 3", "keep [1, 2]"],
        "keeping every head changes nothing": ["keep all four"],
        "one head left": ["keep [0]"],
    },
    "head_importance": {
        "|dL/dgate| per head, shape (n_layer, n_head)": ["2 layers x 4 heads", "3 layers x 4 heads"],
        "one layer, batch of 1": ["1 layer x 2 heads"],
        "many heads per layer": ["2 layers x 8 heads"],
    },
}


# ============================================================================ shared helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol))


def _tiny_gpt(seed: int, n_layer: int = 2, n_head: int = 4, d_model: int = 32) -> CharGPT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CharGPT(vocab_size=13, block_size=12, n_layer=n_layer, n_head=n_head, d_model=d_model, dropout=0.0)
        with torch.no_grad():  # GPT-2's init is tiny: spread the weights so heads differ clearly
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


# ============================================================================ perplexity_from_logits
_PPL_HINT = ("cross-entropy per position = -log_softmax(logits)[target]; average it over EVERY position "
             "(all sequences and all time steps), THEN take exp: `math.exp(F.cross_entropy(logits.reshape(-1, V), "
             "targets.reshape(-1)).item())`")


def _ppl_diagnose(got: float, logits: torch.Tensor, targets: torch.Tensor) -> str:
    nll = -torch.log_softmax(logits.double(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mean = nll.mean().item()
    if math.isclose(got, mean, rel_tol=1e-4):
        return "that is the mean cross-entropy (nats); perplexity is its exp"
    if math.isclose(got, 2 ** mean, rel_tol=1e-4):
        return "cross-entropy is in nats (natural log): take exp(mean), not 2 ** mean"
    if nll.dim() >= 2 and math.isclose(got, nll.mean(dim=-1).exp().mean().item(), rel_tol=1e-4):
        return ("you averaged one perplexity per sequence: average the cross-entropy over all positions first, "
                "then exp once (exp of a mean is not the mean of exps)")
    if math.isclose(got, math.exp(nll.sum().item()) if nll.sum() < 700 else math.inf, rel_tol=1e-4):
        return "mean, not sum: divide the total cross-entropy by the number of positions"
    return _PPL_HINT


def _ppl_case(label: str, logits: torch.Tensor, targets: torch.Tensor, expected: float | None = None) -> Case:
    def run(fn):
        out = call(fn, logits, targets)
        if isinstance(out, torch.Tensor):
            expect(out.numel() == 1, f"returned a tensor of shape {tuple(out.shape)}, expected one number",
                   "average over every position: the result is a single number")
            out = out.item()
        expect(isinstance(out, (float, int)) and not isinstance(out, bool),
               f"returned {type(out).__name__}, expected a float", "return a Python float (`.item()`)")
        want = reference_perplexity_from_logits(logits, targets) if expected is None else expected
        expect(math.isfinite(out), f"returned {out} (expected {want:.6g})",
               "large logits overflow exp(): use log_softmax / F.cross_entropy, never log(softmax(...))")
        expect(math.isclose(out, want, rel_tol=1e-4), f"returned {out:.6g}, expected {want:.6g}",
               _ppl_diagnose(out, logits, targets))
    return Case(label, run)


def _ppl_cases() -> list[Case]:
    g = _gen(71)
    uniform = torch.zeros(2, 5, 7)
    certain = torch.full((1, 4, 3), -30.0).scatter_(-1, torch.tensor([[[0], [2], [1], [1]]]), 30.0)
    cases = [
        _ppl_case("uniform logits over 7 characters (perplexity 7)", uniform, torch.randint(7, (2, 5), generator=g),
                  expected=7.0),
        _ppl_case("a model that is sure and right (perplexity 1)", certain, torch.tensor([[0, 2, 1, 1]]),
                  expected=1.0),
        _ppl_case("1 sequence of 2 positions, known answer", torch.log(torch.tensor([[[0.5, 0.25, 0.25],
                                                                                      [0.1, 0.1, 0.8]]])),
                  torch.tensor([[0, 2]]), expected=math.exp(-(math.log(0.5) + math.log(0.8)) / 2)),
    ]
    for i, (shape, scale) in enumerate([((3, 8, 11), 2.0), ((4, 16, 65), 3.0), ((1, 20, 5), 1.0), ((6, 3, 9), 4.0)]):
        logits = torch.randn(shape, generator=g) * scale
        targets = torch.randint(shape[-1], shape[:-1], generator=g)
        cases.append(_ppl_case(f"random logits {shape}", logits, targets))
    big = torch.randn(2, 6, 10, generator=g) * 400             # exp(400) overflows float32
    cases.append(_ppl_case("large logits (x400): numerically stable?", big, torch.randint(10, (2, 6), generator=g)))
    flat = torch.randn(12, 6, generator=g)
    cases.append(_ppl_case("2-D logits (N, V) with targets (N,)", flat, torch.randint(6, (12,), generator=g)))
    return cases


def check_perplexity_from_logits(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``perplexity_from_logits(logits (..., V), targets (...)) -> float``: exp of the mean cross-entropy."""
    return run_check("perplexity_from_logits", fn, _ppl_cases, hint=_PPL_HINT,
                     passed="known values, batches of sequences, mean before exp, large logits", strict=strict)


# ============================================================================ wanda_mask
_WANDA_HINT = ("score = |W| * input_norm broadcast along the rows (`weight.abs() * input_norm.view(1, -1)`: "
               "input j's norm multiplies column j); then, in EACH ROW separately, prune the "
               "round(sparsity * in_features) lowest scores (e.g. `scores.sort(dim=1, stable=True)`)")


def _wanda_diagnose(got: torch.Tensor, weight: torch.Tensor, norm: torch.Tensor, sparsity: float) -> str:
    from ..masks import topk_mask

    scores = weight.abs() * norm.view(1, -1)
    k = num_to_prune(weight.shape[1], sparsity)
    per_column = reference_wanda_mask(scores.T, torch.ones(scores.shape[0]), sparsity).T
    if bool(torch.equal(got, per_column)):
        return "you compared weights within columns (dim 0); Wanda's groups are the output ROWS (sort along dim 1)"
    pruned_per_row = (~got).sum(dim=1)
    if not bool((pruned_per_row == k).all()):
        if bool(torch.equal(got, topk_mask(scores, sparsity))):
            return ("Wanda compares weights within each output row, not across the whole layer: every row "
                    f"must lose exactly {k} weights")
        return (f"every row must lose exactly round(sparsity * in_features) = {k} weights; "
                f"yours lose {describe_tensor(pruned_per_row)}")
    if bool(torch.equal(got, reference_wanda_mask(weight, norm ** 2, sparsity))):
        return "use the input norm ‖x_j‖ itself, not its square"
    if bool(torch.equal(got, reference_wanda_mask(weight, torch.ones_like(norm), sparsity))):
        return "that is plain magnitude pruning: multiply |W| by the input norms"
    if weight.shape[0] == weight.shape[1]:
        rows = weight.abs() * norm.view(-1, 1)                 # norm j on ROW j: the shapes allow it when square
        if bool(torch.equal(got, reference_wanda_mask(rows, torch.ones_like(norm), sparsity))):
            return "input j's norm multiplies COLUMN j of W (W is (out, in)): use `input_norm.view(1, -1)`"
    if bool(torch.equal(got, ~reference_wanda_mask(weight, norm, 1 - sparsity))):
        return "you kept the lowest scores; prune (set False) the lowest, keep the highest"
    return _WANDA_HINT


def _wanda_case(label: str, weight: torch.Tensor, norm: torch.Tensor, sparsity: float, expected=None) -> Case:
    def run(fn):
        out = as_mask(call(fn, weight, norm, sparsity), tuple(weight.shape))
        want = reference_wanda_mask(weight, norm, sparsity) if expected is None else torch.tensor(expected)
        if not bool(torch.equal(out, want)):
            raise CheckFailed(f"mask {describe_tensor(out.int())}, expected {describe_tensor(want.int())}",
                              _wanda_diagnose(out, weight, norm, sparsity))
    return Case(label, run)


def _wanda_cases() -> list[Case]:
    g = _gen(72)
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5], [0.2, 0.1, -4.0, 1.0]])
    norm = torch.tensor([10.0, 1.0, 0.1, 2.0])                 # scores: [10, 2, .3, 1], [2, .1, .4, 2]
    cases = [
        _wanda_case("2x4, the input norms change the ranking", w, norm, 0.5,
                    expected=[[True, True, False, False], [True, False, False, True]]),
        _wanda_case("sparsity 0 keeps everything", w, norm, 0.0),
        _wanda_case("sparsity 1 prunes everything", w, norm, 1.0),
    ]
    for i, (shape, s) in enumerate([((6, 6), 0.5), ((8, 20), 0.3), ((16, 32), 0.7), ((5, 7), 0.5), ((10, 10), 0.6)]):
        weight = torch.randn(shape, generator=g)
        input_norm = (torch.rand(shape[1], generator=g)
                      * torch.logspace(-1, 1, shape[1])[torch.randperm(shape[1], generator=g)])
        cases.append(_wanda_case(f"random {shape}, uneven input norms, sparsity {s}", weight, input_norm, s))
    return cases


def check_wanda_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``wanda_mask(weight (out, in), input_norm (in,), sparsity) -> bool mask``: |W|·‖x‖, per row."""
    return run_check("wanda_mask", fn, _wanda_cases, hint=_WANDA_HINT,
                     passed="|W|·‖x‖ scores, exact count per row, s = 0 and 1", strict=strict)


# ============================================================================ n_m_mask
_NM_HINT = ("group the inputs of each row in blocks of m CONSECUTIVE columns: `scores.view(out, in // m, m)`; "
            "keep the n largest |w| of each block (`topk(n, dim=-1)` or a sort), prune the other m - n")


def _nm_diagnose(got: torch.Tensor, weight: torch.Tensor, n: int, m: int) -> str:
    out_f, in_f = weight.shape
    per_group = got.view(out_f, in_f // m, m).sum(-1)
    if not bool((per_group == n).all()):
        if bool((got.T.reshape(in_f, out_f // m, m).sum(-1) == n).all()) if out_f % m == 0 else False:
            return "the groups run along the INPUTS of each row (dim 1, consecutive columns), not down the columns"
        strided = got.view(out_f, m, in_f // m).sum(1)
        if bool((strided == n).all()):
            return ("a group is m CONSECUTIVE inputs (columns 0-3, 4-7, ...), not every (in/m)-th one: "
                    "`view(out, in // m, m)`, not `view(out, m, in // m)`")
        return f"every block of {m} consecutive inputs must keep exactly {n}; yours keep {describe_tensor(per_group)}"
    if bool(torch.equal(got, ~reference_n_m_mask(-weight.abs(), m - n, m))) and not bool(
            torch.equal(got, reference_n_m_mask(weight, n, m))):
        return "you kept the smallest |w|; keep the n LARGEST of each group"
    return "keep the n largest |w| (absolute values: a large negative weight matters too)"


def _nm_case(label: str, weight: torch.Tensor, n: int, m: int, expected=None) -> Case:
    def run(fn):
        out = as_mask(call(fn, weight, n, m), tuple(weight.shape))
        want = reference_n_m_mask(weight, n, m) if expected is None else torch.tensor(expected)
        if not bool(torch.equal(out, want)):
            raise CheckFailed(f"mask {describe_tensor(out.int())}, expected {describe_tensor(want.int())}",
                              _nm_diagnose(out, weight, n, m))
    return Case(label, run)


def _nm_cases() -> list[Case]:
    g = _gen(73)
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 4.0, 0.0, -0.2, 1.0]])
    cases = [
        _nm_case("1 row of 8, 2:4 (a large negative weight counts)", w, 2, 4,
                 expected=[[False, True, True, False, True, False, False, True]]),
        _nm_case("the same row, 4:8", w, 4, 8, expected=[[False, True, True, False, True, False, False, True]]),
        _nm_case("the same row, 1:4", w, 1, 4, expected=[[False, True, False, False, True, False, False, False]]),
    ]
    for shape, (n, m) in [((4, 16), (2, 4)), ((8, 8), (2, 4)), ((16, 32), (4, 8)), ((3, 24), (2, 4)),
                          ((12, 8), (2, 4))]:
        cases.append(_nm_case(f"random {shape}, {n}:{m}", torch.randn(shape, generator=g), n, m))
    return cases


def check_n_m_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``n_m_mask(weight (out, in), n, m) -> bool mask``: n largest |w| of every m consecutive inputs."""
    return run_check("n_m_mask", fn, _nm_cases, hint=_NM_HINT,
                     passed="2:4, 4:8 and 1:4, consecutive groups per row, |w|", strict=strict)


# ============================================================================ sparsegpt_update
_SGPT_HINT = ("U = torch.linalg.cholesky(torch.linalg.inv(H), upper=True); W = weight.double().clone(); for q in "
              "range(in): err = W[:, q] * (~keep[:, q]) / U[q, q]; W[:, q:] -= err[:, None] * U[q, q:][None, :]; "
              "finally W[~keep] = 0 and return W.float()")


def _sgpt_variants(weight: torch.Tensor, hessian: torch.Tensor, keep: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """Outputs of typical mistakes, with the hint each one deserves."""
    W, H, keep = weight.double(), hessian.double(), keep.bool()
    Hinv = torch.linalg.inv(H)
    U = torch.linalg.cholesky(Hinv, upper=True)
    variants = [(W * keep, "the kept weights must change too: spread each pruned weight's error onto the "
                           "columns to its right (that compensation is SparseGPT's point; with the lower Cholesky "
                           "factor, zero right of its diagonal, nothing moves either: use upper=True)")]
    once = W.clone()                                           # one OBS step per column, all from the full H⁻¹
    for q in range(W.shape[1]):
        once -= (W[:, q] * ~keep[:, q] / Hinv[q, q])[:, None] * Hinv[q][None, :]
    variants.append((once * keep, "prune the columns one after another: after column q only columns q+1... may move, "
                                  "which is what the rows of the upper Cholesky factor U of H⁻¹ give "
                                  "(not H⁻¹'s rows)"))
    lower = torch.linalg.cholesky(Hinv)                        # lower factor: L[q, q:] is zero right of the diagonal
    wrong_h = torch.linalg.cholesky(H, upper=True)             # factor of H instead of H⁻¹
    for factor, text in ((wrong_h, "factor H⁻¹ (the inverse Hessian), not H"),
                         (lower, "use the UPPER Cholesky factor (`upper=True`): its row q runs to the right of q")):
        Wv = W.clone()
        for q in range(W.shape[1]):
            err = Wv[:, q] * ~keep[:, q] / factor[q, q]
            Wv[:, q:] -= err[:, None] * factor[q, q:][None, :]
        variants.append((Wv * keep, text))
    Wv = W.clone()
    for q in range(W.shape[1]):                                # forgot the division by U[q, q]
        Wv[:, q:] -= (Wv[:, q] * ~keep[:, q])[:, None] * U[q, q:][None, :]
    variants.append((Wv * keep, "divide the error by U[q, q]: err = W[:, q] / U[q, q] for the pruned entries"))
    return variants


def _sgpt_case(label: str, weight: torch.Tensor, hessian: torch.Tensor, keep: torch.Tensor, expected=None) -> Case:
    def run(fn):
        out = call(fn, weight, hessian, keep)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor",
               "return the new weight matrix")
        expect(tuple(out.shape) == tuple(weight.shape), f"returned shape {tuple(out.shape)}, "
               f"expected {tuple(weight.shape)}", "return a weight shaped like the input (out, in)")
        expect(out.dtype == torch.float32, f"returned dtype {out.dtype}, expected torch.float32",
               "compute in float64 if you like, but return `.float()`")
        expect(bool((out[~keep.bool()] == 0).all()), "some pruned entries (keep False) are not exactly 0",
               "set `W[~keep] = 0` at the end: the pruned weights must be gone")
        want = reference_sparsegpt_update(weight, hessian, keep) if expected is None else torch.tensor(expected)
        scale = weight.abs().max().item()
        if not _close(out, want, rtol=1e-3, atol=1e-4 * scale):
            hint = _SGPT_HINT
            for variant, text in _sgpt_variants(weight, hessian, keep):
                if _close(out, variant.float(), rtol=1e-3, atol=1e-4 * scale):
                    hint = text
                    break
            raise CheckFailed(f"weight {describe_tensor(out)}, expected {describe_tensor(want)}", hint)
    return Case(label, run)


def _spd(n: int, g: torch.Generator, correlated: float = 0.5) -> torch.Tensor:
    x = torch.randn(4 * n, n, generator=g, dtype=torch.float64)
    x = x + correlated * torch.randn(4 * n, 1, generator=g, dtype=torch.float64)   # shared component
    h = x.T @ x / (4 * n)
    return (h + 0.01 * torch.diag(h).mean() * torch.eye(n, dtype=torch.float64)).float()


def _sgpt_cases() -> list[Case]:
    g = _gen(74)
    H2 = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    # W = [[1, 1]], prune the first: the best fix moves w2 by w1·H[0,1]/H[1,1] = 0.5, giving 1.5.
    cases = [
        _sgpt_case("1x2, prune the first of two correlated inputs (w2 becomes 1.5)", torch.tensor([[1.0, 1.0]]), H2,
                   torch.tensor([[False, True]]), expected=[[0.0, 1.5]]),
        _sgpt_case("1x2, prune the LAST input: nothing right of it can compensate", torch.tensor([[1.0, 1.0]]), H2,
                   torch.tensor([[True, False]]), expected=[[1.0, 0.0]]),
        _sgpt_case("keep everything: the weight is unchanged", torch.tensor([[0.3, -0.2, 0.5], [1.0, 2.0, -1.0]]),
                   _spd(3, g), torch.ones(2, 3, dtype=torch.bool)),
    ]
    for shape, density in [((4, 8), 0.5), ((8, 16), 0.5), ((6, 12), 0.3), ((16, 32), 0.6)]:
        weight = torch.randn(shape, generator=g)
        keep = torch.rand(shape, generator=g) < density
        cases.append(_sgpt_case(f"random {shape}, random mask, correlated inputs", weight, _spd(shape[1], g), keep))
    weight = torch.randn(8, 16, generator=g)
    keep = nm_mask(weight.abs(), 2, 4, dim=1)
    cases.append(_sgpt_case("(8, 16) with a 2:4 mask", weight, _spd(16, g, correlated=1.0), keep))
    return cases


def check_sparsegpt_update(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``sparsegpt_update(weight (out, in), hessian (in, in), keep) -> new weight``: SparseGPT's column-wise
    OBS updates with the upper Cholesky factor of H⁻¹, for a given mask."""
    return run_check("sparsegpt_update", fn, _sgpt_cases, hint=_SGPT_HINT,
                     passed="known 2-input answer, compensation to the right only, Cholesky rows, 2:4 mask",
                     strict=strict)


# ============================================================================ remove_heads
_HEADS_HINT = ("head h owns features h*head_dim ... (h+1)*head_dim - 1: keep those ROWS of query, key and value "
               "(weights and biases) and those COLUMNS of out (its bias stays whole); build new nn.Linear layers "
               "of the smaller sizes and copy the slices in")


def _gated_output(attn: CausalSelfAttention, x: torch.Tensor, keep: list[int]) -> torch.Tensor:
    gate = torch.zeros(attn.n_head)
    gate[list(keep)] = 1.0
    handle = attn.out.register_forward_pre_hook(lambda m, i: (i[0] * gate.repeat_interleave(attn.head_dim),))
    try:
        with torch.no_grad():
            return attn(x)
    finally:
        handle.remove()


def _heads_case(label: str, n_head: int, head_dim: int, keep: list[int], seed: int) -> Case:
    def run(fn):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            attn = CausalSelfAttention(d_model=12, n_head=n_head, head_dim=head_dim).eval()
            with torch.no_grad():
                for p in attn.parameters():
                    p.normal_(0, 0.5)
            x = torch.randn(2, 5, 12)
        want = _gated_output(attn, x, keep)
        original = copy.deepcopy(attn)
        out = fn(attn, list(keep))
        out = attn if out is None else out
        expect(isinstance(out, CausalSelfAttention), f"returned {type(out).__name__}, expected the attention module",
               "return the attention module (changed in place or a new CausalSelfAttention)")
        width = len(keep) * head_dim
        for name in ("query", "key", "value"):
            layer = getattr(out, name)
            expect(tuple(layer.weight.shape) == (width, 12),
                   f"{name}.weight has shape {tuple(layer.weight.shape)}, expected {(width, 12)}",
                   f"{name} keeps head_dim ROWS per kept head ({len(keep)} x {head_dim}); its inputs stay d_model")
        expect(tuple(out.out.weight.shape) == (12, width),
               f"out.weight has shape {tuple(out.out.weight.shape)}, expected {(12, width)}",
               "out loses COLUMNS (its inputs are the concatenated heads); its rows (d_model outputs) stay")
        expect(out.n_head == len(keep), f"n_head is {out.n_head}, expected {len(keep)}")
        for name in ("query", "key", "value", "out"):
            expect(getattr(out, name).bias is not None, f"{name} lost its bias",
                   "keep the biases: slice query/key/value's bias like their rows; out's bias stays whole")
        with torch.no_grad():
            got = out(x)
        if not _close(got, want, rtol=1e-5, atol=1e-5):
            hint = _HEADS_HINT
            expect(not _close(got, original(x), rtol=1e-5, atol=1e-5) or len(keep) == n_head,
                   "the output did not change at all", "did you copy the original layers back?")
            if not _close(out.out.bias, original.out.bias):
                hint = "out's bias belongs to no head: keep it as it is"
            elif _close(out.query.weight, original.query.weight[torch.cat(
                    [torch.arange(h, n_head * head_dim, n_head) for h in keep])]):
                hint = ("head h's features are CONTIGUOUS: h*head_dim ... (h+1)*head_dim - 1 (the model reshapes "
                        "(B, T, n_head*head_dim) to (B, T, n_head, head_dim)), not every n_head-th feature")
            raise CheckFailed(f"kept heads {keep}: output differs from the original with the other heads silenced "
                              f"(max difference {(got - want).abs().max().item():.3g})", hint)
    return Case(label, run)


def _heads_cases() -> list[Case]:
    return [
        _heads_case("4 heads of 3, keep [0, 2]", 4, 3, [0, 2], 0),
        _heads_case("4 heads of 3, keep all four", 4, 3, [0, 1, 2, 3], 1),
        _heads_case("4 heads of 3, keep only head 3", 4, 3, [3], 2),
        _heads_case("6 heads of 2, keep [1, 4, 5]", 6, 2, [1, 4, 5], 3),
        _heads_case("3 heads of 4, keep [1, 2]", 3, 4, [1, 2], 4),
        _heads_case("2 heads of 6, keep [0]", 2, 6, [0], 5),
    ]


def check_remove_heads(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``remove_heads(attn, keep) -> attn``: only heads ``keep`` remain and compute what they did."""
    return run_check("remove_heads", fn, _heads_cases, hint=_HEADS_HINT,
                     passed="shapes, biases, kept heads' output to 1e-5, contiguous head slices", strict=strict)


# ============================================================================ head_importance
_IMP_HINT = ("add a gate ξ (torch.ones(n_head, requires_grad=True)) per layer, multiply each head's slice of out's "
             "INPUT by its gate (a forward pre-hook on attn.out, `x * gate.repeat_interleave(head_dim)`), compute the "
             "mean cross-entropy in eval mode, and return |dL/dξ| (torch.autograd.grad), stacked (n_layer, n_head)")


def _imp_case(label: str, seed: int, n_layer: int, n_head: int, batch: int) -> Case:
    def run(fn):
        model = _tiny_gpt(seed, n_layer=n_layer, n_head=n_head)
        g = _gen(seed)
        x = torch.randint(13, (batch, 12), generator=g)
        y = torch.randint(13, (batch, 12), generator=g)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        x_before, y_before = x.clone(), y.clone()
        out = fn(model, x, y)
        expect(torch.equal(x, x_before) and torch.equal(y, y_before), "your function changed x or y in place",
               "never write into the inputs")
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor (n_layer, n_head)",
               "stack one row of head scores per layer: torch.stack([...])")
        expect(tuple(out.shape) == (n_layer, n_head),
               f"returned shape {tuple(out.shape)}, expected {(n_layer, n_head)}",
               "one score per head: (n_layer, n_head)")
        expect(all(torch.equal(before[k], v) for k, v in model.state_dict().items()),
               "the model's weights changed", "only measure: no optimizer step, no in-place change")
        want = reference_head_importance(model, x, y)
        got = out.detach().float()
        if not _close(got, want, rtol=1e-3, atol=1e-6):
            hint = _IMP_HINT
            signed = _signed_importance(model, x, y)
            if _close(got.abs(), want, rtol=1e-3, atol=1e-6) or _close(got, signed, rtol=1e-3, atol=1e-6):
                hint = "take the absolute value |dL/dξ|: a head matters whichever way it pushes the loss"
            elif _close(got, want ** 2, rtol=1e-3, atol=1e-8):
                hint = "Michel et al. use |dL/dξ|, not its square"
            elif _close(got, want / want.norm(dim=1, keepdim=True), rtol=1e-3, atol=1e-6):
                hint = "return the raw |dL/dξ|; the per-layer normalisation comes later, when ranking heads"
            raise CheckFailed(f"scores {describe_tensor(got)}, expected {describe_tensor(want)}", hint)
    return Case(label, run)


def _signed_importance(model: CharGPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    layers = heads.attention_layers(model)
    gates = [torch.ones(a.n_head, requires_grad=True) for a in layers.values()]
    handles = [a.out.register_forward_pre_hook(heads._HeadGate(gate, a.head_dim))
               for gate, a in zip(gates, layers.values())]
    try:
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        return torch.stack(torch.autograd.grad(loss, gates))
    finally:
        for h in handles:
            h.remove()


def _imp_cases() -> list[Case]:
    return [_imp_case("2 layers x 4 heads, batch of 3", 0, 2, 4, 3),
            _imp_case("1 layer x 2 heads, batch of 1", 1, 1, 2, 1),
            _imp_case("3 layers x 4 heads, batch of 4", 2, 3, 4, 4),
            _imp_case("2 layers x 8 heads, batch of 2", 3, 2, 8, 2)]


def check_head_importance(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``head_importance(model, x, y) -> (n_layer, n_head)``: |∂L/∂ξ_h| of per-head gates (Michel et al.)."""
    return run_check("head_importance", fn, _imp_cases, hint=_IMP_HINT,
                     passed="gate gradients of every head, absolute values, weights untouched", strict=strict)
