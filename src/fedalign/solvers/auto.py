"""``auto``: picks a solver by the problem's structure and size, and runs it.

The choice (:func:`choose`) follows what each solver declares it supports (its
``supports``) and what the benchmarks measured (docs/benchmarks.md):

1. Every row reduces to counts (``flow`` accepts the problem: the count rows, knapsack rows
   whose experts all weigh the same, soft per-expert load rows): ``flow``, exact min-cost
   flow, fast at any size.
2. Other rows on a small problem (``n_clients * n_experts <= SMALL_PAIRS``): an exact
   MILP -- ``milp`` (PuLP + HiGHS/CBC) if installed, else ``cpsat`` -- unless a time limit
   is given and every client takes at most ``FEW_EXPERTS`` experts. In that regime (the
   federated one) ``lagrangian`` solves each client's knapsack exactly and typically ends
   within 1e-4 of its own bound in under a second, while HiGHS, cut short, can stay several
   percent away (measured: 1,000 x 16, 2 s limit: lagrangian gap 3.5e-5, milp 5.9 %).
   Without a time limit the MILP runs to a proven optimum. GAP-like problems, where a
   client takes many experts under a client row (OR-Library), go to ``highs``: HiGHS
   started from the ``lagrangian`` solver's plan (a MIP start), which it then improves
   and proves.
3. Larger problems: ``lagrangian`` (near-optimal, with a dual bound), else ``greedy``.

Within each step the first solver that supports every row of the problem is taken; a name
that is not registered, not installed or not supporting the rows is skipped, and ``greedy``
is the last resort. ``info["auto"]["reason"]`` says in a sentence why the choice fell where
it did. The returned
:class:`~fedalign.solvers.base.Solution` is the chosen solver's, with ``solver`` naming it,
``runtime`` covering the whole call, and ``info["auto"]`` saying what was chosen. When the
chosen solver raises :class:`~fedalign.InfeasibleError` (an exact solver can give up when its
time limit ends), ``greedy`` gets one try when the time left allows it
(:data:`GREEDY_SECONDS_PER_PAIR`); its Solution is returned if it finds a plan
(``info["auto"]["fallback"]`` says so), else the first error is raised.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..errors import InfeasibleError, SolverUnavailableError, UnsupportedProblemError
from ..problem import AlignmentProblem
from .base import (
    FEW_EXPERTS,
    Budget,
    Result,
    Solution,
    Solver,
    check_warm_start,
    gap_like,
    get_solver,
    register,
    registered_solvers,
)
from .warm import WarmStart

__all__ = ["FEW_EXPERTS", "SMALL_PAIRS", "AutoSolver", "choice", "choose"]

#: Largest ``n_clients * n_experts`` for which a knapsack problem goes to an exact MILP.
SMALL_PAIRS = 20_000
#: Seconds per client-expert pair that ``greedy`` spends before its first look at the clock
#: (its first insertion segment: about 1 s at 100,000 x 128 on a loaded 2-core machine, where
#: a fallback started with 0.9 s left ended 1 s past the limit, docs/benchmarks.md): with
#: less time left the fallback is not tried.
GREEDY_SECONDS_PER_PAIR = 8e-8


def _usable(name: str) -> Solver | None:
    if name not in registered_solvers():
        return None
    try:
        return get_solver(name)
    except SolverUnavailableError:
        return None


def choose(problem: AlignmentProblem, time_limit: float | None = None) -> str:
    """The solver ``auto`` runs for ``problem`` (see the module docstring for the rules).

    Parameters
    ----------
    problem : AlignmentProblem
    time_limit : float, optional
        The limit the solver will run under; None means it may run to a proof.

    Returns
    -------
    str
        A registered, installed solver name other than ``"auto"``.
    """
    return choice(problem, time_limit)[0]


def choice(problem: AlignmentProblem, time_limit: float | None = None) -> tuple[str, str]:
    """:func:`choose`'s answer and the reason for it, in a sentence."""
    flow = _usable("flow")
    if flow is not None and flow.accepts(problem):
        return "flow", "every row reduces to counts: exact min-cost flow"
    pairs = problem.n_clients * problem.n_experts
    few = problem.n_clients == 0 or int(problem.max_experts.max()) <= FEW_EXPERTS
    if pairs <= SMALL_PAIRS and gap_like(problem):
        preferred: tuple[str, ...] = ("highs", "milp", "cpsat", "lagrangian", "greedy")
        why = (
            f"a small GAP-like problem ({pairs} pairs <= {SMALL_PAIRS}, clients taking up to "
            f"{int(problem.max_experts.max())} experts under a client row): HiGHS, from the "
            "Lagrangian plan as a MIP start"
        )
    elif pairs <= SMALL_PAIRS and not (time_limit and few):
        preferred = ("milp", "cpsat", "lagrangian", "greedy")
        why = (
            f"a small problem ({pairs} pairs <= {SMALL_PAIRS}) with rows beyond counts"
            + ("" if time_limit else " and no time limit: an exact MILP")
            + (f", clients taking up to {int(problem.max_experts.max())} experts" if not few else "")
        )
    else:
        preferred = ("lagrangian", "greedy")
        why = (
            f"{pairs} pairs with rows beyond counts"
            + (f", more than {SMALL_PAIRS}" if pairs > SMALL_PAIRS else
               f", a time limit and at most {FEW_EXPERTS} experts per client")
            + ": the Lagrangian heuristic with its dual bound"
        )
    skipped: list[str] = []
    for name in preferred:
        solver = _usable(name)
        if solver is not None and solver.accepts(problem):
            return name, why + (f" (skipped {', '.join(skipped)}: they do not support a row)" if skipped else "")
        skipped.append(name)
    return "greedy", why + "; no preferred solver supports every row: greedy"


@register
class AutoSolver(Solver):
    """Runs the solver :func:`choose` picks; the Solution names the chosen solver."""

    name = "auto"
    exact = False
    warm_start = "whatever the chosen solver reuses"

    def refusal(self, problem: AlignmentProblem) -> str | None:
        """None when some installed solver supports every row (``auto`` then picks among them)."""
        first: str | None = None
        for name in registered_solvers():
            solver = _usable(name) if name != "auto" else None
            if solver is None:
                continue
            reason = solver.refusal(problem)
            if reason is None:
                return None
            first = first or reason
        return f"solver 'auto': no installed solver supports every row ({first or 'none installed'})"

    def solve(
        self,
        problem: AlignmentProblem,
        *,
        time_limit: float | None = None,
        seed: int | None = None,
        warm_start: Solution | None = None,
        **options: Any,
    ) -> Solution:
        """Choose a solver, run it with the same time limit, seed and warm start; return its Solution."""
        check_warm_start(warm_start)
        start = time.perf_counter()
        reason = self.unsupported_reason(problem)
        if reason is not None:
            raise UnsupportedProblemError(reason)
        chosen, why = choice(problem, time_limit)
        note: dict[str, Any] = {
            "chosen": chosen,
            "reason": why,
            "pairs": problem.n_clients * problem.n_experts,
        }
        try:
            solution = get_solver(chosen).solve(
                problem, time_limit=time_limit, seed=seed, warm_start=warm_start
            )
        except InfeasibleError as exc:
            # An exact solver may give up when its time limit ends before it finds a point;
            # the greedy heuristic is fast and may still find one. If it fails too, the
            # chosen solver's explanation is the one to report (also when greedy does not
            # support the problem's rows).
            if chosen == "greedy" or not get_solver("greedy").accepts(problem):
                raise
            remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
            if remaining is not None and remaining < max(
                0.2, 0.1 * time_limit, GREEDY_SECONDS_PER_PAIR * note["pairs"]  # type: ignore[operator]
            ):
                raise  # no time left for greedy: starting it would only overrun the limit
            try:
                solution = get_solver("greedy").solve(problem, time_limit=remaining, seed=seed)
            except InfeasibleError:
                raise exc from None
            note["fallback"] = f"{chosen} raised InfeasibleError ({exc}); greedy found a plan"
        info = dict(solution.info)
        info["auto"] = note
        return dataclasses.replace(solution, runtime=time.perf_counter() - start, info=info)

    def _solve(  # type: ignore[override]  # no options: base.Solver reads them from this signature
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        warm: WarmStart | None = None,
    ) -> Result:
        """Delegate to the chosen solver (used only when called through ``_solve`` directly)."""
        chosen = get_solver(choose(problem, budget.time_limit))
        extra = {} if chosen.warm_start is None else {"warm": warm}
        return chosen._solve(problem, budget=budget, rng=rng, **extra)
