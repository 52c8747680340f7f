"""The explorers' callbacks, driven from pytest: outputs must change the right way, fast."""
import time

import ipywidgets
import matplotlib
import numpy as np
import pytest
import torch

from prunekit.data import load_dataset, subset
from prunekit.widgets import MaskViewer, ScheduleExplorer, SparsityExplorer, static_mode
from prunekit.zoo import load_pretrained


@pytest.fixture(scope="module")
def explorer():
    return SparsityExplorer(load_pretrained("lenet300"), subset(load_dataset("mnist", "test"), 1000))


def test_sparsity_explorer_numbers_follow_the_slider(explorer):
    dense, mid, high = (explorer.update(s) for s in (0.0, 0.9, 0.99))
    total = sum(p.numel() for p in explorer.model.parameters())
    assert dense["nonzeros"] == total
    assert mid["nonzeros"] < dense["nonzeros"] and high["nonzeros"] < mid["nonzeros"]
    assert high["sparse_bytes"] < mid["sparse_bytes"] < dense["dense_bytes"]
    assert dense["accuracy"] > 0.97 and mid["accuracy"] > 0.9 and high["accuracy"] < mid["accuracy"]
    assert (mid["weights"] == 0).mean() > 0.5  # the histogram's layer really lost weights
    # the model behind the explorer is never pruned in place
    assert all((p != 0).all() or p.dim() == 1 for p in explorer.model.parameters())


def test_random_criterion_is_worse_than_magnitude_and_seeded(explorer):
    magnitude, rand = explorer.update(0.9, "magnitude"), explorer.update(0.9, "random")
    assert rand["accuracy"] < magnitude["accuracy"] - 0.2
    assert rand["accuracy"] == explorer.update(0.9, "random")["accuracy"]
    with pytest.raises(ValueError, match="criterion"):
        explorer.update(0.5, "taylor-ish")
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        explorer.update(1.3)


def test_update_takes_under_a_second(explorer):
    explorer.update(0.5)  # warm-up
    times = []
    for s in (0.3, 0.6, 0.9, 0.97):
        start = time.perf_counter()
        explorer.update(s)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 1.0, times


def test_widget_callback_redraws(explorer):
    box = explorer.widget()
    (slider, menu), out = box.children[0].children, box.children[1]
    assert isinstance(slider, ipywidgets.FloatSlider) and isinstance(out, ipywidgets.Output)
    slider.value = 0.95  # fires the observer, as a user moving the slider would
    menu.value = "random"
    assert matplotlib.pyplot.get_fignums() == []  # figures are closed after display


def test_schedule_explorer_is_the_agp_formula():
    result = ScheduleExplorer(total_steps=100).update(0.0, 0.8, 0, 10, 1)
    assert result["sparsities"][0] == 0.0
    assert result["sparsities"][5] == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert result["sparsities"][100] == pytest.approx(0.8)
    assert all(a <= b for a, b in zip(result["sparsities"], result["sparsities"][1:]))
    box = ScheduleExplorer(total_steps=200).widget()
    box.children[0].children[1].value = 0.5  # move s_f: redraw without error
    with pytest.raises(ValueError):
        ScheduleExplorer(total_steps=0)


def test_mask_viewer_images():
    mask = torch.zeros(3, 784, dtype=torch.bool)
    mask[1, :28] = True  # neuron 1 keeps the first image row
    viewer = MaskViewer(mask)
    assert viewer.update(0).sum() == 0 and viewer.update(1)[0].sum() == 28 and viewer.update(1)[1:].sum() == 0
    with pytest.raises(ValueError):
        viewer.update(3)
    with pytest.raises(ValueError):
        MaskViewer(torch.ones(3, 100))
    viewer.widget().children[0].value = 2


def test_static_mode_switch(monkeypatch, explorer):
    monkeypatch.setenv("PRUNEKIT_WIDGETS", "static")
    assert static_mode()
    fig = explorer.static_figure(sparsities=(0.0, 0.9))
    assert len(fig.axes[0].lines) == 2
    monkeypatch.setenv("PRUNEKIT_WIDGETS", "sometimes")
    with pytest.raises(ValueError):
        static_mode()
