"""The data format a grading worker (the untrusted submission) answers in: data only, never code.

A message is ``[8-byte length][4-byte header length][JSON header][raw tensor bytes]``. The JSON header
is a tree of tagged nodes (``{"t": "tensor", "dtype": "float32", "shape": [3], "o": 0, "n": 12}``, ...);
reading it builds only tensors, numbers, strings, lists/tuples/dicts, ``TensorDataset`` and
``torch.nn.Module`` objects of allow-listed classes (``torch.nn`` layers and ``prunekit.models``), whose
attributes are plain data. Nothing in a message can name a function to call or a class outside that list,
so decoding a message cannot run the sender's code (unlike ``pickle``).

This file is also copied into the worker's sandbox and imported there as a plain module, so it imports
nothing from prunekit.

Example:
    >>> import torch
    >>> blob = encode({"mask": torch.tensor([True, False]), "k": 1})
    >>> decode(blob)["mask"].tolist()
    [True, False]
"""
from __future__ import annotations

import importlib
import json
import math
import numbers
import struct
from typing import Any

import torch

MAX_HEADER = 16 * 2**20        # bytes of JSON per message
MAX_BLOB = 512 * 2**20         # bytes of tensor data per message
MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_STR = 1_000_000

DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}
MODULE_PREFIXES = ("torch.nn.modules.", "prunekit.models", "prunekit.chargpt")  # chargpt: Lab 7's transformer
# nn.Module bookkeeping rebuilt by nn.Module.__init__, never sent.
_MODULE_INTERNALS = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training"}


class WireError(ValueError):
    """A message that is not valid data (too big, unknown tag, forbidden class...)."""


# ============================================================================ encoding (worker side)
class _Encoder:
    def __init__(self, refs: dict[int, list] | None, annotate: bool):
        self.chunks: list[bytes] = []
        self.size = 0
        self.nodes = 0
        self.refs = refs or {}
        self.annotate = annotate  # True: mark objects that existed before the call ("was"), do not replace

    def blob(self, data: bytes) -> tuple[int, int]:
        offset = self.size
        self.chunks.append(data)
        self.size += len(data)
        if self.size > MAX_BLOB:
            raise WireError(f"more than {MAX_BLOB // 2**20} MiB of tensor data")
        return offset, len(data)

    def node(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH:
            raise WireError("the value is too large or too deeply nested to send")
        ref = self.refs.get(id(value)) if isinstance(value, (torch.Tensor, torch.nn.Module)) else None
        if ref is not None and not self.annotate:
            return {"t": "ref", "path": ref}
        node = self._node(value, depth)
        if ref is not None:
            node["was"] = ref
        return node

    def _node(self, value: Any, depth: int) -> dict:
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            return {"t": "bool", "v": bool(value)}
        if isinstance(value, numbers.Integral):  # int, and numpy's integer scalars
            return {"t": "int", "v": str(int(value))}
        if isinstance(value, numbers.Real):  # float, numpy's float scalars
            return {"t": "float", "v": repr(float(value))}
        if isinstance(value, str):
            if len(value) > MAX_STR:
                raise WireError("a string longer than 1,000,000 characters")
            return {"t": "str", "v": value}
        if isinstance(value, torch.Size):
            return {"t": "size", "v": [int(v) for v in value]}
        if isinstance(value, torch.dtype):
            return {"t": "dtype", "v": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"t": "device", "v": str(value)}
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, torch.nn.Module):
            return self._module(value, depth)
        if isinstance(value, torch.utils.data.TensorDataset):
            return {"t": "dataset", "v": [self.node(t, depth + 1) for t in value.tensors]}
        if isinstance(value, (list, tuple)):
            return {"t": "list" if isinstance(value, list) else "tuple", "v": [self.node(v, depth + 1) for v in value]}
        if isinstance(value, dict):
            keys = list(value)
            return {"t": "dict", "k": [self.node(k, depth + 1) for k in keys],
                    "v": [self.node(value[k], depth + 1) for k in keys]}
        if type(value).__module__ == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape"):
            return self._tensor(torch.from_numpy(value.copy()), numpy=True)
        raise WireError(f"a {type(value).__module__}.{type(value).__qualname__} object is not data the grader "
                        "accepts (tensors, numbers, str, lists/tuples/dicts, nn.Module)")

    def _tensor(self, t: torch.Tensor, numpy: bool = False) -> dict:
        if t.is_sparse or t.layout != torch.strided or t.is_quantized:
            raise WireError(f"a {t.layout} tensor cannot be sent; return a dense tensor (`.to_dense()`)")
        name = str(t.dtype).removeprefix("torch.")
        if name not in DTYPES:
            raise WireError(f"tensors of dtype {t.dtype} cannot be sent")
        data = t.detach().cpu().contiguous().reshape(-1)
        raw = data.view(torch.uint8).numpy().tobytes() if data.numel() else b""
        offset, length = self.blob(raw)
        node = {"t": "ndarray" if numpy else "tensor", "dtype": name, "shape": list(t.shape), "o": offset, "n": length}
        if isinstance(t, torch.nn.Parameter):
            node["param"] = True
        if t.requires_grad:
            node["rg"] = True
        return node

    def _module(self, m: torch.nn.Module, depth: int) -> dict:
        cls = type(m)
        attrs = {}
        for key, value in vars(m).items():
            if key in _MODULE_INTERNALS or key.startswith("__") or key.endswith("_hooks") or "hook" in key:
                continue
            try:
                attrs[key] = self.node(value, depth + 1)
            except WireError:
                continue  # a non-data attribute (a function, a lock...): the class's own code rebuilds it or not
        return {"t": "module", "cls": f"{cls.__module__}:{cls.__qualname__}", "training": bool(m.training),
                "attrs": attrs,
                "params": {k: self.node(v, depth + 1) for k, v in m._parameters.items()},
                "buffers": {k: self.node(v, depth + 1) for k, v in m._buffers.items()},
                "children": {k: self.node(v, depth + 1) for k, v in m._modules.items()}}


def encode(value: Any, refs: dict[int, list] | None = None, annotate: bool = False) -> bytes:
    """One message holding ``value``: the frame's 8-byte length is NOT included (see :func:`frame`).

    ``refs`` maps ``id(obj)`` of the call's argument objects to their path: such objects are sent as
    ``{"t": "ref"}`` (the grader then uses its own object), or, with ``annotate``, in full with ``"was"``.
    """
    enc = _Encoder(refs, annotate)
    header = json.dumps(enc.node(value), separators=(",", ":")).encode()
    if len(header) > MAX_HEADER:
        raise WireError("the value's description is larger than 16 MiB")
    return struct.pack("<I", len(header)) + header + b"".join(enc.chunks)


def encode_message(fields: dict[str, Any], refs: dict[int, list] | None = None,
                   annotated: tuple[str, ...] = ()) -> bytes:
    """One message whose header is ``{field: node}``; fields named in ``annotated`` are sent in full with
    ``"was"`` marks, the others replace argument objects by ``ref`` nodes."""
    enc = _Encoder(refs, annotate=False)
    header = {}
    for key, value in fields.items():
        enc.annotate = key in annotated
        header[key] = enc.node(value)
    text = json.dumps(header, separators=(",", ":")).encode()
    if len(text) > MAX_HEADER:
        raise WireError("the value's description is larger than 16 MiB")
    return struct.pack("<I", len(text)) + text + b"".join(enc.chunks)


def frame(payload: bytes) -> bytes:
    """``payload`` with its 8-byte little-endian length in front."""
    return struct.pack("<Q", len(payload)) + payload


# ============================================================================ decoding (grader side)
def _allowed_class(path: Any) -> type:
    if not isinstance(path, str) or path.count(":") != 1:
        raise WireError(f"bad module class {path!r:.80}")
    module_name, qualname = path.split(":")
    if not (module_name.startswith(MODULE_PREFIXES[0]) or module_name in MODULE_PREFIXES[1:]):
        raise WireError(f"module class {path!r:.80} is not a torch.nn layer or a prunekit.models / "
                        f"prunekit.chargpt class")
    if not all(part.isidentifier() and not part.startswith("__")
               for part in (module_name.split(".") + qualname.split("."))):
        raise WireError(f"bad module class {path!r:.80}")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise WireError(f"{path!r:.80} is not an nn.Module class")
    return obj


class _Decoder:
    def __init__(self, blob: memoryview, resolve):
        self.blob = blob
        self.resolve = resolve
        self.nodes = 0

    def value(self, node: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES or depth > MAX_DEPTH or not isinstance(node, dict):
            raise WireError("malformed or oversized message")
        kind = node.get("t")
        if kind == "none":
            return None
        if kind == "bool":
            return bool(node["v"])
        if kind == "int":
            text = node["v"]
            if not isinstance(text, str) or len(text) > 400:
                raise WireError("bad integer")
            return int(text)
        if kind == "float":
            text = node["v"]
            if not isinstance(text, str) or len(text) > 40:
                raise WireError("bad float")
            return float(text)
        if kind == "str":
            if not isinstance(node["v"], str):
                raise WireError("bad string")
            return node["v"]
        if kind == "size":
            return torch.Size([int(v) for v in node["v"]])
        if kind == "dtype":
            if node["v"] not in DTYPES:
                raise WireError("unknown dtype")
            return DTYPES[node["v"]]
        if kind == "device":
            return torch.device("cpu")  # the grader judges on the CPU
        if kind in ("tensor", "ndarray"):
            t = self.tensor(node)
            return t.numpy() if kind == "ndarray" else t
        if kind == "list":
            return [self.value(v, depth + 1) for v in node["v"]]
        if kind == "tuple":
            return tuple(self.value(v, depth + 1) for v in node["v"])
        if kind == "dict":
            keys, values = node["k"], node["v"]
            if not (isinstance(keys, list) and isinstance(values, list) and len(keys) == len(values)):
                raise WireError("bad dict")
            out = {}
            for k, v in zip(keys, values):
                key = self.value(k, depth + 1)
                if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                    raise WireError("bad dict key")
                out[key] = self.value(v, depth + 1)
            return out
        if kind == "dataset":
            return torch.utils.data.TensorDataset(*[self.tensor(v) for v in node["v"]])
        if kind == "module":
            return self.module(node, depth)
        if kind == "ref":
            if self.resolve is None:
                raise WireError("unexpected reference")
            return self.resolve(node["path"])
        raise WireError(f"unknown tag {kind!r:.40}")

    def tensor(self, node: dict) -> torch.Tensor:
        dtype = DTYPES.get(node.get("dtype"))
        shape, offset, length = node.get("shape"), node.get("o"), node.get("n")
        if dtype is None or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise WireError("bad tensor description")
        count = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not (isinstance(offset, int) and isinstance(length, int) and 0 <= offset and length == count * itemsize
                and offset + length <= len(self.blob)):
            raise WireError("tensor bytes do not match its shape")
        if count == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            raw = bytearray(self.blob[offset:offset + length])
            t = torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)
        if node.get("param"):
            return torch.nn.Parameter(t, requires_grad=bool(node.get("rg")) and t.is_floating_point())
        if node.get("rg") and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        return t

    def module(self, node: dict, depth: int) -> torch.nn.Module:
        cls = _allowed_class(node.get("cls"))
        module = cls.__new__(cls)
        torch.nn.Module.__init__(module)
        for key, child in dict(node.get("attrs", {})).items():
            if not (isinstance(key, str) and key.isidentifier() and not key.startswith("__")
                    and key not in _MODULE_INTERNALS and "hook" not in key):
                raise WireError(f"bad module attribute {key!r:.40}")
            module.__dict__[key] = self.value(child, depth + 1)
        for store, kind in (("params", "_parameters"), ("buffers", "_buffers"), ("children", "_modules")):
            for key, child in dict(node.get(store, {})).items():
                if not isinstance(key, str) or not key or "." in key:
                    raise WireError(f"bad {store} name {key!r:.40}")
                value = self.value(child, depth + 1)
                if store == "params" and value is not None:
                    value = value if isinstance(value, torch.nn.Parameter) else torch.nn.Parameter(value)
                if store == "children" and value is not None and not isinstance(value, torch.nn.Module):
                    raise WireError("a child module that is not a module")
                if store == "buffers" and value is not None and not isinstance(value, torch.Tensor):
                    raise WireError("a buffer that is not a tensor")
                getattr(module, kind)[key] = value
        module.training = bool(node.get("training", True))
        return module


def split(payload: bytes) -> tuple[Any, memoryview]:
    """The JSON header (parsed) and the tensor bytes of one message."""
    if len(payload) < 4:
        raise WireError("truncated message")
    (length,) = struct.unpack("<I", payload[:4])
    if length > MAX_HEADER or 4 + length > len(payload):
        raise WireError("bad header length")
    try:
        header = json.loads(payload[4:4 + length])
    except (ValueError, RecursionError) as exc:
        raise WireError(f"the header is not JSON: {exc}") from None
    return header, memoryview(payload)[4 + length:]


def decode(payload: bytes, resolve=None) -> Any:
    """The value of one message; ``resolve(path)`` returns the grader's object for a ``ref`` node."""
    header, blob = split(payload)
    return _Decoder(blob, resolve).value(header)


def decode_node(node: Any, blob: memoryview, resolve=None) -> Any:
    """The value of one node of a message already split with :func:`split`."""
    return _Decoder(blob, resolve).value(node)
