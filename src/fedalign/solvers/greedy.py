"""``greedy``: global greedy over all client-expert pairs, best desirability first.

Every pair of positive desirability that is allowed is considered in one global order (best
first, ties to the lower position) and kept when it still fits every upper bound: the
client's ``max_experts``, memory and deadline, and the expert's ``expert_max_clients``.
Minimums (``min_experts``, ``expert_min_clients``) are then met by
:func:`~fedalign.solvers.repair.repair`, which adds the best pairs that fit and, when an
upper bound blocks, moves pairs along alternating paths.

The acceptance test is sequential by nature; :func:`~fedalign.solvers.repair.add_best_first`
computes the *exact* sequential result in vectorised chunks: a pair that fits even if every
earlier pair of its chunk on the same client or expert were accepted is accepted, a pair that
does not fit the current assignment alone is rejected, and the few undecided pairs are
retested (all constraints are packing constraints, so this is exact). Candidates are taken
in segments of about half a million, best first, and pairs of saturated clients or experts
are discarded between segments, so 100,000 clients x 128 experts take a few seconds and no
Python loop runs over pairs.
"""

from __future__ import annotations

import numpy as np

from ..problem import AlignmentProblem
from .base import Budget, Result, Solver, register
from .repair import fill, repair

__all__ = ["GreedySolver"]


@register
class GreedySolver(Solver):
    """Global greedy by desirability, then repair for the minimums. No bound is reported."""

    name = "greedy"
    exact = False

    def _solve(  # type: ignore[override]  # no options: base.Solver reads them from this signature
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
    ) -> Result:
        first = fill(problem, np.zeros(problem.shape, dtype=bool))
        x = repair(problem, first, fill=True)
        return Result(
            assignment=x,
            info={"pairs_before_repair": int(first.sum()), "changed_by_repair": int((first != x).sum())},
        )
