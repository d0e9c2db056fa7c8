"""``greedy``: global greedy over all client-expert pairs, best desirability first.

Every pair of positive desirability that is allowed is considered in one global order (best
first, ties to the lower position) and kept when it still fits every upper bound: the
client's ``max_experts`` and client rows (memory, deadline, your own), the expert's
``expert_max_clients`` and expert rows, and every total row. Minimums (``min_experts``,
``expert_min_clients``, lower bounds of weighted rows) are then met by
:func:`~fedalign.solvers.repair.repair`, which adds the best pairs that fit and, when an
upper bound blocks, moves pairs along alternating paths or swaps them.

Soft rows: the greedy does not walk into their penalties. Its passes are
:func:`~fedalign.solvers.repair.fill`, which with soft rows prices each soft row's next
units at the slope of its penalty (:mod:`fedalign.solvers.repair.soft`): a soft upper bound
is a cap while the greedy fills up to it (its price is 0 below it), and beyond it a pair is
added only while its desirability exceeds the penalty it adds; a soft lower bound draws in
pairs whose desirability plus the penalty they save is positive. Every pair the passes add
raises the objective (penalties included); repair's minimums come first where they
conflict.

The acceptance test is sequential by nature; :func:`~fedalign.solvers.repair.add_best_first`
computes the *exact* sequential result in vectorised chunks: a pair that fits even if every
earlier pair of its chunk on the same client or expert (or anywhere in the chunk, for a
total row) were accepted is accepted, a pair that does not fit the current assignment alone
is rejected, and the few undecided pairs are retested (all rows are packing rows, so this
is exact). Candidates are taken in segments of about half a million, best first, and pairs
of saturated clients or experts are discarded between segments, so 100,000 clients x 128
experts take a few seconds and no Python loop runs over pairs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validation import Constraint
from ..problem import AlignmentProblem
from .base import Budget, Result, Solver, register
from .repair import ROW_SUPPORT, fill, repair

__all__ = ["GreedySolver"]


@register
class GreedySolver(Solver):
    """Global greedy by desirability, then repair for the minimums. No bound is reported."""

    name = "greedy"
    exact = False
    supports = ROW_SUPPORT
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = {}  # no options

    def _solve(
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        **options: Any,
    ) -> Result:
        first = fill(problem, np.zeros(problem.shape, dtype=bool))
        x = repair(problem, first, fill=True)
        return Result(
            assignment=x,
            info={"pairs_before_repair": int(first.sum()), "changed_by_repair": int((first != x).sum())},
        )
