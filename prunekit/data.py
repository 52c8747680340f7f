"""Datasets for training: MNIST, CIFAR-10 and Tiny Shakespeare as torch Datasets, splits and loaders.

:func:`load_dataset` reads the files through :mod:`prunekit.datasets` (local folders first, a download
into the per-user cache only when missing; see :mod:`prunekit.datasets.files` for the search order) and
returns an :class:`ImageDataset` (images kept as uint8, normalised and augmented on access) or a
:class:`~prunekit.datasets.shakespeare.CharDataset`. :func:`train_val_split`, :func:`subset` and
:func:`make_loader` cut and batch them the same way everywhere in the course.

Example::

    >>> from prunekit.data import load_dataset, make_loader
    >>> train = load_dataset("mnist", "train")           # doctest: +SKIP
    >>> x, y = train[0]; x.shape, y                      # doctest: +SKIP
    (torch.Size([1, 28, 28]), 5)
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .datasets.cifar import CIFAR_BATCHES, CIFAR_CLASSES, CIFAR_MEAN, CIFAR_STD, cifar_archive_md5, cifar_arrays
from .datasets.files import DATA_ENV, DatasetNotFoundError, cache_dir, search_roots
from .datasets.mnist import MNIST_MEAN, MNIST_STD, mnist_arrays, read_idx
from .datasets.shakespeare import SHAKESPEARE_SHA256, CharDataset, shakespeare

__all__ = ["load_dataset", "ImageDataset", "CharDataset", "random_crop_flip", "random_cutout", "labels_of",
           "train_val_split", "subset", "make_loader", "DatasetNotFoundError", "cache_dir", "search_roots",
           "read_idx", "cifar_archive_md5", "DATA_ENV", "SHAKESPEARE_SHA256", "CIFAR_BATCHES", "CIFAR_CLASSES",
           "CIFAR_MEAN", "CIFAR_STD", "MNIST_MEAN", "MNIST_STD"]


# ----------------------------------------------------------------------------- Dataset
class ImageDataset(Dataset):
    """Images held in memory as uint8; normalised (and optionally augmented) on access.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).
        mean, std: per-channel normalisation constants.
        augment: random 4-pixel-padded crop and horizontal flip (CIFAR training).
        cutout: with ``augment``, also zero a random ``cutout`` x ``cutout`` square of each image
            (:func:`random_cutout`); 0 = off.

    ``dataset[i]`` returns ``(x, y)`` with x float32 (C, H, W) and y an int.
    Augmentation draws from torch's global RNG, so ``seed_everything`` makes it repeatable.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std, augment: bool = False,
                 classes: tuple[str, ...] = (), cutout: int = 0):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if not isinstance(cutout, int) or cutout < 0:
            raise ValueError(f"cutout must be a side length in pixels >= 0 (0 = off), got {cutout!r}")
        self.images, self.targets, self.augment, self.classes = images, labels, augment, classes
        self.cutout = cutout
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = (self.images[i].float() / 255.0 - self.mean) / self.std
        if self.augment:
            x = random_crop_flip(x)
            if self.cutout:
                x = random_cutout(x, self.cutout)
        return x, int(self.targets[i])


def random_crop_flip(x: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on one image (C, H, W): zero-pad, random crop, random h-flip."""
    _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    top, left = torch.randint(0, 2 * padding + 1, (2,)).tolist()
    x = padded[:, top:top + h, left:left + w]
    if torch.rand(()) < 0.5:
        x = x.flip(-1)
    return x


def random_cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017) on one normalised image (C, H, W): zero a ``size`` x ``size`` square.

    The square's centre is uniform over the image and the square is clipped at the borders, so
    sometimes less is hidden. Zero is the dataset mean after normalisation: the patch is "grey".
    A regulariser for networks that fit their training set (the model must use the whole object).
    """
    _, h, w = x.shape
    top = torch.randint(0, h, ()).item() - size // 2       # the square's first row and column,
    left = torch.randint(0, w, ()).item() - size // 2      # possibly outside the image
    x = x.clone()
    x[:, max(top, 0):top + size, max(left, 0):left + size] = 0.0
    return x


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None, download: bool = True,
                 augment: bool | None = None, cutout: int = 0, block_size: int = 128) -> ImageDataset | CharDataset:
    """Load ``"mnist"`` or ``"cifar10"`` (split ``"train"`` or ``"test"``) or ``"tinyshakespeare"``
    (split ``"train"`` or ``"val"``) as a torch Dataset.

    Args:
        name: ``"mnist"`` (60,000 / 10,000 images of 1x28x28) or ``"cifar10"`` (50,000 / 10,000 of 3x32x32).
        split: ``"train"`` or ``"test"``.
        root: a folder to look in first (see the module docstring for the search order).
        download: fetch missing files from the official source into the per-user cache.
        augment: random crop + flip; default True for the CIFAR-10 training split, else False.
        cutout: with ``augment``, also hide a random ``cutout`` x ``cutout`` square (0 = off).
        block_size: Tiny Shakespeare only: characters per example.

    Returns:
        An :class:`ImageDataset` (``.targets`` holds the labels as an int64 tensor), or for
        Tiny Shakespeare a :class:`CharDataset` of (x, y) character-id blocks, y shifted by one.

    Example:
        >>> test = load_dataset("mnist", "test")    # doctest: +SKIP
        >>> len(test), test[0][0].shape             # doctest: +SKIP
        (10000, torch.Size([1, 28, 28]))
    """
    name = name.lower().replace("-", "")
    if name == "tinyshakespeare":
        if split not in ("train", "val"):
            raise ValueError(f"Tiny Shakespeare's split must be 'train' or 'val', got {split!r}")
        return shakespeare(split, block_size, root, download)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "mnist":
        images, labels = mnist_arrays(split, root, download)
        images = torch.from_numpy(images.copy()).unsqueeze(1)
        return ImageDataset(images, torch.from_numpy(labels.astype(np.int64)), MNIST_MEAN, MNIST_STD,
                            augment=bool(augment), classes=tuple(str(i) for i in range(10)), cutout=cutout)
    if name == "cifar10":
        images, labels = cifar_arrays(split, root, download)
        if augment is None:
            augment = split == "train"
        return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels),
                            CIFAR_MEAN, CIFAR_STD, augment=augment, classes=CIFAR_CLASSES, cutout=cutout)
    raise ValueError(f"unknown dataset {name!r}: expected 'mnist' or 'cifar10' (images), or 'tinyshakespeare' (text)")


# ----------------------------------------------------------------------------- splits and loaders
def labels_of(dataset: Dataset) -> np.ndarray:
    """Labels of a dataset or (nested) Subset as a numpy int array (N,), without loading images."""
    if isinstance(dataset, Subset):
        return labels_of(dataset.dataset)[np.asarray(dataset.indices)]
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets)
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])


def train_val_split(name: str, val_size: int = 5000, seed: int = 0, root=None,
                    download: bool = True, cutout: int = 0) -> tuple[Subset, Subset]:
    """Split the official training set into (train, validation), stratified by class and repeatable.

    The validation part is never augmented (nor cut out), whatever the training part does; use it for every
    choice (thresholds, schedules, early stopping) so the test set is touched once at the end.

    Example:
        >>> train, val = train_val_split("mnist", val_size=5000)    # doctest: +SKIP
        >>> len(train), len(val)                                     # doctest: +SKIP
        (55000, 5000)
    """
    from sklearn.model_selection import train_test_split

    train_full = load_dataset(name, "train", root=root, download=download, cutout=cutout)
    plain = load_dataset(name, "train", root=root, download=download, augment=False)
    indices = np.arange(len(train_full))
    train_idx, val_idx = train_test_split(indices, test_size=val_size, random_state=seed,
                                          stratify=labels_of(train_full))
    return Subset(train_full, sorted(train_idx.tolist())), Subset(plain, sorted(val_idx.tolist()))


def subset(dataset: Dataset, n: int, seed: int = 0, stratify: bool = True) -> Dataset:
    """A repeatable random subset of ``n`` examples (class-balanced when ``stratify``), for fast mode.

    Returns ``dataset`` itself when ``n >= len(dataset)``.

    Example:
        >>> small = subset(load_dataset("mnist", "test"), 1000)     # doctest: +SKIP
        >>> len(small)                                               # doctest: +SKIP
        1000
    """
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if n >= len(dataset):
        return dataset
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(dataset))
    keep, _ = train_test_split(indices, train_size=n, random_state=seed,
                               stratify=labels_of(dataset) if stratify else None)
    return Subset(dataset, sorted(keep.tolist()))


def make_loader(dataset: Dataset, batch_size: int = 128, shuffle: bool = False, seed: int | None = 0,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed`` (single process, CPU friendly).

    ``seed=None`` shuffles with torch's global random state instead.
    """
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, num_workers=0)
