import copy

import pytest
import torch

from prunekit.data import load_dataset, subset
from prunekit.lottery import (capture_state, find_lottery_ticket, prune_remaining, random_mask_control,
                              random_masks_like, random_reinit_control, remaining_fraction, rewind_weights)
from prunekit.models import build_model
from prunekit.pruning import get_masks, prune_layerwise
from prunekit.train import train

ROUNDS = 3


def lenet():
    return build_model("lenet300")


@pytest.fixture(scope="module")
def mnist_small():
    return subset(load_dataset("mnist", "train"), 1024, seed=0), subset(load_dataset("mnist", "test"), 500, seed=0)


@pytest.fixture(scope="module")
def ticket_rows(mnist_small):
    return find_lottery_ticket(lenet, *mnist_small, rounds=ROUNDS, epochs=1, lr=0.1)


# ----------------------------------------------------------------------------- building blocks
def test_rewinding_restores_initial_values_of_kept_weights(mnist_small):
    torch.manual_seed(0)
    model = lenet()
    theta0 = copy.deepcopy(model.state_dict())
    train(model, mnist_small[0], epochs=1, quiet=True)
    masks = prune_layerwise(model, 0.5)
    rewind_weights(model, theta0)
    for name, mask in masks.items():
        weight = model.state_dict()[name]
        assert torch.equal(weight[mask], theta0[name][mask]), "kept weights must be exactly θ0"
        assert (weight[~mask] == 0).all(), "pruned weights must stay zero"
    assert all(torch.equal(masks[n], m) for n, m in get_masks(model).items())
    assert torch.equal(model.state_dict()["fc1.bias"], theta0["fc1.bias"])


def test_capture_state_equals_training_for_k_steps(mnist_small):
    store = {}
    torch.manual_seed(0)
    model = lenet()
    train(model, mnist_small[0], epochs=1, quiet=True, after_step=[capture_state(3, store)])
    torch.manual_seed(0)
    short = lenet()
    train(short, mnist_small[0], epochs=1, quiet=True, max_steps=3)
    assert all(torch.equal(store["state"][k], v) for k, v in short.state_dict().items())
    assert not torch.equal(store["state"]["fc1.weight"], model.state_dict()["fc1.weight"])


def test_prune_remaining_takes_fraction_of_survivors():
    torch.manual_seed(0)
    model = lenet()
    prune_remaining(model, 0.2)
    prune_remaining(model, 0.2, output_half_rate=True)
    masks = get_masks(model)
    assert int(masks["fc1.weight"].sum()) == 235200 - 47040 - round(0.2 * (235200 - 47040))
    assert int(masks["fc3.weight"].sum()) == 800 - round(0.1 * 800)        # half rate: 10 % of 800
    assert remaining_fraction(model) == pytest.approx(
        sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()))
    with pytest.raises(ValueError):
        prune_remaining(model, 0.2, scope="random")
    with pytest.raises(ValueError, match="prune_fraction"):
        prune_remaining(model, 20)


def test_half_rate_only_for_the_real_output_layer():
    torch.manual_seed(0)
    model = lenet()
    masks = prune_remaining(model, 0.2, exclude=["fc3"], output_half_rate=True)   # fc3 excluded: no half rate
    assert set(masks) == {"fc1.weight", "fc2.weight"}
    assert int((~masks["fc2.weight"]).sum()) == round(0.2 * 30000)
    masks = prune_remaining(lenet(), 0.2, scope="global", output_half_rate=True)
    assert int((~masks["fc3.weight"]).sum()) == round(0.1 * 1000)
    assert sum(int((~masks[n]).sum()) for n in ("fc1.weight", "fc2.weight")) == round(0.2 * 265200)


def test_prune_remaining_global_keeps_total_fraction():
    torch.manual_seed(0)
    model = lenet()
    for _ in range(2):
        prune_remaining(model, 0.2, scope="global")
    assert remaining_fraction(model) == pytest.approx(0.64, abs=1e-5)


# ----------------------------------------------------------------------------- IMP
def test_ticket_rows_remaining_fractions(ticket_rows):
    assert [r["round"] for r in ticket_rows] == list(range(ROUNDS + 1))
    assert [r["remaining"] for r in ticket_rows] == pytest.approx([0.8 ** k for k in range(ROUNDS + 1)], abs=1e-4)
    for r in ticket_rows:
        assert 0.0 <= r["val_acc"] <= 1.0 and r["best_val_acc"] >= r["val_acc"]
        assert r["best_epoch"] == 1 and r["best_step"] == 8          # 1 epoch of 1024 / 128
    assert ticket_rows[-1]["val_acc"] > 0.5, "a 51 % ticket of LeNet-300 should still learn"


def test_ticket_masks_are_nested_per_layer(ticket_rows):
    assert ticket_rows[0]["masks"] == {}
    for earlier, later in zip(ticket_rows[1:], ticket_rows[2:]):
        for name, mask in later["masks"].items():
            assert not (mask & ~earlier["masks"][name]).any(), f"{name}: a pruned weight came back"
    for name, mask in ticket_rows[-1]["masks"].items():
        assert mask.float().mean().item() == pytest.approx(0.8 ** ROUNDS, abs=1e-2)


def test_ticket_from_module_leaves_it_unchanged_and_late_rewind(mnist_small):
    torch.manual_seed(3)
    model = lenet()
    before = copy.deepcopy(model.state_dict())
    rows = find_lottery_ticket(model, *mnist_small, rounds=1, epochs=1, rewind_step=2)
    assert rows[1]["remaining"] == pytest.approx(0.8, abs=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert get_masks(model) == {}
    with pytest.raises(ValueError, match="never reached"):
        find_lottery_ticket(lenet, *mnist_small, rounds=1, epochs=1, rewind_step=10_000)


@pytest.mark.parametrize("kwargs", [dict(prune_fraction=1.0), dict(prune_fraction=0), dict(rewind_step=-1),
                                    dict(rounds=-1)])
def test_find_lottery_ticket_validates(mnist_small, kwargs):
    with pytest.raises(ValueError):
        find_lottery_ticket(lenet, *mnist_small, **({"rounds": 1} | kwargs))


# ----------------------------------------------------------------------------- controls
def test_random_masks_like_same_counts_different_places():
    mask = torch.rand(50, 40) > 0.7
    rand = random_masks_like({"w": mask}, seed=1)["w"]
    assert rand.shape == mask.shape and rand.dtype == torch.bool
    assert int(rand.sum()) == int(mask.sum()) and not torch.equal(rand, mask)
    assert torch.equal(rand, random_masks_like({"w": mask}, seed=1)["w"])


def test_controls_have_the_tickets_sparsity(ticket_rows, mnist_small):
    masks = [r["masks"] for r in ticket_rows[-2:]]
    reinit = random_reinit_control(lenet, *mnist_small, masks, epochs=1, lr=0.1)
    rand = random_mask_control(lenet, *mnist_small, masks, epochs=1, lr=0.1)
    for ticket, a, b in zip(ticket_rows[-2:], reinit, rand):
        assert a["remaining"] == b["remaining"] == pytest.approx(ticket["remaining"])
        for name, mask in ticket["masks"].items():
            assert torch.equal(a["masks"][name], mask)                   # same masks, new init
            assert int(b["masks"][name].sum()) == int(mask.sum())        # same counts, random places
            assert not torch.equal(b["masks"][name], mask)
        assert set(a) == set(b) == set(ticket)
    assert [r["round"] for r in reinit] == [0, 1]


def test_reinit_control_draws_new_weights(mnist_small):
    from prunekit.lottery import _build, _reinitialised

    original = _build(lenet, 0)
    assert torch.equal(original.fc1.weight, _build(lenet, 0).fc1.weight)      # θ0 is reproducible
    for fresh in (_reinitialised(lenet, 1, 0), _reinitialised(original, 1, 0)):
        assert fresh.fc1.weight.shape == original.fc1.weight.shape
        assert not torch.equal(fresh.fc1.weight, original.fc1.weight)
    for same_as_original in (lenet, original):                               # seed 0 made the original
        with pytest.raises(ValueError, match="reinit_seed"):
            random_reinit_control(same_as_original, *mnist_small, {}, seed=0, reinit_seed=0)


def test_user_callbacks_run_every_round_and_loader_order_repeats(mnist_small):
    """after_step callbacks reach every round (also with a rewind step), and a DataLoader's
    shuffling restarts each round, so every round sees the same batches."""
    from prunekit.data import make_loader

    train_small = subset(mnist_small[0], 256, seed=1)
    loader = make_loader(train_small, batch_size=64, shuffle=True, seed=3)
    first_labels = []
    calls = []

    def record(model, step):
        calls.append(step)

    def first_batch_labels():
        first_labels.append(next(iter(loader))[1][:8].tolist())

    rows = find_lottery_ticket(lenet, loader, mnist_small[1], rounds=2, epochs=1, rewind_step=2,
                               lr=0.05, after_step=[record, lambda m, s: s == 1 and first_batch_labels()])
    steps_per_round = len(loader)
    assert len(rows) == 3
    assert calls == list(range(1, steps_per_round + 1)) * 3
    # first_batch_labels peeks with a fresh iterator, which advances the generator once more per round;
    # what matters is that each round starts from the same state, so the peeks agree.
    assert first_labels[0] == first_labels[1] == first_labels[2]
