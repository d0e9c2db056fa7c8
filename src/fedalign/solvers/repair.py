"""The shared toolkit of the heuristic solvers: residual capacities, ordered greedy insertion,
repair of any 0/1 matrix into a feasible assignment, and a feasibility-keeping local search.

Every function here works on a plain ``(n_clients, n_experts)`` bool matrix and an
:class:`~fedalign.AlignmentProblem`; nothing is solver-specific. The code is vectorised over
clients. Where a loop is needed it runs over experts or pairs of experts (the small
dimension), over rounds in which many clients move at once, over breadth-first layers, or
over the few clients still violating a constraint -- never over all client-expert pairs.

Main entry points
-----------------
:func:`repair`
    Any ``x`` (a rounded LP, a per-client top-k that ignored expert caps, random bits) to a
    feasible assignment close to it, preferring high desirability. Minimums are met by
    direct additions, then by alternating paths (the augmenting paths of bipartite
    b-matching, searched from all short clients or experts at once), then by repacking a
    client's row around its knapsacks. Without knapsack rows this finds a feasible
    assignment whenever one exists; with them it is a heuristic and may raise
    :class:`~fedalign.InfeasibleError` on a feasible but tight problem (the message says so).
:func:`add_in_order`, :func:`add_best_first`
    Add candidate pairs in a given order, each one only if it still fits: the exact result
    of the sequential greedy, computed in vectorised chunks (see their docstrings).
:func:`fill`
    Greedy addition of every positive pair that still fits, best first.
:func:`local_search`
    Improving drop / replace / seat-shift / two-client-trade moves that keep feasibility.
:func:`residual`, :func:`addable`
    What each client and expert can still take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InfeasibleError
from ..problem import AlignmentProblem, capacity_tolerance, check
from .base import Budget

__all__ = [
    "Residual",
    "add_best_first",
    "add_in_order",
    "addable",
    "fill",
    "local_search",
    "order_key",
    "repair",
    "residual",
]


# --------------------------------------------------------------------------- residual capacity


@dataclass
class Residual:
    """What each client and expert can still take on top of an assignment.

    Attributes
    ----------
    count : (n,) int64
        Experts each client may still add (``max_experts - assigned``; negative if over).
    memory : (n,) float64 or None
        Memory left per client, tolerance included (``None`` without a memory row).
    time : (n,) float64 or None
        Seconds left before each client's deadline, tolerance included (``None`` without a
        deadline row).
    seats : (E,) int64
        Clients each expert may still take (``expert_max_clients - load``).
    """

    count: NDArray[np.int64]
    memory: NDArray[np.float64] | None
    time: NDArray[np.float64] | None
    seats: NDArray[np.int64]


def residual(problem: AlignmentProblem, x: NDArray[np.bool_]) -> Residual:
    """Residual per-client and per-expert capacity of assignment ``x``.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array

    Returns
    -------
    Residual
    """
    n, e = problem.shape
    # Assignments are sparse: sums over the assigned pairs beat dense (n, E) float passes.
    rows, cols = np.nonzero(x)
    count = problem.max_experts - np.bincount(rows, minlength=n)
    seats = problem.expert_max_clients - np.bincount(cols, minlength=e)
    mem = tim = None
    if problem.expert_memory is not None and problem.client_memory is not None:
        cap = problem.client_memory
        used = np.bincount(rows, weights=problem.expert_memory[cols], minlength=n)
        mem = cap + capacity_tolerance(cap) - used
    if problem.train_time is not None and problem.deadline is not None:
        cap = problem.deadline
        used = np.bincount(rows, weights=problem.train_time[rows, cols], minlength=n)
        tim = cap + capacity_tolerance(cap) - used
    return Residual(count=count.astype(np.int64), memory=mem, time=tim, seats=seats.astype(np.int64))


def addable(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    res: Residual | None = None,
    rows: NDArray[np.intp] | None = None,
) -> NDArray[np.bool_]:
    """(n, E) bool: pairs that can be added to ``x`` now without breaking any upper bound.

    A pair is addable when it is allowed, not yet assigned, its client has a free expert
    slot, memory and time left for it, and its expert has a free seat. With ``rows``, only
    those clients' rows are computed and returned, shape ``(len(rows), E)``.
    """
    if res is None:
        res = residual(problem, x)
    r = slice(None) if rows is None else rows
    ok = problem.fits[r] & ~x[r]
    ok &= (res.count[r] > 0)[:, None]
    ok &= (res.seats > 0)[None, :]
    if res.memory is not None:
        ok &= problem.expert_memory[None, :] <= res.memory[r, None]  # type: ignore[index]
    if res.time is not None:
        ok &= problem.train_time[r] <= res.time[r, None]  # type: ignore[index]
    return ok


def order_key(
    values: NDArray[np.float64], rng: np.random.Generator | None = None
) -> NDArray[np.float64]:
    """A sort key equal in order to ``values``, with ties broken at random when ``rng`` is given.

    Without ``rng`` the values are returned unchanged (ties then go to the lower position,
    deterministically). With ``rng``, every entry is moved by less than half the smallest gap
    between distinct values, so distinct values keep their order and only ties are shuffled.
    """
    if rng is None:
        return values
    distinct = np.unique(values)
    gap = float(np.diff(distinct).min()) if distinct.size > 1 else 1.0
    return values + rng.random(values.shape) * (0.49 * gap)


# --------------------------------------------------------------------------- ordered insertion


def _group_cumsum(keys: NDArray[np.intp], values: NDArray[Any]) -> NDArray[Any]:
    """Inclusive running sum of ``values`` within each group of equal ``keys``, in input order."""
    perm = np.argsort(keys, kind="stable")
    k = keys[perm]
    v = values[perm]
    csum = np.cumsum(v)
    start = np.ones(k.size, dtype=bool)
    start[1:] = k[1:] != k[:-1]
    first = np.flatnonzero(start)
    seg = np.cumsum(start) - 1
    base = (csum[first] - v[first])[seg]
    out = np.empty_like(csum)
    out[perm] = csum - base
    return out


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


_fill = fill  # ``repair`` has a keyword argument named ``fill``


# --------------------------------------------------------------------------- repair phases


def _trim_clients(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
    """Drop each over-full client's lowest-priority experts until its upper bounds hold."""
    res = residual(problem, x)

    def over(rows: NDArray[np.intp]) -> NDArray[np.bool_]:
        bad = res.count[rows] < 0
        if res.memory is not None:
            bad |= res.memory[rows] < 0
        if res.time is not None:
            bad |= res.time[rows] < 0
        return bad

    rows = np.flatnonzero(over(np.arange(problem.n_clients)))
    while rows.size:
        worst = np.argmin(np.where(x[rows], key[rows], np.inf), axis=1)
        x[rows, worst] = False
        res.count[rows] += 1
        if res.memory is not None:
            res.memory[rows] += problem.expert_memory[worst]  # type: ignore[index]
        if res.time is not None:
            res.time[rows] += problem.train_time[rows, worst]  # type: ignore[index]
        rows = rows[over(rows)]


def _trim_experts(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
    """Drop each over-full expert's lowest-priority clients, preferring clients with spare experts."""
    load = x.sum(axis=0)
    count = x.sum(axis=1)
    for j in np.flatnonzero(load > problem.expert_max_clients):
        holders = np.flatnonzero(x[:, j])
        excess = int(load[j] - problem.expert_max_clients[j])
        at_min = count[holders] <= problem.min_experts[holders]
        drop = holders[np.lexsort((key[holders, j], at_min))[:excess]]
        x[drop, j] = False
        count[drop] -= 1


def _meet_client_min(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
    """Add experts to clients below ``min_experts``: proposals, alternating paths, repacking."""
    while True:
        need = x.sum(axis=1) < problem.min_experts
        rows = np.flatnonzero(need)
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
        # Every short client is blocked: augment along alternating paths, else repack a row.
        if _augment_clients(problem, x, key, rows):
            continue
        if not any(
            _repack(problem, x, key, int(i)) or _repack(problem, x, key, int(i), strict=False)
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

    With knapsack rows, adding a heavy expert can leave too little memory or time for the
    experts the client still needs. An expert is *safe* when, after adding it, each knapsack
    still holds the lightest ``need - 1`` other addable experts. Each client takes its best
    safe expert; a client with none takes its lightest (normalised) addable expert.
    """
    best = np.argmax(np.where(ok, key[rows], -np.inf), axis=1)
    need = problem.min_experts[rows] - x[rows].sum(axis=1) - 1  # still needed after this one
    # Clients that need just this one more: every addable expert is safe.
    deep = np.flatnonzero(need > 0)
    if (res.memory is None and res.time is None) or deep.size == 0:
        return best
    sub_rows, sub_ok, need = rows[deep], ok[deep], need[deep]
    safe = sub_ok.copy()
    light = np.zeros(sub_ok.shape)
    weights: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
    if res.memory is not None:
        weights.append((np.broadcast_to(problem.expert_memory, sub_ok.shape), res.memory[sub_rows]))  # type: ignore[arg-type]
    if res.time is not None:
        weights.append((problem.train_time[sub_rows], res.time[sub_rows]))  # type: ignore[index]
    m = sub_ok.shape[1]
    ar = np.arange(deep.size)
    kk = np.clip(need, 0, m - 1)
    width = int(min(m, kk.max() + 1))  # only the smallest ``kk + 1`` values of a row matter
    for w, cap in weights:
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


def _meet_expert_min(problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]) -> None:
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
            deficit = int(emin[j] - x[:, j].sum())
            if deficit <= 0:
                break
            res = residual(problem, x)
            col_ok = problem.fits[:, j] & ~x[:, j] & (res.count > 0)
            if res.memory is not None:
                col_ok &= problem.expert_memory[j] <= res.memory  # type: ignore[index]
            if res.time is not None:
                col_ok &= problem.train_time[:, j] <= res.time  # type: ignore[index]
            cand = np.flatnonzero(col_ok)
            if cand.size:
                take = cand[np.argsort(-key[cand, j], kind="stable")[:deficit]]
                x[take, j] = True
                continue
            if not _swap_in(problem, x, key, j, deficit, res):
                break
    while True:
        short = np.flatnonzero(x.sum(axis=0) < emin)
        if short.size == 0 or not _augment_experts(problem, x, key, short):
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
    if res.memory is not None:
        m = problem.expert_memory
        ok &= (m[j] - m[None, :]) <= res.memory[rows, None]  # type: ignore[index]
    if res.time is not None:
        t = problem.train_time
        ok &= (t[rows, j][:, None] - t[rows]) <= res.time[rows, None]  # type: ignore[index]
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
    keep = _group_cumsum(k, np.ones(k.size, dtype=np.int64)) <= (load - problem.expert_min_clients)[k]
    rows, k = rows[keep][:deficit], k[keep][:deficit]
    x[rows, k] = False
    x[rows, j] = True
    return True


def _make_feasible(
    problem: AlignmentProblem, x: NDArray[np.bool_], key: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], bool]:
    """Trim, then meet the minimums, in place; returns ``x`` and whether it is feasible."""
    _trim_clients(problem, x, key)
    _trim_experts(problem, x, key)
    for _ in range(3):
        _meet_client_min(problem, x, key)
        _meet_expert_min(problem, x, key)
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


def repair(
    problem: AlignmentProblem,
    x: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    fill: bool = True,
    priority: NDArray[np.float64] | None = None,
) -> NDArray[np.bool_]:
    """Turn any 0/1 matrix into a feasible assignment close to it, preferring high priority.

    Steps: drop pairs that are not allowed or never fit; per client, drop the lowest-priority
    experts until ``max_experts``, memory and deadline hold; per expert, drop the
    lowest-priority clients above ``expert_max_clients`` (clients that keep their minimum
    first); add experts to clients below ``min_experts`` (each short client's best addable
    expert that still leaves room in its knapsacks for the rest; when blocked, alternating
    paths that move seats between clients; else repack the client's row lightest first);
    add clients to experts below ``expert_min_clients`` (best clients with room first; when
    blocked, clients swap a spare expert for the short one, or longer alternating paths);
    finally, with ``fill``, add positive pairs best first while they fit.

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

    Returns
    -------
    (n, E) bool ndarray
        A new, feasible assignment (``check(problem, result) == []``).

    Raises
    ------
    ValueError
        ``x`` or ``priority`` has the wrong shape.
    InfeasibleError
        No feasible assignment was reached; the message names the blocking constraint.
    """
    x = np.array(x, dtype=bool, copy=True)
    if x.shape != problem.shape:
        raise ValueError(f"x: expected shape {problem.shape}, got {x.shape}")
    d = problem.desirability if priority is None else np.asarray(priority, dtype=np.float64)
    if d.shape != problem.shape:
        raise ValueError(f"priority: expected shape {problem.shape}, got {d.shape}")
    key = d
    start = x & problem.fits
    x, ok = _make_feasible(problem, start.copy(), key)
    if not ok and problem.has_knapsack and start.any():
        # The start itself can be the trap (heavy experts the minimums cannot pack around):
        # rebuild from nothing, once, with the same preferences.
        y, ok = _make_feasible(problem, np.zeros_like(start), key)
        if ok:
            x = y
    if not ok:
        raise _infeasible(problem, x)
    if fill:
        _fill(problem, x, priority=d, rng=rng)
    return x


# --------------------------------------------------------------------------- local search


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
      above ``min_experts`` and the expert at or above ``expert_min_clients``;
    * **replace**: a client swaps one assigned expert ``k`` for an unassigned ``j`` of higher
      desirability, where ``j`` has a free seat, ``k`` keeps its minimum and the client's
      knapsacks still hold (best move per client; moves on the same expert are limited by
      its free seats / spare clients, so every accepted set stays feasible);
    * **shift**: an expert's seat moves from a client that values it less (and has experts
      to spare) to one that values it more and has room for it -- the move that matters
      when expert caps bind;
    * **exchange**: two clients trade experts (``a`` gives ``k`` and takes ``j``, ``b`` the
      reverse), loads and counts unchanged; for each expert pair the gain splits into a term
      per client, so the best trades pair the sorted terms;
    * **add**: :func:`fill` with the freed capacity.

    It stops when a round improves the objective by at most ``tol * max(1, |objective|)``,
    after ``max_rounds`` rounds, or when the budget runs out. The objective never decreases.
    A round costs about ``n_experts`` times the number of assigned pairs (the exchange
    move looks at every pair of experts), so give large problems a budget.

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
    d = problem.desirability
    emin = problem.expert_min_clients
    for _ in range(max_rounds):
        if budget.expired():
            break
        before = problem.objective(x)
        # drop negative pairs that no minimum needs
        neg = x & (d < 0)
        if neg.any():
            rows, cols = np.nonzero(neg)
            order = np.argsort(d[rows, cols], kind="stable")
            rows, cols = rows[order], cols[order]
            spare_c = (x.sum(axis=1) - problem.min_experts)[rows]
            spare_e = (x.sum(axis=0) - emin)[cols]
            keep = (_group_cumsum(rows, np.ones(rows.size, np.int64)) <= spare_c) & (
                _group_cumsum(cols, np.ones(cols.size, np.int64)) <= spare_e
            )
            x[rows[keep], cols[keep]] = False
        _replace_round(problem, x, budget)
        _shift_round(problem, x, budget)
        _exchange_round(problem, x, budget)
        fill(problem, x)
        if problem.objective(x) <= before + tol * max(1.0, abs(before)):
            break
    return x


def _replace_round(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> None:
    """One vectorised round of improving replace moves (at most one per client)."""
    d = problem.desirability
    n, e = problem.shape
    res = residual(problem, x)
    load = x.sum(axis=0)
    spare_e = load - problem.expert_min_clients
    open_j = problem.fits & ~x & (res.seats > 0)[None, :]
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
        if res.memory is not None:
            m = problem.expert_memory
            ok &= (m[None, :] - m[k]) <= res.memory[rows, None]  # type: ignore[index]
        if res.time is not None:
            t = problem.train_time
            ok &= (t[rows] - t[rows, k][:, None]) <= res.time[rows, None]  # type: ignore[index]
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
    keep = (_group_cumsum(js, np.ones(js.size, np.int64)) <= res.seats[js]) & (
        _group_cumsum(ks, np.ones(ks.size, np.int64)) <= spare_e[ks]
    )
    x[rows[keep], ks[keep]] = False
    x[rows[keep], js[keep]] = True


def _shift_round(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> None:
    """One round of improving seat shifts, expert by expert (each client moves once a round).

    For expert ``j``, its holders that can spare it (count above ``min_experts``) are paired,
    lowest desirability first, with non-holders that have room for it, highest first; a pair
    is shifted while the receiver values ``j`` more than the holder. Loads are unchanged.
    """
    d = problem.desirability
    res = residual(problem, x)
    count = x.sum(axis=1)
    moved = np.zeros(problem.n_clients, dtype=bool)
    mem, t = problem.expert_memory, problem.train_time
    for j in range(problem.n_experts):
        if budget.expired():
            return
        holders = np.flatnonzero(x[:, j] & (count > problem.min_experts) & ~moved)
        if holders.size == 0:
            continue
        ok = problem.fits[:, j] & ~x[:, j] & (res.count > 0) & ~moved
        if res.memory is not None:
            ok &= mem[j] <= res.memory  # type: ignore[index]
        if res.time is not None:
            ok &= t[:, j] <= res.time  # type: ignore[index]
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
        x[h, j] = False
        x[r, j] = True
        moved[h] = moved[r] = True
        count[h] -= 1
        count[r] += 1
        res.count[h] += 1
        res.count[r] -= 1
        if res.memory is not None:
            res.memory[h] += mem[j]  # type: ignore[index]
            res.memory[r] -= mem[j]  # type: ignore[index]
        if res.time is not None:
            res.time[h] += t[h, j]  # type: ignore[index]
            res.time[r] -= t[r, j]  # type: ignore[index]


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
    knapsacks are checked on its own side of the trade. Sorting ``u`` and ``v`` in
    descending order and pairing equal ranks while ``u + v > 0`` gives the best trades for
    the pair of experts. For one ``k`` every ``j`` is handled at once (ranks within groups);
    trades that share a client keep the best one, the rest wait for the next round.
    """
    d = problem.desirability
    fits = problem.fits
    n, e = problem.shape
    res = residual(problem, x)
    mem, t = problem.expert_memory, problem.train_time
    moved = np.zeros(n, dtype=bool)
    # Assigned pairs listed once: a client that trades is marked moved and skipped for the
    # rest of the round, so the lists never need updating.
    rows, cols = np.nonzero(x)
    by_expert = np.argsort(cols, kind="stable")
    rows, cols = rows[by_expert], cols[by_expert]
    offsets = np.searchsorted(cols, np.arange(e + 1))
    holders = [rows[offsets[j] : offsets[j + 1]] for j in range(e)]
    for k in range(e - 1):
        if budget.expired():
            return
        a_all = holders[k][~moved[holders[k]]]
        if a_all.size == 0:
            continue
        # Side A: (a, j) for a holding k, j > k free for a.
        ok = ~x[a_all] & fits[a_all]
        ok[:, : k + 1] = False
        if res.memory is not None:
            ok &= mem[None, :] - mem[k] <= res.memory[a_all, None]  # type: ignore[index]
        if res.time is not None:
            ok &= t[a_all] - t[a_all, k][:, None] <= res.time[a_all, None]  # type: ignore[index]
        aj, ai = np.nonzero(ok.T)  # grouped by j
        if ai.size == 0:
            continue
        a_cl = a_all[ai]
        u = d[a_cl, aj] - d[a_cl, k]
        # Side B: (b, j) for b holding j > k but not k (grouped by j).
        b_cl, bj = rows[offsets[k + 1] :], cols[offsets[k + 1] :]
        keep = ~moved[b_cl] & ~x[b_cl, k] & fits[b_cl, k]
        if res.memory is not None:
            keep &= mem[k] - mem[bj] <= res.memory[b_cl]  # type: ignore[index]
        if res.time is not None:
            keep &= t[b_cl, k] - t[b_cl, bj] <= res.time[b_cl]  # type: ignore[index]
        b_cl, bj = b_cl[keep], bj[keep]
        if b_cl.size == 0:
            continue
        v = d[b_cl, k] - d[b_cl, bj]
        # Only entries that could be part of an improving trade matter: u + max(v) > 0.
        keep_u = u + _group_max(bj, v, e)[aj] > 0
        keep_v = v + _group_max(aj, u, e)[bj] > 0
        a_cl, aj, u = a_cl[keep_u], aj[keep_u], u[keep_u]
        b_cl, bj, v = b_cl[keep_v], bj[keep_v], v[keep_v]
        if a_cl.size == 0 or b_cl.size == 0:
            continue
        # Pair equal ranks within each j.
        ou, ru = _ranked(aj, u)
        ov, rv = _ranked(bj, v)
        width = int(max(ru.max(initial=0), rv.max(initial=0))) + 1
        key_u = aj[ou].astype(np.int64) * width + ru
        key_v = bj[ov].astype(np.int64) * width + rv
        _, iu, iv = np.intersect1d(key_u, key_v, assume_unique=True, return_indices=True)
        tu, tv = ou[iu], ov[iv]
        gain = u[tu] + v[tv]
        good = gain > 1e-12 * np.maximum(1.0, np.abs(u[tu]) + np.abs(v[tv]))
        if not good.any():
            continue
        tu, tv, gain = tu[good], tv[good], gain[good]
        order = np.argsort(-gain, kind="stable")
        tu, tv = tu[order], tv[order]
        ta, tb, tj = a_cl[tu], b_cl[tv], aj[tu]
        # Keep a trade only where it is the first (best) one of both its clients.
        pos = np.arange(ta.size)
        first = np.full(n, ta.size)
        np.minimum.at(first, ta, pos)
        np.minimum.at(first, tb, pos)
        take = (first[ta] == pos) & (first[tb] == pos)
        ta, tb, tj = ta[take], tb[take], tj[take]
        x[ta, k] = False
        x[ta, tj] = True
        x[tb, tj] = False
        x[tb, k] = True
        moved[ta] = moved[tb] = True
        if res.memory is not None:
            res.memory[ta] -= mem[tj] - mem[k]  # type: ignore[index]
            res.memory[tb] -= mem[k] - mem[tj]  # type: ignore[index]
        if res.time is not None:
            res.time[ta] -= t[ta, tj] - t[ta, k]  # type: ignore[index]
            res.time[tb] -= t[tb, k] - t[tb, tj]  # type: ignore[index]
