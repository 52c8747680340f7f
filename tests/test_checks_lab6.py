"""Lab 6's checks accept the references and learner-style correct answers, and reject known-wrong ones.
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
from __future__ import annotations

import heapq
import math

import pytest
import torch
import torch.nn.functional as F

from checks_helpers import cases, rejected
from torch import nn

from prunekit import checks, compression

def _check(name):
    return getattr(checks, f"check_{name}")


# ============================================================================ quantize_int8
def _q(w, per_channel, scale, divisor=127.0, rounding=torch.round, clamp=True, axis=0):
    w = w.detach().float()
    if scale is None:
        if per_channel:
            dims = [d for d in range(w.dim()) if d != axis]
            largest = w.abs().amax(dim=dims) if dims else w.abs()
            scale = torch.where(largest > 0, largest / divisor, torch.ones_like(largest))
        else:
            scale = w.abs().max() / divisor
    scale = torch.as_tensor(scale, dtype=torch.float32)
    view = scale.view(*[-1 if d == axis else 1 for d in range(w.dim())]) if scale.dim() == 1 else scale
    q = rounding(w / view)
    if clamp:
        q = q.clamp(-127, 127)
    return q.to(torch.int8), scale


def q_over_128(w, per_channel=False, scale=None):
    return _q(w, per_channel, scale, divisor=128.0)


def q_over_255(w, per_channel=False, scale=None):
    return _q(w, per_channel, scale, divisor=255.0)


def q_floor(w, per_channel=False, scale=None):
    return _q(w, per_channel, scale, rounding=torch.floor)


def q_truncate(w, per_channel=False, scale=None):
    return _q(w, per_channel, scale, rounding=lambda x: x)


def q_no_clamp(w, per_channel=False, scale=None):
    return _q(w, per_channel, scale, clamp=False)


def q_wrong_axis(w, per_channel=False, scale=None):
    return _q(w, per_channel, scale, axis=w.dim() - 1)


def q_ignores_per_channel(w, per_channel=False, scale=None):
    return _q(w, False, scale)


def q_float_values(w, per_channel=False, scale=None):
    q, s = _q(w, per_channel, scale)
    return q.float(), s


def q_ignores_scale(w, per_channel=False, scale=None):
    return _q(w, per_channel, None)


def q_learner_style(w, per_channel=False, scale=None):   # correct: multiplies by 127 / max instead
    w = w.detach()
    if scale is None:
        if per_channel:
            m = w.abs().reshape(w.shape[0], -1).max(dim=1).values
            scale = m / 127
            inv = torch.where(m > 0, 127 / m, torch.zeros_like(m)).view(-1, *[1] * (w.dim() - 1))
            return torch.clamp(torch.round(w * inv), -127, 127).to(torch.int8), scale
        scale = w.abs().max() / 127
    s = torch.as_tensor(scale)
    view = s.view(-1, *[1] * (w.dim() - 1)) if s.dim() == 1 else s
    return torch.clamp(torch.round(w / view), -127, 127).to(torch.int8), s


# ============================================================================ dequantize
def _view(scale, q):
    return scale.view(-1, *[1] * (q.dim() - 1)) if scale.dim() == 1 else scale


def dq_divide(q, scale):
    return q.float() / _view(scale, q)


def dq_columns(q, scale):
    return q.float() * scale


def dq_first_scale(q, scale):
    return q.float() * scale.flatten()[0]


def dq_mean_scale(q, scale):
    return q.float() * scale.mean()


def dq_float64(q, scale):
    return q.double() * _view(scale, q).double()


def dq_int(q, scale):
    return (q.float() * _view(scale, q)).round().to(torch.int8)


def dq_learner_style(q, scale):                          # correct: explicit loop over channels
    out = q.to(torch.float32).clone()
    if scale.dim() == 0:
        return out * scale
    for c in range(q.shape[0]):
        out[c] = out[c] * scale[c]
    return out


# ============================================================================ kmeans_share
def _km(weight, k, iters, include_zeros=False, init="linear", empty="keep", final_assign=True, seed=0,
        zero_index=-1, extra_iters=0):
    w = weight.detach()
    keep = torch.ones_like(w, dtype=torch.bool) if include_zeros else w != 0
    v = w[keep].float()
    if init == "linear":
        c = torch.linspace(v.min().item(), v.max().item(), k)
    elif init == "random":
        g = torch.Generator().manual_seed(seed)
        c = v.min() + (v.max() - v.min()) * torch.rand(k, generator=g)
    else:                                                # density: quantiles of the values
        c = torch.quantile(v, torch.linspace(0, 1, k))
    for _ in range(iters + extra_iters):
        a = (v[:, None] - c[None, :]).abs().argmin(1)
        new = torch.stack([v[a == j].mean() if (a == j).any() else
                           (c[j] if empty == "keep" else torch.tensor(float("nan"))) for j in range(k)])
        c = new
    a = (v[:, None] - c[None, :]).abs().argmin(1)
    idx = torch.full(w.shape, zero_index, dtype=torch.long)
    idx[keep] = a
    if not final_assign:
        idx[keep] = (v[:, None] - torch.linspace(v.min().item(), v.max().item(), k)[None, :]).abs().argmin(1)
    return c, idx


def km_shares_zeros(w, k, iters=20):
    return _km(w, k, iters, include_zeros=True)


def km_random_init(w, k, iters=20):
    return _km(w, k, iters, init="random")


def km_density_init(w, k, iters=20):
    return _km(w, k, iters, init="density")


def km_nan_empty(w, k, iters=20):
    return _km(w, k, iters, empty="nan")


def km_stale_assignment(w, k, iters=20):               # indices from the initial codebook, not the final one
    return _km(w, k, iters, final_assign=False)


def km_zero_index_0(w, k, iters=20):
    return _km(w, k, iters, zero_index=0)


def km_one_extra_iteration(w, k, iters=20):
    return _km(w, k, iters, extra_iters=1)


def km_no_update(w, k, iters=20):
    return _km(w, k, 0)


def km_learner_style(w, k, iters=20):                  # correct: plain Python loops, float64 internally
    flat = w.detach().flatten().tolist()
    values = [x for x in flat if x != 0]
    lo, hi = min(values), max(values)
    c = [lo + (hi - lo) * j / (k - 1) for j in range(k)] if k > 1 else [lo]

    def nearest(x):
        return min(range(k), key=lambda j: (abs(x - c[j]), j))
    for _ in range(iters):
        groups = [[] for _ in range(k)]
        for x in values:
            groups[nearest(x)].append(x)
        c = [sum(gr) / len(gr) if gr else c[j] for j, gr in enumerate(groups)]
    idx = torch.tensor([nearest(x) if x != 0 else -1 for x in flat]).view(w.shape)
    return torch.tensor(c, dtype=torch.float32), idx


# ============================================================================ distillation_loss
def _kd(s, t, y, T, alpha, soft_scale=None, reverse=False, student_T=True, teacher_T=True, reduction="batchmean",
        swap_alpha=False, ce_T=False, detach=True):
    T2 = T ** 2 if soft_scale is None else soft_scale
    t = t.detach() if detach else t
    ls = F.log_softmax(s / (T if student_T else 1.0), 1)
    pt = F.softmax(t / (T if teacher_T else 1.0), 1)
    kl = F.kl_div(F.log_softmax(t / T, 1), F.softmax(s / T, 1), reduction=reduction) if reverse else \
        F.kl_div(ls, pt, reduction=reduction)
    ce = F.cross_entropy(s / T if ce_T else s, y)
    a = 1 - alpha if swap_alpha else alpha
    return a * T2 * kl + (1 - a) * ce


def kd_no_t2(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, soft_scale=1.0)


def kd_reversed(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, reverse=True)


def kd_student_no_temperature(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, student_T=False)


def kd_teacher_no_temperature(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, teacher_T=False)


def kd_mean_reduction(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, reduction="mean")


def kd_sum_reduction(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, reduction="sum")


def kd_alpha_swapped(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, swap_alpha=True)


def kd_ce_with_temperature(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, ce_T=True)


def kd_no_detach(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha, detach=False)


def kd_item(s, t, y, T, alpha):
    return _kd(s, t, y, T, alpha).item()


def kd_learner_style(s, t, y, T, alpha):               # correct: the KL written out by hand
    p_t = torch.softmax(t.detach() / T, dim=1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, dim=1))).sum(dim=1).mean()
    return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y)


# ============================================================================ relative_indices
def _ri(w, bits, start=-1, filler_step=None, strict_ge=False, fillers=True, absolute=False):
    span = 2 ** bits
    step = span if filler_step is None else filler_step
    gaps, flags, prev = [], [], start
    for p in torch.nonzero(w.detach().flatten() != 0).flatten().tolist():
        if absolute:
            gaps.append(p)
            flags.append(False)
            continue
        while fillers and ((p - prev >= span) if strict_ge else (p - prev > span)):
            gaps.append(step)
            flags.append(True)
            prev += step
        gaps.append(p - prev)
        flags.append(False)
        prev = p
    return torch.tensor(gaps, dtype=torch.long), torch.tensor(flags, dtype=torch.bool)


def ri_from_zero(w, bits):
    return _ri(w, bits, start=0)


def ri_no_fillers(w, bits):
    return _ri(w, bits, fillers=False)


def ri_short_fillers(w, bits):
    return _ri(w, bits, filler_step=2 ** bits - 1)


def ri_ge(w, bits):
    return _ri(w, bits, strict_ge=True)


def ri_absolute(w, bits):
    return _ri(w, bits, absolute=True)


def ri_flags_inverted(w, bits):
    g, f = _ri(w, bits)
    return g, ~f


def ri_learner_style(w, bits):                           # correct: divmod instead of a while loop
    gaps, flags, prev = [], [], -1
    for p in w.detach().flatten().nonzero().flatten().tolist():
        n_fill, _ = divmod(p - prev - 1, 2 ** bits)
        gaps += [2 ** bits] * n_fill + [p - prev - n_fill * 2 ** bits]
        flags += [1] * n_fill + [0]
        prev = p
    return torch.tensor(gaps, dtype=torch.long), torch.tensor(flags, dtype=torch.bool)


def ri_int_flags(w, bits):                               # the text asks for a bool tensor
    g, f = _ri(w, bits)
    return g, f.long()


def ri_int32_gaps(w, bits):                              # the text asks for int64
    g, f = _ri(w, bits)
    return g.int(), f


# ============================================================================ huffman_code_lengths
def huf_fixed(counts):
    counts = list(counts)
    used = sum(c > 0 for c in counts)
    n = max(1, math.ceil(math.log2(used))) if used else 0
    return [n if c > 0 else 0 for c in counts]


def huf_shannon(counts):
    counts = [int(c) for c in counts]
    total = sum(counts)
    return [max(1, math.ceil(-math.log2(c / total))) if c else 0 for c in counts]


def huf_floor(counts):
    counts = [int(c) for c in counts]
    total = sum(counts)
    return [max(1, math.floor(-math.log2(c / total))) if c else 0 for c in counts]


def huf_merge_largest(counts):
    counts = [int(c) for c in counts]
    lengths = [0] * len(counts)
    heap = [(-c, i, [i]) for i, c in enumerate(counts) if c > 0]
    heapq.heapify(heap)
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
    k = len(counts)
    while len(heap) > 1:
        a, _, sa = heapq.heappop(heap)
        b, _, sb = heapq.heappop(heap)
        for s in sa + sb:
            lengths[s] += 1
        heapq.heappush(heap, (a + b, k, sa + sb))
        k += 1
    return lengths


def huf_codes_unused(counts):
    return checks.reference_huffman_code_lengths([max(int(c), 1) for c in counts])


def huf_lone_zero(counts):
    lengths = checks.reference_huffman_code_lengths(counts)
    return [0] * len(lengths) if sum(n > 0 for n in lengths) == 1 else lengths


def huf_unary(counts):                                   # prefix-free (1, 2, 3, ...) but not optimal
    counts = [int(c) for c in counts]
    order = sorted((i for i, c in enumerate(counts) if c > 0), key=lambda i: -counts[i])
    lengths = [0] * len(counts)
    for rank, i in enumerate(order):
        lengths[i] = min(rank + 1, len(order) - 1) if len(order) > 1 else 1
    return lengths


def huf_tensor(counts):                                   # the text asks for a list
    return torch.tensor(checks.reference_huffman_code_lengths(counts))


def huf_float_lengths(counts):
    return [float(n) for n in checks.reference_huffman_code_lengths(counts)]


def huf_learner_style(counts):                           # correct: a different tie-break (newest first)
    counts = [int(c) for c in counts]
    nodes = [[c, [i]] for i, c in enumerate(counts) if c > 0]
    lengths = [0] * len(counts)
    if len(nodes) == 1:
        lengths[nodes[0][1][0]] = 1
    while len(nodes) > 1:
        nodes.sort(key=lambda n: n[0])
        (c1, s1), (c2, s2) = nodes[0], nodes[1]
        for s in s1 + s2:
            lengths[s] += 1
        nodes = [[c1 + c2, s1 + s2]] + nodes[2:]
    return lengths


# ============================================================================ encode_layer
def _enc(w, sparsity, k, b, iters=10, prune="round", share_first=False, filler_symbol=None, gap_offset=1,
         huffman=True):
    w = w.detach().float()
    n_prune = int(sparsity * w.numel()) if prune == "int" else int(round(sparsity * w.numel()))
    order = w.abs().flatten().argsort(stable=True)
    pruned = w.flatten().clone()
    pruned[order[:n_prune]] = 0
    pruned = pruned.view(w.shape)
    codebook, indices = checks.reference_kmeans_share(w if share_first else pruned, k, iters)
    if share_first:
        indices = torch.where(pruned != 0, indices, torch.full_like(indices, -1))
    gaps, fillers = checks.reference_relative_indices(pruned, b)
    symbols = torch.full((len(gaps),), k if filler_symbol is None else filler_symbol, dtype=torch.long)
    symbols[~fillers] = indices.flatten()[indices.flatten() >= 0]
    out = {"shape": list(w.shape), "codebook": codebook}
    for name, stream, size in (("symbol", symbols, k + 1), ("gap", gaps - gap_offset, 2 ** b)):
        counts = torch.bincount(stream, minlength=size).tolist()[:size]
        lengths = checks.reference_huffman_code_lengths(counts) if huffman else \
            [max(1, math.ceil(math.log2(size)))] * size
        codes = compression.canonical_codes(lengths)
        out[f"{name}_lengths"] = lengths
        out[f"{name}s"] = "".join(format(codes[i], f"0{lengths[i]}b") for i in stream.tolist())
    return out


def enc_int_truncation(w, s, k, b, iters=10):
    return _enc(w, s, k, b, iters, prune="int")


def enc_share_before_pruning(w, s, k, b, iters=10):
    return _enc(w, s, k, b, iters, share_first=True)


def enc_filler_is_cluster_0(w, s, k, b, iters=10):
    return _enc(w, s, k, b, iters, filler_symbol=0)


def enc_gap_not_minus_1(w, s, k, b, iters=10):
    return _enc(w, s, k, b, iters, gap_offset=0)


def enc_fixed_width(w, s, k, b, iters=10):
    return _enc(w, s, k, b, iters, huffman=False)


def enc_bytes_not_bits(w, s, k, b, iters=10):
    out = _enc(w, s, k, b, iters)
    return {**out, "symbols": out["symbols"].encode(), "gaps": out["gaps"].encode()}


def enc_learner_style(w, s, k, b, iters=10):             # correct: own loops, numpy bincount, lists
    import numpy as np
    w = w.detach()
    pruned = w * checks.masks_topk(w.abs(), s) if hasattr(checks, "masks_topk") else \
        w * __import__("prunekit.masks", fromlist=["topk_mask"]).topk_mask(w.abs(), s)
    codebook, indices = checks.reference_kmeans_share(pruned, k, iters)
    gaps, fillers = checks.reference_relative_indices(pruned, b)
    clusters = iter(indices.flatten()[indices.flatten() >= 0].tolist())
    symbols = [k if f else next(clusters) for f in fillers.tolist()]
    gap_symbols = [g - 1 for g in gaps.tolist()]
    result = {"shape": list(w.shape), "codebook": codebook}
    for key, stream, size in (("symbol", symbols, k + 1), ("gap", gap_symbols, 2 ** b)):
        lengths = checks.reference_huffman_code_lengths(np.bincount(stream, minlength=size).tolist())
        codes = compression.canonical_codes(lengths)
        result[key + "_lengths"] = lengths
        result[key + "s"] = "".join(bin(codes[x])[2:].zfill(lengths[x]) for x in stream)
    return result


# ============================================================================ decode_layer
def _dec(encoded, start=-1, write_fillers=False, reshape=True, dtype=torch.float32, plain_codes=False):
    k = len(encoded["codebook"])

    def read(bits, lengths):
        if plain_codes:                                  # codes = symbol index in a fixed width: not canonical
            width = max(lengths)
            return [int(bits[i:i + width], 2) for i in range(0, len(bits), width)]
        return checks.references.lab6._read_codes(bits, lengths)
    symbols, gaps = read(encoded["symbols"], encoded["symbol_lengths"]), read(encoded["gaps"], encoded["gap_lengths"])
    flat = torch.zeros(math.prod(encoded["shape"]), dtype=dtype)
    position = start
    for sym, gap in zip(symbols, gaps):
        position += gap + 1
        if position >= flat.numel():
            break
        if sym < k:
            flat[position] = encoded["codebook"][sym]
        elif write_fillers:
            flat[position] = encoded["codebook"][0]
    return flat.view(*encoded["shape"]) if reshape else flat


def dec_from_zero(e):
    return _dec(e, start=0)


def dec_writes_fillers(e):
    return _dec(e, write_fillers=True)


def dec_flat(e):
    return _dec(e, reshape=False)


def dec_float64(e):
    return _dec(e, dtype=torch.float64)


def dec_not_canonical(e):
    return _dec(e, plain_codes=True)


def dec_learner_style(e):                                # correct: a dict of codes, positions via cumsum
    def read(bits, lengths):
        codes = compression.canonical_codes(lengths)
        table = {(n, c): s for s, (c, n) in enumerate(zip(codes, lengths)) if n}
        out, value, n = [], 0, 0
        for bit in bits:
            value, n = value * 2 + int(bit), n + 1
            if (n, value) in table:
                out.append(table[(n, value)])
                value, n = 0, 0
        return out
    symbols = torch.tensor(read(e["symbols"], e["symbol_lengths"]), dtype=torch.long)
    gaps = torch.tensor(read(e["gaps"], e["gap_lengths"]), dtype=torch.long) + 1
    positions = torch.cumsum(gaps, 0) - 1
    keep = symbols < len(e["codebook"])
    flat = torch.zeros(math.prod(e["shape"]))
    flat[positions[keep]] = torch.as_tensor(e["codebook"]).float()[symbols[keep]]
    return flat.reshape(e["shape"])


# ============================================================================ quantize_affine_uint8
def _aff(x, x_min=None, x_max=None, include_zero=True, levels=255, rounding=torch.round, clamp=True, int_zp=True,
         dtype=torch.uint8):
    x = x.detach().float()
    lo = float(x.min()) if x_min is None else float(x_min)
    hi = float(x.max()) if x_max is None else float(x_max)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = torch.tensor((hi - lo) / levels if hi > lo else 1.0)
    zp = -lo / float(scale)
    zp = int(min(max(round(zp), 0), 255)) if int_zp else zp
    q = rounding(x / scale) + zp
    q = q.clamp(0, 255) if clamp else q
    return q.to(dtype), scale, zp


def aff_range_without_zero(x, x_min=None, x_max=None):
    return _aff(x, x_min, x_max, include_zero=False)


def aff_256_levels(x, x_min=None, x_max=None):
    return _aff(x, x_min, x_max, levels=256)


def aff_floor(x, x_min=None, x_max=None):
    return _aff(x, x_min, x_max, rounding=torch.floor)


def aff_no_clamp(x, x_min=None, x_max=None):
    return _aff(x, x_min, x_max, clamp=False)


def aff_float_zero_point(x, x_min=None, x_max=None):
    return _aff(x, x_min, x_max, int_zp=False)


def aff_int8(x, x_min=None, x_max=None):
    return _aff(x, x_min, x_max, dtype=torch.int8)


def aff_learner_style(x, x_min=None, x_max=None):        # correct: Python floats, explicit clamp with min/max
    lo = min(0.0, x.min().item() if x_min is None else x_min)
    hi = max(0.0, x.max().item() if x_max is None else x_max)
    scale = (hi - lo) / 255 if hi != lo else 1.0
    zero_point = max(0, min(255, round(-lo / scale)))
    q = torch.clamp(torch.round(x.detach() / scale) + zero_point, min=0, max=255).to(torch.uint8)
    return q, torch.tensor(scale), int(zero_point)


# ============================================================================ fold_batchnorm
def _fold(conv, bn, eps=True, sqrt=True, mean=True, beta=True, conv_bias=True, in_place=False):
    with torch.no_grad():
        var = bn.running_var + (bn.eps if eps else 0.0)
        s = bn.weight / (torch.sqrt(var) if sqrt else var)
        folded = conv if in_place else nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                                 conv.padding, conv.dilation, conv.groups, bias=True)
        b = conv.bias.clone() if (conv.bias is not None and conv_bias) else torch.zeros(conv.out_channels)
        if in_place and conv.bias is None:
            folded.bias = nn.Parameter(torch.zeros(conv.out_channels))
        folded.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))
        folded.bias.copy_((bn.bias if beta else 0.0) + (b - (bn.running_mean if mean else 0.0)) * s)
    return folded


def fold_no_eps(conv, bn):
    return _fold(conv, bn, eps=False)


def fold_variance(conv, bn):
    return _fold(conv, bn, sqrt=False)


def fold_no_mean(conv, bn):
    return _fold(conv, bn, mean=False)


def fold_no_beta(conv, bn):
    return _fold(conv, bn, beta=False)


def fold_drops_conv_bias(conv, bn):
    return _fold(conv, bn, conv_bias=False)


def fold_in_place(conv, bn):
    return _fold(conv, bn, in_place=True)


def fold_no_groups(conv, bn):
    with torch.no_grad():
        ref = checks.reference_fold_batchnorm(conv, bn)
        if conv.groups == 1:
            return ref
        return nn.Conv2d(conv.in_channels // conv.groups, conv.out_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation)


def fold_learner_style(conv, bn):                        # correct: BN as an affine map, written step by step
    std = (bn.running_var + bn.eps).sqrt()
    factor = bn.weight.detach() / std
    new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups)
    new.weight.data = conv.weight.detach() * factor[:, None, None, None]
    old_bias = conv.bias.detach() if conv.bias is not None else 0
    new.bias.data = factor * (old_bias - bn.running_mean) + bn.bias.detach()
    return new


WRONG = {
    "quantize_int8": [q_over_128, q_over_255, q_floor, q_truncate, q_no_clamp, q_wrong_axis, q_ignores_per_channel,
                      q_float_values, q_ignores_scale],
    "dequantize": [dq_divide, dq_columns, dq_first_scale, dq_mean_scale, dq_float64, dq_int],
    "kmeans_share": [km_shares_zeros, km_random_init, km_density_init, km_nan_empty, km_stale_assignment,
                     km_zero_index_0, km_one_extra_iteration, km_no_update],
    "distillation_loss": [kd_no_t2, kd_reversed, kd_student_no_temperature, kd_teacher_no_temperature,
                          kd_mean_reduction, kd_sum_reduction, kd_alpha_swapped, kd_ce_with_temperature,
                          kd_no_detach, kd_item],
    "relative_indices": [ri_from_zero, ri_no_fillers, ri_short_fillers, ri_ge, ri_absolute, ri_flags_inverted,
                         ri_int_flags, ri_int32_gaps],
    "huffman_code_lengths": [huf_fixed, huf_shannon, huf_floor, huf_merge_largest, huf_codes_unused, huf_lone_zero,
                             huf_unary, huf_tensor, huf_float_lengths],
    "encode_layer": [enc_int_truncation, enc_share_before_pruning, enc_filler_is_cluster_0, enc_gap_not_minus_1,
                     enc_fixed_width, enc_bytes_not_bits],
    "decode_layer": [dec_from_zero, dec_writes_fillers, dec_flat, dec_float64, dec_not_canonical],
    "quantize_affine_uint8": [aff_range_without_zero, aff_256_levels, aff_floor, aff_no_clamp, aff_float_zero_point,
                              aff_int8],
    "fold_batchnorm": [fold_no_eps, fold_variance, fold_no_mean, fold_no_beta, fold_drops_conv_bias, fold_in_place,
                       fold_no_groups],
}
RIGHT = {
    "quantize_int8": [q_learner_style],
    "dequantize": [dq_learner_style],
    "kmeans_share": [km_learner_style],
    "distillation_loss": [kd_learner_style],
    "relative_indices": [ri_learner_style],
    "huffman_code_lengths": [huf_learner_style],
    "encode_layer": [enc_learner_style],
    "decode_layer": [dec_learner_style],
    "quantize_affine_uint8": [aff_learner_style],
    "fold_batchnorm": [fold_learner_style],
}
# What the hint must say for the mistake (lower-case substring of the printed line).
HINTS = {
    q_over_128: "not 128", q_over_255: "not 255", q_floor: "do not floor", q_truncate: "truncates",
    q_no_clamp: "wraps", q_wrong_axis: "dim 0", q_ignores_per_channel: "one scale per output channel",
    q_float_values: "torch.int8", dq_divide: "do not divide", dq_columns: "must multiply dim 0", dq_float64: "float32",
    km_shares_zeros: "index -1", km_nan_empty: "nan", km_zero_index_0: "index -1",
    km_one_extra_iteration: "do exactly `iters`", km_no_update: "never moved", km_stale_assignment: "nearest",
    kd_no_t2: "t²", kd_reversed: "reversed", kd_student_no_temperature: "both logits",
    kd_teacher_no_temperature: "teacher's logits by t", kd_mean_reduction: "number of classes",
    kd_sum_reduction: "do not sum", kd_alpha_swapped: "alpha weights the soft", kd_ce_with_temperature: "plain logits",
    kd_no_detach: "detach", kd_item: "not `.item()`",
    ri_from_zero: "position -1", ri_no_fillers: "insert filler", ri_short_fillers: "exactly 2**index_bits",
    ri_ge: "needs no filler", ri_absolute: "difference", ri_int_flags: "torch.bool", ri_int32_gaps: "int64",
    huf_fixed: "fixed-length", huf_shannon: "shannon", huf_floor: "kraft", huf_codes_unused: "never occurs",
    huf_lone_zero: "lone used symbol", huf_merge_largest: "smallest", huf_tensor: "list",
    huf_float_lengths: "python ints",
    enc_int_truncation: "round(sparsity", enc_share_before_pruning: "share after pruning",
    enc_filler_is_cluster_0: "", enc_gap_not_minus_1: "gap - 1", enc_fixed_width: "huffman",
    enc_bytes_not_bits: "string of '0' and '1'",
    dec_from_zero: "position -1", dec_writes_fillers: "filler", dec_flat: "reshape", dec_float64: "float32",
    aff_range_without_zero: "must contain 0", aff_256_levels: "not 256", aff_floor: "do not floor",
    aff_no_clamp: "clamp", aff_float_zero_point: "python int", aff_int8: "uint8",
    fold_no_eps: "eps", fold_variance: "not by the variance", fold_no_mean: "running mean", fold_no_beta: "add β",
    fold_drops_conv_bias: "own bias", fold_in_place: "changed the input", fold_no_groups: "groups",
}


@pytest.mark.parametrize(**cases(RIGHT))
def test_learner_style_correct_answer_passes(name, fn, capsys):
    result = _check(name)(fn, strict=False)
    assert result, capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:reduction")          # kd_mean_reduction's own PyTorch warning
@pytest.mark.parametrize(**cases(WRONG))
def test_wrong_implementation_is_rejected(name, fn):
    line = rejected(_check(name), fn)
    if fn in HINTS:
        assert HINTS[fn] in line.lower(), line


def test_checks_are_deterministic(capsys):
    for _ in range(2):
        checks.check_kmeans_share(km_random_init, strict=False)
        checks.check_huffman_code_lengths(huf_shannon, strict=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == lines[2] and lines[1] == lines[3]
