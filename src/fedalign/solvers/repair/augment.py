"""Alternating paths and row repacking: what ``repair`` does when direct additions are blocked.

:func:`augment_clients` and :func:`augment_experts` give short clients (experts) one more
expert (client) each along the augmenting paths of degree-constrained bipartite matching,
searched breadth first from all roots at once; :class:`Paths` traces them through the
search forest (rooted on clients or on experts) and keeps them node-disjoint.
:func:`repack` rebuilds one client's row around its client rows and, when not strict,
mends what that breaks with alternating paths.

The paths are built on the two count rows, and each inner swap is tested against the
client rows of the client that makes it. A path also changes weighted expert rows, total
rows and the lower bounds of client rows: a :class:`~.capacity.Guard` checks those, and a
path or repack that would break one is not applied.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from .capacity import Guard, Residual, RowRoom, block_of, group_cumsum, residual

__all__ = ["Paths", "augment_clients", "augment_experts", "repack"]

#: Paths the guard may reject in a row before a batch gives up (a full total row rejects
#: every path that adds to it; trying them all would cost a trace and a check each).
MAX_REJECTED = 256

#: Pairs as a (rows, cols) pair of index arrays.
Pairs = tuple[NDArray[np.intp], NDArray[np.intp]]


class Paths:
    """Disjoint application of alternating paths traced through a breadth-first forest.

    ``client_parent[c]`` is the expert a reached client ``c`` came from and
    ``expert_parent[j]`` the client a reached expert ``j`` came from. The forest's roots are
    clients (``rooted_on="client"``, the search from short clients) or experts (the search
    from short experts); a path is traced from a terminal node back to its root. Paths that
    share a node with a path already applied in this batch are skipped, so the applied ones
    never interfere (each node's residual was checked once, against the assignment the
    search started from).
    """

    def __init__(self, n: int, e: int, rooted_on: str, roots: NDArray[np.intp]) -> None:
        self.rejected = 0  # paths the guard rejected since the last one applied
        self.client_parent = np.full(n, -1)
        self.expert_parent = np.full(e, -1)
        self.used_client = np.zeros(n, dtype=bool)
        self.used_expert = np.zeros(e, dtype=bool)
        self.roots_are_clients = rooted_on == "client"
        self.is_root = np.zeros(n if self.roots_are_clients else e, dtype=bool)
        self.is_root[roots] = True

    def trace(self, start: int, start_is_client: bool) -> tuple[list[int], list[int]] | None:
        """Clients and experts on the path from ``start`` back to its root (None if used, or
        once the guard has rejected :data:`MAX_REJECTED` paths in a row)."""
        if self.rejected >= MAX_REJECTED:
            return None
        clients: list[int] = []
        experts: list[int] = []
        node, on_client = start, start_is_client
        while True:
            used = self.used_client if on_client else self.used_expert
            if used[node]:
                return None
            (clients if on_client else experts).append(node)
            if on_client == self.roots_are_clients and self.is_root[node]:
                return clients, experts
            parent = self.client_parent if on_client else self.expert_parent
            node, on_client = int(parent[node]), not on_client

    def apply(self, x: NDArray[np.bool_], guard: Guard, path: tuple[list[int], list[int]], adds: Pairs, drops: Pairs) -> bool:
        """Apply a traced path's changes if the guard admits them, and mark its nodes used."""
        if not guard.apply(x, adds, drops):
            self.rejected += 1
            return False
        self.rejected = 0
        self.used_client[path[0]] = True
        self.used_expert[path[1]] = True
        return True


def _pairs(rows: list[int], cols: list[int]) -> Pairs:
    return np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)


def _client_path(clients: list[int], experts: list[int]) -> tuple[Pairs, Pairs]:
    """Changes of a client-rooted path: ``clients[k]`` adds ``experts[k]``, drops ``experts[k + 1]``."""
    adds = _pairs(clients[: len(experts)], experts)
    drops = _pairs(clients[: len(experts) - 1], experts[1:])
    return adds, drops


def _fits_taking_any(
    rooms: list[RowRoom], rows: NDArray[np.intp], dropped: NDArray[np.intp], ok: NDArray[np.bool_]
) -> None:
    """Restrict ``ok`` (``(len(rows), E)``) to the experts client ``rows[k]`` can take within
    its client rows, after dropping expert ``dropped[k]`` (nothing where it is negative)."""
    for room in rooms:
        freed = np.where(dropped >= 0, room.weights(rows, dropped), 0.0)
        ok &= block_of(room.row, rows) - freed[:, None] <= room.left[rows][:, None]


def _fits_giving_any(
    rooms: list[RowRoom], rows: NDArray[np.intp], taken: NDArray[np.intp], ok: NDArray[np.bool_]
) -> None:
    """Restrict ``ok`` (``(len(rows), E)``) to the experts client ``rows[k]`` can give up to
    take expert ``taken[k]`` within its client rows."""
    for room in rooms:
        ok &= room.weights(rows, taken)[:, None] - block_of(room.row, rows) <= room.left[rows][:, None]


def augment_clients(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    roots: NDArray[np.intp],
    *,
    fixed: int | None = None,
    first: NDArray[np.bool_] | None = None,
    res: Residual | None = None,
) -> int:
    """Give short clients one more expert each along alternating paths; returns how many.

    A path is: root client adds ``j1``; ``j1`` is full, so a holder ``h1`` drops it and adds
    ``j2`` instead; ... until the last expert has a free seat, or the last holder has
    experts to spare (it only drops). Every client and expert inside a path keeps its count,
    and every swap is checked against that client's rows, so the result stays within every
    upper bound and every other minimum; a path that would break a weighted expert row, a
    total row or a client's lower bound is skipped. This is the augmenting path of
    degree-constrained bipartite matching: with count rows alone a path is found whenever
    one exists. The search is breadth first from all roots at once (as in Hopcroft-Karp),
    and every node-disjoint shortest path found is applied. The row of client ``fixed`` is
    left alone; with ``first`` (an ``(n, E)`` mask), a root may only add the experts it
    marks (the ones that raise a weighted row); ``res`` is the residual of ``x`` if the
    caller has it (it is not updated). Returns 0, changing nothing, when no path exists.
    """
    n, e = problem.shape
    if res is None:
        res = residual(problem, x)
    roots = roots[res.count[roots] > 0]
    if roots.size == 0:
        return 0
    count = problem.max_experts - res.count
    guard = Guard(problem, x)
    paths = Paths(n, e, "client", roots)
    client_seen = paths.is_root.copy()
    expert_seen = np.zeros(e, dtype=bool)
    if fixed is not None:
        client_seen[fixed] = True
    frontier = roots
    dropped = np.full(roots.size, -1)

    def apply(terminals: list[int]) -> int:
        # Each terminal holder only drops its expert; the rest of the path swaps.
        done = 0
        for h in terminals:
            path = paths.trace(h, True)
            if path is None:
                continue
            clients, experts = path
            adds, drops = _client_path(clients[1:], experts)
            drops = (np.r_[drops[0], h], np.r_[drops[1], experts[0]])
            done += paths.apply(x, guard, path, adds, drops)
        return done

    def apply_seats(frontier: NDArray[np.intp], reach: NDArray[np.bool_], term: NDArray[np.intp]) -> int:
        # An expert with s free seats can end up to s paths, each from a different client
        # of the frontier: candidates best first, at most a few per seat.
        rows, cols = np.nonzero(reach)
        cs, js = frontier[rows], term[cols]
        for room in res.expert:
            fit = room.admits(cs, js)
            cs, js = cs[fit], js[fit]
        order = np.argsort(-key[cs, js], kind="stable")
        cs, js = cs[order], js[order]
        keep = group_cumsum(js, np.ones(js.size, np.int64)) <= 2 * res.seats[js] + 2
        seats = res.seats.copy()
        done = 0
        for c, j in zip(cs[keep].tolist(), js[keep].tolist(), strict=True):
            if seats[j] <= 0:
                continue
            path = paths.trace(c, True)
            if path is None:
                continue
            clients, experts = path
            adds, drops = _client_path(clients, [j, *experts])
            if paths.apply(x, guard, path, adds, drops):
                seats[j] -= 1
                done += 1
        return done

    while frontier.size:
        ok = problem.fits[frontier] & ~x[frontier] & ~expert_seen[None, :]
        _fits_taking_any(res.client, frontier, dropped, ok)
        if first is not None and frontier is roots:
            ok &= first[roots]
        reach = ok.any(axis=0)
        if not reach.any():
            return 0
        js = np.flatnonzero(reach)
        parent_row = np.argmax(np.where(ok[:, js], key[frontier][:, js], -np.inf), axis=0)
        expert_seen[js] = True
        paths.expert_parent[js] = frontier[parent_row]
        free = res.seats[js] > 0
        for room in res.expert:  # a weighted expert row can be full with seats left
            free &= room.admits(paths.expert_parent[js], js)
        term = js[free]
        if term.size:
            done = apply_seats(frontier, ok[:, term], term)
            if done or not guard:
                return done
        holds = x[:, js] & ~client_seen[:, None]
        hs = np.flatnonzero(holds.any(axis=1))
        if hs.size == 0:
            return 0
        drop_col = np.argmin(np.where(holds[hs], key[hs][:, js], np.inf), axis=1)
        client_seen[hs] = True
        paths.client_parent[hs] = js[drop_col]
        spare = hs[count[hs] > problem.min_experts[hs]]
        if spare.size:
            spare = spare[np.argsort(key[spare, paths.client_parent[spare]], kind="stable")]
            done = apply(spare.tolist())
            if done or not guard:
                return done
        frontier = hs
        dropped = paths.client_parent[hs]
    return 0


def augment_experts(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    roots: NDArray[np.intp],
    *,
    fixed: int | None = None,
    first: NDArray[np.bool_] | None = None,
) -> int:
    """Give short experts one more client each along alternating paths; returns how many.

    A path is: client ``c1`` adds the root expert; ``c1`` has no room, so it drops ``k1``;
    ``k1`` is at its own minimum, so client ``c2`` adds ``k1`` and drops ``k2``; ... until a
    client has room (it only adds) or a dropped expert has clients to spare. Inner clients
    keep their count (their client rows are checked for the swap) and inner experts their
    load; a path that would break a weighted expert row, a total row or a client's lower
    bound is skipped. Breadth first from all roots at once; node-disjoint shortest paths are
    applied. The row of client ``fixed`` is left alone; with ``first`` (an ``(n, E)``
    mask), a root expert may only take the clients it marks. Returns 0, changing nothing,
    when no path exists.
    """
    n, e = problem.shape
    res = residual(problem, x)
    load = x.sum(axis=0)
    guard = Guard(problem, x)
    paths = Paths(n, e, "expert", np.asarray(roots))
    client_seen = np.zeros(n, dtype=bool)
    expert_seen = paths.is_root.copy()
    if fixed is not None:
        client_seen[fixed] = True
    frontier = np.asarray(roots)
    top = frontier

    def changes(clients: list[int], experts: list[int]) -> tuple[Pairs, Pairs]:
        # clients[k] adds experts[k]; clients[k + 1] drops experts[k]
        adds = _pairs(clients, experts[: len(clients)])
        drops = _pairs(clients[1:], experts[: len(clients) - 1])
        return adds, drops

    def apply(terminals: list[int]) -> int:
        done = 0
        for c in terminals:  # each terminal client has room: it only adds
            path = paths.trace(c, True)
            if path is not None:
                done += paths.apply(x, guard, path, *changes(*path))
        return done

    def apply_spare(cs: NDArray[np.intp], reach: NDArray[np.bool_], term: NDArray[np.intp]) -> int:
        # An expert with s clients to spare can end up to s paths, each through a different
        # client that drops it: candidates losing least first, at most a few per spare client.
        rows, cols = np.nonzero(reach)
        cc, ks = cs[rows], term[cols]
        order = np.argsort(key[cc, ks], kind="stable")
        cc, ks = cc[order], ks[order]
        spare_left = load - problem.expert_min_clients
        keep = group_cumsum(ks, np.ones(ks.size, np.int64)) <= 2 * spare_left[ks] + 2
        done = 0
        for c, k in zip(cc[keep].tolist(), ks[keep].tolist(), strict=True):
            if spare_left[k] <= 0:
                continue
            path = paths.trace(c, True)
            if path is None:
                continue
            adds, drops = changes(*path)
            drops = (np.r_[c, drops[0]], np.r_[k, drops[1]])
            if paths.apply(x, guard, path, adds, drops):
                spare_left[k] -= 1
                done += 1
        return done

    while frontier.size:
        can = problem.fits[:, frontier] & ~x[:, frontier] & ~client_seen[:, None]
        if first is not None and frontier is top:
            can &= first[:, top]
        room: NDArray[np.bool_] = can & (res.count > 0)[:, None]
        for r in res.client:
            room &= r.block(slice(None), frontier)
        cs = np.flatnonzero(can.any(axis=1))
        if cs.size == 0:
            return 0
        has_room = np.asarray(room[cs].any(axis=1), dtype=bool)
        # A client with room takes its best frontier expert that fits; others their best.
        pick = np.where(has_room[:, None], room[cs], can[cs])
        add_col = np.argmax(np.where(pick, key[cs][:, frontier], -np.inf), axis=1)
        client_seen[cs] = True
        paths.client_parent[cs] = frontier[add_col]
        term = cs[has_room]
        if term.size:
            term = term[np.argsort(-key[term, paths.client_parent[term]], kind="stable")]
            done = apply(term.tolist())
            if done or not guard:
                return done
        jc = paths.client_parent[cs]
        swap = x[cs] & ~expert_seen[None, :]
        _fits_giving_any(res.client, cs, jc, swap)
        reach = swap.any(axis=0)
        if not reach.any():
            return 0
        ks = np.flatnonzero(reach)
        parent_row = np.argmin(np.where(swap[:, ks], key[cs][:, ks], np.inf), axis=0)
        expert_seen[ks] = True
        paths.expert_parent[ks] = cs[parent_row]
        spare = ks[load[ks] > problem.expert_min_clients[ks]]
        if spare.size:
            done = apply_spare(cs, swap[:, spare], spare)
            if done or not guard:
                return done
        frontier = ks
    return 0


def repack(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    i: int,
    *,
    strict: bool = True,
    guard: Guard | None = None,
    load: NDArray[np.int64] | None = None,
) -> bool:
    """Rebuild client ``i``'s row around its client rows so that it reaches ``min_experts``.

    The row is refilled lightest first (the sum over client rows with an upper bound of
    weight / capacity), best first among equals, until the minimum is met. With
    ``strict``, experts that other constraints pin (their load is at
    ``expert_min_clients``) stay and full experts are not used, so nothing else changes.
    Without it, any expert that fits may be used; an expert left below its minimum then
    gets a client along an alternating path, and a client that loses its seat on an
    over-full expert gets another expert the same way (client ``i``'s row stays fixed).
    A repack that would break a weighted expert row, a total row or a client's lower bound
    is undone (a non-strict one is not tried when the new row alone would). On failure
    ``x`` is left unchanged and False is returned.

    ``guard`` (a :class:`~.capacity.Guard` of ``x``) and ``load`` (``x.sum(axis=0)``) save
    a caller that tries many clients in turn a pass over ``x`` each; the guard is updated
    when the repack succeeds.
    """
    if guard is None:
        guard = Guard(problem, x)
    old = x[i].copy()
    new = _refill(problem, x, key, i, strict=strict, load=load)
    if new is None:
        return False
    added, dropped = np.flatnonzero(new & ~old), np.flatnonzero(old & ~new)
    adds = (np.full(added.size, i), added)
    drops = (np.full(dropped.size, i), dropped)
    if strict:  # only row i changes
        return guard.apply(x, adds, drops)
    if guard and not guard.admits(adds, drops):
        return False
    snapshot = x.copy()
    x[i] = new
    if not _mend(problem, x, key, i, old) or not guard.accepts(x):
        x[:] = snapshot
        return False
    return True


def _refill(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    i: int,
    *,
    strict: bool,
    load: NDArray[np.int64] | None = None,
) -> NDArray[np.bool_] | None:
    """Client ``i``'s row refilled lightest first up to ``min_experts`` (see :func:`repack`).

    Returns the new row, or None when it cannot reach the minimum; ``x`` is not changed.
    """
    if load is None:
        load = x.sum(axis=0)
    row = x[i]
    if strict:
        pinned = row & (load <= problem.expert_min_clients)
        free = problem.fits[i] & ~pinned & (row | (load < problem.expert_max_clients))
    else:
        pinned = np.zeros_like(row)
        free = problem.fits[i] & (problem.expert_max_clients > 0)
    weight = np.zeros(problem.n_experts)
    caps: list[tuple[NDArray[np.float64], float]] = []
    for r in problem.client_rows:
        if r.upper_cap is None:
            continue
        cap = float(r.upper_cap[i])
        w = np.broadcast_to(r.weight[i if r.weight.shape[0] != 1 else 0], (problem.n_experts,))
        weight += w / max(cap, 1e-300)
        caps.append((w, cap))
    new = pinned.copy()
    used = [float(w[new].sum()) for w, _ in caps]
    count = int(new.sum())
    for j in np.lexsort((-key[i], weight)):
        if count >= problem.min_experts[i]:
            break
        if not free[j] or new[j]:
            continue
        if any(u + w[j] > cap for u, (w, cap) in zip(used, caps, strict=True)):
            continue
        new[j] = True
        count += 1
        used = [u + float(w[j]) for u, (w, _) in zip(used, caps, strict=True)]
    if count < problem.min_experts[i] or count > problem.max_experts[i]:
        return None
    return new


def _mend(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64], i: int, row: NDArray[np.bool_]
) -> bool:
    """After a non-strict refill of client ``i`` (old row ``row``), restore the count rows."""
    new = x[i].copy()
    for k in np.flatnonzero(row & ~new):
        if x[:, k].sum() < problem.expert_min_clients[k] and not augment_experts(
            problem, x, key, np.array([k]), fixed=i
        ):
            return False
    for j in np.flatnonzero(new & ~row):
        if x[:, j].sum() <= problem.expert_max_clients[j]:
            continue
        holders = np.flatnonzero(x[:, j])
        holders = holders[holders != i]
        if holders.size == 0:
            return False
        count_h = x[holders].sum(axis=1)
        at_min = count_h <= problem.min_experts[holders]
        h = int(holders[np.lexsort((key[holders, j], at_min))[0]])
        x[h, j] = False
        if x[h].sum() < problem.min_experts[h] and not augment_clients(
            problem, x, key, np.array([h]), fixed=i
        ):
            return False
    return True
