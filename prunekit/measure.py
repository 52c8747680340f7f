"""Honest measurement of a pruned model: parameters, multiply-accumulates, bytes on disk, latency.

A pruned weight is still stored as a zero in a dense tensor, so pruning by itself saves nothing.
What it *could* save has to be measured explicitly, and each number below says what it counts:

* **parameters / nonzeros**: entries of the parameters, and how many of them are not zero;
* **MACs** (multiply-accumulates) of one forward pass on one example: ``"dense"`` counts every
  weight, ``"effective"`` only the nonzero ones -- what a perfect sparse kernel would execute;
* **bytes**: the length of a file that really holds the model: the plain ``torch.save`` of the
  state dict, its gzip, and two sparse encodings (a bitmask or CSR plus the nonzero values) that
  :func:`load_sparse` decodes back to the exact weights;
* **latency**: median seconds per batch with ``torch.utils.benchmark`` on a fixed number of CPU
  threads. Absolute times depend on the machine and its load; compare models with
  :func:`compare_latency` / :func:`latency_ratio`, which time them alternately in one call.

Example:
    >>> from prunekit.models import build_model
    >>> from prunekit.pruning import prune_layerwise
    >>> model = build_model("lenet300")
    >>> _ = prune_layerwise(model, 0.9)
    >>> macs = count_macs(model, (1, 28, 28))
    >>> macs["dense"], macs["effective"]
    (266200, 26620)
"""
from __future__ import annotations

import gzip
import io
import math
import struct
import time
import timeit
from pathlib import Path
from statistics import median
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .pruning import PRUNABLE_TYPES, plain_state_dict, prunable_weights


# ----------------------------------------------------------------------------- counting
def count_parameters(model: nn.Module) -> int:
    """Number of parameter entries (weights, biases, BN affine), each shared parameter once.

    Example:
        >>> count_parameters(nn.Linear(784, 300))
        235500
    """
    return sum(p.numel() for p in model.parameters())


def count_nonzeros(model: nn.Module) -> int:
    """Number of parameter entries that are not exactly zero (all parameters, not only weights).

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> _ = nn.init.zeros_(layer.weight)
        >>> count_nonzeros(layer)    # the two biases
        2
    """
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


def sparsity_table(model: nn.Module) -> list[dict]:
    """One row per Linear/Conv2d weight plus a ``"total"`` row over those weights.

    Biases and BatchNorm are not rows and not in the total (they are not pruned), so the total
    sparsity equals :func:`prunekit.pruning.model_sparsity`.

    Returns:
        ``[{"name": "fc1.weight", "shape": (300, 784), "params": 235200, "nonzeros": ...,
        "sparsity": ...}, ..., {"name": "total", "shape": "", ...}]``

    Example:
        >>> rows = sparsity_table(build_model("lenet300"))
        >>> [r["name"] for r in rows]
        ['fc1.weight', 'fc2.weight', 'fc3.weight', 'total']
    """
    rows = []
    for name, weight in prunable_weights(model).items():
        nonzeros = int(torch.count_nonzero(weight.detach()))
        rows.append({"name": name, "shape": tuple(weight.shape), "params": weight.numel(),
                     "nonzeros": nonzeros, "sparsity": 1.0 - nonzeros / weight.numel()})
    if not rows:
        raise ValueError("the model has no Linear or Conv2d layer to report on")
    params = sum(r["params"] for r in rows)
    nonzeros = sum(r["nonzeros"] for r in rows)
    rows.append({"name": "total", "shape": "", "params": params, "nonzeros": nonzeros,
                 "sparsity": 1.0 - nonzeros / params})
    return rows


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:{floatfmt}}"
    if isinstance(value, (tuple, list, torch.Size)):
        return "x".join(str(v) for v in value)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
    """Rows of dicts as a plain-text table: numbers right-aligned, text left-aligned.

    Args:
        rows: e.g. from :func:`sparsity_table`; a missing key prints as an empty cell.
        columns: which keys, in which order (default: the keys of the first row).
        floatfmt: format of floats; ints get thousands separators, shapes print as ``300x784``.

    Example:
        >>> print(format_table([{"name": "fc1", "params": 235200, "sparsity": 0.9}]))
        name   params  sparsity
        fc1   235,200     0.900
    """
    if not rows:
        raise ValueError("format_table needs at least one row")
    columns = list(columns) if columns is not None else list(rows[0])
    cells = [[_cell(row.get(c), floatfmt) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values):
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns)] + [line(values) for values in cells])


# ----------------------------------------------------------------------------- MACs
def _layer_macs(module: nn.Module, output: torch.Tensor) -> tuple[int, int]:
    """(dense, effective) MACs of one call of a Linear/Conv2d for ONE example."""
    weight = module.weight.detach()
    nonzeros = int(torch.count_nonzero(weight))
    if isinstance(module, nn.Linear):
        # output (1, *, out): the weight is applied once per position of the * dimensions
        positions = output.numel() // module.out_features
    else:
        positions = output.shape[-2] * output.shape[-1]          # out_h * out_w
    return positions * weight.numel(), positions * nonzeros


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """Multiply-accumulates of one forward pass on ONE example, dense and effective.

    Convention (the usual one for pruning papers): only Linear and Conv2d are counted;
    BatchNorm, activations, pooling and bias additions are ignored.

    * Linear:  ``in * out`` per position (``dense``), ``nonzeros(W)`` per position (``effective``)
    * Conv2d:  ``out_h * out_w * (c_in / groups) * kh * kw * c_out`` (``dense``), and
      ``out_h * out_w * nonzeros(W)`` (``effective``: each nonzero weight is used once per
      output position, including positions where it meets zero padding).

    Args:
        input_shape: one example without the batch dimension, e.g. ``(3, 32, 32)``.

    Returns:
        ``{"dense": int, "effective": int, "per_layer": {"conv1": {"dense": .., "effective": ..}}}``
        (keys of ``per_layer`` are module names; a module called twice is summed).

    Example:
        >>> count_macs(build_model("lenet5"), (1, 28, 28))["dense"]
        2293000
    """
    if not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dimension, e.g. "
                         f"(3, 32, 32); got {tuple(input_shape)!r}")
    per_layer: dict[str, dict[str, int]] = {}

    def hook(name):
        def record(module, inputs, output):
            dense, effective = _layer_macs(module, output)
            entry = per_layer.setdefault(name, {"dense": 0, "effective": 0})
            entry["dense"] += dense
            entry["effective"] += effective
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, PRUNABLE_TYPES)]
    first = next(model.parameters(), None)
    device, dtype = (first.device, first.dtype) if first is not None else ("cpu", torch.float32)
    was_training = model.training
    try:
        model.eval()  # batch statistics of one example would corrupt BatchNorm's running averages
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {"dense": sum(v["dense"] for v in per_layer.values()),
            "effective": sum(v["effective"] for v in per_layer.values()),
            "per_layer": per_layer}


# ----------------------------------------------------------------------------- bytes
def _float32_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict on CPU, floats as float32, ``torch.nn.utils.prune`` keys folded."""
    state = plain_state_dict(model.state_dict())
    return {k: (v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu())
            for k, v in state.items()}


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(state_dict)`` with float32 tensors: what a dense checkpoint costs.

    Example:
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
        >>> from prunekit.pruning import prune_global
        >>> model = build_model("lenet300"); _ = prune_global(model, 0.9)
        >>> sparse_bytes(model, "bitmask") < state_dict_bytes(model) / 4
        True
    """
    return len(encode_sparse(model, format, value_dtype, index_bits))


def size_report(model: nn.Module) -> dict[str, int]:
    """Bytes of the model in every format: dense file, gzip, bitmask/CSR with float32 or int8 values.

    Example:
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
        >>> save_sparse(model, "lenet300.pksp")                       # doctest: +SKIP
        >>> fresh = load_sparse("lenet300.pksp", build_model("lenet300"))   # doctest: +SKIP
    """
    state = decode_sparse(Path(path).read_bytes())
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------- latency
# "wall": seconds a user waits, inflated when other programs share the cores. "cpu": CPU seconds
# of this process, which other programs do not inflate; with threads=1 it is the cost of one
# forward pass on one core, but it misses time spent waiting (it is not what a user waits).
CLOCKS = {"wall": timeit.default_timer, "cpu": time.process_time}


def _timer(model: nn.Module, x: torch.Tensor, threads: int, clock: str):
    from torch.utils.benchmark import Timer

    def forward():
        with torch.no_grad():
            return model(x)

    return Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads, timer=CLOCKS[clock])


def _check_latency_args(input_shape, batch_sizes, threads, clock: str = "wall") -> None:
    if not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dimension, "
                         f"got {input_shape!r}")
    if not batch_sizes or not all(isinstance(b, int) and b > 0 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")


def _dummy_input(model: nn.Module, input_shape, batch: int) -> torch.Tensor:
    # Match the model's device and dtype; a model without parameters (nn.ReLU) gets CPU float32.
    first = next(iter(model.parameters()), next(iter(model.buffers()), torch.empty(0)))
    return torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0)).to(first)


def measure_latency(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 64),
                    threads: int = 1, warmup: int = 3, min_run_time: float = 0.2,
                    clock: str = "wall") -> dict[int, float]:
    """Median seconds per forward pass of a batch, for each batch size (eval mode, no autograd).

    Uses ``torch.utils.benchmark.Timer(...).blocked_autorange``: repeated blocks of runs until
    ``min_run_time`` seconds have passed, with ``threads`` intra-op threads during the timing.
    Absolute numbers depend on the machine and its load: compare models with :func:`latency_ratio`.
    ``clock="wall"`` measures what a user waits; ``clock="cpu"`` counts CPU seconds of this
    process instead, which programs running beside it do not inflate (best with ``threads=1``).

    Returns:
        ``{batch_size: median seconds per batch}``

    Example:
        >>> t = measure_latency(build_model("lenet300"), (1, 28, 28), batch_sizes=(1,))
        >>> t[1] > 0
        True
    """
    _check_latency_args(input_shape, batch_sizes, threads, clock)
    was_training = model.training
    model.eval()
    try:
        result = {}
        for batch in batch_sizes:
            timer = _timer(model, _dummy_input(model, input_shape, batch), threads, clock)
            timer.timeit(warmup)
            result[batch] = timer.blocked_autorange(min_run_time=min_run_time).median
        return result
    finally:
        model.train(was_training)


def compare_latency(models: Mapping[str, nn.Module], input_shape: Sequence[int],
                    batch_sizes: Sequence[int] = (1, 64), threads: int = 1, rounds: int = 5,
                    warmup: int = 3, min_run_time: float = 0.05,
                    clock: str = "wall") -> dict[int, dict[str, float]]:
    """Median seconds per batch of several models timed **alternately**, for a fair comparison.

    Each of ``rounds`` rounds times every model once (``blocked_autorange`` for ``min_run_time``
    seconds); a model's result is the median over the rounds. If the machine slows down during
    the call (another job starts), every model is affected, not just the one being timed.
    ``clock`` is ``"wall"`` or ``"cpu"``, as in :func:`measure_latency`.

    Args:
        models: ``{"dense": model, "pruned": smaller_model, ...}``, same input shape.

    Returns:
        ``{batch_size: {label: median seconds per batch}}``

    Example:
        >>> t = compare_latency({"a": build_model("lenet300"), "b": build_model("lenet300")},
        ...                     (1, 28, 28), batch_sizes=(1,), rounds=2)
        >>> sorted(t[1])
        ['a', 'b']
    """
    _check_latency_args(input_shape, batch_sizes, threads, clock)
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    if not models:
        raise ValueError("models is empty: give {label: model}")
    states = {label: m.training for label, m in models.items()}
    try:
        for m in models.values():
            m.eval()
        result = {}
        for batch in batch_sizes:
            timers = {label: _timer(m, _dummy_input(m, input_shape, batch), threads, clock)
                      for label, m in models.items()}
            for timer in timers.values():
                timer.timeit(warmup)
            times = {label: [] for label in models}
            for _ in range(rounds):
                for label, timer in timers.items():
                    times[label].append(timer.blocked_autorange(min_run_time=min_run_time).median)
            result[batch] = {label: median(t) for label, t in times.items()}
        return result
    finally:
        for label, m in models.items():
            m.train(states[label])


def latency_ratio(model_a: nn.Module, model_b: nn.Module, input_shape: Sequence[int],
                  batch_sizes: Sequence[int] = (1, 64), threads: int = 1, rounds: int = 5,
                  warmup: int = 3, min_run_time: float = 0.05, clock: str = "wall") -> dict[int, float]:
    """``time(model_a) / time(model_b)`` per batch size, the two timed alternately.

    A ratio of 2.0 means B is twice as fast as A (A dense, B pruned: a 2x speed-up). Ratios
    travel between machines much better than milliseconds do. See :func:`compare_latency`.

    Example:
        >>> r = latency_ratio(build_model("vgg"), build_model("vgg"), (3, 32, 32), batch_sizes=(1,))
        >>> 0.5 < r[1] < 2.0      # the same network: about 1
        True
    """
    times = compare_latency({"a": model_a, "b": model_b}, input_shape, batch_sizes, threads, rounds,
                            warmup, min_run_time, clock)
    return {batch: t["a"] / t["b"] for batch, t in times.items()}
