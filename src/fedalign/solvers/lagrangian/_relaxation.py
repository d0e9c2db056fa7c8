"""The relaxation bound and a ratio-greedy choice, for clients that take many experts.

When a client's subproblem is neither small enough to enumerate nor fit for the integer DP,
it contributes the smallest of the count relaxation and the LP (Dantzig) relaxation of each
client row's upper bound on its own -- each a relaxation (lower bounds dropped), so a valid
upper bound -- and its choice is the greedy one by profit per unit of normalised weight
(which may miss a lower bound: the primal side repairs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ._common import NEG

if TYPE_CHECKING:
    from ._subproblems import Subproblems


def relaxation(
    sub: Subproblems,
    r: NDArray[np.float64],
    rows: NDArray[np.int64],
    x: NDArray[np.bool_],
    values: NDArray[np.float64],
    chosen_values: NDArray[np.float64],
) -> None:
    """Ratio-greedy choice and a valid bound: min(count bound, Dantzig bound per row)."""
    rr = r[rows]
    h, e = rr.shape
    kmax = sub.kmax[rows]
    kmin = sub.kmin[rows]
    srt = -np.sort(-rr, axis=1)
    pos = np.arange(e)[None, :]
    take = (pos < kmax[:, None]) & np.isfinite(srt) & ((srt > 0) | (pos < kmin[:, None]))
    bound = np.where(take, srt, 0.0).sum(axis=1)
    caps = [(k.dense(rows), k.cap[rows]) for k in sub.krows if k.cap is not None]
    lows = [(k.dense(rows), k.low[rows]) for k in sub.krows if k.low is not None]
    norm_w = np.zeros_like(rr)
    for w, cap in caps:
        bound = np.minimum(bound, dantzig(rr, w, cap))
        norm_w += w / np.maximum(cap, 1e-12)[:, None]
    values[rows] = bound
    # Primal choice: best profit per unit of (normalised) weight, forced items first.
    prof = np.where(np.isfinite(rr), rr, NEG)
    unweighted = np.where(prof > 0, np.inf, np.where(prof < 0, NEG, 0.0))
    with np.errstate(over="ignore"):  # near-zero weights: an infinite ratio, taken first
        ratio = np.where(norm_w > 0, prof / np.maximum(norm_w, 1e-300), unweighted)
    ratio = np.where(np.isfinite(rr), ratio, NEG)
    order = np.argsort(-ratio, axis=1, kind="stable")
    count = np.zeros(h, dtype=np.int64)
    used = [np.zeros(h) for _ in caps]
    low_used = [np.zeros(h) for _ in lows]
    hr = np.arange(h)
    for p in range(e):
        j = order[:, p]
        v = prof[hr, j]
        short = count < kmin
        for (_, low), u in zip(lows, low_used, strict=True):
            short |= u < low  # a lower bound still unmet: a non-positive expert may help
        ok = np.isfinite(v) & (count < kmax) & ((v > 0) | short)
        for (w, cap), u in zip(caps, used, strict=True):
            ok &= u + w[hr, j] <= cap
        for (w, _), u in zip(caps, used, strict=True):
            u += np.where(ok, w[hr, j], 0.0)
        for (w, _), u in zip(lows, low_used, strict=True):
            u += np.where(ok, w[hr, j], 0.0)
        count += ok
        x[rows[ok], j[ok]] = True
    chosen_values[rows] = np.where(x[rows], rr, 0.0).sum(axis=1)


def dantzig(
    r: NDArray[np.float64], w: NDArray[np.float64], cap: NDArray[np.float64]
) -> NDArray[np.float64]:
    """LP bound of the 0-1 knapsack per row (positive profits only, items sorted by ratio)."""
    prof = np.where(np.isfinite(r) & (r > 0), r, 0.0)
    free = prof > 0
    zero_w = free & (w <= 0)
    base = np.where(zero_w, prof, 0.0).sum(axis=1)
    with np.errstate(over="ignore"):  # near-zero weights: an infinite ratio, taken first
        ratio = np.where(free & ~zero_w, prof / np.where(w > 0, w, 1.0), 0.0)
    order = np.argsort(-ratio, axis=1, kind="stable")
    p_s = np.take_along_axis(np.where(zero_w, 0.0, prof), order, 1)
    w_s = np.take_along_axis(np.where(free & ~zero_w, w, 0.0), order, 1)
    cum_w = np.cumsum(w_s, axis=1)
    prev = cum_w - w_s
    with np.errstate(over="ignore"):
        frac = np.clip((cap[:, None] - prev) / np.where(w_s > 0, w_s, 1.0), 0.0, 1.0)
    frac = np.where(w_s > 0, frac, 0.0)
    return base + (p_s * frac).sum(axis=1)
