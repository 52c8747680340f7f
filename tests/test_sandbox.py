"""The grading worker's boundary: data-only wire format, remote calls, in-place arguments, the sandbox."""
import json
import os
import struct
import time

import pytest
import torch
from torch import nn

from prunekit.checks import wire
from prunekit.checks.provenance import must_not_call, violations
from prunekit.checks.remote import RemoteFunction, WorkerFailure, WorkerSession
from prunekit.checks.sandbox import bwrap_path, missing_protections
from prunekit.models import build_model

BWRAP = [False] + ([True] if bwrap_path() else [])


def test_wire_round_trip_keeps_types_values_and_modules():
    model = build_model("lenet5").eval()
    value = {"mask": torch.tensor([True, False]), "n": 3, "x": 0.25, "nan": float("nan"), "s": "hi",
             "t": (1, [2.0, None]), "bf": torch.randn(3, dtype=torch.bfloat16), "empty": torch.zeros(0, 4),
             "model": model, "p": nn.Parameter(torch.ones(2))}
    out = wire.decode(wire.encode(value))
    assert torch.equal(out["mask"], value["mask"]) and out["mask"].dtype == torch.bool
    assert (out["n"], out["x"], out["s"], out["t"]) == (3, 0.25, "hi", (1, [2.0, None]))
    assert out["nan"] != out["nan"] and out["bf"].dtype == torch.bfloat16 and out["empty"].shape == (0, 4)
    assert isinstance(out["p"], nn.Parameter) and type(out["model"]) is type(model)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(out["model"](x), model(x))


def _message(node, blob=b""):
    header = json.dumps(node).encode()
    return struct.pack("<I", len(header)) + header + blob


@pytest.mark.parametrize("node,match", [
    ({"t": "module", "cls": "os:system", "attrs": {}}, "not a torch.nn layer"),
    ({"t": "module", "cls": "torch.nn.modules.linear:Linear.__init__.__globals__"}, "bad module class"),
    ({"t": "module", "cls": "torch.nn.modules.linear:Linear", "attrs": {"__class__": {"t": "none"}}}, "attribute"),
    ({"t": "tensor", "dtype": "float32", "shape": [4], "o": 0, "n": 8}, "do not match"),
    ({"t": "tensor", "dtype": "object", "shape": [1], "o": 0, "n": 8}, "bad tensor"),
    ({"t": "pickle", "v": "gASV"}, "unknown tag"),
    ({"t": "ref", "path": ["a", 0]}, "unexpected reference"),
])
def test_wire_refuses_what_is_not_data(node, match):
    with pytest.raises(wire.WireError, match=match):
        wire.decode(_message(node))


def test_wire_refuses_objects_on_the_sending_side():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    with pytest.raises(wire.WireError, match="not data"):
        wire.encode([Evil()])


@pytest.fixture(params=BWRAP, ids=lambda b: "bwrap" if b else "plain")
def session(request):
    s = WorkerSession(use_bwrap=request.param, reference_lookup=lambda name: abs if name == "reference_f" else None)
    errors = s.start([("1", "import os, signal, torch\n"
                            "from prunekit.checks import reference_f\n"
                            "def f(x):\n    return reference_f(x) + 1\n"
                            "def inplace(m, t):\n    m.weight.data.zero_()\n    m.extra = nn_value\n"
                            "    t.mul_(2)\n    m.bias = torch.nn.Parameter(torch.ones(3))\n    return m, t\n"
                            "nn_value = 7\n"
                            "def hang():\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                            "    while True:\n        pass\n"
                            "def env():\n    return dict(os.environ)\n"
                            "def boom():\n    raise ValueError('bad input')\n", True)])
    assert errors == []
    yield s
    s.close()


def test_remote_calls_return_data_and_update_arguments_in_place(session):
    with pytest.raises(RuntimeError, match="not available while grading"):
        RemoteFunction(session, "f")(-3)  # a reference the grader did not bind as a fallback
    session.bind("g", "reference_f")
    assert RemoteFunction(session, "f")(-3) == 4 and session.references_called == ["reference_f"] * 2
    layer, t = nn.Linear(2, 3), torch.ones(2)
    weight, bias = layer.weight, layer.bias
    m, same_t = RemoteFunction(session, "inplace")(layer, t)
    assert m is layer and same_t is t and torch.equal(t, torch.full((2,), 2.0))
    assert layer.weight is weight and torch.equal(weight, torch.zeros(3, 2)) and layer.extra == 7
    assert layer.bias is not bias and torch.equal(layer.bias, torch.ones(3))  # replaced in the worker: replaced here
    with pytest.raises(ValueError, match="bad input"):
        RemoteFunction(session, "boom")()
    with pytest.raises(NameError, match="not defined"):
        RemoteFunction(session, "nowhere")()


def test_worker_environment_is_scrubbed(session, monkeypatch):
    env = RemoteFunction(session, "env")()
    assert "PRUNEKIT_DATA" not in env and env["OMP_NUM_THREADS"] == "1" and env["PRUNEKIT_FAST"] == "1"


def test_a_sigint_proof_hang_is_killed_at_the_deadline(session):
    session.deadline = time.monotonic() + 3
    started = time.monotonic()
    with pytest.raises(WorkerFailure, match="timed out"):
        RemoteFunction(session, "hang")()
    assert time.monotonic() - started < 15 and not session.alive


def test_missing_protections_are_reported_without_bwrap():
    assert missing_protections(use_bwrap=True) == [] or os.geteuid() == 0
    assert any("network" in m for m in missing_protections(use_bwrap=False))


def test_provenance_catches_references_checks_and_declared_library_functions():
    forbidden = must_not_call("magnitude_mask") + ["prunekit.masks.topk_mask"]
    own = "import torch\ndef magnitude_mask(w, s):\n    return w.abs() > w.abs().median()\n"
    assert violations([own], "magnitude_mask", forbidden) == []
    cases = {
        "from prunekit.checks import reference_magnitude_mask\n"
        "def magnitude_mask(w, s):\n    return reference_magnitude_mask(w, s)\n": "reference_magnitude_mask",
        "import prunekit.checks as c\ndef helper(w, s):\n    return c.lab1.reference_magnitude_mask(w, s)\n"
        "def magnitude_mask(w, s):\n    return helper(w, s)\n": "prunekit.checks",
        "from prunekit import masks\nmm = masks.topk_mask\ndef magnitude_mask(w, s):\n    return mm(w.abs(), s)\n":
            "prunekit.masks.topk_mask",
        "def magnitude_mask(w, s):\n    return getattr(__import__('prunekit'), 'reference_x')(w)\n": "reference_x",
        # the answers' own modules, under any alias
        "from prunekit.checks.references import lab1 as notes\n"
        "def magnitude_mask(w, s):\n    return notes.reference_magnitude_mask(w, s)\n": "reference_magnitude_mask",
        "from prunekit.checks.references.lab1 import reference_magnitude_mask as mine\n"
        "def magnitude_mask(w, s):\n    return mine(w, s)\n": "reference_magnitude_mask",
    }
    for source, expected in cases.items():
        found = violations([source], "magnitude_mask", forbidden)
        assert any(expected in reason for reason in found), (source, found)
