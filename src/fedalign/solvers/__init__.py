"""Solvers for the alignment problem, behind one contract (see :mod:`fedalign.solvers.base`).

Importing this package registers every solver; the registry's order is the order of
preference. A new solver is one module plus one name in the import list below.
"""

from __future__ import annotations

from .base import (
    Budget,
    Result,
    RowSupport,
    Solution,
    Solver,
    WarmStart,
    available_solvers,
    get_solver,
    register,
    registered_solvers,
    solve,
    solvers_for,
)

# Registration happens on import; this list's order is the registry's order of preference.
# isort: off
from . import random_, topk, greedy, flow, lp, lagrangian, cpsat, highs, milp, auto  # noqa: F401
# isort: on

__all__ = [
    "Budget",
    "Result",
    "RowSupport",
    "Solution",
    "Solver",
    "WarmStart",
    "available_solvers",
    "get_solver",
    "register",
    "registered_solvers",
    "solve",
    "solvers_for",
]
