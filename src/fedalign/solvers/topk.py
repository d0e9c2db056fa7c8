"""``topk``: the paper's algorithm -- per client, the best experts that fit, up to capacity.

For every client, the candidate experts are those that are allowed and fit it on their own
(``problem.fits``), ranked by desirability. The client takes them in rank order while its
count, memory and deadline allow: an expert that no longer fits is skipped and the walk goes
on. Beyond ``min_experts`` only experts of positive desirability are taken. Per-expert caps
are ignored in this first pass (each client decides alone, as in the paper); a
:func:`~fedalign.solvers.repair.repair` pass then restores ``expert_max_clients`` and
``expert_min_clients`` (and any client minimum the knapsacks blocked), preferring high
desirability, and refills freed capacity with positive pairs.

The walk is vectorised over clients: step ``r`` offers every still-active client its
``r``-th ranked expert at once, so there are at most ``n_experts`` steps over a shrinking set
of clients. Ties in desirability are broken at random (seeded), so that clients with equal
scores do not all pile onto the lowest-numbered expert.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..problem import AlignmentProblem
from .base import Budget, Result, Solver, register
from .repair import repair, residual

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
    if rows.size and rng is None:
        order[rows] = np.argsort(-d[rows], axis=1, kind="stable")
    elif rows.size:
        noise = rng.random((rows.size, problem.n_experts))  # type: ignore[union-attr]
        order[rows] = np.lexsort((noise, -d[rows]), axis=1)
    return order


def top_k(problem: AlignmentProblem, rng: np.random.Generator | None = None) -> NDArray[np.bool_]:
    """The paper's per-client selection, ignoring per-expert caps (see the module docstring).

    Parameters
    ----------
    problem : AlignmentProblem
    rng : numpy Generator, optional
        Breaks ties in desirability.

    Returns
    -------
    (n, E) bool ndarray
        Within every per-client bound; per-expert bounds not yet enforced.
    """
    n, e = problem.shape
    x = np.zeros((n, e), dtype=bool)
    order = rank_experts(problem, rng)
    res = residual(problem, x)
    d = problem.desirability
    fits = problem.fits
    count = np.zeros(n, dtype=np.int64)
    active = np.flatnonzero(problem.max_experts > 0)
    # Smallest memory / time any expert that fits the client needs: below it, a client is full.
    lightest_mem = lightest_time = None
    if problem.expert_memory is not None:
        lightest_mem = np.where(fits, problem.expert_memory[None, :], np.inf).min(axis=1, initial=np.inf)
    if problem.train_time is not None:
        lightest_time = np.where(fits, problem.train_time, np.inf).min(axis=1, initial=np.inf)
    for r in range(e):
        if active.size == 0:
            break
        j = order[active, r]
        fit = fits[active, j]
        needed = count[active] < problem.min_experts[active]
        wanted = needed | (d[active, j] > 0)
        take = fit & wanted
        if res.memory is not None:
            take &= problem.expert_memory[j] <= res.memory[active]  # type: ignore[index]
        if res.time is not None:
            take &= problem.train_time[active, j] <= res.time[active]  # type: ignore[index]
        rows, cols = active[take], j[take]
        x[rows, cols] = True
        count[rows] += 1
        if res.memory is not None:
            res.memory[rows] -= problem.expert_memory[cols]  # type: ignore[index]
        if res.time is not None:
            res.time[rows] -= problem.train_time[rows, cols]  # type: ignore[index]
        # Ranks only fall from here: a client is done when full, out of candidates, or
        # (with its minimum met) at a non-positive expert.
        done = (count[active] >= problem.max_experts[active]) | ~fit
        done |= ~wanted & (count[active] >= problem.min_experts[active])
        if lightest_mem is not None:
            done |= res.memory[active] < lightest_mem[active]  # type: ignore[index]
        if lightest_time is not None:
            done |= res.time[active] < lightest_time[active]  # type: ignore[index]
        active = active[~done]
    return x


@register
class TopKSolver(Solver):
    """The paper's algorithm: per client, ranked candidate experts that fit, up to capacity.

    No bound is reported. See the module docstring for the algorithm and the repair step.
    """

    name = "topk"
    exact = False

    def _solve(  # type: ignore[override]  # no options: base.Solver reads them from this signature
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
    ) -> Result:
        first = top_k(problem, rng)
        x = repair(problem, first, fill=True)
        return Result(
            assignment=x,
            info={"pairs_before_repair": int(first.sum()), "changed_by_repair": int((first != x).sum())},
        )
