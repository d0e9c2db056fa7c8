"""Prices: the box-step cutting-plane method on the dual function (a trust-region bundle method).

The dual function ``L`` (:mod:`._duals`) is convex and an upper bound of the optimum at
every admissible price vector. Each evaluation solves every client's subproblem
(:class:`~._subproblems.Subproblems`) and gives a value and a subgradient; the next prices
minimise the piecewise-linear model built from every evaluation, inside a box around the
best prices so far (a small HiGHS LP). With ``primal``, each evaluation's choice is also
repaired into a feasible assignment (:mod:`._primal`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import InfeasibleError, TimeLimitError
from ...problem import AlignmentProblem, check, feasible
from ..base import Budget
from ..repair import local_search, repair
from ._common import MAX_CUTS, NEG
from ._duals import Duals
from ._primal import cover_to_caps, has_user_rows, price_repair, soft_caps, trim_to_caps
from ._subproblems import Subproblems, SubResult


@dataclass
class State:
    """Where a run of the dual method stands (prices, incumbent, bound, history)."""

    prices: list[NDArray[np.float64]]  # one array per priced side (:class:`Duals`)
    best_x: NDArray[np.bool_] | None = None
    best_obj: float = NEG
    bound: float = np.inf
    exact: bool = True
    iterations: int = 0
    repair_time: float = 0.0
    last_error: InfeasibleError | None = None
    eval_seconds: float = 0.0  # the latest evaluation of the dual function
    first_seconds: float = 0.0  # setting up the subproblems and their first evaluation


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
    duals: Duals | None = None,
    bounds: list[float] | None = None,
    objectives: list[float] | None = None,
) -> None:
    """Minimise the dual function by the box-step cutting-plane method; updates ``state``.

    Every evaluation of ``L`` at prices ``z`` solves every client's subproblem exactly (or
    bounds it) and yields a valid bound and a subgradient (:class:`Duals`). The next prices
    minimise the cutting-plane model ``max_k L_k + g_k . (z - z_k)`` inside a box of
    half-width ``delta`` (times each price's scale) around the best prices so far (a small
    LP, HiGHS). A step that achieves at least a tenth of the predicted decrease moves the
    centre (and widens the box when it achieves half); otherwise the cut is kept and the
    box narrows. With ``primal``, each subproblem choice is repaired into a feasible
    assignment (within ``repair_share`` of the time), and each new best one polished by a
    short local search. ``duals`` gives the priced rows of a sample of the clients (then
    ``primal`` is False); by default those of ``problem``.
    """
    t_setup = time.perf_counter()
    sub = Subproblems(problem, **sub_options)
    setup_seconds = time.perf_counter() - t_setup
    duals = Duals(problem) if duals is None else duals
    d = problem.desirability
    # integer desirability and no penalties: the optimum is an integer too
    integral = bool(np.all(d == np.round(d))) and not problem.soft_rows
    bundle = _start_bundle(problem, duals, state, box)
    scale = duals.box_scale()
    z_cap = duals.caps()
    z = bundle.center
    # A sample phase only prepares prices: once its model promises less than a quarter of
    # the gap the caller wants, more steps there would not change the full phase's result.
    converged = 1e-9 if primal else max(1e-9, 0.25 * gap_tol)
    for it in range(max_iter):
        state.iterations += 1
        t_eval = time.perf_counter()
        sub.deadline = _eval_deadline(
            budget, stop_at, first=it == 0 and primal, pairs=float(problem.n_clients) * problem.n_experts
        )
        res, price, value, grad = _evaluate(sub, duals, z)
        eval_seconds = time.perf_counter() - t_eval
        state.eval_seconds = eval_seconds
        if it == 0:
            state.first_seconds = setup_seconds + eval_seconds
        if not np.isfinite(value):  # a search stopped before any bound of some client
            break
        _record_bound(state, value, exact=res.exact, integral=integral)
        bundle.add(z, value, grad, first=it == 0)
        if primal and not budget.expired():
            _primal_step(
                problem, sub, res, price, state,
                budget=budget, stop_at=stop_at, repair_share=repair_share,
            )
        if bounds is not None and objectives is not None:
            bounds.append(state.bound)
            objectives.append(state.best_obj)
        if _done(state, bundle, budget, stop_at, eval_seconds, gap_tol if primal else None):
            break
        step = bundle.step(scale, z_cap)
        if step is None:
            break
        z = step
        if bundle.predicted <= converged * max(1.0, abs(state.bound)) or bundle.delta <= 1e-9 * bundle.spread:
            break  # the model cannot promise a (meaningfully) lower bound: converged
    state.prices = duals.unpack(bundle.center)


def _done(
    state: State, bundle: _Bundle, budget: Budget, stop_at: float, eval_seconds: float, gap_tol: float | None
) -> bool:
    """Whether the ascent stops after an evaluation: its plan is within ``gap_tol`` of the
    bound (None: no plans, a sample phase), the next evaluation would not finish by
    ``stop_at``, or nothing is priced."""
    tol = max(1.0, abs(state.bound))
    if gap_tol is not None and state.best_x is not None and state.bound - state.best_obj <= gap_tol * tol:
        return True
    return budget.elapsed() + eval_seconds >= stop_at or bundle.center.size == 0


def _start_bundle(problem: AlignmentProblem, duals: Duals, state: State, box: float) -> _Bundle:
    """The cutting-plane model, centred on ``state``'s prices, its box scaled to the spread
    of the desirabilities that fit."""
    d = problem.desirability
    spread = float(np.ptp(d[problem.fits])) if problem.fits.any() else 1.0
    return _Bundle(duals.pack(state.prices), box, max(spread, 1e-9))


def _evaluate(
    sub: Subproblems, duals: Duals, z: NDArray[np.float64]
) -> tuple[SubResult, NDArray[np.float64], float, NDArray[np.float64]]:
    """The dual function at packed prices ``z``: the subproblems' result, the pair prices,
    the value ``L(z)`` and a subgradient."""
    prices = duals.unpack(z)
    price = duals.price(prices)
    res = sub.solve(price)
    return res, price, duals.value(res.value, prices), duals.gradient(res.x, res.load, prices)


def _record_bound(state: State, value: float, *, exact: bool, integral: bool) -> None:
    """Keep ``value`` as the bound if it is the lowest yet (rounded down when the optimum is
    an integer and the subproblems were solved exactly)."""
    proven = value
    if integral and exact:
        proven = float(np.floor(value + 1e-9 * max(1.0, abs(value))))
    if proven < state.bound:
        state.bound = proven
        state.exact = exact


#: Seconds per pair a first repair (price repair, repair, fill) takes, generously (about 1.2 s
#: at 100,000 x 128 under a load of 3): what the first evaluation on every client leaves for it.
REPAIR_SECONDS_PER_PAIR = 1e-7


def _eval_deadline(
    budget: Budget, stop_at: float, *, first: bool, pairs: float
) -> float | None:
    """When an evaluation's searches must stop (perf_counter time; None without a limit).

    A phase's evaluations end by ``stop_at``. The first one on every client of a primal
    phase may use the time up to the limit, the final polish's share included, but leaves
    what repairing its choice into a first plan is expected to take, and at least a fifth
    of the time left (a hard repair can take longer than expected:
    measured, no plan in 30 s at 100,000 x 128 with memory and deadline rows when it left
    only the estimate), but it may always run to halfway. Its searches are anytime, so a cut
    evaluation still chooses, but a choice cut short is a poor one (at 100,000 x 128 under a
    10 s limit, ending it at halfway gave a 25-38 % gap instead of about 1 %): it gets all
    the time the repair can spare.
    """
    if not np.isfinite(stop_at):
        return None
    now = budget.elapsed()
    end = stop_at
    if first:
        # The first plan matters most: it may use the final polish's share of the time too
        # (``stop_at`` keeps it; the polish is optional), up to the limit itself.
        last = now + budget.remaining()
        span = max(0.0, last - now)
        end = max(now + 0.5 * span, last - max(REPAIR_SECONDS_PER_PAIR * pairs, 0.2 * span))
    return budget.start + end


class _Bundle:
    """The cutting-plane model of the dual function and the box-step trust region.

    ``center`` holds the best prices so far and ``value_c`` their dual value; ``delta`` is
    the box's half-width (in desirability units, times each price's scale).
    """

    def __init__(self, center: NDArray[np.float64], box: float, spread: float) -> None:
        self.center = center
        self.spread = spread
        self.delta = box * spread
        self.value_c = np.inf
        self.predicted = 0.0  # the decrease the model promised for the last step
        self.cuts_g: list[NDArray[np.float64]] = []
        self.cuts_c: list[float] = []  # L_k - g_k . z_k

    def add(
        self, z: NDArray[np.float64], value: float, grad: NDArray[np.float64], *, first: bool
    ) -> None:
        """Add the cut of an evaluation; move the centre or narrow the box.

        A step that achieves at least a tenth of the predicted decrease moves the centre
        (and widens the box when it achieves half); otherwise the box narrows.
        """
        self.cuts_g.append(grad)
        self.cuts_c.append(value - float(grad @ z))
        if len(self.cuts_g) > MAX_CUTS:
            self.cuts_g.pop(0)
            self.cuts_c.pop(0)
        if first:
            self.center, self.value_c = z, value
            return
        actual = self.value_c - value
        if actual >= 0.1 * self.predicted:
            if actual >= 0.5 * self.predicted:
                self.delta = min(2.0 * self.delta, self.spread)
            self.center, self.value_c = z, value
        else:
            self.delta *= 0.5

    def step(
        self, scale: NDArray[np.float64], z_cap: NDArray[np.float64]
    ) -> NDArray[np.float64] | None:
        """The next prices (None if the master LP fails); sets :attr:`predicted`."""
        out = _master(self.cuts_g, self.cuts_c, self.center, self.delta * scale, z_cap)
        if out is None:
            return None
        z, model = out
        self.predicted = self.value_c - model
        return z


def _master(
    cuts_g: list[NDArray[np.float64]],
    cuts_c: list[float],
    center: NDArray[np.float64],
    half_width: NDArray[np.float64],
    z_cap: NDArray[np.float64],
) -> tuple[NDArray[np.float64], float] | None:
    """The next prices: the minimum of the cutting-plane model inside the box around ``center``.

    Minimises ``t`` subject to ``g_k . z - t <= -(L_k - g_k . z_k)`` for every cut, with
    ``max(0, center - half_width) <= z <= min(center + half_width, z_cap)`` (a small HiGHS
    LP). Returns the prices and the model's value there, or None if HiGHS fails.
    """
    from scipy.optimize import linprog

    k = len(cuts_g)
    a_ub = np.hstack([np.array(cuts_g), -np.ones((k, 1))])
    b_ub = -np.array(cuts_c)
    lower = np.append(np.maximum(0.0, center - half_width), -np.inf)
    upper = np.append(np.minimum(center + half_width, z_cap), np.inf)
    cost = np.zeros(center.size + 1)
    cost[-1] = 1.0
    lp = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=np.column_stack([lower, upper]), method="highs")
    if lp.status != 0 or lp.x is None:
        return None
    return np.asarray(lp.x[:-1]), float(lp.x[-1])


def _primal_step(
    problem: AlignmentProblem,
    sub: Subproblems,
    res: SubResult,
    price: NDArray[np.float64],
    state: State,
    *,
    budget: Budget,
    stop_at: float,
    repair_share: float,
) -> None:
    """Turn the subproblems' choice into a feasible assignment; keep and polish a new best.

    The choice itself when it is feasible; else (within ``repair_share`` of the time) the
    price repair and :func:`repair` with the reduced profits as priority.
    """
    load = res.load
    feasible_rows = bool(
        (load <= problem.expert_max_clients).all() and (load >= problem.expert_min_clients).all()
    )
    if feasible_rows:
        # every other row too (a relaxed client choice may miss a minimum)
        feasible_rows = feasible(problem, res.x)
    cand: NDArray[np.bool_] | None = None
    if feasible_rows:
        cand = res.x
    elif state.best_x is None or state.repair_time <= repair_share * budget.elapsed():
        t0 = time.perf_counter()
        # the first plan may take half the stated overrun: late is better than none
        cand = _repaired(problem, sub, res.x, price, state, budget.with_grace() if state.best_x is None else budget)
        state.repair_time += time.perf_counter() - t0
    caps = soft_caps(problem) if problem.soft_rows else None
    if caps is not None and (load > caps).any():
        # The choice piles clients onto experts that a soft row charges for: more
        # candidates with the soft bounds as caps; keep the best. First the choice cut
        # back to the caps (cheap), then, with time, the price repair to the caps.
        t0 = time.perf_counter()
        # the first plan may take the stated overrun for it: the choice itself, feasible
        # as it may be, is what the soft row charges for
        first = budget.with_grace() if state.best_x is None else budget
        cand = _better(problem, cand, _trimmed(problem, res.x, price, caps, state, first))
        if not budget.expired() and (
            state.best_x is None or state.repair_time <= repair_share * budget.elapsed()
        ):
            first = budget.with_grace() if state.best_x is None and cand is None else budget
            cand = _better(problem, cand, _repaired(problem, sub, res.x, price, state, first, cap=caps))
        state.repair_time += time.perf_counter() - t0
    if cand is None:
        return
    obj = problem.objective(cand)
    if obj > state.best_obj:
        t0 = time.perf_counter()
        # a short polish: a quarter of what is left before stop_at
        share = 0.25 * max(0.0, stop_at - budget.elapsed())
        polished = local_search(problem, cand, budget=share)
        if not has_user_rows(problem) or (
            not check(problem, polished) and problem.objective(polished) >= obj
        ):
            cand = polished
        state.repair_time += time.perf_counter() - t0
        state.best_obj, state.best_x = problem.objective(cand), cand


def _better(
    problem: AlignmentProblem, a: NDArray[np.bool_] | None, b: NDArray[np.bool_] | None
) -> NDArray[np.bool_] | None:
    """The candidate with the higher objective (either may be None)."""
    if a is None or (b is not None and problem.objective(b) > problem.objective(a)):
        return b
    return a


def _trimmed(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    caps: NDArray[np.float64],
    state: State,
    budget: Budget,
) -> NDArray[np.bool_] | None:
    """The choice cut back to the soft caps (:func:`trim_to_caps`), the clients it left
    short given experts with room (:func:`cover_to_caps`), then repaired without a fill;
    None (and ``state.last_error``) if the repair fails."""
    # no (n, E) reduced-profit matrix: at 100,000 x 128 it is 100 MB more at the peak
    trimmed = trim_to_caps(x, problem.desirability, price, caps)
    cover_to_caps(problem, trimmed, price, caps, budget)
    try:
        cand = repair(problem, trimmed, fill=False, budget=budget)
    except InfeasibleError as exc:  # TimeLimitError included
        state.last_error = exc
        return None
    if has_user_rows(problem) and check(problem, cand):
        return None
    return cand


def _repaired(
    problem: AlignmentProblem,
    sub: Subproblems,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    state: State,
    budget: Budget,
    cap: NDArray[np.float64] | None = None,
) -> NDArray[np.bool_] | None:
    """The price repair (to ``cap``, default the expert maximums), then :func:`repair`;
    None (and ``state.last_error``) if it fails.

    Under a time limit the repair looks at the clock: out of time it gives up
    (``state.last_error`` is then a :class:`~fedalign.TimeLimitError`).
    """
    d = problem.desirability
    cand: NDArray[np.bool_] | None = None
    guided: NDArray[np.bool_] | None = None
    try:
        # Reduced profits as priority: congested experts are dropped and filled
        # last, and the fill only adds pairs worth their expert's price.
        guided = price_repair(problem, sub, x, price, cap=cap, budget=budget)
        # With soft caps the fill prices the soft rows' penalties in (no priority given)
        cand = repair(
            problem, guided, fill=True, priority=None if cap is not None else d - price, budget=budget
        )
    except TimeLimitError as exc:
        state.last_error = exc
        if guided is not None and feasible(problem, guided):
            # Out of time in the fill: the price repair's plan is feasible already (it
            # only drops pairs and re-solves clients' own knapsacks); keep it.
            cand = guided
    except InfeasibleError:
        try:  # tight equality rows (e.g. GAP): the plain desirability order may pass
            cand = repair(problem, x, fill=True, budget=budget)
        except InfeasibleError as exc:
            state.last_error = exc
    if cand is not None and has_user_rows(problem):
        # The repair toolkit may not settle every kind of row: never keep a plan that fails.
        broken = check(problem, cand)
        if broken:
            state.last_error = InfeasibleError(
                f"repair left {len(broken)} violations ({broken[0].message})"
            )
            cand = None
    return cand
