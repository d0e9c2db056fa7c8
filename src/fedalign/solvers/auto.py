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
   client takes many experts (OR-Library), always go to the MILP, which proves them.
3. Larger problems: ``lagrangian`` (near-optimal, with a dual bound), else ``greedy``.

Within each step the first solver that supports every row of the problem is taken; a name
that is not registered, not installed or not supporting the rows is skipped, and ``greedy``
is the last resort. ``info["auto"]["reason"]`` says in a sentence why the choice fell where
it did. The returned
:class:`~fedalign.solvers.base.Solution` is the chosen solver's, with ``solver`` naming it,
``runtime`` covering the whole call, and ``info["auto"]`` saying what was chosen. When the
chosen solver raises :class:`~fedalign.InfeasibleError` (an exact solver can give up when its
time limit ends), ``greedy`` gets one try; its Solution is returned if it finds a plan
(``info["auto"]["fallback"]`` says so), else the first error is raised.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..errors import InfeasibleError, SolverUnavailableError, UnsupportedProblemError
from ..problem import AlignmentProblem
from .base import Budget, Result, Solution, Solver, get_solver, register, registered_solvers

__all__ = ["FEW_EXPERTS", "SMALL_PAIRS", "AutoSolver", "choice", "choose"]

#: Largest ``n_clients * n_experts`` for which a knapsack problem goes to an exact MILP.
SMALL_PAIRS = 20_000
#: Under a time limit, problems whose clients take at most this many experts go to
#: ``lagrangian`` even when small (its per-client knapsacks are exact there).
FEW_EXPERTS = 6


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
    if pairs <= SMALL_PAIRS and not (time_limit and few):
        preferred: tuple[str, ...] = ("milp", "cpsat", "lagrangian", "greedy")
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
        **options: Any,
    ) -> Solution:
        """Choose a solver, run it with the same time limit and seed, return its Solution."""
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
            solution = get_solver(chosen).solve(problem, time_limit=time_limit, seed=seed)
        except InfeasibleError as exc:
            # An exact solver may give up when its time limit ends before it finds a point;
            # the greedy heuristic is fast and may still find one. If it fails too, the
            # chosen solver's explanation is the one to report (also when greedy does not
            # support the problem's rows).
            if chosen == "greedy" or not get_solver("greedy").accepts(problem):
                raise
            try:
                solution = get_solver("greedy").solve(problem, time_limit=time_limit, seed=seed)
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
    ) -> Result:
        """Delegate to the chosen solver (used only when called through ``_solve`` directly)."""
        chosen = get_solver(choose(problem, budget.time_limit))
        return chosen._solve(problem, budget=budget, rng=rng)
