"""fedalign: which experts each client trains, every round of federated Mixture-of-Experts training.

The public API is what this module exports; shared/API.md is its contract.
"""

from __future__ import annotations

from .errors import (
    AlignmentError,
    InfeasibleError,
    InvalidFeedbackError,
    InvalidProblemError,
    InvalidStateError,
    SolverUnavailableError,
    UnsupportedProblemError,
)
from .problem import AlignmentProblem, Violation, check
from .solvers import Solution, available_solvers, solve

__version__ = "0.1.0"

__all__ = [
    "AlignmentError",
    "AlignmentProblem",
    "InfeasibleError",
    "InvalidFeedbackError",
    "InvalidProblemError",
    "InvalidStateError",
    "Solution",
    "SolverUnavailableError",
    "UnsupportedProblemError",
    "Violation",
    "__version__",
    "available_solvers",
    "check",
    "solve",
]
