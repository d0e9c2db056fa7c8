"""``local_search``: improving moves that keep an assignment feasible.

Each round applies drop, replace, seat-shift and two-client-trade moves for many clients at
once, then fills the freed capacity. Every move is tested against every hard row: the
count rows as before, client rows on the client's side, expert rows on the expert's side
and total rows over the whole batch -- a :class:`~.capacity.Slack` per row holds the room left under
its upper bound and above its lower bound, and a batch of moves is kept only while the
running sums of its increases and of its decreases stay within them (a pessimistic test,
exact for any batch it accepts). The per-round moves and their small grouped-ranking helpers
are private to this module.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...problem import AlignmentProblem
from ..base import Budget
from .capacity import Slack, assigned, block_of, column_of, floors, group_cumsum, residual, slacks
from .insertion import fill

__all__ = ["local_search"]


def local_search(
    problem: AlignmentProblem,
    x: ArrayLike,
    *,
    budget: Budget | float | None = None,
    max_rounds: int = 50,
    tol: float = 1e-4,
) -> NDArray[np.bool_]:
    """Improve a feasible assignment with moves that keep it feasible.

    Each round applies, for many clients at once:

    * **drop**: remove assigned pairs of negative desirability where the client stays at or
      above ``min_experts``, the expert at or above ``expert_min_clients``, and every row's
      lower bound holds;
    * **replace**: a client swaps one assigned expert ``k`` for an unassigned ``j`` of higher
      desirability, where ``j`` has a free seat, ``k`` keeps its minimum and every row
      holds (best move per client; moves on the same expert, or under the same total row,
      are limited by running sums, so every accepted set stays feasible);
    * **shift**: an expert's seat moves from a client that values it less (and has experts
      to spare) to one that values it more and has room for it -- the move that matters
      when expert caps bind;
    * **exchange**: two clients trade experts (``a`` gives ``k`` and takes ``j``, ``b`` the
      reverse), loads and counts unchanged; for each expert pair the gain splits into a term
      per client, so the best trades pair the sorted terms;
    * **add**: :func:`fill` with the freed capacity (pricing soft rows' penalties in).

    The moves are chosen by desirability. With soft rows, each move type's changes are
    evaluated with ``problem.objective`` (penalties included) and undone when they lower
    it, so the objective never decreases.

    It stops when a round improves the objective by at most ``tol * max(1, |objective|)``,
    after ``max_rounds`` rounds, or when the budget runs out. A round costs about
    ``n_experts`` times the number of assigned pairs (the exchange move looks at every pair
    of experts), so give large problems a budget.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
        A feasible assignment; not modified.
    budget : Budget or float seconds, optional
        Wall-clock budget.
    max_rounds : int
        Upper limit on rounds.
    tol : float
        Relative improvement below which a round counts as no progress.

    Returns
    -------
    (n, E) bool ndarray
        A feasible assignment with objective at least that of ``x``.
    """
    if not isinstance(budget, Budget):
        budget = Budget(budget)
    x = np.array(x, dtype=bool, copy=True)
    guarded = bool(problem.soft_rows)

    def step(move: Callable[[], object]) -> None:
        # With soft rows a move chosen by desirability may cost more in penalties: undo it.
        if not guarded:
            move()
            return
        keep, was = x.copy(), problem.objective(x)
        move()
        if problem.objective(x) < was:
            x[:] = keep

    for _ in range(max_rounds):
        if budget.expired():
            break
        before = problem.objective(x)
        step(lambda: _drop_round(problem, x))
        step(lambda: _replace_round(problem, x, budget))
        step(lambda: _shift_round(problem, x, budget))
        step(lambda: _exchange_round(problem, x, budget))
        step(lambda: fill(problem, x, budget=budget))
        if problem.objective(x) <= before + tol * max(1.0, abs(before)):
            break
    return x


def _drop_round(problem: AlignmentProblem, x: NDArray[np.bool_]) -> None:
    """Drop negative pairs that no minimum needs (worst first)."""
    d = problem.desirability
    neg = x & (d < 0)
    if not neg.any():
        return
    rows, cols = np.nonzero(neg)
    order = np.argsort(d[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    spare_c = (x.sum(axis=1) - problem.min_experts)[rows]
    spare_e = (x.sum(axis=0) - problem.expert_min_clients)[cols]
    keep = (group_cumsum(rows, np.ones(rows.size, np.int64)) <= spare_c) & (
        group_cumsum(cols, np.ones(cols.size, np.int64)) <= spare_e
    )
    for room in floors(problem, x):
        keep &= room.running(rows, cols)
    x[rows[keep], cols[keep]] = False


def _replace_round(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> None:
    """One vectorised round of improving replace moves (at most one per client)."""
    d = problem.desirability
    n, e = problem.shape
    pairs = assigned(x)
    res = residual(problem, x, pairs=pairs)
    client, expert, total = slacks(problem, x, pairs=pairs, res=res)
    load = x.sum(axis=0)
    spare_e = load - problem.expert_min_clients
    open_j = problem.fits & ~x & (res.seats > 0)[None, :]
    for s in expert:  # expert j gains the pair, on its own
        if s.up is not None:
            open_j &= s.row.weight <= s.up[None, :]
    best_gain = np.zeros(n)
    best_k = np.full(n, -1)
    best_j = np.full(n, -1)
    for k in range(e):
        if budget.expired():
            break
        if spare_e[k] <= 0:
            continue
        rows = np.flatnonzero(x[:, k])
        if rows.size == 0:
            continue
        ok = open_j[rows]
        for s in (*client, *total):
            owner = rows[:, None] if s.row.over == "client" else np.zeros((1, 1), np.intp)
            ok &= s.alone(owner, block_of(s.row, rows) - column_of(s.row, rows, k)[:, None])
        for s in expert:  # expert k loses the pair, on its own
            if s.lo is not None:
                ok &= (column_of(s.row, rows, k) <= s.lo[k])[:, None]
        gain = np.where(ok, d[rows] - d[rows, k][:, None], -np.inf)
        jj = np.argmax(gain, axis=1)
        g = gain[np.arange(rows.size), jj]
        better = g > best_gain[rows]
        r = rows[better]
        best_gain[r] = g[better]
        best_k[r] = k
        best_j[r] = jj[better]
    rows = np.flatnonzero(best_k >= 0)
    if rows.size == 0:
        return
    order = np.argsort(-best_gain[rows], kind="stable")
    rows = rows[order]
    ks, js = best_k[rows], best_j[rows]
    keep = (group_cumsum(js, np.ones(js.size, np.int64)) <= res.seats[js]) & (
        group_cumsum(ks, np.ones(ks.size, np.int64)) <= spare_e[ks]
    )
    for s in expert:  # j gains, k loses: the two sides' running sums
        if s.up is not None:
            keep &= group_cumsum(js, s.row.at(rows, js)) <= s.up[js]
        if s.lo is not None:
            keep &= group_cumsum(ks, s.row.at(rows, ks)) <= s.lo[ks]
    for s in total:
        keep &= s.running(np.zeros(rows.size, np.intp), s.row.at(rows, js) - s.row.at(rows, ks))
    x[rows[keep], ks[keep]] = False
    x[rows[keep], js[keep]] = True


def _shift_round(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> None:
    """One round of improving seat shifts, expert by expert (each client moves once a round).

    For expert ``j``, its holders that can spare it (count above ``min_experts``) are paired,
    lowest desirability first, with non-holders that have room for it, highest first; a pair
    is shifted while the receiver values ``j`` more than the holder. Loads are unchanged.
    """
    d = problem.desirability
    pairs = assigned(x)
    res = residual(problem, x, pairs=pairs)
    client, expert, total = slacks(problem, x, pairs=pairs, res=res)
    client = [s for s in client if s.lo is not None]  # their upper side is res.client
    shared = [*expert, *total]
    count = x.sum(axis=1)
    moved = np.zeros(problem.n_clients, dtype=bool)
    for j in range(problem.n_experts):
        if budget.expired():
            return
        can_drop = x[:, j] & (count > problem.min_experts) & ~moved
        for s in client:  # the holder loses j
            assert s.lo is not None
            can_drop &= column_of(s.row, slice(None), j) <= s.lo
        holders = np.flatnonzero(can_drop)
        if holders.size == 0:
            continue
        ok = problem.fits[:, j] & ~x[:, j] & (res.count > 0) & ~moved
        for room in res.client:
            ok &= room.column(j)
        takers = np.flatnonzero(ok)
        if takers.size == 0:
            continue
        holders = holders[np.argsort(d[holders, j], kind="stable")]
        takers = takers[np.argsort(-d[takers, j], kind="stable")]
        m = min(holders.size, takers.size)
        gain = d[takers[:m], j] - d[holders[:m], j]
        k = int(np.count_nonzero(gain > 1e-12 * np.maximum(1.0, np.abs(d[holders[:m], j]))))
        if k == 0:
            continue
        h, r = holders[:k], takers[:k]
        cols = np.full(k, j)
        if shared:  # j's rows and the total rows see the difference of the two pairs
            keep = np.ones(k, dtype=bool)
            for s in shared:
                keep &= s.running(s.row.owner(r, cols), s.row.at(r, cols) - s.row.at(h, cols))
            h, r, cols = h[keep], r[keep], cols[keep]
            for s in shared:
                s.apply(s.row.owner(r, cols), s.row.at(r, cols) - s.row.at(h, cols))
        x[h, j] = False
        x[r, j] = True
        moved[h] = moved[r] = True
        count[h] -= 1
        count[r] += 1
        res.count[h] += 1
        res.count[r] -= 1
        for room in res.client:
            room.left[h] += column_of(room.row, h, j)
            room.left[r] -= column_of(room.row, r, j)
        for s in client:
            assert s.lo is not None
            s.lo[h] -= column_of(s.row, h, j)
            s.lo[r] += column_of(s.row, r, j)


def _ranked(groups: NDArray[np.intp], values: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Order by group, then value descending; and each entry's rank within its group."""
    order = np.lexsort((-values, groups))
    g = groups[order]
    start = np.ones(g.size, dtype=bool)
    start[1:] = g[1:] != g[:-1]
    first = np.flatnonzero(start)
    rank = np.arange(g.size) - first[np.cumsum(start) - 1]
    return order, rank


def _group_max(groups: NDArray[np.intp], values: NDArray[np.float64], size: int) -> NDArray[np.float64]:
    """Per group id (``0..size-1``), the largest value; ``-inf`` for an empty group.

    ``groups`` must be sorted (equal ids contiguous).
    """
    out = np.full(size, -np.inf)
    if groups.size:
        start = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        out[groups[start]] = np.maximum.reduceat(values, start)
    return out


def _exchange_round(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> None:
    """One round of improving two-client trades over every expert pair (each client once).

    For experts ``k < j``: ``A`` holds ``k`` but not ``j``, ``B`` holds ``j`` but not ``k``.
    Trading gives ``u_a = d[a, j] - d[a, k]`` plus ``v_b = d[b, k] - d[b, j]``; each client's
    rows are checked on its own side of the trade, the expert and total rows on the chosen
    trades. Sorting ``u`` and ``v`` in descending order and pairing equal ranks while
    ``u + v > 0`` gives the best trades for the pair of experts. For one ``k`` every ``j``
    is handled at once (ranks within groups); trades that share a client keep the best one,
    the rest wait for the next round.
    """
    d = problem.desirability
    n, e = problem.shape
    client, expert, total = slacks(problem, x)
    moved = np.zeros(n, dtype=bool)
    # Assigned pairs listed once: a client that trades is marked moved and skipped for the
    # rest of the round, so the lists never need updating.
    rows, cols = np.nonzero(x)
    by_expert = np.argsort(cols, kind="stable")
    rows, cols = rows[by_expert], cols[by_expert]
    offsets = np.searchsorted(cols, np.arange(e + 1))
    for k in range(e - 1):
        if budget.expired():
            return
        a_all = rows[offsets[k] : offsets[k + 1]]
        a_all = a_all[~moved[a_all]]
        if a_all.size == 0:
            continue
        a_cl, aj = _side_a(problem, x, client, a_all, k)
        if a_cl.size == 0:
            continue
        b_cl, bj = _side_b(problem, x, client, rows[offsets[k + 1] :], cols[offsets[k + 1] :], moved, k)
        if b_cl.size == 0:
            continue
        u = d[a_cl, aj] - d[a_cl, k]
        v = d[b_cl, k] - d[b_cl, bj]
        ta, tb, tj = _best_trades(a_cl, aj, u, b_cl, bj, v, n, e)
        if ta.size == 0:
            continue
        if expert or total:
            ta, tb, tj = _shared_ok(expert, total, ta, tb, tj, k)
        tk = np.full(ta.size, k)
        x[ta, k] = False
        x[ta, tj] = True
        x[tb, tj] = False
        x[tb, k] = True
        moved[ta] = moved[tb] = True
        for s in client:  # each client trades once
            s.apply(ta, s.row.at(ta, tj) - s.row.at(ta, tk), unique=True)
            s.apply(tb, s.row.at(tb, tk) - s.row.at(tb, tj), unique=True)


def _side_a(
    problem: AlignmentProblem, x: NDArray[np.bool_], client: list[Slack], a_all: NDArray[np.intp], k: int
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Side A of the trades on expert ``k``: pairs ``(a, j)``, ``a`` holding ``k``, ``j > k``
    free for ``a`` and within its client rows once ``k`` is given up (grouped by ``j``)."""
    ok = ~x[a_all] & problem.fits[a_all]
    ok[:, : k + 1] = False
    for s in client:
        ok &= s.alone(a_all[:, None], block_of(s.row, a_all) - column_of(s.row, a_all, k)[:, None])
    aj, ai = np.nonzero(ok.T)  # grouped by j
    return a_all[ai], aj


def _side_b(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    client: list[Slack],
    b_cl: NDArray[np.intp],
    bj: NDArray[np.intp],
    moved: NDArray[np.bool_],
    k: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Side B: of the pairs ``(b, j)`` with ``j > k`` (grouped by ``j``), those whose client
    has not moved, lacks ``k``, fits it, and stays within its client rows taking ``k`` for ``j``."""
    keep = ~moved[b_cl] & ~x[b_cl, k] & problem.fits[b_cl, k]
    for s in client:
        keep &= s.alone(b_cl, column_of(s.row, b_cl, k) - s.row.at(b_cl, bj))
    return b_cl[keep], bj[keep]


def _best_trades(
    a_cl: NDArray[np.intp],
    aj: NDArray[np.intp],
    u: NDArray[np.float64],
    b_cl: NDArray[np.intp],
    bj: NDArray[np.intp],
    v: NDArray[np.float64],
    n: int,
    e: int,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """The improving trades ``(a, b, j)``: equal ranks of ``u`` and ``v`` paired within each
    ``j`` while ``u + v > 0``, best first, each client in at most one."""
    # Only entries that could be part of an improving trade matter: u + max(v) > 0.
    keep_u = u + _group_max(bj, v, e)[aj] > 0
    keep_v = v + _group_max(aj, u, e)[bj] > 0
    a_cl, aj, u = a_cl[keep_u], aj[keep_u], u[keep_u]
    b_cl, bj, v = b_cl[keep_v], bj[keep_v], v[keep_v]
    none = np.zeros(0, dtype=np.intp)
    if a_cl.size == 0 or b_cl.size == 0:
        return none, none, none
    ou, ru = _ranked(aj, u)
    ov, rv = _ranked(bj, v)
    width = int(max(ru.max(initial=0), rv.max(initial=0))) + 1
    key_u = aj[ou].astype(np.int64) * width + ru
    key_v = bj[ov].astype(np.int64) * width + rv
    _, iu, iv = np.intersect1d(key_u, key_v, assume_unique=True, return_indices=True)
    tu, tv = ou[iu], ov[iv]
    gain = u[tu] + v[tv]
    good = gain > 1e-12 * np.maximum(1.0, np.abs(u[tu]) + np.abs(v[tv]))
    tu, tv, gain = tu[good], tv[good], gain[good]
    order = np.argsort(-gain, kind="stable")
    ta, tb, tj = a_cl[tu[order]], b_cl[tv[order]], aj[tu[order]]
    # Keep a trade only where it is the first (best) one of both its clients.
    pos = np.arange(ta.size)
    first = np.full(n, ta.size)
    np.minimum.at(first, ta, pos)
    np.minimum.at(first, tb, pos)
    take = (first[ta] == pos) & (first[tb] == pos)
    return ta[take], tb[take], tj[take]


def _shared_ok(
    expert: list[Slack], total: list[Slack], ta: NDArray[np.intp], tb: NDArray[np.intp], tj: NDArray[np.intp], k: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """The trades (``ta`` gives ``k`` takes ``tj``, ``tb`` the reverse) that keep the expert and
    total rows, by running sums over the batch; their changes are recorded."""
    tk = np.full(ta.size, k)
    keep = np.ones(ta.size, dtype=bool)

    def deltas(s: Slack) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        at = s.row.at
        return at(tb, tk) - at(ta, tk), at(ta, tj) - at(tb, tj)  # on k, on j

    for s in expert:
        dk, dj = deltas(s)
        keep &= s.running(tk, dk) & s.running(tj, dj)
    for s in total:
        dk, dj = deltas(s)
        keep &= s.running(np.zeros(ta.size, np.intp), dk + dj)
    ta, tb, tj, tk = ta[keep], tb[keep], tj[keep], tk[keep]
    for s in expert:
        dk, dj = deltas(s)
        s.apply(tk, dk)
        s.apply(tj, dj)
    for s in total:
        dk, dj = deltas(s)
        s.apply(np.zeros(ta.size, np.intp), dk + dj)
    return ta, tb, tj
