"""``auto``: picks a solver by the problem's structure and size, and runs it.

The choice (:func:`choose`) follows DESIGN.md §2:

1. No knapsack rows, or knapsack rows that reduce to counts (``flow`` accepts the problem):
   ``flow``, exact min-cost flow, fast at any size.
2. Real knapsack rows on a small problem (``n_clients * n_experts <= SMALL_PAIRS``): an exact
   MILP -- ``milp`` (PuLP + HiGHS/CBC) if installed, else ``cpsat`` -- unless a time limit
   is given and every client takes at most ``FEW_EXPERTS`` experts. In that regime (the
   federated one) ``lagrangian`` solves each client's knapsack exactly and typically ends
   within 1e-4 of its own bound in under a second, while HiGHS, cut short, can stay several
   percent away (measured: 1,000 x 16, 2 s limit: lagrangian gap 3.5e-5, milp 5.9 %).
   Without a time limit the MILP runs to a proven optimum. GAP-like problems, where a
   client takes many experts (OR-Library), always go to the MILP, which proves them.
3. Larger knapsack problems: ``lagrangian`` (near-optimal, with a dual bound), else ``greedy``.

Solvers are looked up in the registry by name; a name that is not registered or not
installed is skipped, and ``greedy`` is the last resort. The returned
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

__all__ = ["FEW_EXPERTS", "SMALL_PAIRS", "AutoSolver", "choose"]

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
    flow = _usable("flow")
    if flow is not None and flow.accepts(problem):
        return "flow"
    few = problem.n_clients == 0 or int(problem.max_experts.max()) <= FEW_EXPERTS
    if problem.n_clients * problem.n_experts <= SMALL_PAIRS and not (time_limit and few):
        preferred: tuple[str, ...] = ("milp", "cpsat", "lagrangian", "greedy")
    else:
        preferred = ("lagrangian", "greedy")
    for name in preferred:
        solver = _usable(name)
        if solver is not None and solver.accepts(problem):
            return name
    return "greedy"


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
        chosen = choose(problem, time_limit)
        note: dict[str, Any] = {"chosen": chosen, "pairs": problem.n_clients * problem.n_experts}
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
