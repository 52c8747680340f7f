"""Structured pruning of a transformer: whole attention heads and MLP neurons, scored and physically removed.

* **Head importance** (Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?"):
  multiply each head's output by a gate ξ_h = 1 and measure how much the loss cares,
  ``I_h = mean over batches of |∂L/∂ξ_h|``. Heads with small I_h can go.
* **Head removal**: head h of a :class:`prunekit.chargpt.CausalSelfAttention` owns rows
  ``h·hd … (h+1)·hd - 1`` of query, key and value and the same *columns* of out. Dropping them
  gives a smaller layer that computes exactly what the full one computes with head h's output
  set to zero (the other heads never read head h's slice).
* **MLP neurons**: hidden unit j of ``fc1 → GELU → fc2`` is row j of fc1 and column j of fc2
  (:func:`prunekit.surgery.remove_neurons`); scored here by the mean |activation| it sends times
  the norm of its fc2 column (the structured cousin of Wanda's |w|·‖x‖).

Example:
    >>> from prunekit.chargpt import CharGPT
    >>> model = CharGPT(n_layer=1, n_head=4, d_model=32)
    >>> remove_heads(model.blocks[0].attn, keep=[0, 2])
    >>> model.blocks[0].attn.n_head, tuple(model.blocks[0].attn.out.weight.shape)
    (2, (32, 16))
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from .chargpt import CausalSelfAttention, MLP
from .data import make_loader
from .surgery import remove_neurons


def attention_layers(model: nn.Module) -> dict[str, CausalSelfAttention]:
    """``{"blocks.0.attn": module, ...}``: every attention layer of the model, in order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, CausalSelfAttention)}


def mlp_layers(model: nn.Module) -> dict[str, MLP]:
    """``{"blocks.0.mlp": module, ...}``: every MLP of the model, in order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MLP)}


def _batches(data, n_batches: int | None):
    loader = make_loader(data, batch_size=32) if isinstance(data, Dataset) else data
    for i, (x, y) in enumerate(loader):
        if n_batches is not None and i >= n_batches:
            return
        yield x, y


class _HeadGate:
    """Forward pre-hook on ``attn.out``: multiply head h's slice of the concatenated heads by gate[h]."""

    def __init__(self, gate: torch.Tensor, head_dim: int):
        self.gate, self.head_dim = gate, head_dim

    def __call__(self, module, inputs):
        heads = inputs[0]                                           # (B, T, n_head * head_dim)
        return (heads * self.gate.repeat_interleave(self.head_dim),)


def head_importance(model: nn.Module, data, n_batches: int | None = None) -> dict[str, torch.Tensor]:
    """Michel et al.'s head importance ``mean_batches |∂L/∂ξ_h|`` for every head: ``{"blocks.0.attn": (n_head,)}``.

    Args:
        data: a Dataset of (x, y) blocks (batches of 32) or an iterable of (x, y) batches.
        n_batches: use the first ``n_batches`` batches only.

    The model's weights get no gradient and are left unchanged; it runs in eval mode (no dropout).
    Michel et al. also normalise each layer's scores to unit L2 norm before ranking heads across
    layers; :func:`heads_to_keep` does that.
    """
    layers = attention_layers(model)
    gates = {n: torch.ones(a.n_head, requires_grad=True) for n, a in layers.items()}
    handles = [a.out.register_forward_pre_hook(_HeadGate(gates[n], a.head_dim)) for n, a in layers.items()]
    was_training, grads = model.training, [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    importance = {n: torch.zeros(a.n_head) for n, a in layers.items()}
    batches = 0
    try:
        for x, y in _batches(data, n_batches):
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            for name, grad in zip(gates, torch.autograd.grad(loss, list(gates.values()))):
                importance[name] += grad.abs()
            batches += 1
    finally:
        for handle in handles:
            handle.remove()
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        model.train(was_training)
    if batches == 0:
        raise ValueError("head_importance() got no batches")
    return {n: s / batches for n, s in importance.items()}


def heads_to_keep(importance: Mapping[str, torch.Tensor], n_remove: int) -> dict[str, list[int]]:
    """Remove the ``n_remove`` least important heads of the whole model; at least one head stays per layer.

    Each layer's scores are first divided by their L2 norm (Michel et al.), so layers compete fairly.
    Returns ``{"blocks.0.attn": [kept head indices, ascending], ...}``.
    """
    normalised = {n: s / s.norm().clamp_min(1e-12) for n, s in importance.items()}
    ranked = sorted(((s.item(), n, h) for n, scores in normalised.items() for h, s in enumerate(scores)))
    keep = {n: set(range(len(s))) for n, s in importance.items()}
    removed = 0
    for _, name, head in ranked:
        if removed == n_remove:
            break
        if len(keep[name]) > 1:
            keep[name].discard(head)
            removed += 1
    if removed < n_remove:
        raise ValueError(f"cannot remove {n_remove} heads and keep one per layer (at most {removed})")
    return {n: sorted(k) for n, k in keep.items()}


def _rows(layer: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    new = nn.Linear(layer.in_features, len(rows), bias=layer.bias is not None,
                    device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[rows])
        if layer.bias is not None:
            new.bias.copy_(layer.bias[rows])
    return new


def _columns(layer: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(columns), layer.out_features, bias=layer.bias is not None,
                    device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight[:, columns])
        if layer.bias is not None:
            new.bias.copy_(layer.bias)           # out's bias does not belong to any head
    return new


def remove_heads(attn: CausalSelfAttention, keep: Sequence[int]) -> None:
    """Keep only heads ``keep`` of ``attn`` (in place): smaller query/key/value (rows) and out (columns).

    Example:
        >>> attn = CausalSelfAttention(d_model=16, n_head=4, head_dim=4)
        >>> remove_heads(attn, keep=[1, 3]); attn.n_head
        2
    """
    keep = sorted(set(int(h) for h in keep))
    if not keep or keep[0] < 0 or keep[-1] >= attn.n_head:
        raise ValueError(f"keep must name 1 to {attn.n_head} heads in [0, {attn.n_head - 1}], got {keep}")
    hd = attn.head_dim
    features = torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in keep])  # head h's slice
    attn.query, attn.key, attn.value = (_rows(layer, features) for layer in (attn.query, attn.key, attn.value))
    attn.out = _columns(attn.out, features)


def prune_heads(model: nn.Module, keep: Mapping[str, Sequence[int]]) -> nn.Module:
    """Remove heads from several attention layers: ``keep = {"blocks.0.attn": [0, 2, 5], ...}``. In place."""
    layers = attention_layers(model)
    for name, heads in keep.items():
        if name not in layers:
            raise ValueError(f"{name!r} is not an attention layer; expected one of {list(layers)}")
        remove_heads(layers[name], heads)
    return model


@torch.no_grad()
def neuron_importance(model: nn.Module, data, n_batches: int | None = None) -> dict[str, torch.Tensor]:
    """Score every MLP hidden unit: mean |GELU output| over tokens x L2 norm of its fc2 column.

    Returns ``{"blocks.0.mlp": (hidden,), ...}``.
    """
    layers = mlp_layers(model)
    sums = {n: torch.zeros(m.fc1.out_features) for n, m in layers.items()}
    count = 0

    def recorder(name):
        def hook(module, inputs, output):
            sums[name] += output.detach().abs().reshape(-1, output.shape[-1]).sum(0).float().cpu()
        return hook

    handles = [m.act.register_forward_hook(recorder(n)) for n, m in layers.items()]
    was_training = model.training
    model.eval()
    try:
        for x, _ in _batches(data, n_batches):
            model(x)
            count += x.numel()                      # tokens: one activation per token per unit
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {n: sums[n] / count * m.fc2.weight.detach().float().norm(dim=0).cpu() for n, m in layers.items()}


def prune_mlp_neurons(model: nn.Module, keep: Mapping[str, Sequence[int] | torch.Tensor]) -> nn.Module:
    """Keep hidden units ``keep[name]`` of each named MLP (``{"blocks.0.mlp": [...]}``), in place."""
    layers = mlp_layers(model)
    for name, units in keep.items():
        if name not in layers:
            raise ValueError(f"{name!r} is not an MLP; expected one of {list(layers)}")
        mlp = layers[name]
        mlp.fc1, mlp.fc2 = remove_neurons(mlp.fc1, mlp.fc2, units)
    return model


def transformer_macs(model: nn.Module, seq_len: int) -> int:
    """Multiply-accumulates per token of a forward pass over ``seq_len`` tokens (dense weights).

    Counts every Linear (in x out per token) and the two attention products q·kᵀ and attention·v
    (a token at position t attends to t + 1 positions: head_dim MACs each, per head, for each product).
    """
    linear = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    mean_context = (seq_len + 1) / 2
    attention = sum(2 * a.n_head * a.head_dim * mean_context for a in attention_layers(model).values())
    return int(linear + attention)
