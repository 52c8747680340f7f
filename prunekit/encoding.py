"""Entropy coding of a shared, pruned model (Han et al. 2016): bits on disk, measured.

After pruning and weight sharing (:mod:`prunekit.sharing`) a layer is a list of nonzeros, each a
cluster index, at sparse positions. This module writes that to a real byte string and back:

* **relative indices** (:func:`relative_indices`, :func:`positions_from_gaps`): each nonzero's
  position is stored as the gap from the previous one in ``index_bits`` bits; a longer gap first
  emits *filler* entries that hold a zero;
* **Huffman coding** (:func:`huffman_code_lengths`, :func:`canonical_codes`, :func:`pack_codes`,
  :func:`unpack_codes`): frequent symbols (cluster indices, gaps) get short codes;
* **the file** (:func:`encode_compressed`, :func:`decode_compressed`, :func:`compressed_breakdown`):
  shared weights as (symbol, gap) streams, every other tensor as float32, decoded bit-exactly,
  so the size is that of a file, not an estimate.

Example:
    >>> relative_indices(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]), 2)
    (tensor([2, 4, 4, 2]), tensor([False,  True,  True, False]))
    >>> huffman_code_lengths([45, 13, 12, 16, 9, 5, 0])
    [1, 3, 3, 3, 4, 4, 0]
"""
from __future__ import annotations

import heapq
import io
import math
import struct
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["relative_indices", "positions_from_gaps", "huffman_code_lengths", "canonical_codes",
           "pack_codes", "unpack_codes", "encode_compressed", "decode_compressed", "compressed_breakdown"]


def relative_indices(weight: torch.Tensor, index_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the nonzeros of ``weight.flatten()`` as gaps of at most ``2**index_bits`` (Han et al. 2016).

    Walking from position ``-1``, each nonzero at position ``p`` is stored as the gap ``p - previous``
    (so a stored gap ``g`` in ``[1, 2**b]`` costs b bits as ``g - 1``). A gap larger than ``2**b`` first
    emits *filler* entries, each jumping exactly ``2**b`` positions and holding a zero weight.

    Returns:
        ``(gaps, fillers)``: int64 and bool, 1-d, one entry per stored element (nonzeros and fillers).
        ``positions_from_gaps`` inverts it.

    Example:
        >>> relative_indices(torch.tensor([0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]), 2)
        (tensor([2, 4, 4, 2]), tensor([False,  True,  True, False]))
    """
    if isinstance(index_bits, bool) or not isinstance(index_bits, int) or not 1 <= index_bits <= 16:
        raise ValueError(f"index_bits must be an int in [1, 16], got {index_bits!r}")
    span = 2 ** index_bits
    positions = torch.nonzero(weight.detach().flatten() != 0).flatten().cpu()
    raw = torch.diff(positions, prepend=torch.tensor([-1]))             # gaps without fillers, all >= 1
    n_fill = (raw - 1) // span                                          # fillers needed before each nonzero
    last = torch.cumsum(n_fill + 1, 0) - 1                              # where each nonzero lands
    total = int(last[-1]) + 1 if len(last) else 0
    gaps = torch.full((total,), span, dtype=torch.long)
    gaps[last] = raw - n_fill * span
    fillers = torch.ones(total, dtype=torch.bool)
    fillers[last] = False
    return gaps, fillers


def positions_from_gaps(gaps: torch.Tensor, fillers: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`relative_indices`: the flat positions of the nonzeros (fillers dropped).

    Example:
        >>> positions_from_gaps(torch.tensor([2, 4, 4, 2]), torch.tensor([False, True, True, False]))
        tensor([ 1, 11])
    """
    return (torch.cumsum(gaps.long(), 0) - 1)[~fillers.bool()]


def huffman_code_lengths(counts: Sequence[int] | torch.Tensor) -> list[int]:
    """Optimal prefix-code lengths (Huffman 1952) for symbols seen ``counts[i]`` times.

    Repeatedly merge the two least frequent subtrees (ties: the one created first); a symbol's length
    is its depth. Unused symbols (count 0) get length 0; a single used symbol gets length 1.

    Example:
        >>> huffman_code_lengths([45, 13, 12, 16, 9, 5, 0])
        [1, 3, 3, 3, 4, 4, 0]
    """
    counts = [int(c) for c in (counts.tolist() if isinstance(counts, torch.Tensor) else counts)]
    if any(c < 0 for c in counts):
        raise ValueError("counts must be non-negative")
    lengths = [0] * len(counts)
    heap = [(c, i, [i]) for i, c in enumerate(counts) if c > 0]
    if len(heap) == 1:
        lengths[heap[0][1]] = 1
    heapq.heapify(heap)
    order = len(counts)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, order, s1 + s2))
        order += 1
    return lengths


def canonical_codes(lengths: Sequence[int]) -> list[int]:
    """Canonical prefix codes for given lengths: symbols sorted by (length, symbol) get consecutive codes.

    Raises ValueError when the lengths cannot form a prefix code (Kraft sum > 1).

    Example:
        >>> [format(c, f"0{n}b") for c, n in zip(canonical_codes([1, 3, 3, 2]), [1, 3, 3, 2])]
        ['0', '110', '111', '10']
    """
    if sum(2.0 ** -n for n in lengths if n > 0) > 1 + 1e-12:
        raise ValueError(f"lengths {list(lengths)[:10]}... violate Kraft's inequality: not a prefix code")
    codes, code, previous = [0] * len(lengths), 0, 0
    for symbol in sorted((s for s, n in enumerate(lengths) if n > 0), key=lambda s: (lengths[s], s)):
        code <<= lengths[symbol] - previous
        codes[symbol], previous = code, lengths[symbol]
        code += 1
    return codes


def pack_codes(symbols: torch.Tensor | np.ndarray, lengths: Sequence[int], codes: Sequence[int] | None = None
               ) -> bytes:
    """Concatenate the code of every symbol (MSB first) and pack the bits into bytes (zero-padded).

    With ``codes=None`` each symbol ``s`` is written as itself in ``lengths[s]`` bits (fixed width when all
    lengths are equal); otherwise as ``codes[s]``.
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    values = symbols if codes is None else np.asarray(codes, dtype=np.int64)[symbols]
    n = lengths_arr[symbols]
    if symbols.size and n.min() <= 0:
        raise ValueError("a symbol to encode has code length 0 (count 0 in the table)")
    width = int(n.max()) if symbols.size else 0
    shifts = n[:, None] - 1 - np.arange(width)[None, :]
    bits = (values[:, None] >> np.clip(shifts, 0, None)) & 1
    return np.packbits(bits[shifts >= 0].astype(np.uint8)).tobytes()


def unpack_codes(data: bytes, lengths: Sequence[int], count: int, codes: Sequence[int] | None = None) -> np.ndarray:
    """Read ``count`` symbols written by :func:`pack_codes` (a table lookup on the next max-length bits)."""
    lengths = list(lengths)
    codes = list(range(len(lengths))) if codes is None else list(codes)
    width = max(lengths)
    table_symbol = np.zeros(2 ** width, dtype=np.int64)
    table_length = np.zeros(2 ** width, dtype=np.int64)
    for s, (code, n) in enumerate(zip(codes, lengths)):
        if n > 0:
            start = code << (width - n)
            table_symbol[start:start + (1 << (width - n))] = s
            table_length[start:start + (1 << (width - n))] = n
    bits = np.concatenate([np.unpackbits(np.frombuffer(data, dtype=np.uint8)), np.zeros(width, np.uint8)])
    weights = 1 << np.arange(width - 1, -1, -1)
    out, pos = np.empty(count, dtype=np.int64), 0
    for i in range(count):
        key = int(bits[pos:pos + width] @ weights)
        out[i] = table_symbol[key]
        pos += int(table_length[key])
    return out


# ============================================================================ the compressed file
# Format (little-endian): b"PKDC" | version u8 | tensors u16, then per tensor
#   name length u16 | name | kind u8 (0 raw float32, 1 raw int64, 2 shared) | ndim u8 | shape u32 * ndim
#   raw     the values
#   shared  clusters k u16 | index bits b u8 | huffman u8 | entries u32 | codebook float32 * k
#           [huffman: code lengths u8 * (k + 1) for weight symbols, u8 * 2**b for gap symbols]
#           | weight stream bytes u32 | weight stream | gap stream bytes u32 | gap stream
#   Weight symbol s < k is codebook[s]; s == k marks a filler. Gap symbol = gap - 1 (b bits when fixed).
#   Without Huffman, weight symbols take ceil(log2(k + 1)) bits each: with k = 2**bits - 1 clusters, bits.
_MAGIC, _VERSION = b"PKDC", 1


def _codebook_from(weight: torch.Tensor, indices: torch.Tensor, name: str) -> torch.Tensor:
    """The shared values: weight entries of cluster j must all be equal (share/tie the model first)."""
    w, idx = weight.detach().flatten().float().cpu(), indices.flatten().cpu()
    if idx.numel() != w.numel():
        raise ValueError(f"{name}: indices have {idx.numel()} entries, the weight {w.numel()}")
    if bool((w[idx < 0] != 0).any()):
        raise ValueError(f"{name}: weights with index -1 must be zero")
    k = int(idx.max()) + 1 if bool((idx >= 0).any()) else 0
    codebook = torch.zeros(k)
    codebook[idx[idx >= 0]] = w[idx >= 0]
    if not torch.equal(codebook[idx.clamp(min=0)][idx >= 0], w[idx >= 0]):
        raise ValueError(f"{name}: weights of one cluster differ; call share_model / TieToClusters first")
    return codebook


def _stream(symbols: np.ndarray, n_symbols: int, fixed_bits: int, huffman: bool,
            lengths_fn: Callable) -> tuple[bytes, bytes]:
    """(code-length table, packed stream) for one symbol stream."""
    if not huffman:
        return b"", pack_codes(symbols, [fixed_bits] * n_symbols)
    lengths = [int(n) for n in lengths_fn(np.bincount(symbols, minlength=n_symbols).tolist())]
    if len(lengths) != n_symbols or max(lengths, default=0) > 255:
        raise ValueError(f"code lengths must be {n_symbols} ints <= 255")
    return bytes(lengths), pack_codes(symbols, lengths, canonical_codes(lengths))


def _encode_shared(name, weight, indices, index_bits, huffman, relative_fn, lengths_fn) -> dict[str, bytes]:
    codebook = _codebook_from(weight, indices, name)
    k = codebook.numel()
    gaps, fillers = relative_fn(weight.detach().cpu(), index_bits)
    gaps, fillers = torch.as_tensor(gaps).long(), torch.as_tensor(fillers).bool()
    in_range = len(gaps) == len(fillers) and bool((gaps >= 1).all()) and bool((gaps <= 2 ** index_bits).all())
    positions = positions_from_gaps(gaps, fillers) if in_range else None
    if not in_range or not torch.equal(positions, torch.nonzero(weight.detach().flatten().cpu()).flatten()):
        raise ValueError(f"{name}: relative indices do not match the nonzeros or the {index_bits}-bit range")
    symbols = torch.full((len(gaps),), k, dtype=torch.long)
    symbols[~fillers] = indices.flatten().cpu()[positions]
    if bool((symbols[~fillers] < 0).any()):
        raise ValueError(f"{name}: a nonzero weight has index -1")
    table_w, stream_w = _stream(symbols.numpy(), k + 1, max(1, math.ceil(math.log2(k + 1))), huffman, lengths_fn)
    table_g, stream_g = _stream((gaps - 1).numpy(), 2 ** index_bits, index_bits, huffman, lengths_fn)
    head = struct.pack("<HBBI", k, index_bits, int(huffman), len(gaps)) + _raw32(codebook)
    return {"header": head, "tables": table_w + table_g,
            "weights": struct.pack("<I", len(stream_w)) + stream_w,
            "index": struct.pack("<I", len(stream_g)) + stream_g}


def _raw32(t: torch.Tensor) -> bytes:
    return t.detach().cpu().float().contiguous().numpy().astype("<f4").tobytes()


def _tensor_parts(name: str, tensor: torch.Tensor, indices, index_bits, huffman, relative_fn,
                  lengths_fn) -> dict[str, bytes]:
    name_bytes = name.encode()
    kind = 2 if indices is not None else (0 if tensor.is_floating_point() else 1)
    head = (struct.pack("<H", len(name_bytes)) + name_bytes + struct.pack("<BB", kind, tensor.dim())
            + struct.pack(f"<{tensor.dim()}I", *tensor.shape))
    if kind == 2:
        parts = _encode_shared(name, tensor, indices, index_bits, huffman, relative_fn, lengths_fn)
        parts["header"] = head + parts["header"]
        return parts
    body = _raw32(tensor) if kind == 0 else tensor.detach().cpu().long().numpy().astype("<i8").tobytes()
    return {"header": head, "raw": body}


def _all_parts(model, indices, index_bits, huffman, relative_fn, lengths_fn):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_keep")}
    unknown = [n for n in indices if n not in state]
    if unknown:
        raise ValueError(f"indices for {unknown}, which the model does not have")
    bits = index_bits if isinstance(index_bits, Mapping) else {n: index_bits for n in indices}
    return {name: _tensor_parts(name, t, indices.get(name), bits.get(name), huffman, relative_fn, lengths_fn)
            for name, t in state.items()}


def encode_compressed(model: nn.Module, indices: Mapping[str, torch.Tensor], index_bits: int | Mapping[str, int] = 5,
                      huffman: bool = True, relative_fn: Callable = relative_indices,
                      lengths_fn: Callable = huffman_code_lengths) -> bytes:
    """The model as a Deep Compression file: shared weights as (cluster symbol, gap) streams, the rest float32.

    Args:
        indices: ``{"fc1.weight": cluster indices (-1 = zero)}`` from :func:`prunekit.sharing.share_model`; the shared
            values are read from the weights themselves (so fine-tuned centroids are stored).
        index_bits: bits per relative index (gap), one for all or per weight name.
        huffman: Huffman-code both streams (code-length tables stored) instead of fixed-width symbols.
        relative_fn, lengths_fn: your :func:`relative_indices` / :func:`huffman_code_lengths`.

    Returns:
        bytes that :func:`decode_compressed` turns back into the state dict, bit-exact.
    """
    parts = _all_parts(model, indices, index_bits, huffman, relative_fn, lengths_fn)
    body = b"".join(b"".join(p.values()) for p in parts.values())
    return _MAGIC + struct.pack("<BH", _VERSION, len(parts)) + body


def compressed_breakdown(model: nn.Module, indices: Mapping[str, torch.Tensor],
                         index_bits: int | Mapping[str, int] = 5, huffman: bool = True,
                         relative_fn: Callable = relative_indices,
                         lengths_fn: Callable = huffman_code_lengths) -> list[dict]:
    """Where the bytes of :func:`encode_compressed` go, one row per tensor (header, codebook+tables,
    weight symbols, relative indices, raw values), plus ``bits/nonzero`` for shared weights."""
    rows = []
    for name, parts in _all_parts(model, indices, index_bits, huffman, relative_fn, lengths_fn).items():
        tensor = model.state_dict()[name]
        row = {"tensor": name, "nonzeros": int(torch.count_nonzero(tensor)), "header": len(parts["header"]),
               "tables": len(parts.get("tables", b"")), "weight symbols": len(parts.get("weights", b"")),
               "rel. indices": len(parts.get("index", b"")), "raw": len(parts.get("raw", b""))}
        row["total"] = sum(len(v) for v in parts.values())
        row["bits/nonzero"] = 8 * (row["weight symbols"] + row["rel. indices"]) / max(row["nonzeros"], 1) \
            if name in indices else None
        rows.append(row)
    return rows


def _read(stream: io.BytesIO, fmt: str):
    return struct.unpack(fmt, stream.read(struct.calcsize(fmt)))


def _decode_shared(stream: io.BytesIO, shape) -> torch.Tensor:
    k, index_bits, huffman, entries = _read(stream, "<HBBI")
    codebook = torch.from_numpy(np.frombuffer(stream.read(4 * k), dtype="<f4").copy())
    n_w, n_g = k + 1, 2 ** index_bits
    if huffman:
        lengths_w, lengths_g = list(stream.read(n_w)), list(stream.read(n_g))
        codes_w, codes_g = canonical_codes(lengths_w), canonical_codes(lengths_g)
    else:
        lengths_w, lengths_g = [max(1, math.ceil(math.log2(k + 1)))] * n_w, [index_bits] * n_g
        codes_w = codes_g = None
    (size,) = _read(stream, "<I")
    symbols = unpack_codes(stream.read(size), lengths_w, entries, codes_w) if entries else np.zeros(0, np.int64)
    (size,) = _read(stream, "<I")
    gaps = unpack_codes(stream.read(size), lengths_g, entries, codes_g) + 1 if entries else np.zeros(0, np.int64)
    symbols, gaps = torch.from_numpy(symbols), torch.from_numpy(gaps)
    fillers = symbols == k
    flat = torch.zeros(math.prod(shape))
    flat[positions_from_gaps(gaps, fillers)] = codebook[symbols[~fillers]]
    return flat.view(shape)


def decode_compressed(data: bytes) -> dict[str, torch.Tensor]:
    """The state dict stored by :func:`encode_compressed` (load it with ``model.load_state_dict``).

    Example:
        >>> from prunekit.models import build_model
        >>> from prunekit.sharing import share_model
        >>> m = build_model("lenet300"); idx = share_model(m, 31, iters=2)
        >>> state = decode_compressed(encode_compressed(m, idx))
        >>> torch.equal(state["fc1.weight"], m.fc1.weight.detach())
        True
    """
    stream = io.BytesIO(data)
    if stream.read(4) != _MAGIC:
        raise ValueError("not a prunekit Deep Compression file (it must start with b'PKDC')")
    version, count = _read(stream, "<BH")
    if version != _VERSION:
        raise ValueError(f"file version {version}, this prunekit reads version {_VERSION}")
    state = {}
    for _ in range(count):
        (name_len,) = _read(stream, "<H")
        name = stream.read(name_len).decode()
        kind, ndim = _read(stream, "<BB")
        shape = _read(stream, f"<{ndim}I")
        numel = math.prod(shape)
        if kind == 0:
            state[name] = torch.from_numpy(np.frombuffer(stream.read(4 * numel), dtype="<f4").copy()).view(shape)
        elif kind == 1:
            state[name] = torch.from_numpy(np.frombuffer(stream.read(8 * numel), dtype="<i8").copy()).view(shape)
        else:
            state[name] = _decode_shared(stream, shape)
    return state
