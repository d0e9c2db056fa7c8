"""Ordered greedy insertion: add candidate pairs in a given order, each only if it still fits.

:func:`add_in_order` is the exact sequential greedy computed in vectorised chunks;
:func:`add_best_first` feeds it candidates in descending key order without sorting them
all; :func:`fill` adds every positive-priority pair that fits, best first.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from .capacity import Residual, _group_cumsum, residual

__all__ = ["add_best_first", "add_in_order", "fill"]


def add_in_order(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    *,
    chunk: int = 1 << 18,
    res: Residual | None = None,
) -> NDArray[np.bool_]:
    """Add the pairs ``(rows[k], cols[k])`` in the given order, each one only if it still fits.

    The result is exactly that of the sequential greedy ("for each pair in order: add it when
    no upper bound -- ``max_experts``, memory, deadline, ``expert_max_clients`` -- breaks"),
    but computed in vectorised chunks. Within a chunk every remaining pair is tested against
    the current assignment *plus every earlier remaining pair of the chunk on the same client
    or expert* (running sums per group). A pair that passes this pessimistic test fits
    whatever the earlier pairs' fate, so it is accepted; a pair that fails even against the
    current assignment alone can never fit, so it is dropped. The remaining, undecided pairs
    are retested; the first of them is always decided in the next pass, so each pass makes
    progress, and in practice a chunk takes two or three passes. All constraints are
    packing constraints, which is what makes the pessimistic acceptance exact.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
        Modified in place and returned. Should satisfy every upper bound already.
    rows, cols : (m,) int arrays
        Candidate pairs, best first. Pairs that are not allowed are skipped.
    chunk : int
        Pairs processed per vectorised step.
    res : Residual, optional
        The residual of ``x`` if the caller has it; updated in place.

    Returns
    -------
    (n, E) bool array
        ``x``, with the accepted pairs added.
    """
    if res is None:
        res = residual(problem, x)
    mem_w = problem.expert_memory
    t = problem.train_time
    n = problem.n_clients
    e = problem.n_experts
    fits = problem.fits
    for start in range(0, len(rows), chunk):
        r = np.asarray(rows[start : start + chunk], dtype=np.intp)
        c = np.asarray(cols[start : start + chunk], dtype=np.intp)
        while r.size:
            ok = fits[r, c] & ~x[r, c] & (res.count[r] > 0) & (res.seats[c] > 0)
            if res.memory is not None:
                ok &= mem_w[c] <= res.memory[r]  # type: ignore[index]
            if res.time is not None:
                ok &= t[r, c] <= res.time[r]  # type: ignore[index]
            r, c = r[ok], c[ok]
            if not r.size:
                break
            acc = _group_cumsum(r, np.ones(r.size, dtype=np.int64)) <= res.count[r]
            acc &= _group_cumsum(c, np.ones(c.size, dtype=np.int64)) <= res.seats[c]
            if res.memory is not None:
                acc &= _group_cumsum(r, mem_w[c]) <= res.memory[r]  # type: ignore[index]
            if res.time is not None:
                tt = t[r, c]  # type: ignore[index]
                acc &= _group_cumsum(r, tt) <= res.time[r]
            ra, ca = r[acc], c[acc]
            x[ra, ca] = True
            res.count -= np.bincount(ra, minlength=n)
            res.seats -= np.bincount(ca, minlength=e)
            if res.memory is not None:
                res.memory -= np.bincount(ra, weights=mem_w[ca], minlength=n)  # type: ignore[index]
            if res.time is not None:
                res.time -= np.bincount(ra, weights=t[ra, ca], minlength=n)  # type: ignore[index]
            r, c = r[~acc], c[~acc]
    return x


def add_best_first(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    candidates: NDArray[np.bool_],
    key: NDArray[np.float64],
    *,
    segment: int = 1 << 19,
    limit: NDArray[np.int64] | None = None,
    rng: np.random.Generator | None = None,
) -> NDArray[np.bool_]:
    """Add the candidate pairs in descending ``key`` order, each one only if it still fits.

    The same result as sorting every candidate and calling :func:`add_in_order` (ties in
    ``key`` go to the lower flat position), without sorting them all: about the best
    ``segment`` candidates (every candidate at or above a cut estimated from a sample) are
    sorted and inserted;
    then the candidates that can no longer fit (their client or expert is full, or the client
    lacks memory or time for them) are discarded before the next segment. Typically a few
    segments saturate most clients, so a large problem costs a few linear passes.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
        Modified in place and returned; should satisfy every upper bound already.
    candidates : (n, E) bool array
        Pairs that may be added.
    key : (n, E) float array
        Higher first.
    limit : (n,) int array, optional
        A per-client count to stop at, below ``max_experts`` (the random solver's targets).
    rng : numpy Generator, optional
        Breaks ties in ``key`` at random (within each segment, so it costs no global pass).

    Returns
    -------
    (n, E) bool array
        ``x`` with the accepted pairs added.
    """
    cand = candidates & ~x
    res = residual(problem, x)
    if limit is not None:
        res.count = np.minimum(res.count, limit - x.sum(axis=1))
    while True:
        cand &= (res.count > 0)[:, None] & (res.seats > 0)[None, :]
        if res.memory is not None:
            cand &= problem.expert_memory[None, :] <= res.memory[:, None]  # type: ignore[index]
        if res.time is not None:
            cand &= problem.train_time <= res.time[:, None]  # type: ignore[operator]
        vals = key[cand]
        if vals.size == 0:
            return x
        last = vals.size <= segment
        if last:
            sel = cand
        else:
            # The cut is estimated from a strided sample: exactness does not depend on it,
            # only the segment's size does.
            sample = vals[:: max(1, vals.size // (1 << 16))]
            rank = min(sample.size - 1, max(0, int(sample.size * segment / vals.size)))
            cut = -np.partition(-sample, rank)[rank]
            sel = cand & (key >= cut)
        rows, cols = np.nonzero(sel)
        vals = key[rows, cols]
        if rng is None:
            order = np.argsort(-vals, kind="stable")
        else:
            order = np.lexsort((rng.random(vals.size), -vals))
        add_in_order(problem, x, rows[order], cols[order], res=res)
        if last:
            return x
        # Every pair of this segment is now assigned or can never fit again.
        cand &= key < cut


def fill(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    *,
    priority: NDArray[np.float64] | None = None,
    rng: np.random.Generator | None = None,
) -> NDArray[np.bool_]:
    """Add every positive-priority pair that still fits, best first (global greedy order).

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
        Modified in place and returned; should satisfy every upper bound already.
    priority : (n, E) float array, optional
        What "best" and "positive" mean; defaults to the problem's desirability.
    rng : numpy Generator, optional
        Breaks ties at random (deterministic, lowest position first, without it).

    Returns
    -------
    (n, E) bool array
        ``x`` with the pairs added.
    """
    d = problem.desirability if priority is None else priority
    cand = problem.fits & (d > 0)
    cand &= (residual(problem, x).count > 0)[:, None]
    return add_best_first(problem, x, cand, d, rng=rng)
