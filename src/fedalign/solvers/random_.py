"""``random``: a uniformly random feasible assignment, the baseline of the paper's Fig. 3.

Desirability plays no part. Each client draws a target count uniformly in
``[min_experts, max_experts]`` (capped by how many experts fit it) and a random priority for
every expert; it starts from its highest-priority experts up to the target. The shared
:func:`~fedalign.solvers.repair.repair` then enforces every constraint using those random
priorities instead of desirability (so a choice it has to make is random too), and a last
random pass tops each client up towards its target while everything still fits (skipped
under a time limit when it cannot end in time). Seeded by ``seed``: the same seed gives the
same assignment.

Every hard row is enforced (by repair and by the top-up, which keeps every upper bound).
Soft rows play no part in the choices (nor does desirability); the objective still pays
their penalties.

"Uniformly random" in the sense of the paper's baseline: every choice is random and
independent of desirability. It is not a uniform sample over all feasible assignments
(counting those is #P-hard); tight per-expert, client-row or total-row constraints bias which
assignments repair reaches.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validation import Constraint
from ..problem import AlignmentProblem
from .base import Budget, Result, Solver, register
from .repair import FILL_SECONDS_PER_PAIR, ROW_SUPPORT, add_best_first, repair

__all__ = ["RandomSolver"]


@register
class RandomSolver(Solver):
    """Random feasible assignment (baseline); ignores desirability. No bound is reported."""

    name = "random"
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
        n, e = problem.shape
        fits = problem.fits
        top = np.minimum(problem.max_experts, fits.sum(axis=1))
        low = np.minimum(problem.min_experts, top)
        target = rng.integers(low, top + 1) if n else np.zeros(0, dtype=np.int64)
        priority = np.where(fits, rng.random((n, e)), -1.0)
        # Each client's ``target`` highest random priorities (distinct almost surely): only
        # the largest targets' worth of each row is sorted (a full sort took 1.5 s of a 1 s
        # limit at 100,000 x 128 on a loaded machine, before the repair saw the clock).
        k = int(target.max(initial=0))
        if 0 < k < e:
            srt = -np.sort(-np.partition(priority, e - k, axis=1)[:, e - k :], axis=1)
        else:
            srt = -np.sort(-priority, axis=1)
        cut = srt[np.arange(n), np.maximum(target - 1, 0)] if srt.shape[1] else np.zeros(n)
        start = fits & (priority >= cut[:, None]) & (target > 0)[:, None]
        x = repair(problem, start, priority=priority, fill=False, budget=budget)
        # The top-up's first segment has no clock (0.9 s at 100,000 x 128, loaded): skipped
        # when it cannot end in time, leaving the repaired plan as it is.
        if budget.remaining() >= FILL_SECONDS_PER_PAIR * float(n) * e:
            add_best_first(
                problem, x, fits, priority, limit=np.maximum(target, x.sum(axis=1)), budget=budget
            )
        return Result(assignment=x, info={"target_pairs": int(target.sum())})
