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
from .profiles import CapacityProfiler, ClientProfile, ProfileBounds
from .scheduler import Feedback, Plan, Scheduler
from .scores import FitnessTracker, UsageTracker
from .solvers import Solution, available_solvers, solve

__version__ = "0.1.0"

__all__ = [
    "AlignmentError",
    "AlignmentProblem",
    "CapacityProfiler",
    "ClientProfile",
    "Feedback",
    "FitnessTracker",
    "InfeasibleError",
    "InvalidFeedbackError",
    "InvalidProblemError",
    "InvalidStateError",
    "Plan",
    "ProfileBounds",
    "Scheduler",
    "Solution",
    "SolverUnavailableError",
    "UnsupportedProblemError",
    "UsageTracker",
    "Violation",
    "__version__",
    "available_solvers",
    "check",
    "solve",
]
