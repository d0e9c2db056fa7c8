"""Soft rows in insertion: a window and a price per soft row, so that additions pay off.

A soft row's penalty is a convex, piecewise-linear function ``f`` of its usage ``u``: zero
between the bounds, rising by ``penalty[k]`` per unit for the ``k``-th unit above the upper
bound (falling likewise towards the lower bound), with breakpoints one unit apart from each
bound for as many units as there are prices. For each member of a soft row (a client, an
expert, the total) :func:`price_windows` picks a *window* ``[u, T)`` that ends at a
breakpoint, and prices every unit added in it at ``f``'s slope just below ``T``: the
largest slope in the window, since ``f`` is convex. As long as the members stay in their
windows (the windows are given to the insertion as extra rooms, like upper bounds), a pair
added at any point costs at most ``price x weight`` in penalties, so adding a pair whose
``desirability - sum(price x weight)`` is positive raises the objective.

Two window sizes: *narrow* ends at the first breakpoint above the usage (the price is the
exact marginal one), *wide* at the first breakpoint at least one heaviest candidate pair
away (so that a pair heavier than a band can still be added, at the price of the band it
reaches). :func:`~.insertion.fill_priced` alternates them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from ...rows import Row
from .capacity import RowRoom

__all__ = ["price_windows", "window"]


def window(
    row: Row, usage: NDArray[np.float64], reach: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per member, the window's end ``T`` and the price per unit added below it.

    Parameters
    ----------
    row : Row
        A soft row.
    usage : (row.size,) float
        Current usage.
    reach : (row.size,) float, optional
        The window must reach at least ``usage + reach`` (wide windows); without it, the
        window ends at the first breakpoint strictly above the usage (narrow windows).

    Returns
    -------
    end, price : (row.size,) float arrays
        ``end`` may be ``inf`` (past the last breakpoint the slope stays the same). ``price``
        is negative below the lower bound (an addition there lowers the penalty).
    """
    assert row.penalty is not None
    prices = np.asarray(row.penalty, dtype=np.float64)
    last = prices.size - 1
    strict = reach is None
    t = usage if reach is None else usage + reach
    end = np.full(usage.shape, np.inf)
    price = np.full(usage.shape, prices[-1] if row.upper is not None else 0.0)
    todo = np.ones(usage.shape, dtype=bool)
    if row.lower is not None:
        # Breakpoints lower - k (k = 0..last): the nearest one at or above t (strictly above
        # for a narrow window); the slope just below it is -prices[k].
        gap = row.lower - t
        k = np.ceil(gap) - 1 if strict else np.floor(gap)
        ok = (gap > 0) if strict else (gap >= 0)
        k = np.clip(k, 0, last).astype(np.intp)
        end = np.where(ok, row.lower - k, end)
        price = np.where(ok, -prices[k], price)
        todo &= ~ok
    if row.upper is not None:
        # Breakpoints upper + k (k = 0..last); just below upper + k the slope is prices[k - 1]
        # (0 at the upper bound itself: between the bounds nothing is paid).
        over = t - row.upper
        k_f = np.floor(over) + 1 if strict else np.ceil(over)
        k = np.maximum(k_f, 0)
        ok = todo & (k <= last)
        k = np.clip(k, 0, last).astype(np.intp)
        end = np.where(ok, row.upper + k, end)
        price = np.where(ok, np.where(k > 0, prices[k - 1], 0.0), price)
    return end, price


def price_windows(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    priority: NDArray[np.float64],
    *,
    candidates: NDArray[np.bool_] | None = None,
) -> tuple[list[RowRoom], NDArray[np.float64]]:
    """One room per soft row (its windows) and each pair's value net of its priced penalty.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
    priority : (n, E) float array
        The desirability (the penalties are in its units).
    candidates : (n, E) bool array, optional
        Pairs that may be added. Given, the windows are wide: each reaches one of its
        heaviest candidates past the usage. Without it they are narrow.

    Returns
    -------
    rooms : list of RowRoom
        The windows' room per member (``end - usage``), for the insertion to respect (none
        for a row whose windows are all unbounded).
    value : (n, E) float array
        ``priority`` minus every soft row's ``price x weight``.
    """
    rooms = []
    value = np.array(priority, dtype=np.float64, copy=True)
    for row in problem.soft_rows:
        used = row.usage(x)
        reach = None
        if candidates is not None:
            axis = {"client": 1, "expert": 0, "total": None}[row.over]
            heaviest = np.where(candidates, row.dense, 0.0).max(axis=axis, initial=0.0)
            reach = np.atleast_1d(heaviest).astype(np.float64)
        end, price = window(row, used, reach)
        if np.isfinite(end).any():  # past the last breakpoint a window is unbounded
            rooms.append(RowRoom(row, end - used))
        w = row.weight
        if row.over == "client":
            value -= price[:, None] * w
        elif row.over == "expert":
            value -= price[None, :] * w
        else:
            value -= price[0] * w
    return rooms, value
