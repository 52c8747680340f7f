"""The course's answers to Lab 6's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab6`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ... import compression
from ...masks import topk_mask

__all__ = [
    "reference_quantize_int8", "reference_dequantize", "reference_kmeans_share", "reference_distillation_loss",
    "reference_relative_indices", "reference_huffman_code_lengths", "reference_encode_layer", "reference_decode_layer",
    "reference_quantize_affine_uint8", "reference_fold_batchnorm",
]


def reference_quantize_int8(weight: torch.Tensor, per_channel: bool = False,
                            scale: torch.Tensor | float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8: ``scale = max|w| / 127`` (per tensor, or per output channel = dim 0),
    ``q = clamp(round(w / scale), -127, 127)`` as int8; a given ``scale`` is used as is (values clipped)."""
    return compression.quantize_linear(weight, bits=8, per_channel=per_channel, scale=scale)


def reference_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q · scale`` as float32; a per-channel scale ``(out,)`` multiplies dim 0 of ``q``."""
    return compression.dequantize_linear(q, scale)


def reference_kmeans_share(weight: torch.Tensor, n_clusters: int, iters: int = 20
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Han et al. 2016's weight sharing: 1-d k-means of the nonzero weights, linear initialisation over
    ``[min, max]``, ``iters`` assign/update rounds, then a final assignment; index -1 at zeros."""
    return compression.kmeans_share(weight, n_clusters, iters)


def reference_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                                temperature: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """Hinton et al. 2015: ``alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(s, labels)``,
    KL summed over classes and averaged over the batch, teacher detached."""
    return compression.distillation_loss(student_logits, teacher_logits, labels, temperature, alpha)


def reference_relative_indices(weight: torch.Tensor, index_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nonzero positions of ``weight.flatten()`` as gaps in ``[1, 2**b]`` from position -1, with filler
    entries (each a jump of exactly ``2**b``) before a larger gap (Han et al. 2016, Fig. 2)."""
    return compression.relative_indices(weight, index_bits)


def reference_huffman_code_lengths(counts) -> list[int]:
    """Optimal prefix-code lengths (Huffman 1952); 0 for unused symbols, 1 for a lone used symbol."""
    return compression.huffman_code_lengths(counts)


def reference_encode_layer(weight: torch.Tensor, sparsity: float, n_clusters: int, index_bits: int,
                           iters: int = 10) -> dict:
    """Deep Compression of one layer, as data: magnitude-prune ``round(sparsity·n)`` weights, share the rest with
    :func:`reference_kmeans_share`, store positions as relative indices, Huffman-code the two symbol streams.

    Weight symbols: the cluster of each stored nonzero, ``n_clusters`` for a filler; gap symbols: ``gap - 1``.
    Codes: canonical codes (:func:`prunekit.compression.canonical_codes`) of optimal Huffman lengths over
    ``n_clusters + 1`` and ``2**index_bits`` symbols, written as strings of ``"0"``/``"1"``.

    Returns:
        ``{"shape": [..], "codebook": (n_clusters,) float32, "symbol_lengths": [..], "gap_lengths": [..],
        "symbols": "0110...", "gaps": "10..."}``
    """
    w = weight.detach().float()
    pruned = w * topk_mask(w.abs(), sparsity)
    codebook, indices = reference_kmeans_share(pruned, n_clusters, iters)
    gaps, fillers = reference_relative_indices(pruned, index_bits)
    symbols = torch.full((len(gaps),), n_clusters, dtype=torch.long)
    symbols[~fillers] = indices.flatten()[indices.flatten() >= 0]
    gap_symbols = gaps - 1
    encoded = {"shape": list(w.shape), "codebook": codebook.float()}
    for name, stream, size in (("symbol", symbols, n_clusters + 1), ("gap", gap_symbols, 2 ** index_bits)):
        lengths = reference_huffman_code_lengths(torch.bincount(stream, minlength=size).tolist())
        codes = compression.canonical_codes(lengths)
        encoded[f"{name}_lengths"] = lengths
        encoded[f"{name}s"] = "".join(format(codes[i], f"0{lengths[i]}b") for i in stream.tolist())
    return encoded


def _read_codes(bits: str, lengths) -> list[int]:
    """Symbols of a string of canonical prefix codes with the given lengths."""
    table = {format(c, f"0{n}b"): i for i, (c, n) in enumerate(zip(compression.canonical_codes(lengths), lengths))
             if n > 0}
    out, word = [], ""
    for bit in bits:
        word += bit
        if word in table:
            out.append(table[word])
            word = ""
    if word:
        raise ValueError(f"{len(word)} bits left over at the end of the stream: not a sequence of codes")
    return out


def reference_decode_layer(encoded: dict) -> torch.Tensor:
    """The float32 weight of ``encoded["shape"]`` that :func:`reference_encode_layer`'s dict stands for: walk the
    two streams together from position -1, advance by ``gap symbol + 1``, write ``codebook[s]`` unless s is the
    filler symbol ``len(codebook)``; zeros everywhere else."""
    codebook = torch.as_tensor(encoded["codebook"]).float()
    symbols = _read_codes(encoded["symbols"], encoded["symbol_lengths"])
    gaps = _read_codes(encoded["gaps"], encoded["gap_lengths"])
    flat = torch.zeros(math.prod(encoded["shape"]), dtype=torch.float32)
    position = -1
    for symbol, gap in zip(symbols, gaps):
        position += gap + 1
        if symbol < len(codebook):
            flat[position] = codebook[symbol]
    return flat.view(*encoded["shape"])


def reference_quantize_affine_uint8(x: torch.Tensor, x_min: float | None = None, x_max: float | None = None
                                    ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Affine (asymmetric) uint8: the range [lo, hi] = [min(x_min, 0), max(x_max, 0)] (x's own min / max when not
    given) always holds 0; ``scale = (hi - lo) / 255`` (1 when hi == lo); ``zero_point = round(-lo / scale)``
    clamped to [0, 255], a Python int; ``q = clamp(round(x / scale) + zero_point, 0, 255)`` as uint8."""
    x = x.detach().float()
    lo = min(float(x.min()) if x_min is None else float(x_min), 0.0)
    hi = max(float(x.max()) if x_max is None else float(x_max), 0.0)
    scale = torch.tensor((hi - lo) / 255 if hi > lo else 1.0, dtype=torch.float32)
    zero_point = int(min(max(round(-lo / float(scale)), 0), 255))
    q = (torch.round(x / scale) + zero_point).clamp(0, 255).to(torch.uint8)
    return q, scale, zero_point


@torch.no_grad()
def reference_fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d (with a bias) computing ``bn(conv(x))`` of the eval-mode BatchNorm: with
    ``s = γ / sqrt(var + eps)``, ``W' = W · s`` per output channel and ``b' = β + (b - μ) · s`` (b = 0 when the
    conv has no bias)."""
    s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    folded.weight.copy_(conv.weight.detach() * s.view(-1, 1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded.bias.copy_(bn.bias.detach() + (bias - bn.running_mean) * s)
    return folded.eval()
