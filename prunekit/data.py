"""Datasets: MNIST, CIFAR-10 and Tiny Shakespeare, read from local files first, downloaded only when missing.

Where files are looked for, in this order:

1. the ``root=`` argument, if given;
2. the ``PRUNEKIT_DATA`` environment variable;
3. the per-user cache, ``$PRUNEKIT_CACHE`` or ``~/.cache/prunekit/data``.

The data root is never written to (it may be read-only). Downloads and decoded copies
go to the per-user cache only.

Example::

    >>> from prunekit.data import load_dataset, make_loader
    >>> train = load_dataset("mnist", "train")           # doctest: +SKIP
    >>> x, y = train[0]; x.shape, y                      # doctest: +SKIP
    (torch.Size([1, 28, 28]), 5)
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

DATA_ENV = "PRUNEKIT_DATA"
CACHE_ENV = "PRUNEKIT_CACHE"

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class RemoteFile:
    """One official file: where it lives under the data root, where to fetch it, its MD5."""

    relpath: str
    urls: tuple[str, ...]
    md5: str


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {
    ("train", "images"): RemoteFile("MNIST/raw/train-images-idx3-ubyte.gz",
                                    tuple(m + "train-images-idx3-ubyte.gz" for m in _MNIST_MIRRORS),
                                    "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("train", "labels"): RemoteFile("MNIST/raw/train-labels-idx1-ubyte.gz",
                                    tuple(m + "train-labels-idx1-ubyte.gz" for m in _MNIST_MIRRORS),
                                    "d53e105ee54ea40749a09fcbcd1e9432"),
    ("test", "images"): RemoteFile("MNIST/raw/t10k-images-idx3-ubyte.gz",
                                   tuple(m + "t10k-images-idx3-ubyte.gz" for m in _MNIST_MIRRORS),
                                   "9fb629c4189551a2d022fa330f9573f3"),
    ("test", "labels"): RemoteFile("MNIST/raw/t10k-labels-idx1-ubyte.gz",
                                   tuple(m + "t10k-labels-idx1-ubyte.gz" for m in _MNIST_MIRRORS),
                                   "ec29112dd5afa0611ce80d1b7f02629c"),
}
CIFAR_ARCHIVE = RemoteFile("cifar-10-python.tar.gz",
                           ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                           "c58f30108f718f92721af3b95e74349a")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
# Karpathy's char-rnn corpus (public-domain text, MIT-licensed repository), as nanoGPT's shakespeare_char uses it.
SHAKESPEARE_FILE = RemoteFile("tinyshakespeare/input.txt",
                              ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                               "tinyshakespeare/input.txt",),
                              "6fb458f1232090904fb40fe944165e91")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset is in none of the searched folders and cannot be downloaded."""


# ----------------------------------------------------------------------------- where to look
def cache_dir() -> Path:
    """The per-user cache folder (``$PRUNEKIT_CACHE`` or ``~/.cache/prunekit``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "prunekit"


def search_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for dataset files, in order (explicit root, $PRUNEKIT_DATA, cache)."""
    roots = []
    if root is not None:
        roots.append(Path(root).expanduser())
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]).expanduser())
    roots.append(cache_dir() / "data")
    unique = []
    for r in roots:  # keep order, drop repeats
        if r not in unique:
            unique.append(r)
    return unique


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(remote: RemoteFile, destination: Path) -> Path:
    """Fetch ``remote`` into ``destination`` with a progress bar; the MD5 must match exactly."""
    from tqdm.auto import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        partial = destination.with_suffix(destination.suffix + ".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as exc:  # URLError, timeouts and refused connections are all OSErrors
            errors.append(f"{url}: {exc}")
            partial.unlink(missing_ok=True)
            continue
        if _md5(partial) != remote.md5:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: checksum mismatch (expected MD5 {remote.md5})")
            continue
        partial.rename(destination)
        return destination
    raise OSError("; ".join(errors))


def _not_found(dataset: str, expected: list[str], roots: list[Path], download_error: str | None):
    lines = [f"Could not find the {dataset} files.",
             "Expected (any one root is enough): " + ", ".join(expected),
             "Searched these folders, in order:"]
    lines += [f"  - {r}{'' if r.is_dir() else '  (does not exist)'}" for r in roots]
    fix = (f"How to fix: put the official files under one of these folders, or point the course "
           f"at your copy with `export {DATA_ENV}=/path/to/data` (or pass root=...).")
    if download_error:
        lines.append(f"Downloading failed too (offline?): {download_error}")
        lines.append(fix + " Or connect to the internet (check a proxy or firewall) and run it again.")
    else:
        lines.append("Downloading was switched off (download=False).")
        lines.append(fix + " With internet access, call again with download=True.")
    return DatasetNotFoundError("\n".join(lines))


def find_or_download(remote: RemoteFile, dataset: str, root=None, download: bool = True) -> Path:
    """Path of one official file: the first root that has it, else a fresh download in the cache."""
    roots = search_roots(root)
    for r in roots:
        if (r / remote.relpath).is_file():
            return r / remote.relpath
    error = None
    if download:
        try:
            return _download(remote, cache_dir() / "data" / remote.relpath)
        except OSError as exc:
            error = str(exc)
    raise _not_found(dataset, [remote.relpath], roots, error)


# ----------------------------------------------------------------------------- MNIST
def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Decode an IDX file (``.gz`` or plain) into a uint8 array, e.g. (60000, 28, 28) images."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _mnist_arrays(split: str, root, download: bool) -> tuple[np.ndarray, np.ndarray]:
    roots = search_roots(root)
    files = [MNIST_FILES[(split, part)] for part in ("images", "labels")]
    for r in roots:  # both files must come from the same root
        if all((r / f.relpath).is_file() for f in files):
            return read_idx(r / files[0].relpath), read_idx(r / files[1].relpath)
    error = None
    if download:
        try:
            paths = [_download(f, cache_dir() / "data" / f.relpath) for f in files]
            return read_idx(paths[0]), read_idx(paths[1])
        except OSError as exc:
            error = str(exc)
    raise _not_found("MNIST", [f.relpath for f in files], roots, error)


# ----------------------------------------------------------------------------- CIFAR-10
def _unpickle(stream) -> dict:
    return pickle.load(stream, encoding="latin1")


def _decode_cifar(batches: dict) -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
    return images, labels


@functools.lru_cache(maxsize=None)  # warn once per process and archive, not at every load
def _warn_if_unofficial(archive: Path, md5: str) -> None:
    if md5 != CIFAR_ARCHIVE.md5:
        warnings.warn(f"{archive} has MD5 {md5}, not the official {CIFAR_ARCHIVE.md5}: using it anyway "
                      "(a local rebuild? accuracies may differ slightly from published CIFAR-10 numbers).",
                      stacklevel=4)


def _cifar_from_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the batches straight from the .tar.gz; cache the decoded arrays (fast next time)."""
    stat = archive.stat()
    key = hashlib.sha1(f"{archive.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / "decoded" / f"cifar10-{split}-{key}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            _warn_if_unofficial(archive, str(z["md5"]))
            return z["images"], z["labels"]
    md5 = _md5(archive)
    _warn_if_unofficial(archive, md5)
    wanted = {f"{CIFAR_FOLDER}/{b}": b for b in CIFAR_BATCHES[split]}
    found = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                found[wanted[member.name]] = _unpickle(io.BytesIO(tar.extractfile(member).read()))
    missing = set(CIFAR_BATCHES[split]) - set(found)
    if missing:
        raise ValueError(f"{archive} lacks {sorted(missing)} under {CIFAR_FOLDER}/")
    images, labels = _decode_cifar([found[b] for b in CIFAR_BATCHES[split]])
    try:  # the cache is an optimisation: a read-only home must not break loading
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, labels=labels, md5=np.array(md5))
        tmp.rename(cached)
    except OSError:
        pass
    return images, labels


def _cifar_arrays(split: str, root, download: bool) -> tuple[np.ndarray, np.ndarray]:
    roots = search_roots(root)
    for r in roots:
        folder = r / CIFAR_FOLDER
        if all((folder / b).is_file() for b in CIFAR_BATCHES[split]):
            batches = []
            for b in CIFAR_BATCHES[split]:
                with open(folder / b, "rb") as f:
                    batches.append(_unpickle(f))
            return _decode_cifar(batches)
        if (r / CIFAR_ARCHIVE.relpath).is_file():
            return _cifar_from_archive(r / CIFAR_ARCHIVE.relpath, split)
    error = None
    if download:
        try:
            return _cifar_from_archive(_download(CIFAR_ARCHIVE, cache_dir() / "data" / CIFAR_ARCHIVE.relpath),
                                       split)
        except OSError as exc:
            error = str(exc)
    expected = [f"{CIFAR_FOLDER}/{b}" for b in CIFAR_BATCHES[split]] + [CIFAR_ARCHIVE.relpath + " (either form)"]
    raise _not_found("CIFAR-10", expected, roots, error)


def cifar_archive_md5(root=None) -> str | None:
    """MD5 of the CIFAR-10 archive the loader would use (recorded in checkpoints), or None."""
    for r in search_roots(root):
        if (r / CIFAR_ARCHIVE.relpath).is_file():
            return _md5(r / CIFAR_ARCHIVE.relpath)
    return None


# ----------------------------------------------------------------------------- Tiny Shakespeare
class CharDataset(Dataset):
    """A text as consecutive blocks of character ids, for next-character prediction.

    Args:
        ids: int64 tensor (N,) of character ids (one split of the text).
        vocab: the characters, in id order (``vocab[i]`` is the character with id i).
        block_size: characters per example.

    ``dataset[i]`` returns ``(x, y)``: x = ids[i*block_size : (i+1)*block_size] and y the same
    window shifted by one character (the targets), both int64 (block_size,). Blocks do not overlap;
    :meth:`random_batch` draws blocks at random offsets instead, as training does.

    Example:
        >>> val = load_dataset("tinyshakespeare", "val")     # doctest: +SKIP
        >>> x, y = val[0]; val.decode(x[:20])                # doctest: +SKIP
        "?\n\nGREMIO:\nGood morrow, neighbour"
    """

    def __init__(self, ids: torch.Tensor, vocab: str, block_size: int = 128):
        if not isinstance(block_size, int) or block_size < 1 or len(ids) <= block_size:
            raise ValueError(f"block_size must be an int in [1, {len(ids) - 1}], got {block_size!r}")
        self.ids, self.vocab, self.block_size = ids, vocab, block_size
        self._index = {c: i for i, c in enumerate(vocab)}

    def __len__(self) -> int:
        return (len(self.ids) - 1) // self.block_size

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"block {i} out of range for {len(self)} blocks")
        start = (i % len(self)) * self.block_size
        chunk = self.ids[start:start + self.block_size + 1]
        return chunk[:-1], chunk[1:]

    def random_batch(self, batch_size: int, generator: torch.Generator | None = None):
        """``batch_size`` blocks starting at random characters: (x, y), each int64 (batch_size, block_size)."""
        starts = torch.randint(len(self.ids) - self.block_size, (batch_size,), generator=generator)
        x = torch.stack([self.ids[s:s + self.block_size] for s in starts.tolist()])
        y = torch.stack([self.ids[s + 1:s + 1 + self.block_size] for s in starts.tolist()])
        return x, y

    def encode(self, text: str) -> torch.Tensor:
        """Character ids of ``text`` (int64 (len(text),)); every character must be in the vocabulary."""
        unknown = sorted(set(text) - set(self._index))
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown}")
        return torch.tensor([self._index[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a tensor or a list of ints)."""
        return "".join(self.vocab[int(i)] for i in ids)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)  # warn once per process and file, not at every load
def _warn_if_unofficial_text(path: Path, digest: str) -> None:
    warnings.warn(f"{path} has SHA-256 {digest}, not the official {SHAKESPEARE_SHA256}: using it "
                  "anyway (perplexities may differ from the course's).", stacklevel=4)


def _shakespeare(split: str, block_size: int, root, download: bool) -> CharDataset:
    """Tiny Shakespeare as nanoGPT's shakespeare_char: first 90 % of the characters train, last 10 % validate."""
    path = find_or_download(SHAKESPEARE_FILE, "Tiny Shakespeare", root, download)
    digest = _sha256(path)
    if digest != SHAKESPEARE_SHA256:  # a local copy is used as found, like CIFAR's archive
        _warn_if_unofficial_text(path, digest)
    text = path.read_text(encoding="utf-8")
    vocab = "".join(sorted(set(text)))  # 65 characters; ids follow their Unicode order
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    return CharDataset(ids[:cut] if split == "train" else ids[cut:], vocab, block_size)


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
        return _shakespeare(split, block_size, root, download)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "mnist":
        images, labels = _mnist_arrays(split, root, download)
        images = torch.from_numpy(images.copy()).unsqueeze(1)
        return ImageDataset(images, torch.from_numpy(labels.astype(np.int64)), MNIST_MEAN, MNIST_STD,
                            augment=bool(augment), classes=tuple(str(i) for i in range(10)), cutout=cutout)
    if name == "cifar10":
        images, labels = _cifar_arrays(split, root, download)
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
