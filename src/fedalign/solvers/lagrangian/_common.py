"""Constants and small array helpers shared by the parts of the Lagrangian solver."""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

NEG = -np.inf
#: Rows x combinations evaluated at once in the enumeration (memory of one chunk).
CHUNK_CELLS = 2_000_000
#: Clients searched together by the branch and bound, and its live-node limit (nodes x m).
BB_CHUNK_CLIENTS = 4096
BB_MAX_CELLS = 8_000_000
BB_BUCKETS = np.array([6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96])
#: From this many clients on, branch-and-bound chunks run on a few threads.
PARALLEL_CLIENTS = 20_000
WORKERS = min(2, os.cpu_count() or 1)
#: Largest sample of clients the price phases use by default.
SAMPLE_MAX = 4000
#: Up to this many pairs, the problem's cheap infeasibility test runs first.
CHECK_PAIRS = 2_000_000
#: Golden-section steps for a client's knapsack price (any price gives a valid bound).
PRICE_STEPS = 7
#: Cutting planes kept by the box-step method.
MAX_CUTS = 100
#: Largest capacity (in weight units) the integer dynamic programme accepts.
DP_MAX_CAPACITY = 20_000
#: Largest (clients x capacities x experts) table of decisions the DP keeps for backtracking.
DP_MAX_CELLS = 300_000_000


def top_sorted(r: NDArray[np.float64], k: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per row, the indices and values of the ``k`` largest entries, in decreasing order."""
    n, e = r.shape
    k = min(k, e)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
    if k <= 6:
        # k passes of argmax beat a partition on wide rows.
        work = r.copy()
        rows = np.arange(n)
        idx = np.empty((n, k), dtype=np.int64)
        val = np.empty((n, k))
        for p in range(k):
            j = work.argmax(axis=1)
            idx[:, p] = j
            val[:, p] = work[rows, j]
            work[rows, j] = NEG
        return idx, val
    if k < e:
        part = np.argpartition(-r, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(e), (n, e))
    pv = np.take_along_axis(r, part, axis=1)
    order = np.argsort(-pv, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(pv, order, axis=1)


def count_fitting(
    w: NDArray[np.float64],
    cap: NDArray[np.float64],
    fits: NDArray[np.bool_],
    kmax: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Per client, how many of its lightest fitting experts fit together (at most kmax)."""
    n = fits.shape[0]
    k = int(kmax.max()) if n else 0
    if k == 0:
        return np.zeros(n, dtype=np.int64)
    ww = np.where(fits, np.broadcast_to(w, fits.shape), np.inf)
    if k < ww.shape[1]:
        ww = np.partition(ww, k - 1, axis=1)[:, :k]
    ww = np.sort(ww, axis=1)[:, :k]
    with np.errstate(invalid="ignore"):
        csum = np.cumsum(ww, axis=1)
    return (csum <= cap[:, None]).sum(axis=1).astype(np.int64)
