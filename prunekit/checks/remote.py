"""The grader's side of a worker: send inputs, receive data, judge here.

:class:`WorkerSession` owns one sandboxed worker (:mod:`.sandbox`, :mod:`.worker`). A
:class:`RemoteFunction` stands for a learner's function inside it: calling it ships the arguments
(pickle, grader -> worker), and returns what the worker sent back, decoded by :mod:`.wire` (data only).
Argument objects the function changed in place are updated here, so a check's judge sees exactly what it
would see in a notebook (``model.weight is p`` included). The checks of :mod:`prunekit.checks` run
unchanged on a RemoteFunction: cases and judges stay in the grader.

Example (needs a worker, so not run as a doctest)::

    session = WorkerSession(); session.start([("1", "def double(x):\\n    return 2 * x\\n", True)])
    RemoteFunction(session, "double")(21)      # -> 42
    session.close()
"""
from __future__ import annotations

import builtins
import os
import pickle
import select
import struct
import time
from typing import Any, Callable

import torch

from . import wire
from .sandbox import Limits, Sandbox

MAX_FRAME = wire.MAX_HEADER + wire.MAX_BLOB + 4
# Exceptions a learner's function may be expected to raise: re-raised here as the same builtin type.
_BUILTIN_ERRORS = {name: getattr(builtins, name) for name in (
    "ValueError", "TypeError", "IndexError", "KeyError", "RuntimeError", "AssertionError", "NotImplementedError",
    "ZeroDivisionError", "AttributeError", "NameError", "ArithmeticError", "OverflowError", "LookupError",
    "UnboundLocalError", "RecursionError", "MemoryError")}


class WorkerFailure(RuntimeError):
    """The worker timed out, died, or sent something that is not a valid answer (it is then killed)."""


class WorkerSession:
    """One sandboxed worker process for one submission.

    Args:
        hide: folders the worker must not see (under bwrap).
        use_bwrap: None = when installed.
        reference_lookup: ``name -> function`` for the references the worker may ask the grader to run.
    """

    def __init__(self, hide=(), use_bwrap: bool | None = None, limits: Limits | None = None,
                 reference_lookup: Callable[[str], Callable | None] | None = None):
        self.sandbox = Sandbox(hide=list(hide), use_bwrap=use_bwrap, limits=limits or Limits())
        self.reference_lookup = reference_lookup or (lambda name: None)
        self.deadline = float("inf")
        self.references_called: list[str] = []   # references the worker asked for since the last reset
        self.allowed_references: set[str] = set()  # the ones it may have: fallbacks bound by the grader
        self.failure = ""
        self.calls = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, cells: list[tuple[str, str, bool]], timeout: float = 180) -> list[str]:
        """Start the worker (unless :meth:`launch` did) and run ``cells`` (label, source, report errors);
        returns their errors."""
        if not self.alive:
            self.launch()
        self.deadline = time.monotonic() + timeout
        reply = self._request({"op": "exec", "cells": cells})
        return [str(e) for e in reply.get("errors", [])][:20]

    def launch(self) -> None:
        """Start the sandboxed worker process; it imports torch and then waits for the submission's code."""
        self.failure = ""
        try:
            self.sandbox.start()
        except OSError as exc:
            self.sandbox.kill()
            self.failure = f"the worker could not start: {exc}"
            raise WorkerFailure(self.failure) from None

    @property
    def alive(self) -> bool:
        return self.sandbox.proc is not None and self.sandbox.proc.poll() is None

    @property
    def use_bwrap(self) -> bool:
        return bool(self.sandbox.use_bwrap)

    def close(self) -> None:
        """Stop the worker: it may exit on its own for a second, then its process group is killed."""
        self.sandbox.kill(grace=1.0 if self.alive else 0.0)

    # ------------------------------------------------------------------ requests
    def bind(self, name: str, reference: str) -> None:
        """From now on ``name`` in the worker is the course's ``reference`` (run by the grader)."""
        self.allowed_references.add(reference)
        self._request({"op": "bind", "name": name, "ref": reference})

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        """Call the worker's ``name(*args, **kwargs)``; returns the decoded result, updates the arguments."""
        if not self.alive:
            raise WorkerFailure(self.failure or "the worker is not running")
        self.calls += 1
        call = self.calls
        header, blob = self._request({"op": "call", "name": name, "args": args, "kwargs": kwargs, "call": call},
                                     raw=True)
        status = _field(header, "status", blob)
        if status == "missing":
            kind = wire.decode_node(header.get("type", {"t": "str", "v": ""}), blob)
            raise NameError(f"`{name}` is not defined in your notebook" if not kind
                            else f"`{name}` is a {kind}, not a function")
        if status == "error":
            raise _remote_error(header, blob)
        if status != "ok":
            raise self._fail(f"the worker sent an answer of unknown kind {status!r:.40}")
        try:
            after_args = wire.decode_node(header["args"], blob)
            after_kwargs = wire.decode_node(header["kwargs"], blob)
            if len(after_args) != len(args) or set(after_kwargs) != set(kwargs):
                raise wire.WireError("the arguments sent back do not match the call")
            for i, (mine, theirs, node) in enumerate(zip(args, after_args, header["args"]["v"])):
                _sync(mine, theirs, node, ["a", i])
            for key in kwargs:
                _sync(kwargs[key], after_kwargs[key], _dict_node(header["kwargs"], key), ["k", key])
            result = wire.decode_node(header["result"], blob, resolve=lambda path: _resolve(path, args, kwargs))
            if "grad_outputs" in header:
                keys = wire.decode_node(header["grad_outputs"], blob)
                leaves = [_resolve(list(p), args, kwargs) for p in wire.decode_node(header["grad_inputs"], blob)]
                result = self._differentiable(result, keys, leaves, call)
            return result
        except (wire.WireError, KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise TypeError(f"your function's answer could not be read as data: {exc}") from None

    def _differentiable(self, result: Any, keys: list, leaves: list, call: int) -> Any:
        """Reconnect the learner's result to the grader's inputs: backward() asks the worker for gradients."""
        if not all(isinstance(t, torch.Tensor) and t.requires_grad for t in leaves):
            raise wire.WireError("bad gradient inputs")

        def wrap(index, value):
            if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
                raise wire.WireError("a differentiable output that is not a float tensor")
            return _RemoteGrad.apply(self, call, index, value.detach(), *leaves)

        if keys == [None]:
            return wrap(0, result)
        items = list(result) if isinstance(result, (list, tuple)) else None
        for index, key in enumerate(keys):
            if items is not None:
                items[key] = wrap(index, items[key])
            else:
                result[key] = wrap(index, result[key])
        return type(result)(items) if isinstance(result, tuple) else (items if items is not None else result)

    def gradient(self, call: int, index: int, grad: torch.Tensor) -> list:
        """Gradients of output ``index`` of call ``call`` with respect to its leaf inputs, computed by the worker."""
        reply = self._request({"op": "grad", "call": call, "index": index, "grad": grad.detach()})
        if reply.get("status") != "ok":
            raise RuntimeError(f"computing the gradient of your function's result failed: "
                               f"{reply.get('type')}: {reply.get('message')}")
        return list(reply["grads"])

    def _request(self, message: dict, raw: bool = False):
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._write(struct.pack("<Q", len(payload)) + payload)
        while True:
            header, blob = wire.split(self._read_frame())
            if not isinstance(header, dict):
                raise self._fail("the worker sent a malformed answer")
            if _field(header, "op", blob) == "ref":
                self._serve_reference(header, blob)
                continue
            if raw:
                return header, blob
            return {k: wire.decode_node(v, blob) for k, v in header.items()}

    def _serve_reference(self, header: dict, blob) -> None:
        """The worker's ``reference_x(...)``: run the course's function here, send the result back."""
        try:
            name = wire.decode_node(header["name"], blob)
            args = wire.decode_node(header["args"], blob)
            kwargs = wire.decode_node(header["kwargs"], blob)
            function = self.reference_lookup(name) if isinstance(name, str) else None
            if function is None:
                raise KeyError(f"no reference named {name!r:.60}")
            self.references_called.append(name)
            if name not in self.allowed_references:  # only fallbacks the grader bound: no free answers,
                raise PermissionError(f"{name} is not available while grading")  # no grader time to spend
            result = function(*args, **kwargs)
            reply = {"result": result, "args": args, "kwargs": kwargs}
        except Exception as exc:  # noqa: BLE001 - the worker reports it as its own error
            reply = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        self._write(struct.pack("<Q", len(payload)) + payload)

    # ------------------------------------------------------------------ bytes, with a deadline
    def _write(self, data: bytes) -> None:
        proc = self.sandbox.proc
        if proc is None:
            raise WorkerFailure(self.failure or "the worker is not running")
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            self._wait(fd, write=True)
            try:
                view = view[os.write(fd, view[:1 << 16]):]
            except (BrokenPipeError, OSError):
                raise self._fail("the worker stopped (it exited or was killed)") from None

    def _read_exact(self, n: int) -> bytes:
        fd = self.sandbox.proc.stdout.fileno()
        chunks, left = [], n
        while left:
            self._wait(fd, write=False)
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                code = self.sandbox.proc.poll()
                raise self._fail(f"the worker stopped (exit status {code})" if code is not None
                                 else "the worker closed its answers")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self) -> bytes:
        (length,) = struct.unpack("<Q", self._read_exact(8))
        if length > MAX_FRAME:
            raise self._fail(f"the worker sent {length:,} bytes, more than the {MAX_FRAME:,} allowed")
        return self._read_exact(length)

    def _wait(self, fd: int, write: bool) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self._fail("timed out (the worker was killed)")
        ready = select.select([], [fd], [], left) if write else select.select([fd], [], [], left)
        if not (ready[1] if write else ready[0]):
            raise self._fail("timed out (the worker was killed)")

    def _fail(self, reason: str) -> WorkerFailure:
        self.failure = reason
        self.sandbox.kill()
        return WorkerFailure(reason)


class _RemoteGrad(torch.autograd.Function):
    """The learner's differentiable result, in the grader: its backward pass runs in the worker."""

    @staticmethod
    def forward(ctx, session, call, index, value, *leaves):
        ctx.info = (session, call, index, [(t.shape, t.dtype) for t in leaves])
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        session, call, index, shapes = ctx.info
        grads = session.gradient(call, index, grad)
        if len(grads) != len(shapes):
            raise RuntimeError("the worker sent the wrong number of gradients")
        out = []
        for g, (shape, dtype) in zip(grads, shapes):
            if g is not None and (not isinstance(g, torch.Tensor) or g.shape != shape):
                raise RuntimeError("the worker sent a gradient of the wrong shape")
            out.append(None if g is None else g.to(dtype))
        return (None, None, None, None, *out)


class RemoteFunction:
    """A learner's function living in a worker; call it like the function itself."""

    def __init__(self, session: WorkerSession, name: str):
        self.session, self.__name__ = session, name

    def __call__(self, *args, **kwargs):
        return self.session.call(self.__name__, args, kwargs)

    def __repr__(self) -> str:
        return f"<your function {self.__name__}>"


def _remote_error(header: dict, blob) -> BaseException:
    fields = {k: wire.decode_node(header.get(k, {"t": "str", "v": ""}), blob) for k in ("type", "message", "where")}
    kind, message, where = (str(fields[k])[:500] for k in ("type", "message", "where"))
    error = _BUILTIN_ERRORS.get(kind, RuntimeError)(message)
    error.remote_type, error.remote_where = kind, where  # read by core._describe
    return error


def _field(header: dict, key: str, blob) -> Any:
    node = header.get(key)
    try:
        return wire.decode_node(node, blob) if node is not None else None
    except wire.WireError:
        return None


def _dict_node(node: dict, key) -> dict:
    for k, v in zip(node["k"], node["v"]):
        if wire.decode_node(k, memoryview(b"")) == key:
            return v
    raise KeyError(key)


def _resolve(path: list, args: tuple, kwargs: dict) -> Any:
    """The grader's object at ``path`` (``["a", 0, "m:fc1", "p:weight"]``) among the call's arguments."""
    if not isinstance(path, list) or len(path) < 2 or path[0] not in ("a", "k"):
        raise wire.WireError("bad reference")
    obj: Any = args[path[1]] if path[0] == "a" else kwargs[path[1]]
    for step in path[2:]:
        if isinstance(step, str) and step[:2] in ("p:", "b:", "m:") and isinstance(obj, torch.nn.Module):
            store = {"p:": obj._parameters, "b:": obj._buffers, "m:": obj._modules}[step[:2]]
            obj = store[step[2:]]
        elif isinstance(obj, torch.utils.data.TensorDataset):
            obj = obj.tensors[step]
        else:
            obj = obj[step]
    return obj


def _sync(mine: Any, theirs: Any, node: dict, path: list) -> None:
    """Make the grader's argument ``mine`` look like the worker's after the call (``theirs``, ``node``)."""
    with torch.no_grad():
        if isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor):
            if mine.shape == theirs.shape and mine.dtype == theirs.dtype:
                if not torch.equal(mine, theirs):
                    mine.copy_(theirs)
            else:
                mine.data = theirs.detach()
        elif isinstance(mine, torch.nn.Module) and isinstance(theirs, torch.nn.Module):
            _sync_module(mine, theirs, node, path)
        elif isinstance(mine, list) and isinstance(theirs, list):
            for i, item in enumerate(theirs):
                child = node["v"][i]
                if i < len(mine) and child.get("was") == path + [i]:
                    _sync(mine[i], item, child, path + [i])
                elif i < len(mine):
                    mine[i] = item
                else:
                    mine.append(item)
            del mine[len(theirs):]
        elif isinstance(mine, tuple) and isinstance(theirs, tuple) and len(mine) == len(theirs):
            for i, (a, b) in enumerate(zip(mine, theirs)):
                _sync(a, b, node["v"][i], path + [i])
        elif isinstance(mine, dict) and isinstance(theirs, dict):
            for (key, item), child in zip(theirs.items(), node["v"]):
                if key in mine and child.get("was") == path + [key]:
                    _sync(mine[key], item, child, path + [key])
                else:
                    mine[key] = item
            for key in [k for k in mine if k not in theirs]:
                del mine[key]
        elif isinstance(mine, torch.utils.data.TensorDataset) and isinstance(theirs, torch.utils.data.TensorDataset):
            for i, (a, b) in enumerate(zip(mine.tensors, theirs.tensors)):
                _sync(a, b, node["v"][i], path + [i])


def _sync_module(mine: torch.nn.Module, theirs: torch.nn.Module, node: dict, path: list) -> None:
    sent = set(node.get("attrs", {}))
    for key in sent:  # plain-data attributes (in_features, a pruned `weight` tensor...)
        mine.__dict__[key] = theirs.__dict__[key]
    for key in [k for k, v in vars(mine).items() if k not in sent and k not in wire._MODULE_INTERNALS
                and "hook" not in k and not k.startswith("__")
                and isinstance(v, (torch.Tensor, int, float, str, tuple, type(None)))]:
        del mine.__dict__[key]  # gone in the worker (e.g. torch.nn.utils.prune.remove)
    mine.training = theirs.training
    for store, prefix, nodes in ((mine._parameters, "p:", node["params"]), (mine._buffers, "b:", node["buffers"])):
        other = theirs._parameters if prefix == "p:" else theirs._buffers
        for key, value in other.items():
            child = nodes[key]
            if value is not None and store.get(key) is not None and child.get("was") == path + [prefix + key]:
                _sync(store[key], value, child, path + [prefix + key])   # same object: update in place
            else:
                store[key] = value                                        # replaced (or new) in the worker
        for key in [k for k in store if k not in other]:
            del store[key]
    for key, value in theirs._modules.items():
        child = node["children"][key]
        current = mine._modules.get(key)
        if value is not None and current is not None and type(current) is type(value) \
                and child.get("was") == path + ["m:" + key]:
            _sync_module(current, value, child, path + ["m:" + key])
        else:
            mine._modules[key] = value
    for key in [k for k in mine._modules if k not in theirs._modules]:
        del mine._modules[key]
