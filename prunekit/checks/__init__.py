"""Automatic checks for the labs' exercises, and the reference implementations they fall back to.

Every exercise function ``foo`` of a lab has ``check_foo(fn)``: it prints one line (``✔``, ``✘ ... — hint``
or ``… not implemented yet``) and returns a truthy :class:`CheckResult` only when ``fn`` is right. A check
never crashes a notebook; with ``$PRUNEKIT_STRICT=1`` a failing check raises AssertionError instead.

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
from . import lab1 as _lab1, lab2 as _lab2, lab3 as _lab3, lab4 as _lab4, lab5 as _lab5, lab6 as _lab6, lab7 as _lab7

__all__ = ["CheckFailed", "CheckResult", "Case", "call", "expect", "run_check", "strict_mode",
           "use_or_reference", *_lab1.__all__, *_lab2.__all__, *_lab3.__all__,
           *_lab4.__all__, *_lab5.__all__, *_lab6.__all__, *_lab7.__all__]
