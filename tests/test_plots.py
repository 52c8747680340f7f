import copy

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from prunekit.models import build_model  # noqa: E402
from prunekit.plots import (plot_accuracy_vs_sparsity, plot_layer_sparsity, plot_mask_images,  # noqa: E402
                            plot_schedule, plot_sensitivity, plot_weight_histograms)
from prunekit.pruning import prune_global  # noqa: E402
from prunekit.sensitivity import SensitivityScan  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def dense_and_pruned():
    torch.manual_seed(0)
    dense = build_model("lenet300")
    pruned = copy.deepcopy(dense)
    prune_global(pruned, 0.9)
    return dense, pruned


def test_weight_histograms_one_axes_per_layer(dense_and_pruned):
    dense, pruned = dense_and_pruned
    fig = plot_weight_histograms(dense, pruned)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    # two histograms; the pruned one excludes zeros, so it holds exactly fc1's nonzero count
    assert len(ax.containers) == 2
    assert sum(p.get_height() for p in ax.containers[1]) == int((pruned.fc1.weight != 0).sum())
    assert "zero" in ax.get_title()
    assert len(plot_weight_histograms(dense, pruned, names=["fc2.weight"]).axes) == 1
    with pytest.raises(ValueError, match="fc9"):
        plot_weight_histograms(dense, pruned, names=["fc9.weight"])


def test_layer_sparsity_bars(dense_and_pruned):
    _, pruned = dense_and_pruned
    fig = plot_layer_sparsity(pruned)
    bars = fig.axes[0].containers[0]
    assert len(bars) == 3
    assert bars[0].get_height() == pytest.approx((pruned.fc1.weight == 0).float().mean().item())
    assert len(plot_layer_sparsity(build_model("vgg")).axes[0].containers[0]) == 9


def test_accuracy_vs_sparsity_lines():
    results = {"global": [(0.9, 0.97), (0.5, 0.98)], "layer-wise": [(0.5, 0.98), (0.9, 0.95)],
               "random": [(0.5, 0.9)]}
    fig = plot_accuracy_vs_sparsity(results, reference=0.981)
    lines = fig.axes[0].lines
    assert len(lines) == 4                                    # 3 methods + the dense reference
    assert list(lines[0].get_xdata()) == [0.5, 0.9]           # points are sorted by sparsity
    assert len(plot_accuracy_vs_sparsity(results).axes[0].lines) == 3
    with pytest.raises(ValueError):
        plot_accuracy_vs_sparsity({})


def test_mask_images_neurons_and_summary(dense_and_pruned):
    _, pruned = dense_and_pruned
    fig = plot_mask_images(pruned.fc1.weight, max_images=8)
    assert len(fig.axes) == 8 + 1 + 1                          # neurons, summary, its colour bar
    summary = fig.axes[8].images[0].get_array()
    assert summary.shape == (28, 28)
    assert summary.sum() == int((pruned.fc1.weight != 0).sum())
    first = fig.axes[0].images[0].get_array()
    assert (first == (pruned.fc1.weight[0] != 0).reshape(28, 28).numpy()).all()
    assert len(plot_mask_images(torch.ones(3, 784, dtype=torch.bool)).axes) == 3 + 2
    with pytest.raises(ValueError, match="784"):
        plot_mask_images(torch.ones(300, 100))


def test_sensitivity_curves_and_baseline():
    scan = {f"fc{i}.weight": [(s, 0.98 - i * s / 10) for s in (0.0, 0.5, 0.9)] for i in (1, 2, 3)}
    fig = plot_sensitivity(scan, baseline=0.98)
    assert len(fig.axes[0].lines) == 4
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()][:3] == ["fc1", "fc2", "fc3"]
    scan_result = SensitivityScan(baseline=0.98, curves=scan)      # what sensitivity_scan returns
    assert len(plot_sensitivity(scan_result).axes[0].lines) == 4


def test_schedule_single_and_several():
    fig = plot_schedule([0, 10, 20], [0.0, 0.5, 0.9], label="linear")
    assert len(fig.axes[0].lines) == 1
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.0, 0.5, 0.9]
    fig = plot_schedule({"cubic": ([0, 1, 2], [0.0, 0.7, 0.9]), "one-shot": ([0, 2], [0.9, 0.9])})
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError):
        plot_schedule([0, 1], [0.5])
