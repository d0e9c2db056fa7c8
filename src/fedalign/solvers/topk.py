"""``topk``: the paper's algorithm -- per client, the best experts that fit, up to capacity.

For every client, the candidate experts are those that are allowed and fit it on their own
(``problem.fits``), ranked by desirability. The client takes them in rank order while its
count and every client row's upper bound (memory, deadline, your own) allow: an expert that
no longer fits is skipped and the walk goes on. Beyond ``min_experts`` only experts of
positive desirability are taken. Expert rows and total rows are ignored in this first pass
(each client decides alone, as in the paper); a :func:`~fedalign.solvers.repair.repair`
pass then restores every upper bound it broke (``expert_max_clients``, weighted expert
rows, total rows) and meets every minimum (``expert_min_clients``, a client minimum its
rows blocked, the lower bounds of weighted rows), preferring high desirability, and refills
freed capacity with positive pairs.

Soft rows play no part in the per-client choice (the paper has none); the objective still
pays their penalties, and the final fill adds a pair only where its desirability exceeds
the penalty it adds.

The walk is vectorised over clients: step ``r`` offers every still-active client its
``r``-th ranked expert at once, so there are at most ``n_experts`` steps over a shrinking set
of clients. Ties in desirability are broken at random (seeded), so that clients with equal
scores do not all pile onto the lowest-numbered expert.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._validation import Constraint
from ..problem import AlignmentProblem
from .base import Budget, Result, Solver, register
from .repair import ROW_SUPPORT, repair, residual

__all__ = ["TopKSolver", "rank_experts", "top_k"]


def rank_experts(
    problem: AlignmentProblem, rng: np.random.Generator | None = None
) -> NDArray[np.intp]:
    """(n, E) expert positions per client, best desirability first; pairs that never fit last.

    Ties are broken at random with ``rng``, else by the lower expert position.
    """
    d = np.where(problem.fits, problem.desirability, -np.inf)
    # An unstable sort is much faster; rows with ties among experts that fit are re-sorted.
    order = np.argsort(-d, axis=1)
    if problem.n_experts < 2:
        return order
    srt = np.take_along_axis(d, order, axis=1)
    tied = (srt[:, 1:] == srt[:, :-1]) & np.isfinite(srt[:, 1:])
    rows = np.flatnonzero(tied.any(axis=1))
    if rows.size == 0:
        return order
    if rng is None:
        order[rows] = np.argsort(-d[rows], axis=1, kind="stable")
    else:
        noise = rng.random((rows.size, problem.n_experts))
        order[rows] = np.lexsort((noise, -d[rows]), axis=1)
    return order


def top_k(problem: AlignmentProblem, rng: np.random.Generator | None = None) -> NDArray[np.bool_]:
    """The paper's per-client selection, ignoring expert and total rows (see the module docstring).

    Parameters
    ----------
    problem : AlignmentProblem
    rng : numpy Generator, optional
        Breaks ties in desirability.

    Returns
    -------
    (n, E) bool ndarray
        Within every client row's upper bound; expert and total rows not yet enforced.
    """
    n, e = problem.shape
    x = np.zeros((n, e), dtype=bool)
    order = rank_experts(problem, rng)
    rooms = residual(problem, x).client
    d = problem.desirability
    fits = problem.fits
    count = np.zeros(n, dtype=np.int64)
    active = np.flatnonzero(problem.max_experts > 0)
    # Per client row, the smallest weight of any expert that fits: below it, a client is full.
    lightest = [np.where(fits, room.row.dense, np.inf).min(axis=1, initial=np.inf) for room in rooms]
    for r in range(e):
        if active.size == 0:
            break
        j = order[active, r]
        fit = fits[active, j]
        needed = count[active] < problem.min_experts[active]
        wanted = needed | (d[active, j] > 0)
        take = fit & wanted
        for room in rooms:
            take &= room.admits(active, j)
        rows, cols = active[take], j[take]
        x[rows, cols] = True
        count[rows] += 1
        for room in rooms:
            room.left[rows] -= room.weights(rows, cols)
        # Ranks only fall from here: a client is done when full, out of candidates, or
        # (with its minimum met) at a non-positive expert.
        done = (count[active] >= problem.max_experts[active]) | ~fit
        done |= ~wanted & (count[active] >= problem.min_experts[active])
        for room, low in zip(rooms, lightest, strict=True):
            done |= room.left[active] < low[active]
        active = active[~done]
    return x


@register
class TopKSolver(Solver):
    """The paper's algorithm: per client, ranked candidate experts that fit, up to capacity.

    No bound is reported. See the module docstring for the algorithm and the repair step.
    """

    name = "topk"
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
        first = top_k(problem, rng)
        x = repair(problem, first, fill=True)
        return Result(
            assignment=x,
            info={"pairs_before_repair": int(first.sum()), "changed_by_repair": int((first != x).sum())},
        )
