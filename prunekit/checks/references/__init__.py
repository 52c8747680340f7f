"""The course's answers to the labs' exercises, one module per lab (``lab1`` ... ``lab7``).

Each ``reference_foo`` is what ``check_foo`` compares a learner's ``foo`` with, and what
:func:`~prunekit.checks.core.use_or_reference` runs while ``foo`` is unfinished, so that the rest of a
notebook still works. They are kept apart from the checks (``prunekit.checks.labN``: cases and judges) so
that each can be read on its own; ``prunekit.checks`` re-exports them all.

A submission may not call them: :mod:`prunekit.checks.provenance` scores such an exercise 0.
"""
