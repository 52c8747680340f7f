"""The course's answers to Lab 7's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab7`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ... import heads
from ...chargpt import CausalSelfAttention, CharGPT
from ...masks import nm_mask, num_to_prune

__all__ = [
    "reference_perplexity_from_logits", "reference_wanda_mask", "reference_n_m_mask", "reference_sparsegpt_update",
    "reference_remove_heads", "reference_head_importance",
]


def reference_perplexity_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """``exp(mean over every position of -log softmax(logits)[target])`` as a Python float."""
    return math.exp(F.cross_entropy(logits.detach().double().reshape(-1, logits.shape[-1]),
                                    targets.reshape(-1)).item())


def reference_wanda_mask(weight: torch.Tensor, input_norm: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Sun et al. 2023: score ``|W_ij| · ‖x_j‖``; in every row prune exactly ``round(sparsity · in)`` of the
    lowest scores (ties: the lower index goes first). True = keep."""
    scores = weight.detach().abs().double() * input_norm.detach().double().view(1, -1)
    lowest = torch.sort(scores, dim=1, stable=True).indices[:, :num_to_prune(weight.shape[1], sparsity)]
    return torch.ones_like(scores, dtype=torch.bool).scatter_(1, lowest, False)


def reference_n_m_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep the ``n`` largest ``|w|`` of every ``m`` consecutive inputs (columns) of each row (2:4, 4:8)."""
    return nm_mask(weight.detach().abs(), n, m, dim=1)


@torch.no_grad()
def reference_sparsegpt_update(weight: torch.Tensor, hessian: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """SparseGPT's update for a fixed mask: U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU); for each column q
    from left to right, ``err = W[:, q]·(not keep[:, q]) / U[q, q]`` and ``W[:, q:] -= err ⊗ U[q, q:]``.
    Returns a float32 weight, exactly 0 where ``keep`` is False."""
    W = weight.detach().double().clone()
    keep = keep.bool()
    U = torch.linalg.cholesky(torch.linalg.inv(hessian.detach().double()), upper=True)
    for q in range(W.shape[1]):
        err = W[:, q] * ~keep[:, q] / U[q, q]
        W[:, q:] -= err[:, None] * U[q, q:][None, :]
    W[~keep] = 0.0
    return W.float()


def reference_remove_heads(attn: CausalSelfAttention, keep: list[int]) -> CausalSelfAttention:
    """Keep heads ``keep`` of ``attn`` (in place, and returned): rows h·hd…(h+1)·hd-1 of query/key/value and the
    same columns of out, biases included (out's bias is kept whole)."""
    heads.remove_heads(attn, keep)
    return attn


def reference_head_importance(model: CharGPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|∂L/∂ξ_h| (n_layer, n_head) for gates ξ = 1 multiplying each head's output before ``out``, with L the mean
    cross-entropy of ``model(x)`` against ``y``, in eval mode; the model's weights are left as they were."""
    scores = heads.head_importance(model, [(x, y)])
    return torch.stack(list(scores.values()))
