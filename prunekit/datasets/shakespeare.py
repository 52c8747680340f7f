"""Tiny Shakespeare (Karpathy's char-rnn corpus), character level, split as nanoGPT's shakespeare_char."""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .files import RemoteFile, find_or_download, sha256_of

# Karpathy's char-rnn corpus (public-domain text, MIT-licensed repository), as nanoGPT's shakespeare_char uses it.
SHAKESPEARE_FILE = RemoteFile("tinyshakespeare/input.txt",
                              ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                               "tinyshakespeare/input.txt",),
                              "6fb458f1232090904fb40fe944165e91")
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


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


@functools.lru_cache(maxsize=None)  # warn once per process and file, not at every load
def _warn_if_unofficial_text(path: Path, digest: str) -> None:
    warnings.warn(f"{path} has SHA-256 {digest}, not the official {SHAKESPEARE_SHA256}: using it "
                  "anyway (perplexities may differ from the course's).", stacklevel=4)


def shakespeare(split: str, block_size: int, root, download: bool) -> CharDataset:
    """Tiny Shakespeare as nanoGPT's shakespeare_char: first 90 % of the characters train, last 10 % validate."""
    path = find_or_download(SHAKESPEARE_FILE, "Tiny Shakespeare", root, download)
    digest = sha256_of(path)
    if digest != SHAKESPEARE_SHA256:  # a local copy is used as found, like CIFAR's archive
        _warn_if_unofficial_text(path, digest)
    text = path.read_text(encoding="utf-8")
    vocab = "".join(sorted(set(text)))  # 65 characters; ids follow their Unicode order
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    return CharDataset(ids[:cut] if split == "train" else ids[cut:], vocab, block_size)
