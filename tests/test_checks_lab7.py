"""Lab 7's checks accept the references and learner-style correct answers, and reject known-wrong ones.
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from checks_helpers import cases, rejected

from prunekit import checks


def _check(name):
    return getattr(checks, f"check_{name}")


# ============================================================================ perplexity_from_logits
def _nll(logits, targets):
    return -torch.log_softmax(logits.double(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def ppl_learner_style(logits, targets):                   # correct: log-sum-exp written out
    logits = logits.double()
    log_z = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(torch.exp((log_z - picked).mean()))


def ppl_returns_loss(logits, targets):
    return _nll(logits, targets).mean().item()


def ppl_base_two(logits, targets):
    return 2 ** _nll(logits, targets).mean().item()


def ppl_per_sequence(logits, targets):
    nll = _nll(logits, targets)
    return nll.mean(-1).exp().mean().item() if nll.dim() > 1 else nll.mean().exp().item()


def ppl_sum(logits, targets):
    return math.exp(min(_nll(logits, targets).sum().item(), 700))


def ppl_naive_softmax(logits, targets):                   # overflows on large logits
    p = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    return torch.exp(-torch.log(p.gather(-1, targets.unsqueeze(-1))).mean()).item()


# ============================================================================ wanda_mask
def _row_prune(scores, sparsity):
    k = round(sparsity * scores.shape[1])
    lowest = torch.sort(scores, dim=1, stable=True).indices[:, :k]
    return torch.ones_like(scores, dtype=torch.bool).scatter_(1, lowest, False)


def wanda_learner_style(weight, input_norm, sparsity):    # correct: argsort per row, written differently
    scores = weight.abs() * input_norm[None, :]
    k = int(round(sparsity * weight.shape[1]))
    mask = torch.ones(weight.shape, dtype=torch.bool)
    for i in range(weight.shape[0]):
        order = torch.argsort(scores[i], stable=True)
        mask[i, order[:k]] = False
    return mask


def wanda_global(weight, input_norm, sparsity):
    scores = (weight.abs() * input_norm).flatten()
    k = round(sparsity * scores.numel())
    mask = torch.ones_like(scores, dtype=torch.bool)
    mask[torch.sort(scores, stable=True).indices[:k]] = False
    return mask.view_as(weight)


def wanda_squared_norm(weight, input_norm, sparsity):
    return _row_prune(weight.abs() * input_norm ** 2, sparsity)


def wanda_magnitude_only(weight, input_norm, sparsity):
    return _row_prune(weight.abs(), sparsity)


def wanda_norm_on_rows(weight, input_norm, sparsity):
    return _row_prune(weight.abs() * input_norm.view(-1, 1), sparsity)


def wanda_per_column(weight, input_norm, sparsity):
    return _row_prune((weight.abs() * input_norm).T.contiguous(), sparsity).T


def wanda_keeps_lowest(weight, input_norm, sparsity):
    return ~_row_prune(weight.abs() * input_norm, 1 - sparsity)


# ============================================================================ n_m_mask
def nm_learner_style(weight, n, m):                       # correct: topk per group
    out_f, in_f = weight.shape
    groups = weight.abs().reshape(out_f, in_f // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(out_f, in_f)


def nm_strided(weight, n, m):
    out_f, in_f = weight.shape
    groups = weight.abs().reshape(out_f, m, in_f // m).transpose(1, 2)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.transpose(1, 2).reshape(out_f, in_f)


def nm_down_columns(weight, n, m):                        # groups of m along dim 0 (crashes on 1 row)
    return nm_learner_style(weight.T.contiguous(), n, m).T


def nm_signed(weight, n, m):
    out_f, in_f = weight.shape
    groups = weight.reshape(out_f, in_f // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(out_f, in_f)


def nm_keeps_smallest(weight, n, m):
    out_f, in_f = weight.shape
    groups = weight.abs().reshape(out_f, in_f // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(n, dim=-1, largest=False).indices, True)
    return keep.reshape(out_f, in_f)


def nm_unstructured(weight, n, m):
    return _row_prune(weight.abs(), 1 - n / m)


# ============================================================================ sparsegpt_update
def _sgpt(weight, hessian, keep, factor="upper", divide=True, mask_end=True):
    W = weight.double().clone()
    Hinv = torch.linalg.inv(hessian.double())
    U = {"upper": torch.linalg.cholesky(Hinv, upper=True), "lower": torch.linalg.cholesky(Hinv),
         "hessian": torch.linalg.cholesky(hessian.double(), upper=True)}[factor]
    for q in range(W.shape[1]):
        err = W[:, q] * ~keep[:, q]
        if divide:
            err = err / U[q, q]
        W[:, q:] -= err[:, None] * U[q, q:][None, :]
    if mask_end:
        W[~keep] = 0
    return W.float()


def sgpt_learner_style(weight, hessian, keep):            # correct: re-inverts the remaining block each column
    W = weight.double().clone()
    H = hessian.double()
    for q in range(W.shape[1]):
        Hinv = torch.linalg.inv(H[q:, q:])
        err = W[:, q] * ~keep[:, q] / Hinv[0, 0]
        W[:, q:] -= err[:, None] * Hinv[0][None, :]
    W[~keep] = 0
    return W.float()


def sgpt_no_compensation(weight, hessian, keep):
    return weight * keep


def sgpt_full_inverse_rows(weight, hessian, keep):
    W = weight.double()
    Hinv = torch.linalg.inv(hessian.double())
    new = W.clone()
    for q in range(W.shape[1]):
        new -= (W[:, q] * ~keep[:, q] / Hinv[q, q])[:, None] * Hinv[q][None, :]
    return (new * keep).float()


def sgpt_lower_factor(weight, hessian, keep):
    return _sgpt(weight, hessian, keep, factor="lower")


def sgpt_factor_of_h(weight, hessian, keep):
    return _sgpt(weight, hessian, keep, factor="hessian")


def sgpt_no_division(weight, hessian, keep):
    return _sgpt(weight, hessian, keep, divide=False)


def sgpt_zeros_left(weight, hessian, keep):              # forgets the final W[~keep] = 0 and rounds badly
    return _sgpt(weight, hessian, keep, mask_end=False) + 1e-3 * (~keep)


def sgpt_float64(weight, hessian, keep):
    return _sgpt(weight, hessian, keep).double()


# ============================================================================ remove_heads
def _rows(layer, idx):
    new = nn.Linear(layer.in_features, len(idx), bias=layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(layer.weight[idx])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[idx])
    return new


def _cols(layer, idx, bias=True):
    new = nn.Linear(len(idx), layer.out_features, bias=bias)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, idx])
        if bias:
            new.bias.copy_(layer.bias)
    return new


def _features(attn, keep):
    return torch.cat([torch.arange(h * attn.head_dim, (h + 1) * attn.head_dim) for h in sorted(keep)])


def heads_learner_style(attn, keep):                      # correct: a boolean feature mask
    mask = torch.zeros(attn.n_head, attn.head_dim, dtype=torch.bool)
    mask[list(keep)] = True
    idx = mask.flatten().nonzero().flatten()
    attn.query, attn.key, attn.value = _rows(attn.query, idx), _rows(attn.key, idx), _rows(attn.value, idx)
    attn.out = _cols(attn.out, idx)
    return attn


def heads_interleaved(attn, keep):
    idx = torch.cat([torch.arange(h, attn.n_head * attn.head_dim, attn.n_head) for h in keep])
    n = attn.n_head
    attn.query, attn.key, attn.value = _rows(attn.query, idx), _rows(attn.key, idx), _rows(attn.value, idx)
    attn.out = _cols(attn.out, idx)
    assert attn.n_head != n
    return attn


def heads_out_rows(attn, keep):
    idx = _features(attn, keep)
    attn.query, attn.key, attn.value = _rows(attn.query, idx), _rows(attn.key, idx), _rows(attn.value, idx)
    attn.out = _rows(attn.out, idx)
    return attn


def heads_no_bias(attn, keep):
    idx = _features(attn, keep)
    new = []
    for layer in (attn.query, attn.key, attn.value):
        small = nn.Linear(layer.in_features, len(idx), bias=False)
        with torch.no_grad():
            small.weight.copy_(layer.weight[idx])
        new.append(small)
    attn.query, attn.key, attn.value = new
    attn.out = _cols(attn.out, idx, bias=False)
    return attn


def heads_query_key_only(attn, keep):
    idx = _features(attn, keep)
    attn.query, attn.key = _rows(attn.query, idx), _rows(attn.key, idx)
    attn.out = _cols(attn.out, idx)
    return attn


def heads_out_bias_zeroed(attn, keep):
    idx = _features(attn, keep)
    attn.query, attn.key, attn.value = _rows(attn.query, idx), _rows(attn.key, idx), _rows(attn.value, idx)
    out = _cols(attn.out, idx)
    with torch.no_grad():
        out.bias.zero_()
    attn.out = out
    return attn


# ============================================================================ head_importance
def _gate_grads(model, x, y, train_mode=False, where="before_out"):
    from prunekit.heads import attention_layers

    layers = list(attention_layers(model).values())
    gates = [torch.ones(a.n_head, requires_grad=True) for a in layers]
    handles = []
    for gate, a in zip(gates, layers):
        if where == "before_out":
            handles.append(a.out.register_forward_pre_hook(
                lambda m, i, g=gate, hd=a.head_dim: (i[0] * g.repeat_interleave(hd),)))
        else:                                              # after out: one gate per layer, repeated
            handles.append(a.out.register_forward_hook(lambda m, i, o, g=gate: o * g.mean()))
    model.train(train_mode)
    loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    grads = torch.autograd.grad(loss, gates)
    for h in handles:
        h.remove()
    model.eval()
    return torch.stack(grads)


def imp_learner_style(model, x, y):                       # correct: gates as an explicit multiplier via hooks
    return _gate_grads(model, x, y).abs()


def imp_signed(model, x, y):
    return _gate_grads(model, x, y)


def imp_squared(model, x, y):
    return _gate_grads(model, x, y) ** 2


def imp_normalised(model, x, y):
    g = _gate_grads(model, x, y).abs()
    return g / g.norm(dim=1, keepdim=True)


def imp_weight_norms(model, x, y):
    from prunekit.heads import attention_layers

    return torch.stack([a.out.weight.view(a.out.out_features, a.n_head, a.head_dim).norm(dim=(0, 2))
                        for a in attention_layers(model).values()])


def imp_after_out(model, x, y):
    return _gate_grads(model, x, y, where="after_out").abs()


def imp_trains(model, x, y):                               # takes an SGD step "to get gradients"
    scores = _gate_grads(model, x, y).abs()
    with torch.no_grad():
        model.lm_head.weight.add_(0.01)
    return scores


WRONG = {
    "perplexity_from_logits": [ppl_returns_loss, ppl_base_two, ppl_per_sequence, ppl_sum, ppl_naive_softmax],
    "wanda_mask": [wanda_global, wanda_squared_norm, wanda_magnitude_only, wanda_norm_on_rows, wanda_per_column,
                   wanda_keeps_lowest],
    "n_m_mask": [nm_strided, nm_down_columns, nm_signed, nm_keeps_smallest, nm_unstructured],
    "sparsegpt_update": [sgpt_no_compensation, sgpt_full_inverse_rows, sgpt_lower_factor, sgpt_factor_of_h,
                         sgpt_no_division, sgpt_zeros_left, sgpt_float64],
    "remove_heads": [heads_interleaved, heads_out_rows, heads_no_bias, heads_query_key_only, heads_out_bias_zeroed],
    "head_importance": [imp_signed, imp_squared, imp_normalised, imp_weight_norms, imp_after_out, imp_trains],
}
RIGHT = {
    "perplexity_from_logits": [ppl_learner_style],
    "wanda_mask": [wanda_learner_style],
    "n_m_mask": [nm_learner_style],
    "sparsegpt_update": [sgpt_learner_style],
    "remove_heads": [heads_learner_style],
    "head_importance": [imp_learner_style],
}
# What the hint must say for the mistake (lower-case substring of the printed line).
HINTS = {
    ppl_returns_loss: "its exp", ppl_base_two: "not 2 ** mean", ppl_per_sequence: "per sequence",
    ppl_sum: "mean, not sum",
    ppl_naive_softmax: "log_softmax",
    wanda_global: "within each output row", wanda_squared_norm: "not its square",
    wanda_magnitude_only: "plain magnitude",
    wanda_norm_on_rows: "column j", wanda_per_column: "within columns", wanda_keeps_lowest: "kept the lowest",
    nm_strided: "consecutive", nm_down_columns: "consecutive columns", nm_signed: "absolute",
    nm_keeps_smallest: "largest",
    nm_unstructured: "exactly",
    sgpt_no_compensation: "compensation", sgpt_full_inverse_rows: "one after another", sgpt_lower_factor: "upper=true",
    sgpt_factor_of_h: "not h", sgpt_no_division: "divide the error", sgpt_zeros_left: "exactly 0",
    sgpt_float64: "float32",
    heads_interleaved: "contiguous", heads_out_rows: "columns", heads_no_bias: "bias",
    heads_query_key_only: "value", heads_out_bias_zeroed: "out's bias",
    imp_signed: "absolute value", imp_squared: "not its square", imp_normalised: "raw", imp_trains: "weights changed",
}


@pytest.mark.parametrize(**cases(RIGHT))
def test_learner_style_correct_answer_passes(name, fn, capsys):
    result = _check(name)(fn, strict=False)
    assert result, capsys.readouterr().out


@pytest.mark.parametrize(**cases(WRONG))
def test_wrong_implementation_is_rejected(name, fn):
    line = rejected(_check(name), fn)
    if fn in HINTS:
        assert HINTS[fn] in line.lower(), line


def test_each_check_has_at_least_three_wrong_answers():
    assert all(len(WRONG[name]) >= 3 for name in RIGHT) and set(WRONG) == set(RIGHT)
