"""``cpsat``: OR-Tools CP-SAT on the standard form, warm-started from a heuristic, anytime.

The model is :func:`~fedalign.solvers.standard.standard_form`. CP-SAT needs integer
coefficients, so the model is scaled:

* **Objective.** ``C = rint(c * S)`` over every column, with ``S`` the largest power of two
  that keeps ``max|C| <= 2**30`` (so ``2**29 < max|C|``; a power of two makes ``c * S``
  exact). ``S`` is capped at ``2**1020`` to stay finite for any finite desirability: when
  every ``|c|`` is below about ``1e-298`` the columns are resolved to an absolute
  ``2**-1021`` instead (down to all-zero costs for subnormal values). Each unit of a column
  is off by at most ``0.5 / S``; a column whose ``c * S`` is an integer is exact. When ``d``
  is integral and small (OR-Library data) ``S = 1`` and the objective is exact.
* **Rows.** Each matrix row ``r`` is multiplied by ``K_r = 2**p_r`` (:func:`_row_scales`).
  *Exact rows*: when every weight of the row (and a soft row's bound) is a multiple of
  ``2**-p`` for a ``p`` no larger than the tolerance scale below, and the scaled sums stay
  below ``2**53``, ``K = 2**p`` makes every weight an integer (``p = 0`` for integral data,
  ``p = 2`` for quarters) and the row is used exactly: bounds ``floor(hi * K)`` and
  ``ceil(lo * K)`` of the standard form's caps. *Rounded rows* (any other hard row):
  ``K = 2**q``, the least power of two ``>= 2 (k + 2) / tol`` (``k`` the row's pairs,
  ``tol`` the checker's tolerance :func:`~fedalign.problem.capacity_tolerance` of its
  bounds, the smaller of the two); weights become ``ceil(w K)``, an upper bound ``U``
  becomes ``U' = floor(U K) + floor(K tol / 2)`` and a lower bound ``L`` becomes
  ``L' = floor(L K)``. Soft rows must be exact (their excess, in steps of ``2**-p``, is then
  an integer variable per band with ``2**p`` steps per unit, each costing ``penalty / 2**p``);
  cpsat refuses a problem with a soft row that is not (:meth:`CPSATSolver._refuse_data`).

  *Why a rounded row keeps every truly feasible x and admits only what check accepts.*
  ``K`` is a power of two, so ``w K``, ``U K``, ``L K`` and ``K tol / 2`` are exact floats and
  their floors and ceilings exact integers; write ``Z = sum_j ceil(w_j K) x_j`` (an exact
  integer) and ``u = sum_j w_j x_j`` (exact arithmetic). Since ``w K <= ceil(w K) <
  w K + 1``, ``K u <= Z < K u + k``. Upper side: if ``u <= U`` then ``Z < K U + k``, while
  ``K tol / 2 >= k + 2`` gives ``U' > K U - 1 + k + 1 = K U + k``, so ``Z <= U'``: CP-SAT
  keeps ``x``. Conversely ``Z <= U'`` gives ``u <= Z / K <= U + tol / 2``. Lower side: if
  ``u >= L`` then ``Z >= K L >= L'``. Conversely ``Z >= L'`` gives ``K u > Z - k >= L' - k >
  K L - 1 - k``, so ``u > L - (k + 1) / K >= L - tol / 2``. :func:`fedalign.check` sums the
  weights in float64, within a relative ``k * 2**-53`` of ``u``, and accepts ``u <= U + tol``
  and ``u >= L - tol``; the half tolerance left over covers that error for every row of at
  most ``_MAX_ROUNDED_PAIRS`` pairs (``10**6 * 2**-53 < 1.2e-10``, well under ``tol / 2 =
  5e-10 max(1, |bound|)``), and cpsat refuses a larger rounded row. An exact row is the
  checker's own test: its float sums are exact (multiples of ``2**-p`` below ``2**53``
  units), and ``Z <= floor(cap K)`` if and only if ``u <= cap``. Only assignments that need
  the float tolerance itself are cut off.

  CP-SAT refuses any linear expression whose largest value can pass ``2**62``; cpsat
  estimates each scaled row's sum of ``|coefficients|`` and bounds up front and refuses a
  problem whose rows pass ``2**61`` (weights far above a tight bound's tolerance), rather
  than failing inside CP-SAT.

Bound: CP-SAT's ``best_objective_bound`` ``B`` bounds ``C.z`` over the scaled model. Every
truly feasible ``x``, with its excess steps filled in order, is a point of the scaled model
whose ``C.z`` is within ``slack`` of ``S`` times its true objective (desirability minus
penalties), where ``slack`` is ``0.5`` per pair when the pair costs are inexact (at most
``M``, the most pairs any assignment holds) plus ``0.5`` per step of every inexact band
column. So the objective of every such ``x`` is at most ``(B + slack) / S``. The status is
``optimal`` when CP-SAT proves the scaled optimum; the objective is then within ``2 slack /
S`` of the true optimum (``Solution.info["tolerance"]``, 0 when the objective is exact).
The greedy hint is complete (every variable, excess steps included), which CP-SAT prunes
with best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._validation import Boolean, Constraint, Interval
from ..errors import AlignmentError, InfeasibleError, TimeLimitError
from ..problem import AlignmentProblem
from ..rows import capacity_tolerance
from .base import Budget, Result, Solver, get_solver, register
from .repair import repair
from .standard import (
    ALL_ROWS,
    StandardForm,
    block_order,
    block_sums,
    checked_form,
)
from .warm import WarmStart

__all__ = ["CPSATSolver"]

#: Largest scaled |cost| in the objective.
_OBJECTIVE_UNITS = 2**30
#: Largest exponent of the objective scale ``S = 2**k``: finite for any finite desirability,
#: and ``M / S`` stays a normal float.
_MAX_SCALE_EXP = 1020
#: Largest integer kept exact by the objective scaling.
_EXACT_LIMIT = 2**40
#: Scaled rows whose sum of |coefficients| and bounds pass this are refused (CP-SAT's own
#: overflow check stops at 2**62; half of it leaves room for the estimate).
_ROW_LIMIT = 2.0**61
#: An exact row's scaled sums stay below this, so float64 sums of its weights are exact.
_FLOAT_EXACT = 2.0**53
#: Most pairs in a rounded row: the checker's float error stays well inside tol / 2.
_MAX_ROUNDED_PAIRS = 10**6

_AXIS = {"client": 1, "expert": 0, "total": None}


def _integral(values: NDArray[np.float64]) -> bool:
    return bool(np.all(values == np.rint(values)) and np.all(np.abs(values) <= _EXACT_LIMIT))


def _scale_objective(c: NDArray[np.float64]) -> tuple[NDArray[np.int64], float, NDArray[np.bool_]]:
    """``(rint(c * S), S, exact)`` with ``exact[k]`` whether column ``k``'s cost is scaled exactly."""
    if _integral(c) and np.abs(c).max(initial=0.0) <= _OBJECTIVE_UNITS:
        return c.astype(np.int64), 1.0, np.ones(c.size, dtype=bool)
    top = float(np.abs(c).max(initial=0.0))
    scale = 1.0
    if top > 0:
        # Largest power of two with top * S <= units (top < 2**frexp), capped so it is finite:
        # c * S is then exact, and so is the 0.5-per-unit slack of the bound.
        k = min(_OBJECTIVE_UNITS.bit_length() - 1 - math.frexp(top)[1], _MAX_SCALE_EXP)
        if k < _MAX_SCALE_EXP and math.ldexp(top, k + 1) <= _OBJECTIVE_UNITS:
            k += 1
        scale = math.ldexp(1.0, k)
    scaled = np.rint(c * scale)
    return scaled.astype(np.int64), scale, scaled == c * scale


def _dyadic_exponent(values: NDArray[np.float64]) -> NDArray[np.int64]:
    """The least ``p >= 0`` with ``values * 2**p`` an integer, elementwise (finite values)."""
    mant, exp = np.frexp(np.abs(values))  # |v| = mant * 2**exp, mant in [0.5, 1)
    digits = (mant * 2.0**53).astype(np.int64)  # |v| = digits * 2**(exp - 53), exactly
    lowest = digits & -digits  # the lowest set bit of digits (0 for v == 0)
    zeros = np.frexp(lowest.astype(np.float64))[1] - 1  # its position: trailing zero bits
    return np.where(digits == 0, 0, np.maximum(53 - exp - zeros, 0)).astype(np.int64)


def _power_at_least(values: NDArray[np.float64]) -> NDArray[np.int64]:
    """The least ``q`` with ``2**q >= values`` (values > 0)."""
    q = np.ceil(np.log2(values))
    q += np.ldexp(1.0, q.astype(np.int64)) < values  # log2 rounded down across a power
    return q.astype(np.int64)


@dataclass(frozen=True)
class _Scales:
    """How each matrix row of the standard form is made integral (see the module docstring)."""

    exponent: NDArray[np.int64]  # K = 2**exponent
    exact: NDArray[np.bool_]
    refusal: str | None


def _row_scales(problem: AlignmentProblem, *, refusal_only: bool = False) -> _Scales:
    """Per matrix row (in the standard form's order): scale, exactness; or why cpsat refuses.

    Computed from the rows themselves (counts, sums and binary exponents over the pairs
    that fit), without building the standard form. With ``refusal_only`` a hard row whose
    rounded scaling fits is not examined further (an exact scaling is never larger), so
    that :meth:`CPSATSolver.refusal` stays cheap on large problems; the scales returned are
    then incomplete.
    """
    fits = problem.fits
    exponents: list[NDArray[np.int64]] = []
    exacts: list[NDArray[np.bool_]] = []
    steps = 0.0
    for row, side in block_order(problem):
        k, total = block_sums(row, fits)
        bound: NDArray[np.float64] | None = None
        if side is None:
            present = [b for b in (row.upper, row.lower) if b is not None]
            tol = np.min([capacity_tolerance(b) for b in present], axis=0) if present else np.ones(row.size)
            reach = total + np.max([np.abs(b) for b in present], axis=0) if present else total
            most = np.zeros(row.size)
        else:
            bound = row.upper if side == "upper" else row.lower
            assert bound is not None
            tol = capacity_tolerance(bound)
            most = np.maximum(total - bound if side == "upper" else bound, 0.0)
            reach = total + np.abs(bound) + most
        q = _power_at_least(2.0 * (k + 2) / tol)
        with np.errstate(over="ignore"):  # an overflow to inf is a refusal, as it should be
            if refusal_only and side is None and np.all((np.ldexp(reach, q) + k + 2 < _ROW_LIMIT) & (k <= _MAX_ROUNDED_PAIRS)):
                continue
            p = np.atleast_1d(_dyadic_exponent(np.where(fits, row.dense, 0.0)).max(axis=_AXIS[row.over], initial=0))
            if bound is not None:  # a soft row's excess is in steps of its bound's precision too
                p = np.maximum(p, _dyadic_exponent(bound))
            exact = (p <= q) & (np.ldexp(reach, np.minimum(p, q)) < _FLOAT_EXACT)
            e = np.where(exact, p, q)
            size = np.asarray(np.ldexp(reach, e) + k + 2, dtype=np.float64)
        reason = _block_refusal(problem, row, side, exact, size, k)
        if reason is not None:
            return _Scales(e, exact, reason)
        steps += float(np.ldexp(most, e).sum())
        exponents.append(e)
        exacts.append(exact)
    if _OBJECTIVE_UNITS * (fits.sum() + steps) >= _ROW_LIMIT:
        return _Scales(np.zeros(0, np.int64), np.zeros(0, bool), (
            f"solver 'cpsat' cannot scale the objective: the soft rows' excess, in steps of "
            f"their weights' binary precision, reaches {steps:.3g} steps, past CP-SAT's integer range"
        ))
    none = [np.zeros(0, np.int64)]
    return _Scales(np.concatenate(exponents or none), np.concatenate(exacts or none).astype(bool), None)


def _block_refusal(
    problem: AlignmentProblem,
    row: Any,
    side: str | None,
    exact: NDArray[np.bool_],
    size: NDArray[np.float64],
    k: NDArray[np.int64],
) -> str | None:
    """Why a block of rows cannot be scaled: an inexact soft row, or a row too large."""
    bad = np.flatnonzero(~exact) if side is not None else np.zeros(0, dtype=np.intp)
    if bad.size:
        return _soft_refusal(problem, row, int(bad[0]))
    bad = np.flatnonzero((size >= _ROW_LIMIT) | (~exact & (k > _MAX_ROUNDED_PAIRS)))
    if bad.size:
        return _size_refusal(problem, row, int(bad[0]), float(size[bad[0]]))
    return None


def _soft_refusal(problem: AlignmentProblem, row: Any, k: int) -> str:
    who = row.who(k, problem.client_ids, problem.expert_ids)
    return (
        f"solver 'cpsat' models a soft row only when its weights and bound are multiples of a "
        f"power of two (1, 1/2, 1/4, ...) no finer than the checker's tolerance, so that its "
        f"excess is a whole number of steps; the {row.describe()} is not, at {who}"
    )


def _size_refusal(problem: AlignmentProblem, row: Any, k: int, size: float) -> str:
    who = row.who(k, problem.client_ids, problem.expert_ids)
    return (
        f"solver 'cpsat' cannot scale the {row.describe()} to integers at {who}: its scaled "
        f"coefficients would sum to about 2^{math.log2(size):.0f}, past CP-SAT's limit of 2^62 "
        f"(weights too large next to the bound's float tolerance), or it has more than "
        f"{_MAX_ROUNDED_PAIRS:,} pairs to round"
    )


def _scaled_rows(
    problem: AlignmentProblem, sf: StandardForm, scales: _Scales
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Integer coefficients (per CSR entry) and bounds of every matrix row.

    Returns ``(coef, lower, upper, has_lower, has_upper)``; see the module docstring.
    """
    k_row = np.ldexp(1.0, scales.exponent)
    exact = scales.exact
    entry_row = np.repeat(np.arange(sf.n_rows), np.diff(sf.A.indptr))
    is_pair = sf.A.indices < sf.n_pairs
    scaled = sf.A.data * k_row[entry_row]
    coef = np.where(is_pair, np.where(exact[entry_row], scaled, np.ceil(scaled)), sf.A.data)
    has_lower, has_upper = np.isfinite(sf.row_lower), np.isfinite(sf.row_upper)
    # Exact rows (hard or soft): the standard form's bounds, times K, rounded inward.
    with np.errstate(invalid="ignore"):
        upper = np.floor(sf.row_upper * k_row)
        lower = np.ceil(sf.row_lower * k_row)
    # Rounded rows (hard only): from the raw bounds and their tolerance.
    raw_lo, raw_hi = _raw_bounds(sf)
    rounded = ~exact & has_upper
    tol = capacity_tolerance(raw_hi[rounded])
    upper[rounded] = np.floor(raw_hi[rounded] * k_row[rounded]) + np.floor(tol / 2 * k_row[rounded])
    rounded = ~exact & has_lower
    lower[rounded] = np.floor(raw_lo[rounded] * k_row[rounded])
    big = np.iinfo(np.int64)
    # No lower side: 0 where every coefficient is >= 0 (the sum never goes below), else
    # CP-SAT's "no bound"; no upper side: CP-SAT's "no bound".
    negative = np.bincount(entry_row, weights=coef < 0, minlength=sf.n_rows) > 0
    lower_int = np.where(negative, big.min, 0).astype(np.int64)
    upper_int = np.full(sf.n_rows, big.max, dtype=np.int64)
    lower_int[has_lower] = lower[has_lower]
    upper_int[has_upper] = upper[has_upper]
    return coef.astype(np.int64), lower_int, upper_int, has_lower, has_upper


def _raw_bounds(sf: StandardForm) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each matrix row's bounds as the row gives them (nan where absent)."""
    lo: list[NDArray[np.float64]] = []
    hi: list[NDArray[np.float64]] = []
    for block in sf.blocks:
        size = block.stop - block.start
        none = np.full(size, np.nan)
        lo.append(none if block.row.lower is None else np.asarray(block.row.lower))
        hi.append(none if block.row.upper is None else np.asarray(block.row.upper))
    return np.concatenate(lo), np.concatenate(hi)


def _hint(problem: AlignmentProblem, budget: Budget) -> NDArray[np.bool_] | None:
    """The greedy solver's assignment, or None when it is unavailable or finds none."""
    try:
        limit = budget.remaining(default=10.0)
        sol = get_solver("greedy").solve(problem, time_limit=max(0.05, 0.1 * limit), seed=0)
    except (AlignmentError, ValueError):
        return None
    return np.asarray(sol.assignment, dtype=bool)


def _start(
    problem: AlignmentProblem, budget: Budget, rng: np.random.Generator, warm: WarmStart | None
) -> tuple[NDArray[np.bool_] | None, str]:
    """The hint: a warm start's plan (repaired) if there is one, else greedy's; and its source."""
    if warm is not None:
        try:
            return repair(problem, warm.assignment(), rng=rng, fill=True), "hint"
        except InfeasibleError:
            pass
    return _hint(problem, budget), "nothing"


def _add_hint(
    model: Any, sf: StandardForm, zs: list[Any], start: NDArray[np.bool_], steps: NDArray[np.float64]
) -> None:
    """``start`` as CP-SAT's hint: its pairs, and each soft row's excess in the model's steps."""
    m = sf.n_pairs
    excess = np.rint(sf.columns(start)[m:] * steps).astype(np.int64)
    values = start[sf.rows, sf.cols].astype(np.int64).tolist() + excess.tolist()
    for var, value in zip(zs, values, strict=True):
        model.add_hint(var, value)


def _with_warm(info: dict[str, Any], warm: WarmStart | None, reused: str) -> dict[str, Any]:
    """``info`` with ``warm_start`` noted when a warm start was given."""
    if warm is not None:
        info["warm_start"] = {"reused": reused}
    return info


def _variables(model: Any, m: int, step_ub: NDArray[np.int64], budget: Budget) -> list[Any]:
    """CP-SAT has no array API: variable k is column k (pairs, then excess steps); the clock
    is checked between chunks."""
    zs: list[Any] = []
    for s in range(0, m, 20_000):
        zs += [model.new_bool_var(f"x{k}") for k in range(s, min(m, s + 20_000))]
        budget.check("building the CP-SAT model")
    zs += [model.new_int_var(0, int(u), f"y{k}") for k, u in enumerate(step_ub.tolist())]
    return zs


@register
class CPSATSolver(Solver):
    """OR-Tools CP-SAT on the standard form, hinted with the greedy assignment.

    Options
    -------
    num_workers : int, default 2
        CP-SAT search workers (threads).
    hint : bool, default True
        Hint CP-SAT with a complete feasible assignment: a warm start's (the earlier
        assignment repaired into a plan of this problem), else the ``greedy`` solver's.
    """

    name = "cpsat"
    builds_standard_form = True
    exact = True
    warm_start = "a complete hint: the earlier assignment, repaired into a feasible plan"
    requires = ("ortools",)
    extra = None
    supports = ALL_ROWS
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = {
        "num_workers": [Interval(int, 1, None)],
        "hint": [Boolean()],
    }

    def _refuse_data(self, problem: AlignmentProblem) -> str | None:
        """A soft row that is not exact in binary steps, or a row too wide to scale."""
        return super()._refuse_data(problem) or _row_scales(problem, refusal_only=True).refusal

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        num_workers: int = 2,
        hint: bool = True,
        warm: WarmStart | None = None,
    ) -> Result:
        from ortools.sat.python import cp_model

        sf = checked_form(problem, budget)
        scales = _row_scales(problem)
        if scales.refusal is not None:  # pragma: no cover - solve() refuses first
            raise AlignmentError(scales.refusal)
        m = sf.n_pairs
        steps = np.ldexp(1.0, scales.exponent[sf.excess_row])  # steps per unit of excess
        cost, scale, exact_cost = _scale_objective(np.concatenate([sf.c[:m], sf.c[m:] / steps]))
        step_ub = np.rint(np.ceil(sf.col_upper[m:] * steps)).astype(np.int64)

        start: NDArray[np.bool_] | None = None
        reused = "nothing"
        if hint and m:
            # The hint first: if building the model outlasts the limit, it is the answer.
            start, reused = _start(problem, budget, rng, warm)
        model = cp_model.CpModel()
        try:
            zs = _variables(model, m, step_ub, budget)
            self._add_rows(model, cp_model, sf, zs, _scaled_rows(problem, sf, scales), budget)
            model.maximize(cp_model.LinearExpr.weighted_sum(zs, cost.tolist()))
            budget.check("building the CP-SAT model")
        except TimeLimitError:
            if start is None:
                raise
            note = {"cp_status": "not run: the model took the whole time limit", "hinted": True,
                    "returned_hint": True}
            return Result(assignment=start, info=_with_warm(note, warm, reused))
        if start is not None:
            _add_hint(model, sf, zs, start, steps)

        solver = cp_model.CpSolver()
        if budget.time_limit is not None:
            solver.parameters.max_time_in_seconds = max(0.01, budget.remaining())
        solver.parameters.num_workers = int(num_workers)
        solver.parameters.random_seed = int(rng.integers(0, 2**31 - 1))
        status = solver.solve(model)
        name = solver.status_name(status)
        slots = int(min(problem.max_experts.sum(), problem.expert_max_clients.sum(), m))
        # Half a unit per pair when pair costs are inexact, half per step of inexact bands.
        slack = (0.0 if exact_cost[:m].all() else 0.5 * slots) + 0.5 * float(step_ub[~exact_cost[m:]].sum())
        info: dict[str, Any] = _with_warm({
            "cp_status": name,
            "hinted": start is not None,
            "exact_objective": slack == 0.0,
            "scale": scale,
            "tolerance": 2.0 * slack / scale,
            "wall_time": solver.wall_time,
        }, warm, reused)
        if status == cp_model.INFEASIBLE:
            raise InfeasibleError("CP-SAT proved that no assignment meets every constraint")
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            # No bound either: CP-SAT reports best_objective_bound only with a solution.
            if start is None:
                raise TimeLimitError(
                    f"CP-SAT found no assignment in the time limit (status {name})"
                )
            # Out of time before CP-SAT's first solution: the (feasible) hint is the answer.
            info["returned_hint"] = True
            return Result(assignment=start, bound=None, optimal=False, info=info)
        values = np.asarray(solver.response_proto.solution, dtype=np.int64)[:m]
        x = sf.assignment(values)
        bound = (float(solver.best_objective_bound) + slack) / scale
        return Result(assignment=x, bound=bound, optimal=status == cp_model.OPTIMAL, info=info)

    @staticmethod
    def _add_rows(
        model: Any,
        cp_model: Any,
        sf: StandardForm,
        zs: list[Any],
        scaled: tuple[NDArray[Any], ...],
        budget: Budget,
    ) -> None:
        """One linear constraint per matrix row, from slices of the CSR arrays (the clock
        is checked every 20,000 nonzeros: a Python loop, seconds on large problems)."""
        coef, lower, upper, has_lower, has_upper = scaled
        indptr = sf.A.indptr.tolist()
        indices = sf.A.indices.tolist()
        coefs = coef.tolist()
        lo, hi = lower.tolist(), upper.tolist()
        done = 0
        for r, (low, high) in enumerate(zip(has_lower.tolist(), has_upper.tolist(), strict=True)):
            a, b = indptr[r], indptr[r + 1]
            if a == b or not (low or high):  # empty (empty_conflict() ruled out a violated one) or free
                continue
            done += b - a
            if done >= 20_000:
                done = 0
                budget.check("building the CP-SAT model")
            expr = cp_model.LinearExpr.weighted_sum([zs[k] for k in indices[a:b]], coefs[a:b])
            model.add_linear_constraint(expr, lo[r], hi[r])
