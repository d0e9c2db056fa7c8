"""Alternating paths and row repacking: what ``repair`` does when direct additions are blocked.

:func:`_augment_clients` and :func:`_augment_experts` give short clients (experts) one more
expert (client) each along the augmenting paths of degree-constrained bipartite matching,
searched breadth first from all roots at once; :class:`_Paths` traces and applies them
node-disjointly. :func:`_repack` rebuilds one client's row around its knapsacks and, when
not strict, mends what that breaks with alternating paths.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem, capacity_tolerance
from .capacity import _group_cumsum, residual


class _Paths:
    """Disjoint application of alternating paths traced through a breadth-first forest.

    ``client_parent[c]`` is the expert a reached client ``c`` came from and
    ``expert_parent[j]`` the client a reached expert ``j`` came from; a path is traced from a
    terminal node back to a root. Paths that share a node with a path already applied in
    this batch are skipped, so the applied ones never interfere (each node's residual was
    checked once, against the assignment the search started from).
    """

    def __init__(self, n: int, e: int) -> None:
        self.client_parent = np.full(n, -1)
        self.expert_parent = np.full(e, -1)
        self.used_client = np.zeros(n, dtype=bool)
        self.used_expert = np.zeros(e, dtype=bool)

    def trace(self, start: int, start_is_client: bool, is_root: NDArray[np.bool_]) -> tuple[list[int], list[int]] | None:
        """Clients and experts on the path from ``start`` back to its root (None if used)."""
        clients: list[int] = []
        experts: list[int] = []
        node, on_client = start, start_is_client
        while True:
            if on_client:
                if self.used_client[node]:
                    return None
                clients.append(node)
                if is_root[node]:
                    return clients, experts
                node, on_client = int(self.client_parent[node]), False
            else:
                if self.used_expert[node]:
                    return None
                experts.append(node)
                node, on_client = int(self.expert_parent[node]), True


def _augment_clients(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    roots: NDArray[np.intp],
    *,
    fixed: int | None = None,
) -> int:
    """Give short clients one more expert each along alternating paths; returns how many.

    A path is: root client adds ``j1``; ``j1`` is full, so a holder ``h1`` drops it and adds
    ``j2`` instead; ... until the last expert has a free seat, or the last holder has
    experts to spare (it only drops). Every client and expert inside a path keeps its count,
    and every swap is checked against that client's knapsacks, so the result stays within
    every upper bound and every other minimum. This is the augmenting path of
    degree-constrained bipartite matching: without knapsack rows a path is found whenever
    one exists. The search is breadth first from all roots at once (as in Hopcroft-Karp),
    and every node-disjoint shortest path found is applied. The row of client ``fixed`` is
    left alone. Returns 0, changing nothing, when no path exists.
    """
    n, e = problem.shape
    res = residual(problem, x)
    roots = roots[res.count[roots] > 0]
    if roots.size == 0:
        return 0
    count = x.sum(axis=1)
    mem, t = problem.expert_memory, problem.train_time
    paths = _Paths(n, e)
    is_root = np.zeros(n, dtype=bool)
    is_root[roots] = True
    client_seen = is_root.copy()
    expert_seen = np.zeros(e, dtype=bool)
    if fixed is not None:
        client_seen[fixed] = True
    frontier = roots
    dropped = np.full(roots.size, -1)

    def apply(terminals: list[tuple[int, bool]]) -> int:
        done = 0
        for node, is_client in terminals:
            path = paths.trace(node, is_client, is_root)
            if path is None:
                continue
            clients, experts = path
            paths.used_client[clients] = True
            paths.used_expert[experts] = True
            if is_client:  # the terminal holder only drops its expert
                x[clients[0], experts[0]] = False
                clients = clients[1:]
            # experts[k] is added by clients[k] (and dropped by the client before it)
            for k, j in enumerate(experts):
                x[clients[k], j] = True
                if k + 1 < len(experts):
                    x[clients[k], experts[k + 1]] = False
            done += 1
        return done

    def apply_seats(
        frontier: NDArray[np.intp], reach: NDArray[np.bool_], term: NDArray[np.intp]
    ) -> int:
        # An expert with s free seats can end up to s paths, each from a different client
        # of the frontier: candidates best first, at most a few per seat.
        rows, cols = np.nonzero(reach)
        cs, js = frontier[rows], term[cols]
        order = np.argsort(-key[cs, js], kind="stable")
        cs, js = cs[order], js[order]
        keep = _group_cumsum(js, np.ones(js.size, np.int64)) <= 2 * res.seats[js] + 2
        seats = res.seats.copy()
        done = 0
        for c, j in zip(cs[keep].tolist(), js[keep].tolist(), strict=True):
            if seats[j] <= 0:
                continue
            path = paths.trace(c, True, is_root)
            if path is None:
                continue
            clients, experts = path
            paths.used_client[clients] = True
            paths.used_expert[experts] = True
            experts = [j, *experts]
            for k, jj in enumerate(experts):
                x[clients[k], jj] = True
                if k + 1 < len(experts):
                    x[clients[k], experts[k + 1]] = False
            seats[j] -= 1
            done += 1
        return done

    while frontier.size:
        ok = problem.fits[frontier] & ~x[frontier] & ~expert_seen[None, :]
        has_drop = dropped >= 0
        if res.memory is not None:
            freed = np.where(has_drop, mem[dropped], 0.0)  # type: ignore[index]
            ok &= mem[None, :] - freed[:, None] <= res.memory[frontier, None]  # type: ignore[index]
        if res.time is not None:
            freed = np.where(has_drop, t[frontier, dropped], 0.0)  # type: ignore[index]
            ok &= t[frontier] - freed[:, None] <= res.time[frontier, None]  # type: ignore[index]
        reach = ok.any(axis=0)
        if not reach.any():
            return 0
        js = np.flatnonzero(reach)
        parent_row = np.argmax(np.where(ok[:, js], key[frontier][:, js], -np.inf), axis=0)
        expert_seen[js] = True
        paths.expert_parent[js] = frontier[parent_row]
        term = js[res.seats[js] > 0]
        if term.size:
            return apply_seats(frontier, ok[:, term], term)
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
            return apply([(int(h), True) for h in spare])
        frontier = hs
        dropped = paths.client_parent[hs]
    return 0


def _augment_experts(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    roots: NDArray[np.intp],
    *,
    fixed: int | None = None,
) -> int:
    """Give short experts one more client each along alternating paths; returns how many.

    A path is: client ``c1`` adds the root expert; ``c1`` has no room, so it drops ``k1``;
    ``k1`` is at its own minimum, so client ``c2`` adds ``k1`` and drops ``k2``; ... until a
    client has room (it only adds) or a dropped expert has clients to spare. Inner clients
    keep their count (their knapsacks are checked for the swap) and inner experts their
    load. Breadth first from all roots at once; node-disjoint shortest paths are applied.
    The row of client ``fixed`` is left alone. Returns 0, changing nothing, when no path
    exists.
    """
    n, e = problem.shape
    res = residual(problem, x)
    load = x.sum(axis=0)
    mem, t = problem.expert_memory, problem.train_time
    paths = _Paths(n, e)
    is_root = np.zeros(e, dtype=bool)
    is_root[roots] = True
    client_seen = np.zeros(n, dtype=bool)
    expert_seen = is_root.copy()
    if fixed is not None:
        client_seen[fixed] = True
    frontier = np.asarray(roots)

    def apply(terminals: list[tuple[int, bool]]) -> int:
        done = 0
        for node, is_client in terminals:
            # Trace with the roles swapped: experts are the roots here.
            path = _trace_expert_path(paths, node, is_client, is_root)
            if path is None:
                continue
            clients, experts = path
            paths.used_client[clients] = True
            paths.used_expert[experts] = True
            if not is_client:  # the terminal expert only loses its client
                x[clients[0], experts[0]] = False
                experts = experts[1:]
            # clients[k] adds experts[k] (and drops experts[k - 1]'s successor)
            for k, c in enumerate(clients):
                x[c, experts[k]] = True
                if k + 1 < len(clients):
                    x[clients[k + 1], experts[k]] = False
            done += 1
        return done

    def apply_spare(cs: NDArray[np.intp], reach: NDArray[np.bool_], term: NDArray[np.intp]) -> int:
        # An expert with s clients to spare can end up to s paths, each through a different
        # client that drops it: candidates losing least first, at most a few per spare client.
        rows, cols = np.nonzero(reach)
        cc, ks = cs[rows], term[cols]
        order = np.argsort(key[cc, ks], kind="stable")
        cc, ks = cc[order], ks[order]
        spare_left = load - problem.expert_min_clients
        keep = _group_cumsum(ks, np.ones(ks.size, np.int64)) <= 2 * spare_left[ks] + 2
        done = 0
        for c, k in zip(cc[keep].tolist(), ks[keep].tolist(), strict=True):
            if spare_left[k] <= 0:
                continue
            path = _trace_expert_path(paths, c, True, is_root)
            if path is None:
                continue
            clients, experts = path
            paths.used_client[clients] = True
            paths.used_expert[experts] = True
            x[c, k] = False
            for i, cl in enumerate(clients):
                x[cl, experts[i]] = True
                if i + 1 < len(clients):
                    x[clients[i + 1], experts[i]] = False
            spare_left[k] -= 1
            done += 1
        return done

    while frontier.size:
        can = problem.fits[:, frontier] & ~x[:, frontier] & ~client_seen[:, None]
        room: NDArray[np.bool_] = can & (res.count > 0)[:, None]
        if res.memory is not None:
            room &= mem[frontier][None, :] <= res.memory[:, None]  # type: ignore[index]
        if res.time is not None:
            room &= t[:, frontier] <= res.time[:, None]  # type: ignore[index]
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
            return apply([(int(c), True) for c in term])
        jc = paths.client_parent[cs]
        swap = x[cs] & ~expert_seen[None, :]
        if res.memory is not None:
            swap &= mem[jc][:, None] - mem[None, :] <= res.memory[cs, None]  # type: ignore[index]
        if res.time is not None:
            swap &= t[cs, jc][:, None] - t[cs] <= res.time[cs, None]  # type: ignore[index]
        reach = swap.any(axis=0)
        if not reach.any():
            return 0
        ks = np.flatnonzero(reach)
        parent_row = np.argmin(np.where(swap[:, ks], key[cs][:, ks], np.inf), axis=0)
        expert_seen[ks] = True
        paths.expert_parent[ks] = cs[parent_row]
        spare = ks[load[ks] > problem.expert_min_clients[ks]]
        if spare.size:
            return apply_spare(cs, swap[:, spare], spare)
        frontier = ks
    return 0


def _trace_expert_path(
    paths: _Paths, start: int, start_is_client: bool, is_root: NDArray[np.bool_]
) -> tuple[list[int], list[int]] | None:
    """Like :meth:`_Paths.trace` for a forest rooted at experts."""
    clients: list[int] = []
    experts: list[int] = []
    node, on_client = start, start_is_client
    while True:
        if on_client:
            if paths.used_client[node]:
                return None
            clients.append(node)
            node, on_client = int(paths.client_parent[node]), False
        else:
            if paths.used_expert[node]:
                return None
            experts.append(node)
            if is_root[node]:
                return clients, experts
            node, on_client = int(paths.expert_parent[node]), True


def _repack(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    key: NDArray[np.float64],
    i: int,
    *,
    strict: bool = True,
) -> bool:
    """Rebuild client ``i``'s row around its knapsacks so that it reaches ``min_experts``.

    The row is refilled lightest first (normalised memory + time), best first among equals,
    until the minimum is met. With ``strict``, experts that other constraints pin (their
    load is at ``expert_min_clients``) stay and full experts are not used, so nothing else
    changes. Without it, any expert that fits may be used; an expert left below its minimum
    then gets a client along an alternating path, and a client that loses its seat on an
    over-full expert gets another expert the same way (client ``i``'s row stays fixed). On
    failure ``x`` is left unchanged and False is returned.
    """
    load = x.sum(axis=0)
    row = x[i].copy()
    if strict:
        pinned = row & (load <= problem.expert_min_clients)
        free = problem.fits[i] & ~pinned & (row | (load < problem.expert_max_clients))
    else:
        pinned = np.zeros_like(row)
        free = problem.fits[i] & (problem.expert_max_clients > 0)
    weight = np.zeros(problem.n_experts)
    mem_cap = time_cap = None
    if problem.expert_memory is not None and problem.client_memory is not None:
        mem_cap = problem.client_memory[i] + capacity_tolerance(problem.client_memory[i : i + 1])[0]
        weight += problem.expert_memory / max(mem_cap, 1e-300)
    if problem.train_time is not None and problem.deadline is not None:
        time_cap = problem.deadline[i] + capacity_tolerance(problem.deadline[i : i + 1])[0]
        weight += problem.train_time[i] / time_cap
    new = pinned.copy()
    mem_used = 0.0 if mem_cap is None else float(problem.expert_memory[new].sum())  # type: ignore[index]
    time_used = 0.0 if time_cap is None else float(problem.train_time[i, new].sum())  # type: ignore[index]
    count = int(new.sum())
    for j in np.lexsort((-key[i], weight)):
        if count >= problem.min_experts[i]:
            break
        if not free[j] or new[j]:
            continue
        if mem_cap is not None and mem_used + problem.expert_memory[j] > mem_cap:  # type: ignore[index]
            continue
        if time_cap is not None and time_used + problem.train_time[i, j] > time_cap:  # type: ignore[index]
            continue
        new[j] = True
        count += 1
        if mem_cap is not None:
            mem_used += float(problem.expert_memory[j])  # type: ignore[index]
        if time_cap is not None:
            time_used += float(problem.train_time[i, j])  # type: ignore[index]
    if count < problem.min_experts[i] or count > problem.max_experts[i]:
        return False
    if strict:
        x[i] = new
        return True
    snapshot = x.copy()
    x[i] = new
    for k in np.flatnonzero(row & ~new):
        if x[:, k].sum() < problem.expert_min_clients[k] and not _augment_experts(
            problem, x, key, np.array([k]), fixed=i
        ):
            x[:] = snapshot
            return False
    for j in np.flatnonzero(new & ~row):
        if x[:, j].sum() <= problem.expert_max_clients[j]:
            continue
        holders = np.flatnonzero(x[:, j])
        holders = holders[holders != i]
        if holders.size == 0:
            x[:] = snapshot
            return False
        count_h = x[holders].sum(axis=1)
        at_min = count_h <= problem.min_experts[holders]
        h = int(holders[np.lexsort((key[holders, j], at_min))[0]])
        x[h, j] = False
        if x[h].sum() < problem.min_experts[h] and not _augment_clients(
            problem, x, key, np.array([h]), fixed=i
        ):
            x[:] = snapshot
            return False
    return True
