"""``lp``: the LP relaxation of the standard form (HiGHS through :func:`scipy.optimize.linprog`),
rounding, repair.

The relaxation is :func:`~fedalign.solvers.standard.standard_form` with ``x[i, j] in {0, 1}``
relaxed to ``0 <= x[i, j] <= 1``: every row of the problem, hard rows with the checker's
tolerance, soft rows with their excess bands. Without knapsack rows its matrix is totally
unimodular and HiGHS' basic optimum is integral, so the rounded assignment is the optimum
itself; otherwise the LP optimum is fractional on a few pairs per row and rounding plus
:func:`~fedalign.solvers.repair.repair` gives a near-optimal assignment, polished by
:func:`~fedalign.solvers.repair.local_search`.

The bound is not HiGHS' reported objective (which carries its feasibility tolerances) but a
Lagrangian bound recomputed from its row duals. Write the rows as ``A_ub z <= b_ub`` (a
ranged row is split into its ``<=`` part and its negated ``>=`` part); for the maximisation
``max c.z, A_ub z <= b_ub, lo <= z <= hi`` and every ``y >= 0``,

    c.z = y.A_ub z + (c - A_ub^T y).z <= y.b_ub + sum_k max(r_k lo_k, r_k hi_k),
    r = c - A_ub^T y,

since each ``z_k`` lies in its box. HiGHS' duals, clipped to ``y >= 0``, give the bound,
valid whatever HiGHS' tolerances did; a relative ``1e-9`` is added for the float sums. It
covers every assignment :func:`fedalign.check` accepts, at its true objective (desirability
minus penalties): such an assignment with its excess bands filled in order is a point of
the LP (hard bounds include the checker's tolerance, the boxes of the excess columns hold
the most excess a row can have), and there ``c.z`` is its objective.

Under a time limit, an LP over :data:`ISOLATE_PAIRS` pairs or more runs in a forked worker
process (:mod:`fedalign.solvers._worker`) killed early enough to leave time for rounding
(:data:`ROUND_SECONDS_PER_PAIR`): scipy's conversions and HiGHS' set-up do not look at
HiGHS' clock. A stopped LP gives no point and no bound; the rounding then starts from
nothing (repair and fill by desirability) and the plan is returned without a bound.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._validation import Boolean, Constraint
from ..errors import InfeasibleError, TimeLimitError
from ..problem import AlignmentProblem
from . import _worker
from .base import Budget, Result, Solver, register
from .repair import add_in_order, fill, local_search, repair
from .standard import ALL_ROWS, checked_form

__all__ = ["LPSolver", "dual_bound"]


def dual_bound(
    a_ub: Any,
    b_ub: NDArray[np.float64],
    c: NDArray[np.float64],
    lower: NDArray[np.float64],
    upper: NDArray[np.float64],
    marginals: NDArray[np.float64],
) -> float:
    """Lagrangian upper bound of ``max c.z, A_ub z <= b_ub, lower <= z <= upper`` from linprog's duals."""
    y = np.maximum(0.0, -np.asarray(marginals, dtype=np.float64))  # min-form marginals are <= 0
    reduced = c - a_ub.T @ y
    z = float(y @ b_ub + np.maximum(reduced * lower, reduced * upper).sum())
    return z + 1e-9 * max(1.0, abs(z))


#: Under a time limit, LPs over at least this many pairs run in a worker process killed at
#: the deadline: scipy's conversions and HiGHS' set-up ignore HiGHS' time limit (at 20,000 x
#: 64 a 1.6 s limit ended after 5.7 s on a loaded 2-core machine, docs/benchmarks.md).
ISOLATE_PAIRS = 100_000
#: Seconds per pair kept for rounding after a stopped LP: the repair from nothing and the
#: fill's first segment, which looks at the clock only when done (0.13 s and 0.5 s at
#: 20,000 x 64 under a load of 5).
ROUND_SECONDS_PER_PAIR = 5e-7


def _linprog(
    cost: NDArray[np.float64], a_ub: Any, b_ub: NDArray[np.float64], bounds: NDArray[np.float64],
    options: dict[str, Any],
) -> Any:
    """:func:`scipy.optimize.linprog` with HiGHS (a module-level function: a worker runs it)."""
    from scipy.optimize import linprog

    return linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs", options=options)


def _isolated(task: tuple[Any, ...], pairs: int, budget: Budget) -> Any:
    """The LP in a worker process killed before the deadline, leaving time to round; None if stopped.

    HiGHS' own limit is half the window (its set-up and scipy's conversions run past it), so
    the worker usually answers ``time limit reached`` rather than being killed.
    """
    window = budget.remaining() - ROUND_SECONDS_PER_PAIR * pairs
    if window <= 0:
        return None
    outcome = _worker.call(_linprog, (*task, {"time_limit": max(1e-3, 0.5 * window)}), window)
    return outcome.value if outcome.finished else None


@register
class LPSolver(Solver):
    """LP relaxation with HiGHS, rounding and repair; reports a dual bound.

    Options
    -------
    polish : bool, default True
        Run :func:`~fedalign.solvers.repair.local_search` on the rounded assignment.
    """

    name = "lp"
    builds_standard_form = True
    exact = False
    requires = ("scipy",)
    extra = None
    supports = ALL_ROWS
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = {
        "polish": [Boolean()],
    }

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        polish: bool = True,
    ) -> Result:
        from scipy.optimize import OptimizeResult

        sf = checked_form(problem, budget)
        if sf.n_pairs == 0:  # nothing fits: the empty assignment is the only one
            return Result(np.zeros(problem.shape, dtype=bool), optimal=True)
        sf, obj_scale = sf.normalised()  # units near 1 for HiGHS; exact powers of two
        a_ub, b_ub, _, _ = sf.inequalities()
        bounds = np.column_stack([sf.col_lower, sf.col_upper])
        task = (-sf.c, a_ub, b_ub, bounds)
        if budget.time_limit is None:
            res = _linprog(*task, {})
        elif sf.n_pairs < ISOLATE_PAIRS:
            budget.check("building the LP")
            res = _linprog(*task, {"time_limit": max(1e-3, 0.8 * budget.remaining())})
        else:
            res = _isolated(task, sf.n_pairs, budget)
        if res is None:  # stopped at the limit: round from nothing (repair and fill, no bound)
            res = OptimizeResult(status=1, x=None, message="the LP was stopped at the time limit")
        info: dict[str, Any] = {"lp_status": int(res.status), "lp_message": str(res.message)}
        if res.status == 2:
            raise InfeasibleError(
                "the LP relaxation is infeasible, so no assignment exists "
                "(no combination of pairs meets every hard row)"
            )
        frac = np.zeros(problem.shape)
        bound: float | None = None
        if res.status == 0 and res.x is not None:
            xs = res.x[: sf.n_pairs]
            frac[sf.rows, sf.cols] = np.clip(xs, 0.0, 1.0)
            scaled = dual_bound(a_ub, b_ub, sf.c, sf.col_lower, sf.col_upper, res.ineqlin.marginals)
            bound = scaled / obj_scale
            info["lp_objective"] = float(-res.fun) / obj_scale
            info["fractional_pairs"] = int(((xs > 1e-6) & (xs < 1 - 1e-6)).sum())
        x = self._round(problem, frac, rng, budget)
        if polish and not budget.expired():
            x = local_search(problem, x, budget=budget)
        objective = problem.objective(x)
        # The bound carries a 1e-9 relative pad for float sums; within 1e-8 is a proof.
        optimal = bound is not None and bound - objective <= 1e-8 * max(1.0, abs(bound))
        return Result(assignment=x, bound=bound, optimal=optimal, info=info)

    @staticmethod
    def _round(
        problem: AlignmentProblem, frac: NDArray[np.float64], rng: np.random.Generator, budget: Budget
    ) -> NDArray[np.bool_]:
        """Best of two roundings of the LP point, each repaired and filled.

        *Threshold*: keep pairs with ``x >= 0.5``, then repair. *Ranked*: keep the integral
        ones, add the fractional pairs in order of LP value (ties by desirability) while
        they fit, then repair. Repair prefers pairs by LP value too; the final fill adds
        any pair of positive desirability that still fits.
        """
        d = problem.desirability
        span = float(np.abs(d).max()) or 1.0
        priority = frac + 1e-3 * d / span
        starts = [frac >= 0.5]
        ranked = frac >= 1.0 - 1e-6
        rows, cols = np.nonzero((frac > 1e-6) & ~ranked)
        order = np.argsort(-priority[rows, cols], kind="stable")
        starts.append(add_in_order(problem, ranked, rows[order], cols[order]))
        best: NDArray[np.bool_] | None = None
        error: InfeasibleError | None = None
        for start in starts:
            if best is not None and budget.expired():
                break  # one rounding is enough when the time is up
            try:
                x = repair(problem, start, rng=rng, fill=False, priority=priority, budget=budget)
            except TimeLimitError:
                if best is None:
                    raise
                break
            except InfeasibleError as exc:
                error = exc
                continue
            x = fill(problem, x, budget=budget)
            if best is None or problem.objective(x) > problem.objective(best):
                best = x
        if best is None:
            assert error is not None
            raise error
        return best
