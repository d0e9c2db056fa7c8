"""Breadth-first branch and bound over each client's candidates, all clients of a chunk at once.

A node is a subset built in decreasing order of reduced profit ``r``. A child's bound is its
profit plus the smallest of (a) the best positive profits that may still follow (no more
than the remaining slots, nor than the lightest later candidates fitting the remaining
capacity) and (b) for each client row's upper bound, the weak-duality (LP) bound
``beta * room + top-s of (r - beta w)^+`` with a per-client ``beta`` chosen once by
golden-section search. The incumbent starts from the previous prices' choice (still
feasible: prices do not change client rows) or an LP-greedy choice. A node is *complete* (a
candidate incumbent) when it holds the count's minimum and every client row's lower bound;
a non-positive expert is added only to a node that is not yet complete (once it is, such an
expert cannot help).
The bounds drop the lower bounds (a relaxation), so they stay valid. Nodes within ``bb_tol``
(times the spread of the desirability) of the incumbent are pruned and that tolerance is
added to the client's bound; when a client's open nodes exceed ``node_budget`` its search
stops and it contributes the largest bound among them. Either way the client adds a *valid
upper bound* of its subproblem (equal to its optimum when the search completes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._common import (
    BB_BUCKETS,
    BB_CHUNK_CLIENTS,
    BB_MAX_CELLS,
    NEG,
    PARALLEL_CLIENTS,
    PRICE_STEPS,
    WORKERS,
    top_sorted,
)

if TYPE_CHECKING:
    from ._subproblems import Subproblems


def branch_and_bound(
    sub: Subproblems,
    cand_r: NDArray[np.float64],
    rows: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
) -> bool:
    """Best subset of each client's candidates, by breadth-first branch and bound.

    ``x[rows]`` and ``values[rows]`` hold a feasible incumbent on entry (or value
    -inf). A node is a subset built in decreasing order of reduced profit; its bound
    is its profit plus the best positive profits that could still follow, so no
    pruned node hides a better subset. When a chunk's frontier exceeds the node
    limit, the search stops there and the client gets the valid bound
    ``max(incumbent, best live node bound)``; returns False in that case. So does a
    search stopped by ``sub``'s deadline (:meth:`Subproblems.out_of_time`): every live node
    is cut, and a chunk not started keeps its incumbent with the count relaxation's bound.
    """
    # Clients with similar numbers of candidates are searched together: the dense
    # node x candidate arrays are then sized by their own count, not the largest.
    n_cand = np.isfinite(cand_r).sum(axis=1)
    bucket = np.searchsorted(BB_BUCKETS, n_cand)
    chunks = []
    for b in np.unique(bucket):
        pos = np.flatnonzero(bucket == b)
        for s in range(0, pos.size, BB_CHUNK_CLIENTS):
            chunks.append(pos[s : s + BB_CHUNK_CLIENTS])

    def run(sel: NDArray[np.int64]) -> bool:
        if sub.out_of_time():
            # Not searched: the incumbent stays, the count relaxation bounds the optimum.
            values[rows[sel]] = np.maximum(values[rows[sel]], sub.count_ub[rows[sel]])
            return False
        return _bb_chunk(sub, cand_r[sel], rows[sel], x, values)

    if len(chunks) > 1 and rows.size >= PARALLEL_CLIENTS and WORKERS > 1:
        # Chunks write disjoint rows, and numpy releases the GIL inside array
        # operations, so threads use the second core on large cohorts.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return all(list(pool.map(run, chunks)))
    return all([run(sel) for sel in chunks])


class _Knap:
    """One client row over a chunk's candidates: weights, bounds, and its LP bound tables."""

    __slots__ = ("w", "cap", "low", "wmin", "beta", "table")

    def __init__(
        self,
        w: NDArray[np.float64],
        cap: NDArray[np.float64] | None,
        low: NDArray[np.float64] | None,
    ) -> None:
        self.w, self.cap, self.low = w, cap, low
        self.wmin: NDArray[np.float64] | None = None  # lightest candidate after each position
        self.beta: NDArray[np.float64] | None = None  # the row's LP price per client
        self.table: NDArray[np.float64] | None = None  # suffix top sums of (r - beta w)^+


def _knaps(
    sub: Subproblems,
    rows: NDArray[np.int64],
    idx: NDArray[np.int64],
    val: NDArray[np.float64],
    val0: NDArray[np.float64],
    kmax: NDArray[np.int64],
) -> list[_Knap]:
    """The chunk's client rows, with the bound tables of those with an upper bound."""
    finite = np.isfinite(val)
    k_hi = int(kmax.max())
    out = [
        _Knap(
            k.at(rows, idx),
            None if k.cap is None else k.cap[rows],
            None if k.low is None else k.low[rows],
        )
        for k in sub.krows
    ]
    for row in out:
        if row.cap is not None:
            # wmin[:, j] = lightest candidate after position j (inf past the end)
            row.wmin = _suffix_min_after(np.where(finite, row.w, np.inf))
    for row in out:
        if row.cap is not None:
            # LP (weak duality) bound on what can follow a node
            row.beta = knapsack_price(val0, np.where(finite, row.w, 0.0), row.cap, kmax)
            row.table = _suffix_top_sums(val0 - row.beta[:, None] * row.w, k_hi)
    return out


def greedy(
    val: NDArray[np.float64],
    knaps: list[_Knap],
    kmax: NDArray[np.int64],
    kmin: NDArray[np.int64],
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per client, the greedy subset by ``r - beta.w`` (value -inf where none is complete)."""
    h, m = val.shape
    key = np.where(np.isfinite(val), val, NEG)
    for row in knaps:
        if row.beta is not None:
            key = key - row.beta[:, None] * row.w
    order = np.argsort(-key, axis=1, kind="stable")
    hr = np.arange(h)
    count = np.zeros(h, dtype=np.int64)
    total = np.zeros(h)
    used = [np.zeros(h) for _ in knaps]
    items = np.full((h, max(1, int(kmax.max()))), -1, dtype=np.int64)
    for p in range(m):
        j = order[:, p]
        v = val[hr, j]
        short = count < kmin
        for row, u in zip(knaps, used, strict=True):
            if row.low is not None:
                short |= u < row.low  # a lower bound still unmet: non-positive experts help
        ok = np.isfinite(v) & (count < kmax) & ((v > 0) | short)
        for row, u in zip(knaps, used, strict=True):
            if row.cap is not None:
                ok &= u + row.w[hr, j] <= row.cap
        if not ok.any():
            continue
        r_ok = hr[ok]
        items[r_ok, count[ok]] = j[ok]
        total[ok] += v[ok]
        for row, u in zip(knaps, used, strict=True):
            u[ok] += row.w[r_ok, j[ok]]
        count += ok
    done = count >= kmin
    for row, u in zip(knaps, used, strict=True):
        if row.low is not None:
            done &= u >= row.low
    total = np.where(done, total, NEG)
    return total, items


@dataclass
class _Frontier:
    """The open nodes of a chunk's search, one row each: client (position in the chunk),
    last candidate position taken, count, profit, each client row's usage, the items
    (candidate positions, -1 padded) and the bound of the node's descendants."""

    cl: NDArray[np.int64]
    last: NDArray[np.int64]
    cnt: NDArray[np.int64]
    prof: NDArray[np.float64]
    used: list[NDArray[np.float64]]
    items: NDArray[np.int64]
    node_ub: NDArray[np.float64]

    @classmethod
    def roots(cls, h: int, k_hi: int, n_knaps: int) -> _Frontier:
        """One empty root per client."""
        return cls(
            cl=np.arange(h), last=np.full(h, -1), cnt=np.zeros(h, dtype=np.int64),
            prof=np.zeros(h), used=[np.zeros(h) for _ in range(n_knaps)],
            items=np.full((h, k_hi), -1, dtype=np.int64), node_ub=np.full(h, np.inf),
        )  # fmt: skip

    def take(self, keep: NDArray[np.bool_] | NDArray[np.intp]) -> _Frontier:
        return _Frontier(
            self.cl[keep], self.last[keep], self.cnt[keep], self.prof[keep],
            [u[keep] for u in self.used], self.items[keep], self.node_ub[keep],
        )  # fmt: skip


def _bb_chunk(
    sub: Subproblems,
    cand_r: NDArray[np.float64],
    rows: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
) -> bool:
    """Branch and bound for the chunk's clients ``rows`` (candidates' reduced profits
    ``cand_r``); writes improved choices into ``x`` and each client's bound into ``values``.
    Returns whether every search completed (the bounds are then the optima)."""
    h = rows.size
    m = int(np.isfinite(cand_r).sum(axis=1).max())
    idx, val = top_sorted(cand_r, m)
    kmax, kmin = sub.kmax[rows], sub.kmin[rows]
    k_hi = int(kmax.max())
    val0 = np.where(np.isfinite(val), val, 0.0)
    cp = np.concatenate([np.zeros((h, 1)), np.cumsum(np.maximum(val0, 0.0), axis=1)], axis=1)
    knaps = _knaps(sub, rows, idx, val, val0, kmax)
    best = values[rows].copy()
    best_items = np.full((h, k_hi), -1, dtype=np.int64)  # candidate positions
    # A greedy incumbent: experts by LP-reduced profit r - beta.w, each taken if it fits.
    # A strong incumbent from the start is what keeps the search small.
    g_val, g_items = greedy(val, knaps, kmax, kmin)
    improved = g_val > best
    best = np.where(improved, g_val, best)
    best_items[improved] = g_items[improved]
    upper = np.full(h, NEG)  # valid bound of what the search left open
    front = _Frontier.roots(h, k_hi, len(knaps))
    exact = True
    while front.cl.size:
        if front.cl.size * m > min(BB_MAX_CELLS, sub.node_budget * h):
            front = front.take(_cut(front.cl, front.node_ub, upper, m, h, sub.node_budget))
            exact = False
            if not front.cl.size:
                break
        children = _children(sub, front, knaps, val, cp, kmax, kmin, best, k_hi)
        if children is None:
            break
        child, complete = children
        if complete.any():
            _record(complete, child.cl, child.prof, child.items, best, best_items, improved)
        front = child.take((child.cnt < kmax[child.cl]) & (child.node_ub > best[child.cl] + sub.eps))
        if front.cl.size and sub.out_of_time():
            # Out of time: every open node is cut; its bound, within the count relaxation's
            # (valid for the whole subproblem), bounds what it hid.
            np.maximum.at(upper, front.cl, np.minimum(front.node_ub, sub.count_ub[rows[front.cl]]))
            exact = False
            break
    _write_back(sub, rows, idx, x, values, best, best_items, improved, upper)
    return exact


def _children(
    sub: Subproblems,
    front: _Frontier,
    knaps: list[_Knap],
    val: NDArray[np.float64],
    cp: NDArray[np.float64],
    kmax: NDArray[np.int64],
    kmin: NDArray[np.int64],
    best: NDArray[np.float64],
    k_hi: int,
) -> tuple[_Frontier, NDArray[np.bool_]] | None:
    """Every child of the frontier worth opening (``node_ub`` its bound) and which of them
    are complete; None when there is none."""
    cl, cnt, used = front.cl, front.cnt, front.used
    vv = val[cl]
    child_p = front.prof[:, None] + vv
    bound = child_p + _completion(knaps, used, cl, cnt, kmax, cp, k_hi)
    cols = np.arange(val.shape[1])
    ok = (cols[None, :] > front.last[:, None]) & np.isfinite(vv) & (cnt < kmax[cl])[:, None]
    short = cnt < kmin[cl]
    for row, u in zip(knaps, used, strict=True):
        if row.low is not None:
            short |= u < row.low[cl]  # a lower bound still unmet: non-positive ones may help
    ok &= (vv > 0) | short[:, None]
    ok &= bound > best[cl][:, None] + sub.eps
    for row, u in zip(knaps, used, strict=True):
        if row.cap is not None:
            ok &= u[:, None] + row.w[cl] <= row.cap[cl][:, None]
    ni, j = np.nonzero(ok)
    if ni.size == 0:
        return None
    c_cl = cl[ni]
    c_items = front.items[ni]
    c_items[np.arange(ni.size), cnt[ni]] = j
    child = _Frontier(
        cl=c_cl, last=j, cnt=cnt[ni] + 1, prof=child_p[ni, j],
        used=[u[ni] + row.w[c_cl, j] for row, u in zip(knaps, used, strict=True)],
        items=c_items, node_ub=bound[ni, j],
    )  # fmt: skip
    # complete: a subset that holds every client row
    complete = child.cnt >= kmin[c_cl]
    for row, u in zip(knaps, child.used, strict=True):
        if row.low is not None:
            complete &= u >= row.low[c_cl]
    return child, complete


def _write_back(
    sub: Subproblems,
    rows: NDArray[np.int64],
    idx: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
    best: NDArray[np.float64],
    best_items: NDArray[np.int64],
    improved: NDArray[np.bool_],
    upper: NDArray[np.float64],
) -> None:
    """The improved clients' subsets into ``x``, every client's bound into ``values``."""
    if improved.any():
        ri = np.flatnonzero(improved)
        x[rows[ri]] = False
        sel = best_items[ri]
        rr, cc = np.nonzero(sel >= 0)
        x[rows[ri[rr]], idx[ri[rr], sel[rr, cc]]] = True
    if not np.isfinite(np.maximum(best, upper)).all():
        sub.raise_blocked(int(rows[~np.isfinite(np.maximum(best, upper))][0]))
    # Nodes within eps of the incumbent were pruned: the optimum is at most best + eps.
    values[rows] = np.maximum(best + sub.eps, upper)


def _cut(
    cl: NDArray[np.int64],
    node_ub: NDArray[np.float64],
    upper: NDArray[np.float64],
    m: int,
    h: int,
    node_budget: int,
) -> NDArray[np.bool_]:
    """Too many live nodes: which nodes go on (a mask); ``upper`` keeps what the others bound.

    The clients holding the most nodes stop here, each keeping the largest bound of its
    open nodes (valid); the others go on (all stop when the chunk's table is too large).
    """
    live = np.bincount(cl, minlength=h)
    heavy = live * m > node_budget
    if not heavy.any() or cl.size * m > BB_MAX_CELLS:
        heavy = live > 0
    stop = heavy[cl]
    np.maximum.at(upper, cl[stop], node_ub[stop])
    return ~stop


def _record(
    complete: NDArray[np.bool_],
    c_cl: NDArray[np.int64],
    c_prof: NDArray[np.float64],
    c_items: NDArray[np.int64],
    best: NDArray[np.float64],
    best_items: NDArray[np.int64],
    improved: NDArray[np.bool_],
) -> None:
    """Each client's best complete child becomes its incumbent where it beats it (in place)."""
    h = best.size
    cand_v = np.where(complete, c_prof, NEG)
    top = np.full(h, NEG)
    np.maximum.at(top, c_cl, cand_v)
    better = top > best
    if better.any():
        winner = complete & better[c_cl] & (cand_v == top[c_cl])
        wi = np.flatnonzero(winner)
        # one winner per client (the last written wins; all are equal)
        best_items[c_cl[wi]] = c_items[wi]
        best[better] = top[better]
        improved |= better


def _completion(
    knaps: list[_Knap],
    used: list[NDArray[np.float64]],
    cl: NDArray[np.int64],
    cnt: NDArray[np.int64],
    kmax: NDArray[np.int64],
    cp: NDArray[np.float64],
    k_hi: int,
) -> NDArray[np.float64]:
    """(nodes, m): a bound on what can follow child j of each node (upper bounds only)."""
    m = cp.shape[1] - 1
    cols = np.arange(m)
    slots = (kmax[cl] - cnt - 1)[:, None]
    # Items that could follow child j: no more than the slots left, nor than the
    # remaining capacity holds of the lightest later candidate.
    rooms = []
    for row, u in zip(knaps, used, strict=True):
        if row.cap is not None and row.wmin is not None:
            room = row.cap[cl][:, None] - u[:, None] - row.w[cl]
            slots = np.minimum(slots, _fit_count(room, row.wmin[cl]))
            rooms.append((row, room))
    slots = np.maximum(slots, 0)
    after = np.minimum(cols[None, :] + 1 + slots, m)
    cpc = cp[cl]
    completion = np.take_along_axis(cpc, after, 1) - cpc[:, 1 : m + 1]
    slots_b = np.broadcast_to(np.minimum(slots, k_hi), (cl.size, m))
    for row, room in rooms:
        # for any beta >= 0: completion <= beta * room + top-s of (r - beta w)^+
        assert row.beta is not None and row.table is not None
        lp = row.beta[cl][:, None] * np.maximum(room, 0.0) + row.table[
            cl[:, None], cols[None, :] + 1, slots_b
        ]
        completion = np.minimum(completion, lp)
    return completion


def knapsack_price(
    val: NDArray[np.float64], w: NDArray[np.float64], cap: NDArray[np.float64], k: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Per row, a price ``beta >= 0`` of the knapsack row making its LP bound small.

    Minimises ``f(beta) = beta * cap + (sum of the k largest of (val - beta w)^+)`` (convex)
    by golden-section search. Any ``beta >= 0`` gives a valid bound; a good one prunes more.
    """
    h, m = val.shape
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where((w > 0) & (val > 0), val / np.where(w > 0, w, 1.0), 0.0)
    hi = ratio.max(axis=1) if m else np.zeros(h)
    # A ratio that overflows (a weight near 0, e.g. subnormal) would make beta infinite and
    # the bound NaN, which prunes everything; beta = 0 there keeps the bound valid.
    hi = np.where(np.isfinite(hi), hi, 0.0)
    lo = np.zeros(h)
    kk = np.clip(k, 0, m)
    k_hi = int(kk.max()) if h else 0
    take = np.arange(k_hi)[None, :] < kk[:, None]

    def f(beta: NDArray[np.float64]) -> NDArray[np.float64]:
        # sum of the kk largest positive gains, by k_hi passes of max (k is small)
        gain = np.maximum(val - beta[:, None] * w, 0.0)
        total = beta * cap
        rows = np.arange(h)
        for p in range(k_hi):
            j = gain.argmax(axis=1)
            total = total + np.where(take[:, p], gain[rows, j], 0.0)
            gain[rows, j] = 0.0
        return total

    g = 0.381966
    a, b = lo + g * (hi - lo), hi - g * (hi - lo)
    fa_, fb = f(a), f(b)
    for _ in range(PRICE_STEPS):
        left = fa_ <= fb
        hi = np.where(left, b, hi)
        lo = np.where(left, lo, a)
        a_new = lo + g * (hi - lo)
        b_new = hi - g * (hi - lo)
        a, b = a_new, b_new
        fa_, fb = f(a), f(b)
    return np.where(fa_ <= fb, a, b)


def _suffix_top_sums(gain: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """``out[i, p, s]`` = sum of the ``s`` largest positive ``gain[i, p:]`` (s = 0..k)."""
    h, m = gain.shape
    out = np.zeros((h, m + 1, k + 1))
    top = np.zeros((h, k))  # the k largest positive values of the suffix, decreasing
    for p in range(m - 1, -1, -1):
        v = np.maximum(gain[:, p], 0.0)[:, None]
        # insert v into the sorted top-k: new[c] = max(top[c], min(top[c-1], v))
        prev = np.concatenate([np.full((h, 1), np.inf), top[:, :-1]], axis=1)
        top = np.maximum(top, np.minimum(prev, v))
        out[:, p, 1:] = np.cumsum(top, axis=1)
    return out


def _suffix_min_after(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """``out[:, j] = min(w[:, j+1:])`` per row (``inf`` for the last column)."""
    rev = np.minimum.accumulate(w[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([rev[:, 1:], np.full((w.shape[0], 1), np.inf)], axis=1)


def _fit_count(room: NDArray[np.float64], lightest: NDArray[np.float64]) -> NDArray[np.int64]:
    """How many items of weight >= ``lightest`` fit in ``room`` (a large number if weightless)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.where(lightest > 0, np.floor(np.maximum(room, 0.0) / lightest), 1 << 30)
    return np.minimum(q, 1 << 30).astype(np.int64)
