"""Automatic checks for the labs' exercises, and the reference implementations they fall back to.

Every exercise function ``foo`` of a lab has ``check_foo(fn)``: it prints one line (``✔``, ``✘ ... — hint``
or ``… not implemented yet``) and returns a truthy :class:`CheckResult` only when ``fn`` is right. A check
never crashes a notebook; with ``$PRUNEKIT_STRICT=1`` a failing check raises AssertionError instead.

The classroom machinery lives here too, apart from the library a learner reads (no module of
``prunekit`` outside this package imports it):

* ``core``: :func:`run_check`, :class:`Case`, :func:`expect`: how a check is written;
* ``lab1`` ... ``labN``: each lab's checks (cases + judges); ``references``: their ``reference_*`` answers;
* ``chapters``: the checks of the chapters' exercises (a stub reports, strict mode raises only for a wrong
  answer; the answers are in ``instructor/chapter_exercises/``);
* ``grading``: grade a notebook out of the learner's kernel, from ``submission`` (the notebook handed in)
  and ``solution_lab`` (what ``solutions/`` says); ``classroom``: a whole class
  (``python -m prunekit.grade`` is its command);
* ``remote``, ``worker``, ``wire``, ``sandbox``: the grader's side of a submission's worker, the worker,
  the data-only format it answers in, and the per-submission sandbox;
* ``provenance``: which names an exercise may not use; ``benchmark``: grading throughput.

A lab's check module may declare two tables (module-level dict literals, optional):

* ``MUST_NOT_CALL = {"magnitude_mask": ["prunekit.masks.topk_mask"]}``: library functions an exercise may
  not call, on top of the automatic ``reference_<name>``, ``prunekit.checks`` and any library function
  named like the exercise (see :mod:`.provenance`);
* ``CONTRACT = {"conv_macs": {"dilation > 1 shrinks the output": ["dilation 2"]}}``: each statement of an
  exercise's contract and the (parts of the) labels of the cases that test it; tests/test_checks_contract.py
  fails when a listed case does not exist.

Checks call the learner's function only through arguments and return values that are data (tensors,
numbers, str, lists/tuples/dicts, TensorDataset, nn.Module of torch.nn / prunekit.models layers): in
grading the function runs in another process and only data comes back.

Example:
    >>> from prunekit.checks import check_magnitude_mask, reference_magnitude_mask, use_or_reference
    >>> ok = check_magnitude_mask(reference_magnitude_mask, strict=False)   # doctest: +ELLIPSIS
    ✔ magnitude_mask: correct on ... cases (...)
"""
from .core import (CheckFailed, CheckResult, Case, call, expect, run_check, strict_mode,  # noqa: F401
                   use_or_reference)
from .lab1 import *  # noqa: F401,F403
from .lab2 import *  # noqa: F401,F403
from .lab3 import *  # noqa: F401,F403
from .lab4 import *  # noqa: F401,F403
from .lab5 import *  # noqa: F401,F403
from .lab6 import *  # noqa: F401,F403
from .lab7 import *  # noqa: F401,F403
from .chapters import *  # noqa: F401,F403
from . import chapters as _chapters
from . import lab1 as _lab1, lab2 as _lab2, lab3 as _lab3, lab4 as _lab4, lab5 as _lab5, lab6 as _lab6, lab7 as _lab7

__all__ = ["CheckFailed", "CheckResult", "Case", "call", "expect", "run_check", "strict_mode",
           "use_or_reference", *_lab1.__all__, *_lab2.__all__, *_lab3.__all__,
           *_lab4.__all__, *_lab5.__all__, *_lab6.__all__, *_lab7.__all__, *_chapters.__all__]
