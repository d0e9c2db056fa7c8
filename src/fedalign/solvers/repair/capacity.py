"""Residual capacity: what each client and expert can still take on top of an assignment.

:class:`Residual` and :func:`residual` give the per-client slots, memory and time left and
the per-expert seats left; :func:`addable` turns them into the pairs that fit now;
:func:`order_key` breaks ties in a priority at random. ``_group_cumsum`` (running sums within
groups of equal client or expert) is how every batch of additions or swaps elsewhere in the
package is tested against these residuals at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem, capacity_tolerance

__all__ = ["Residual", "addable", "order_key", "residual"]


@dataclass
class Residual:
    """What each client and expert can still take on top of an assignment.

    Attributes
    ----------
    count : (n,) int64
        Experts each client may still add (``max_experts - assigned``; negative if over).
    memory : (n,) float64 or None
        Memory left per client, tolerance included (``None`` without a memory row).
    time : (n,) float64 or None
        Seconds left before each client's deadline, tolerance included (``None`` without a
        deadline row).
    seats : (E,) int64
        Clients each expert may still take (``expert_max_clients - load``).
    """

    count: NDArray[np.int64]
    memory: NDArray[np.float64] | None
    time: NDArray[np.float64] | None
    seats: NDArray[np.int64]


def residual(problem: AlignmentProblem, x: NDArray[np.bool_]) -> Residual:
    """Residual per-client and per-expert capacity of assignment ``x``.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array

    Returns
    -------
    Residual
    """
    n, e = problem.shape
    # Assignments are sparse: sums over the assigned pairs beat dense (n, E) float passes.
    rows, cols = np.nonzero(x)
    count = problem.max_experts - np.bincount(rows, minlength=n)
    seats = problem.expert_max_clients - np.bincount(cols, minlength=e)
    mem = tim = None
    if problem.expert_memory is not None and problem.client_memory is not None:
        cap = problem.client_memory
        used = np.bincount(rows, weights=problem.expert_memory[cols], minlength=n)
        mem = cap + capacity_tolerance(cap) - used
    if problem.train_time is not None and problem.deadline is not None:
        cap = problem.deadline
        used = np.bincount(rows, weights=problem.train_time[rows, cols], minlength=n)
        tim = cap + capacity_tolerance(cap) - used
    return Residual(count=count.astype(np.int64), memory=mem, time=tim, seats=seats.astype(np.int64))


def addable(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    res: Residual | None = None,
    rows: NDArray[np.intp] | None = None,
) -> NDArray[np.bool_]:
    """(n, E) bool: pairs that can be added to ``x`` now without breaking any upper bound.

    A pair is addable when it is allowed, not yet assigned, its client has a free expert
    slot, memory and time left for it, and its expert has a free seat. With ``rows``, only
    those clients' rows are computed and returned, shape ``(len(rows), E)``.
    """
    if res is None:
        res = residual(problem, x)
    r = slice(None) if rows is None else rows
    ok = problem.fits[r] & ~x[r]
    ok &= (res.count[r] > 0)[:, None]
    ok &= (res.seats > 0)[None, :]
    if res.memory is not None:
        ok &= problem.expert_memory[None, :] <= res.memory[r, None]  # type: ignore[index]
    if res.time is not None:
        ok &= problem.train_time[r] <= res.time[r, None]  # type: ignore[index]
    return ok


def order_key(
    values: NDArray[np.float64], rng: np.random.Generator | None = None
) -> NDArray[np.float64]:
    """A sort key equal in order to ``values``, with ties broken at random when ``rng`` is given.

    Without ``rng`` the values are returned unchanged (ties then go to the lower position,
    deterministically). With ``rng``, every entry is moved by less than half the smallest gap
    between distinct values, so distinct values keep their order and only ties are shuffled.
    """
    if rng is None:
        return values
    distinct = np.unique(values)
    gap = float(np.diff(distinct).min()) if distinct.size > 1 else 1.0
    return values + rng.random(values.shape) * (0.49 * gap)


def _group_cumsum(keys: NDArray[np.intp], values: NDArray[Any]) -> NDArray[Any]:
    """Inclusive running sum of ``values`` within each group of equal ``keys``, in input order."""
    perm = np.argsort(keys, kind="stable")
    k = keys[perm]
    v = values[perm]
    csum = np.cumsum(v)
    start = np.ones(k.size, dtype=bool)
    start[1:] = k[1:] != k[:-1]
    first = np.flatnonzero(start)
    seg = np.cumsum(start) - 1
    base = (csum[first] - v[first])[seg]
    out = np.empty_like(csum)
    out[perm] = csum - base
    return out
