"""prunekit.compression, a facade over quantization, sharing, distillation and encoding: quantisation,
weight sharing, distillation, relative indices, Huffman, the file format."""
from __future__ import annotations

import copy
import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunekit import compression as C
from prunekit.models import build_model
from prunekit.notebook import InMemory
from prunekit.pruning import prune_layerwise


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- linear quantisation
def test_quantize_per_tensor_and_per_channel():
    w = torch.tensor([[0.1, -0.254, 0.05], [2.54, 1.0, -0.3]])
    q, s = C.quantize_linear(w)
    assert q.dtype == torch.int8 and s.shape == () and torch.isclose(s, torch.tensor(0.02))
    assert q.tolist() == [[5, -13, 2], [127, 50, -15]]
    q, s = C.quantize_linear(w, per_channel=True)
    assert s.shape == (2,) and q.tolist() == [[50, -127, 25], [127, 50, -15]]
    assert torch.allclose(C.dequantize_linear(q, s), w, atol=float(s.max()) / 2 + 1e-7)


def test_quantize_bits_clamp_and_zero_channels():
    w = torch.randn(20, 7, generator=_gen(0))
    for bits in (2, 3, 4, 6, 8, 12):
        q, s = C.quantize_linear(w, bits, per_channel=True)
        qmax = 2 ** (bits - 1) - 1
        assert int(q.abs().max()) == qmax and q.dtype == (torch.int8 if bits <= 8 else torch.int16)
        assert (C.dequantize_linear(q, s) - w).abs().max() <= s.max() / 2 + 1e-6
    q, _ = C.quantize_linear(torch.tensor([0.5, -3.0, 2.0]), scale=0.01)
    assert q.tolist() == [50, -127, 127]
    q, s = C.quantize_linear(torch.tensor([[0.0, 0.0], [1.0, -0.5]]), per_channel=True)
    assert q[0].tolist() == [0, 0] and torch.isfinite(s).all()
    with pytest.raises(ValueError):
        C.quantize_linear(w, bits=1)
    with pytest.raises(ValueError):
        C.quantize_linear(w, scale=-1.0)
    with pytest.raises(ValueError):
        C.dequantize_linear(q, torch.ones(3))


def test_per_channel_error_is_never_worse():
    torch.manual_seed(0)
    w = torch.randn(64, 32) * torch.logspace(-2, 0, 64).view(-1, 1)
    err = {pc: (C.dequantize_linear(*C.quantize_linear(w, 4, pc)) - w).norm() for pc in (False, True)}
    assert err[True] < err[False] / 2


def test_transform_weights_copies():
    model = build_model("lenet300")
    before = model.fc1.weight.detach().clone()
    new = C.transform_weights(model, torch.zeros_like)
    assert torch.equal(model.fc1.weight, before) and not new.fc1.weight.any() and new.fc1.bias.any()
    with pytest.raises(ValueError, match="shape"):
        C.transform_weights(model, lambda w: w.flatten())


# ----------------------------------------------------------------------------- weight sharing
def test_kmeans_share_rule():
    codebook, idx = C.kmeans_share(torch.tensor([-1.0, 0.01, 0.02, 0.03, 0.04, 0.0, 5.0]), 4, 5)
    assert torch.allclose(codebook, torch.tensor([-1.0, 0.025, 3.0, 5.0]))       # empty cluster kept
    assert idx.tolist() == [0, 1, 1, 1, 1, -1, 3]
    codebook, idx = C.kmeans_share(torch.tensor([[-1.0, 0.0, 0.2], [0.4, 1.0, 0.0]]), 3, 0)
    assert torch.equal(codebook, torch.tensor([-1.0, 0.0, 1.0])) and idx.tolist() == [[0, -1, 1], [1, 2, -1]]
    codebook, idx = C.kmeans_share(torch.zeros(2, 3), 4)
    assert codebook.shape == (4,) and (idx == -1).all()
    for bad in ((0, 3), (2, -1), (2.5, 3)):
        with pytest.raises(ValueError):
            C.kmeans_share(torch.ones(3), *bad)


def test_kmeans_converges_to_a_fixed_point_and_reduces_error():
    w = torch.randn(50, 40, generator=_gen(1)) * (torch.rand(50, 40, generator=_gen(2)) > 0.8)
    errors = []
    for iters in (0, 1, 5, 50):
        codebook, idx = C.kmeans_share(w, 8, iters)
        errors.append(float((C.shared_weight(codebook, idx) - w).norm()))
        assert torch.equal(C.shared_weight(codebook, idx) == 0, w == 0)
    assert errors == sorted(errors, reverse=True) and errors[-1] < errors[0]
    codebook, idx = C.kmeans_share(w, 8, 50)
    values = w[w != 0]
    means = torch.stack([values[idx[w != 0] == j].mean() for j in range(8)])
    assert torch.allclose(codebook, means, atol=1e-6)


def test_share_model_and_tie_to_clusters():
    torch.manual_seed(0)
    model = build_model("lenet300")
    prune_layerwise(model, 0.9)
    indices = C.share_model(model, {"fc1.weight": 15, "fc2.weight": 7})
    assert set(indices) == {"fc1.weight", "fc2.weight"}
    assert model.fc1.weight[model.fc1.weight != 0].unique().numel() <= 15
    assert torch.equal(indices["fc2.weight"] == -1, model.fc2.weight == 0)
    tie = C.TieToClusters(indices)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        tie(model)
    for name, idx in indices.items():
        w = dict(model.named_parameters())[name].detach()
        assert torch.equal(w == 0, idx == -1)
        for j in idx.unique().tolist():
            if j >= 0:
                assert w[idx == j].unique().numel() == 1
    with pytest.raises(ValueError, match="no Linear"):
        C.share_model(model, {"fc9.weight": 3})


def test_tie_is_sgd_on_centroids_with_the_mean_gradient():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, 0.5, -1.0, 0.0]]))
    idx = torch.tensor([[0, 0, 1, -1]])
    x = torch.tensor([[1.0, 3.0, 2.0, 5.0]])
    layer(x).sum().backward()
    with torch.no_grad():
        layer.weight -= 0.1 * layer.weight.grad
    C.TieToClusters({"weight": idx})(layer)
    assert torch.allclose(layer.weight, torch.tensor([[0.5 - 0.1 * 2.0, 0.5 - 0.2, -1.0 - 0.2, 0.0]]))


# ----------------------------------------------------------------------------- distillation
def test_distillation_loss_formula():
    g = _gen(3)
    s, t, y = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g), torch.randint(0, 5, (6,), generator=g)
    T, alpha = 3.0, 0.7
    p_t = torch.softmax(t / T, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s / T, 1))).sum(1).mean()
    want = alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y)
    assert torch.allclose(C.distillation_loss(s, t, y, T, alpha), want)
    assert torch.allclose(C.distillation_loss(s, t, y, T, 0.0), F.cross_entropy(s, y))
    smoothed = C.distillation_loss(s, t, y, T, 0.0, label_smoothing=0.1)
    assert torch.allclose(smoothed, F.cross_entropy(s, y, label_smoothing=0.1))
    assert not torch.allclose(smoothed, F.cross_entropy(s, y))
    teacher = t.clone().requires_grad_(True)
    C.distillation_loss(s.requires_grad_(True), teacher, y).backward()
    assert teacher.grad is None and s.grad is not None
    with pytest.raises(ValueError):
        C.distillation_loss(s, t[:3], y)
    with pytest.raises(ValueError):
        C.distillation_loss(s, t, y, temperature=0.0)


def test_distill_trains_and_keeps_masks():
    torch.manual_seed(0)
    x = torch.randn(256, 1, 28, 28)
    teacher = build_model("lenet300")
    y = C.predict_logits(teacher, x).argmax(1)
    data = InMemory(x, y)
    student = build_model("lenet300")
    masks = prune_layerwise(student, 0.8)
    history = C.distill(student, data, C.predict_logits(teacher, x), epochs=3, lr=0.05, temperature=2.0)
    assert history[-1]["loss"] < history[0]["loss"] and len(history) == 3
    assert torch.equal(student.fc1.weight != 0, masks["fc1.weight"]) or \
        not (student.fc1.weight[~masks["fc1.weight"]]).any()
    with pytest.raises(ValueError, match="rows"):
        C.distill(student, data, torch.zeros(3, 10))


# ----------------------------------------------------------------------------- encoding
def test_relative_indices_examples_and_round_trip():
    w = torch.zeros(12)
    w[[1, 11]] = 1.0
    gaps, fillers = C.relative_indices(w, 2)
    assert gaps.tolist() == [2, 4, 4, 2] and fillers.tolist() == [False, True, True, False]
    g = _gen(4)
    for bits in (1, 2, 3, 5, 8):
        w = torch.randn(40, 50, generator=g) * (torch.rand(40, 50, generator=g) > 0.95)
        gaps, fillers = C.relative_indices(w, bits)
        assert gaps.min() >= 1 and gaps.max() <= 2 ** bits
        assert torch.equal(C.positions_from_gaps(gaps, fillers), torch.nonzero(w.flatten()).flatten())
    empty = C.relative_indices(torch.zeros(5), 3)
    assert empty[0].numel() == 0 and empty[1].dtype == torch.bool


def _brute_force_cost(counts):
    """Optimal prefix-code cost by trying every length vector up to 6 bits (small alphabets only)."""
    used = [c for c in counts if c > 0]
    best = None
    for lengths in itertools.product(range(1, 7), repeat=len(used)):
        if sum(Fraction(1, 2 ** n) for n in lengths) <= 1:
            cost = sum(c * n for c, n in zip(used, lengths))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("counts", [[45, 13, 12, 16, 9], [1, 1, 1, 1, 1], [100, 1, 1, 1], [3, 0, 2, 7, 1]])
def test_huffman_is_optimal_and_complete(counts):
    lengths = C.huffman_code_lengths(counts)
    assert sum(c * n for c, n in zip(counts, lengths)) == _brute_force_cost(counts)
    assert sum(Fraction(1, 2 ** n) for n in lengths if n) == 1
    assert all((n == 0) == (c == 0) for c, n in zip(counts, lengths))


def test_huffman_edge_cases_and_canonical_codes():
    assert C.huffman_code_lengths([0, 5, 0]) == [0, 1, 0]
    assert C.huffman_code_lengths([]) == [] and C.huffman_code_lengths([0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        C.huffman_code_lengths([1, -1])
    lengths = [2, 1, 3, 3]
    codes = C.canonical_codes(lengths)
    words = [format(c, f"0{n}b") for c, n in zip(codes, lengths)]
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    with pytest.raises(ValueError, match="Kraft"):
        C.canonical_codes([1, 1, 1])


@pytest.mark.parametrize("huffman", [False, True])
def test_pack_unpack_round_trip(huffman):
    rng = np.random.default_rng(0)
    symbols = rng.zipf(1.5, 3000).clip(1, 40) - 1
    if huffman:
        lengths = C.huffman_code_lengths(np.bincount(symbols, minlength=40).tolist())
        codes = C.canonical_codes(lengths)
    else:
        lengths, codes = [6] * 40, None
    data = C.pack_codes(symbols, lengths, codes)
    assert len(data) == -(-sum(lengths[s] for s in symbols) // 8)
    assert np.array_equal(C.unpack_codes(data, lengths, len(symbols), codes), symbols)


def _shared_lenet(seed=0, index_masks=True):
    torch.manual_seed(seed)
    model = build_model("lenet300")
    prune_layerwise(model, {"fc1.weight": 0.92, "fc2.weight": 0.91, "fc3.weight": 0.74})
    indices = C.share_model(model, 31, iters=5)
    return model, indices


@pytest.mark.parametrize("huffman", [False, True])
def test_encode_decode_is_exact(huffman):
    model, indices = _shared_lenet()
    data = C.encode_compressed(model, indices, index_bits=4, huffman=huffman)
    state = C.decode_compressed(data)
    fresh = build_model("lenet300")
    fresh.load_state_dict(state)
    for name, tensor in model.state_dict().items():
        if not name.endswith("_keep"):
            assert torch.equal(state[name], tensor), name
    rows = C.compressed_breakdown(model, indices, 4, huffman)
    assert sum(r["total"] for r in rows) + 7 == len(data)
    fc1 = next(r for r in rows if r["tensor"] == "fc1.weight")
    assert fc1["nonzeros"] == int((model.fc1.weight != 0).sum()) and fc1["bits/nonzero"] < 14


def test_huffman_file_is_smaller_and_much_smaller_than_dense():
    model, indices = _shared_lenet()
    fixed = len(C.encode_compressed(model, indices, 5, huffman=False))
    coded = len(C.encode_compressed(model, indices, 5, huffman=True))
    assert coded < fixed < 4 * 266_610 / 20


def test_encode_rejects_unshared_weights_and_accepts_custom_functions():
    model, indices = _shared_lenet()
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.fc1.weight[broken.fc1.weight != 0] += torch.rand(int((broken.fc1.weight != 0).sum())) * 1e-3
    with pytest.raises(ValueError, match="cluster"):
        C.encode_compressed(broken, indices)
    with pytest.raises(ValueError, match="does not have"):
        C.encode_compressed(model, {"conv9.weight": indices["fc1.weight"]})
    calls = []

    def my_lengths(counts):
        calls.append(len(counts))
        return C.huffman_code_lengths(counts)
    assert C.encode_compressed(model, indices, 3, lengths_fn=my_lengths) == C.encode_compressed(model, indices, 3)
    assert calls and 8 in calls

    def wrong_gaps(weight, bits):
        gaps, fillers = C.relative_indices(weight, bits)
        return gaps + 1, fillers
    with pytest.raises(ValueError, match="relative indices"):
        C.encode_compressed(model, indices, 3, relative_fn=wrong_gaps)
    with pytest.raises(ValueError, match="PKDC"):
        C.decode_compressed(b"nope")
