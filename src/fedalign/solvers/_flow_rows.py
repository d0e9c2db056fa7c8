"""Rows as counts, for the ``flow`` solver: hard rows become count intervals, soft rows arc costs.

A min-cost flow network counts pairs: the flow on a client's arc is how many experts it
trains, on an expert's arc how many clients train it, on the return arc how many pairs there
are in all. A row fits the network when it is a function of those counts, i.e. when within
each of its rows every pair that fits has the same weight ``w`` (``Row.reduced_counts``):

* a *hard* row then bounds the count: ``c * w <= upper`` and ``c * w >= lower`` (within the
  checker's tolerance) give an interval of counts, and the intervals of all rows on one side
  intersect (:func:`count_intervals`);
* a *soft* row makes the count cost ``band_cost(prices, excess(w * c))``, a convex function
  of ``c``, which the network models exactly with parallel arcs of increasing marginal cost
  (:class:`SoftCount`, :func:`side_curve`): one arc per stretch of counts on which the
  marginal is constant -- the free stretch, one unit at each fractional kink, one arc per
  band -- and the last arc carries the rest at the last price.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from ..errors import InfeasibleError
from ..problem import AlignmentProblem
from ..rows import Row

__all__ = ["CountIntervals", "SideCounts", "SoftCount", "count_intervals", "soft_counts"]


# --------------------------------------------------------------------------- hard rows


@dataclass(frozen=True)
class SideCounts:
    """Count intervals of one side (clients, experts, or the round as a whole).

    Attributes
    ----------
    lower, upper : (m,) int64 arrays
        Each row's count must lie in ``[lower, upper]``. Bounds from rows other than the
        count rows are clipped to ``[0, limit]`` (``limit``: experts per client, clients
        per expert, pairs in all), an impossible one to ``limit + 1`` (lower) or ``-1``
        (upper).
    lower_row, upper_row : (m,) intp arrays
        Which row sets each bound: an index into ``rows``; ``-1`` for the count row
        (``min_experts`` / ``max_experts``, ``expert_min_clients`` / ``expert_max_clients``)
        or no bound at all.
    rows : tuple of str
        Names of the side's rows, besides the count row.
    """

    lower: NDArray[np.int64]
    upper: NDArray[np.int64]
    lower_row: NDArray[np.intp]
    upper_row: NDArray[np.intp]
    rows: tuple[str, ...]


@dataclass(frozen=True)
class CountIntervals:
    """Every hard row of a problem as count intervals (see :func:`count_intervals`).

    Attributes
    ----------
    client : SideCounts
        Experts per client: ``min_experts``, ``max_experts`` and every hard client row.
    expert : SideCounts
        Clients per expert: ``expert_min_clients``, ``expert_max_clients`` and every hard
        expert row.
    total : SideCounts or None
        Pairs in all (arrays of one value), or None without hard total rows.
    """

    client: SideCounts
    expert: SideCounts
    total: SideCounts | None


def _upper_counts(w: NDArray[np.float64], cap: NDArray[np.float64], limit: int) -> NDArray[np.int64]:
    """Largest ``k`` in ``[-1, limit]`` with ``k * w <= cap`` (``w == 0``: ``limit``, or -1 if ``cap < 0``)."""
    safe = np.where(w > 0, w, 1.0)
    k = np.floor(np.minimum(cap / safe, limit + 1.0))
    k = np.where(k * safe > cap, k - 1, k)  # the quotient rounded up
    k = np.where((k + 1) * safe <= cap, k + 1, k)  # ... or down
    k = np.where(w > 0, k, np.where(cap >= 0, limit, -1))
    return np.clip(k, -1, limit).astype(np.int64)


def _lower_counts(w: NDArray[np.float64], need: NDArray[np.float64], limit: int) -> NDArray[np.int64]:
    """Smallest ``k`` in ``[0, limit + 1]`` with ``k * w >= need`` (``limit + 1``: none)."""
    safe = np.where(w > 0, w, 1.0)
    k = np.ceil(np.minimum(need / safe, limit + 1.0))
    k = np.where(k * safe < need, k + 1, k)
    k = np.where((k - 1) * safe >= need, k - 1, k)
    k = np.where(need <= 0, 0, np.where(w > 0, k, limit + 1))
    return np.clip(k, 0, limit + 1).astype(np.int64)


def _weights(row: Row, fits: NDArray[np.bool_]) -> NDArray[np.float64] | None:
    """The one weight of each of the row's rows (over the pairs that fit), None if uneven."""
    if row.unit:
        return np.ones(row.size)
    return row.reduced_counts(fits)


def _side(
    rows: tuple[Row, ...],
    fits: NDArray[np.bool_],
    lower: NDArray[np.int64],
    upper: NDArray[np.int64],
    limit: int,
) -> SideCounts | None:
    """Intersect the count row's interval with every row's (None: a row does not reduce)."""
    lo, hi = lower.astype(np.int64), upper.astype(np.int64)
    lo_row = np.full(lo.shape, -1, np.intp)
    hi_row = np.full(hi.shape, -1, np.intp)
    for k, row in enumerate(rows):
        w = _weights(row, fits)
        if w is None:
            return None
        if row.upper_cap is not None:
            cap = _upper_counts(w, row.upper_cap, limit)
            lower_cap = cap < hi
            hi, hi_row = np.where(lower_cap, cap, hi), np.where(lower_cap, k, hi_row)
        if row.lower_cap is not None:
            need = _lower_counts(w, row.lower_cap, limit)
            higher = need > lo
            lo, lo_row = np.where(higher, need, lo), np.where(higher, k, lo_row)
    return SideCounts(lo, hi, lo_row, hi_row, tuple(r.name for r in rows))


def _conflict(
    side: SideCounts, names: tuple[str, str], who: Callable[[int], str], things: str
) -> str | None:
    """Why some row's count interval is empty, or None.

    ``names``: how to call the count row's lower and upper bound; ``who(k)``: how to call row ``k``.
    """
    bad = np.flatnonzero(side.lower > side.upper)
    if not bad.size:
        return None
    k = int(bad[0])
    lo_name = names[0] if side.lower_row[k] < 0 else side.rows[side.lower_row[k]]
    hi_name = names[1] if side.upper_row[k] < 0 else side.rows[side.upper_row[k]]
    if side.upper[k] < 0:
        return f"{hi_name}: {who(k)} cannot keep below its upper bound even with no {things}"
    if not hi_name:  # the total's own limit: every pair of the problem
        return (
            f"{lo_name}: {who(k)} needs at least {side.lower[k]} {things} to meet its lower "
            f"bound, but there are only {side.upper[k]}"
        )
    return (
        f"{lo_name}: {who(k)} needs at least {side.lower[k]} {things} to meet its lower bound, "
        f"but {hi_name} allows at most {side.upper[k]}"
    )


def count_intervals(problem: AlignmentProblem) -> CountIntervals | None:
    """Every hard row of ``problem`` as an interval of counts per client, per expert and in all.

    A hard row reduces to counts when, within each of its rows, every pair that fits has
    the same weight ``w``: its bounds then allow the counts ``c`` with
    ``lower <= c * w <= upper`` within the checker's tolerance (``Row.lower_cap``,
    ``Row.upper_cap``). ``w == 0`` allows any count when the bounds hold at 0 and none
    otherwise.

    Parameters
    ----------
    problem : AlignmentProblem

    Returns
    -------
    CountIntervals or None
        None when a hard row does not reduce to counts.

    Raises
    ------
    InfeasibleError
        Some client's, expert's or the round's lower bound needs more pairs than an upper
        bound allows; the message names both rows.
    """
    n, e = problem.shape
    fits = problem.fits
    client = _side(problem.client_rows, fits, problem.min_experts, problem.max_experts, e)
    expert = _side(problem.expert_rows, fits, problem.expert_min_clients, problem.expert_max_clients, n)
    total = None
    if problem.total_rows:
        none = np.zeros(1, np.int64)
        total = _side(problem.total_rows, fits, none, np.full(1, n * e, np.int64), n * e)
        if total is None:
            return None
    if client is None or expert is None:
        return None
    reason = None
    if (client.lower > client.upper).any():
        cid = problem.client_ids
        reason = _conflict(client, ("min_experts", "max_experts"), lambda i: f"client {cid[i]!r} (position {i})", "experts")
    elif (expert.lower > expert.upper).any():
        eid = problem.expert_ids
        reason = _conflict(
            expert, ("expert_min_clients", "expert_max_clients"), lambda j: f"expert {eid[j]!r} (position {j})", "clients"
        )
    elif total is not None:
        reason = _conflict(total, ("", ""), lambda _: "the round", "pairs")
    if reason is not None:
        raise InfeasibleError(reason)
    return CountIntervals(client, expert, total)


# --------------------------------------------------------------------------- soft rows


@dataclass(frozen=True)
class SoftCount:
    """A soft row reduced to counts: row ``k`` costs ``band_cost(prices, excess(weight[k] * c))``.

    Attributes
    ----------
    weight : (m,) float array
        The row's one weight per row (0 where no pair fits).
    lower, upper : (m,) float arrays or None
        The soft bounds on ``weight * c``.
    prices : tuple of float
        Non-decreasing price per unit of excess (the last one goes on).
    """

    weight: NDArray[np.float64]
    lower: NDArray[np.float64] | None
    upper: NDArray[np.float64] | None
    prices: tuple[float, ...]

    def take(self, idx: NDArray[np.intp]) -> SoftCount:
        """The rows at ``idx``."""
        return SoftCount(
            self.weight[idx],
            None if self.lower is None else self.lower[idx],
            None if self.upper is None else self.upper[idx],
            self.prices,
        )

    def shrunk(self, frac: float) -> SoftCount:
        """The same prices with the bounds scaled by ``frac`` (a sample of the clients)."""
        return replace(
            self,
            lower=None if self.lower is None else self.lower * frac,
            upper=None if self.upper is None else self.upper * frac,
        )


def soft_counts(problem: AlignmentProblem) -> dict[str, tuple[SoftCount, ...]] | None:
    """The soft rows of ``problem`` by side (``"client"``, ``"expert"``, ``"total"``).

    None when a soft row does not reduce to counts.
    """
    out: dict[str, list[SoftCount]] = {"client": [], "expert": [], "total": []}
    fits = problem.fits
    for row in problem.soft_rows:
        w = _weights(row, fits)
        if w is None or row.penalty is None:
            return None
        out[row.over].append(SoftCount(w, row.lower, row.upper, row.penalty))
    return {k: tuple(v) for k, v in out.items()}


# --------------------------------------------------------------------------- soft costs as arcs


@dataclass(frozen=True)
class Curve:
    """The summed soft cost of one side as stretches of constant marginal cost.

    Row ``k``'s count runs over ``[lo[k], hi[k]]``, cut at ``points[k]`` (sorted, repeats of
    ``hi[k]`` at the end); the stretch from ``points[k, s]`` to ``points[k, s + 1]`` costs
    ``slope[k, s]`` per unit (in the rows' own units, before scaling).
    """

    points: NDArray[np.int64]
    slope: NDArray[np.float64]

    @property
    def length(self) -> NDArray[np.int64]:
        return np.diff(self.points, axis=1)

    @property
    def top(self) -> float:
        """The largest ``|slope|`` of a stretch that holds any count (0 if none)."""
        used = self.length > 0
        return float(np.abs(self.slope[used]).max()) if used.any() else 0.0


def _kinks(
    soft: SoftCount, bound: NDArray[np.float64], sign: int, lo: NDArray[np.int64], hi: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Counts (as floats) where one bound's cost may change its slope: ``(m, kinks)``.

    The excess ``t`` away from the bound has band edges at ``t = 0, 1, ..., K - 1``; only
    those whose count ``(bound + sign * t) / w`` lies in ``[lo, hi]`` matter, a run of at
    most ``w * (hi - lo) + 2`` consecutive edges per row.
    """
    w = soft.weight
    k = len(soft.prices)
    span = float(np.max(w * (hi - lo), initial=0.0))
    width = int(min(k, np.ceil(span) + 2))
    far = np.where(sign > 0, w * lo - bound, bound - w * hi)  # excess at the near end
    first = np.clip(np.floor(far), 0, k - 1)
    t = np.minimum(first[:, None] + np.arange(width)[None, :], k - 1)
    safe = np.where(w > 0, w, 1.0)
    c = (bound[:, None] + sign * t) / safe[:, None]
    return np.where(w[:, None] > 0, c, lo[:, None].astype(np.float64))


def _slope(
    prices: tuple[float, ...], a: NDArray[np.float64], b: NDArray[np.float64], w: NDArray[np.float64],
    length: NDArray[np.int64],
) -> NDArray[np.float64]:
    """``(C(b) - C(a)) / length`` for the band cost ``C`` of excess, ``b - a = w * length``.

    Within one band the slope is the band's price times ``w`` (exact); across a band edge
    (one unit that straddles a kink) the difference of ``C``, whose values are small there.
    """
    p = np.asarray(prices, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(p)])
    last = p.size - 1

    def band(x: NDArray[np.float64]) -> NDArray[np.intp]:
        return np.clip(np.floor(x), 0, last).astype(np.intp)

    def cost(x: NDArray[np.float64]) -> NDArray[np.float64]:
        q = band(x)
        return np.where(x > 0, cum[q] + (x - q) * p[q], 0.0)

    edge = np.maximum(np.floor(a) + 1, 0)
    straddle = (edge < b) & (edge <= last)
    mid = 0.5 * (a + b)
    inside = np.where(mid > 0, p[band(mid)], 0.0) * w[:, None]
    safe = np.maximum(length, 1)
    return np.where(straddle, (cost(b) - cost(a)) / safe, inside)


def side_curve(lo: NDArray[np.int64], hi: NDArray[np.int64], softs: tuple[SoftCount, ...]) -> Curve:
    """The summed cost of ``softs`` on counts ``[lo, hi]`` as stretches of constant slope.

    Cut points: ``lo``, ``hi``, and the floor and ceiling of every count where a band edge
    of a row lies. Between two consecutive cut points no edge lies strictly inside unless
    they are one unit apart, so the slope is constant on each stretch.
    """
    m = lo.size
    cuts = [lo[:, None].astype(np.float64), hi[:, None].astype(np.float64)]
    for soft in softs:
        for bound, sign in ((soft.upper, 1), (soft.lower, -1)):
            if bound is not None:
                c = _kinks(soft, bound, sign, lo, hi)
                cuts += [np.floor(c), np.ceil(c)]
    pts = np.clip(np.concatenate(cuts, axis=1), lo[:, None], hi[:, None]).astype(np.int64)
    pts.sort(axis=1)
    # Repeated points become hi and move to the end: the stretches that hold counts are a prefix.
    repeat = np.zeros_like(pts, dtype=bool)
    repeat[:, 1:] = pts[:, 1:] == pts[:, :-1]
    pts = np.where(repeat, hi[:, None], pts)
    pts.sort(axis=1)
    length = np.diff(pts, axis=1)
    slope = np.zeros((m, pts.shape[1] - 1))
    left, right = pts[:, :-1].astype(np.float64), pts[:, 1:].astype(np.float64)
    for soft in softs:
        w = soft.weight[:, None]
        if soft.upper is not None:
            u = soft.upper[:, None]
            slope += _slope(soft.prices, w * left - u, w * right - u, soft.weight, length)
        if soft.lower is not None:
            low = soft.lower[:, None]
            slope -= _slope(soft.prices, low - w * right, low - w * left, soft.weight, length)
    return Curve(pts, np.where(length > 0, slope, 0.0))
