"""The ``lagrangian`` solver class: options, the sample phases, the full phase, the polish."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..._validation import Boolean, Constraint, Interval
from ...errors import InfeasibleError
from ...problem import AlignmentProblem
from ..base import Budget, Result, RowSupport, Solver, register
from ._common import CHECK_PAIRS
from ._duals import Duals
from ._prices import State, dual_ascent
from ._primal import polish
from ._sampling import sample_problem, sample_stages


@register
class LagrangianSolver(Solver):
    """Lagrangian relaxation of every row spanning clients, with repair; reports the dual bound.

    Supports client rows with any weights (hard, lower and upper bounds), expert and total
    rows with any weights (hard or soft, lower and upper bounds); soft client rows are
    refused (see the package docstring).

    Options (keyword arguments of :func:`fedalign.solve`)
    -----------------------------------------------------
    max_iter : int, default 200
        Price updates at most (on the full problem).
    gap_tol : float, default 1e-4
        Stop when ``(bound - objective) / max(1, |bound|)`` falls to this.
    box : float, default 0.1
        Initial half-width of the box-step trust region, as a share of the spread of the
        desirability (prices live on that scale).
    repair_share : float, default 0.5
        Largest share of the elapsed time spent repairing subproblem choices.
    local_search : bool, default True
        Polish the best assignment with :func:`fedalign.solvers.repair.local_search`.
    candidates : int, default 8
        Experts per client enumerated first (``m`` of the module docstring).
    max_enum_experts : int, default 6
        Clients with a larger ``max_experts`` use the DP or the relaxation bound instead.
    sample_clients : int or None, default None
        Largest random sample of clients the price phases use. From 1,000 clients up,
        prices are first found on a sample of a quarter of the clients (250 to 1,000),
        then on samples four times larger up to this size (expert rows scaled by each
        sample's share; each phase warm-starts the next), then refined on all clients.
        ``None``: 4,000; ``0``: no sample phases.
    sample_share : float, default 0.5
        Share of the time limit given to the sample phases together.
    bb_tol : float, default 1e-4
        The branch and bound prunes subsets within ``bb_tol`` times the spread of the
        desirability of a client's incumbent, and adds that much to the client's bound:
        the bound stays valid (at most ``n_clients * bb_tol * spread`` looser) and flat
        subproblems stay cheap. 0 makes every subproblem exact.
    node_budget : int, default 800
        Live search cells (nodes x candidates) per client the branch and bound may hold;
        past it the search stops and each open client is bounded by its best open node's
        LP bound (valid, looser; ``info["exact_subproblems"]`` turns False).

    Notes
    -----
    ``Solution.info`` holds ``iterations``, ``exact_subproblems`` (False when the final
    bound came from bounded rather than solved subproblems: still valid, only looser),
    ``bound_history``, ``objective_history`` and ``repair_seconds``.
    """

    name = "lagrangian"
    exact = False
    supports = (
        RowSupport("client", "any"),
        RowSupport("expert", "any"),
        RowSupport("expert", "any", soft=True),
        RowSupport("total", "any"),
        RowSupport("total", "any", soft=True),
    )
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {
        "max_iter": [Interval(int, 1, None)],
        "gap_tol": [Interval(float, 0, None)],
        "box": [Interval(float, 0, None, closed="neither")],
        "repair_share": [Interval(float, 0, None)],
        "local_search": [Boolean()],
        "candidates": [Interval(int, 1, None)],
        "max_enum_experts": [Interval(int, 1, None)],
        "sample_clients": [Interval(int, 0, None), None],
        "sample_share": [Interval(float, 0, 1)],
        "bb_tol": [Interval(float, 0, None)],
        "node_budget": [Interval(int, 1, None)],
    }

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        max_iter: int = 200,
        gap_tol: float = 1e-4,
        box: float = 0.1,
        repair_share: float = 0.5,
        local_search: bool = True,
        candidates: int = 8,
        max_enum_experts: int = 6,
        sample_clients: int | None = None,
        sample_share: float = 0.5,
        bb_tol: float = 1e-4,
        node_budget: int = 800,
    ) -> Result:
        n, e = problem.shape
        if n * e <= CHECK_PAIRS:
            # Cheap necessary conditions first (at scale they cost a sort of every row, so
            # there they only explain a failure).
            reason = problem.infeasibility_reason()
            if reason is not None:
                raise InfeasibleError(reason)
        sub_options: dict[str, Any] = {
            "candidates": candidates,
            "max_enum_experts": max_enum_experts,
            "bb_tol": bb_tol,
            "node_budget": node_budget,
        }
        common = {
            "rng": rng,
            "gap_tol": gap_tol,
            "repair_share": repair_share,
            "sub_options": sub_options,
        }
        duals = Duals(problem)
        state = State(prices=duals.zeros())
        stages = sample_stages(n, sample_clients)
        full_box = _sample_phases(
            problem, state, stages, budget=budget, max_iter=max_iter, box=box,
            sample_share=sample_share, common=common,
        )
        bounds: list[float] = []
        objectives: list[float] = []
        # Leave time for the local search at the end.
        stop = budget.elapsed() + 0.85 * budget.remaining(default=np.inf)
        dual_ascent(
            problem, state, budget=budget, stop_at=stop, max_iter=max_iter, box=full_box,
            duals=duals, bounds=bounds, objectives=objectives, **common,  # type: ignore[arg-type]
        )
        if state.best_x is None:
            reason = problem.infeasibility_reason()
            if reason is not None:
                raise InfeasibleError(reason)
            if state.last_error is not None:
                raise InfeasibleError(
                    f"lagrangian: repair found no feasible assignment ({state.last_error})"
                )
            raise InfeasibleError("lagrangian: no feasible assignment found in the time limit")
        best_x, best_obj = state.best_x, state.best_obj
        if local_search:
            best_x = polish(problem, best_x, budget)
            best_obj = problem.objective(best_x)
        tol = 1e-9 * max(1.0, abs(state.bound))
        optimal = state.exact and state.bound - best_obj <= tol
        return Result(
            assignment=best_x,
            bound=state.bound,
            optimal=bool(optimal),
            info={
                "iterations": state.iterations,
                "exact_subproblems": state.exact,
                "bound_history": bounds,
                "objective_history": objectives,
                "repair_seconds": state.repair_time,
            },
        )


def _sample_phases(
    problem: AlignmentProblem,
    state: State,
    stages: list[int],
    *,
    budget: Budget,
    max_iter: int,
    box: float,
    sample_share: float,
    common: dict[str, Any],
) -> float:
    """Prices on growing samples of the clients, each stage warm-started from the last.

    Updates ``state.prices``; returns the box for the next phase (narrower once a sample
    has found prices).
    """
    n = problem.n_clients
    rng = common["rng"]
    full_box = box
    horizon = budget.remaining(default=np.inf)
    pre = state
    last_size = 0
    for k, size in enumerate(stages):
        share = sample_share * horizon / len(stages)
        if k > 0 and np.isfinite(horizon):
            # Keep room for the work on every client: one evaluation of the dual
            # function (predicted from this sample's cost per client), its repair and
            # a polish take about three and a half evaluations.
            full = 3.5 * pre.eval_seconds * n / last_size
            share = min(share, budget.remaining() - full)
            if share <= 0:
                break
        sample, sample_duals = sample_problem(problem, size, rng)
        pre = State(prices=state.prices)
        dual_ascent(
            sample, pre, budget=budget, stop_at=budget.elapsed() + share,
            max_iter=max_iter, box=full_box, primal=False, duals=sample_duals,
            **common,
        )
        state.prices = pre.prices
        full_box = box / 4.0
        last_size = size
    return full_box
