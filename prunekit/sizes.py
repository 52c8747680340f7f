"""Bytes on disk: the length of a file that really holds the model, for every way of storing it.

Pruning saves storage only if the file leaves the zeros out. Each size here is the length of
bytes that a decoder turns back into the weights, so none is an estimate:

* :func:`state_dict_bytes`: the plain ``torch.save`` of the state dict (float32), what a dense
  checkpoint costs; :func:`gzip_bytes`: the same file gzipped (runs of zeros compress);
* :func:`encode_sparse` / :func:`decode_sparse`, :func:`sparse_bytes`: Linear/Conv2d weights as a
  **bitmask** (1 bit per weight) or **CSR** (row pointers + column indices), plus the nonzero
  values in float32 or int8; :func:`save_sparse` / :func:`load_sparse` write and read the file;
* :func:`size_report`: all of these for one model.

The Deep Compression file (shared weights, Huffman codes) is in :mod:`prunekit.encoding`.

Example:
    >>> from prunekit.models import build_model
    >>> from prunekit.pruning import prune_global
    >>> model = build_model("lenet300"); _ = prune_global(model, 0.9)
    >>> sparse_bytes(model, "bitmask") < state_dict_bytes(model) / 4
    True
"""
from __future__ import annotations

import gzip
import io
import math
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .pruning import plain_state_dict, prunable_weights

__all__ = ["state_dict_bytes", "gzip_bytes", "encode_sparse", "decode_sparse", "sparse_bytes", "size_report",
           "save_sparse", "load_sparse"]


def _float32_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on CPU, floats as float32, ``torch.nn.utils.prune`` keys folded."""
    state = plain_state_dict(model.state_dict())
    return {k: (v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu())
            for k, v in state.items()}


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(state_dict)`` with float32 tensors: what a dense checkpoint costs.

    Example:
        >>> from prunekit.models import build_model
        >>> state_dict_bytes(build_model("lenet300")) > 4 * 266_610
        True
    """
    buffer = io.BytesIO()
    torch.save(_float32_state_dict(model), buffer)
    return buffer.getbuffer().nbytes


def gzip_bytes(model: nn.Module, level: int = 9) -> int:
    """Bytes of the :func:`state_dict_bytes` file after gzip: runs of zeros compress, others barely."""
    buffer = io.BytesIO()
    torch.save(_float32_state_dict(model), buffer)
    return len(gzip.compress(buffer.getvalue(), compresslevel=level))


# The sparse file format (all integers little-endian), written out so its size is honest:
#   header  b"PKSP" | version u8 | number of tensors u32
#   tensor  name length u16 | name utf-8 | encoding u8 | dtype u8 | ndim u8 | shape u32 * ndim
#           then the payload of the encoding:
#   dense    raw values (the tensor's own dtype)
#   bitmask  nnz u32 | packbits(W != 0), ceil(n / 8) bytes | values of the nonzeros
#   csr      W as (rows = shape[0], cols = rest) | index bits u8 | nnz u32
#            | row pointers (rows + 1) | column indices (nnz) | values of the nonzeros
#   values   float32: 4 bytes each;  int8: scale f32 then 1 byte each, W ~ scale * q
_MAGIC, _VERSION = b"PKSP", 1
_ENCODINGS = ("dense", "bitmask", "csr")
_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool)
_VALUE_DTYPES = (torch.float32, torch.int8)


def _raw(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes()


def _from_raw(data: bytes, dtype: torch.dtype, count: int) -> torch.Tensor:
    if count == 0:                                  # e.g. a layer pruned away completely
        return torch.zeros(0, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype)[:count].clone()


def _encode_values(values: torch.Tensor, value_dtype: torch.dtype) -> bytes:
    if value_dtype == torch.float32:
        return _raw(values)
    # Linear (symmetric) per-tensor quantisation: q = round(w / scale), scale = max|w| / 127.
    scale = values.abs().max().item() / 127 if values.numel() else 0.0
    scale = struct.unpack("<f", struct.pack("<f", scale))[0]      # exactly the float32 stored
    q = torch.round(values / scale) if scale > 0 else torch.zeros_like(values)
    return struct.pack("<f", scale) + _raw(q.clamp(-127, 127).to(torch.int8))


def _decode_values(stream: io.BytesIO, value_dtype: torch.dtype, count: int) -> torch.Tensor:
    if value_dtype == torch.float32:
        return _from_raw(stream.read(4 * count), torch.float32, count)
    (scale,) = struct.unpack("<f", stream.read(4))
    return _from_raw(stream.read(count), torch.int8, count).float() * scale


def _index_dtype(largest: int, index_bits: int | None) -> tuple[int, np.dtype]:
    bits = index_bits if index_bits is not None else (16 if largest < 2 ** 16 else 32)
    if bits not in (16, 32):
        raise ValueError(f"index_bits must be None (smallest that fits), 16 or 32; got {index_bits!r}")
    if largest >= 2 ** bits:
        raise ValueError(f"index {largest} does not fit in {bits} bits; use index_bits=32 or None")
    return bits, np.dtype("<u2" if bits == 16 else "<u4")


def _encode_tensor(name: str, tensor: torch.Tensor, encoding: str, value_dtype, index_bits) -> bytes:
    name_bytes = name.encode()
    head = struct.pack("<H", len(name_bytes)) + name_bytes + struct.pack(
        "<BBB", _ENCODINGS.index(encoding), _DTYPES.index(tensor.dtype), tensor.dim())
    head += struct.pack(f"<{tensor.dim()}I", *tensor.shape)
    if encoding == "dense":
        return head + _raw(tensor)
    flat = tensor.reshape(-1)
    if encoding == "bitmask":
        keep = (flat != 0).numpy()
        return (head + struct.pack("<I", int(keep.sum())) + np.packbits(keep).tobytes()
                + _encode_values(flat[torch.from_numpy(keep)], value_dtype))
    matrix = tensor.reshape(tensor.shape[0], -1)
    rows, cols = torch.nonzero(matrix, as_tuple=True)              # row-major order
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(rows.numpy(), minlength=matrix.shape[0]))])
    bits, np_dtype = _index_dtype(max(matrix.shape[1] - 1, len(rows)), index_bits)
    return (head + struct.pack("<BI", bits, len(rows)) + row_ptr.astype(np_dtype).tobytes()
            + cols.numpy().astype(np_dtype).tobytes() + _encode_values(matrix[rows, cols], value_dtype))


def encode_sparse(model: nn.Module, format: str = "bitmask", value_dtype: torch.dtype = torch.float32,
                  index_bits: int | None = None) -> bytes:
    """The model's state dict as bytes: Linear/Conv2d weights sparse, everything else dense.

    Args:
        format: ``"bitmask"`` (1 bit per weight + the nonzero values) or ``"csr"`` (row pointers,
            column indices, nonzero values; the weight seen as (shape[0], rest)).
        value_dtype: ``torch.float32`` (exact) or ``torch.int8`` (per-tensor linear quantisation
            of the nonzero values: 1 byte each plus a float32 scale; lossy).
        index_bits: CSR index width, 16 or 32 (default: 16 when every index fits).

    Returns:
        bytes that :func:`decode_sparse` turns back into the state dict.
    """
    if format not in ("bitmask", "csr"):
        raise ValueError(f"format must be 'bitmask' or 'csr', got {format!r}")
    if value_dtype not in _VALUE_DTYPES:
        raise ValueError(f"value_dtype must be torch.float32 or torch.int8, got {value_dtype!r}")
    state = _float32_state_dict(model)
    sparse_names = set(prunable_weights(model))
    parts = [_MAGIC, struct.pack("<BBBI", _VERSION, _ENCODINGS.index(format),
                                 _VALUE_DTYPES.index(value_dtype), len(state))]
    for name, tensor in state.items():
        encoding = format if name in sparse_names and tensor.dim() >= 1 else "dense"
        parts.append(_encode_tensor(name, tensor, encoding, value_dtype, index_bits))
    return b"".join(parts)


def _decode_tensor(stream: io.BytesIO, value_dtype) -> tuple[str, torch.Tensor]:
    (name_len,) = struct.unpack("<H", stream.read(2))
    name = stream.read(name_len).decode()
    encoding, dtype_code, ndim = struct.unpack("<BBB", stream.read(3))
    shape = struct.unpack(f"<{ndim}I", stream.read(4 * ndim))
    dtype, numel = _DTYPES[dtype_code], math.prod(shape)
    if _ENCODINGS[encoding] == "dense":
        return name, _from_raw(stream.read(numel * dtype.itemsize), dtype, numel).view(shape)
    if _ENCODINGS[encoding] == "bitmask":
        (nnz,) = struct.unpack("<I", stream.read(4))
        bits = np.frombuffer(stream.read(math.ceil(numel / 8)), dtype=np.uint8)
        keep = torch.from_numpy(np.unpackbits(bits, count=numel).astype(bool))
        flat = torch.zeros(numel, dtype=torch.float32)
        flat[keep] = _decode_values(stream, value_dtype, nnz)
        return name, flat.view(shape)
    index_bits, nnz = struct.unpack("<BI", stream.read(5))
    np_dtype, width = np.dtype("<u2" if index_bits == 16 else "<u4"), index_bits // 8
    n_rows, n_cols = shape[0], numel // shape[0]
    row_ptr = np.frombuffer(stream.read(width * (n_rows + 1)), dtype=np_dtype).astype(np.int64)
    cols = torch.from_numpy(np.frombuffer(stream.read(width * nnz), dtype=np_dtype).astype(np.int64))
    rows = torch.from_numpy(np.repeat(np.arange(n_rows), np.diff(row_ptr)))
    matrix = torch.zeros(n_rows, n_cols, dtype=torch.float32)
    matrix[rows, cols] = _decode_values(stream, value_dtype, nnz)
    return name, matrix.view(shape)


def decode_sparse(data: bytes) -> dict[str, torch.Tensor]:
    """The state dict stored by :func:`encode_sparse` (float32 weights; exact unless int8)."""
    stream = io.BytesIO(data)
    if stream.read(4) != _MAGIC:
        raise ValueError("not a prunekit sparse file (it must start with b'PKSP'); "
                         "write it with prunekit.measure.save_sparse")
    version, _, value_code, count = struct.unpack("<BBBI", stream.read(7))
    if version != _VERSION:
        raise ValueError(f"sparse file version {version}, this prunekit reads version {_VERSION}")
    return dict(_decode_tensor(stream, _VALUE_DTYPES[value_code]) for _ in range(count))


def sparse_bytes(model: nn.Module, format: str = "bitmask", value_dtype: torch.dtype = torch.float32,
                 index_bits: int | None = None) -> int:
    """Length in bytes of the sparse encoding (see :func:`encode_sparse` for the arguments).

    For a bitmask the weights of a layer with ``n`` entries, ``nnz`` of them nonzero, cost
    ``ceil(n / 8) + 4 * nnz`` bytes (float32) plus a header of a few tens of bytes.

    Example:
        >>> from prunekit.models import build_model
        >>> from prunekit.pruning import prune_global
        >>> model = build_model("lenet300"); _ = prune_global(model, 0.9)
        >>> sparse_bytes(model, "bitmask") < state_dict_bytes(model) / 4
        True
    """
    return len(encode_sparse(model, format, value_dtype, index_bits))


def size_report(model: nn.Module) -> dict[str, int]:
    """Bytes of the model in every format: dense file, gzip, bitmask/CSR with float32 or int8 values.

    Example:
        >>> from prunekit.models import build_model
        >>> list(size_report(build_model("lenet300")))
        ['state_dict', 'gzip', 'bitmask', 'csr', 'bitmask_int8', 'csr_int8']
    """
    return {"state_dict": state_dict_bytes(model), "gzip": gzip_bytes(model),
            "bitmask": sparse_bytes(model, "bitmask"), "csr": sparse_bytes(model, "csr"),
            "bitmask_int8": sparse_bytes(model, "bitmask", torch.int8),
            "csr_int8": sparse_bytes(model, "csr", torch.int8)}


def save_sparse(model: nn.Module, path: str | Path, format: str = "bitmask",
                value_dtype: torch.dtype = torch.float32, index_bits: int | None = None) -> int:
    """Write :func:`encode_sparse` to ``path``; returns the number of bytes written."""
    data = encode_sparse(model, format, value_dtype, index_bits)
    Path(path).write_bytes(data)
    return len(data)


def load_sparse(path: str | Path, model: nn.Module) -> nn.Module:
    """Load a file written by :func:`save_sparse` into ``model`` (same architecture); returns it.

    The zeros come back as zeros; to keep them zero during training, attach masks with
    ``apply_masks(model, masks_from_zeros(model))``.

    Example:
        >>> from prunekit.models import build_model
        >>> save_sparse(model, "lenet300.pksp")                       # doctest: +SKIP
        >>> fresh = load_sparse("lenet300.pksp", build_model("lenet300"))   # doctest: +SKIP
    """
    state = decode_sparse(Path(path).read_bytes())
    model.load_state_dict(state)
    return model
