"""``lp``: the LP relaxation (HiGHS through :func:`scipy.optimize.linprog`), rounding, repair.

The relaxation keeps every row of the problem and relaxes ``x[i, j] in {0, 1}`` to
``0 <= x[i, j] <= 1`` over the pairs that are allowed and fit (DESIGN.md §1). Without
knapsack rows its matrix is totally unimodular and HiGHS' basic optimum is integral, so the
rounded assignment is the optimum itself; with knapsack rows the LP optimum is fractional on
a few pairs per row and rounding plus :func:`~fedalign.solvers.repair.repair` gives a
near-optimal assignment, polished by :func:`~fedalign.solvers.repair.local_search`.

The bound is not HiGHS' reported objective (which carries its feasibility tolerances) but a
Lagrangian bound recomputed from its row duals ``y`` (clipped to ``y >= 0``): for the
maximisation ``max d.x, A x <= b, 0 <= x <= 1``, every ``y >= 0`` gives

    d.x <= y.b + sum_k max(0, d_k - (A^T y)_k),

so the bound is valid whatever HiGHS' tolerances did; a relative ``1e-9`` is added for the
float sums. Knapsack capacities include the checker's tolerance
(:func:`~fedalign.problem.capacity_tolerance`), so the bound covers every assignment that
:func:`fedalign.check` accepts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InfeasibleError
from ..problem import AlignmentProblem, capacity_tolerance
from .base import Budget, Result, Solver, register
from .repair import add_in_order, fill, local_search, repair

__all__ = ["LPSolver", "relaxation"]


def relaxation(problem: AlignmentProblem) -> tuple[Any, NDArray[np.float64], NDArray[np.intp], NDArray[np.intp]]:
    """The relaxation's rows as ``A x <= b`` over the pairs that fit.

    Parameters
    ----------
    problem : AlignmentProblem

    Returns
    -------
    A : scipy.sparse.csr_array, shape (n_rows, n_pairs)
    b : (n_rows,) float array
    rows, cols : (n_pairs,) int arrays
        Client and expert of each column.
    """
    from scipy import sparse

    n, e = problem.shape
    rows, cols = np.nonzero(problem.fits)
    m = rows.size
    k = np.arange(m)
    ones = np.ones(m)
    per_client = sparse.csr_array((ones, (rows, k)), shape=(n, m))
    per_expert = sparse.csr_array((ones, (cols, k)), shape=(e, m))
    lo, elo = problem.min_experts, problem.expert_min_clients
    need_c, need_e = np.flatnonzero(lo > 0), np.flatnonzero(elo > 0)
    blocks = [per_client, -per_client[need_c], per_expert, -per_expert[need_e]]
    rhs = [
        problem.max_experts.astype(np.float64),
        -lo[need_c].astype(np.float64),
        problem.expert_max_clients.astype(np.float64),
        -elo[need_e].astype(np.float64),
    ]
    if problem.expert_memory is not None and problem.client_memory is not None:
        cap = problem.client_memory
        blocks.append(sparse.csr_array((problem.expert_memory[cols], (rows, k)), shape=(n, m)))
        rhs.append(cap + capacity_tolerance(cap))
    if problem.train_time is not None and problem.deadline is not None:
        cap = problem.deadline
        blocks.append(sparse.csr_array((problem.train_time[rows, cols], (rows, k)), shape=(n, m)))
        rhs.append(cap + capacity_tolerance(cap))
    a = sparse.vstack(blocks, format="csr")
    return a, np.concatenate(rhs), rows, cols


def _dual_bound(
    a: Any, b: NDArray[np.float64], c: NDArray[np.float64], marginals: NDArray[np.float64]
) -> float:
    """Lagrangian upper bound of ``max c.x, A x <= b, 0 <= x <= 1`` from linprog's duals."""
    y = np.maximum(0.0, -np.asarray(marginals, dtype=np.float64))  # min-form marginals are <= 0
    reduced = c - a.T @ y
    z = float(y @ b + np.maximum(reduced, 0.0).sum())
    return z + 1e-9 * max(1.0, abs(z))


@register
class LPSolver(Solver):
    """LP relaxation with HiGHS, rounding and repair; reports a dual bound.

    Options
    -------
    polish : bool, default True
        Run :func:`~fedalign.solvers.repair.local_search` on the rounded assignment.
    """

    name = "lp"
    exact = False
    requires = ("scipy",)
    extra = None

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        polish: bool = True,
    ) -> Result:
        from scipy.optimize import linprog

        if not isinstance(polish, (bool, np.bool_)):
            raise ValueError(f"polish: expected a bool, got {polish!r}")
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)
        a, b, rows, cols = relaxation(problem)
        if rows.size == 0:  # nothing fits: the empty assignment is the only one
            return Result(np.zeros(problem.shape, dtype=bool), bound=0.0, optimal=True)
        c = problem.desirability[rows, cols]
        options: dict[str, Any] = {}
        if budget.time_limit is not None:
            options["time_limit"] = max(1e-3, 0.8 * budget.remaining())
        res = linprog(-c, A_ub=a, b_ub=b, bounds=(0.0, 1.0), method="highs", options=options)
        info: dict[str, Any] = {"lp_status": int(res.status), "lp_message": str(res.message)}
        if res.status == 2:
            raise InfeasibleError(
                "the LP relaxation is infeasible, so no assignment exists "
                "(no combination of pairs meets every count and knapsack row)"
            )
        frac = np.zeros(problem.shape)
        bound: float | None = None
        if res.status == 0 and res.x is not None:
            frac[rows, cols] = np.clip(res.x, 0.0, 1.0)
            bound = _dual_bound(a, b, c, res.ineqlin.marginals)
            info["lp_objective"] = float(-res.fun)
            info["fractional_pairs"] = int(((res.x > 1e-6) & (res.x < 1 - 1e-6)).sum())
        x = self._round(problem, frac, rng)
        if polish and not budget.expired():
            x = local_search(problem, x, budget=budget)
        objective = problem.objective(x)
        # The bound carries a 1e-9 relative pad for float sums; within 1e-8 is a proof.
        optimal = bound is not None and bound - objective <= 1e-8 * max(1.0, abs(bound))
        return Result(assignment=x, bound=bound, optimal=optimal, info=info)

    @staticmethod
    def _round(
        problem: AlignmentProblem, frac: NDArray[np.float64], rng: np.random.Generator
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
            try:
                x = repair(problem, start, rng=rng, fill=False, priority=priority)
            except InfeasibleError as exc:
                error = exc
                continue
            x = fill(problem, x)
            if best is None or problem.objective(x) > problem.objective(best):
                best = x
        if best is None:
            assert error is not None
            raise error
        return best
