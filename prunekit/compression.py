"""Compression beyond pruning: a map of the modules that hold it (this module only re-exports).

Han et al.'s "Deep Compression" (2016) pipeline is prune -> share/quantise -> encode, and
knowledge distillation (Hinton et al. 2015) recovers accuracy along the way. Each stage is one
idea and lives in its own module:

=============================  ==========================================================
module                         what it holds
=============================  ==========================================================
:mod:`prunekit.quantization`   symmetric and affine (zero-point) quantisation, per tensor or
                               per channel; fake-quantised weights and activations;
                               BatchNorm folding: ``quantize_linear``, ``dequantize_linear``,
                               ``quantize_affine``, ``dequantize_affine``, ``fake_quantize``,
                               ``transform_weights``, ``quantize_weights``, ``fold_batchnorm``,
                               ``fold_batchnorms``, ``activation_ranges``, ``quantize_activations``,
                               ``SCHEMES``
:mod:`prunekit.sharing`        weight sharing with 1-d k-means: ``kmeans_share``,
                               ``shared_weight``, ``share_model``, ``TieToClusters``
:mod:`prunekit.distillation`   ``distillation_loss``, ``predict_logits``, ``distill``
:mod:`prunekit.encoding`       relative indices, Huffman codes and the compressed file:
                               ``relative_indices``, ``positions_from_gaps``,
                               ``huffman_code_lengths``, ``canonical_codes``, ``pack_codes``,
                               ``unpack_codes``, ``encode_compressed``, ``decode_compressed``,
                               ``compressed_breakdown``
=============================  ==========================================================

Every name above can also be imported from here (``from prunekit import compression;
compression.kmeans_share(...)``), as the labs do; new code may import from the modules directly.

Example:
    >>> w = torch.tensor([[0.5, 0.0, -1.0], [0.25, 0.0, 1.0]])
    >>> q, scale = quantize_linear(w, bits=8)
    >>> q.tolist()
    [[64, 0, -127], [32, 0, 127]]
"""
from __future__ import annotations

import torch  # noqa: F401  (for the example above)

from .distillation import distill, distillation_loss, predict_logits
from .encoding import (canonical_codes, compressed_breakdown, decode_compressed, encode_compressed,
                       huffman_code_lengths, pack_codes, positions_from_gaps, relative_indices, unpack_codes)
from .quantization import (SCHEMES, activation_ranges, dequantize_affine, dequantize_linear, fake_quantize,
                           fold_batchnorm, fold_batchnorms, quantize_activations, quantize_affine, quantize_linear,
                           quantize_weights, transform_weights)
from .sharing import TieToClusters, kmeans_share, share_model, shared_weight

__all__ = [
    "quantize_linear", "dequantize_linear", "quantize_affine", "dequantize_affine", "fake_quantize",
    "transform_weights", "quantize_weights", "fold_batchnorm", "fold_batchnorms", "activation_ranges",
    "quantize_activations", "SCHEMES",
    "kmeans_share", "shared_weight", "share_model", "TieToClusters",
    "distillation_loss", "predict_logits", "distill",
    "relative_indices", "positions_from_gaps", "huffman_code_lengths", "canonical_codes",
    "pack_codes", "unpack_codes", "encode_compressed", "decode_compressed", "compressed_breakdown",
]
