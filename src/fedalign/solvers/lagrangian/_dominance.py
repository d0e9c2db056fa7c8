"""The k-dominance filter: experts some optimal subset of a client provably avoids.

With a single client row besides the count, with an upper bound and no lower one, order each
client's experts by weight (ties by position: a strict total order). Expert ``p`` is
*dominated* by every earlier expert ``q`` in that order with ``r[q] >= r[p]``: swapping
``p`` for ``q`` keeps every client row (count equal, weight not larger) and loses nothing.
If ``p`` has ``max_experts`` dominators (``min_experts`` when ``r[p] <= 0``: a non-positive
expert is only ever taken to reach the minimum, and dropping it otherwise loses nothing),
some optimal subset avoids it: an optimal subset containing ``p`` misses one of its
dominators, and swapping moves the subset strictly earlier in the order, so repeated swaps
end in an optimal subset of undominated experts. With several rows, or a lower bound (which
a swap for a lighter expert may break), nothing is ruled out.

Capacity sharpens this: a subset holding ``p`` has at most ``c_p`` experts, where
``c_p - 1`` is how many of the client's lightest experts fit beside ``p``, so ``p`` needs
only ``min(max_experts, c_p)`` dominators (same swap argument).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._common import NEG

if TYPE_CHECKING:
    from ._subproblems import Subproblems


def capacity_need(sub: Subproblems, rows: NDArray[np.int64]) -> NDArray[np.int8]:
    """(E, h) in weight order, for the listed clients: 1 + how many lightest experts fit
    beside each expert.

    Counted over all the client's fitting experts (the expert itself included), which
    can only overcount: a valid, slightly weaker limit. Computed once per client and kept
    (``sub.cap_need``, ``sub.cap_known``); only for the clients asked for, so that an
    evaluation under a deadline pays for its chunks only (for every client at once it took
    1-2 s at 100,000 x 128 on a loaded machine, past the evaluation's deadline).
    """
    n, e = sub.problem.shape
    if sub.cap_need is None:
        sub.cap_need = np.empty((e, n), dtype=np.int8)
        sub.cap_known = np.zeros(n, dtype=bool)
    assert sub.cap_known is not None
    todo = rows[~sub.cap_known[rows]]
    if todo.size:
        sub.cap_need[:, todo] = _capacity_need(sub, todo)
        sub.cap_known[todo] = True
    return sub.cap_need if rows.size == n and sub.cap_known.all() and _is_range(rows) else sub.cap_need[:, rows]


def _is_range(rows: NDArray[np.int64]) -> bool:
    """Whether ``rows`` is ``0, 1, ..., n - 1`` (the full matrix needs no copy)."""
    return bool(rows.size == 0 or (rows[0] == 0 and (np.diff(rows) == 1).all()))


def _capacity_need(sub: Subproblems, rows: NDArray[np.int64]) -> NDArray[np.int8]:
    """:func:`capacity_need` computed for the listed clients."""
    row = sub.single_row()
    assert row is not None and row.cap is not None and sub.weight_order is not None
    w, cap = row.weight, row.cap[rows]
    fits = sub.problem.fits[rows]
    h, e = fits.shape
    k = sub.kmax_all
    order = sub.weight_order
    if w.ndim == 1:
        w_sorted = np.broadcast_to(w[order[0]], (h, e))
        fit_sorted = fits[:, order[0]]
    else:
        w_sorted = np.take_along_axis(w[rows], order[rows], axis=1)
        fit_sorted = np.take_along_axis(fits, order[rows], axis=1)
    # the k lightest fitting experts of each client, and their running sums
    light = np.where(fit_sorted, w_sorted, np.inf)
    if k < e:
        light = np.partition(light, k - 1, axis=1)[:, :k]
    light = np.sort(light, axis=1)
    with np.errstate(invalid="ignore"):
        csum = np.cumsum(light[:, :k], axis=1)
    need = np.empty((e, h), dtype=np.int8)  # small counts (at most max_experts + 1)
    for p in range(e):
        room = cap - w_sorted[:, p]
        need[p] = np.minimum(1 + (csum <= room[:, None]).sum(axis=1), 127)
    return need


#: Clients filtered at once when an evaluation has a deadline (the clock is read between;
#: 16,384 made two chunks of 20,000 clients, the first 0.1-0.2 s long on a loaded machine).
DEADLINE_CHUNK = 4096


def candidates(
    sub: Subproblems, r: NDArray[np.float64], rows: NDArray[np.int64]
) -> NDArray[np.float64]:
    """``r[rows]`` with every expert that the k-dominance argument rules out set to -inf.

    Under a deadline (:attr:`Subproblems.deadline`) clients are filtered in chunks and the
    ones left when it passes keep every expert (the filter only ever shrinks a search).
    """
    if sub.deadline is None or rows.size <= DEADLINE_CHUNK:
        return _filtered(sub, r, rows)
    parts = []
    for s in range(0, rows.size, DEADLINE_CHUNK):
        chunk = rows[s : s + DEADLINE_CHUNK]
        parts.append(r[chunk] if sub.out_of_time() else _filtered(sub, r, chunk))
    return np.concatenate(parts)


def _filtered(
    sub: Subproblems, r: NDArray[np.float64], rows: NDArray[np.int64]
) -> NDArray[np.float64]:
    """:func:`candidates` for one set of clients."""
    rr = r[rows]
    row = sub.single_row()
    if row is None:
        return rr
    w = row.weight
    if sub.weight_order is None:
        if w.ndim == 1:
            sub.weight_order = np.argsort(w, kind="stable")[None, :]
        else:
            sub.weight_order = np.argsort(w, axis=1, kind="stable")
    order = sub.weight_order
    kmax = sub.kmax[rows]
    kmin = sub.kmin[rows]
    k = int(kmax.max()) if rows.size else 0
    if k == 0:
        return rr
    # Work position by position on contiguous (E, h) arrays.
    h = rows.size
    global_order = order.shape[0] == 1
    if global_order:
        r_t = np.ascontiguousarray(rr.T)  # expert-major; visited in weight order below
    else:
        r_t = np.ascontiguousarray(np.take_along_axis(rr, order[rows], axis=1).T)
    top = [np.full(h, NEG) for _ in range(k)]  # the k largest r of the prefix, decreasing
    keep_t = np.empty(r_t.shape, dtype=bool)
    cap_need = capacity_need(sub, rows)
    kmax8 = kmax.astype(np.int8)
    kmin8 = np.minimum(kmin, 127).astype(np.int8)
    for p in range(r_t.shape[0]):
        col = int(order[0, p]) if global_order else p
        v = r_t[col]
        dominators = np.zeros(h, dtype=np.int8)
        for t in top:
            dominators += t >= v
        need_pos = np.minimum(kmax8, cap_need[p])
        need = np.where(v > 0, need_pos, np.minimum(kmin8, need_pos))
        keep_t[col] = (dominators < need) & (v > NEG)
        # insert v into the sorted top-k: new[c] = max(top[c], min(top[c-1], v))
        prev = v
        for c in range(k):
            old_c = top[c]
            top[c] = np.maximum(old_c, prev)
            prev = np.minimum(old_c, prev)
    if global_order:
        out = np.where(keep_t.T, rr, NEG)
    else:
        out = np.empty_like(rr)
        np.put_along_axis(out, order[rows], np.where(keep_t, r_t, NEG).T, axis=1)
    return out
