"""The ``lagrangian`` solver class: options, the sample phases, the full phase, the polish."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from ..._validation import Boolean, Constraint, Interval
from ...errors import InfeasibleError, TimeLimitError
from ...problem import AlignmentProblem
from ..base import Budget, Result, RowSupport, Solver, register
from ..warm import WarmStart
from ._common import CHECK_PAIRS
from ._duals import Duals, price_info, warm_prices
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
    ``bound_history``, ``objective_history``, ``repair_seconds``, ``seconds`` (per phase:
    ``setup``, ``samples``, ``full``, ``polish``) and ``prices`` (the final
    prices of every expert and total row, keyed by row name, side and expert id: what a
    warm start of the next round reads, :mod:`fedalign.solvers.warm`).

    Warm start: the earlier solution's prices on the rows this problem shares (by row name,
    side and expert id; unknown ones start at 0, soft ones capped at their last band
    price) are where the sample phases start (from 1,000 clients; below, where there are
    none, the full phase starts there with a narrow trust region). The bound stays proven:
    the dual function bounds the optimum at *any* admissible prices.
    """

    name = "lagrangian"
    exact = False
    warm_start = "prices on the expert and total rows (by row name and expert id)"
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
        warm: WarmStart | None = None,
    ) -> Result:
        n, e = problem.shape
        if n * e <= CHECK_PAIRS:
            # Cheap necessary conditions first (at scale they cost a sort of every row, so
            # there they only explain a failure).
            reason = problem.infeasibility_reason()
            if reason is not None:
                raise InfeasibleError(reason)
        sub_options: dict[str, Any] = {
            "candidates": candidates, "max_enum_experts": max_enum_experts,
            "bb_tol": bb_tol, "node_budget": node_budget,
        }  # fmt: skip
        common = {"rng": rng, "gap_tol": gap_tol, "repair_share": repair_share, "sub_options": sub_options}
        duals = Duals(problem)
        state = State(prices=duals.zeros())
        seconds: dict[str, float] = {"setup": budget.elapsed()}
        first_pass = _first_pass_seconds(problem, budget)
        _check_first_plan_fits(problem, budget, first_pass)
        reused = None if warm is None else warm_prices(duals, warm)
        if reused is not None:
            # Prices from a related problem start the sample phases (which still run: on
            # 20,000-100,000-client rounds the first full evaluation at another cohort's
            # prices, without them, was slower and looser than a cold solve; see
            # docs/benchmarks.md, consecutive rounds).
            state.prices = reused[0]
        stages = sample_stages(n, sample_clients)
        full_box = box / 4.0 if not stages and reused is not None else _sample_phases(
            problem, state, stages, budget=budget, max_iter=max_iter, box=box,
            sample_share=sample_share, common=common, reserve=first_pass or 0.0,
        )  # fmt: skip
        seconds["samples"] = budget.elapsed() - seconds["setup"]
        _check_first_plan_fits(problem, budget, first_pass)
        bounds: list[float] = []
        objectives: list[float] = []
        # Leave time for the local search at the end.
        stop = budget.elapsed() + 0.85 * budget.remaining(default=np.inf)
        dual_ascent(
            problem, state, budget=budget, stop_at=stop, max_iter=max_iter, box=full_box,
            duals=duals, bounds=bounds, objectives=objectives, **common,  # type: ignore[arg-type]
        )
        if state.best_x is None:
            raise _no_plan(problem, state, budget)
        seconds["full"] = budget.elapsed() - seconds["samples"] - seconds["setup"]
        best_x, best_obj = state.best_x, state.best_obj
        if local_search:
            best_x = polish(problem, best_x, budget)
            best_obj = problem.objective(best_x)
        seconds["polish"] = budget.elapsed() - sum(seconds.values())
        tol = 1e-9 * max(1.0, abs(state.bound))
        info = _info(problem, duals, state, bounds, objectives, seconds)
        if reused is not None:
            info["warm_start"] = {"reused": "prices", "prices_matched": reused[1]}
        return Result(
            assignment=best_x,
            bound=state.bound,
            optimal=bool(state.exact and state.bound - best_obj <= tol),
            info=info,
        )


def _info(
    problem: AlignmentProblem,
    duals: Duals,
    state: State,
    bounds: list[float],
    objectives: list[float],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """``Solution.info`` of a run: iterations, histories, where the time went, the prices."""
    return {
        "iterations": state.iterations,
        "exact_subproblems": state.exact,
        "bound_history": bounds,
        "objective_history": objectives,
        "repair_seconds": state.repair_time,
        "seconds": seconds,
        "prices": price_info(problem, duals, state.prices),
    }


def _no_plan(problem: AlignmentProblem, state: State, budget: Budget) -> InfeasibleError:
    """Why the dual ascent ended without a feasible plan: the time limit, a proven reason,
    or the repair's last failure."""
    if isinstance(state.last_error, TimeLimitError) or budget.expired():
        # No time left to look for a reason either.
        return TimeLimitError(budget.message("turning prices into its first plan"))
    reason = problem.infeasibility_reason()
    if reason is not None:
        return InfeasibleError(reason)
    if state.last_error is not None:
        return InfeasibleError(f"lagrangian: repair found no feasible assignment ({state.last_error})")
    return InfeasibleError("lagrangian: no feasible assignment found in the time limit")


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
    reserve: float = 0.0,
) -> float:
    """Prices on growing samples of the clients, each stage warm-started from the last.

    Updates ``state.prices``; returns the box for the next phase (narrower once a sample
    has found prices). ``reserve`` seconds of the limit are kept for the first pass over
    every client.
    """
    n = problem.n_clients
    rng = common["rng"]
    full_box = box
    horizon = budget.remaining(default=np.inf)
    pre = state
    last_size = 0
    for k, size in enumerate(stages):
        share = sample_share * horizon / len(stages)
        if np.isfinite(horizon):
            share = min(share, budget.remaining() - reserve)
            if share <= 0:
                break
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


#: The shortest first pass over every client (setting up the subproblems, one evaluation
#: cut at its deadline, one repair) in units of the time one read of the desirability
#: matrix takes (``max`` over each row): 130-180 measured at 100,000 x 128 (uniform,
#: deadline, tight-memory) on the 2-core CI machine under loads of 4-8.
FIRST_PASS_READS = 150.0
#: Problems smaller than this (client-expert pairs) are not predicted: their first pass
#: takes milliseconds.
PREDICT_PAIRS = 1_000_000


def _first_pass_seconds(problem: AlignmentProblem, budget: Budget) -> float | None:
    """Predicted seconds of the first pass over every client (None: small, or no limit).

    Measured by reading the desirability matrix once (the best of two reads), so the
    prediction follows the machine's speed and load at the time.
    """
    n, e = problem.shape
    if budget.time_limit is None or n * e < PREDICT_PAIRS:
        return None
    reads = []
    for _ in range(2):
        t0 = time.perf_counter()
        problem.desirability.max(axis=1)
        reads.append(time.perf_counter() - t0)
    return FIRST_PASS_READS * min(reads)


def _check_first_plan_fits(
    problem: AlignmentProblem, budget: Budget, predicted: float | None
) -> None:
    """Raise :class:`TimeLimitError` now when the first plan on every client cannot come in time.

    The first pass over every client (setting up the subproblems, one evaluation, one
    repair) cannot be cut short without leaving clients with no choice at all, so when it
    is predicted to end past the limit plus its tolerance (``max(10 %, 0.2 s)``) the solver
    says so at once instead of returning seconds late.
    """
    if predicted is None or budget.time_limit is None:
        return
    left = budget.remaining()
    slack = max(0.1 * budget.time_limit, 0.2)
    if predicted > left + 0.5 * slack:
        n, e = problem.shape
        raise TimeLimitError(
            f"solver 'lagrangian' cannot have a first plan within its time limit of "
            f"{budget.time_limit:g} s: at {n:,} x {e} a first pass over every client takes "
            f"about {predicted:.1f} s on this machine now, and {left:.1f} s are left (the "
            "problem may well be feasible: give it more time)"
        )
