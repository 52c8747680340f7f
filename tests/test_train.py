"""Training loop: reproducibility, callbacks, per-epoch schedules, devices."""
import pytest
import torch

from prunekit.data import load_dataset, subset
from prunekit.models import build_model
from prunekit.train import evaluate, fast_precision, get_device, seed_everything, train


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
