"""MNIST (LeCun et al. 1998): the four official IDX files, decoded into numpy arrays."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .files import RemoteFile, cache_dir, download_file, not_found_error, search_roots

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
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


def mnist_arrays(split: str, root, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 28, 28) and labels uint8 (N,) of ``split``; both files from the same folder."""
    roots = search_roots(root)
    files = [MNIST_FILES[(split, part)] for part in ("images", "labels")]
    for r in roots:  # both files must come from the same root
        if all((r / f.relpath).is_file() for f in files):
            return read_idx(r / files[0].relpath), read_idx(r / files[1].relpath)
    error = None
    if download:
        try:
            paths = [download_file(f, cache_dir() / "data" / f.relpath) for f in files]
            return read_idx(paths[0]), read_idx(paths[1])
        except OSError as exc:
            error = str(exc)
    raise not_found_error("MNIST", [f.relpath for f in files], roots, error)
