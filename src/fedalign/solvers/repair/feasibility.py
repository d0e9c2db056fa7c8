"""``repair``: any 0/1 matrix to a feasible assignment close to it, and its phases.

The phases run in place on a bool matrix: trim what breaks an upper bound (per client, per
expert, then over all pairs for total rows), meet ``min_experts`` (proposals, then
alternating paths, then repacking a row), meet ``expert_min_clients`` (additions, swaps,
alternating paths), meet the lower bounds of weighted rows (:mod:`.lower`), and finally
fill. The alternating paths and repacking live in :mod:`.augment`; the insertion in
:mod:`.insertion`. Soft rows play no part: they never make an assignment infeasible.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ...errors import InfeasibleError
from ...problem import AlignmentProblem, check
from ..base import Budget
from .augment import augment_clients, augment_experts, repack
from .capacity import Guard, Residual, addable, assigned, group_cumsum, residual, rooms_of
from .insertion import add_in_order
from .insertion import fill as _fill  # ``repair`` has a keyword argument named ``fill``
from .lower import meet_row_lower

#: Seconds per client-expert pair of the final fill's first segment, which has no clock
#: inside (0.9 s at 100,000 x 128 under a load of 4, ending a ``lagrangian`` first plan
#: 0.9 s past its deadline): with less time left the fill is skipped (the plan stays
#: feasible, only less full).
FILL_SECONDS_PER_PAIR = 3e-8

__all__ = ["repair", "trim_clients", "trim_experts", "trim_totals"]


def trim_clients(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
    """Drop each over-full client's lowest-priority experts until its upper bounds hold."""
    res = residual(problem, x)

    def over(rows: NDArray[np.intp]) -> NDArray[np.bool_]:
        bad = res.count[rows] < 0
        for room in res.client:
            bad |= room.left[rows] < 0
        return bad

    rows = np.flatnonzero(over(np.arange(problem.n_clients)))
    while rows.size:
        worst = np.argmin(np.where(x[rows], key[rows], np.inf), axis=1)
        x[rows, worst] = False
        res.count[rows] += 1
        for room in res.client:
            room.left[rows] += room.weights(rows, worst)
        rows = rows[over(rows)]


def trim_experts(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
    """Drop each over-full expert's lowest-priority clients, preferring clients with spare experts.

    An expert is over-full when its load is above ``expert_max_clients`` or an expert row
    is above its upper bound; it drops holders in that order until every bound holds
    (holders that add nothing to a broken weighted row are passed over when the count is
    not what is broken).
    """
    load = x.sum(axis=0)
    count = x.sum(axis=1)
    rooms = rooms_of(problem.expert_rows, assigned(x)) if problem.expert_rows else []
    over = load > problem.expert_max_clients
    for room in rooms:
        over |= room.left < 0
    for j in np.flatnonzero(over):
        holders = np.flatnonzero(x[:, j])
        at_min = count[holders] <= problem.min_experts[holders]
        order = holders[np.lexsort((key[holders, j], at_min))]
        excess = int(load[j] - problem.expert_max_clients[j])
        broken = [room for room in rooms if room.left[j] < 0]
        if broken and excess <= 0:
            helps = np.zeros(order.size, dtype=bool)
            for room in broken:
                helps |= room.weights(order, np.full(order.size, j)) > 0
            order = order[helps]
        cut = max(excess, 0)
        for room in broken:
            freed = np.cumsum(room.weights(order, np.full(order.size, j)))
            enough = np.flatnonzero(freed >= -room.left[j])
            cut = max(cut, int(enough[0]) + 1 if enough.size else order.size)
        drop = order[:cut]
        x[drop, j] = False
        count[drop] -= 1


def trim_totals(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    *,
    need: list[float] | None = None,
    keep: NDArray[np.bool_] | None = None,
) -> int:
    """Drop the lowest-priority pairs until every total row's upper bound holds; returns how many.

    Pairs whose client and expert both keep their minimum go first; only pairs that use a
    broken row are dropped. With ``need`` (room to free per total row, in the order of
    ``problem.total_rows``), pairs are dropped until that much room is free, and only
    pairs no minimum needs (to make room for a minimum elsewhere); ``keep`` (an ``(n, E)``
    mask) marks pairs that stay.
    """
    if not problem.total_rows:
        return 0
    rows, cols = assigned(x)
    rooms = rooms_of(problem.total_rows, (rows, cols))
    short = [-room.left[0] for room in rooms] if need is None else need
    broken = [(room, float(amount)) for room, amount in zip(rooms, short, strict=True) if amount > 0]
    if not broken:
        return 0
    helps = np.zeros(rows.size, dtype=bool)
    for room, _ in broken:
        helps |= room.weights(rows, cols) > 0
    if keep is not None:
        helps &= ~keep[rows, cols]
    rows, cols = rows[helps], cols[helps]
    # Cheapest first, and among those first the pairs whose client and expert stay at or
    # above their minimum even after every cheaper pair of theirs is dropped.
    order = np.argsort(key[rows, cols], kind="stable")
    rows, cols = rows[order], cols[order]
    spare = group_cumsum(rows, np.ones(rows.size, np.int64)) <= (x.sum(axis=1) - problem.min_experts)[rows]
    spare &= group_cumsum(cols, np.ones(cols.size, np.int64)) <= (x.sum(axis=0) - problem.expert_min_clients)[cols]
    if need is not None:
        rows, cols = rows[spare], cols[spare]
    else:
        order = np.argsort(~spare, kind="stable")
        rows, cols = rows[order], cols[order]
    cut = 0
    for room, amount in broken:
        freed = np.cumsum(room.weights(rows, cols))
        enough = np.flatnonzero(freed >= amount)
        cut = max(cut, int(enough[0]) + 1 if enough.size else rows.size)
    x[rows[:cut], cols[:cut]] = False
    return cut


def _total_room_for(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    res: Residual,
    pairs: tuple[NDArray[np.intp], NDArray[np.intp]],
    keep: NDArray[np.bool_],
) -> bool:
    """Free room in the total rows for ``pairs`` (which nothing else blocks) by dropping the
    cheapest pairs no minimum needs, except those ``keep`` marks; returns whether any went."""
    need = [max(float(room.weights(*pairs).sum() - room.left[0]), 0.0) for room in res.total]
    return trim_totals(problem, x, key, need=need, keep=keep) > 0


def _blocked_by_totals(
    problem: AlignmentProblem, x: NDArray[np.bool_], res: Residual, rows: NDArray[np.intp]
) -> NDArray[np.bool_]:
    """``(len(rows), E)``: pairs of these clients that every bound but the total rows admits."""
    ok = problem.fits[rows] & ~x[rows]
    ok &= (res.count[rows] > 0)[:, None] & (res.seats > 0)[None, :]
    for room in (*res.client, *res.expert):
        ok &= room.block(rows)
    return ok


def _meet_client_min(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], budget: Budget | None = None
) -> None:
    """Add experts to clients below ``min_experts``: proposals, alternating paths, repacking."""
    while True:
        _tick(budget, "meeting min_experts")
        rows = np.flatnonzero(x.sum(axis=1) < problem.min_experts)
        if rows.size == 0:
            return
        res = residual(problem, x)
        ok = addable(problem, x, res, rows)
        has = ok.any(axis=1)
        if has.any():
            # Every short client proposes its best addable expert; an expert accepts as many
            # proposals as it has seats, best first. At least one pair is added per round.
            prop_rows = rows[has]
            prop_cols = _pick_for_min(problem, x, res, prop_rows, ok[has], key)
            order = np.argsort(-key[prop_rows, prop_cols], kind="stable")
            before = int(x.sum())
            add_in_order(problem, x, prop_rows[order], prop_cols[order])
            if int(x.sum()) > before:
                continue
        if res.total and not has.all():
            # A full total row can block a minimum: drop the cheapest spare pairs elsewhere.
            blocked = rows[~has]
            free = _blocked_by_totals(problem, x, res, blocked)
            some = free.any(axis=1)
            if some.any():
                cols = np.argmax(np.where(free[some], key[blocked[some]], -np.inf), axis=1)
                keep = np.zeros(problem.shape, dtype=bool)
                keep[blocked] = True  # the short clients' own pairs stay
                if _total_room_for(problem, x, key, res, (blocked[some], cols), keep):
                    continue
        # Every short client is blocked: augment along alternating paths, else repack a row.
        if augment_clients(problem, x, key, rows, res=res):  # x is still what res describes
            continue
        # One guard and one load for all the tries: a failed repack leaves x unchanged, and
        # the first success ends the loop.
        guard, load = Guard(problem, x), x.sum(axis=0)
        if not any(
            repack(problem, x, key, int(i), guard=guard, load=load)
            or repack(problem, x, key, int(i), strict=False, guard=guard, load=load)
            for i in rows
        ):
            return


def _pick_for_min(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    res: Residual,
    rows: NDArray[np.intp],
    ok: NDArray[np.bool_],
    key: NDArray[np.float64],
) -> NDArray[np.intp]:
    """Per short client, the expert to add next: the best one that leaves room for the rest.

    With client rows, adding a heavy expert can leave too little room for the experts the
    client still needs. An expert is *safe* when, after adding it, each client row still
    holds the lightest ``need - 1`` other addable experts. Each client takes its best safe
    expert; a client with none takes its lightest (normalised) addable expert.
    """
    best = np.argmax(np.where(ok, key[rows], -np.inf), axis=1)
    need = problem.min_experts[rows] - x[rows].sum(axis=1) - 1  # still needed after this one
    # Clients that need just this one more: every addable expert is safe.
    deep = np.flatnonzero(need > 0)
    if not res.client or deep.size == 0:
        return best
    sub_rows, sub_ok, need = rows[deep], ok[deep], need[deep]
    safe = sub_ok.copy()
    light = np.zeros(sub_ok.shape)
    m = sub_ok.shape[1]
    ar = np.arange(deep.size)
    kk = np.clip(need, 0, m - 1)
    width = int(min(m, kk.max() + 1))  # only the smallest ``kk + 1`` values of a row matter
    for room in res.client:
        weight = room.row.weight
        w = np.broadcast_to(weight if weight.shape[0] == 1 else weight[sub_rows], sub_ok.shape)
        cap = room.left[sub_rows]
        vals = np.where(sub_ok, w, np.inf)
        srt = np.sort(np.partition(vals, width - 1, axis=1)[:, :width], axis=1)
        csum = np.concatenate([np.zeros((deep.size, 1)), np.cumsum(srt, axis=1)], axis=1)
        sum_k = csum[ar, kk]
        sum_k1 = csum[ar, np.minimum(kk + 1, width)]
        kth = np.where(kk > 0, srt[ar, np.maximum(kk - 1, 0)], -np.inf)
        among = vals <= kth[:, None]
        reserve = np.where(among, sum_k1[:, None] - np.where(sub_ok, w, 0.0), sum_k[:, None])
        reserve = np.where(need[:, None] > m - 1, np.inf, reserve)
        safe &= w + reserve <= cap[:, None]
        light += np.where(sub_ok, w / np.maximum(cap, 1e-300)[:, None], np.inf)
    safe_best = np.argmax(np.where(safe, key[sub_rows], -np.inf), axis=1)
    lightest = np.argmin(light, axis=1)
    best[deep] = np.where(safe.any(axis=1), safe_best, lightest)
    return best


def _meet_expert_min(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], budget: Budget | None = None
) -> None:
    """Give experts below ``expert_min_clients`` more clients: adds, swaps, alternating paths.

    A swap makes client ``i`` drop an expert ``k`` that has clients to spare (load above its
    own minimum) to make room for the short expert; the client's count is unchanged, so
    ``min_experts`` keeps holding. Longer chains of such swaps are alternating paths.
    """
    emin = problem.expert_min_clients
    # Experts with the fewest possible clients first: they have the least choice.
    short = np.flatnonzero(x.sum(axis=0) < emin)
    short = short[np.argsort(problem.fits[:, short].sum(axis=0), kind="stable")]
    for jj in short.tolist():
        j = int(jj)
        while True:
            _tick(budget, "meeting expert_min_clients")
            deficit = int(emin[j] - x[:, j].sum())
            if deficit <= 0:
                break
            res = residual(problem, x)
            col_ok = problem.fits[:, j] & ~x[:, j] & (res.count > 0)
            for room in res.rooms:
                col_ok &= room.column(j)
            cand = np.flatnonzero(col_ok)
            if cand.size:
                take = cand[np.argsort(-key[cand, j], kind="stable")[:deficit]]
                if res.shared:  # weighted expert rows or total rows: add while they fit
                    add_in_order(problem, x, take, np.full(take.size, j), res=res)
                else:
                    x[take, j] = True
                continue
            if res.total:  # a full total row can block a minimum: make room elsewhere
                free = _blocked_by_totals(problem, x, res, np.arange(problem.n_clients))[:, j]
                cand = np.flatnonzero(free)
                if cand.size:
                    take = cand[np.argsort(-key[cand, j], kind="stable")[:deficit]]
                    keep = np.zeros(problem.shape, dtype=bool)
                    keep[:, j] = True  # the short expert's own pairs stay
                    if _total_room_for(problem, x, key, res, (take, np.full(take.size, j)), keep):
                        continue
            if not _swap_in(problem, x, key, j, deficit, res):
                break
    while True:
        _tick(budget, "meeting expert_min_clients")
        short = np.flatnonzero(x.sum(axis=0) < emin)
        if short.size == 0 or not augment_experts(problem, x, key, short):
            return


def _swap_in(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    j: int,
    deficit: int,
    res: Residual,
) -> bool:
    """Up to ``deficit`` clients each swap one spare expert for expert ``j``; False if none can."""
    rows = np.flatnonzero(problem.fits[:, j] & ~x[:, j])
    if rows.size == 0:
        return False
    load = x.sum(axis=0)
    spare = load > problem.expert_min_clients
    spare[j] = False
    ok = x[rows] & spare[None, :]
    cols = np.full(rows.size, j)
    for room in res.client:
        w = room.row.weight
        wb = w if w.shape[0] == 1 else w[rows]
        ok &= (room.weights(rows, cols)[:, None] - wb) <= room.left[rows, None]
    loss = np.where(ok, key[rows] - key[rows, j][:, None], np.inf)
    k = np.argmin(loss, axis=1)
    best = loss[np.arange(rows.size), k]
    valid = np.isfinite(best)
    if not valid.any():
        return False
    rows, k, best = rows[valid], k[valid], best[valid]
    order = np.argsort(best, kind="stable")
    rows, k = rows[order], k[order]
    # Each dropped expert must stay at or above its own minimum.
    keep = group_cumsum(k, np.ones(k.size, dtype=np.int64)) <= (load - problem.expert_min_clients)[k]
    rows, k = rows[keep][:deficit], k[keep][:deficit]
    guard = Guard(problem, x)
    if not guard:
        x[rows, k] = False
        x[rows, j] = True
        return True
    # Weighted expert rows, total rows or client lower bounds: one swap at a time.
    done = 0
    for i, kk in zip(rows.tolist(), k.tolist(), strict=True):
        done += guard.apply(x, (np.array([i]), np.array([j])), (np.array([i]), np.array([kk])))
    return done > 0


def _tick(budget: Budget | None, doing: str) -> None:
    """Raise :class:`~fedalign.TimeLimitError` when ``budget`` has run out (None: no limit)."""
    if budget is not None:
        budget.check(f"repairing its assignment ({doing})")


def make_feasible(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    budget: Budget | None = None,
) -> tuple[NDArray[np.bool_], bool]:
    """Trim, then meet the minimums, in place; returns ``x`` and whether it is feasible.

    With ``budget``, the trims and each round of the minimum phases look at the clock
    first and raise :class:`~fedalign.TimeLimitError` once it has run out.
    """
    # Each trim is a pass over every pair (0.5 s at 100,000 x 128, loaded): the clock is
    # read before and between them, so a repair started late gives up at once.
    _tick(budget, "trimming client rows")
    trim_clients(problem, x, key)
    _tick(budget, "trimming expert rows")
    trim_experts(problem, x, key)
    trim_totals(problem, x, key)
    for _ in range(3):
        _meet_client_min(problem, x, key, budget)
        _meet_expert_min(problem, x, key, budget)
        meet_row_lower(problem, x, key, budget)
        if not check(problem, x):
            return x, True
    return x, False


def _infeasible(problem: AlignmentProblem, x: NDArray[np.bool_]) -> InfeasibleError:
    reason = problem.infeasibility_reason()
    if reason is not None:
        return InfeasibleError(f"no feasible assignment exists: {reason}")
    v = check(problem, x)[0]
    return InfeasibleError(
        f"repair could not meet {v.constraint} ({v.message}); the problem may still be "
        "feasible: an exact solver ('milp' or 'cpsat') can decide"
    )


def _feasible_from(
    problem: AlignmentProblem, start: NDArray[np.bool_], key: NDArray[np.float64], budget: Budget | None
) -> NDArray[np.bool_]:
    """:func:`make_feasible` from ``start``; with weighted rows, once more from nothing if that
    fails (the start itself can be the trap: heavy experts the minimums cannot pack around).

    Raises :class:`~fedalign.InfeasibleError` naming the blocking row when neither works.
    """
    x, ok = make_feasible(problem, start.copy(), key, budget)
    weighted = problem.client_rows or problem.expert_rows or problem.total_rows
    if not ok and weighted and start.any():
        y, ok = make_feasible(problem, np.zeros_like(start), key, budget)
        if ok:
            x = y
    if not ok:
        raise _infeasible(problem, x)
    return x


def repair(
    problem: AlignmentProblem,
    x: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    fill: bool = True,
    priority: NDArray[np.float64] | None = None,
    budget: Budget | None = None,
) -> NDArray[np.bool_]:
    """Turn any 0/1 matrix into a feasible assignment close to it, preferring high priority.

    Steps: drop pairs that are not allowed or never fit; per client, drop the lowest-priority
    experts until ``max_experts`` and every client row's upper bound hold; per expert, drop
    the lowest-priority clients until ``expert_max_clients`` and every expert row's upper
    bound hold (clients that keep their minimum first); over all pairs, drop the
    lowest-priority ones until every total row's upper bound holds. Then add experts to
    clients below ``min_experts`` (each short client's best addable expert that still leaves
    room in its client rows for the rest; when blocked, alternating paths that move seats
    between clients; else repack the client's row lightest first); add clients to experts
    below ``expert_min_clients`` (best clients with room first; when blocked, clients swap a
    spare expert for the short one, or longer alternating paths); meet the lower bounds of
    weighted client, expert and total rows (additions, then swaps:
    :func:`~.lower.meet_row_lower`). Every addition keeps every upper bound; a path, swap or
    repack that would break another hard row is not applied. Finally, with ``fill``, add
    positive pairs best first while they fit (where soft rows would charge more than a
    pair's desirability, it is not added: :func:`~.insertion.fill`).

    Soft rows never constrain feasibility: repair ignores them until the fill.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n_clients, n_experts) array of bool or 0/1
        The starting point; not modified.
    rng : numpy Generator, optional
        Breaks ties in priority at random in the final fill. Elsewhere, and without it,
        ties go to the lowest position (deterministic).
    fill : bool
        Whether to finish with :func:`fill`.
    priority : (n, E) float array, optional
        Preference used for every choice (and "positive" in the fill); defaults to the
        problem's desirability. The random solver passes random priorities.
    budget : Budget, optional
        The caller's time budget: the minimum phases look at the clock every round; the
        final fill stops when it runs out, and is skipped when the time left is below
        what its first pass takes (:data:`FILL_SECONDS_PER_PAIR`).

    Returns
    -------
    (n, E) bool ndarray
        A new, feasible assignment (``check(problem, result) == []``).

    Raises
    ------
    ValueError
        ``x`` or ``priority`` has the wrong shape.
    InfeasibleError
        No feasible assignment was reached; the message names the blocking row.
        :class:`~fedalign.TimeLimitError` (an InfeasibleError) when ``budget`` ran out first.
    """
    x = np.array(x, dtype=bool, copy=True)
    if x.shape != problem.shape:
        raise ValueError(f"x: expected shape {problem.shape}, got {x.shape}")
    d = problem.desirability if priority is None else np.asarray(priority, dtype=np.float64)
    if d.shape != problem.shape:
        raise ValueError(f"priority: expected shape {problem.shape}, got {d.shape}")
    x = _feasible_from(problem, x & problem.fits, d, budget)
    n_pairs = float(problem.n_clients) * problem.n_experts
    if fill and (budget is None or budget.remaining() >= FILL_SECONDS_PER_PAIR * n_pairs):
        _fill(problem, x, priority=None if priority is None else d, rng=rng, budget=budget)
    return x
