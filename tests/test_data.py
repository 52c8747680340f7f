"""The data layer, on the real files (no mocks of the data layer)."""
import io
import pickle
import tarfile
import warnings

import numpy as np
import pytest
import torch

from prunekit import data
from prunekit.datasets import files
from prunekit.data import DatasetNotFoundError, load_dataset, make_loader, subset, train_val_split

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_shapes_counts_and_ranges(data_root):
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 5  # the famous first "5"
    assert np.bincount(data.labels_of(train)).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(data.labels_of(test)).tolist() == MNIST_TEST_COUNTS
    batch = torch.stack([test[i][0] for i in range(256)])
    lo, hi = (0 - 0.1307) / 0.3081, (1 - 0.1307) / 0.3081
    assert batch.min().item() == pytest.approx(lo, abs=1e-5)
    assert batch.max().item() == pytest.approx(hi, abs=1e-5)


def test_cifar_shapes_counts_and_ranges(data_root):
    train = load_dataset("cifar10", "train")
    test = load_dataset("cifar10", "test")
    assert (len(train), len(test)) == (50000, 10000)
    assert np.bincount(data.labels_of(train)).tolist() == [5000] * 10
    assert np.bincount(data.labels_of(test)).tolist() == [1000] * 10
    assert train.augment and not test.augment
    x, _ = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    raw = test.images[:500].float() / 255
    assert raw.min() >= 0 and raw.max() <= 1 and raw.max() > 0.99
    # normalised pixels stay within the range implied by the constants
    assert x.min() >= (0 - max(data.CIFAR_MEAN)) / min(data.CIFAR_STD) - 1e-5


def test_augmentation_is_seeded(data_root):
    train = load_dataset("cifar10", "train")
    torch.manual_seed(3)
    a = torch.stack([train[i][0] for i in range(8)])
    torch.manual_seed(3)
    b = torch.stack([train[i][0] for i in range(8)])
    torch.manual_seed(4)
    c = torch.stack([train[i][0] for i in range(8)])
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_offline_error_names_files_folders_and_fix(tmp_path, isolated_cache):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", "test", root=tmp_path, download=False)
    message = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path) in message and str(isolated_cache) in message
    assert "PRUNEKIT_DATA" in message
    assert "call again with download=True" in message      # downloading was switched off: say how to turn it on


def test_failed_download_gives_the_same_clear_error(tmp_path, isolated_cache, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(files.urllib.request, "urlopen", offline)   # what the download would call
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError, match="Downloading failed too") as err:
        load_dataset("cifar10", "test", root=root, download=True)
    assert "download=True" not in str(err.value)           # it was already tried: no advice to try it
    assert not any(root.iterdir()), "nothing may be written into the data root"


def _tiny_cifar_batches(rng):
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"batch_label": name, "labels": rng.integers(0, 10, 4).tolist(),
                         "data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         "filenames": [f"{name}_{i}.png" for i in range(4)]}
    return batches


def test_cifar_reads_folder_and_tarball_identically(tmp_path, isolated_cache):
    rng = np.random.default_rng(0)
    batches = _tiny_cifar_batches(rng)
    folder_root, tar_root = tmp_path / "folder", tmp_path / "tar"
    (folder_root / "cifar-10-batches-py").mkdir(parents=True)
    tar_root.mkdir()
    with tarfile.open(tar_root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, batch in batches.items():
            payload = pickle.dumps(batch)
            (folder_root / "cifar-10-batches-py" / name).write_bytes(payload)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    before = sorted(p.name for p in tar_root.iterdir())
    for split, names in [("train", data.CIFAR_BATCHES["train"]), ("test", ("test_batch",))]:
        expected_images = np.concatenate([batches[n]["data"] for n in names]).reshape(-1, 3, 32, 32)
        expected_labels = sum((batches[n]["labels"] for n in names), [])
        from_folder = load_dataset("cifar10", split, root=folder_root, download=False)
        if split == "train":  # the first load of this archive warns ...
            with pytest.warns(UserWarning, match="not the official"):
                from_tar = load_dataset("cifar10", split, root=tar_root, download=False)
        else:                 # ... and later loads do not: once per process
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                from_tar = load_dataset("cifar10", split, root=tar_root, download=False)
        for ds in (from_folder, from_tar):
            assert np.array_equal(ds.images.numpy(), expected_images)
            assert ds.targets.tolist() == expected_labels
    # the decoded copy goes to the cache, never into the (possibly read-only) data root
    assert sorted(p.name for p in tar_root.iterdir()) == before
    assert list((isolated_cache / "decoded").glob("cifar10-*.npz"))
    with warnings.catch_warnings():  # read from the cache: not warned again in this process
        warnings.simplefilter("error")
        load_dataset("cifar10", "test", root=tar_root, download=False)


def test_split_and_subset_are_deterministic_and_stratified(data_root):
    train, val = train_val_split("mnist", val_size=1000, seed=0)
    train2, val2 = train_val_split("mnist", val_size=1000, seed=0)
    assert len(train) == 59000 and len(val) == 1000
    assert list(val.indices) == list(val2.indices)
    assert set(train.indices).isdisjoint(val.indices)
    counts = np.bincount(data.labels_of(val), minlength=10)
    assert counts.min() >= 85 and counts.max() <= 115  # stratified: ~100 each
    small = subset(load_dataset("mnist", "test"), 500, seed=1)
    assert len(small) == 500 and list(small.indices) == list(subset(load_dataset("mnist", "test"), 500, seed=1).indices)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="expected 'mnist' or 'cifar10'"):
        load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("mnist", "validation")


def test_loader_order_depends_only_on_seed(data_root):
    ds = subset(load_dataset("mnist", "test"), 300)
    first = [y.tolist() for _, y in make_loader(ds, 64, shuffle=True, seed=5)]
    again = [y.tolist() for _, y in make_loader(ds, 64, shuffle=True, seed=5)]
    other = [y.tolist() for _, y in make_loader(ds, 64, shuffle=True, seed=6)]
    assert first == again and first != other


def test_cutout_hides_one_clipped_square():
    torch.manual_seed(0)
    x = torch.ones(3, 32, 32)
    hidden_counts = set()
    for _ in range(200):
        y = data.random_cutout(x, 8)
        hidden = (y == 0).all(0)
        rows, cols = hidden.any(1).nonzero().flatten(), hidden.any(0).nonzero().flatten()
        assert (y == 0).sum() == 3 * hidden.sum()                      # all channels, same pixels
        assert hidden.sum() == len(rows) * len(cols)                   # one solid rectangle ...
        assert len(rows) <= 8 and len(cols) <= 8                       # ... at most 8 x 8
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
        hidden_counts.add(int(hidden.sum()))
    assert 64 in hidden_counts and min(hidden_counts) < 64             # whole squares and clipped ones
    assert torch.equal(x, torch.ones(3, 32, 32))                       # the input is not changed


def test_cutout_only_when_augmenting():
    images = torch.full((4, 3, 32, 32), 200, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    plain = data.ImageDataset(images, labels, (0.5,) * 3, (0.25,) * 3, augment=False, cutout=16)
    assert (plain[0][0] != 0).all()
    cut = data.ImageDataset(images, labels, (0.5,) * 3, (0.25,) * 3, augment=True, cutout=16)
    torch.manual_seed(0)
    assert sum(int((cut[i][0] == 0).all(0).sum()) for i in range(4)) > 0
    with pytest.raises(ValueError, match="cutout must be"):
        data.ImageDataset(images, labels, (0.5,) * 3, (0.25,) * 3, cutout=-1)


def test_train_val_split_cuts_out_only_the_training_part(data_root):
    train, val = data.train_val_split("cifar10", val_size=500, root=data_root, cutout=16)
    assert train.dataset.cutout == 16 and train.dataset.augment
    assert val.dataset.cutout == 0 and not val.dataset.augment
