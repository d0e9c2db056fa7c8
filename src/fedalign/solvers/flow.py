"""Exact min-cost flow solver (``flow``) for problems without real knapsack rows.

Without the memory and deadline rows the constraint matrix is the incidence matrix of a
bipartite graph, so the problem is a min-cost circulation (DESIGN.md §2)::

    source --[min_experts_i, max_experts_i]--> client i --[0, 1], cost -D_ij--> expert j
    expert j --[expert_min_clients_j, expert_max_clients_j]--> sink --[0, inf]--> source

Lower bounds are removed by the standard supply shift. Every arc cost is an integer
(OR-Tools' min-cost flow works in int64 and truncates floats), so desirability is scaled:
``D = rint(d * S)``. Each pair's rounding error is at most ``0.5 / S``, so the assignment
returned is optimal for the scaled costs and within ``n_assigned * 0.5 / S +
n_assigned_opt * 0.5 / S <= total_slots / S`` of the true optimum, where ``total_slots``
bounds how many pairs any feasible assignment holds. ``S`` is the largest power of two
that int64 allows for the graph's size (OR-Tools multiplies costs by the node count
internally, and the slack penalty below must exceed ``2E max|D|``): ``max|D|`` is about
``2e12`` to ``4e12`` for small cohorts and ``1e10`` at ``10^5 x 128``, i.e. a relative error
per pair of ``1e-12`` to ``1e-10``. A power of two makes ``d * S`` exact, so the bound is
exact too; ``S`` is capped at ``2**1020`` so that it stays finite for any finite
desirability (when every ``|d|`` is below about ``1e-295`` the pairs are resolved to an
absolute ``2**-1021`` instead, down to all-zero costs for subnormal values). The bound
``total_slots / S`` is kept in ``Solution.info["tolerance"]``.

Knapsack rows reduce to counts when every expert a client may train needs the same memory
(the memory row caps the count at ``floor(client_memory / memory)``) and takes it the same
``train_time`` (the deadline row caps it at ``floor(deadline / time)``). Other knapsack rows
are not handled: :meth:`FlowSolver.unsupported_reason` names the solvers that can.

Minimums never make a graph infeasible: penalised slack arcs (client -> sink for
``min_experts``, source -> expert for ``expert_min_clients``, each at a cost above any
simple cycle of pair arcs) keep every graph feasible, and an optimum of the full graph that
uses them proves the problem infeasible.

At scale the graph over every allowed pair is large (``10^5 x 128`` pairs = 11.5 million
arcs). The solver therefore first solves on a sparse *candidate* set, then certifies the
result from node potentials: shortest-path distances in the residual graph (an exact,
vectorised Bellman-Ford in int64) are a feasible dual, and a left-out pair ``(i, j)`` whose
reduced cost ``-D_ij + pi_i - pi_j`` is negative would close a negative cycle. Such pairs are
added and the sparse graph is solved again; once no left-out pair has a negative reduced
cost, the potentials are dual feasible for the full graph, which proves the sparse optimum
optimal for the full problem. The candidates are each client's best experts by desirability
(plus the best clients of each expert whose cap can bind); on large cohorts (8,000 clients
and more) they are ranked by desirability plus *expert prices*, the expert potentials of the
same method run on every 8th client, which usually certifies at the first solve. If the
candidate set grows to half the full graph or the loop does not settle, the solver falls
back to the dense graph. Graphs under a million allowed pairs are solved densely by default
(one solve is faster there). ``Solution.info`` records ``rounds``, ``candidate_pairs`` and
whether the dense graph was solved (``dense``). ``benchmarks/flow_scale.py`` measures sparse against dense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import AlignmentError, InfeasibleError
from ..problem import AlignmentProblem, capacity_tolerance
from .base import Budget, Result, RowSupport, Solver, register

__all__ = ["FlowSolver", "count_caps"]

#: Solvers that handle knapsack rows which do not reduce to counts.
KNAPSACK_SOLVERS = "'lp', 'lagrangian', 'cpsat', 'milp', 'greedy' or 'topk'"

#: Largest scaled |cost| ever used (rint of floats is exact well below 2**53).
_MAX_COST = 2**50
#: Largest exponent of the desirability scale ``S = 2**k``: finite, and ``slots / S`` stays a
#: normal float (all-tiny desirabilities are then rounded with an absolute error of ``2**-1021``).
_MAX_SCALE_EXP = 1020
#: Sentinel distance for "no path yet" in the potential computation.
_INF = np.int64(2**62)
#: Sparse re-solves before falling back to the dense graph.
_MAX_ROUNDS = 12
#: Cohorts at least this large get expert prices from a sample first (see :func:`_sparse`).
_SAMPLE_MIN = 8000
#: Below this many allowed pairs one dense solve beats the candidate rounds (``dense=None``).
_DENSE_BELOW = 1_000_000
_SAMPLE_STRIDE = 8


# --------------------------------------------------------------------------- knapsack rows


def _count_cap(capacity: NDArray[np.float64], weight: NDArray[np.float64], e: int) -> NDArray[np.int64]:
    """Largest ``k`` with ``k * weight <= capacity + tolerance`` per client (``e`` if weight 0)."""
    cap = capacity + capacity_tolerance(capacity)
    safe = np.where(weight > 0, weight, 1.0)
    k = np.floor(cap / safe)
    k = np.where(k * safe > cap, k - 1, k)
    k = np.where(weight > 0, np.clip(k, 0, e), e)
    return k.astype(np.int64)


def _uniform_weight(
    weights: NDArray[np.float64], fits: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], int | None]:
    """Per client, the common weight of the experts that fit it, and the first client without one."""
    lo = np.where(fits, weights, np.inf).min(axis=1)
    hi = np.where(fits, weights, -np.inf).max(axis=1)
    bad = fits.any(axis=1) & (lo != hi)
    first = int(np.flatnonzero(bad)[0]) if bad.any() else None
    return np.where(np.isfinite(lo), lo, 0.0), first


def count_caps(problem: AlignmentProblem) -> tuple[NDArray[np.int64] | None, str | None]:
    """Per-client expert caps with the knapsack rows reduced to counts.

    Parameters
    ----------
    problem : AlignmentProblem

    Returns
    -------
    caps : (n_clients,) int64 array or None
        ``min(max_experts, memory count cap, deadline count cap)``; None when a knapsack row
        does not reduce to a count.
    reason : str or None
        Why a knapsack row does not reduce (None when it does).
    """
    fits = problem.fits
    e = problem.n_experts
    caps = problem.max_experts.copy()
    if problem.expert_memory is not None and problem.client_memory is not None:
        mem = np.broadcast_to(problem.expert_memory[None, :], fits.shape)
        weight, bad = _uniform_weight(mem, fits)
        if bad is not None:
            return None, (
                f"the memory row of client {problem.client_ids[bad]!r} (position {bad}) does "
                "not reduce to a count (the experts it may train need different memory); "
                f"use {KNAPSACK_SOLVERS}"
            )
        caps = np.minimum(caps, _count_cap(problem.client_memory, weight, e))
    if problem.train_time is not None and problem.deadline is not None:
        weight, bad = _uniform_weight(problem.train_time, fits)
        if bad is not None:
            return None, (
                f"the deadline row of client {problem.client_ids[bad]!r} (position {bad}) does "
                "not reduce to a count (the experts it may train take different train_time); "
                f"use {KNAPSACK_SOLVERS}"
            )
        caps = np.minimum(caps, _count_cap(problem.deadline, weight, e))
    return caps, None


# --------------------------------------------------------------------------- the network


@dataclass
class _Network:
    """The count-only problem in integer form, shared by the dense and sparse solves."""

    n: int
    e: int
    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    elo: NDArray[np.int64]
    ehi: NDArray[np.int64]
    eligible: NDArray[np.bool_]
    cost: NDArray[np.int64]  # (n, E) scaled desirability D = rint(d * S)
    scale: float
    slots: int
    penalty: np.int64  # cost of a slack unit that stands in for a missing pair


@dataclass
class _FlowResult:
    """A solved circulation restricted to one set of pairs."""

    rows: NDArray[np.intp]
    cols: NDArray[np.intp]
    chosen: NDArray[np.bool_]  # per pair: flow 1
    count: NDArray[np.int64]  # per client: real pairs + slack
    load: NDArray[np.int64]  # per expert: real pairs + slack
    through: int  # flow on the sink -> source arc
    client_slack: NDArray[np.int64]  # per client: units of min_experts met by slack
    expert_slack: NDArray[np.int64]  # per expert: units of expert_min_clients met by slack

    @property
    def uses_slack(self) -> bool:
        return bool(self.client_slack.any() or self.expert_slack.any())


def _power_of_two_scale(top: float, units: int) -> float:
    """Largest ``S = 2**k`` with ``top * S <= units`` and ``k <= _MAX_SCALE_EXP`` (1 if ``top`` is 0).

    A power of two makes ``d * S`` exact for every finite ``d`` (no overflow: ``|d| <= top``),
    so each pair's rounding error is exactly at most ``0.5 / S``; the cap keeps ``S`` finite
    and ``slots / S`` a normal float for any finite, even subnormal, ``top``.
    """
    if not top > 0:
        return 1.0
    k = min(units.bit_length() - 1 - math.frexp(top)[1], _MAX_SCALE_EXP)  # top < 2**frexp
    if k < _MAX_SCALE_EXP and math.ldexp(top, k + 1) <= units:
        k += 1
    return math.ldexp(1.0, k)


def _network(problem: AlignmentProblem, hi: NDArray[np.int64]) -> _Network:
    n, e = problem.shape
    lo = problem.min_experts.astype(np.int64)
    elo = problem.expert_min_clients.astype(np.int64)
    ehi = problem.expert_max_clients.astype(np.int64)
    eligible = problem.fits & (hi > 0)[:, None] & (ehi > 0)[None, :]
    slots = int(max(1, min(int(hi.sum()), int(ehi.sum()))))
    nodes = n + e + 2
    # OR-Tools multiplies costs by about the node count inside cost scaling: keep the
    # largest arc cost (the penalty) and the largest total cost well inside int64.
    units = slots + int(lo.sum()) + int(elo.sum()) + 1
    penalty = min(_MAX_COST, 2**62 // (4 * (nodes + 1)), 2**62 // (4 * units))
    # A simple cycle holds at most 2E pair arcs, so a penalty above 2E * max|D| makes any
    # cycle that removes penalised flow profitable: the optimum uses the slack arcs only
    # when nothing else is feasible.
    max_cost = (penalty - 1) // (2 * e + 2)
    d = problem.desirability
    dmax = float(np.abs(d[eligible]).max()) if eligible.any() else 0.0
    scale = _power_of_two_scale(dmax, int(max_cost))
    # Pairs that can never be chosen get cost 0 (their desirability may be out of scale).
    cost = np.rint(np.where(eligible, d, 0.0) * scale).astype(np.int64)
    return _Network(n, e, lo, hi, elo, ehi, eligible, cost, scale, slots, np.int64(penalty))


def _return_capacity(net: _Network) -> int:
    """Capacity of the sink -> source arc: more than any circulation can carry.

    Its flow is the number of pairs plus the slack units, at most
    ``sum(hi) + sum(min_experts) + sum(expert_min_clients)``; it must never bind, or the
    potentials' assumption that the arc is always residual would not hold.
    """
    return int(net.hi.sum() + net.lo.sum() + net.elo.sum()) + 1


def _solve_pairs(net: _Network, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> _FlowResult:
    """Min-cost circulation over the given pairs, plus penalised slack arcs.

    Slack arcs (client -> sink for a client's minimum, source -> expert for an expert's
    minimum, each at cost ``net.penalty``) keep every pair set feasible; an optimum of the
    full graph that uses them proves the problem infeasible.
    """
    from ortools.graph.python import min_cost_flow

    n, e = net.n, net.e
    source, sink = 0, n + e + 1
    m = rows.size
    short_c = np.flatnonzero(net.lo > 0)
    short_e = np.flatnonzero(net.elo > 0)
    tails = np.concatenate(
        [
            np.full(n, source),
            rows + 1,
            np.arange(n + 1, n + e + 1),
            [sink],
            short_c + 1,
            np.full(short_e.size, source),
        ]
    ).astype(np.int32)
    heads = np.concatenate(
        [
            np.arange(1, n + 1),
            cols + n + 1,
            np.full(e, sink),
            [source],
            np.full(short_c.size, sink),
            short_e + n + 1,
        ]
    ).astype(np.int32)
    caps = np.concatenate(
        [net.hi - net.lo, np.ones(m, np.int64), net.ehi - net.elo, [_return_capacity(net)],
         net.lo[short_c], net.elo[short_e]]
    ).astype(np.int64)
    costs = np.concatenate(
        [np.zeros(n, np.int64), -net.cost[rows, cols], np.zeros(e + 1, np.int64),
         np.full(short_c.size + short_e.size, net.penalty, np.int64)]
    ).astype(np.int64)
    supplies = np.zeros(n + e + 2, np.int64)
    supplies[source] -= net.lo.sum()
    supplies[1 : n + 1] += net.lo
    supplies[n + 1 : n + e + 1] -= net.elo
    supplies[sink] += net.elo.sum()

    mcf = min_cost_flow.SimpleMinCostFlow()
    mcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    mcf.set_nodes_supplies(np.arange(n + e + 2, dtype=np.int32), supplies)
    status = mcf.solve()
    if status != mcf.OPTIMAL:  # pragma: no cover - slack keeps it feasible, scaling in range
        raise AlignmentError(
            f"solver 'flow': OR-Tools min-cost flow returned status {status!r}; "
            "this is a bug in fedalign, please report it"
        )
    flows = np.asarray(mcf.flows(np.arange(tails.size, dtype=np.int32)), dtype=np.int64)
    k = n + m + e + 1
    client_slack = np.zeros(n, np.int64)
    client_slack[short_c] = flows[k : k + short_c.size]
    expert_slack = np.zeros(e, np.int64)
    expert_slack[short_e] = flows[k + short_c.size :]
    return _FlowResult(
        rows=rows,
        cols=cols,
        chosen=flows[n : n + m] > 0,
        count=net.lo + flows[:n],
        load=net.elo + flows[n + m : n + m + e],
        through=int(flows[n + m + e]),
        client_slack=client_slack,
        expert_slack=expert_slack,
    )


@dataclass
class _Potentials:
    """Node potentials: clients, experts, source, sink."""

    client: NDArray[np.int64]
    expert: NDArray[np.int64]
    source: np.int64
    sink: np.int64


def _potentials(net: _Network, res: _FlowResult) -> _Potentials | None:
    """Shortest-path distances in the residual graph (client, expert, source, sink).

    Bellman–Ford from a virtual root joined to every node at cost 0, vectorised by arc
    kind, exact in int64. Any simple path visits each expert, the source and the sink at
    most once and a client only between two of them, so at most ``E + 4`` rounds change
    anything; None if the distances still move after ``2E + 16`` rounds (a negative cycle:
    the flow was not optimal).
    """
    n, e = net.n, net.e
    big = net.penalty
    d_pair = net.cost[res.rows, res.cols]
    on = res.chosen
    # expert j -> client i for assigned pairs (cost +D), client i -> expert j otherwise (-D).
    in_rows, in_cols, in_cost = res.rows[on], res.cols[on], d_pair[on]
    out_rows, out_cols, out_cost = res.rows[~on], res.cols[~on], d_pair[~on]
    source_to_client = res.count < net.hi
    client_to_source = res.count > net.lo
    expert_to_sink = res.load < net.ehi
    sink_to_expert = res.load > net.elo
    source_to_sink = res.through > 0  # sink -> source is never saturated (_return_capacity)
    client_to_sink = res.client_slack < net.lo  # slack arcs, cost +penalty forward
    sink_to_client = res.client_slack > 0
    source_to_expert = res.expert_slack < net.elo
    expert_to_source = res.expert_slack > 0

    def lowest(values: NDArray[np.int64], mask: NDArray[np.bool_]) -> np.int64:
        return values[mask].min() if mask.any() else _INF

    pc = np.zeros(n, np.int64)
    pe = np.zeros(e, np.int64)
    ps = np.int64(0)
    pt = np.int64(0)
    for _ in range(2 * e + 16):
        cand = np.full(n, _INF, np.int64)
        np.minimum.at(cand, in_rows, pe[in_cols] + in_cost)
        cand = np.where(source_to_client, np.minimum(cand, ps), cand)
        cand = np.where(sink_to_client, np.minimum(cand, pt - big), cand)
        new_pc = np.minimum(pc, cand)

        new_ps = min(ps, pt, lowest(new_pc, client_to_source), lowest(pe, expert_to_source) - big)

        cand = np.full(e, _INF, np.int64)
        np.minimum.at(cand, out_cols, new_pc[out_rows] - out_cost)
        cand = np.where(sink_to_expert, np.minimum(cand, pt), cand)
        cand = np.where(source_to_expert, np.minimum(cand, new_ps + big), cand)
        new_pe = np.minimum(pe, cand)

        new_pt = min(pt, lowest(new_pe, expert_to_sink), lowest(new_pc, client_to_sink) + big)
        if source_to_sink:
            new_pt = min(new_pt, new_ps)
        new_ps = min(new_ps, new_pt)

        changed = (
            new_ps != ps or new_pt != pt or bool((new_pc != pc).any()) or bool((new_pe != pe).any())
        )
        pc, pe, ps, pt = new_pc, new_pe, new_ps, new_pt
        if not changed:
            return _Potentials(pc, pe, ps, pt)
    return None


# --------------------------------------------------------------------------- candidates


def _top_per_row(
    values: NDArray[np.int64], eligible: NDArray[np.bool_], k: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Mask of each row's ``k[i]`` largest eligible values (ties broken by position)."""
    n, e = values.shape
    kmax = int(min(e, k.max(initial=0)))
    out = np.zeros((n, e), dtype=bool)
    if kmax == 0:
        return out
    masked = np.where(eligible, values, -_INF)
    if kmax < e:
        part = np.argpartition(-masked, kmax - 1, axis=1)[:, :kmax]
    else:
        part = np.broadcast_to(np.arange(e), (n, e))
    vals = np.take_along_axis(masked, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    part = np.take_along_axis(part, order, axis=1)
    keep = np.arange(kmax)[None, :] < k[:, None]
    rows = np.broadcast_to(np.arange(n)[:, None], part.shape)
    out[rows[keep], part[keep]] = True
    return out & eligible


def _candidates(net: _Network, extra: int) -> NDArray[np.bool_]:
    """First sparse pair set.

    Each client's best ``hi + extra`` experts, and each expert's best ``cap + extra``
    clients, where ``cap`` is its maximum when that can bind (else its minimum): when the
    experts' caps bind, clients move down their lists, and the column lists hold the clients
    each expert is likely to end up with.
    """
    mask = _top_per_row(net.cost, net.eligible, net.hi + extra)
    per_expert = net.eligible.sum(axis=0)
    want = np.where(net.ehi < per_expert, net.ehi, net.elo)
    for j in np.flatnonzero(want > 0):
        k = int(min(per_expert[j], want[j] + extra))
        col = np.where(net.eligible[:, j], net.cost[:, j], -_INF)
        top = np.argpartition(-col, k - 1)[:k] if k < net.n else np.arange(net.n)
        mask[top, j] = True
    return mask & net.eligible


def _most_violated(
    reduced: NDArray[np.int64], violated: NDArray[np.bool_], k: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Per row, the ``k[i]`` violated pairs with the most negative reduced cost."""
    rows = np.flatnonzero(violated.any(axis=1))
    out = np.zeros_like(violated)
    out[rows] = _top_per_row(-reduced[rows], violated[rows], k[rows])
    return out


def _sample(net: _Network, stride: int) -> _Network:
    """Every ``stride``-th client, with the experts' bounds scaled to the sample's share.

    Costs, scale and penalty are the full network's, so the sample's potentials are in the
    same units and serve as expert prices for the full problem.
    """
    idx = np.arange(0, net.n, stride)
    frac = idx.size / net.n
    elo = np.floor(net.elo * frac).astype(np.int64)
    ehi = np.maximum(elo, np.ceil(net.ehi * frac).astype(np.int64))
    hi = net.hi[idx]
    return _Network(
        n=idx.size,
        e=net.e,
        lo=net.lo[idx],
        hi=hi,
        elo=elo,
        ehi=ehi,
        eligible=net.eligible[idx] & (ehi > 0)[None, :],
        cost=net.cost[idx],
        scale=net.scale,
        slots=int(max(1, min(int(hi.sum()), int(ehi.sum())))),
        penalty=net.penalty,
    )


@dataclass
class _Certified:
    """An optimal flow of a whole network, with the potentials that prove it."""

    res: _FlowResult
    pot: _Potentials
    rounds: int
    pairs: int


def _certify(net: _Network, mask: NDArray[np.bool_], extra: int) -> _Certified | None:
    """Solve on the pairs in ``mask``, adding left-out pairs of negative reduced cost, until
    the potentials prove the flow optimal for every eligible pair of ``net``.

    None when the candidate set grows to half the eligible pairs or the loop does not settle.
    """
    n_eligible = int(net.eligible.sum())
    for rounds in range(1, _MAX_ROUNDS + 1):
        n_pairs = int(mask.sum())
        if 2 * n_pairs >= n_eligible and n_pairs < n_eligible:
            return None  # the dense graph is barely larger
        rows, cols = np.nonzero(mask)
        res = _solve_pairs(net, rows, cols)
        pot = _potentials(net, res)
        if pot is None:  # pragma: no cover - an optimal flow has no negative cycle
            return None
        # Left-out pair (i, j) has reduced cost -D_ij + pc_i - pe_j; negative violates.
        reduced = pot.client[:, None] - pot.expert[None, :] - net.cost
        violated = net.eligible & ~mask & (reduced < 0)
        if not violated.any():
            return _Certified(res, pot, rounds, n_pairs)
        mask |= _most_violated(reduced, violated, 2 * (net.hi + extra))
    return None


def _sparse(net: _Network, extra: int) -> _Certified | None:
    """Certified optimum of ``net`` from sparse candidate graphs; None: solve it densely.

    On large cohorts, expert prices come first from the same method on a systematic sample
    of the clients (``1/_SAMPLE_STRIDE`` of them, experts' bounds scaled alike): ranking
    each client's experts by desirability plus price picks nearly the final pairs, so the
    first solve of :func:`_certify` is usually certified at once or after one small repair.
    """
    if net.n >= _SAMPLE_MIN:
        sample = _sample(net, _SAMPLE_STRIDE)
        sub = _sparse(sample, extra)
        if sub is None:
            rows, cols = np.nonzero(sample.eligible)
            res = _solve_pairs(sample, rows, cols)
            pot = _potentials(sample, res)
            sub = None if pot is None else _Certified(res, pot, 1, rows.size)
        if sub is not None and not sub.res.uses_slack:
            mask = _top_per_row(net.cost + sub.pot.expert[None, :], net.eligible, net.hi + extra)
            return _certify(net, mask, extra)
    return _certify(net, _candidates(net, extra), extra)


# --------------------------------------------------------------------------- the solver


@register
class FlowSolver(Solver):
    """Exact min-cost flow on a sparse candidate graph, certified by node potentials.

    Options
    -------
    candidates : int, optional
        Extra experts per client, beyond the most it may take, in the first sparse graph
        (None picks 4). More candidates mean fewer re-solves but a larger graph.
    dense : bool, optional
        True solves the graph over every allowed pair at once; False always starts from the
        sparse candidate graph; None (default) picks dense below 1,000,000 allowed pairs,
        where one solve of the whole graph is faster than the candidate rounds.
    """

    name = "flow"
    exact = True
    requires = ("ortools",)
    extra = None
    supports = (
        RowSupport("client", "unit"),
        RowSupport("expert", "unit"),
        RowSupport("client", "count", lower=False),
    )

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        candidates: int | None = None,
        dense: bool | None = None,
    ) -> Result:
        if candidates is not None and (
            isinstance(candidates, bool)
            or not isinstance(candidates, (int, np.integer))
            or candidates < 0
        ):
            raise ValueError(f"candidates: expected an int >= 0 or None, got {candidates!r}")
        if dense is not None and not isinstance(dense, (bool, np.bool_)):
            raise ValueError(f"dense: expected a bool or None, got {dense!r}")
        caps, reason = count_caps(problem)
        if caps is None:  # pragma: no cover - Solver.solve checks unsupported_reason first
            raise AlignmentError(f"solver 'flow': {reason}")
        short = problem.min_experts > caps
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InfeasibleError(
                f"min_experts: client {problem.client_ids[i]!r} (position {i}) needs "
                f"{problem.min_experts[i]} experts but its memory or deadline holds only {caps[i]}"
            )
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)
        net = _network(problem, caps)
        extra = 4 if candidates is None else int(candidates)
        info: dict[str, Any] = {"scale": net.scale, "tolerance": net.slots / net.scale}

        res: _FlowResult | None = None
        n_eligible = int(net.eligible.sum())
        info["rounds"] = 1
        if dense is None:
            dense = n_eligible < _DENSE_BELOW
        if not dense:
            cert = _sparse(net, extra)
            if cert is not None:
                res = cert.res
                info.update(rounds=cert.rounds, candidate_pairs=cert.pairs)
        info["dense"] = res is None
        if res is None:
            rows, cols = np.nonzero(net.eligible)
            res = _solve_pairs(net, rows, cols)
            info["candidate_pairs"] = n_eligible
        if res.uses_slack:
            raise InfeasibleError(
                "no assignment meets every per-client and per-expert count at once "
                "(the min-cost flow needs slack to meet "
                + ("min_experts" if res.client_slack.any() else "expert_min_clients")
                + ")"
            )
        x = np.zeros(problem.shape, dtype=bool)
        x[res.rows[res.chosen], res.cols[res.chosen]] = True
        return Result(assignment=x, optimal=True, info=info)
