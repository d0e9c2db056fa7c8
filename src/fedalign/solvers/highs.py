"""``highs``: the standard form solved by HiGHS through ``highspy``, from a MIP start.

The model is :func:`~fedalign.solvers.standard.standard_form`, handed to HiGHS as arrays in
one call (:mod:`._highs`: no Python loop over pairs, unlike a modelling layer), so it builds
in milliseconds where ``milp``'s PuLP model takes seconds. Before HiGHS runs it gets a
*MIP start*, a feasible assignment it keeps as its first incumbent:

* a warm start's assignment (``fa.solve(..., warm_start=previous)``), repaired into a
  feasible plan for this problem;
* otherwise, with ``start="auto"`` (the default), the ``lagrangian`` solver's plan on
  GAP-like problems (a client may take more than ``FEW_EXPERTS`` experts, as in the
  OR-Library's generalised assignment problems), within a quarter of the time limit;
  its dual bound is kept too. HiGHS then spends the rest of the limit improving the plan
  and proving the bound, instead of first searching for any plan at all.

The bound is the smaller of HiGHS' MIP dual bound and the start's Lagrangian bound; the
status is ``optimal`` only when HiGHS proves it. The time limit holds: HiGHS' set-up can
outlast its own limit on large models, so under a limit those run in a child process that
is stopped at the limit, and the start (if any) is returned.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validation import Constraint, Interval, Options
from ..errors import AlignmentError, TimeLimitError
from ..problem import AlignmentProblem
from . import _highs
from .base import Budget, Result, Solver, gap_like, get_solver, register
from .standard import ALL_ROWS, checked_form
from .warm import WarmStart

__all__ = ["HighsSolver"]

#: Share of the time limit the start heuristic may use.
START_SHARE = 0.25


def heuristic_plan(
    problem: AlignmentProblem, solver: str, budget: Budget, seed: int
) -> _highs.Start | None:
    """``solver``'s plan (and bound) within a share of the budget, or None if it finds none."""
    limit = None if budget.time_limit is None else max(0.05, START_SHARE * budget.remaining())
    try:
        sol = get_solver(solver).solve(problem, time_limit=limit, seed=seed)
    except (AlignmentError, ValueError):
        return None
    return _highs.Start(np.asarray(sol.assignment, dtype=bool), sol.bound, solver)


@register
class HighsSolver(Solver):
    """The standard form solved by HiGHS (highspy) from a MIP start; exact.

    Options
    -------
    threads : int, optional
        HiGHS threads (its default when None).
    start : {"auto", "lagrangian", "greedy", "none"}, default "auto"
        Where the MIP start comes from when no warm start is given: ``"auto"`` runs the
        ``lagrangian`` solver on GAP-like problems (:func:`gap_like`) and nothing
        otherwise; ``"lagrangian"`` / ``"greedy"`` always run that solver first (within a
        quarter of the time limit); ``"none"`` starts HiGHS from nothing.
    """

    name = "highs"
    builds_standard_form = True
    exact = True
    requires = ("highspy",)
    extra = None
    supports = ALL_ROWS
    warm_start = "a MIP start: the earlier assignment, repaired into a feasible plan"
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = {
        "threads": [Interval(int, 1, None), None],
        "start": [Options(("auto", "lagrangian", "greedy", "none"))],
    }

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        threads: int | None = None,
        start: str = "auto",
        warm: WarmStart | None = None,
    ) -> Result:
        sf = checked_form(problem, budget)
        if sf.n_pairs == 0:  # nothing fits: the empty assignment is the only one
            return Result(np.zeros(problem.shape, dtype=bool), optimal=True)
        scaled, obj_scale = sf.normalised()  # units near 1 for HiGHS; exact powers of two
        budget.check("building the model")
        plan = self._start(problem, budget, rng, start, warm)
        options: dict[str, Any] = {"mip_rel_gap": 0.0}
        if threads is not None:
            options["threads"] = int(threads)
        limit = None if budget.time_limit is None else budget.remaining()
        if limit is not None and limit <= 0.0:
            if plan is None:
                raise TimeLimitError(budget.message("finding a start for HiGHS"))
            res = None
        else:
            values = None if plan is None else sf.columns(plan.x)  # unscaled: the columns' meaning
            res = _highs.solve(_highs.standard_model(scaled), options, start=values, time_limit=limit)
        result = _highs.to_result(
            problem, sf, res, plan, limit=budget.time_limit, rng=rng, obj_scale=obj_scale
        )
        if warm is not None:
            result.info["warm_start"] = {"reused": "MIP start" if plan and plan.source == "warm start" else "nothing"}
        return result

    @staticmethod
    def _start(
        problem: AlignmentProblem,
        budget: Budget,
        rng: np.random.Generator,
        start: str,
        warm: WarmStart | None,
    ) -> _highs.Start | None:
        """The MIP start: the warm start's plan, else the chosen heuristic's (see the options)."""
        if warm is not None:
            plan = _highs.warm_plan(problem, warm, rng)
            if plan is not None:
                return plan
        if start == "none" or (start == "auto" and not gap_like(problem)):
            return None
        solver = "lagrangian" if start == "auto" else start
        return heuristic_plan(problem, solver, budget, int(rng.integers(0, 2**31 - 1)))
