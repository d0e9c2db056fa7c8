"""``milp``: the exact binary model in PuLP, solved by HiGHS (or CBC when HiGHS is missing).

One binary per pair that is allowed and fits; the rows of DESIGN.md §1 with float
coefficients (knapsack capacities include the checker's float tolerance,
:func:`~fedalign.problem.capacity_tolerance`). The model is built from arrays: pairs are
grouped by client and by expert with numpy, and each row is one ``LpAffineExpression``
made from a zipped list, so Python touches each pair a constant number of times (PuLP has
no array API; DESIGN.md §2 notes it builds about a million variables in 10 s).

Solver: ``pulp.HiGHS`` (the highspy library) when available, else ``HiGHS_CMD``, else
``PULP_CBC_CMD``; quiet, with the time limit and a relative gap of 0. HiGHS prints a banner
from native code when its model object is built, before ``msg=False`` can take effect, so
file descriptors 1 and 2 point to the null device for that instant (:func:`fedalign._fd.native_silence`).
The status is ``optimal`` only when the solver proved it; the bound is HiGHS' MIP dual bound
(None with CBC unless optimal). A solution that HiGHS' integrality or feasibility tolerances leave
slightly outside a row is rounded and repaired, and then reported as merely feasible.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._fd import native_silence
from ..errors import InfeasibleError
from ..problem import AlignmentProblem, capacity_tolerance, check
from .base import Budget, Result, Solver, register
from .repair import repair

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


def _groups(keys: NDArray[np.intp], size: int) -> list[NDArray[np.intp]]:
    """Pair indices grouped by key (one array per key value ``0..size-1``)."""
    order = np.argsort(keys, kind="stable")
    return np.split(order, np.searchsorted(keys[order], np.arange(1, size)))


@register
class MILPSolver(Solver):
    """PuLP model of the full problem, solved by HiGHS or CBC.

    Options
    -------
    threads : int, optional
        Solver threads (the back-end's default when None).
    """

    name = "milp"
    exact = True
    requires = ("pulp",)
    extra = None

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        threads: int | None = None,
    ) -> Result:
        import pulp

        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
        ):
            raise ValueError(f"threads: expected an int >= 1 or None, got {threads!r}")
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)
        n, e = problem.shape
        rows, cols = np.nonzero(problem.fits)
        m = rows.size
        if m == 0:  # nothing fits: the empty assignment is the only one
            return Result(np.zeros(problem.shape, dtype=bool), bound=0.0, optimal=True)

        model = pulp.LpProblem("fedalign", pulp.LpMaximize)
        # PuLP >= 3.3 owns variables through the model; older versions build them directly.
        new_var = getattr(model, "add_variable", None) or pulp.LpVariable
        xs = [new_var(f"x{k}", 0, 1, pulp.LpBinary) for k in range(m)]
        model += pulp.LpAffineExpression(
            zip(xs, problem.desirability[rows, cols].tolist(), strict=True)
        )

        def add_rows(
            groups: list[NDArray[np.intp]],
            coef: NDArray[np.float64] | None,
            lo: NDArray[Any] | None,
            hi: NDArray[Any],
            label: str,
        ) -> None:
            for r, pairs in enumerate(groups):
                if not pairs.size:
                    continue
                ks = pairs.tolist()
                weights = [1.0] * len(ks) if coef is None else coef[pairs].tolist()
                expr = pulp.LpAffineExpression(zip([xs[k] for k in ks], weights, strict=True))
                model.addConstraint(expr <= float(hi[r]), f"{label}_max_{r}")
                if lo is not None and lo[r] > 0:
                    model.addConstraint(expr >= float(lo[r]), f"{label}_min_{r}")

        by_client = _groups(rows, n)
        add_rows(by_client, None, problem.min_experts, problem.max_experts, "client")
        add_rows(_groups(cols, e), None, problem.expert_min_clients, problem.expert_max_clients, "expert")
        if problem.expert_memory is not None and problem.client_memory is not None:
            cap = problem.client_memory + capacity_tolerance(problem.client_memory)
            add_rows(by_client, problem.expert_memory[cols], None, cap, "memory")
        if problem.train_time is not None and problem.deadline is not None:
            cap = problem.deadline + capacity_tolerance(problem.deadline)
            add_rows(by_client, problem.train_time[rows, cols], None, cap, "deadline")

        limit = None if budget.time_limit is None else max(0.05, budget.remaining())
        backend = _pulp_solver(limit, None if threads is None else int(threads))
        if backend is None:  # pragma: no cover - pulp ships CBC
            raise InfeasibleError("no PuLP back-end (HiGHS or CBC) is installed")
        model.solve(backend)
        info: dict[str, Any] = {
            "backend": type(backend).__name__,
            "status": pulp.LpStatus.get(model.status, str(model.status)),
            "solution_status": int(model.sol_status),
        }
        values = np.array([v.varValue if v.varValue is not None else np.nan for v in xs])
        if model.sol_status == pulp.LpSolutionInfeasible or model.status == pulp.LpStatusInfeasible:
            raise InfeasibleError(f"{info['backend']} proved that no assignment meets every constraint")
        if np.isnan(values).any() or model.sol_status not in (
            pulp.LpSolutionOptimal,
            pulp.LpSolutionIntegerFeasible,
        ):
            raise InfeasibleError(
                f"{info['backend']} found no assignment in the time limit (status {info['status']})"
            )
        x = np.zeros(problem.shape, dtype=bool)
        chosen = values > 0.5
        x[rows[chosen], cols[chosen]] = True
        proved = model.sol_status == pulp.LpSolutionOptimal
        if check(problem, x):
            # Tolerances left a row marginally broken; fix it and claim no optimality.
            x = repair(problem, x, rng=rng)
            proved = False
            info["repaired"] = True
        bound = self._bound(model, backend)
        if bound is not None:
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
