"""Lower bounds of weighted rows: what ``repair`` does after the count minimums are met.

For each hard client, expert or total row with a lower bound (the count rows aside, which
:mod:`.feasibility` and :mod:`.augment` handle exactly), :func:`meet_row_lower` runs rounds
of

* **additions**: pairs that every upper bound admits and that add to a short member of the
  row, best priority per unit of the weight still missing (``priority / min(weight,
  missing)``), each member taking about what it misses (:func:`add_round`);
* **swaps**, when no addition is left: a client trades an expert for a heavier one in the
  row, or an expert's seat moves from a holder to a client that weighs more in the row
  (:func:`swap_round`). Each swap is applied only when a :class:`~.capacity.Guard`
  watching every hard row admits it, so it keeps every other bound (a bound already
  broken may not get worse);
* **exchanges** (client and expert rows), when no swap is left: two clients trade experts,
  so that a short client gets a heavier expert (one that is full, or when the expert it
  gives up is at its minimum), or a short expert a client heavier on it than one of its
  holders (:func:`exchange_round`);
* **alternating paths**, when nothing else is left: a short client (expert) gains an expert
  (client) that weighs in the row along the augmenting paths of :mod:`.augment`
  (:func:`path_round`).

It is a heuristic: when the bounds cannot be met this way, ``repair`` raises
:class:`~fedalign.InfeasibleError` naming the row.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from ...rows import Row
from .augment import augment_clients, augment_experts
from .capacity import Guard, addable, group_cumsum, residual, slacks
from .insertion import add_in_order

__all__ = ["add_round", "exchange_round", "meet_row_lower", "path_round", "swap_round"]

#: Most rounds per row and call (each round makes progress; this only caps float creep).
MAX_ROUNDS = 64
#: Most short clients an exchange round looks at (it loops over them in Python).
MAX_EXCHANGES = 256


def meet_row_lower(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
    """Raise every weighted row below its lower bound, in place (see the module docstring)."""
    targets = [
        r for r in (*problem.client_rows, *problem.expert_rows, *problem.total_rows) if r.lower_cap is not None
    ]
    for row in targets:
        for _ in range(MAX_ROUNDS):
            assert row.lower_cap is not None
            missing = row.lower_cap - row.usage(x)
            if not (missing > 0).any():
                break
            steps = (add_round, swap_round, exchange_round, path_round)
            if not any(step(problem, x, key, row, missing) for step in steps):
                break


def _short_pairs(row: Row, missing: NDArray[np.float64], n: int, e: int) -> tuple[NDArray[np.intp], slice | NDArray[np.intp]]:
    """The clients and experts whose pairs can add to a short member of ``row``."""
    short = np.flatnonzero(missing > 0)
    if row.over == "client":
        return short, slice(None)
    if row.over == "expert":
        return np.arange(n), short
    return np.arange(n), slice(None)


def add_round(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    row: Row,
    missing: NDArray[np.float64],
) -> bool:
    """Add pairs that raise the short members of ``row``; returns whether any was added.

    Each short member takes its addable pairs best ``key / min(weight, missing)`` first,
    about as many as it misses (the pairs before the one that covers it); they are inserted
    in that order while every upper bound holds.
    """
    n, e = problem.shape
    rows_idx, cols_idx = _short_pairs(row, missing, n, e)
    ok = addable(problem, x, rows=rows_idx)
    mask = np.zeros((rows_idx.size, e), dtype=bool)
    mask[:, cols_idx] = True
    rr, cc = np.nonzero(ok & mask)
    rows, cols = rows_idx[rr], cc
    w = row.at(rows, cols)
    owner = row.owner(rows, cols)
    helps = (w > 0) & (missing[owner] > 0)
    rows, cols, w, owner = rows[helps], cols[helps], w[helps], owner[helps]
    if rows.size == 0:
        return False
    miss = missing[owner]
    score = key[rows, cols] / np.minimum(w, miss)
    order = np.lexsort((-score, owner))
    rows, cols, owner = rows[order], cols[order], owner[order]
    w, miss, score = w[order], miss[order], score[order]
    enough = group_cumsum(owner, w) - w < miss  # stop once the member is covered
    rows, cols, score = rows[enough], cols[enough], score[enough]
    order = np.argsort(-score, kind="stable")
    before = int(x.sum())
    add_in_order(problem, x, rows[order], cols[order])
    return int(x.sum()) > before


def swap_round(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    row: Row,
    missing: NDArray[np.float64],
) -> bool:
    """Swaps that raise the short members of ``row``; returns whether any was applied.

    Candidates: per client, its best trade of an assigned expert for a heavier one (in the
    row); for expert and total rows also, per expert, seat moves from the lightest holders
    to the heaviest clients that can take it. Best ``key change / min(raise, missing)``
    first, each applied if the pairs are still as found, its member still short, and a
    guard watching every hard row admits it.
    """
    moves = [_trades(problem, x, key, row, missing), _shifts(problem, x, key, row, missing)]
    add_r, add_c, drop_r, drop_c, score = (np.concatenate(parts) for parts in zip(*moves, strict=True))
    if score.size == 0:
        return False
    guard = Guard(problem, x, every=True)
    target = guard.rows.index(row)
    cap = row.lower_cap
    assert cap is not None
    done = False
    for k in np.argsort(-score, kind="stable").tolist():
        a, b = (add_r[k], add_c[k]), (drop_r[k], drop_c[k])
        if x[a] or not x[b]:
            continue
        member = row.owner(np.array([a[0]]), np.array([a[1]]))[0]
        if guard.usage[target][member] >= cap[member]:
            continue
        adds = (np.array([a[0]]), np.array([a[1]]))
        drops = (np.array([b[0]]), np.array([b[1]]))
        done |= guard.apply(x, adds, drops)
    return done


Moves = tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]


def _trades(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], row: Row, missing: NDArray[np.float64]
) -> Moves:
    """Per client, its best trade ``k -> j`` that raises a short member of ``row``."""
    n, e = problem.shape
    res = residual(problem, x)
    load = x.sum(axis=0)
    clients, cols_ok = _short_pairs(row, missing, n, e)
    open_j = np.zeros(e, dtype=bool)
    open_j[cols_ok] = True
    open_j &= res.seats > 0
    best = np.full(n, -np.inf)
    best_j = np.full(n, -1)
    best_k = np.full(n, -1)
    in_c = np.zeros(n, dtype=bool)
    in_c[clients] = True
    client, expert, total = slacks(problem, x, hold=True)
    for s in expert:  # expert j gains the pair
        if s.up is not None:
            open_j &= (s.row.weight <= s.up[None, :]).all(axis=0)
    for k in np.flatnonzero(load > problem.expert_min_clients):
        rows = np.flatnonzero(x[:, k] & in_c)
        if rows.size == 0:
            continue
        ok = problem.fits[rows] & ~x[rows] & open_j[None, :]
        ks = np.full(rows.size, k)
        for s in (*client, *total):  # the client's own rows, and the total rows
            w = s.row.weight
            owner = rows[:, None] if s.row.over == "client" else np.zeros((1, 1), np.intp)
            ok &= s.alone(owner, (w if w.shape[0] == 1 else w[rows]) - s.row.at(rows, ks)[:, None])
        for s in expert:  # expert k loses the pair
            if s.lo is not None:
                ok &= (s.row.at(rows, ks) <= s.lo[k])[:, None]
        dense = row.dense[rows]
        if row.over == "expert":
            raise_ = np.where(missing[None, :] > 0, dense, 0.0)
            miss = np.broadcast_to(missing[None, :], ok.shape)
        else:
            raise_ = dense - dense[:, k : k + 1]
            miss = np.broadcast_to(missing[row.owner(rows, rows)][:, None], ok.shape)
        ok &= raise_ > 0
        score = np.where(ok, (key[rows] - key[rows, k][:, None]) / np.minimum(np.maximum(raise_, 1e-300), miss), -np.inf)
        jj = np.argmax(score, axis=1)
        s = score[np.arange(rows.size), jj]
        better = s > best[rows]
        r = rows[better]
        best[r], best_j[r], best_k[r] = s[better], jj[better], k
    who = np.flatnonzero(best_k >= 0)
    return who, best_j[who], who, best_k[who], best[who]


def _shifts(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], row: Row, missing: NDArray[np.float64]
) -> Moves:
    """Per expert, seat moves from its lightest holders to the heaviest clients that can take it.

    For a client row only short clients take (the holder is another client); for an expert
    row only short experts move seats; for a total row every expert does.
    """
    n, e = problem.shape
    res = residual(problem, x)
    count = x.sum(axis=1)
    client, expert, total = slacks(problem, x, hold=True)
    experts = np.flatnonzero(missing > 0) if row.over == "expert" else np.arange(e)
    parts: list[Moves] = []
    for j in experts.tolist():
        can_drop = x[:, j] & (count > problem.min_experts)
        for s in client:  # the holder loses j
            if s.lo is not None:
                can_drop &= s.row.dense[:, j] <= s.lo
        holders = np.flatnonzero(can_drop)
        take = problem.fits[:, j] & ~x[:, j] & (res.count > 0)
        for room in res.client:
            take &= room.column(j)
        if row.over == "client":
            take &= missing > 0
        takers = np.flatnonzero(take)
        if holders.size == 0 or takers.size == 0:
            continue
        wj = row.dense[:, j]
        holders = holders[np.lexsort((key[holders, j], wj[holders]))]
        takers = takers[np.lexsort((-key[takers, j], -wj[takers]))]
        m = min(holders.size, takers.size)
        h, t = holders[:m], takers[:m]
        raise_ = wj[t] if row.over == "client" else wj[t] - wj[h]
        good = raise_ > 0
        col = np.full(h.size, j)
        for s in (*expert, *total):  # j's rows and the total rows see the difference
            good &= s.alone(s.row.owner(t, col), s.row.at(t, col) - s.row.at(h, col))
        h, t, raise_ = h[good], t[good], raise_[good]
        miss = missing[row.owner(t, np.full(t.size, j))]
        score = (key[t, j] - key[h, j]) / np.minimum(raise_, miss)
        col = np.full(h.size, j)
        parts.append((t, col, h, col, score))
    if not parts:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, empty, empty, np.zeros(0)
    t, tj, h, hj, score = (np.concatenate(p) for p in zip(*parts, strict=True))
    return t, tj, h, hj, score


def exchange_round(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    row: Row,
    missing: NDArray[np.float64],
) -> bool:
    """Two-client trades that raise short members of ``row``; returns whether any was applied.

    Client ``i`` gives ``k`` and takes ``j``; client ``h``, a holder of ``j``, gives ``j``
    and takes ``k``. Loads and counts are unchanged. For a client row, ``i`` is short and
    ``j`` (heavier than ``k`` for ``i``) is the point; for an expert row,
    ``j`` is short and ``i`` weighs more on it than ``h``. A few candidates per expert pair
    (those that lose least); each short member applies its best candidate that a guard
    watching every hard row admits. Total rows have no exchanges.
    """
    if row.over == "total":
        return False
    if row.over == "client":
        moves = _client_exchanges(problem, x, key, row, missing)
    else:
        moves = _expert_exchanges(problem, x, key, row, missing)
    guard = Guard(problem, x, every=True)
    target = guard.rows.index(row)
    cap = row.lower_cap
    assert cap is not None
    done = False
    for _, i, h, j, k in sorted(moves, key=lambda m: -m[0]):
        member = i if row.over == "client" else j
        if guard.usage[target][member] >= cap[member]:
            continue
        if not (x[i, k] and x[h, j]) or x[i, j] or x[h, k]:
            continue
        adds = (np.array([i, h]), np.array([j, k]))
        drops = (np.array([i, h]), np.array([k, j]))
        done |= guard.apply(x, adds, drops)
    return done


#: A candidate exchange: (score, i, h, j, k) -- i gives k and takes j, h gives j and takes k.
Exchange = tuple[float, int, int, int, int]


def _holders(x: NDArray[np.bool_]) -> list[NDArray[np.intp]]:
    """Per expert, the clients that hold it (one pass over the assignment)."""
    rows, cols = np.nonzero(x.T)
    ends = np.searchsorted(rows, np.arange(x.shape[1] + 1))
    return [cols[ends[j] : ends[j + 1]] for j in range(x.shape[1])]


def _client_exchanges(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], row: Row, missing: NDArray[np.float64]
) -> list[Exchange]:
    """Exchanges in which a short client takes a heavier expert (one that is full, or whose
    trade a plain swap cannot make because the expert it gives up is at its minimum)."""
    fits, w = problem.fits, row.dense
    holders = _holders(x)
    moves: list[Exchange] = []
    for i in np.flatnonzero(missing > 0)[:MAX_EXCHANGES].tolist():
        held = np.flatnonzero(x[i])
        for j in np.flatnonzero(fits[i] & ~x[i]).tolist():
            hs = holders[j]
            for k in held.tolist():
                lift = w[i, j] - w[i, k]
                if lift <= 0:
                    continue
                h = hs[~x[hs, k] & fits[hs, k]]
                gain = key[i, j] - key[i, k] + key[h, k] - key[h, j]
                for t in np.argsort(-gain, kind="stable")[:3].tolist():
                    moves.append((float(gain[t]) / min(lift, float(missing[i])), i, int(h[t]), j, k))
    return moves


def _expert_exchanges(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], row: Row, missing: NDArray[np.float64]
) -> list[Exchange]:
    """Exchanges in which a short expert's holder gives way to a client heavier on it."""
    fits, w = problem.fits, row.dense
    holders = _holders(x)
    moves: list[Exchange] = []
    width = 16  # candidates per side and expert pair: the heaviest takers, the lightest holders
    for j in np.flatnonzero(missing > 0)[:MAX_EXCHANGES].tolist():
        hs_all = holders[j]
        for k in range(problem.n_experts):
            if k == j:
                continue
            i_c = np.flatnonzero(x[:, k] & ~x[:, j] & fits[:, j])
            h_c = hs_all[~x[hs_all, k] & fits[hs_all, k]]
            if i_c.size == 0 or h_c.size == 0:
                continue
            i_c = i_c[np.argsort(-w[i_c, j], kind="stable")[:width]]
            h_c = h_c[np.argsort(w[h_c, j], kind="stable")[:width]]
            lift = w[i_c, j][:, None] - w[h_c, j][None, :]
            gain = (key[i_c, j] - key[i_c, k])[:, None] + (key[h_c, k] - key[h_c, j])[None, :]
            score = np.where(lift > 0, gain / np.minimum(np.maximum(lift, 1e-300), missing[j]), -np.inf)
            for t in np.argsort(-score, axis=None, kind="stable")[:3].tolist():
                a, b = divmod(t, h_c.size)
                if np.isfinite(score[a, b]):
                    moves.append((float(score[a, b]), int(i_c[a]), int(h_c[b]), j, k))
    return moves


def path_round(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    row: Row,
    missing: NDArray[np.float64],
) -> bool:
    """Alternating paths that give short members a pair that weighs in ``row``.

    Client and total rows: short clients (every client with room, for a total row) gain an
    expert ``j`` with ``weight[i, j] > 0`` along :func:`~.augment.augment_clients`' paths;
    expert rows: short experts with a free seat gain such a client along
    :func:`~.augment.augment_experts`' paths. Returns whether the row's shortfall shrank.
    """
    first = row.dense > 0
    cap = row.lower_cap
    assert cap is not None
    before = row.usage(x)
    res = residual(problem, x)
    if row.over == "expert":
        roots = np.flatnonzero((missing > 0) & (res.seats > 0))
        if roots.size == 0 or not augment_experts(problem, x, key, roots, first=first):
            return False
    else:
        clients = np.flatnonzero(missing > 0) if row.over == "client" else np.arange(problem.n_clients)
        if clients.size == 0 or not augment_clients(problem, x, key, clients, first=first):
            return False
    gained = np.minimum(row.usage(x), cap) - np.minimum(before, cap)
    return bool(gained.sum() > 0)
