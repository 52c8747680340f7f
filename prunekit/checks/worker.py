"""The grading worker: runs ONE submission's code inside its sandbox and answers calls with data only.

The grader starts ``python worker.py`` (this file and ``wire.py`` are copied into the sandbox, so the
worker never imports the real ``prunekit.checks``: no checks, no references, no hidden tests). Requests
arrive on stdin as length-prefixed pickles written by the grader (the trusted side); answers leave on
stdout as :mod:`wire` messages (data only). The submission's own prints go to a log file, never into the
answers.

Requests (dicts, key ``op``):

* ``exec``:  ``cells`` = ``[(label, source, report), ...]``: run them in one namespace; answers the errors
  of the chunks marked ``report``.
* ``call``:  ``name``, ``args``, ``kwargs``: call the learner's function; answers ``result`` (argument objects
  returned as references), the arguments' state after the call (``args``/``kwargs``, for in-place
  exercises), or the exception's type, message and the learner's line.
* ``grad``:  ``call``, ``index``, ``grad``: gradients of an earlier call's differentiable output with respect to
  its leaf inputs (so a check can run ``loss.backward()`` on the learner's loss, in the grader);
* ``bind``:  ``name``, ``ref``: from now on ``name`` is the course's reference (evaluated by the grader: a
  call becomes a ``ref`` request back to it), as ``use_or_reference`` does in a notebook.

Nothing here decides a grade: the grader judges the returned data itself.
"""
from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback
import types

import torch  # noqa: F401 - imported before the submission runs, like every lab's first cell

import wire

_IN = _OUT = None  # the protocol's file descriptors, duplicated before the submission can print


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive() -> dict:
    (length,) = struct.unpack("<Q", _read_exact(_IN, 8))
    return pickle.loads(_read_exact(_IN, length))


def _send(payload: bytes) -> None:
    data = wire.frame(payload)
    view = memoryview(data)
    while view:
        view = view[os.write(_OUT, view):]


def _answer(**fields) -> None:
    _send(wire.encode_message(fields))


# ----------------------------------------------------------------------------- the stand-in prunekit.checks
class _Deferred:
    """What ``check_*`` returns inside the worker: the real verdict is the grader's, never computed here."""

    line = "checked by the grader"
    status = "deferred"

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "CheckResult(deferred to the grader)"


class _Reference:
    """``reference_x`` inside the worker: the grader evaluates it on the arguments and sends back the result."""

    def __init__(self, name: str):
        self.name = self.__name__ = name

    def __call__(self, *args, **kwargs):
        _send(wire.encode_message({"op": "ref", "name": self.name, "args": list(args), "kwargs": kwargs}))
        reply = _receive()
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        for mine, theirs in zip(list(args) + list(kwargs.values()),
                                list(reply["args"]) + list(reply["kwargs"].values())):
            _sync(mine, theirs)
        return reply["result"]

    def __repr__(self) -> str:
        return f"<prunekit reference {self.name}>"


def _sync(mine, theirs) -> None:
    """Copy the state an in-place reference left in the grader's copy of an argument into ours."""
    with torch.no_grad():
        if isinstance(mine, torch.Tensor) and isinstance(theirs, torch.Tensor) and mine.shape == theirs.shape:
            mine.copy_(theirs)
        elif isinstance(mine, torch.nn.Module) and isinstance(theirs, torch.nn.Module):
            mine.load_state_dict(theirs.state_dict(), strict=False)


def _stub_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name, "stand-in for prunekit.checks inside a grading worker")

    def __getattr__(attr: str):
        if attr.startswith("check_"):
            return lambda fn, strict=None: _Deferred()
        if attr.startswith("reference_"):
            return _Reference(attr)
        if attr == "use_or_reference":
            return lambda fn, result, reference, name=None, quiet=False: fn
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Deferred()

    module.__getattr__ = __getattr__
    module.__path__ = []  # a package, so `prunekit.checks.lab1` resolves to a stand-in too
    return module


class _StubFinder:
    """Serves ``prunekit.checks`` and its submodules from stand-ins, so the real ones are never loaded."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname == "prunekit.checks" or fullname.startswith("prunekit.checks."):
            import importlib.machinery

            return importlib.machinery.ModuleSpec(fullname, _StubFinder, is_package=True)
        return None

    @staticmethod
    def create_module(spec):
        return _stub_module(spec.name)

    @staticmethod
    def exec_module(module):
        return None


# ----------------------------------------------------------------------------- requests
def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell")]
    if not frames:
        return ""
    last = frames[-1]
    return f"in {last.name}, line {last.lineno}" + (f": `{last.line.strip()}`" if last.line else "")


def _error_fields(exc: BaseException) -> dict:
    text = str(exc).strip()
    first = text.splitlines()[0][:500] if text else ""
    return {"status": "error", "type": type(exc).__name__, "message": first, "where": _where(exc)}


def _exec(namespace: dict, cells: list) -> None:
    import linecache

    errors = []
    for label, source, report in cells:
        filename = f"<cell {label}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - running the submission is the point
        except BaseException as exc:  # noqa: BLE001 - report, and run the next cell like "Run all" with errors
            if report:
                errors.append(f"cell {label}: {type(exc).__name__}: {str(exc).strip()[:200]}")
    _answer(status="ok", errors=errors)


def _leaves(value, path: list, out: dict) -> None:
    """``{path (tuple): tensor}`` of the leaf tensors that require grad among one argument's tensors."""
    found: dict = {}
    _paths(value, path, found)
    objects = {}
    _objects(value, objects)
    for key, p in found.items():
        t = objects.get(key)
        if isinstance(t, torch.Tensor) and t.requires_grad and t.is_leaf:
            out.setdefault(tuple(p), t)


def _objects(value, out: dict) -> None:
    if isinstance(value, torch.Tensor):
        out[id(value)] = value
    elif isinstance(value, torch.nn.Module):
        for t in list(value._parameters.values()) + list(value._buffers.values()):
            _objects(t, out)
        for m in value._modules.values():
            _objects(m, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _objects(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _objects(v, out)
    elif isinstance(value, torch.utils.data.TensorDataset):
        for t in value.tensors:
            _objects(t, out)


def _paths(value, path: list, out: dict) -> None:
    """``{id(obj): path}`` of every tensor and module reachable from one argument."""
    if isinstance(value, (torch.Tensor, torch.nn.Module)):
        out.setdefault(id(value), path)
    if isinstance(value, torch.nn.Module):
        for key, t in value._parameters.items():
            _paths(t, path + [f"p:{key}"], out)
        for key, t in value._buffers.items():
            _paths(t, path + [f"b:{key}"], out)
        for key, m in value._modules.items():
            _paths(m, path + [f"m:{key}"], out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _paths(v, path + [i], out)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, (str, int)):
                _paths(v, path + [k], out)
    elif isinstance(value, torch.utils.data.TensorDataset):
        for i, t in enumerate(value.tensors):
            _paths(t, path + [i], out)


_GRAPHS: dict = {}  # call id -> (differentiable outputs, leaf inputs): answers later "grad" requests


def _differentiable(result) -> list:
    """``[(key, tensor)]`` of the result's tensors that carry an autograd graph (key None: the result itself)."""
    def ok(v):
        return isinstance(v, torch.Tensor) and v.requires_grad and v.grad_fn is not None
    if ok(result):
        return [(None, result)]
    if isinstance(result, (list, tuple)):
        return [(i, v) for i, v in enumerate(result) if ok(v)]
    if isinstance(result, dict):
        return [(k, v) for k, v in result.items() if isinstance(k, (str, int)) and ok(v)]
    return []


def _gradient(call: int, index: int, grad) -> None:
    outputs, inputs = _GRAPHS.get(call, ([], []))
    if index >= len(outputs):
        _answer(status="error", type="RuntimeError", message="no such graph", where="")
        return
    try:
        grads = torch.autograd.grad([outputs[index]], inputs, [grad], allow_unused=True, retain_graph=True)
    except BaseException as exc:  # noqa: BLE001
        _answer(**_error_fields(exc))
        return
    _answer(status="ok", grads=list(grads))


def _call(namespace: dict, name: str, args: tuple, kwargs: dict, call: int = 0) -> None:
    fn = namespace.get(name)
    if not callable(fn):
        _answer(status="missing", type=type(fn).__name__ if name in namespace else "")
        return
    refs: dict = {}
    for i, arg in enumerate(args):
        _paths(arg, ["a", i], refs)
    for key, arg in kwargs.items():
        _paths(arg, ["k", key], refs)
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit included: the learner's function ended badly
        _answer(**_error_fields(exc))
        return
    fields = {"status": "ok", "result": result, "args": list(args), "kwargs": kwargs}
    outputs = _differentiable(result)
    leaves = {}
    for i, arg in enumerate(args):
        _leaves(arg, ["a", i], leaves)
    for key, arg in kwargs.items():
        _leaves(arg, ["k", key], leaves)
    if outputs and leaves:  # the grader may differentiate the result with respect to its own inputs
        _GRAPHS[call] = ([t for _, t in outputs], list(leaves.values()))
        for old in sorted(_GRAPHS)[:-8]:
            del _GRAPHS[old]
        fields["grad_outputs"] = [k for k, _ in outputs]
        fields["grad_inputs"] = [list(p) for p in leaves]
    try:
        payload = wire.encode_message(fields, refs, annotated=("args", "kwargs"))
    except (wire.WireError, RecursionError) as exc:
        _answer(status="error", type="TypeError", message=f"your function returned something the grader cannot "
                f"receive: {exc}", where="")
        return
    _send(payload)


def main() -> None:
    global _IN, _OUT
    _IN, _OUT = os.dup(0), os.dup(1)
    log = sys.argv[1] if len(sys.argv) > 1 else os.devnull
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.meta_path.insert(0, _StubFinder)
    for name in [n for n in sys.modules if n == "prunekit.checks" or n.startswith("prunekit.checks.")]:
        del sys.modules[name]
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    while True:
        try:
            request = _receive()
        except EOFError:
            return
        op = request.get("op")
        if op == "exec":
            _exec(namespace, request["cells"])
        elif op == "call":
            _call(namespace, request["name"], request["args"], request["kwargs"], request.get("call", 0))
        elif op == "grad":
            _gradient(request["call"], request["index"], request["grad"])
        elif op == "bind":
            namespace[request["name"]] = _Reference(request["ref"])
            _answer(status="ok")
        elif op == "quit":
            return


if __name__ == "__main__":
    main()
