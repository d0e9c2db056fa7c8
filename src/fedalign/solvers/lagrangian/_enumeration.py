"""Enumeration of the top-m candidates of clients that take few experts, with a certificate.

Every subset of size ``min_experts..max_experts`` of a client's best ``m`` candidates by
reduced profit ``r`` is checked: ``V`` is the best feasible one. *Exactness certificate*:
any subset using a candidate outside the top ``m`` is worth at most ``r_(m+1) + P_(k-1)``
(the best outside profit plus the ``k - 1`` largest positive ones, ``k = max_experts``);
if ``V`` reaches it, ``V`` is the optimum. The clients left uncertified go on to the branch
and bound. On later price vectors the previous choice is a warm incumbent and the
enumeration is skipped.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._branch_and_bound import branch_and_bound
from ._common import CHUNK_CELLS, NEG, top_sorted
from ._dominance import candidates

if TYPE_CHECKING:
    from ._subproblems import Subproblems


@lru_cache(maxsize=64)
def combinations(m: int, k_lo: int, k_hi: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """All subsets of ``range(m)`` of size ``k_lo..k_hi``: (n_combos, m) 0/1 matrix, sizes."""
    rows: list[NDArray[np.float64]] = []
    sizes: list[int] = []
    for size in range(k_lo, k_hi + 1):
        for combo in itertools.combinations(range(m), size):
            row = np.zeros(m)
            row[list(combo)] = 1.0
            rows.append(row)
            sizes.append(size)
    mat = np.array(rows).reshape(len(rows), m)
    mat.flags.writeable = False
    return mat, np.array(sizes, dtype=np.int64)


def enumerate_clients(
    sub: Subproblems,
    r: NDArray[np.float64],
    rows: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
    chosen_values: NDArray[np.float64],
) -> bool:
    """Subproblems of small-k clients: top-m enumeration, then branch and bound.

    Writes each client's choice into ``x``, its optimum (or a valid upper bound of it) into
    ``values`` and the value of its choice into ``chosen_values``. Returns False when some
    client was bounded rather than solved (node limit hit).
    """
    e = sub.problem.n_experts
    cand_r = candidates(sub, r, rows)
    if sub.prev is not None:
        return _warm(sub, sub.prev[rows], r, cand_r, rows, x, values, chosen_values)
    m = min(sub.candidates, e)
    kmax = sub.kmax[rows]
    idx, val = top_sorted(cand_r, min(m + 1, e))
    if m < e:
        r_out = val[:, m]
        idx, val = idx[:, :m], val[:, :m]
    else:
        r_out = np.full(rows.size, NEG)
    mm = idx.shape[1]
    val0 = np.where(np.isfinite(val), val, 0.0)
    best_v, combo = _best_subsets(sub, rows, idx, val)
    # Certificate: a subset with an expert outside the top m is worth at most
    # r_out + P_(k-1) (its best outside expert plus the k-1 best positive ones).
    pos_cum = np.concatenate(
        [np.zeros((rows.size, 1)), np.cumsum(np.maximum(val0, 0.0), axis=1)], axis=1
    )
    p_k1 = pos_cum[np.arange(rows.size), np.clip(kmax - 1, 0, mm)]
    outside = np.where(kmax > 0, r_out + p_k1, NEG)
    has = np.isfinite(best_v)
    chosen = combo & has[:, None]
    ri, pi = np.nonzero(chosen)
    x[rows[ri], idx[ri, pi]] = True
    certified = best_v >= outside
    chosen_values[rows] = np.where(has, best_v, 0.0)
    # A certified client without any feasible subset: every fitting expert was enumerated.
    blocked = certified & ~has & ~np.isfinite(outside)
    if blocked.any():
        sub.raise_blocked(int(rows[blocked][0]))
    if certified.all():
        values[rows] = np.maximum(best_v, outside)
        return True
    values[rows] = best_v
    open_pos = np.flatnonzero(~certified)
    ok = branch_and_bound(sub, cand_r[open_pos], rows[open_pos], x, values)
    done = rows[open_pos]
    chosen_values[done] = np.where(x[done], r[done], 0.0).sum(axis=1)
    return ok


def _warm(
    sub: Subproblems,
    prev: NDArray[np.bool_],
    r: NDArray[np.float64],
    cand_r: NDArray[np.float64],
    rows: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
    chosen_values: NDArray[np.float64],
) -> bool:
    """Branch and bound from the previous prices' choice ``prev`` (the enumeration is skipped).

    That choice still satisfies the client's rows (prices do not change them) and is
    usually near-optimal, so it is a strong incumbent.
    """
    x[rows] = prev
    values[rows] = np.where(prev, r[rows], 0.0).sum(axis=1)
    if sub.has_low:
        # A previous choice that missed a lower bound (a search cut short) is no incumbent.
        values[rows] = np.where(sub.complete(rows, prev), values[rows], NEG)
    ok = branch_and_bound(sub, cand_r, rows, x, values)
    chosen_values[rows] = np.where(x[rows], r[rows], 0.0).sum(axis=1)
    return ok


def _best_subsets(
    sub: Subproblems,
    rows: NDArray[np.int64],
    idx: NDArray[np.int64],
    val: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Per client, the best subset of its top candidates ``idx`` that holds every client row.

    Returns its value (-inf where none does) and its (h, m) membership, in chunks of clients
    so that the (clients x subsets) tables stay small.
    """
    kmax = sub.kmax[rows]
    mm = idx.shape[1]
    combos, sizes = combinations(mm, min(int(sub.kmin[rows].min()), mm), min(int(kmax.max()), mm))
    best_v = np.full(rows.size, NEG)
    best_c = np.zeros(rows.size, dtype=np.int64)
    finite = np.isfinite(val)
    val0 = np.where(finite, val, 0.0)
    pad = (~finite).astype(np.float64)
    weights = [(k, k.at(rows, idx)) for k in sub.krows]
    step = max(1, CHUNK_CELLS // max(1, len(combos)))
    for s in range(0, rows.size, step):
        sl = slice(s, s + step)
        sub_rows = rows[sl]
        v = val0[sl] @ combos.T
        ok = (pad[sl] @ combos.T) == 0
        ok &= sizes[None, :] <= sub.kmax[sub_rows][:, None]
        ok &= sizes[None, :] >= sub.kmin[sub_rows][:, None]
        for k, w_c in weights:
            used = w_c[sl] @ combos.T
            if k.cap is not None:
                ok &= used <= k.cap[sub_rows][:, None]
            if k.low is not None:
                ok &= used >= k.low[sub_rows][:, None]
        v = np.where(ok, v, NEG)
        c = v.argmax(axis=1)
        best_c[sl] = c
        best_v[sl] = v[np.arange(len(c)), c]
    return best_v, combos[best_c] > 0
