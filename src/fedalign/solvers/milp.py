"""``milp``: the exact model in PuLP, built from the standard form, solved by HiGHS (or CBC).

The model is :func:`~fedalign.solvers.standard.standard_form`: one binary per pair that is
allowed and fits, one continuous column per excess band of a soft row, every row of the
problem (hard bounds with the checker's float tolerance,
:func:`~fedalign.problem.capacity_tolerance`). PuLP has no array API: each matrix row
becomes one ``LpAffineExpression`` made from a zipped slice of the CSR arrays (turned into
Python lists once), so Python touches each nonzero a constant number of times (even so,
PuLP takes about 10 s to build a million variables).

Solver: HiGHS (the highspy library) when available, else PuLP's ``HiGHS_CMD``, else
``PULP_CBC_CMD``; quiet, with the time limit and a relative gap of 0. With highspy, the
PuLP model goes to HiGHS exactly as ``pulp.HiGHS`` would hand it over -- the same columns
(PuLP's order, by name), rows, bounds and options -- but as arrays in one call
(:mod:`._highs`) instead of one ``addCol`` / ``addRow`` call each, and with a MIP start
when a warm start is given (the earlier assignment, repaired into a feasible plan).
HiGHS' own set-up can outlast its time limit on large models (the clique partition of the
objective: 40-60 s under a 5 s limit at 2,000 x 32), so under a limit those run in a child
process stopped at the limit; building the PuLP model checks the clock too.

The status is ``optimal`` only when the solver proved it; the bound is HiGHS' MIP dual bound
(None with CBC unless optimal), a bound on the true objective since at the optimum the excess
columns cost exactly the penalties. A solution that HiGHS' integrality or feasibility
tolerances leave slightly outside a row is rounded and repaired, and then reported as merely
feasible. Out of time without any plan, it raises :class:`~fedalign.TimeLimitError`.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._fd import native_silence
from .._validation import Constraint, Interval
from ..errors import InfeasibleError
from ..problem import AlignmentProblem, check
from . import _highs
from ._highs import HighsModel
from .base import Budget, Result, Solver, register
from .repair import repair
from .standard import ALL_ROWS, StandardForm, checked_form
from .warm import WarmStart

__all__ = ["MILPSolver"]


@functools.cache
def _quiet_highs(pulp: Any) -> Any:
    """``pulp.HiGHS`` whose ``highspy.Highs`` is built with the native banner silenced."""

    class QuietHiGHS(pulp.HiGHS):  # type: ignore[misc, name-defined]
        def createAndConfigureSolver(self, lp: Any) -> None:  # noqa: N802 - pulp's name
            with native_silence():
                super().createAndConfigureSolver(lp)

    QuietHiGHS.__name__ = QuietHiGHS.__qualname__ = "HiGHS"  # info["backend"] stays "HiGHS"
    return QuietHiGHS


def _pulp_solver(time_limit: float | None, threads: int | None) -> Any:
    """The best PuLP back-end installed: HiGHS (library), HiGHS (binary), then CBC."""
    import pulp

    common: dict[str, Any] = {"msg": False, "gapRel": 0.0}
    if time_limit is not None:
        common["timeLimit"] = time_limit
    candidates = [
        lambda: _quiet_highs(pulp)(threads=threads, **common),
        lambda: pulp.HiGHS_CMD(threads=threads, **common),
        lambda: pulp.PULP_CBC_CMD(threads=threads, **common),
    ]
    for make in candidates:
        try:
            solver = make()
        except Exception:  # noqa: BLE001 - a back-end that cannot even be configured is absent
            continue
        if solver.available():
            return solver
    return None


class _Clock:
    """Checks the budget after every ``every`` units of Python work (variables, nonzeros).

    Building a PuLP model is a Python loop over every nonzero, seconds on large problems:
    it must look at the clock, but not so often that the look costs.
    """

    def __init__(self, budget: Budget, doing: str, every: int = 20_000) -> None:
        self.budget, self.doing, self.every, self.done = budget, doing, every, 0

    def tick(self, units: int) -> None:
        self.done += units
        if self.done >= self.every:
            self.done = 0
            self.budget.check(self.doing)


def _build(pulp: Any, sf: StandardForm, budget: Budget) -> tuple[Any, list[Any]]:
    """The PuLP model of a standard form, and its variables in column order.

    Raises :class:`~fedalign.TimeLimitError` when the budget runs out while building.
    """
    clock = _Clock(budget, "building the PuLP model")
    model = pulp.LpProblem("fedalign", pulp.LpMaximize)
    # PuLP >= 3.3 owns variables through the model; older versions build them directly.
    new_var = getattr(model, "add_variable", None) or pulp.LpVariable
    m = sf.n_pairs
    step = 4096
    # PuLP hands columns to the solver sorted by name: pairs "x<k>" first, then bands "y<k>".
    zs: list[Any] = []
    for s in range(0, m, step):
        zs += [new_var(f"x{k}", 0, 1, pulp.LpBinary) for k in range(s, min(m, s + step))]
        clock.tick(step)
    zs += [new_var(f"y{k}", 0, w, pulp.LpContinuous) for k, w in enumerate(sf.col_upper[m:].tolist())]
    costs = sf.c.tolist()
    objective = pulp.LpAffineExpression()
    for s in range(0, len(zs), step):
        objective.addInPlace(pulp.LpAffineExpression(zip(zs[s : s + step], costs[s : s + step], strict=True)))
        clock.tick(step)
    model += objective
    indptr = sf.A.indptr.tolist()
    indices = sf.A.indices.tolist()
    data = sf.A.data.tolist()
    lower, upper = sf.row_lower.tolist(), sf.row_upper.tolist()
    for r in range(sf.n_rows):  # one expression per matrix row (a client, an expert, a total)
        a, b = indptr[r], indptr[r + 1]
        if a == b:  # no column: empty_conflict() has ruled out a violated one
            continue
        expr = pulp.LpAffineExpression(zip([zs[k] for k in indices[a:b]], data[a:b], strict=True))
        if upper[r] != np.inf:
            model.addConstraint(expr <= upper[r], f"r{r}_max")
        if lower[r] != -np.inf:
            model.addConstraint(expr >= lower[r], f"r{r}_min")
        clock.tick(b - a)
    return model, zs


def _highs_model(
    pulp: Any, model: Any, zs: list[Any], budget: Budget
) -> tuple[HighsModel, NDArray[np.intp]]:
    """The PuLP model as ``pulp.HiGHS`` hands it to HiGHS, as arrays.

    Columns in PuLP's order (``model.variables()``, by name), objective negated (HiGHS
    minimises), one row per PuLP constraint in insertion order with its nonzero
    coefficients in expression order and its one-sided bounds. Returns the model and, per
    HiGHS column, the standard form's column.
    """
    clock = _Clock(budget, "handing the PuLP model to HiGHS")
    variables = model.variables()
    budget.check(clock.doing)
    ours = {id(v): k for k, v in enumerate(zs)}
    col = np.fromiter((ours[id(v)] for v in variables), dtype=np.intp, count=len(variables))
    index = {id(v): i for i, v in enumerate(variables)}
    objective = model.objective
    cost = np.array([-objective.get(v, 0.0) for v in variables], dtype=np.float64)
    lower = np.array([-np.inf if v.lowBound is None else v.lowBound for v in variables], dtype=np.float64)
    upper = np.array([np.inf if v.upBound is None else v.upBound for v in variables], dtype=np.float64)
    integer = np.array([v.cat == pulp.LpInteger for v in variables], dtype=bool)
    starts: list[int] = [0]
    cols: list[int] = []
    vals: list[float] = []
    lows: list[float] = []
    highs: list[float] = []
    for constraint in model._constraints.values():  # one per matrix row side
        items = [(index[id(v)], a) for v, a in constraint.items() if a != 0]
        cols.extend(i for i, _ in items)
        vals.extend(a for _, a in items)
        starts.append(len(cols))
        lb, ub = constraint.getLb(), constraint.getUb()
        lows.append(-np.inf if lb is None else lb)
        highs.append(np.inf if ub is None else ub)
        clock.tick(len(items))
    hm = HighsModel(
        cost=cost,
        col_lower=lower,
        col_upper=upper,
        row_lower=np.array(lows, dtype=np.float64),
        row_upper=np.array(highs, dtype=np.float64),
        start=np.array(starts, dtype=np.int64),
        index=np.array(cols, dtype=np.int64),
        value=np.array(vals, dtype=np.float64),
        integer=integer,
    )
    return hm, col


@register
class MILPSolver(Solver):
    """PuLP model of the standard form, solved by HiGHS or CBC.

    Options
    -------
    threads : int, optional
        Solver threads (the back-end's default when None).
    """

    name = "milp"
    builds_standard_form = True
    exact = True
    warm_start = "a MIP start: the earlier assignment, repaired into a feasible plan (HiGHS)"
    requires = ("pulp",)
    extra = None
    supports = ALL_ROWS
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = {
        "threads": [Interval(int, 1, None), None],
    }

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        threads: int | None = None,
        warm: WarmStart | None = None,
    ) -> Result:
        import pulp

        sf = checked_form(problem, budget)
        if sf.n_pairs == 0:  # nothing fits: the empty assignment is the only one
            return Result(np.zeros(problem.shape, dtype=bool), optimal=True)
        # Units near 1 for HiGHS (exact powers of two); the unscaled form keeps the columns'
        # meaning for the MIP start and for reading the solution back.
        scaled, obj_scale = sf.normalised()
        model, zs = _build(pulp, scaled, budget)
        if importlib.util.find_spec("highspy") is not None:
            return self._solve_highs(problem, sf, obj_scale, pulp, model, zs, budget, rng, threads, warm)
        return self._solve_pulp(problem, sf, obj_scale, pulp, model, zs, budget, rng, threads)

    @staticmethod
    def _solve_highs(
        problem: AlignmentProblem,
        sf: StandardForm,
        obj_scale: float,
        pulp: Any,
        model: Any,
        zs: list[Any],
        budget: Budget,
        rng: np.random.Generator,
        threads: int | None,
        warm: WarmStart | None,
    ) -> Result:
        """HiGHS on the PuLP model (as pulp.HiGHS would pass it), from a warm start's plan."""
        hm, col = _highs_model(pulp, model, zs, budget)
        plan = None if warm is None else _highs.warm_plan(problem, warm, rng)
        start = None if plan is None else sf.columns(plan.x)[col]
        options: dict[str, Any] = {"mip_rel_gap": 0.0}
        if threads is not None:
            options["threads"] = int(threads)
        budget.check("building the PuLP model")
        limit = None if budget.time_limit is None else max(0.05, budget.remaining())
        res = _highs.solve(hm, options, start=start, time_limit=limit)
        if res is not None and res.values is not None:
            ours = np.empty(sf.n_columns)
            ours[col] = res.values  # HiGHS column i is the standard form's column col[i]
            res.values = ours
        result = _highs.to_result(
            problem, sf, res, plan, limit=budget.time_limit, rng=rng, obj_scale=obj_scale
        )
        result.info["backend"] = "HiGHS"
        if warm is not None:
            result.info["warm_start"] = {"reused": "MIP start" if plan is not None else "nothing"}
        return result

    def _solve_pulp(
        self,
        problem: AlignmentProblem,
        sf: StandardForm,
        obj_scale: float,
        pulp: Any,
        model: Any,
        zs: list[Any],
        budget: Budget,
        rng: np.random.Generator,
        threads: int | None,
    ) -> Result:
        """A PuLP back-end without highspy (HiGHS_CMD or CBC); no MIP start."""
        limit = None if budget.time_limit is None else max(0.05, budget.remaining())
        backend = _pulp_solver(limit, threads)
        if backend is None:  # pragma: no cover - pulp ships CBC
            raise InfeasibleError("no PuLP back-end (HiGHS or CBC) is installed")
        model.solve(backend)
        info: dict[str, Any] = {
            "backend": type(backend).__name__,
            "status": pulp.LpStatus.get(model.status, str(model.status)),
            "solution_status": int(model.sol_status),
        }
        values = np.array([v.varValue if v.varValue is not None else np.nan for v in zs[: sf.n_pairs]])
        if model.sol_status == pulp.LpSolutionInfeasible or model.status == pulp.LpStatusInfeasible:
            raise InfeasibleError(f"{info['backend']} proved that no assignment meets every constraint")
        if np.isnan(values).any() or model.sol_status not in (
            pulp.LpSolutionOptimal,
            pulp.LpSolutionIntegerFeasible,
        ):
            raise InfeasibleError(
                f"{info['backend']} found no assignment in the time limit (status {info['status']})"
            )
        x = sf.assignment(values)
        proved = model.sol_status == pulp.LpSolutionOptimal
        if check(problem, x):
            # Tolerances left a row marginally broken; fix it and claim no optimality.
            x = repair(problem, x, rng=rng)
            proved = False
            info["repaired"] = True
        bound = self._bound(model, backend)
        if bound is not None:
            bound /= obj_scale
            info["mip_dual_bound"] = bound
        return Result(assignment=x, bound=bound, optimal=proved, info=info)

    @staticmethod
    def _bound(model: Any, backend: Any) -> float | None:
        """HiGHS' MIP dual bound as an upper bound of the maximum, or None when unknown."""
        highs = getattr(model, "solverModel", None)
        if highs is None or not hasattr(highs, "getInfo"):
            return None
        try:
            value = float(highs.getInfo().mip_dual_bound)
        except (AttributeError, TypeError, ValueError):
            return None
        if not np.isfinite(value):
            return None
        # pulp hands HiGHS the negated objective (it minimises), so the bound flips sign.
        value = -value
        return value + 1e-9 * max(1.0, abs(value))
