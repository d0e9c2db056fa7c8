"""Solvers for the alignment problem, behind one contract (see :mod:`fedalign.solvers.base`).

Importing this package registers every solver; the registry's order is the order of
preference. A new solver is one module plus one import line here.
"""

from __future__ import annotations

# Registration happens on import; the order below is the registry's order.
# TEMPORARY during the initial build-out: modules are imported as they land.
import importlib as _importlib

from .base import (
    Budget,
    Result,
    Solution,
    Solver,
    available_solvers,
    get_solver,
    register,
    registered_solvers,
    solve,
)

for _mod in ("random_", "topk", "greedy", "flow", "lp", "lagrangian", "cpsat", "milp", "auto"):
    try:
        _importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__name__}.{_mod}":
            raise

__all__ = [
    "Budget",
    "Result",
    "Solution",
    "Solver",
    "available_solvers",
    "get_solver",
    "register",
    "registered_solvers",
    "solve",
]
