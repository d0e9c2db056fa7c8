"""Ordered greedy insertion: add candidate pairs in a given order, each only if it still fits.

:func:`add_in_order` is the exact sequential greedy computed in vectorised chunks;
:func:`add_best_first` feeds it candidates in descending key order without sorting them
all; :func:`fill` adds every positive-priority pair that fits, best first (pricing the soft
rows' penalties in through :mod:`.soft`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from ..base import Budget
from .capacity import Residual, residual
from .soft import price_windows

__all__ = ["add_best_first", "add_in_order", "fill", "fill_priced"]


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
    no upper bound of any hard row breaks" -- the count rows, every client row, every expert
    row, every total row), but computed in vectorised chunks. Within a chunk every remaining
    pair is tested against the current assignment *plus every earlier remaining pair of the
    chunk on the same client (client rows), the same expert (expert rows), or anywhere in the
    chunk (total rows)* -- running sums per group, a plain running sum for a total row. A
    pair that passes this pessimistic test fits whatever the earlier pairs' fate, so it is
    accepted; a pair that fails even against the current assignment alone can never fit, so
    it is dropped. The remaining, undecided pairs are retested; the first of them is always
    decided in the next pass, so each pass makes progress, and in practice a chunk takes two
    or three passes. All rows are packing rows (weights ``>= 0``), which is what makes the
    pessimistic acceptance exact. With a total row every pair of a pass shares one running
    sum, so a pass works on a window of the chunk that halves-or-doubles with how much the
    previous pass decided (any prefix may be decided first: later pairs never change the
    fate of earlier ones).

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
    fits = problem.fits
    # A total row makes every pair of a batch share one running sum, so a pass can decide
    # only a prefix; a window that shrinks when a pass decides little keeps that linear.
    windowed = bool(res.total)
    for start in range(0, len(rows), chunk):
        r = np.asarray(rows[start : start + chunk], dtype=np.intp)
        c = np.asarray(cols[start : start + chunk], dtype=np.intp)
        window = r.size
        while r.size:
            rw, cw = (r[:window], c[:window]) if windowed else (r, c)
            ok = fits[rw, cw] & ~x[rw, cw] & res.admits(rw, cw)
            if not windowed:
                r, c = r[ok], c[ok]
                if not r.size:
                    break
                acc = res.running(r, c)
                ra, ca = r[acc], c[acc]
                x[ra, ca] = True
                res.take(ra, ca)
                r, c = r[~acc], c[~acc]
                continue
            acc = np.zeros(rw.size, dtype=bool)
            acc[ok] = res.running(rw[ok], cw[ok])
            x[rw[acc], cw[acc]] = True
            res.take(rw[acc], cw[acc])
            keep = ok & ~acc
            decided = rw.size - int(keep.sum())
            r = np.concatenate([rw[keep], r[window:]])
            c = np.concatenate([cw[keep], c[window:]])
            # Halve-or-double: a pass that decides little had too long a shared running sum.
            window = max(64, 4 * decided) if decided < window // 4 else 2 * window
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
    res: Residual | None = None,
) -> NDArray[np.bool_]:
    """Add the candidate pairs in descending ``key`` order, each one only if it still fits.

    The same result as sorting every candidate and calling :func:`add_in_order` (ties in
    ``key`` go to the lower flat position), without sorting them all: about the best
    ``segment`` candidates (every candidate at or above a cut estimated from a sample) are
    sorted and inserted;
    then the candidates that can no longer fit (a row of their client, their expert or a
    total row has no room left for them) are discarded before the next segment. Typically a few
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
    res : Residual, optional
        The residual of ``x`` to insert against (it may carry extra rooms, such as the
        penalty windows of :func:`fill_priced`); updated in place.

    Returns
    -------
    (n, E) bool array
        ``x`` with the accepted pairs added.
    """
    cand = candidates & ~x
    if res is None:
        res = residual(problem, x)
    if limit is not None:
        res.count = np.minimum(res.count, limit - x.sum(axis=1))
    while True:
        cand &= res.block()
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
    soft: bool | None = None,
    budget: Budget | None = None,
) -> NDArray[np.bool_]:
    """Add every positive-priority pair that still fits, best first (global greedy order).

    With soft rows, and when the priority is the desirability itself, a pair is added only
    where its desirability exceeds the penalty it adds (:func:`fill_priced`): the
    objective ``problem.objective`` then rises with every pair added.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
        Modified in place and returned; should satisfy every upper bound already.
    priority : (n, E) float array, optional
        What "best" and "positive" mean; defaults to the problem's desirability.
    rng : numpy Generator, optional
        Breaks ties at random (deterministic, lowest position first, without it).
    soft : bool, optional
        Price the soft rows' penalties in. Default: when the problem has soft rows and no
        ``priority`` is given (another priority is in other units than the penalties).
    budget : Budget, optional
        Stops the priced rounds when it runs out (what is added so far stays).

    Returns
    -------
    (n, E) bool array
        ``x`` with the pairs added.
    """
    if soft is None:
        soft = priority is None
    if soft and problem.soft_rows:
        return fill_priced(problem, x, priority=priority, rng=rng, budget=budget)
    d = problem.desirability if priority is None else priority
    cand = problem.fits & (d > 0)
    cand &= (residual(problem, x).count > 0)[:, None]
    return add_best_first(problem, x, cand, d, rng=rng)


def fill_priced(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    *,
    priority: NDArray[np.float64] | None = None,
    rng: np.random.Generator | None = None,
    budget: Budget | None = None,
) -> NDArray[np.bool_]:
    """Add pairs best first while each one's desirability exceeds the penalty it adds.

    Rounds of :func:`add_best_first`: each prices every soft row's next units
    (:func:`~.soft.price_windows`: the slope of its penalty, pessimistic over a window that
    the insertion may not leave) and adds, best value first, the pairs whose desirability
    minus that price is positive. A soft row between its bounds is thus first filled up to
    its bound as if the bound were a cap, then beyond it only by pairs worth their penalty;
    a soft lower bound draws in pairs whose desirability, plus the penalty they save, is
    positive. Every pair added raises ``problem.objective``.

    Since a window holds only the units at one price, a round could fill cheap pairs into
    one window while a better pair waits for the next band of another; a descending
    threshold keeps the global order: a round adds only pairs worth at least the threshold,
    which falls to a quarter when a round adds nothing (down to 1/100 of the best value,
    then 0).
    Narrow windows (exact prices) run first; at threshold 0 one wide round lets pairs
    heavier than a band in, and the fill stops when that adds nothing.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
        Modified in place and returned; should satisfy every hard upper bound already.
    priority : (n, E) float array, optional
        The desirability to price against (default: the problem's).
    rng : numpy Generator, optional
        Breaks ties at random.
    budget : Budget, optional
        Checked before each round; the fill stops when it runs out.

    Returns
    -------
    (n, E) bool array
        ``x`` with the pairs added.
    """
    d = problem.desirability if priority is None else priority
    wide_from: NDArray[np.bool_] | None = None
    level: float | None = None  # the threshold; None: start at the best value
    floor = 0.0
    while budget is None or not budget.expired():
        res = residual(problem, x)
        hard = problem.fits & ~x & res.block()
        rooms, value = price_windows(problem, x, d, candidates=wide_from)
        cand = hard & (value > 0)
        if not cand.any():
            return x
        if level is None:
            level = float(value[cand].max())
            floor = 1e-2 * level
        take = cand & (value >= level) if level > 0 else cand
        for room in rooms:  # the windows are rooms the insertion may not leave
            getattr(res, room.over).append(room)
        before = int(x.sum())
        add_best_first(problem, x, take, value, rng=rng, res=res)
        if int(x.sum()) > before:
            if wide_from is not None:  # back to narrow windows, from the top
                wide_from, level = None, None
        elif level > 0:
            level = level / 4 if level / 4 >= floor else 0.0
        elif wide_from is None:
            # Narrow windows stalled: widen them to reach the heaviest pair still worth
            # adding at the narrow price (a wider window only raises the price).
            wide_from = cand
        else:
            return x
    return x
