"""Compression beyond pruning: quantisation, weight sharing, distillation and entropy coding.

Pruning removes weights; the ones left still cost 32 bits each, plus the bits that say *where* they
are. This module provides the other stages of Han et al.'s "Deep Compression" (2016) pipeline,
prune -> share/quantise -> encode, and knowledge distillation (Hinton et al. 2015) to recover accuracy:

* **linear quantisation** (:func:`quantize_linear`, :func:`dequantize_linear`): symmetric,
  ``q = clamp(round(w / scale), -qmax, qmax)``, ``scale = max|w| / qmax`` per tensor or per output
  channel (dim 0), ``qmax = 2**(bits-1) - 1`` (127 for int8; Jacob et al. 2018 use the same idea
  with zero points for activations);
* **weight sharing** (:func:`kmeans_share`, :func:`share_model`, :class:`TieToClusters`): the
  nonzero weights of a layer are clustered with 1-d k-means (linear initialisation over
  ``[min, max]``, as Han et al. recommend); each weight stores only its cluster index, and
  :class:`TieToClusters` fine-tunes the shared values;
* **distillation** (:func:`distillation_loss`, :func:`distill`): train a student on the teacher's
  softened probabilities plus the labels;
* **encoding** (:func:`relative_indices`, :func:`huffman_code_lengths`, :func:`encode_compressed`):
  the positions of the nonzeros as small gaps, every symbol Huffman coded, written to a real byte
  string that :func:`decode_compressed` turns back into the exact weights, so sizes are measured.

Example:
    >>> w = torch.tensor([[0.5, 0.0, -1.0], [0.25, 0.0, 1.0]])
    >>> q, scale = quantize_linear(w, bits=8)
    >>> q.tolist(), round(scale.item(), 6)
    ([[64, 0, -127], [32, 0, 127]], 0.007874)
    >>> codebook, indices = kmeans_share(w, n_clusters=2, iters=5)
    >>> indices.tolist()
    [[1, -1, 0], [1, -1, 1]]
"""
from __future__ import annotations

import copy
import heapq
import io
import math
import struct
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .pruning import enforce_masks, prunable_weights

__all__ = [
    "quantize_linear", "dequantize_linear", "transform_weights",
    "kmeans_share", "shared_weight", "share_model", "TieToClusters",
    "distillation_loss", "predict_logits", "distill",
    "relative_indices", "positions_from_gaps", "huffman_code_lengths", "canonical_codes",
    "pack_codes", "unpack_codes", "encode_compressed", "decode_compressed", "compressed_breakdown",
]


# ============================================================================ linear quantisation
def _qmax(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")
    return 2 ** (bits - 1) - 1


def _channel_view(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel scale (out,) viewed as (out, 1, 1, ...) so that it multiplies dim 0 of ``like``."""
    return scale.view(-1, *([1] * (like.dim() - 1))) if scale.dim() == 1 else scale


def quantize_linear(weight: torch.Tensor, bits: int = 8, per_channel: bool = False,
                    scale: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric linear quantisation: ``q = clamp(round(w / scale), -qmax, qmax)``, ``qmax = 2**(bits-1) - 1``.

    Args:
        weight: any shape; per channel means per entry of dim 0 (output unit / filter).
        bits: 2..16; q is int8 for bits <= 8, else int16.
        per_channel: one scale per output channel instead of one for the whole tensor.
        scale: use this scale (e.g. a clipped range) instead of ``max|w| / qmax``; values beyond
            ``±qmax * scale`` are clamped. An all-zero tensor/channel gets scale 1 (q = 0 anyway).

    Returns:
        ``(q, scale)``: q of ``weight.shape``; scale float32, shape ``()`` or ``(out,)``.

    Example:
        >>> quantize_linear(torch.tensor([1.0, -0.6, 0.02]), bits=4)[0].tolist()   # scale 1/7
        [7, -4, 0]
    """
    qmax = _qmax(bits)
    w = weight.detach().float()
    if scale is None:
        largest = w.abs().flatten(1).amax(1) if per_channel and w.dim() > 0 else w.abs().max()
        scale = torch.where(largest > 0, largest / qmax, torch.ones_like(largest))
    else:
        scale = torch.as_tensor(scale, dtype=torch.float32)
        if bool((scale <= 0).any()):
            raise ValueError("scale must be positive")
    q = torch.round(w / _channel_view(scale, w)).clamp(-qmax, qmax)
    return q.to(torch.int8 if bits <= 8 else torch.int16), scale


def dequantize_linear(q: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """``w ≈ q * scale`` as float32; a per-channel scale of shape (out,) multiplies dim 0 of ``q``.

    Example:
        >>> dequantize_linear(torch.tensor([[2, -1], [4, 0]], dtype=torch.int8), torch.tensor([0.5, 0.25]))
        tensor([[ 1.0000, -0.5000],
                [ 1.0000,  0.0000]])
    """
    scale = torch.as_tensor(scale, dtype=torch.float32)
    if scale.dim() == 1 and scale.numel() != q.shape[0]:
        raise ValueError(f"per-channel scale has {scale.numel()} entries, q has {q.shape[0]} channels (dim 0)")
    return q.float() * _channel_view(scale, q)


def transform_weights(model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
                      exclude: Iterable[str] = ()) -> nn.Module:
    """A deep copy of ``model`` whose Linear/Conv2d weights are replaced by ``fn(weight)`` (e.g. fake quantisation).

    Example:
        >>> from prunekit.models import build_model
        >>> int4 = transform_weights(build_model("lenet300"), lambda w: dequantize_linear(*quantize_linear(w, 4)))
        >>> int4.fc1.weight.unique().numel() <= 15
        True
    """
    new = copy.deepcopy(model)
    with torch.no_grad():
        for name, weight in prunable_weights(new, exclude).items():
            out = fn(weight.detach().clone())
            if tuple(out.shape) != tuple(weight.shape):
                raise ValueError(f"fn changed the shape of {name}: {tuple(weight.shape)} -> {tuple(out.shape)}")
            weight.copy_(out)
    return new


# ============================================================================ weight sharing
def _nearest(values: torch.Tensor, codebook: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Index of the nearest codebook entry for each value (the lowest index on ties), in chunks of values
    so that the (values x clusters) distance matrix stays small."""
    return torch.cat([(part[:, None] - codebook[None, :]).abs().argmin(dim=1) for part in values.split(chunk)]) \
        if values.numel() else torch.zeros(0, dtype=torch.long, device=values.device)


def kmeans_share(weight: torch.Tensor, n_clusters: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the NONZERO weights with 1-d k-means (Han et al. 2016); zeros (pruned) stay zero.

    Rule: ``v`` = the nonzero entries (row-major). Codebook starts at
    ``torch.linspace(v.min(), v.max(), n_clusters)`` (linear initialisation keeps centroids among the rare
    large weights). Then ``iters`` times: assign each value to its nearest centroid (lowest index on ties),
    set each centroid to the mean of its values (a cluster with no value keeps its centroid).
    Finally assign once more.

    Returns:
        ``(codebook, indices)``: codebook ``(n_clusters,)`` in the weight's float dtype; indices int64 of
        ``weight.shape``, ``-1`` where the weight is zero. :func:`shared_weight` rebuilds the weight.

    Example:
        >>> kmeans_share(torch.tensor([0.1, 0.0, 0.12, 0.9, 1.0]), 2, iters=3)
        (tensor([0.1100, 0.9500]), tensor([ 0, -1,  0,  1,  1]))
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive int, got {n_clusters!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative int, got {iters!r}")
    w = weight.detach()
    dtype = w.dtype if w.is_floating_point() else torch.float32
    keep = w != 0
    values = w[keep].to(dtype)
    indices = torch.full(w.shape, -1, dtype=torch.long, device=w.device)
    if values.numel() == 0:
        return torch.zeros(n_clusters, dtype=dtype, device=w.device), indices
    codebook = torch.linspace(values.min().item(), values.max().item(), n_clusters, dtype=dtype, device=w.device)
    for _ in range(iters):
        assign = _nearest(values, codebook)
        sums = torch.zeros_like(codebook).index_add_(0, assign, values)
        counts = torch.bincount(assign, minlength=n_clusters)
        codebook = torch.where(counts > 0, sums / counts.clamp(min=1).to(dtype), codebook)
    indices[keep] = _nearest(values, codebook)
    return codebook, indices


def shared_weight(codebook: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The weight a codebook and its indices stand for: ``codebook[i]`` where ``i >= 0``, 0 where ``i == -1``.

    Example:
        >>> shared_weight(torch.tensor([-0.5, 0.5]), torch.tensor([1, -1, 0]))
        tensor([ 0.5000,  0.0000, -0.5000])
    """
    if codebook.dim() != 1:
        raise ValueError(f"codebook must be 1-d, got shape {tuple(codebook.shape)}")
    if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= codebook.numel()):
        raise ValueError(f"indices must be in [-1, {codebook.numel() - 1}], got [{int(indices.min())}, "
                         f"{int(indices.max())}]")
    return torch.where(indices >= 0, codebook[indices.clamp(min=0)], torch.zeros((), dtype=codebook.dtype))


def share_model(model: nn.Module, n_clusters: int | Mapping[str, int], iters: int = 20,
                kmeans: Callable = kmeans_share) -> dict[str, torch.Tensor]:
    """Replace weights by their shared (clustered) values IN PLACE; returns ``{name: indices}``.

    Args:
        n_clusters: one count for every Linear/Conv2d weight, or ``{"fc1.weight": 31, ...}`` (only those).
        kmeans: the clustering function ``(weight, n_clusters, iters) -> (codebook, indices)``.

    Example:
        >>> from prunekit.models import build_model
        >>> m = build_model("lenet300"); idx = share_model(m, 15, iters=2)
        >>> m.fc2.weight.unique().numel() <= 15
        True
    """
    weights = prunable_weights(model)
    targets = dict(n_clusters) if isinstance(n_clusters, Mapping) else {n: n_clusters for n in weights}
    unknown = [n for n in targets if n not in weights]
    if unknown:
        raise ValueError(f"no Linear/Conv2d weights {unknown}; available: {list(weights)}")
    all_indices = {}
    with torch.no_grad():
        for name, k in targets.items():
            codebook, indices = kmeans(weights[name], k, iters)
            weights[name].copy_(shared_weight(torch.as_tensor(codebook), torch.as_tensor(indices)))
            all_indices[name] = torch.as_tensor(indices).clone()
    return all_indices


class TieToClusters:
    """An ``after_step`` callback that keeps shared weights shared while training (centroid fine-tuning).

    After each optimizer step, every weight of a cluster is set to the cluster's mean, and weights with
    index -1 to zero. With SGD (momentum and weight decay included) this is exactly training one value
    per cluster with the *average* gradient of its weights (Han et al. sum them: same direction, larger
    step for large clusters).

    Example:
        >>> tie = TieToClusters(share_model(model, 31))                     # doctest: +SKIP
        >>> train.fine_tune(model, data, epochs=1, after_step=[tie])       # doctest: +SKIP
    """

    def __init__(self, indices: Mapping[str, torch.Tensor]):
        self.indices = {n: torch.as_tensor(i, dtype=torch.long) for n, i in indices.items()}

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int = 0) -> None:
        params = dict(model.named_parameters())
        for name, idx in self.indices.items():
            w = params[name]
            idx = idx.to(w.device)
            keep = idx >= 0
            k = int(idx.max()) + 1 if bool(keep.any()) else 1
            sums = torch.zeros(k, dtype=w.dtype, device=w.device).index_add_(0, idx[keep], w[keep])
            counts = torch.bincount(idx[keep], minlength=k).clamp(min=1).to(w.dtype)
            w.copy_(torch.where(keep, (sums / counts)[idx.clamp(min=0)], torch.zeros((), dtype=w.dtype)))


# ============================================================================ distillation
def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.9, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton et al. 2015: ``alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(s, labels)``.

    KL is summed over classes and averaged over the batch ("batchmean"); the teacher is a constant
    (no gradient flows into it). The T² factor keeps the soft term's gradients the same size as T changes.

    Args:
        student_logits, teacher_logits: ``(N, C)``; labels: ``(N,)`` int64.
        label_smoothing: passed to the hard (cross-entropy) term.

    Returns:
        a scalar tensor (differentiable w.r.t. the student's logits).

    Example:
        >>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[2.0, 0.0]])
        >>> round(distillation_loss(s, t, torch.tensor([0]), 2.0, 1.0).item(), 6)   # same logits: KL = 0
        0.0
    """
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (N, C); got {tuple(student_logits.shape)} "
                         f"and {tuple(teacher_logits.shape)}")
    if not temperature > 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"need temperature > 0 and alpha in [0, 1]; got T={temperature!r}, alpha={alpha!r}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    p_teacher = F.softmax(teacher_logits.detach() / temperature, dim=1)
    soft = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * temperature ** 2 * soft + (1 - alpha) * hard


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The model's logits for a whole tensor of inputs ``(N, ...)`` -> ``(N, C)``, in eval mode, batched."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def distill(student: nn.Module, data, teacher_logits: torch.Tensor, epochs: int = 1, lr: float = 0.01,
            temperature: float = 4.0, alpha: float = 0.9, loss_fn: Callable = distillation_loss,
            batch_size: int = 128, weight_decay: float = 5e-4, seed: int = 0,
            after_step: Iterable[Callable] = (), max_steps: int | None = None, val_data=None) -> list[dict]:
    """Train ``student`` in place on ``loss_fn(student(x), teacher_logits[batch], y, temperature, alpha)``.

    SGD (momentum 0.9), cosine learning rate over the epochs; masks the student carries are re-applied
    after every step (a pruned student stays pruned), then ``after_step`` callbacks run.

    Args:
        data: an in-memory dataset with ``.x`` and ``.y`` (:func:`prunekit.notebook.preload`).
        teacher_logits: ``(len(data), C)``, precomputed once with :func:`predict_logits`.
        val_data: if given, validation accuracy is measured after each epoch (``"val_acc"``).

    Returns:
        ``[{"epoch", "loss", "train_acc", "val_acc"?}, ...]``.
    """
    from .train import evaluate

    x_all, y_all = data.x, data.y
    if len(teacher_logits) != len(y_all):
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows, the data {len(y_all)} examples")
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    generator, history, step = torch.Generator().manual_seed(seed), [], 0
    callbacks = list(after_step)
    for epoch in range(epochs):
        student.train()
        loss_sum = correct = seen = 0
        for batch in torch.randperm(len(y_all), generator=generator).split(batch_size):
            logits = student(x_all[batch])
            loss = loss_fn(logits, teacher_logits[batch], y_all[batch], temperature, alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            enforce_masks(student)
            step += 1
            for callback in callbacks:
                callback(student, step)
            loss_sum += loss.item() * len(batch)
            correct += (logits.argmax(1) == y_all[batch]).sum().item()
            seen += len(batch)
            if max_steps is not None and step >= max_steps:
                break
        scheduler.step()
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1)})
        if val_data is not None:
            history[-1]["val_acc"] = evaluate(student, val_data)
        if max_steps is not None and step >= max_steps:
            break
    student.eval()
    return history


# ============================================================================ encoding
def relative_indices(weight: torch.Tensor, index_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the nonzeros of ``weight.flatten()`` as gaps of at most ``2**index_bits`` (Han et al. 2016).

    Walking from position ``-1``, each nonzero at position ``p`` is stored as the gap ``p - previous``
    (so a stored gap ``g`` in ``[1, 2**b]`` costs b bits as ``g - 1``). A gap larger than ``2**b`` first
    emits *filler* entries, each jumping exactly ``2**b`` positions and holding a zero weight.

    Returns:
        ``(gaps, fillers)``: int64 and bool, 1-d, one entry per stored element (nonzeros and fillers).
        ``positions_from_gaps`` inverts it.

    Example:
        >>> relative_indices(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]), 2)
        (tensor([2, 4, 4, 2]), tensor([False,  True,  True, False]))
    """
    if isinstance(index_bits, bool) or not isinstance(index_bits, int) or not 1 <= index_bits <= 16:
        raise ValueError(f"index_bits must be an int in [1, 16], got {index_bits!r}")
    span = 2 ** index_bits
    positions = torch.nonzero(weight.detach().flatten() != 0).flatten().cpu()
    raw = torch.diff(positions, prepend=torch.tensor([-1]))             # gaps without fillers, all >= 1
    n_fill = (raw - 1) // span                                          # fillers needed before each nonzero
    last = torch.cumsum(n_fill + 1, 0) - 1                              # where each nonzero lands
    total = int(last[-1]) + 1 if len(last) else 0
    gaps = torch.full((total,), span, dtype=torch.long)
    gaps[last] = raw - n_fill * span
    fillers = torch.ones(total, dtype=torch.bool)
    fillers[last] = False
    return gaps, fillers


def positions_from_gaps(gaps: torch.Tensor, fillers: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`relative_indices`: the flat positions of the nonzeros (fillers dropped).

    Example:
        >>> positions_from_gaps(torch.tensor([2, 4, 4, 2]), torch.tensor([False, True, True, False]))
        tensor([ 1, 11])
    """
    return (torch.cumsum(gaps.long(), 0) - 1)[~fillers.bool()]


def huffman_code_lengths(counts: Sequence[int] | torch.Tensor) -> list[int]:
    """Optimal prefix-code lengths (Huffman 1952) for symbols seen ``counts[i]`` times.

    Repeatedly merge the two least frequent subtrees (ties: the one created first); a symbol's length
    is its depth. Unused symbols (count 0) get length 0; a single used symbol gets length 1.

    Example:
        >>> huffman_code_lengths([45, 13, 12, 16, 9, 5, 0])
        [1, 3, 3, 3, 4, 4, 0]
    """
    counts = [int(c) for c in (counts.tolist() if isinstance(counts, torch.Tensor) else counts)]
    if any(c < 0 for c in counts):
        raise ValueError("counts must be non-negative")
    lengths = [0] * len(counts)
    heap = [(c, i, [i]) for i, c in enumerate(counts) if c > 0]
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
    heapq.heapify(heap)
    order = len(counts)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, order, s1 + s2))
        order += 1
    return lengths


def canonical_codes(lengths: Sequence[int]) -> list[int]:
    """Canonical prefix codes for given lengths: symbols sorted by (length, symbol) get consecutive codes.

    Raises ValueError when the lengths cannot form a prefix code (Kraft sum > 1).

    Example:
        >>> [format(c, f"0{n}b") for c, n in zip(canonical_codes([1, 3, 3, 2]), [1, 3, 3, 2])]
        ['0', '110', '111', '10']
    """
    if sum(2.0 ** -n for n in lengths if n > 0) > 1 + 1e-12:
        raise ValueError(f"lengths {list(lengths)[:10]}... violate Kraft's inequality: not a prefix code")
    codes, code, previous = [0] * len(lengths), 0, 0
    for symbol in sorted((s for s, n in enumerate(lengths) if n > 0), key=lambda s: (lengths[s], s)):
        code <<= lengths[symbol] - previous
        codes[symbol], previous = code, lengths[symbol]
        code += 1
    return codes


def pack_codes(symbols: torch.Tensor | np.ndarray, lengths: Sequence[int], codes: Sequence[int] | None = None
               ) -> bytes:
    """Concatenate the code of every symbol (MSB first) and pack the bits into bytes (zero-padded).

    With ``codes=None`` each symbol ``s`` is written as itself in ``lengths[s]`` bits (fixed width when all
    lengths are equal); otherwise as ``codes[s]``.
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    values = symbols if codes is None else np.asarray(codes, dtype=np.int64)[symbols]
    n = lengths_arr[symbols]
    if symbols.size and n.min() <= 0:
        raise ValueError("a symbol to encode has code length 0 (count 0 in the table)")
    width = int(n.max()) if symbols.size else 0
    shifts = n[:, None] - 1 - np.arange(width)[None, :]
    bits = (values[:, None] >> np.clip(shifts, 0, None)) & 1
    return np.packbits(bits[shifts >= 0].astype(np.uint8)).tobytes()


def unpack_codes(data: bytes, lengths: Sequence[int], count: int, codes: Sequence[int] | None = None) -> np.ndarray:
    """Read ``count`` symbols written by :func:`pack_codes` (a table lookup on the next max-length bits)."""
    lengths = list(lengths)
    codes = list(range(len(lengths))) if codes is None else list(codes)
    width = max(lengths)
    table_symbol = np.zeros(2 ** width, dtype=np.int64)
    table_length = np.zeros(2 ** width, dtype=np.int64)
    for s, (code, n) in enumerate(zip(codes, lengths)):
        if n > 0:
            start = code << (width - n)
            table_symbol[start:start + (1 << (width - n))] = s
            table_length[start:start + (1 << (width - n))] = n
    bits = np.concatenate([np.unpackbits(np.frombuffer(data, dtype=np.uint8)), np.zeros(width, np.uint8)])
    weights = 1 << np.arange(width - 1, -1, -1)
    out, pos = np.empty(count, dtype=np.int64), 0
    for i in range(count):
        key = int(bits[pos:pos + width] @ weights)
        out[i] = table_symbol[key]
        pos += int(table_length[key])
    return out


# ============================================================================ the compressed file
# Format (little-endian): b"PKDC" | version u8 | tensors u16, then per tensor
#   name length u16 | name | kind u8 (0 raw float32, 1 raw int64, 2 shared) | ndim u8 | shape u32 * ndim
#   raw     the values
#   shared  clusters k u16 | index bits b u8 | huffman u8 | entries u32 | codebook float32 * k
#           [huffman: code lengths u8 * (k + 1) for weight symbols, u8 * 2**b for gap symbols]
#           | weight stream bytes u32 | weight stream | gap stream bytes u32 | gap stream
#   Weight symbol s < k is codebook[s]; s == k marks a filler. Gap symbol = gap - 1 (b bits when fixed).
#   Without Huffman, weight symbols take ceil(log2(k + 1)) bits each: with k = 2**bits - 1 clusters, bits.
_MAGIC, _VERSION = b"PKDC", 1


def _codebook_from(weight: torch.Tensor, indices: torch.Tensor, name: str) -> torch.Tensor:
    """The shared values: weight entries of cluster j must all be equal (share/tie the model first)."""
    w, idx = weight.detach().flatten().float().cpu(), indices.flatten().cpu()
    if idx.numel() != w.numel():
        raise ValueError(f"{name}: indices have {idx.numel()} entries, the weight {w.numel()}")
    if bool((w[idx < 0] != 0).any()):
        raise ValueError(f"{name}: weights with index -1 must be zero")
    k = int(idx.max()) + 1 if bool((idx >= 0).any()) else 0
    codebook = torch.zeros(k)
    codebook[idx[idx >= 0]] = w[idx >= 0]
    if not torch.equal(codebook[idx.clamp(min=0)][idx >= 0], w[idx >= 0]):
        raise ValueError(f"{name}: weights of one cluster differ; call share_model / TieToClusters first")
    return codebook


def _stream(symbols: np.ndarray, n_symbols: int, fixed_bits: int, huffman: bool,
            lengths_fn: Callable) -> tuple[bytes, bytes]:
    """(code-length table, packed stream) for one symbol stream."""
    if not huffman:
        return b"", pack_codes(symbols, [fixed_bits] * n_symbols)
    lengths = [int(n) for n in lengths_fn(np.bincount(symbols, minlength=n_symbols).tolist())]
    if len(lengths) != n_symbols or max(lengths, default=0) > 255:
        raise ValueError(f"code lengths must be {n_symbols} ints <= 255")
    return bytes(lengths), pack_codes(symbols, lengths, canonical_codes(lengths))


def _encode_shared(name, weight, indices, index_bits, huffman, relative_fn, lengths_fn) -> dict[str, bytes]:
    codebook = _codebook_from(weight, indices, name)
    k = codebook.numel()
    gaps, fillers = relative_fn(weight.detach().cpu(), index_bits)
    gaps, fillers = torch.as_tensor(gaps).long(), torch.as_tensor(fillers).bool()
    in_range = len(gaps) == len(fillers) and bool((gaps >= 1).all()) and bool((gaps <= 2 ** index_bits).all())
    positions = positions_from_gaps(gaps, fillers) if in_range else None
    if not in_range or not torch.equal(positions, torch.nonzero(weight.detach().flatten().cpu()).flatten()):
        raise ValueError(f"{name}: relative indices do not match the nonzeros or the {index_bits}-bit range")
    symbols = torch.full((len(gaps),), k, dtype=torch.long)
    symbols[~fillers] = indices.flatten().cpu()[positions]
    if bool((symbols[~fillers] < 0).any()):
        raise ValueError(f"{name}: a nonzero weight has index -1")
    table_w, stream_w = _stream(symbols.numpy(), k + 1, max(1, math.ceil(math.log2(k + 1))), huffman, lengths_fn)
    table_g, stream_g = _stream((gaps - 1).numpy(), 2 ** index_bits, index_bits, huffman, lengths_fn)
    head = struct.pack("<HBBI", k, index_bits, int(huffman), len(gaps)) + _raw32(codebook)
    return {"header": head, "tables": table_w + table_g,
            "weights": struct.pack("<I", len(stream_w)) + stream_w,
            "index": struct.pack("<I", len(stream_g)) + stream_g}


def _raw32(t: torch.Tensor) -> bytes:
    return t.detach().cpu().float().contiguous().numpy().astype("<f4").tobytes()


def _tensor_parts(name: str, tensor: torch.Tensor, indices, index_bits, huffman, relative_fn,
                  lengths_fn) -> dict[str, bytes]:
    name_bytes = name.encode()
    kind = 2 if indices is not None else (0 if tensor.is_floating_point() else 1)
    head = (struct.pack("<H", len(name_bytes)) + name_bytes + struct.pack("<BB", kind, tensor.dim())
            + struct.pack(f"<{tensor.dim()}I", *tensor.shape))
    if kind == 2:
        parts = _encode_shared(name, tensor, indices, index_bits, huffman, relative_fn, lengths_fn)
        parts["header"] = head + parts["header"]
        return parts
    body = _raw32(tensor) if kind == 0 else tensor.detach().cpu().long().numpy().astype("<i8").tobytes()
    return {"header": head, "raw": body}


def _all_parts(model, indices, index_bits, huffman, relative_fn, lengths_fn):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_keep")}
    unknown = [n for n in indices if n not in state]
    if unknown:
        raise ValueError(f"indices for {unknown}, which the model does not have")
    bits = index_bits if isinstance(index_bits, Mapping) else {n: index_bits for n in indices}
    return {name: _tensor_parts(name, t, indices.get(name), bits.get(name), huffman, relative_fn, lengths_fn)
            for name, t in state.items()}


def encode_compressed(model: nn.Module, indices: Mapping[str, torch.Tensor], index_bits: int | Mapping[str, int] = 5,
                      huffman: bool = True, relative_fn: Callable = relative_indices,
                      lengths_fn: Callable = huffman_code_lengths) -> bytes:
    """The model as a Deep Compression file: shared weights as (cluster symbol, gap) streams, the rest float32.

    Args:
        indices: ``{"fc1.weight": cluster indices (-1 = zero)}`` from :func:`share_model`; the shared values
            are read from the weights themselves (so fine-tuned centroids are stored).
        index_bits: bits per relative index (gap), one for all or per weight name.
        huffman: Huffman-code both streams (code-length tables stored) instead of fixed-width symbols.
        relative_fn, lengths_fn: your :func:`relative_indices` / :func:`huffman_code_lengths`.

    Returns:
        bytes that :func:`decode_compressed` turns back into the state dict, bit-exact.
    """
    parts = _all_parts(model, indices, index_bits, huffman, relative_fn, lengths_fn)
    body = b"".join(b"".join(p.values()) for p in parts.values())
    return _MAGIC + struct.pack("<BH", _VERSION, len(parts)) + body


def compressed_breakdown(model: nn.Module, indices: Mapping[str, torch.Tensor],
                         index_bits: int | Mapping[str, int] = 5, huffman: bool = True,
                         relative_fn: Callable = relative_indices,
                         lengths_fn: Callable = huffman_code_lengths) -> list[dict]:
    """Where the bytes of :func:`encode_compressed` go, one row per tensor (header, codebook+tables,
    weight symbols, relative indices, raw values), plus ``bits/nonzero`` for shared weights."""
    rows = []
    for name, parts in _all_parts(model, indices, index_bits, huffman, relative_fn, lengths_fn).items():
        tensor = model.state_dict()[name]
        row = {"tensor": name, "nonzeros": int(torch.count_nonzero(tensor)), "header": len(parts["header"]),
               "tables": len(parts.get("tables", b"")), "weight symbols": len(parts.get("weights", b"")),
               "rel. indices": len(parts.get("index", b"")), "raw": len(parts.get("raw", b""))}
        row["total"] = sum(len(v) for v in parts.values())
        row["bits/nonzero"] = 8 * (row["weight symbols"] + row["rel. indices"]) / max(row["nonzeros"], 1) \
            if name in indices else None
        rows.append(row)
    return rows


def _read(stream: io.BytesIO, fmt: str):
    return struct.unpack(fmt, stream.read(struct.calcsize(fmt)))


def _decode_shared(stream: io.BytesIO, shape) -> torch.Tensor:
    k, index_bits, huffman, entries = _read(stream, "<HBBI")
    codebook = torch.from_numpy(np.frombuffer(stream.read(4 * k), dtype="<f4").copy())
    n_w, n_g = k + 1, 2 ** index_bits
    if huffman:
        lengths_w, lengths_g = list(stream.read(n_w)), list(stream.read(n_g))
        codes_w, codes_g = canonical_codes(lengths_w), canonical_codes(lengths_g)
    else:
        lengths_w, lengths_g = [max(1, math.ceil(math.log2(k + 1)))] * n_w, [index_bits] * n_g
        codes_w = codes_g = None
    (size,) = _read(stream, "<I")
    symbols = unpack_codes(stream.read(size), lengths_w, entries, codes_w) if entries else np.zeros(0, np.int64)
    (size,) = _read(stream, "<I")
    gaps = unpack_codes(stream.read(size), lengths_g, entries, codes_g) + 1 if entries else np.zeros(0, np.int64)
    symbols, gaps = torch.from_numpy(symbols), torch.from_numpy(gaps)
    fillers = symbols == k
    flat = torch.zeros(math.prod(shape))
    flat[positions_from_gaps(gaps, fillers)] = codebook[symbols[~fillers]]
    return flat.view(shape)


def decode_compressed(data: bytes) -> dict[str, torch.Tensor]:
    """The state dict stored by :func:`encode_compressed` (load it with ``model.load_state_dict``).

    Example:
        >>> from prunekit.models import build_model
        >>> m = build_model("lenet300"); idx = share_model(m, 31, iters=2)
        >>> state = decode_compressed(encode_compressed(m, idx))
        >>> torch.equal(state["fc1.weight"], m.fc1.weight.detach())
        True
    """
    stream = io.BytesIO(data)
    if stream.read(4) != _MAGIC:
        raise ValueError("not a prunekit Deep Compression file (it must start with b'PKDC')")
    version, count = _read(stream, "<BH")
    if version != _VERSION:
        raise ValueError(f"file version {version}, this prunekit reads version {_VERSION}")
    state = {}
    for _ in range(count):
        (name_len,) = _read(stream, "<H")
        name = stream.read(name_len).decode()
        kind, ndim = _read(stream, "<BB")
        shape = _read(stream, f"<{ndim}I")
        numel = math.prod(shape)
        if kind == 0:
            state[name] = torch.from_numpy(np.frombuffer(stream.read(4 * numel), dtype="<f4").copy()).view(shape)
        elif kind == 1:
            state[name] = torch.from_numpy(np.frombuffer(stream.read(8 * numel), dtype="<i8").copy()).view(shape)
        else:
            state[name] = _decode_shared(stream, shape)
    return state
