"""Exceptions raised by fedalign.

Every error about a problem, a solve, a scheduler's feedback or its saved state is an
:class:`AlignmentError`, so a caller can catch the whole family with one ``except``. Those
caused by bad input are also ``ValueError`` (scikit-learn's convention), so generic
validation code keeps working. Plain mistakes in a call's own arguments (an unknown solver
name, a negative time limit, an unknown solver option) are ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

__all__ = [
    "AlignmentError",
    "HerdingWarning",
    "InfeasibleError",
    "InvalidFeedbackError",
    "InvalidProblemError",
    "InvalidStateError",
    "SolverUnavailableError",
    "StateConflictError",
    "UnsupportedProblemError",
]


class AlignmentError(Exception):
    """Base class of every error fedalign raises on purpose."""


class InvalidProblemError(AlignmentError, ValueError):
    """An :class:`~fedalign.AlignmentProblem` argument is malformed.

    The message names the argument and the first offending position.
    """


class InfeasibleError(AlignmentError):
    """No feasible assignment exists (proven), or none was found within the time limit.

    The message says which constraint blocks, where the solver can tell.
    """


class SolverUnavailableError(AlignmentError, ImportError):
    """The requested solver needs an optional dependency that is not installed."""


class UnsupportedProblemError(AlignmentError):
    """The chosen solver cannot handle this problem's constraints.

    The message names the solvers that can.
    """


class InvalidFeedbackError(AlignmentError, ValueError):
    """Feedback reported to a :class:`~fedalign.Scheduler` is invalid; no state was changed."""


class HerdingWarning(UserWarning):
    """A plan put most of the cohort on a few experts (see ``Scheduler(balance_weight=...)``)."""


class InvalidStateError(AlignmentError, ValueError):
    """A saved scheduler state is corrupt, truncated, or from an unknown format version."""


class StateConflictError(AlignmentError, OSError):
    """:meth:`~fedalign.Scheduler.save` refused to replace what is at the path.

    The file there is not the one this scheduler loaded or last saved (another writer's
    state, or a file that is not a state at all), it is a directory or a FIFO, or another
    process is replacing it at this moment. Nothing was written; the message says which.
    Also an ``OSError``, like the other ways a save can fail.
    """
