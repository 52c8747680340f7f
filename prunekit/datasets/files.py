"""Where dataset files are found: local folders first, a checked download into the cache only when missing.

Folders searched, in order (:func:`search_roots`):

1. the ``root=`` argument, if given;
2. the ``PRUNEKIT_DATA`` environment variable;
3. the per-user cache, ``$PRUNEKIT_CACHE`` or ``~/.cache/prunekit/data``.

The data root is never written to (it may be read-only). Downloads go to the per-user cache only, and
a download counts only if its MD5 is the official one.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "PRUNEKIT_DATA"
CACHE_ENV = "PRUNEKIT_CACHE"


@dataclass(frozen=True)
class RemoteFile:
    """One official file: where it lives under the data root, where to fetch it, its MD5."""

    relpath: str
    urls: tuple[str, ...]
    md5: str


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset is in none of the searched folders and cannot be downloaded."""


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


def md5_of(path: Path) -> str:
    """MD5 of a file's bytes, as hex (read in 1 MiB chunks)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(remote: RemoteFile, destination: Path) -> Path:
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
        if md5_of(partial) != remote.md5:
            partial.unlink(missing_ok=True)
            errors.append(f"{url}: checksum mismatch (expected MD5 {remote.md5})")
            continue
        partial.rename(destination)
        return destination
    raise OSError("; ".join(errors))


def not_found_error(dataset: str, expected: list[str], roots: list[Path],
                    download_error: str | None) -> DatasetNotFoundError:
    """The error to raise: what was expected, every folder searched, why downloading failed, how to fix it."""
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
            return download_file(remote, cache_dir() / "data" / remote.relpath)
        except OSError as exc:
            error = str(exc)
    raise not_found_error(dataset, [remote.relpath], roots, error)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
