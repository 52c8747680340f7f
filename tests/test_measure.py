import math
import time

import pytest
import torch
from torch import nn

from prunekit.measure import (compare_latency, count_macs, count_nonzeros, count_parameters, decode_sparse,
                              encode_sparse, format_table, gzip_bytes, latency_ratio, load_sparse,
                              measure_latency, save_sparse, size_report, sparse_bytes, sparsity_table,
                              state_dict_bytes)
from prunekit.models import build_model
from prunekit.pruning import apply_masks, model_sparsity, prune_global, prune_layerwise


@pytest.fixture
def sparse_lenet300():
    torch.manual_seed(0)
    model = build_model("lenet300")
    prune_global(model, 0.9)
    return model


# ----------------------------------------------------------------------------- counting
def test_counts_match_the_documented_parameter_numbers():
    documented = {"lenet300": 266_610, "lenet5": 431_080, "vgg": 1_175_786, "resnet20": 272_474}
    for name, params in documented.items():
        assert count_parameters(build_model(name)) == params


def test_count_nonzeros_counts_biases_and_pruned_weights():
    model = build_model("lenet300")
    prune_layerwise(model, {"fc1.weight": 0.5})
    # half of fc1's 235,200 weights are gone; biases (all nonzero after init) still count
    assert count_nonzeros(model) == 266_610 - 117_600


def test_sparsity_table_rows_and_total(sparse_lenet300):
    rows = sparsity_table(sparse_lenet300)
    assert [r["name"] for r in rows] == ["fc1.weight", "fc2.weight", "fc3.weight", "total"]
    assert rows[0]["shape"] == (300, 784) and rows[0]["params"] == 235_200
    total = rows[-1]
    assert total["params"] == 266_200
    assert total["nonzeros"] == sum(r["nonzeros"] for r in rows[:-1]) == round(0.1 * 266_200)
    assert total["sparsity"] == pytest.approx(model_sparsity(sparse_lenet300))
    for r in rows[:-1]:
        assert r["sparsity"] == pytest.approx(1 - r["nonzeros"] / r["params"])


def test_format_table_aligns_columns():
    text = format_table([{"name": "fc1.weight", "params": 235200, "sparsity": 0.9},
                         {"name": "total", "params": 5, "sparsity": 0.12345}], floatfmt=".2f")
    lines = text.splitlines()
    assert lines[0].split() == ["name", "params", "sparsity"]
    assert "235,200" in lines[1] and "0.12" in lines[2]
    assert len({len(line) for line in lines}) == 1            # numbers right-aligned to one edge
    assert format_table([{"a": 1, "b": 2}], columns=["b"]).splitlines() == ["b", "2"]
    with pytest.raises(ValueError):
        format_table([])


# ----------------------------------------------------------------------------- MACs
def test_macs_lenet5_hand_count():
    macs = count_macs(build_model("lenet5"), (1, 28, 28))
    # conv: out_h * out_w * c_in * kh * kw * c_out;  fc: in * out
    expected = {"conv1": 24 * 24 * 1 * 25 * 20,      # 288,000
                "conv2": 8 * 8 * 20 * 25 * 50,       # 1,600,000
                "fc1": 800 * 500,                    # 400,000
                "fc2": 500 * 10}                     # 5,000
    assert {k: v["dense"] for k, v in macs["per_layer"].items()} == expected
    assert macs["dense"] == 2_293_000
    assert macs["effective"] == macs["dense"]          # a fresh model has no zero weights


def test_macs_vgg_hand_count():
    # VGG_CHANNELS = (32, 32, M, 64, 64, M, 128, 128, M, 256, 256), 3x3 convs with padding 1 on 32x32
    expected = {"conv1": 32 * 32 * 3 * 9 * 32,        # 884,736
                "conv2": 32 * 32 * 32 * 9 * 32,       # 9,437,184
                "conv3": 16 * 16 * 32 * 9 * 64,       # 4,718,592   (after pool1: 16x16)
                "conv4": 16 * 16 * 64 * 9 * 64,       # 9,437,184
                "conv5": 8 * 8 * 64 * 9 * 128,        # 4,718,592   (after pool2: 8x8)
                "conv6": 8 * 8 * 128 * 9 * 128,       # 9,437,184
                "conv7": 4 * 4 * 128 * 9 * 256,       # 4,718,592   (after pool3: 4x4)
                "conv8": 4 * 4 * 256 * 9 * 256,       # 9,437,184
                "fc": 256 * 10}                       # 2,560       (after global average pooling)
    macs = count_macs(build_model("vgg"), (3, 32, 32))
    assert {k: v["dense"] for k, v in macs["per_layer"].items()} == expected
    assert macs["dense"] == 52_791_808


def test_macs_lenet300_and_effective_after_pruning():
    model = build_model("lenet300")
    assert count_macs(model, (1, 28, 28))["dense"] == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    prune_layerwise(model, 0.9)
    macs = count_macs(model, (1, 28, 28))
    assert macs["dense"] == 266_200
    assert macs["effective"] == 23_520 + 3_000 + 100      # a Linear uses each weight once


def test_effective_macs_conv_hand_case():
    # 2 -> 3 channels, 3x3 kernel, padding 1 on a 5x5 input: 25 output positions
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(3))
    mask = torch.zeros(3, 2, 3, 3, dtype=torch.bool)
    mask[0, 0, 1, 1] = mask[1, 1, 0, 0] = mask[2, 0, 2, 2] = mask[2, 1, 1, 1] = True   # 4 weights kept
    apply_masks(conv, {"0.weight": mask})
    macs = count_macs(conv, (2, 5, 5))
    assert macs["per_layer"] == {"0": {"dense": 25 * 2 * 9 * 3, "effective": 25 * 4}}
    # strided / grouped conv: 3x3 output, groups=2 halves the inputs per filter
    grouped = nn.Conv2d(4, 6, 3, stride=2, groups=2)
    assert count_macs(grouped, (4, 7, 7))["dense"] == 3 * 3 * (4 // 2) * 9 * 6


def test_count_macs_leaves_the_model_as_it_was():
    model = build_model("vgg").train()
    before = model.bn1.running_mean.clone()
    count_macs(model, (3, 32, 32))
    assert model.training and torch.equal(model.bn1.running_mean, before)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="without the batch"):
        count_macs(model, (1, 3, 32, 32.0))


# ----------------------------------------------------------------------------- bytes
def test_dense_sizes_are_about_four_bytes_per_entry():
    model = build_model("lenet300")
    assert 4 * 266_610 < state_dict_bytes(model) < 4 * 266_610 + 10_000
    # random floats hardly compress
    assert gzip_bytes(model) > 0.8 * 4 * 266_610


def test_bitmask_size_by_hand(sparse_lenet300):
    layers = [(300 * 784, 300), (100 * 300, 100), (10 * 100, 10)]   # (weights, biases)
    nnz = {name: int((w != 0).sum()) for name, w in sparse_lenet300.state_dict().items()}
    expected = sum(math.ceil(n / 8) for n, _ in layers) + 4 * (nnz["fc1.weight"] + nnz["fc2.weight"]
                                                               + nnz["fc3.weight"])
    expected += 4 * sum(b for _, b in layers)                        # biases stored dense
    size = sparse_bytes(sparse_lenet300, "bitmask")
    assert expected <= size <= expected + 300                        # headers: names and shapes
    assert size < 0.2 * state_dict_bytes(sparse_lenet300)


def test_csr_size_and_int8(sparse_lenet300):
    nnz = 26_620
    csr = sparse_bytes(sparse_lenet300, "csr")                       # indices fit in 16 bits
    rows = 300 + 100 + 10
    expected = 2 * (rows + 3) + 2 * nnz + 4 * nnz + 4 * 410
    assert expected <= csr <= expected + 300
    wide = sparse_bytes(sparse_lenet300, "csr", index_bits=32)
    assert wide == pytest.approx(csr + 2 * (nnz + rows + 3), abs=10)       # 2 more bytes per index
    int8 = sparse_bytes(sparse_lenet300, "bitmask", value_dtype=torch.int8)
    assert int8 == pytest.approx(sparse_bytes(sparse_lenet300, "bitmask") - 3 * nnz, abs=20)
    report = size_report(sparse_lenet300)
    assert set(report) == {"state_dict", "gzip", "bitmask", "csr", "bitmask_int8", "csr_int8"}
    assert report["bitmask"] < report["gzip"] < report["state_dict"]
    with pytest.raises(ValueError, match="16 bits"):
        sparse_bytes(build_model("lenet300"), "csr", index_bits=16)   # 235,200 nonzeros > 65,535


@pytest.mark.parametrize("fmt", ["bitmask", "csr"])
def test_sparse_round_trip_is_exact(sparse_lenet300, tmp_path, fmt):
    path = tmp_path / f"lenet300.{fmt}"
    written = save_sparse(sparse_lenet300, path, fmt)
    assert written == path.stat().st_size == sparse_bytes(sparse_lenet300, fmt)
    fresh = load_sparse(path, build_model("lenet300"))
    for (name, a), (_, b) in zip(sparse_lenet300.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name


def test_round_trip_with_batchnorm_and_int8():
    torch.manual_seed(0)
    model = build_model("resnet20")
    model.bn1.running_mean.normal_()
    prune_global(model, 0.8)
    state = decode_sparse(encode_sparse(model, "csr"))
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    lossy = decode_sparse(encode_sparse(model, "bitmask", value_dtype=torch.int8))
    w, q = model.conv1.weight.detach(), lossy["conv1.weight"]
    assert not ((q != 0) & (w == 0)).any()                                    # pruned stay pruned
    assert (q - w).abs().max() <= w.abs().max() / 127 / 2 + 1e-6              # half a step at most
    with pytest.raises(ValueError, match="PKSP"):
        decode_sparse(b"not a file")


# ----------------------------------------------------------------------------- latency
def test_measure_latency_structure_and_model_state():
    model = build_model("lenet300").train()
    times = measure_latency(model, (1, 28, 28), batch_sizes=(1, 8), warmup=1, min_run_time=0.01)
    assert set(times) == {1, 8} and all(t > 0 for t in times.values())
    assert model.training                                    # restored after timing in eval mode
    assert torch.get_num_threads() == 1                      # conftest's setting is restored
    with pytest.raises(ValueError):
        measure_latency(model, (1, 28, 28), batch_sizes=(0,))


def test_latency_ratio_sees_a_much_bigger_model():
    torch.manual_seed(0)
    small = nn.Sequential(nn.Linear(256, 16))
    big = nn.Sequential(nn.Linear(256, 4096), nn.Linear(4096, 4096))     # ~1000x the MACs
    ratio = latency_ratio(big, small, (256,), batch_sizes=(16,), rounds=2, warmup=1, min_run_time=0.01)
    assert ratio[16] > 3        # tolerant: a loaded machine still shows the big one is slower
    times = compare_latency({"small": small, "big": big}, (256,), batch_sizes=(1,), rounds=1,
                            warmup=1, min_run_time=0.01)
    assert set(times[1]) == {"small", "big"}


def test_latency_of_a_model_without_parameters():
    times = measure_latency(nn.Sequential(nn.ReLU(), nn.Flatten()), (3, 8, 8), batch_sizes=(2,), warmup=1,
                            min_run_time=0.01)
    assert times[2] > 0


class _Sleeper(nn.Module):
    """A forward pass that waits without computing: wall time passes, CPU time hardly does."""

    def forward(self, x):
        time.sleep(0.02)
        return x


def test_cpu_clock_ignores_waiting_and_wall_clock_does_not():
    wall = measure_latency(_Sleeper(), (4,), batch_sizes=(1,), warmup=1, min_run_time=0.1, clock="wall")[1]
    cpu = measure_latency(_Sleeper(), (4,), batch_sizes=(1,), warmup=1, min_run_time=0.1, clock="cpu")[1]
    assert wall >= 0.02
    assert cpu < 0.005
    ratio = latency_ratio(_Sleeper(), nn.Identity(), (4,), batch_sizes=(1,), rounds=1, warmup=1,
                          min_run_time=0.05, clock="cpu")
    assert ratio[1] < 1000      # with the wall clock the sleeper would look ~10^4 x slower
    with pytest.raises(ValueError, match="clock must be one of"):
        measure_latency(_Sleeper(), (4,), batch_sizes=(1,), clock="gpu")
