"""A cohort's constraint rows: what each client can take this round, and what it should.

:func:`cohort_capacity` reads the profiler and the settings into the problem's per-client
rows (``max_experts``, memory and deadline knapsacks); :func:`feasible_min` lowers the
``min_experts`` setting, per client, to what fits that client on its own, so that one client
too small or too slow for any expert does not make the whole round infeasible.

Pure NumPy on the cohort's rows: O(cohort · E), no Python loop over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..problem import capacity_tolerance
from ..profiles import CapacityProfiler
from .settings import SchedulerSettings

__all__ = ["CohortCapacity", "cohort_capacity", "feasible_min"]


@dataclass(frozen=True)
class CohortCapacity:
    """One cohort's capacity rows, in the form :class:`~fedalign.AlignmentProblem` takes.

    Attributes
    ----------
    max_experts : (n,) int64
        The profile's ``max_experts``, else the setting's (E when None), at most E.
    expert_memory : (E,) float64 or None
        None without the memory knapsack (setting ``expert_memory`` unset).
    client_memory : (n,) float64 or None
        Each client's memory; unknown memory is room for every expert.
    train_time : (n, E) float64 or None
        The profiler's expected seconds; None without a deadline policy.
    deadline : (n,) float64 or None
        The round's deadline per client; None without a deadline policy.
    """

    max_experts: NDArray[np.int64]
    expert_memory: NDArray[np.float64] | None = None
    client_memory: NDArray[np.float64] | None = None
    train_time: NDArray[np.float64] | None = None
    deadline: NDArray[np.float64] | None = None


def cohort_capacity(
    settings: SchedulerSettings, profiler: CapacityProfiler, rows: NDArray[np.int64]
) -> CohortCapacity:
    """The capacity rows of the cohort at registry ``rows``."""
    s, e = settings, settings.n_experts
    kmax = profiler.max_experts(rows)
    default_k = e if s.max_experts is None else s.max_experts
    kmax = np.minimum(np.where(kmax < 0, default_k, kmax), e)

    e_mem = c_mem = None
    if s.expert_memory is not None:
        e_mem = np.asarray(s.expert_memory, dtype=np.float64)
        c_mem = profiler.client_memory(rows, e_mem)

    t = dl = None
    if s.has_deadline:
        t = profiler.train_time(rows)
        # the shared part moves once per client that trains anything: its transfer time comes
        # off the client's deadline (exact for every client given at least one expert)
        overhead = profiler.shared_time(rows) if s.shared_bytes > 0 else None
        dl = profiler.deadline(
            t, kmax, fixed=s.deadline, percentile=s.deadline_percentile, overhead=overhead
        )
    return CohortCapacity(kmax, e_mem, c_mem, t, dl)


def feasible_min(
    want: int, capacity: CohortCapacity, allowed: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """Per client, ``min(want, max_experts, how many of its cheapest experts fit)``.

    Exact for one expert (some expert fits both knapsacks on its own); for more it is a
    necessary condition per knapsack row, and the solver has the last word.

    Parameters
    ----------
    want : int
        The ``min_experts`` setting.
    capacity : CohortCapacity
    allowed : (n, E) bool
        Pairs allowed this round.
    """
    n, e = allowed.shape
    c = capacity
    mem = None if c.expert_memory is None else np.broadcast_to(c.expert_memory, (n, e))
    knapsacks = [
        (cost, cap)
        for cost, cap in ((mem, c.client_memory), (c.train_time, c.deadline))
        if cost is not None and cap is not None
    ]
    ok = allowed.copy()
    for cost, cap in knapsacks:
        ok &= cost <= (cap + capacity_tolerance(cap))[:, None]
    k = np.minimum(np.minimum(want, c.max_experts), ok.sum(axis=1))
    for cost, cap in knapsacks:
        # the cheapest experts first: how many of them fit in the row's capacity
        sorted_cost = np.sort(np.where(ok, cost, np.inf), axis=1)
        csum = np.concatenate([np.zeros((n, 1)), np.cumsum(sorted_cost, axis=1)], axis=1)
        fits = csum <= (cap + capacity_tolerance(cap))[:, None]
        most = fits.sum(axis=1) - 1  # csum[:, 0] = 0 always fits
        k = np.minimum(k, most)
    return k.astype(np.int64)


def slots(cap: CohortCapacity, allowed: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Per client, an upper estimate of the experts it can take this round.

    At most its ``max_experts``, the experts that fit it alone (memory, deadline,
    ``allowed``), and as many of its smallest experts as its memory and deadline hold.
    The in-round balance row's fair share is the cohort's slots over ``E``: counting
    ``max_experts`` alone would set it too high wherever memory or time binds first.
    """
    fit = allowed.copy()
    out = cap.max_experts
    if cap.expert_memory is not None and cap.client_memory is not None:
        fit &= cap.expert_memory[None, :] <= cap.client_memory[:, None]
        out = np.minimum(out, _smallest_fill(np.broadcast_to(cap.expert_memory, fit.shape), cap.client_memory))
    if cap.train_time is not None and cap.deadline is not None:
        fit &= cap.train_time <= cap.deadline[:, None]
        out = np.minimum(out, _smallest_fill(cap.train_time, cap.deadline))
    return np.minimum(out, fit.sum(axis=1)).astype(np.int64)


def _smallest_fill(weight: NDArray[np.float64], room: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per row, how many of its smallest weights fit in its room together."""
    csum = np.cumsum(np.sort(weight, axis=1), axis=1)
    return (csum <= room[:, None] * (1 + 1e-9)).sum(axis=1)
