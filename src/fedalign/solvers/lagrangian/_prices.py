"""Prices: the box-step cutting-plane method on the dual function (a trust-region bundle method).

The dual function ``L(lam, mu) = sum_i v_i(lam - mu) + lam @ expert_max_clients - mu @
expert_min_clients`` is convex and an upper bound of the optimum at every ``lam, mu >= 0``.
Each evaluation solves every client's subproblem (:class:`~._subproblems.Subproblems`) and
gives a value and a subgradient; the next prices minimise the piecewise-linear model built
from every evaluation, inside a box around the best prices so far (a small HiGHS LP). With
``primal``, each evaluation's choice is also repaired into a feasible assignment
(:mod:`._primal`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import InfeasibleError
from ...problem import AlignmentProblem
from ..base import Budget
from ..repair import local_search, repair
from ._common import MAX_CUTS, NEG
from ._primal import price_repair
from ._subproblems import Subproblems, SubResult


@dataclass
class State:
    """Where a run of the dual method stands (prices, incumbent, bound, history)."""

    lam: NDArray[np.float64]
    mu: NDArray[np.float64]
    best_x: NDArray[np.bool_] | None = None
    best_obj: float = NEG
    bound: float = np.inf
    exact: bool = True
    iterations: int = 0
    repair_time: float = 0.0
    last_error: InfeasibleError | None = None
    eval_seconds: float = 0.0  # the latest evaluation of the dual function


def dual_ascent(
    problem: AlignmentProblem,
    state: State,
    *,
    budget: Budget,
    stop_at: float,
    rng: np.random.Generator,
    max_iter: int,
    gap_tol: float,
    box: float,
    repair_share: float,
    sub_options: dict[str, Any],
    primal: bool = True,
    caps: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
    bounds: list[float] | None = None,
    objectives: list[float] | None = None,
) -> None:
    """Minimise the dual function by the box-step cutting-plane method; updates ``state``.

    Every evaluation of ``L`` at prices ``(lam, mu)`` solves every client's subproblem
    exactly (or bounds it) and yields a valid bound and a subgradient
    ``(cap_hi - load, load - cap_lo)``. The next prices minimise the cutting-plane model
    ``max_k L_k + g_k . (z - z_k)`` inside a box of half-width ``delta`` around the best
    prices so far (a small LP, HiGHS). A step that achieves at least a tenth of the
    predicted decrease moves the centre (and widens the box when it achieves half);
    otherwise the cut is kept and the box narrows. With ``primal``, each subproblem
    choice is repaired into a feasible assignment (within ``repair_share`` of the time),
    and each new best one polished by a short local search. ``caps`` overrides the
    expert rows (fractional ones, for a sample of the clients; then ``primal`` is False).
    """
    from scipy.optimize import linprog

    n, e = problem.shape
    sub = Subproblems(problem, **sub_options)
    if caps is None:
        cap_hi = problem.expert_max_clients.astype(np.float64)
        cap_lo = problem.expert_min_clients.astype(np.float64)
    else:
        cap_hi, cap_lo = caps
    fit_count = problem.fits.sum(axis=0)
    # Only rows that can bind get a price: lam_j for caps below the clients that fit j,
    # mu_j for positive minimums. The others stay at 0, their optimal value.
    hi_rows = np.flatnonzero(cap_hi < np.minimum(fit_count, problem.max_experts.sum()))
    lo_rows = np.flatnonzero(cap_lo > 0)
    n_hi = hi_rows.size
    d = problem.desirability
    integral = bool(np.all(d == np.round(d)))
    spread = float(np.ptp(d[problem.fits])) if problem.fits.any() else 1.0
    spread = max(spread, 1e-9)
    delta = box * spread

    def prices(z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lam = np.zeros(e)
        mu = np.zeros(e)
        lam[hi_rows] = z[:n_hi]
        mu[lo_rows] = z[n_hi:]
        return lam, mu

    def evaluate(z: NDArray[np.float64]) -> tuple[float, NDArray[np.float64], SubResult]:
        lam, mu = prices(z)
        res = sub.solve(lam - mu)
        value = res.value + float(lam @ cap_hi) - float(mu @ cap_lo)
        grad = np.concatenate([(cap_hi - res.load)[hi_rows], (res.load - cap_lo)[lo_rows]])
        return value, grad, res

    center = np.concatenate([state.lam[hi_rows], state.mu[lo_rows]])
    cuts_g: list[NDArray[np.float64]] = []
    cuts_c: list[float] = []  # L_k - g_k . z_k
    value_c = np.inf
    predicted = 0.0
    z = center
    for it in range(max_iter):
        state.iterations += 1
        t_eval = time.perf_counter()
        value, grad, res = evaluate(z)
        eval_seconds = time.perf_counter() - t_eval
        state.eval_seconds = eval_seconds
        lam_z, mu_z = prices(z)
        res_price = lam_z - mu_z
        proven = value
        if integral and res.exact:
            # integer desirability: the optimum is an integer too
            proven = float(np.floor(value + 1e-9 * max(1.0, abs(value))))
        if proven < state.bound:
            state.bound = proven
            state.exact = res.exact
        cuts_g.append(grad)
        cuts_c.append(value - float(grad @ z))
        if len(cuts_g) > MAX_CUTS:
            cuts_g.pop(0)
            cuts_c.pop(0)
        if it == 0:
            center, value_c = z, value
        else:
            actual = value_c - value
            if actual >= 0.1 * predicted:
                if actual >= 0.5 * predicted:
                    delta = min(2.0 * delta, spread)
                center, value_c = z, value
            else:
                delta *= 0.5

        load = res.load
        feasible_rows = bool(
            (load <= problem.expert_max_clients).all() and (load >= problem.expert_min_clients).all()
        )
        cand: NDArray[np.bool_] | None = None
        if primal and feasible_rows:
            cand = res.x
        elif primal and (
            state.best_x is None or state.repair_time <= repair_share * budget.elapsed()
        ):
            t0 = time.perf_counter()
            try:
                # Reduced profits as priority: congested experts are dropped and filled
                # last, and the fill only adds pairs worth their expert's price.
                guided = price_repair(problem, sub, res.x, res_price)
                cand = repair(problem, guided, fill=True, priority=d - res_price)
            except InfeasibleError:
                try:  # tight equality rows (e.g. GAP): the plain desirability order may pass
                    cand = repair(problem, res.x, fill=True)
                except InfeasibleError as exc:
                    state.last_error = exc
            state.repair_time += time.perf_counter() - t0
        if cand is not None:
            obj = problem.objective(cand)
            if obj > state.best_obj:
                t0 = time.perf_counter()
                # a short polish: a quarter of what is left before stop_at
                share = 0.25 * max(0.0, stop_at - budget.elapsed())
                cand = local_search(problem, cand, budget=share)
                state.repair_time += time.perf_counter() - t0
                state.best_obj, state.best_x = problem.objective(cand), cand
        if bounds is not None and objectives is not None:
            bounds.append(state.bound)
            objectives.append(state.best_obj)

        tol = max(1.0, abs(state.bound))
        if primal and state.best_x is not None and state.bound - state.best_obj <= gap_tol * tol:
            break
        # Stop when the next evaluation would not finish in time.
        if budget.elapsed() + eval_seconds >= stop_at or center.size == 0:
            break
        # next prices: minimise the cutting-plane model inside the box around the centre
        k = len(cuts_g)
        a_ub = np.hstack([np.array(cuts_g), -np.ones((k, 1))])
        b_ub = -np.array(cuts_c)
        lower = np.append(np.maximum(0.0, center - delta), -np.inf)
        upper = np.append(center + delta, np.inf)
        cost = np.zeros(center.size + 1)
        cost[-1] = 1.0
        lp = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=np.column_stack([lower, upper]), method="highs")
        if lp.status != 0 or lp.x is None:
            break
        z = np.asarray(lp.x[:-1])
        predicted = value_c - float(lp.x[-1])
        if predicted <= 1e-9 * tol or delta <= 1e-9 * spread:
            break  # the model cannot promise a lower bound: converged
    state.lam, state.mu = prices(center)
