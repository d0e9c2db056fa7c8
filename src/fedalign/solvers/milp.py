"""``milp``: the exact model in PuLP, built from the standard form, solved by HiGHS (or CBC).

The model is :func:`~fedalign.solvers.standard.standard_form`: one binary per pair that is
allowed and fits, one continuous column per excess band of a soft row, every row of the
problem (hard bounds with the checker's float tolerance,
:func:`~fedalign.problem.capacity_tolerance`). PuLP has no array API: each matrix row
becomes one ``LpAffineExpression`` made from a zipped slice of the CSR arrays (turned into
Python lists once), so Python touches each nonzero a constant number of times (DESIGN.md §2
notes PuLP builds about a million variables in 10 s).

Solver: ``pulp.HiGHS`` (the highspy library) when available, else ``HiGHS_CMD``, else
``PULP_CBC_CMD``; quiet, with the time limit and a relative gap of 0. HiGHS prints a banner
from native code when its model object is built, before ``msg=False`` can take effect, so
file descriptors 1 and 2 point to the null device for that instant (:func:`fedalign._fd.native_silence`).
The status is ``optimal`` only when the solver proved it; the bound is HiGHS' MIP dual bound
(None with CBC unless optimal), a bound on the true objective since at the optimum the excess
columns cost exactly the penalties. A solution that HiGHS' integrality or feasibility
tolerances leave slightly outside a row is rounded and repaired, and then reported as merely
feasible.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from .._fd import native_silence
from .._validation import Constraint, Interval
from ..errors import InfeasibleError
from ..problem import AlignmentProblem, check
from .base import Budget, Result, Solver, register
from .repair import repair
from .standard import ALL_ROWS, StandardForm, standard_form

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


def _build(pulp: Any, sf: StandardForm) -> tuple[Any, list[Any]]:
    """The PuLP model of a standard form, and its variables in column order."""
    model = pulp.LpProblem("fedalign", pulp.LpMaximize)
    # PuLP >= 3.3 owns variables through the model; older versions build them directly.
    new_var = getattr(model, "add_variable", None) or pulp.LpVariable
    m = sf.n_pairs
    # PuLP hands columns to the solver sorted by name: pairs "x<k>" first, then bands "y<k>".
    zs = [new_var(f"x{k}", 0, 1, pulp.LpBinary) for k in range(m)]
    zs += [new_var(f"y{k}", 0, w, pulp.LpContinuous) for k, w in enumerate(sf.col_upper[m:].tolist())]
    model += pulp.LpAffineExpression(zip(zs, sf.c.tolist(), strict=True))
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
    return model, zs


@register
class MILPSolver(Solver):
    """PuLP model of the standard form, solved by HiGHS or CBC.

    Options
    -------
    threads : int, optional
        Solver threads (the back-end's default when None).
    """

    name = "milp"
    exact = True
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
    ) -> Result:
        import pulp

        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)
        sf = standard_form(problem)
        reason = sf.empty_conflict(problem)
        if reason is not None:
            raise InfeasibleError(reason)
        if sf.n_pairs == 0:  # nothing fits: the empty assignment is the only one
            return Result(np.zeros(problem.shape, dtype=bool), optimal=True)
        sf, obj_scale = sf.normalised()  # units near 1 for HiGHS; exact powers of two
        model, zs = _build(pulp, sf)

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
