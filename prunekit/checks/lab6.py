"""Checks for Lab 6 (compression beyond pruning).

=============================  ==============================================  ====================================
exercise                       contract                                        check
=============================  ==============================================  ====================================
``quantize_int8``              ``(weight, per_channel=False, scale=None) ->    :func:`check_quantize_int8`
                               (q int8, scale)``: symmetric, max|w|/127,
                               round, clamp to [-127, 127]; per channel = dim 0
``dequantize``                 ``(q, scale) -> float32 q·scale`` (a per-         :func:`check_dequantize`
                               channel scale multiplies dim 0)
``kmeans_share``               ``(weight, n_clusters, iters) -> (codebook,      :func:`check_kmeans_share`
                               indices)``: 1-d k-means of the NONZERO weights,
                               linear init, index -1 at zeros
``distillation_loss``          ``(s, t, labels, T, alpha) -> scalar``:          :func:`check_distillation_loss`
                               ``alpha·T²·KL(p_t‖p_s) + (1-alpha)·CE(s, y)``
``relative_indices``           ``(weight, index_bits) -> (gaps, fillers)``:     :func:`check_relative_indices`
                               nonzero positions as gaps <= 2**b, fillers
``huffman_code_lengths``       ``(counts) -> [length per symbol]``: optimal     :func:`check_huffman_code_lengths`
                               prefix code, 0 for unused symbols
``encode_layer``               ``(weight, sparsity, n_clusters, index_bits,     :func:`check_encode_layer`
                               iters) -> dict``: prune, share, relative
                               indices, Huffman bit strings
``decode_layer``               ``(encoded dict) -> float32 weight``: exact      :func:`check_decode_layer`
                               inverse of ``encode_layer``
``quantize_affine_uint8``      ``(x, x_min=None, x_max=None) -> (q uint8,       :func:`check_quantize_affine_uint8`
                               scale, zero_point int)``: range holds 0
``fold_batchnorm``             ``(conv, bn) -> new conv with bias`` computing   :func:`check_fold_batchnorm`
                               ``bn(conv(x))`` in eval mode
=============================  ==============================================  ====================================

The ``reference_*`` answers (:mod:`prunekit.checks.references.lab6`, re-exported here) wrap prunekit's
own functions (:mod:`prunekit.compression`). Each check prints one line and returns a
:class:`~prunekit.checks.core.CheckResult`.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import compression
from ..masks import topk_mask
from ..quantization import _channel_view
from .core import Case, CheckFailed, CheckResult, call, describe_tensor, expect, run_check
from .references.lab6 import (reference_decode_layer, reference_dequantize, reference_distillation_loss,
                              reference_encode_layer, reference_fold_batchnorm, reference_huffman_code_lengths,
                              reference_kmeans_share, reference_quantize_affine_uint8, reference_quantize_int8,
                              reference_relative_indices)

__all__ = [
    "check_quantize_int8", "check_dequantize", "check_kmeans_share", "check_distillation_loss",
    "check_relative_indices", "check_huffman_code_lengths", "check_encode_layer", "check_decode_layer",
    "check_quantize_affine_uint8", "check_fold_batchnorm",
    "reference_quantize_int8", "reference_dequantize", "reference_kmeans_share", "reference_distillation_loss",
    "reference_relative_indices", "reference_huffman_code_lengths", "reference_encode_layer",
    "reference_decode_layer", "reference_quantize_affine_uint8", "reference_fold_batchnorm",
]


# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "encode_layer": ["prunekit.compression.encode_compressed", "prunekit.encoding.encode_compressed",
                     "prunekit.compression.pack_codes", "prunekit.encoding.pack_codes"],
    "decode_layer": ["prunekit.compression.decode_compressed", "prunekit.encoding.decode_compressed",
                     "prunekit.compression.unpack_codes", "prunekit.encoding.unpack_codes",
                     "prunekit.compression.positions_from_gaps", "prunekit.encoding.positions_from_gaps"],
    "quantize_affine_uint8": ["prunekit.quantization.quantize_affine", "prunekit.quantization.fake_quantize"],
    "fold_batchnorm": ["prunekit.quantization.fold_batchnorm", "prunekit.quantization.fold_batchnorms"],
}


# Every statement of each exercise's contract (as the notebook states it) and the cases that test it
# (a case counts when its label contains the text); tests/test_checks_contract.py runs the checks and
# fails for a statement without a case (issue 18, point 7).
CONTRACT = {
    "quantize_int8": {
        "scale = max|w| / 127, round to nearest": ["w = [0.5, -1.27, 0.01, 1.0], per tensor"],
        "per channel: one scale per entry of dim 0": ["per channel (scales 0.002 and 0.02)",
                                                      "columns have different ranges, per channel"],
        "a given scale is used; values beyond ±127·scale clamped": ["a given scale 0.01 clips", "clipping"],
        "an all-zero channel gets a positive scale": ["an all-zero row"],
        "q int8 of weight's shape, scale () or (out,); Parameters, weight untouched": ["an nn.Parameter",
                                                                                       "random (8, 3, 3, 3)"],
    },
    "dequantize": {
        "q · scale as float32": ["q = [50, -127, 1], scale 0.01"],
        "a per-channel scale multiplies dim 0 (rows, not columns)": ["per-channel scale (rows, not columns)",
                                                                     "a conv q (4, 2, 3, 3)"],
        "a 0-d scale on any shape": ["0-d scale on a 4-D q"],
    },
    "kmeans_share": {
        "only the nonzero weights; index -1 at zeros": ["2 clusters, 3 iterations", "90 % pruned"],
        "linear initialisation between min and max": ["iters = 0: the linear initialisation itself"],
        "exactly `iters` updates, then a final assignment": ["random (20, 20), 70% zeros, 5 clusters, 1 iterations"],
        "an empty cluster keeps its centroid": ["a heavy tail leaves a cluster empty"],
        "every nonzero equal": ["every nonzero weight equal"],
        "int64 indices in the weight's shape; Parameters": ["an nn.Parameter (requires grad)"],
    },
    "distillation_loss": {
        "alpha · T² · KL(p_t ‖ p_s), batchmean": ["T = 4, alpha = 1 (the T² factor)", "alpha = 1, T = 1"],
        "(1 - alpha) · cross-entropy on the plain logits": ["alpha = 0: plain cross-entropy"],
        "KL is 0 when student = teacher": ["student = teacher"],
        "a tensor with gradients, teacher detached": ["random batch 4x3"],
    },
    "relative_indices": {
        "gaps from position -1": ["a nonzero at position 0 has gap 1"],
        "fillers of exactly 2**b while the gap exceeds 2**b": ["nonzeros at 1 and 11", "a gap of 2**b + 1"],
        "a gap of exactly 2**b needs no filler": ["a gap of exactly 2**b needs no filler"],
        "row-major order": ["a 2-D weight is read row by row"],
        "no nonzero: empty tensors": ["no nonzero at all"],
        "gaps int64 and fillers bool, 1-d": ["random (50, 40)", "an nn.Parameter"],
    },
    "huffman_code_lengths": {
        "optimal total length": ["a classic example: 224 bits", "skewed counts where ceil(-log2 p) is not optimal"],
        "0 for unused symbols": ["unused symbols between used ones", "nothing used"],
        "1 for a lone used symbol": ["one used symbol"],
        "counts as a list or a 1-d tensor; a list of ints back": ["a 1-d tensor of counts", "two symbols"],
    },
    "encode_layer": {
        "prune exactly round(sparsity · n) smallest |w|": ["round(14.8) = 15 pruned", "no pruning (sparsity 0)"],
        "share the pruned weight with kmeans_share": ["LeNet-like fc layer", "one cluster"],
        "fillers get the symbol n_clusters; gap symbols are gap - 1": ["long gaps need fillers", "1-bit gaps",
                                                                      "mostly fillers"],
        "Huffman lengths over the whole alphabets, canonical codes, '0'/'1' strings": ["a conv weight (4-d)"],
        "the weight untouched, Parameters accepted": ["an nn.Parameter"],
    },
    "decode_layer": {
        "canonical codes from the lengths, read as prefix codes": ["a hand-made stream"],
        "positions from -1, advance by gap symbol + 1": ["weight 1.0 at 1"],
        "a filler holds no weight": ["a filler, -0.5 at 6", "(5, 12), sparsity 0.9"],
        "float32 of encoded['shape'], any rank": ["(8, 4, 3, 3)", "(40,)"],
    },
    "quantize_affine_uint8": {
        "range [min(x_min, 0), max(x_max, 0)]: it holds 0": ["all positive [2, 3, 4.55]", "all negative"],
        "scale = (hi - lo) / 255 as a 0-d tensor; 1 when hi == lo": ["scale 0.01", "all zeros"],
        "zero_point = round(-lo / scale) in [0, 255], a Python int": ["zero point 100", "zero point 255"],
        "q = clamp(round(x / scale) + zero_point, 0, 255) as uint8": ["clips 1.7 to 255", "random signed values"],
        "a given range is used (calibration)": ["a given range [-0.5, 2]"],
    },
    "fold_batchnorm": {
        "W · γ / sqrt(var + eps) per output channel": ["eps = 1e-3 with small running variances", "eps = 0.1"],
        "bias β + (b - μ) · s; b = 0 without a conv bias": ["conv 3->4 without bias", "conv 2->3 with a bias"],
        "kernel, stride, padding, dilation, groups kept": ["stride 2, dilation 2", "groups = 2", "depthwise"],
        "a new Conv2d with a bias; conv and bn untouched": ["a VGG-sized layer 16->32"],
    },
}

# ============================================================================ shared helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sparse_weight(shape, sparsity: float, seed: int, heavy: bool = True) -> torch.Tensor:
    """A float32 weight with Laplace-like values (a few large ones, as trained layers have) and zeros."""
    g = _gen(seed)
    values = torch.randn(shape, generator=g) * 0.05
    if heavy:
        values = values * torch.empty(shape).exponential_(1.0, generator=g)
    keep = torch.rand(shape, generator=g) >= sparsity
    return values * keep


def _pair(out) -> tuple:
    expect(isinstance(out, (tuple, list)) and len(out) == 2,
           f"returned {type(out).__name__}, expected a tuple of two tensors",
           "end with `return q, scale` (or `return codebook, indices` / `return gaps, fillers`)")
    return tuple(out)


# ============================================================================ quantize_int8
_Q_HINT = ("scale = max|w| / 127 (per tensor), or per output channel (dim 0) with "
           "`weight.abs().flatten(1).amax(dim=1) / 127`; q = round(w / scale), clamp to [-127, 127], "
           "THEN `.to(torch.int8)`")


def _as_scale(scale, per_channel: bool, out_channels: int) -> torch.Tensor:
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and not per_channel:
        return torch.tensor(float(scale), dtype=torch.float64)
    expect(isinstance(scale, torch.Tensor), f"scale is a {type(scale).__name__}, expected a tensor",
           "return the scale as a tensor (shape () per tensor, (out_channels,) per channel)")
    expect(scale.is_floating_point(), f"scale has dtype {scale.dtype}, expected a float tensor", _Q_HINT)
    if per_channel:
        expect(scale.numel() == out_channels,
               f"per-channel scale has {scale.numel()} entries (shape {tuple(scale.shape)}), expected "
               f"{out_channels}: one per output channel",
               "per channel = one scale per entry of dim 0 (a row of a Linear weight, a filter of a conv): "
               "reduce over every dim except dim 0" if scale.numel() > 1 else
               "with per_channel=True compute one scale per output channel (dim 0), not one for the whole tensor")
        return scale.detach().reshape(-1).double()
    expect(scale.numel() == 1, f"per-tensor scale has shape {tuple(scale.shape)}, expected one number",
           "per_channel=False: one scale for the whole tensor, max|w| / 127")
    return scale.detach().reshape(()).double()


def _diagnose_scale(got: torch.Tensor, want: torch.Tensor) -> str:
    for factor, text in ((127 / 128, "divide by 127, not 128: the symmetric int8 range is [-127, 127]"),
                         (127 / 255, "divide by 127, not 255: 255 levels is the full unsigned range; symmetric "
                                     "int8 uses 127 on each side of zero"),
                         (127 / 256, "divide by 127, not 256"),
                         (127.0, "scale = max|w| / 127 (you used max|w|)"), (1 / 127, "scale = max|w| / 127")):
        if torch.allclose(got, want * factor, rtol=1e-5, atol=0):
            return text
    return _Q_HINT


def _quant_case(label: str, weight: torch.Tensor, per_channel: bool, scale=None, expected_q=None) -> Case:
    def run(fn):
        kwargs = {"per_channel": per_channel} if scale is None else {"per_channel": per_channel, "scale": scale}
        q, s = _pair(call(fn, weight, **kwargs))
        ref_q, ref_s = reference_quantize_int8(weight, per_channel, scale)
        out_channels = weight.shape[0] if weight.dim() else 1
        expect(isinstance(q, torch.Tensor), f"q is a {type(q).__name__}, expected a tensor", _Q_HINT)
        expect(tuple(q.shape) == tuple(weight.shape), f"q has shape {tuple(q.shape)}, expected {tuple(weight.shape)}")
        expect(q.dtype == torch.int8, f"q has dtype {q.dtype}, expected torch.int8",
               "round and clamp first, then convert with `.to(torch.int8)`: 1 byte per weight is the point")
        got_s = _as_scale(s, per_channel, out_channels)
        want_s = ref_s.double().reshape(got_s.shape)
        if scale is None:
            expect(torch.allclose(got_s, want_s, rtol=1e-5, atol=0) or
                   (per_channel and bool(torch.isfinite(got_s).all()) and
                    bool(torch.allclose(got_s[want_s != 1], want_s[want_s != 1], rtol=1e-5, atol=0))),
                   f"scale {describe_tensor(got_s)}, expected {describe_tensor(want_s)}",
                   _diagnose_scale(got_s, want_s))
        if expected_q is not None:
            ref_q = torch.tensor(expected_q, dtype=torch.int8).view(weight.shape)
        ratio = weight.detach().double() / _channel_view(want_s, weight)
        ambiguous = (ratio - ratio.floor() - 0.5).abs() < 1e-3        # a tie up to float rounding
        diff = (q.long() - ref_q.long()).abs()
        bad = (diff > 1) | ((diff == 1) & ~ambiguous)
        if bool(bad.any()):
            hint = _Q_HINT
            clipped = ratio.abs() > 127.5
            if bool((bad & clipped).any()):
                hint = ("clamp to [-127, 127] BEFORE `.to(torch.int8)`: int8 conversion wraps around "
                        "(300 becomes 44) instead of saturating")
            elif bool(torch.equal(q.long()[~ambiguous], ratio.floor().long()[~ambiguous])):
                hint = "round to the nearest integer (torch.round), do not floor"
            elif bool(torch.equal(q.long()[~ambiguous], ratio.trunc().long()[~ambiguous])):
                hint = "`.to(torch.int8)` truncates toward zero: call torch.round first"
            raise CheckFailed(f"q = {describe_tensor(q)}, expected {describe_tensor(ref_q)}", hint)
    return Case(label, run)


def _quant_cases() -> list[Case]:
    rows = torch.tensor([[0.1, -0.254, 0.05], [2.54, 1.0, -0.3]])
    cases = [
        _quant_case("w = [0.5, -1.27, 0.01, 1.0], per tensor (scale 0.01)", torch.tensor([0.5, -1.27, 0.01, 1.0]),
                    False, expected_q=[50, -127, 1, 100]),
        _quant_case("2 rows with different ranges, per tensor", rows, False),
        _quant_case("the same 2 rows, per channel (scales 0.002 and 0.02)", rows, True,
                    expected_q=[[50, -127, 25], [127, 50, -15]]),
        _quant_case("a given scale 0.01 clips 3.0 and -3.0 to ±127", torch.tensor([0.5, -3.0, 2.0, 0.1]), False,
                    scale=0.01, expected_q=[50, -127, 127, 10]),
        _quant_case("a given scale 0.02 on a matrix (clipping)", torch.tensor([[4.0, -0.5], [-8.0, 0.3]]), False,
                    scale=torch.tensor(0.02)),
        _quant_case("per channel with an all-zero row (pruned unit)", torch.tensor([[0.0, 0.0], [1.0, -0.5]]), True,
                    expected_q=[[0, 0], [127, -64]]),
        _quant_case("an nn.Parameter, per channel", nn.Parameter(torch.tensor([[0.3, -0.1], [0.02, 0.04]])), True),
    ]
    g = _gen(61)
    square = torch.randn(6, 6, generator=g) * torch.logspace(-2, 0, 6).view(1, 6)   # columns differ, rows alike
    cases.append(_quant_case("6x6 weight whose columns have different ranges, per channel", square, True))
    for i, (shape, per_channel) in enumerate([((30, 20), False), ((30, 20), True), ((8, 3, 3, 3), True),
                                              ((8, 3, 3, 3), False), ((300,), False), ((10, 50), True)]):
        w = torch.randn(shape, generator=g) * (0.1 + torch.rand(shape[0], *[1] * (len(shape) - 1), generator=g))
        cases.append(_quant_case(f"random {shape}, per_channel={per_channel}", w, per_channel))
    return cases


def check_quantize_int8(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``quantize_int8(weight, per_channel=False, scale=None)`` -> ``(q int8, scale)``: symmetric
    ``max|w| / 127`` scale (per tensor or per dim-0 channel), round to nearest, clamp to [-127, 127]."""
    return run_check("quantize_int8", fn, _quant_cases, hint=_Q_HINT,
                     passed="scale /127, rounding, clamping, per channel on dim 0, zero rows, int8", strict=strict)


# ============================================================================ dequantize
_DQ_HINT = ("return `q.float() * scale`; a per-channel scale (shape (out,)) must multiply dim 0: "
            "view it as (out, 1, ..., 1) with `scale.view(-1, *[1] * (q.dim() - 1))`")


def _dequant_case(label: str, q: torch.Tensor, scale: torch.Tensor, expected=None) -> Case:
    def run(fn):
        out = call(fn, q, scale)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor", _DQ_HINT)
        expect(tuple(out.shape) == tuple(q.shape), f"returned shape {tuple(out.shape)}, expected {tuple(q.shape)}",
               _DQ_HINT)
        expect(out.dtype == torch.float32, f"returned dtype {out.dtype}, expected torch.float32",
               "convert q to float (`q.float()`) before multiplying; the result is float32")
        want = reference_dequantize(q, scale) if expected is None else torch.tensor(expected).view(q.shape)
        hint = _DQ_HINT
        if scale.dim() == 1 and q.dim() == 2 and q.shape[0] == q.shape[1] and \
                torch.allclose(out, q.float() * scale.view(1, -1)):
            hint = "the scale multiplied dim 1 (columns); per channel means dim 0 (rows). " + _DQ_HINT
        elif torch.allclose(out, q.float() / _bcast(scale, q), rtol=1e-5, atol=1e-7):
            hint = "multiply by the scale (w = q · scale), do not divide. " + _DQ_HINT
        expect(torch.allclose(out, want, rtol=1e-6, atol=1e-8), f"got {describe_tensor(out)}, expected "
               f"{describe_tensor(want)}", hint)
    return Case(label, run)


def _bcast(scale: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return scale.view(-1, *([1] * (q.dim() - 1))) if scale.dim() == 1 else scale


def _dequant_cases() -> list[Case]:
    i8 = torch.int8
    cases = [
        _dequant_case("q = [50, -127, 1], scale 0.01", torch.tensor([50, -127, 1], dtype=i8), torch.tensor(0.01),
                      [0.5, -1.27, 0.01]),
        _dequant_case("2x3 q, per-channel scale [0.5, 2]", torch.tensor([[2, -4, 0], [1, 3, -1]], dtype=i8),
                      torch.tensor([0.5, 2.0]), [[1.0, -2.0, 0.0], [2.0, 6.0, -2.0]]),
        _dequant_case("3x3 q, per-channel scale (rows, not columns)",
                      torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=i8), torch.tensor([1.0, 0.1, 0.01]),
                      [[1.0, 2.0, 3.0], [0.4, 0.5, 0.6], [0.07, 0.08, 0.09]]),
        _dequant_case("a conv q (4, 2, 3, 3), per channel",
                      torch.randint(-127, 128, (4, 2, 3, 3), generator=_gen(62)).to(i8), torch.tensor([1.0, 2, 3, 4])),
        _dequant_case("per tensor, 0-d scale on a 4-D q",
                      torch.randint(-127, 128, (3, 2, 2, 2), generator=_gen(63)).to(i8), torch.tensor(0.003)),
    ]
    g = _gen(64)
    for shape, per_channel in [((20, 30), True), ((20, 30), False), ((7, 7), True), ((5, 4, 3, 3), True)]:
        q = torch.randint(-127, 128, shape, generator=g).to(i8)
        scale = torch.rand(shape[0], generator=g) * 0.1 + 1e-3 if per_channel else torch.rand((), generator=g) * 0.1
        cases.append(_dequant_case(f"random {shape}, per_channel={per_channel}", q, scale))
    w = torch.randn(16, 9, generator=g)
    q, scale = reference_quantize_int8(w, per_channel=True)
    cases.append(_dequant_case("round trip of quantize_int8 on a 16x9 weight", q, scale))
    return cases


def check_dequantize(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``dequantize(q, scale)`` = ``q · scale`` as float32, a per-channel scale along dim 0."""
    return run_check("dequantize", fn, _dequant_cases, hint=_DQ_HINT,
                     passed="per tensor, per channel on dim 0 (square and 4-D), float32", strict=strict)


# ============================================================================ kmeans_share
_KM_HINT = ("v = weight[weight != 0]; codebook = torch.linspace(v.min(), v.max(), n_clusters); iters times: "
            "assign each v to its nearest centroid (argmin of |v - c|), set each centroid to the mean of its "
            "values (an empty cluster keeps its centroid); then assign once more. indices: -1 where weight == 0")


def _km_diagnose(weight, n_clusters, iters, codebook: torch.Tensor) -> str:
    w = weight.detach()
    values = w[w != 0]
    init = torch.linspace(values.min().item(), values.max().item(), n_clusters)
    if bool(torch.isnan(codebook).any()):
        return "the codebook has NaN: a cluster with no value must keep its centroid (the mean of nothing is NaN)"
    with_zeros, _ = compression.kmeans_share(w + (w == 0) * 1e-30, n_clusters, iters)   # zeros take part
    if torch.allclose(codebook.double(), with_zeros.double(), rtol=1e-4, atol=1e-7):
        return "the zeros (pruned weights) were clustered too: share only the NONZERO weights, weight[weight != 0]"
    if iters > 0 and torch.allclose(codebook.double(), init.double(), rtol=1e-5, atol=1e-8):
        return "the centroids never moved: update each to the mean of its values, `iters` times"
    for off in (-1, 1):
        if iters + off >= 0:
            other, _ = compression.kmeans_share(w, n_clusters, iters + off)
            if torch.allclose(codebook.double(), other.double(), rtol=1e-5, atol=1e-8) and \
                    not torch.allclose(other, compression.kmeans_share(w, n_clusters, iters)[0]):
                return f"that is the codebook after {iters + off} update(s); do exactly `iters` = {iters}"
    return _KM_HINT


def _km_case(label: str, weight: torch.Tensor, n_clusters: int, iters: int, expected_codebook=None,
             expected_indices=None) -> Case:
    def run(fn):
        codebook, indices = _pair(call(fn, weight, n_clusters, iters))
        expect(isinstance(codebook, torch.Tensor) and isinstance(indices, torch.Tensor),
               "expected (codebook, indices) as two tensors", _KM_HINT)
        expect(tuple(codebook.shape) == (n_clusters,), f"codebook has shape {tuple(codebook.shape)}, expected "
               f"({n_clusters},)", "one centroid per cluster, even if a cluster ends up empty")
        expect(codebook.is_floating_point(), f"codebook has dtype {codebook.dtype}, expected float")
        expect(tuple(indices.shape) == tuple(weight.shape),
               f"indices have shape {tuple(indices.shape)}, expected the weight's {tuple(weight.shape)}",
               "one index per weight entry, in the weight's shape")
        expect(not indices.is_floating_point() and not indices.dtype == torch.bool,
               f"indices have dtype {indices.dtype}, expected an integer tensor (int64)")
        zero = weight.detach() == 0
        idx = indices.long()
        expect(bool((idx[zero] == -1).all()),
               f"{int((idx[zero] != -1).sum())} zero (pruned) weights have an index other than -1",
               "pruned weights must stay zero: give them index -1 and cluster only the nonzero weights")
        expect(bool((idx[~zero] >= 0).all()) and bool((idx[~zero] < n_clusters).all()),
               f"nonzero weights have indices outside [0, {n_clusters - 1}]: {describe_tensor(idx[~zero])}",
               "every nonzero weight gets the index of a centroid")
        want_cb, want_idx = reference_kmeans_share(weight, n_clusters, iters)
        if expected_codebook is not None:
            want_cb = torch.tensor(expected_codebook, dtype=want_cb.dtype)
        scale = weight.detach().abs().max().item()
        got_cb = codebook.detach().double()
        expect(torch.allclose(got_cb, want_cb.double(), rtol=1e-5, atol=1e-6 * scale),
               f"codebook {describe_tensor(got_cb)}, expected {describe_tensor(want_cb)}",
               _km_diagnose(weight, n_clusters, iters, got_cb))
        values = weight.detach()[~zero].double()
        dist = (values[:, None] - got_cb[None, :]).abs()
        chosen = dist.gather(1, idx[~zero].view(-1, 1)).squeeze(1)
        expect(bool((chosen <= dist.min(1).values + 1e-6 * scale).all()),
               "some weights are not assigned to their nearest centroid",
               "after the last update, assign each nonzero weight to the NEAREST centroid (argmin of |v - c|)")
        if expected_indices is not None:
            expect(torch.equal(idx, torch.tensor(expected_indices).view(weight.shape)),
                   f"indices {describe_tensor(idx)}, expected {expected_indices}", _KM_HINT)
    return Case(label, run)


def _km_cases() -> list[Case]:
    cases = [
        _km_case("[0.1, 0, 0.12, 0.9, 1.0], 2 clusters, 3 iterations", torch.tensor([0.1, 0.0, 0.12, 0.9, 1.0]), 2, 3,
                 [0.11, 0.95], [0, -1, 0, 1, 1]),
        _km_case("iters = 0: the linear initialisation itself", torch.tensor([[-1.0, 0.0, 0.2], [0.4, 1.0, 0.0]]), 3, 0,
                 [-1.0, 0.0, 1.0], [[0, -1, 1], [1, 2, -1]]),
        _km_case("a heavy tail leaves a cluster empty (it keeps its centroid)",
                 torch.tensor([-1.0, 0.01, 0.02, 0.03, 0.04, 0.0, 5.0]), 4, 5, [-1.0, 0.025, 3.0, 5.0],
                 [0, 1, 1, 1, 1, -1, 3]),
        _km_case("every nonzero weight equal", torch.tensor([0.5, 0.0, 0.5, 0.5]), 3, 4, [0.5, 0.5, 0.5]),
        _km_case("90 % pruned 40x30 weight, 8 clusters, 10 iterations", _sparse_weight((40, 30), 0.9, 65), 8, 10),
        _km_case("an nn.Parameter (requires grad)",
                 nn.Parameter(torch.tensor([[0.3, -0.2, 0.0], [0.25, 0.0, -0.7]])), 2, 2),
    ]
    for i, (shape, sparsity, k, iters) in enumerate([((50, 40), 0.8, 16, 5), ((8, 4, 3, 3), 0.5, 7, 10),
                                                      ((300,), 0.0, 4, 20), ((60, 50), 0.92, 31, 3),
                                                      ((20, 20), 0.7, 5, 1)]):
        cases.append(_km_case(f"random {shape}, {sparsity:.0%} zeros, {k} clusters, {iters} iterations",
                              _sparse_weight(shape, sparsity, 66 + i), k, iters))
    return cases


def check_kmeans_share(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``kmeans_share(weight, n_clusters, iters)`` -> ``(codebook (k,), indices (weight.shape))``:
    k-means of the nonzero weights only, linear init over [min, max], empty clusters kept, index -1 at zeros."""
    return run_check("kmeans_share", fn, _km_cases, hint=_KM_HINT,
                     passed="zeros stay -1, linear init, exact iterations, empty clusters, nearest assignment",
                     strict=strict)


# ============================================================================ distillation_loss
_KD_HINT = ("soft = F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t.detach() / T, dim=1), reduction='batchmean'); "
            "return alpha * T**2 * soft + (1 - alpha) * F.cross_entropy(s, labels)")


def _kd_variants(s, t, y, T, alpha) -> dict[str, torch.Tensor]:
    """Values of common mistakes, to name the one a learner made."""
    log_ps, pt = F.log_softmax(s / T, 1), F.softmax(t / T, 1)
    kl = F.kl_div(log_ps, pt, reduction="batchmean")
    ce = F.cross_entropy(s, y)
    reverse = F.kl_div(F.log_softmax(t / T, 1), F.softmax(s / T, 1), reduction="batchmean")
    return {
        "multiply the soft term by T² (Hinton et al.: keeps its gradients comparable as T changes)":
            alpha * kl + (1 - alpha) * ce,
        "KL is reversed: it is KL(teacher ‖ student) = Σ p_t (log p_t − log p_s), i.e. "
        "F.kl_div(student LOG-probs, teacher probs)": alpha * T ** 2 * reverse + (1 - alpha) * ce,
        "divide BOTH logits by T before the softmax":
            alpha * T ** 2 * F.kl_div(F.log_softmax(s, 1), pt, reduction="batchmean") + (1 - alpha) * ce,
        "divide the TEACHER's logits by T too":
            alpha * T ** 2 * F.kl_div(log_ps, F.softmax(t, 1), reduction="batchmean") + (1 - alpha) * ce,
        "use reduction='batchmean' (sum over classes, mean over the batch); 'mean' also divides by the "
        "number of classes": alpha * T ** 2 * F.kl_div(log_ps, pt, reduction="sum") / s.numel() + (1 - alpha) * ce,
        "average over the batch (reduction='batchmean'), do not sum":
            alpha * T ** 2 * F.kl_div(log_ps, pt, reduction="sum") + (1 - alpha) * ce,
        "alpha weights the SOFT (teacher) term, 1 − alpha the hard labels":
            (1 - alpha) * T ** 2 * kl + alpha * ce,
        "the cross-entropy with the labels uses the plain logits (T = 1)":
            alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s / T, y),
        "F.kl_div expects the student's LOG-probabilities as its first argument":
            alpha * T ** 2 * F.kl_div(F.softmax(s / T, 1), pt, reduction="batchmean") + (1 - alpha) * ce,
    }


def _kd_case(label: str, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float, alpha: float,
             expected: float | None = None) -> Case:
    def run(fn):
        student = s.clone().requires_grad_(True)
        teacher = t.clone().requires_grad_(True)
        out = call(fn, student, teacher, y, T, alpha)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a scalar tensor",
               "return the loss as a tensor (not `.item()`): training needs its gradient")
        expect(out.numel() == 1 and out.dim() == 0, f"returned shape {tuple(out.shape)}, expected a scalar ()",
               "reduce over the batch: reduction='batchmean' for the KL, the default mean for the cross-entropy")
        expect(out.requires_grad, "the loss does not require grad: it was detached from the student's logits",
               "compute it with torch operations on student_logits; no .detach(), .item() or numpy")
        want = reference_distillation_loss(s.double(), t.double(), y, T, alpha)
        if expected is not None:
            expect(abs(want.item() - expected) < 1e-6, "internal: hand value mismatch")
        value = out.detach().double()
        if not torch.allclose(value, want, rtol=1e-4, atol=1e-6):
            hint = _KD_HINT
            for text, wrong in _kd_variants(s.double(), t.double(), y, T, alpha).items():
                if torch.allclose(value, wrong, rtol=1e-4, atol=1e-6) and not torch.allclose(wrong, want, rtol=1e-4,
                                                                                            atol=1e-6):
                    hint = text
                    break
            raise CheckFailed(f"loss {value.item():.6g}, expected {want.item():.6g} (T={T}, alpha={alpha})", hint)
        out.backward()
        ref_s = s.double().clone().requires_grad_(True)
        reference_distillation_loss(ref_s, t.double(), y, T, alpha).backward()
        expect(student.grad is not None and torch.allclose(student.grad.double(), ref_s.grad, rtol=1e-3, atol=1e-6),
               "the gradient w.r.t. the student's logits is wrong", _KD_HINT)
        expect(teacher.grad is None or not bool(teacher.grad.any()),
               "gradient flowed into the teacher's logits: training would also push the teacher",
               "the teacher is a fixed target: use `teacher_logits.detach()`")
    return Case(label, run)


def _kd_cases() -> list[Case]:
    s, t, y = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([1])
    same = torch.tensor([[3.0, -1.0, 0.5, 0.0]])
    cases = [
        _kd_case("student = teacher, alpha = 1: KL is 0", same, same, torch.tensor([2]), 3.0, 1.0, 0.0),
        _kd_case("alpha = 0: plain cross-entropy", s, t, y, 4.0, 0.0),
        _kd_case("alpha = 1, T = 1: only KL(p_t ‖ p_s)", s, t, y, 1.0, 1.0),
        _kd_case("one example, T = 2, alpha = 0.5", s, t, y, 2.0, 0.5),
        _kd_case("T = 4, alpha = 1 (the T² factor)", s, t, y, 4.0, 1.0),
    ]
    g = _gen(67)
    for n, c, T, alpha in [(4, 3, 2.0, 0.7), (16, 10, 4.0, 0.9), (8, 10, 8.0, 0.5), (32, 10, 1.5, 0.25),
                           (5, 100, 20.0, 0.9)]:
        cases.append(_kd_case(f"random batch {n}x{c}, T={T}, alpha={alpha}", torch.randn(n, c, generator=g) * 3,
                              torch.randn(n, c, generator=g) * 3, torch.randint(0, c, (n,), generator=g), T, alpha))
    return cases


def check_distillation_loss(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``distillation_loss(student_logits, teacher_logits, labels, temperature, alpha)``:
    value, T², KL direction, batchmean, alpha weighting, gradient, and no gradient into the teacher."""
    return run_check("distillation_loss", fn, _kd_cases, hint=_KD_HINT,
                     passed="T², KL(teacher ‖ student), batchmean, alpha, gradients, teacher detached",
                     strict=strict)


# ============================================================================ relative_indices
_RI_HINT = ("positions = nonzero positions of weight.flatten(); start at previous = -1; for each position p: "
            "while p - previous > 2**index_bits, emit a filler (gap 2**index_bits, filler True) and advance "
            "previous by 2**index_bits; then emit gap p - previous (filler False) and set previous = p")


def _as_flags(out, n: int) -> torch.Tensor:
    expect(isinstance(out, torch.Tensor), f"fillers is a {type(out).__name__}, expected a tensor",
           "return the filler flags as a bool tensor")
    expect(out.dim() == 1 and out.numel() == n, f"fillers has shape {tuple(out.shape)}, expected ({n},): one "
           "flag per gap")
    if out.dtype != torch.bool:
        expect(bool(((out == 0) | (out == 1)).all()), "fillers holds values other than 0/1 (True/False)")
    expect(out.dtype == torch.bool, f"fillers has dtype {out.dtype}, expected torch.bool (the text asks for a bool "
           "tensor)", "torch.tensor(list_of_flags, dtype=torch.bool)")
    return out


def _ri_diagnose(weight, bits, gaps: torch.Tensor, fillers: torch.Tensor) -> str:
    positions = torch.nonzero(weight.flatten() != 0).flatten()
    span = 2 ** bits
    ends = torch.cumsum(gaps, 0)[~fillers] if len(gaps) else gaps
    if len(positions) and len(ends) == len(positions) and torch.equal(ends, positions):
        return "count from position -1: a nonzero at position 0 has gap 1 (a stored gap is never 0)"
    if len(gaps) == len(positions) and len(positions):
        plain = torch.diff(positions, prepend=torch.tensor([-1]))
        if torch.equal(gaps, positions):
            return "store the DIFFERENCE to the previous nonzero, not the position itself"
        if bool((plain > span).any()):
            return (f"a gap larger than 2**index_bits = {span} does not fit in {bits} bits: insert filler entries "
                    f"first, each jumping exactly {span} positions")
    if bool((gaps == span - 1).any()) and bool(fillers.any()) and bool((gaps[fillers] == span - 1).all()):
        return f"a filler jumps exactly 2**index_bits = {span} positions (gaps 1..{span} fit in {bits} bits as gap - 1)"
    if bool((gaps < 1).any()):
        return ("a gap of 0 appeared: with fillers of 2**b, a gap of exactly 2**b needs no filler "
                "(use `while gap > 2**b`, not `>=`)")
    return _RI_HINT


def _ri_case(label: str, weight: torch.Tensor, bits: int, expected=None) -> Case:
    def run(fn):
        gaps, fillers = _pair(call(fn, weight, bits))
        expect(isinstance(gaps, torch.Tensor), f"gaps is a {type(gaps).__name__}, expected a tensor",
               "return the gaps as a 1-d int64 tensor, e.g. torch.tensor(list_of_gaps, dtype=torch.long)")
        want_g, want_f = reference_relative_indices(weight, bits)
        if expected is not None:
            want_g, want_f = torch.tensor(expected[0], dtype=torch.long), torch.tensor(expected[1], dtype=torch.bool)
        expect(gaps.dim() == 1, f"gaps has shape {tuple(gaps.shape)}, expected 1-d", "one gap per stored entry")
        expect(gaps.dtype == torch.long, f"gaps has dtype {gaps.dtype}, expected torch.int64 (the text asks for "
               "an int64 tensor)", "torch.tensor(list_of_gaps, dtype=torch.long)")
        flags = _as_flags(fillers, len(gaps))
        got_g = gaps.long()
        same = torch.equal(got_g, want_g) and torch.equal(flags, want_f)
        expect(same, f"gaps {describe_tensor(got_g, 12)} fillers {describe_tensor(flags.long(), 12)}, expected "
               f"gaps {describe_tensor(want_g, 12)} fillers {describe_tensor(want_f.long(), 12)}",
               _ri_diagnose(weight.detach(), bits, got_g, flags))
    return Case(label, run)


def _ri_cases() -> list[Case]:
    def at(n, positions, shape=None):
        w = torch.zeros(n)
        w[list(positions)] = torch.arange(1, len(positions) + 1, dtype=torch.float32)
        return w.view(shape) if shape else w

    cases = [
        _ri_case("nonzeros at 1 and 11, 2 bits (gaps up to 4)", at(12, [1, 11]), 2, ([2, 4, 4, 2], [0, 1, 1, 0])),
        _ri_case("a nonzero at position 0 has gap 1", at(6, [0, 1, 5]), 3, ([1, 1, 4], [0, 0, 0])),
        _ri_case("a gap of exactly 2**b needs no filler", at(8, [3, 7]), 2, ([4, 4], [0, 0])),
        _ri_case("a gap of 2**b + 1 needs one filler", at(6, [4]), 2, ([4, 1], [1, 0])),
        _ri_case("a 2-D weight is read row by row", at(12, [2, 5, 6, 11], (3, 4)), 3, ([3, 3, 1, 5], [0, 0, 0, 0])),
        _ri_case("a long run of zeros, 1 bit (gaps 1 or 2)", at(9, [8]), 1, ([2, 2, 2, 2, 1], [1, 1, 1, 1, 0])),
        _ri_case("no nonzero at all", torch.zeros(3, 4), 4, ([], [])),
        _ri_case("an nn.Parameter", nn.Parameter(at(10, [0, 9])), 2, ([1, 4, 4, 1], [0, 1, 1, 0])),
    ]
    for i, (shape, sparsity, bits) in enumerate([((50, 40), 0.9, 3), ((20, 5, 3, 3), 0.95, 4), ((2000,), 0.99, 5),
                                                  ((30, 30), 0.5, 2), ((100, 100), 0.98, 8)]):
        cases.append(_ri_case(f"random {shape}, {sparsity:.0%} zeros, {bits} bits",
                              _sparse_weight(shape, sparsity, 70 + i, heavy=False), bits))
    return cases


def check_relative_indices(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``relative_indices(weight, index_bits)`` -> ``(gaps, fillers)``: Han et al.'s relative
    positions of the nonzeros, gaps in [1, 2**b] from position -1, fillers of exactly 2**b."""
    return run_check("relative_indices", fn, _ri_cases, hint=_RI_HINT,
                     passed="first gap from -1, fillers of exactly 2**b, boundary 2**b, row-major, empty",
                     strict=strict)


# ============================================================================ huffman_code_lengths
_HUF_HINT = ("put (count, symbol) of every USED symbol in a heap; repeatedly pop the two SMALLEST, add 1 to "
             "the length of every symbol inside them, push their sum; unused symbols keep length 0 and a lone "
             "used symbol gets length 1")


def _as_lengths(out, n: int) -> list[int]:
    expect(isinstance(out, list), f"returned {type(out).__name__}, expected a list of ints (the text asks for a list)",
           "return a Python list with one length per symbol (`.tolist()` turns a tensor into one)")
    expect(len(out) == n, f"returned {len(out)} lengths for {n} symbols", "one length per symbol, unused ones 0")
    expect(all(isinstance(v, int) and not isinstance(v, bool) for v in out),
           f"lengths of type {sorted({type(v).__name__ for v in out})}, expected Python ints",
           "code lengths are whole numbers: int(...)")
    return list(out)


def _cost(counts, lengths) -> int:
    return sum(c * n for c, n in zip(counts, lengths))


def _huf_case(label: str, counts, expected=None) -> Case:
    def run(fn):
        arg = counts.clone() if isinstance(counts, torch.Tensor) else list(counts)
        lengths = _as_lengths(call(fn, arg), len(counts))
        plain = counts.tolist() if isinstance(counts, torch.Tensor) else list(counts)
        want = reference_huffman_code_lengths(plain) if expected is None else list(expected)
        used = [c > 0 for c in plain]
        expect(all(n >= 0 for n in lengths), f"negative lengths: {lengths[:12]}")
        wasted = [i for i, (u, n) in enumerate(zip(used, lengths)) if not u and n != 0]
        expect(not wasted, f"unused symbols {wasted[:6]} (count 0) got codes", "a symbol that never occurs gets "
               "length 0: leave it out of the tree")
        missing = [i for i, (u, n) in enumerate(zip(used, lengths)) if u and n == 0]
        expect(not missing, f"used symbols {missing[:6]} got length 0",
               "every used symbol needs a code; a lone used symbol still needs 1 bit" if sum(used) == 1 else _HUF_HINT)
        kraft = sum(Fraction(1, 2 ** n) for n in lengths if n > 0)
        expect(kraft <= 1, f"lengths {lengths[:12]} are not a prefix code: Σ 2^-length = {float(kraft):.4g} > 1",
               "a prefix code needs Σ 2^-length ≤ 1 (Kraft); rounding -log2(p) DOWN breaks it. " + _HUF_HINT)
        got_cost, want_cost = _cost(plain, lengths), _cost(plain, want)
        if got_cost != want_cost:
            n_used = sum(used)
            hint = _HUF_HINT
            if n_used > 1 and len(set(n for n, u in zip(lengths, used) if u)) == 1:
                hint = "fixed-length codes ignore the frequencies; frequent symbols must get SHORTER codes. " + hint
            elif n_used > 1:
                total = sum(plain)
                shannon = [math.ceil(-math.log2(c / total)) if c else 0 for c in plain]
                if lengths == shannon:
                    hint = "ceil(-log2 p) (Shannon's code) is prefix-free but not optimal. " + hint
            raise CheckFailed(f"lengths {lengths[:12]}{'...' if len(lengths) > 12 else ''} cost {got_cost} bits, "
                              f"an optimal code costs {want_cost}", hint)
    return Case(label, run)


def _huf_cases() -> list[Case]:
    cases = [
        _huf_case("counts [45, 13, 12, 16, 9, 5] (a classic example: 224 bits)", [45, 13, 12, 16, 9, 5],
                  [1, 3, 3, 3, 4, 4]),
        _huf_case("two symbols [3, 1]", [3, 1], [1, 1]),
        _huf_case("one used symbol [0, 7, 0]", [0, 7, 0], [0, 1, 0]),
        _huf_case("nothing used [0, 0, 0]", [0, 0, 0], [0, 0, 0]),
        _huf_case("8 equal counts: 3 bits each", [5] * 8, [3] * 8),
        _huf_case("doubling counts [1, 1, 2, 4, 8, 16, 32]", [1, 1, 2, 4, 8, 16, 32], [6, 6, 5, 4, 3, 2, 1]),
        _huf_case("unused symbols between used ones", [10, 0, 1, 0, 1, 6], [1, 0, 3, 0, 3, 2]),
        _huf_case("skewed counts where ceil(-log2 p) is not optimal", [90, 6, 4]),
        _huf_case("a 1-d tensor of counts", torch.tensor([40, 30, 20, 10])),
    ]
    g = _gen(80)
    for n, kind in [(32, "zipf"), (64, "ties"), (256, "zipf"), (9, "uniform"), (31, "sparse")]:
        if kind == "zipf":
            counts = (1000 / torch.arange(1, n + 1).float() ** 1.2).round().long()
            counts = counts[torch.randperm(n, generator=g)]
        elif kind == "ties":
            counts = torch.randint(1, 4, (n,), generator=g) * 5
        elif kind == "sparse":
            counts = torch.randint(0, 50, (n,), generator=g) * (torch.rand(n, generator=g) > 0.5)
        else:
            counts = torch.randint(1, 100, (n,), generator=g)
        cases.append(_huf_case(f"{n} symbols, {kind} counts", counts.tolist()))
    return cases


def check_huffman_code_lengths(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``huffman_code_lengths(counts)``: one length per symbol, 0 for unused ones, a prefix code
    (Kraft Σ 2^-l ≤ 1) whose total length Σ count·length is optimal (any optimal tie-break accepted)."""
    return run_check("huffman_code_lengths", fn, _huf_cases, hint=_HUF_HINT,
                     passed="prefix-free, optimal total length, unused symbols, a lone symbol", strict=strict)


# ============================================================================ encode_layer
_ENC_HINT = ("pruned = weight * masks.topk_mask(weight.abs(), sparsity); codebook, indices = kmeans_share(pruned, "
             "n_clusters, iters); gaps, fillers = relative_indices(pruned, index_bits); weight symbols: the cluster of "
             "each nonzero in order, n_clusters for a filler; gap symbols: gap - 1; lengths = huffman_code_lengths("
             "counts over n_clusters + 1 / 2**index_bits symbols); codes = compression.canonical_codes(lengths); "
             "bits = ''.join(format(codes[s], f'0{lengths[s]}b') for s in stream)")
_ENC_KEYS = ("shape", "codebook", "symbol_lengths", "gap_lengths", "symbols", "gaps")


def _expected_shared(weight: torch.Tensor, sparsity: float, n_clusters: int, iters: int) -> torch.Tensor:
    w = weight.detach().float()
    pruned = w * topk_mask(w.abs(), sparsity)
    return compression.shared_weight(*reference_kmeans_share(pruned, n_clusters, iters))


def _enc_case(label: str, weight: torch.Tensor, sparsity: float, n_clusters: int, index_bits: int,
              iters: int = 10) -> Case:
    def run(fn):
        out = call(fn, weight, sparsity, n_clusters, index_bits, iters)
        expect(isinstance(out, dict), f"returned {type(out).__name__}, expected a dict with keys {list(_ENC_KEYS)}",
               _ENC_HINT)
        missing = [k for k in _ENC_KEYS if k not in out]
        expect(not missing, f"the dict lacks {missing}", f"return exactly the keys {list(_ENC_KEYS)}")
        expect(list(out["shape"]) == list(weight.shape), f"shape {out['shape']!r}, expected {list(weight.shape)}",
               "store list(weight.shape): the decoder needs it")
        for key in ("symbols", "gaps"):
            expect(isinstance(out[key], str) and set(out[key]) <= {"0", "1"},
                   f"{key!r} should be a string of '0' and '1', got {type(out[key]).__name__} {str(out[key])[:30]!r}",
                   "write each code with format(code, f'0{length}b') and join them")
        expect(len(out["symbol_lengths"]) == n_clusters + 1,
               f"{len(out['symbol_lengths'])} weight-symbol code lengths, expected n_clusters + 1 = {n_clusters + 1}",
               "the weight alphabet is the n_clusters clusters plus ONE filler symbol (= n_clusters)")
        expect(len(out["gap_lengths"]) == 2 ** index_bits,
               f"{len(out['gap_lengths'])} gap code lengths, expected 2**index_bits = {2 ** index_bits}",
               "gaps 1 .. 2**index_bits are stored as the symbols gap - 1 = 0 .. 2**index_bits - 1")
        want = reference_encode_layer(weight, sparsity, n_clusters, index_bits, iters)
        expected = _expected_shared(weight, sparsity, n_clusters, iters)
        try:
            decoded = reference_decode_layer({**out, "codebook": torch.as_tensor(out["codebook"]).float()})
        except (ValueError, IndexError, RuntimeError, KeyError) as exc:
            raise CheckFailed(f"the streams do not decode: {exc}",
                              "each stored entry gets one weight code and one gap code, from canonical codes of your "
                              "code lengths; gap symbols are gap - 1. " + _ENC_HINT) from None
        kept = int((weight.detach() != 0).sum()) - int(round(sparsity * weight.numel()))
        n_kept = int((decoded != 0).sum())
        if n_kept != int((expected != 0).sum()):
            hint = (f"prune exactly round(sparsity · n) = {int(round(sparsity * weight.numel()))} weights (the "
                    "smallest |w|), e.g. with masks.topk_mask(weight.abs(), sparsity). " + _ENC_HINT)
            raise CheckFailed(f"the decoded layer has {n_kept} nonzeros, expected {int((expected != 0).sum())}", hint)
        del kept
        if not torch.equal(decoded != 0, expected != 0):
            raise CheckFailed("the decoded nonzeros sit at the wrong positions",
                              "gaps start from position -1, each filler advances by exactly 2**index_bits, and the "
                              "gap SYMBOL is gap - 1. " + _ENC_HINT)
        if not torch.allclose(decoded, expected, rtol=1e-5, atol=1e-7):
            hint = _ENC_HINT
            unpruned = compression.shared_weight(*reference_kmeans_share(weight.detach().float(), n_clusters, iters))
            if torch.allclose(torch.as_tensor(out["codebook"]).float(),
                              reference_kmeans_share(weight.detach().float(), n_clusters, iters)[0], rtol=1e-5) \
                    and not torch.allclose(unpruned, expected):
                hint = "share AFTER pruning: k-means on the pruned weight (its zeros are not clustered). " + _ENC_HINT
            raise CheckFailed(f"the decoded values differ from the shared weight by up to "
                              f"{(decoded - expected).abs().max():.3g}", hint)
        for key, name in (("symbols", "weight-symbol"), ("gaps", "gap")):
            expect(len(out[key]) == len(want[key]),
                   f"the {name} stream has {len(out[key])} bits, an optimal (Huffman) code needs {len(want[key])}",
                   "compute the code lengths with huffman_code_lengths from the symbols' counts (np/torch.bincount "
                   "with minlength = the alphabet size), not a fixed width. " + _ENC_HINT)
    return Case(f"{label} ({tuple(weight.shape)}, sparsity {sparsity}, {n_clusters} clusters, {index_bits}-bit "
                f"gaps)", run)


def _dense_weight(shape, seed: int) -> torch.Tensor:
    g = _gen(seed)
    return torch.randn(shape, generator=g) * 0.05 * torch.empty(shape).exponential_(1.0, generator=g)


def _enc_cases() -> list[Case]:
    return [
        _enc_case("a small matrix, long gaps need fillers", _dense_weight((6, 10), 81), 0.8, 3, 2),
        _enc_case("sparsity 0.37 of 40: round(14.8) = 15 pruned", _dense_weight((40,), 82), 0.37, 4, 3),
        _enc_case("LeNet-like fc layer", _dense_weight((30, 50), 83), 0.92, 15, 4),
        _enc_case("a conv weight (4-d)", _dense_weight((8, 4, 3, 3), 84), 0.6, 7, 3),
        _enc_case("1-bit gaps: many fillers", _dense_weight((5, 12), 85), 0.9, 3, 1),
        _enc_case("no pruning (sparsity 0)", _dense_weight((7, 5), 86), 0.0, 4, 2),
        _enc_case("an nn.Parameter", nn.Parameter(_dense_weight((10, 10), 87)), 0.5, 5, 3),
        _enc_case("one cluster: every weight symbol but the filler is 0", _dense_weight((6, 6), 88), 0.7, 1, 2),
        _enc_case("95 % pruned, 2-bit gaps: mostly fillers", _dense_weight((4, 25), 89), 0.95, 3, 2),
    ]


def check_encode_layer(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``encode_layer(weight, sparsity, n_clusters, index_bits, iters)``: its dict decodes to the pruned and
    shared weight, and each stream is as short as an optimal Huffman code allows; the weight untouched."""
    return run_check("encode_layer", fn, _enc_cases, hint=_ENC_HINT,
                     passed="exact pruning count, share after pruning, fillers, gap - 1 symbols, decodes exactly, "
                            "Huffman-optimal streams", strict=strict)


# ============================================================================ decode_layer
_DEC_HINT = ("codes = compression.canonical_codes(lengths); table = {format(c, f'0{n}b'): symbol for each symbol with "
             "n > 0}; read bits until the word is in the table (both streams); then from position -1: position += "
             "gap_symbol + 1, write codebook[s] unless s == len(codebook) (a filler); return a float32 tensor of "
             "encoded['shape'], zero elsewhere")


def _dec_diagnose(encoded: dict, got: torch.Tensor, want: torch.Tensor) -> str:
    if got.numel() == want.numel() and got.shape != want.shape:
        return "reshape the flat result to encoded['shape']. " + _DEC_HINT
    if got.shape == want.shape:
        shifted = torch.zeros(want.numel())
        shifted[:-1] = want.flatten()[1:]
        if torch.equal(got.flatten(), shifted):
            return "positions start at -1: the first gap g puts the first weight at position g - 1. " + _DEC_HINT
        if bool(((got != 0) & (want == 0)).any()):
            return ("a filler (symbol == len(codebook)) holds no weight: skip it, only advance the position. "
                    + _DEC_HINT)
    return _DEC_HINT


def _dec_case(label: str, encoded: dict, expected: torch.Tensor | None = None) -> Case:
    def run(fn):
        given = {k: (v.clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v)
                 for k, v in encoded.items()}
        out = fn(given)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor", _DEC_HINT)
        expect(out.dtype == torch.float32, f"returned dtype {out.dtype}, expected torch.float32",
               "build the result with torch.zeros(n) (float32) and copy codebook values into it")
        want = reference_decode_layer(encoded) if expected is None else expected
        if not (out.shape == want.shape and torch.equal(out, want)):
            raise CheckFailed(f"decoded {describe_tensor(out)}, expected {describe_tensor(want)}",
                              _dec_diagnose(encoded, out.detach(), want))
    return Case(label, run)


def _dec_cases() -> list[Case]:
    hand = {"shape": [2, 5], "codebook": torch.tensor([-0.5, 0.25, 1.0]),
            "symbol_lengths": [2, 3, 1, 3], "gap_lengths": [1, 2, 3, 3],
            # canonical codes: symbols 2 '0', 0 '10', 1 '110', 3 '111'; gap symbols 0 '0', 1 '10', 2 '110', 3 '111'
            # entries: (symbol 2, gap 2), (filler 3, gap 4), (symbol 0, gap 1), (symbol 1, gap 1)
            "symbols": "0" + "111" + "10" + "110", "gaps": "10" + "111" + "0" + "0"}
    expected = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, -0.5, 0.25, 0.0, 0.0]])
    cases = [_dec_case("a hand-made stream: weight 1.0 at 1, a filler, -0.5 at 6, 0.25 at 7", hand, expected)]
    for i, (shape, sparsity, k, b) in enumerate([((6, 10), 0.8, 3, 2), ((40,), 0.37, 4, 3), ((30, 50), 0.92, 15, 4),
                                                  ((8, 4, 3, 3), 0.6, 7, 3), ((5, 12), 0.9, 3, 1), ((7, 5), 0.0, 4, 2),
                                                  ((3, 3), 0.9, 1, 2)]):
        encoded = reference_encode_layer(_dense_weight(shape, 90 + i), sparsity, k, b)
        cases.append(_dec_case(f"{shape}, sparsity {sparsity}, {k} clusters, {b}-bit gaps", encoded))
    return cases


def check_decode_layer(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``decode_layer(encoded)``: the exact float32 weight of ``encoded['shape']`` that an
    ``encode_layer`` dict stands for (canonical codes, position -1 start, fillers skipped)."""
    return run_check("decode_layer", fn, _dec_cases, hint=_DEC_HINT,
                     passed="canonical codes, positions from -1, fillers hold nothing, shape, float32, exact",
                     strict=strict)


# ============================================================================ quantize_affine_uint8
_AFF_HINT = ("lo = min(x_min or x.min(), 0), hi = max(x_max or x.max(), 0); scale = (hi - lo) / 255 (1 if hi == lo); "
             "zero_point = int(round(-lo / scale)) clamped to [0, 255]; q = clamp(round(x / scale) + zero_point, "
             "0, 255).to(torch.uint8); return q, scale (a 0-d float tensor), zero_point (an int)")


def _aff_case(label: str, x: torch.Tensor, x_min=None, x_max=None, expected_q=None, expected_zp=None) -> Case:
    def run(fn):
        kwargs = {k: v for k, v in (("x_min", x_min), ("x_max", x_max)) if v is not None}
        out = call(fn, x, **kwargs)
        expect(isinstance(out, tuple) and len(out) == 3, f"returned {type(out).__name__}, expected a tuple "
               "(q, scale, zero_point)", _AFF_HINT)
        q, scale, zp = out
        expect(isinstance(q, torch.Tensor) and q.dtype == torch.uint8,
               f"q has dtype {getattr(q, 'dtype', type(q).__name__)}, expected torch.uint8",
               "clamp to [0, 255] first, then .to(torch.uint8) (uint8 wraps around: 256 becomes 0)")
        expect(tuple(q.shape) == tuple(x.shape), f"q has shape {tuple(q.shape)}, expected {tuple(x.shape)}")
        expect(isinstance(zp, int) and not isinstance(zp, bool),
               f"zero_point is {zp!r:.30} ({type(zp).__name__}), expected a Python int",
               "the zero point is an integer: int(round(-lo / scale)), so that 0.0 is stored exactly")
        expect(isinstance(scale, torch.Tensor) and scale.dim() == 0 and scale.is_floating_point(),
               f"scale is {scale!r:.40}, expected a 0-d float tensor", "torch.tensor((hi - lo) / 255)")
        want_q, want_scale, want_zp = reference_quantize_affine_uint8(x, x_min, x_max)
        if expected_q is not None:
            want_q = torch.tensor(expected_q, dtype=torch.uint8).view(x.shape)
        if expected_zp is not None:
            want_zp = expected_zp
        lo = min(float(x.min()) if x_min is None else float(x_min), 0.0)
        hi = max(float(x.max()) if x_max is None else float(x_max), 0.0)
        hint = _AFF_HINT
        raw_lo, raw_hi = (float(x.min()) if x_min is None else float(x_min)), \
            (float(x.max()) if x_max is None else float(x_max))
        if (raw_lo > 0 or raw_hi < 0) and abs(float(scale) - (raw_hi - raw_lo) / 255) < 1e-7 * max(1, abs(raw_hi)):
            hint = ("the range must contain 0 (lo = min(x.min(), 0), hi = max(x.max(), 0)): then 0, the value of "
                    "every ReLU zero and zero padding, is stored exactly as the zero point. " + _AFF_HINT)
        elif hi > lo and abs(float(scale) - (hi - lo) / 256) < 1e-9 + 1e-6 * float(want_scale):
            hint = "uint8 has 256 levels, 0 .. 255, so 255 steps: divide by 255, not 256. " + _AFF_HINT
        expect(abs(float(scale) - float(want_scale)) <= 1e-6 * float(want_scale),
               f"scale {float(scale):.6g}, expected {float(want_scale):.6g}", hint)
        expect(zp == want_zp, f"zero_point {zp}, expected {want_zp}",
               "zero_point = round(-lo / scale): the integer that stands for 0.0. " + _AFF_HINT)
        diff = (q.int() - want_q.int()).abs()
        if int(diff.max()) > 0:
            hint = _AFF_HINT
            floor = (torch.floor(x.float() / want_scale) + want_zp).clamp(0, 255).to(torch.uint8)
            if torch.equal(q, floor):
                hint = "round to the nearest integer (torch.round), do not floor. " + _AFF_HINT
            elif int(diff.max()) > 128:
                hint = ("values outside [0, 255] wrapped around: clamp BEFORE converting to uint8. " + _AFF_HINT)
            raise CheckFailed(f"q = {describe_tensor(q)}, expected {describe_tensor(want_q)}", hint)
    return Case(label, run)


def _aff_cases() -> list[Case]:
    g = _gen(101)
    relu = torch.relu(torch.randn(8, 30, generator=g)) * 3
    return [
        _aff_case("post-ReLU [0, 0.5, 2.55, 1.0]: zero point 0, scale 0.01", torch.tensor([0.0, 0.5, 2.55, 1.0]),
                  expected_q=[0, 50, 255, 100], expected_zp=0),
        _aff_case("[-1, 0, 1.55]: scale 0.01, zero point 100", torch.tensor([-1.0, 0.0, 1.55]),
                  expected_q=[0, 100, 255], expected_zp=100),
        _aff_case("all positive [2, 3, 4.55]: the range still starts at 0", torch.tensor([2.0, 3.0, 4.55]),
                  expected_zp=0),
        _aff_case("all negative: zero point 255", torch.tensor([-2.55, -1.0, -0.01]), expected_zp=255),
        _aff_case("a given range [0, 1] clips 1.7 to 255", torch.tensor([0.2, 1.7, 0.0, 0.999]), 0.0, 1.0),
        _aff_case("a given range [-0.5, 2] (calibrated on other data)", torch.tensor([[-0.7, 0.1], [2.5, 1.0]]),
                  -0.5, 2.0),
        _aff_case("all zeros: scale 1, zero point 0", torch.zeros(5), expected_q=[0] * 5, expected_zp=0),
        _aff_case("random post-ReLU activations (8, 30)", relu),
        _aff_case("random signed values (40,)", torch.randn(40, generator=g) * 2 + 0.5),
    ]


def check_quantize_affine_uint8(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``quantize_affine_uint8(x, x_min=None, x_max=None)`` -> ``(q uint8, scale, zero_point int)``: range
    holding 0, 255 steps, integer zero point, round then clamp to [0, 255]; x untouched."""
    return run_check("quantize_affine_uint8", fn, _aff_cases, hint=_AFF_HINT,
                     passed="range holds 0, /255, integer zero point, rounding, clamping, uint8", strict=strict)


# ============================================================================ fold_batchnorm
_FOLD_HINT = ("s = bn.weight / torch.sqrt(bn.running_var + bn.eps); new conv (same kernel, stride, padding, dilation, "
              "groups, bias=True) with weight = conv.weight * s.view(-1, 1, 1, 1) and bias = bn.bias + "
              "(conv.bias or 0 - bn.running_mean) * s; copy under torch.no_grad(), leave conv and bn untouched")


def _fold_modules(seed: int, c_in: int, c_out: int, bias: bool, groups: int = 1, stride: int = 1,
                  dilation: int = 1, eps: float = 1e-5):
    g = _gen(seed)
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, groups=groups, bias=bias)
    finally:
        torch.set_rng_state(state)
    bn = nn.BatchNorm2d(c_out, eps=eps)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c_out, generator=g))              # some γ negative
        bn.bias.copy_(torch.randn(c_out, generator=g) * 0.5)
        bn.running_mean.copy_(torch.randn(c_out, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(c_out, generator=g) * 0.05 + 0.002)   # small: eps matters
    return conv.eval(), bn.eval()


def _fold_case(label: str, seed: int, c_in: int, c_out: int, bias: bool, **options) -> Case:
    def run(fn):
        conv, bn = _fold_modules(seed, c_in, c_out, bias, **options)
        states = [{k: v.clone() for k, v in m.state_dict().items()} for m in (conv, bn)]
        out = fn(conv, bn)
        for module, state, what in ((conv, states[0], "conv"), (bn, states[1], "bn")):
            now = module.state_dict()
            expect(all(torch.equal(state[k], now[k]) for k in state), f"your function changed the input `{what}`",
                   "build a NEW conv; the caller still uses the original layers")
        expect(isinstance(out, nn.Conv2d), f"returned {type(out).__name__}, expected an nn.Conv2d", _FOLD_HINT)
        expect(out is not conv, "returned the input conv itself", "return a new nn.Conv2d")
        expect(out.bias is not None, "the folded conv has no bias",
               "the BatchNorm's shift β - μ·s becomes the bias: create the conv with bias=True")
        for attr in ("kernel_size", "stride", "padding", "dilation", "groups"):
            expect(getattr(out, attr) == getattr(conv, attr),
                   f"the folded conv has {attr}={getattr(out, attr)}, the original {getattr(conv, attr)}",
                   f"pass {attr}=conv.{attr} to nn.Conv2d(...)")
        x = torch.randn(2, c_in, 9, 9, generator=_gen(seed + 1))
        with torch.no_grad():
            want, got = bn(conv(x)), out.eval()(x)
        if not (got.shape == want.shape and torch.allclose(got, want, rtol=1e-4, atol=1e-4)):
            hint = _FOLD_HINT
            with torch.no_grad():
                b = conv.bias if conv.bias is not None else torch.zeros(c_out)
                for s, mistake in (
                        (bn.weight / torch.sqrt(bn.running_var), "add bn.eps to the variance before the square root"),
                        (bn.weight / bn.running_var, "divide by the standard deviation sqrt(var + eps), not by the "
                                                     "variance"),
                        (bn.weight / (bn.running_var + bn.eps), "divide by the standard deviation sqrt(var + eps), "
                                                                "not by the variance"),
                        (bn.weight / torch.sqrt(bn.running_var + bn.eps), None)):
                    w_ok = torch.allclose(out.weight, conv.weight * s.view(-1, 1, 1, 1), rtol=1e-4, atol=1e-6)
                    if w_ok and mistake:
                        hint = mistake + ". " + _FOLD_HINT
                        break
                    if w_ok and mistake is None:
                        if torch.allclose(out.bias, bn.bias + b * s, atol=1e-5):
                            hint = "subtract the running mean: bias = β + (b - μ) · s. " + _FOLD_HINT
                        elif torch.allclose(out.bias, (b - bn.running_mean) * s, atol=1e-5):
                            hint = "add β, the BatchNorm's shift, to the bias. " + _FOLD_HINT
                        elif conv.bias is not None and torch.allclose(out.bias, bn.bias - bn.running_mean * s,
                                                                      atol=1e-5):
                            hint = "the conv's own bias passes through the BatchNorm too: (b - μ) · s. " + _FOLD_HINT
            raise CheckFailed(f"the folded conv's output differs from bn(conv(x)) by up to "
                              f"{(got - want).abs().max().item() if got.shape == want.shape else float('nan'):.3g}",
                              hint)
        for name, p in out.named_parameters():
            expect(p.requires_grad, f"folded {name} does not require grad",
                   "copy into the new conv's parameters under torch.no_grad()")
    return Case(label, run)


def _fold_cases() -> list[Case]:
    return [
        _fold_case("conv 3->4 without bias (as before a BatchNorm)", 111, 3, 4, False),
        _fold_case("conv 2->3 with a bias", 112, 2, 3, True),
        _fold_case("eps = 1e-3 with small running variances", 113, 4, 6, False, eps=1e-3),
        _fold_case("stride 2, dilation 2", 114, 3, 5, True, stride=2, dilation=2),
        _fold_case("groups = 2", 115, 4, 6, True, groups=2),
        _fold_case("a VGG-sized layer 16->32", 116, 16, 32, False),
        _fold_case("depthwise (groups = channels) with a bias", 117, 4, 4, True, groups=4),
        _fold_case("stride 2, eps = 0.1", 118, 3, 2, False, stride=2, eps=0.1),
    ]


def check_fold_batchnorm(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``fold_batchnorm(conv, bn)``: a new Conv2d with bias whose output equals ``bn(conv(x))`` (eval mode),
    same kernel/stride/padding/dilation/groups; conv and bn untouched."""
    return run_check("fold_batchnorm", fn, _fold_cases, hint=_FOLD_HINT,
                     passed="γ/sqrt(var + eps) per output channel, (b - μ)·s + β, conv without bias, stride, "
                            "dilation, groups, inputs untouched", strict=strict)
