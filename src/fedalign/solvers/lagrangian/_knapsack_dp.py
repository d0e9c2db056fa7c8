"""The exact 0-1 knapsack by dynamic programming, for integer single-row clients.

Used when clients have one client row besides the count, an upper bound only, with integer
weights and capacities (e.g. OR-Library GAP, where a client may take many experts), the
count row cannot bind and ``min_experts`` is 0: the classic DP over capacities, looping over
experts, vectorised over clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._common import DP_MAX_CAPACITY, NEG

if TYPE_CHECKING:
    from ._subproblems import Subproblems


def dp_row(sub: Subproblems) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    """Integer (n, E) weights and (n,) capacities for the DP, when it applies."""
    row = sub.single_row()
    if row is None or row.upper is None or not row.integral or (sub.kmin > 0).any():
        return None
    w, cap = np.broadcast_to(row.weight, sub.problem.shape), row.upper
    if cap.size == 0 or cap.max() > DP_MAX_CAPACITY:
        return None
    # Only when the count row cannot bind.
    if (sub.problem.max_experts < sub.problem.fits.sum(axis=1)).any():
        return None
    return np.asarray(w, dtype=np.int64), np.asarray(cap, dtype=np.int64)


def dynamic_programme(
    sub: Subproblems,
    r: NDArray[np.float64],
    rows: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
) -> None:
    """Exact 0-1 knapsack by DP over integer capacities (loop over experts)."""
    assert sub.dp_row is not None
    w_all, cap_all = sub.dp_row
    w = w_all[rows]
    cap = cap_all[rows]
    h, e = w.shape
    c_max = int(cap.max())
    grid = np.arange(c_max + 1)[None, :]
    # dp[i, c] = best value of a subset of the experts seen so far with weight <= c.
    dp = np.zeros((h, c_max + 1))
    took = np.zeros((e, h, c_max + 1), dtype=bool)
    rr = r[rows]
    hrange = np.arange(h)[:, None]
    for j in range(e):
        prof = rr[:, j]
        useful = prof > 0
        if not useful.any():
            continue
        src = grid - w[:, j][:, None]
        cand = np.where(src >= 0, dp[hrange, np.maximum(src, 0)], NEG) + prof[:, None]
        better = (cand > dp) & useful[:, None]
        took[j] = better
        dp = np.where(better, cand, dp)
    c = cap.copy()
    hr = np.arange(h)
    for j in range(e - 1, -1, -1):
        t = took[j, hr, c]
        x[rows[t], j] = True
        c = c - np.where(t, w[:, j], 0)
    values[rows] = dp[hr, cap]
