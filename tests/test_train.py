"""Training loop: reproducibility, callbacks, per-epoch schedules, devices."""
import pytest
import torch

from prunekit.data import load_dataset, subset
from prunekit.models import build_model
from prunekit.train import (evaluate, fast_precision, get_device, recompute_batchnorm, seed_everything, train,
                            update_weight_average)


def _one_epoch(seed):
    seed_everything(seed)
    model = build_model("lenet300")
    data = subset(load_dataset("mnist", "train"), 1000, seed=0)
    train(model, data, epochs=1, quiet=True, seed=seed)
    return model.state_dict()


def test_same_seed_gives_identical_weights(data_root):
    a, b, c = _one_epoch(0), _one_epoch(0), _one_epoch(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _augmented_epoch(seed, draws_before):
    """One epoch on 64 augmented CIFAR images after ``draws_before`` unrelated draws from torch's RNG."""
    seed_everything(0)
    model = build_model("vgg")
    data = subset(load_dataset("cifar10", "train"), 64, seed=0)   # random crop + flip by default
    torch.rand(draws_before)
    train(model, data, epochs=1, batch_size=32, quiet=True, seed=seed)
    return model.state_dict()


def test_seed_fixes_augmentation_whatever_ran_before(data_root):
    """Augmentation draws from torch's global RNG; train(seed=...) must not depend on how much of it
    earlier code used (re-running a notebook cell repeats its numbers), nor move the caller's stream."""
    a, b, other_seed = _augmented_epoch(0, 1), _augmented_epoch(0, 5), _augmented_epoch(1, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other_seed[k]) for k in a)

    model, data = build_model("vgg"), subset(load_dataset("cifar10", "train"), 64)   # augmented
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    train(model, data, epochs=1, batch_size=32, quiet=True)
    assert torch.equal(torch.rand(4), expected)


def test_seed_none_continues_the_global_random_stream(data_root):
    """The zoo's one-epoch calls pass seed=None so that augmentation differs from epoch to epoch."""
    c, d = _augmented_epoch(None, 1), _augmented_epoch(None, 5)
    assert not all(torch.equal(c[k], d[k]) for k in c)
    assert all(torch.equal(c[k], e) for k, e in _augmented_epoch(None, 1).items())


def test_a_custom_loss_sees_each_batch_and_replaces_cross_entropy(data_root):
    """loss_fn(logits, x, y) gets the batch itself (a distillation loss runs its teacher on x); given
    the same cross-entropy the default uses, it trains the very same weights."""
    data = subset(load_dataset("mnist", "train"), 500, seed=0)
    seen = []

    def smoothed_cross_entropy(logits, x, y):
        seen.append((x.shape[0], y.shape[0], logits.shape))
        return torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)

    weights = []
    for loss_fn in (None, smoothed_cross_entropy):
        seed_everything(0)
        model = build_model("lenet300")
        train(model, data, epochs=1, quiet=True, label_smoothing=0.1, loss_fn=loss_fn)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert len(seen) == 4 and seen[0] == (128, 128, torch.Size([128, 10])) and seen[-1][0] == 500 - 3 * 128


def test_training_learns_and_evaluate_is_a_fraction(data_root):
    seed_everything(0)
    model = build_model("lenet300")
    test = subset(load_dataset("mnist", "test"), 1000)
    before = evaluate(model, test)
    history = train(model, subset(load_dataset("mnist", "train"), 3000), epochs=2, quiet=True, val_data=test)
    after = evaluate(model, test)
    assert 0.0 <= before <= 1.0 and after > 0.75 > before
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["val_acc"] == pytest.approx(after)


def test_schedule_steps_per_epoch_and_callbacks_run_per_step(data_root):
    seed_everything(0)
    model = build_model("lenet300")
    data = subset(load_dataset("mnist", "train"), 512)
    steps = []
    history = train(model, data, epochs=4, lr=0.1, lr_schedule="cosine", batch_size=128, quiet=True,
                    after_step=[lambda m, step: steps.append(step)])
    assert steps == list(range(1, 17))  # 4 batches x 4 epochs
    # lr recorded during each epoch: cosine over 4 epochs, stepped once per epoch
    lrs = [h["lr"] for h in history]
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(0.1 * (1 + 0.7071067811865476) / 2)


def test_max_steps_and_bad_arguments(data_root):
    model = build_model("lenet300")
    data = subset(load_dataset("mnist", "train"), 512)
    steps = []
    train(model, data, epochs=3, max_steps=5, quiet=True, after_step=[lambda m, s: steps.append(s)])
    assert steps == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        train(model, data, epochs=-1)
    with pytest.raises(TypeError):
        evaluate(model, [1, 2, 3])
    with pytest.raises(ValueError):
        train(model, data, epochs=1, optimizer="lbfgs")


def test_device_choice(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("PRUNEKIT_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_bf16_mixed_precision_learns_keeps_fp32_weights_and_rejects_bad_names(data_root):
    seed_everything(0)
    model = build_model("lenet300")
    test = subset(load_dataset("mnist", "test"), 1000)
    train(model, subset(load_dataset("mnist", "train"), 3000), epochs=2, quiet=True, precision="bf16")
    assert all(p.dtype == torch.float32 for p in model.parameters())   # autocast: fp32 master weights
    assert evaluate(model, test) > 0.75
    with pytest.raises(ValueError, match="precision"):
        train(model, test, epochs=1, quiet=True, precision="fp16 please")


def test_bf16_without_hardware_support_warns_that_it_is_emulated(monkeypatch, data_root):
    import warnings

    model, data = build_model("lenet300"), subset(load_dataset("mnist", "train"), 256)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    with pytest.warns(UserWarning, match="emulated"):
        train(model, data, epochs=1, quiet=True, precision="bf16", device="cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # hardware bf16 and fp32: nothing to say
        train(model, data, epochs=1, quiet=True, precision="bf16", device="cpu")
        train(model, data, epochs=1, quiet=True, precision="fp32", device="cpu")


def test_auto_precision_is_a_valid_choice(monkeypatch):
    assert fast_precision("cpu") in ("bf16", "fp32")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert fast_precision("cpu") == "fp32"          # no bf16 hardware: emulated bf16 would be slower
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert fast_precision("cpu") == "bf16"          # AVX512-BF16 without AMX (measured 2.2x on a Zen 4)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert fast_precision("cpu") == "bf16"
    model = build_model("lenet300")
    train(model, torch.utils.data.TensorDataset(torch.randn(8, 1, 28, 28), torch.arange(8)), epochs=1,
          quiet=True, precision="auto")


def test_weight_average_is_the_mean_of_the_snapshots():
    """Three snapshots a, b, c averaged one at a time give (a + b + c) / 3 for every float tensor;
    BatchNorm's integer batch counter is copied from the latest model, not averaged."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    snapshots, average = [], None
    for count in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model[1].num_batches_tracked += 5
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        average = update_weight_average(average, model, count)
    for key, value in average.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, sum(s[key] for s in snapshots) / 3)
    assert average["1.num_batches_tracked"].item() == 15
    assert average["0.weight"].data_ptr() != model[0].weight.data_ptr()  # a copy, not a view of the model
    with pytest.raises(ValueError, match="average=None and count=0"):
        update_weight_average(None, model, 2)
    with pytest.raises(ValueError, match="average=None and count=0"):
        update_weight_average(average, model, 0)


def test_recompute_batchnorm_measures_the_data_and_keeps_weights_and_mode():
    """After one pass, running statistics are the data's own mean and (unbiased) variance, whatever they
    were before; the weights, the momentum and eval mode are left as they were."""
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    x = torch.randn(600, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([3.0, -1.0, 0.0])
    data = TensorDataset(x, torch.zeros(600, dtype=torch.long))
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3)).eval()
    model[0].running_mean.fill_(100.0)
    weight = model[0].weight.detach().clone()
    recompute_batchnorm(model, data, batch_size=600)  # one batch: exactly the data's statistics
    torch.testing.assert_close(model[0].running_mean, x.mean(0))
    torch.testing.assert_close(model[0].running_var, x.var(0))
    assert torch.equal(model[0].weight, weight) and model[0].momentum == 0.1 and not model.training
    recompute_batchnorm(model, data, batch_size=100)  # several batches: their plain average
    torch.testing.assert_close(model[0].running_mean, x.mean(0))
