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
from prunekit import checks

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
    return torch.tensor(gaps, dtype=torch.long), torch.tensor(flags, dtype=torch.int64)


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


WRONG = {
    "quantize_int8": [q_over_128, q_over_255, q_floor, q_truncate, q_no_clamp, q_wrong_axis, q_ignores_per_channel,
                      q_float_values, q_ignores_scale],
    "dequantize": [dq_divide, dq_columns, dq_first_scale, dq_mean_scale, dq_float64, dq_int],
    "kmeans_share": [km_shares_zeros, km_random_init, km_density_init, km_nan_empty, km_stale_assignment,
                     km_zero_index_0, km_one_extra_iteration, km_no_update],
    "distillation_loss": [kd_no_t2, kd_reversed, kd_student_no_temperature, kd_teacher_no_temperature,
                          kd_mean_reduction, kd_sum_reduction, kd_alpha_swapped, kd_ce_with_temperature,
                          kd_no_detach, kd_item],
    "relative_indices": [ri_from_zero, ri_no_fillers, ri_short_fillers, ri_ge, ri_absolute, ri_flags_inverted],
    "huffman_code_lengths": [huf_fixed, huf_shannon, huf_floor, huf_merge_largest, huf_codes_unused, huf_lone_zero,
                             huf_unary],
}
RIGHT = {
    "quantize_int8": [q_learner_style],
    "dequantize": [dq_learner_style],
    "kmeans_share": [km_learner_style],
    "distillation_loss": [kd_learner_style],
    "relative_indices": [ri_learner_style],
    "huffman_code_lengths": [huf_learner_style],
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
    ri_ge: "needs no filler", ri_absolute: "difference",
    huf_fixed: "fixed-length", huf_shannon: "shannon", huf_floor: "kraft", huf_codes_unused: "never occurs",
    huf_lone_zero: "lone used symbol", huf_merge_largest: "smallest",
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
