"""fedalign: which experts each client trains, every round of federated Mixture-of-Experts training.

The public API is what this module exports; docs/index.md lists it and docs/architecture.md
says how the pieces fit.
"""

from __future__ import annotations

from .errors import (
    AlignmentError,
    HerdingWarning,
    InfeasibleError,
    InvalidFeedbackError,
    InvalidProblemError,
    InvalidStateError,
    SolverUnavailableError,
    StateConflictError,
    UnsupportedProblemError,
)
from .problem import AlignmentProblem, Violation, check
from .profiles import CapacityProfiler, ClientProfile, ProfileBounds
from .rows import Row
from .scheduler import Feedback, Plan, Scheduler
from .scores import FitnessTracker, UsageTracker
from .solvers import Solution, available_solvers, solve, solvers_for

__version__ = "0.1.0"

__all__ = [
    "AlignmentError",
    "AlignmentProblem",
    "CapacityProfiler",
    "ClientProfile",
    "Feedback",
    "FitnessTracker",
    "HerdingWarning",
    "InfeasibleError",
    "InvalidFeedbackError",
    "InvalidProblemError",
    "InvalidStateError",
    "Plan",
    "ProfileBounds",
    "Row",
    "Scheduler",
    "Solution",
    "SolverUnavailableError",
    "StateConflictError",
    "UnsupportedProblemError",
    "UsageTracker",
    "Violation",
    "__version__",
    "available_solvers",
    "check",
    "solve",
    "solvers_for",
]
