"""CIFAR-10 (Krizhevsky 2009): the official python archive or its extracted folder, decoded into numpy arrays.

A local archive whose MD5 is not the official one is used anyway, with one warning per process: the
course's shared copy is a documented rebuild.
"""
from __future__ import annotations

import functools
import hashlib
import io
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np

from .files import RemoteFile, cache_dir, download_file, md5_of, not_found_error, search_roots

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")
CIFAR_ARCHIVE = RemoteFile("cifar-10-python.tar.gz",
                           ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                           "c58f30108f718f92721af3b95e74349a")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


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
    md5 = md5_of(archive)
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


def cifar_arrays(split: str, root, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) of ``split``, from a folder or the archive."""
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
            return _cifar_from_archive(download_file(CIFAR_ARCHIVE, cache_dir() / "data" / CIFAR_ARCHIVE.relpath),
                                       split)
        except OSError as exc:
            error = str(exc)
    expected = [f"{CIFAR_FOLDER}/{b}" for b in CIFAR_BATCHES[split]] + [CIFAR_ARCHIVE.relpath + " (either form)"]
    raise not_found_error("CIFAR-10", expected, roots, error)


def cifar_archive_md5(root=None) -> str | None:
    """MD5 of the CIFAR-10 archive the loader would use (recorded in checkpoints), or None."""
    for r in search_roots(root):
        if (r / CIFAR_ARCHIVE.relpath).is_file():
            return md5_of(r / CIFAR_ARCHIVE.relpath)
    return None
