"""``cpsat``: OR-Tools CP-SAT on the exact model, warm-started from a heuristic, anytime.

CP-SAT needs integer coefficients (DESIGN.md §2), so the model is scaled:

* **Objective.** ``D = rint(d * S)`` with ``S`` the largest power of two that keeps
  ``max|D| <= 2**30`` (so ``2**29 < max|D|``; a power of two makes ``d * S`` exact). ``S``
  is capped at ``2**1020`` to stay finite for any finite desirability: when every ``|d|`` is
  below about ``1e-298`` the pairs are resolved to an absolute ``2**-1021`` instead (down to
  all-zero costs for subnormal values). For any assignment ``x`` with ``|x|`` pairs,
  ``|D.x / S - d.x| <= 0.5 |x| / S``. When ``d`` is integral and small (OR-Library data)
  ``S = 1`` and the objective is exact.
* **Knapsack rows.** Integral data (OR-Library) are used as they are: exact. Otherwise each
  client's row is scaled by ``K_i = 2 (k_i + 1) / tol_i`` (``k_i`` its pairs, ``tol_i`` the
  checker's float tolerance :func:`~fedalign.problem.capacity_tolerance`), weights rounded
  up and the capacity ``c_i + tol_i / 2`` rounded down. Every ``x`` within the true
  capacity stays feasible, and every CP-SAT-feasible ``x`` passes :func:`fedalign.check`;
  only assignments that need the float tolerance itself are cut off.

Bound: CP-SAT's ``best_objective_bound`` ``B`` bounds ``D.x`` over the scaled model, so for
every ``x`` feasible there, ``d.x <= (D.x + 0.5 |x|) / S <= (B + 0.5 M) / S`` with ``M`` the
most pairs any assignment holds (no slack term when the objective is exact). The status is
``optimal`` when CP-SAT proves the scaled optimum; the objective is then within ``M / S`` of
the true optimum (``Solution.info["tolerance"]``, 0 when the objective is exact).
The greedy hint is complete (every variable), which CP-SAT prunes with best.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import AlignmentError, InfeasibleError
from ..problem import AlignmentProblem, capacity_tolerance
from .base import Budget, Result, Solver, get_solver, register

__all__ = ["CPSATSolver"]

#: Largest scaled |desirability| in the objective.
_OBJECTIVE_UNITS = 2**30
#: Largest exponent of the objective scale ``S = 2**k``: finite for any finite desirability,
#: and ``M / S`` stays a normal float.
_MAX_SCALE_EXP = 1020
#: Largest integer kept exact by the objective and row scaling.
_EXACT_LIMIT = 2**40


def _integral(values: NDArray[np.float64]) -> bool:
    return bool(np.all(values == np.rint(values)) and np.all(np.abs(values) <= _EXACT_LIMIT))


def _scale_objective(d: NDArray[np.float64]) -> tuple[NDArray[np.int64], float, bool]:
    """``(rint(d * S), S, exact)``."""
    if _integral(d) and np.abs(d).max(initial=0.0) <= _OBJECTIVE_UNITS:
        return d.astype(np.int64), 1.0, True
    top = float(np.abs(d).max(initial=0.0))
    scale = 1.0
    if top > 0:
        # Largest power of two with top * S <= units (top < 2**frexp), capped so it is finite:
        # d * S is then exact, and so is the 0.5-per-pair slack of the bound.
        k = min(_OBJECTIVE_UNITS.bit_length() - 1 - math.frexp(top)[1], _MAX_SCALE_EXP)
        if k < _MAX_SCALE_EXP and math.ldexp(top, k + 1) <= _OBJECTIVE_UNITS:
            k += 1
        scale = math.ldexp(1.0, k)
    scaled = np.rint(d * scale)
    return scaled.astype(np.int64), scale, bool(np.all(scaled == d * scale))


def _scale_row(
    weights: NDArray[np.float64], owner: NDArray[np.intp], capacity: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Integer knapsack row ``(weights per pair, capacity per client)``.

    Integral data stay as they are (``floor(c + tol) = c``: exact). Otherwise client ``i``'s
    row is scaled by ``K_i = 2 (k_i + 1) / tol_i`` (``k_i`` its pairs, ``tol_i`` the
    checker's tolerance), weights rounded up and the capacity ``c_i + tol_i / 2`` down:
    every ``x`` with ``w.x <= c_i`` stays feasible (rounding adds under ``k_i`` units, less
    than ``K_i tol_i / 2``), and every feasible ``x`` has ``w.x <= c_i + tol_i / 2``, which
    the checker accepts. Scaled values stay below about ``2 (E + 1) 10**9 * E``.
    """
    tol = capacity_tolerance(capacity)
    if _integral(weights) and _integral(capacity):
        return weights.astype(np.int64), np.floor(capacity + tol).astype(np.int64)
    count = np.bincount(owner, minlength=capacity.size)
    k = 2.0 * (count + 1) / tol
    w = np.ceil(weights * k[owner])
    cap = np.floor((capacity + tol / 2) * k)
    return w.astype(np.int64), cap.astype(np.int64)


def _hint(problem: AlignmentProblem, budget: Budget) -> NDArray[np.bool_] | None:
    """The greedy solver's assignment, or None when it is unavailable or finds none."""
    try:
        limit = budget.remaining(default=10.0)
        sol = get_solver("greedy").solve(problem, time_limit=max(0.05, 0.1 * limit), seed=0)
    except (AlignmentError, ValueError):
        return None
    return np.asarray(sol.assignment, dtype=bool)


@register
class CPSATSolver(Solver):
    """OR-Tools CP-SAT on the full model, hinted with the greedy assignment.

    Options
    -------
    num_workers : int, default 2
        CP-SAT search workers (threads).
    hint : bool, default True
        Warm-start from the ``greedy`` solver's assignment (a complete hint).
    """

    name = "cpsat"
    exact = True
    requires = ("ortools",)
    extra = None

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        num_workers: int = 2,
        hint: bool = True,
    ) -> Result:
        from ortools.sat.python import cp_model

        if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 1:
            raise ValueError(f"num_workers: expected an int >= 1, got {num_workers!r}")
        if not isinstance(hint, (bool, np.bool_)):
            raise ValueError(f"hint: expected a bool, got {hint!r}")
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)

        n, e = problem.shape
        rows, cols = np.nonzero(problem.fits)
        m = rows.size
        cost, scale, exact_objective = _scale_objective(problem.desirability[rows, cols])

        model = cp_model.CpModel()
        # CP-SAT has no array API: one Boolean per pair that fits (variable k is pair k).
        xs = [model.new_bool_var(f"x{k}") for k in range(m)]
        # Pair k belongs to client rows[k] (sorted, from nonzero) and expert cols[k].
        client_pairs = np.split(np.arange(m), np.searchsorted(rows, np.arange(1, n)))
        by_expert = np.argsort(cols, kind="stable")
        expert_pairs = np.split(by_expert, np.searchsorted(cols[by_expert], np.arange(1, e)))
        for ks, lo, hi in (
            (client_pairs, problem.min_experts, problem.max_experts),
            (expert_pairs, problem.expert_min_clients, problem.expert_max_clients),
        ):
            for r, pairs in enumerate(ks):
                if pairs.size:  # an empty row with lo > 0 was caught by infeasibility_reason
                    row = cp_model.LinearExpr.sum([xs[k] for k in pairs.tolist()])
                    model.add_linear_constraint(row, int(lo[r]), int(hi[r]))
        knapsacks: list[tuple[NDArray[np.int64], NDArray[np.int64]]] = []
        if problem.expert_memory is not None and problem.client_memory is not None:
            knapsacks.append(_scale_row(problem.expert_memory[cols], rows, problem.client_memory))
        if problem.train_time is not None and problem.deadline is not None:
            knapsacks.append(_scale_row(problem.train_time[rows, cols], rows, problem.deadline))
        for w, cap in knapsacks:
            for i, pairs in enumerate(client_pairs):
                if pairs.size:
                    ks = pairs.tolist()
                    row = cp_model.LinearExpr.weighted_sum([xs[k] for k in ks], w[ks].tolist())
                    model.add(row <= int(cap[i]))
        model.maximize(cp_model.LinearExpr.weighted_sum(xs, cost.tolist()))

        hinted = False
        start: NDArray[np.bool_] | None = None
        if hint and m:
            start = _hint(problem, budget)
            if start is not None:
                for var, value in zip(xs, start[rows, cols].tolist(), strict=True):
                    model.add_hint(var, value)
                hinted = True

        solver = cp_model.CpSolver()
        if budget.time_limit is not None:
            solver.parameters.max_time_in_seconds = max(0.01, budget.remaining())
        solver.parameters.num_workers = int(num_workers)
        solver.parameters.random_seed = int(rng.integers(0, 2**31 - 1))
        status = solver.solve(model)
        name = solver.status_name(status)
        slots = int(min(problem.max_experts.sum(), problem.expert_max_clients.sum(), m))
        info: dict[str, Any] = {
            "cp_status": name,
            "hinted": hinted,
            "exact_objective": exact_objective,
            "scale": scale,
            "tolerance": 0.0 if exact_objective else slots / scale,
            "wall_time": solver.wall_time,
        }
        if status == cp_model.INFEASIBLE:
            raise InfeasibleError("CP-SAT proved that no assignment meets every constraint")
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            # No bound either: CP-SAT reports best_objective_bound only with a solution.
            if start is None:
                raise InfeasibleError(
                    f"CP-SAT found no assignment in the time limit (status {name})"
                )
            # Out of time before CP-SAT's first solution: the (feasible) hint is the answer.
            info["returned_hint"] = True
            return Result(assignment=start, bound=None, optimal=False, info=info)
        values = np.asarray(solver.response_proto.solution, dtype=np.int64)[:m]
        x = np.zeros(problem.shape, dtype=bool)
        x[rows[values > 0], cols[values > 0]] = True
        slack = 0.0 if exact_objective else 0.5 * slots
        bound = (float(solver.best_objective_bound) + slack) / scale
        return Result(assignment=x, bound=bound, optimal=status == cp_model.OPTIMAL, info=info)
