"""The course's answers to Lab 2's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab2`.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import skip_init


__all__ = [
    "reference_neuron_l2_scores", "reference_remove_neurons", "reference_group_lasso", "reference_select_input_pixels",
    "reference_neuron_statistics", "reference_shrink_mlp", "reference_train_group_lasso",
    "reference_recursive_elimination",
]


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


def reference_neuron_statistics(model: nn.Module, x: torch.Tensor,
                                batch_size: int) -> dict[str, dict[str, torch.Tensor]]:
    """APoZ and mean output of every ``nn.ReLU`` child of ``model`` on the examples ``x``, with forward hooks.

    ``x`` is run through the model in consecutive slices of ``batch_size`` (the last one may be shorter);
    the statistics are over all N examples (not an average of batch averages). Returns
    ``{relu_name: {"apoz": (units,), "mean": (units,)}}`` (float64) and leaves no hook on the model.
    """
    relus = {name: m for name, m in model.named_children() if isinstance(m, nn.ReLU)}
    totals = {name: {"zeros": 0.0, "sum": 0.0} for name in relus}

    def make_hook(name):
        def hook(module, inputs, output):
            totals[name]["zeros"] = totals[name]["zeros"] + (output == 0).double().sum(0)
            totals[name]["sum"] = totals[name]["sum"] + output.double().sum(0)
        return hook

    handles = [m.register_forward_hook(make_hook(name)) for name, m in relus.items()]
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start:start + batch_size])
    finally:
        for handle in handles:
            handle.remove()
    n = len(x)
    return {name: {"apoz": t["zeros"] / n, "mean": t["sum"] / n} for name, t in totals.items()}


def _children_linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_children() if isinstance(m, nn.Linear)]


def reference_shrink_mlp(model: nn.Sequential, keep: dict) -> nn.Sequential:
    """A smaller copy of an MLP (an ``nn.Sequential``): for each Linear ``name`` in ``keep``, only its output
    neurons ``keep[name]`` stay (rows and bias entries), and the next Linear loses the matching columns.

    The copy computes what ``model`` computes with the other neurons silenced; ``model`` is not modified.
    The last Linear (the outputs) cannot be in ``keep``.
    """
    linears = _children_linears(model)
    bad = [name for name in keep if name not in linears[:-1]]
    if bad:
        raise ValueError(f"keep names {bad}: only hidden Linear layers {linears[:-1]} can lose neurons")
    small = copy.deepcopy(model)
    for name, nxt in zip(linears[:-1], linears[1:]):
        if name in keep:
            new_in, new_out = reference_remove_neurons(getattr(small, name), getattr(small, nxt), keep[name])
            setattr(small, name, new_in)
            setattr(small, nxt, new_out)
    return small


def _hidden_linears(model: nn.Module) -> list[nn.Linear]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[:-1]


@torch.no_grad()
def _group_prox(layer: nn.Linear, threshold: float) -> None:
    """Block soft-thresholding of each output neuron's group (its weight row and bias entry)."""
    parts = [layer.weight] + ([layer.bias[:, None]] if layer.bias is not None else [])
    norms = torch.linalg.vector_norm(torch.cat(parts, dim=1), dim=1)
    factor = torch.clamp(1 - threshold / norms.clamp_min(1e-30), min=0.0)
    layer.weight.mul_(factor[:, None])
    if layer.bias is not None:
        layer.bias.mul_(factor)


def reference_train_group_lasso(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, lam: float, lr: float,
                                steps: int) -> nn.Sequential:
    """Proximal gradient descent on ``cross_entropy(model(x), y) + lam · Σ_j ‖(W_j, b_j)‖₂`` (full batch).

    Each step: a plain gradient step of the (mean) cross-entropy on every parameter, then the proximal
    operator of the group lasso on every hidden Linear (all but the last): each neuron's group
    ``g = (W[j, :], b[j])`` becomes ``g · max(0, 1 − lr·lam / ‖g‖₂)``, which sets whole groups to exactly 0.
    Trains ``model`` in place and returns it.
    """
    hidden = _hidden_linears(model)
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(lr * p.grad)
        for layer in hidden:
            _group_prox(layer, lr * lam)
    return model


def reference_recursive_elimination(x: torch.Tensor, y: torch.Tensor, k: int, step: int = 1) -> torch.Tensor:
    """Recursive feature elimination (Guyon et al. 2002) with ordinary least squares + intercept.

    Returns a LongTensor (features,) of ranks as scikit-learn's ``RFE(LinearRegression(), n_features_to_select=k,
    step=step).ranking_``: 1 for the k features kept, 2 for the last ones eliminated, and so on.
    """
    x64, y64 = x.detach().double(), y.detach().double()
    n_features = x64.shape[1]
    if not 1 <= k <= n_features or step < 1:
        raise ValueError(f"need 1 <= k <= {n_features} and step >= 1, got k={k}, step={step}")
    alive = torch.ones(n_features, dtype=torch.bool)
    ranking = torch.ones(n_features, dtype=torch.long)
    while int(alive.sum()) > k:
        idx = alive.nonzero().flatten()
        design = x64[:, idx] - x64[:, idx].mean(0)          # centring = fitting an intercept
        coef = torch.linalg.lstsq(design, (y64 - y64.mean())[:, None]).solution.flatten()
        drop = min(step, len(idx) - k)
        alive[idx[torch.argsort(coef.abs(), stable=True)[:drop]]] = False
        ranking[~alive] += 1
    return ranking
