"""The ``flow`` solver's network: integer costs, one OR-Tools solve, node potentials.

The circulation (see :mod:`fedalign.solvers.flow` for the method)::

    source --[client count interval]--> client i --[0, 1], cost -D_ij--> expert j
    expert j --[expert count interval]--> sink --[total count interval]--> source

Each of the three kinds of count arc (source -> client, expert -> sink, sink -> source) is a
bundle of parallel arcs, one per stretch of constant marginal soft cost
(:func:`fedalign.solvers._flow_rows.side_curve`); without soft rows it is one arc of cost 0.
Lower bounds are removed by the supply shift. Penalised slack arcs keep every graph feasible:
client -> sink and source -> expert for the minimums, and, with a hard total row, a
sink -> source arc past its upper bound and a source -> sink arc short of its lower bound.
A slack arc costs more than any simple cycle of other arcs, so an optimum that uses one
proves the problem infeasible.

:func:`potentials` turns a solved flow into node potentials (shortest-path distances in its
residual graph); they certify the flow optimal for every pair left out of the graph whose
reduced cost is not negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import AlignmentError
from ..problem import AlignmentProblem
from ._flow_rows import CountIntervals, SoftCount, side_curve

#: Largest scaled |cost| ever used (rint of floats is exact well below 2**53).
MAX_COST = 2**50
#: Largest exponent of the desirability scale ``S = 2**k``: finite, and ``slots / S`` stays a
#: normal float (all-tiny desirabilities are then rounded with an absolute error of ``2**-1021``).
MAX_SCALE_EXP = 1020
#: Sentinel distance for "no path yet" / "no residual arc" in the potentials.
INF = np.int64(2**62)


# --------------------------------------------------------------------------- the network


@dataclass
class Arcs:
    """One side's bundles of parallel count arcs.

    Arc ``a`` belongs to row ``node[a]``, carries up to ``cap[a]`` units beyond the row's
    lower bound at ``cost[a]`` each. The first ``m`` arcs are the rows' first arcs, in row
    order; the rest follow row by row in increasing cost.
    """

    node: NDArray[np.intp]
    cap: NDArray[np.int64]
    cost: NDArray[np.int64]
    m: int


@dataclass
class Side:
    """Count intervals ``[lo, hi]`` of one side, its soft rows and its count arcs."""

    lo: NDArray[np.int64]
    hi: NDArray[np.int64]
    soft: tuple[SoftCount, ...]
    arcs: Arcs


def plain_side(lo: NDArray[np.int64], hi: NDArray[np.int64]) -> Side:
    """A side without soft rows: one arc of cost 0 per row."""
    m = lo.size
    return Side(lo, hi, (), Arcs(np.arange(m), hi - lo, np.zeros(m, np.int64), m))


def soft_side(
    lo: NDArray[np.int64], hi: NDArray[np.int64], soft: tuple[SoftCount, ...], scale: float
) -> Side:
    """A side whose soft rows' costs, scaled by ``scale``, become parallel arcs."""
    if not soft:
        return plain_side(lo, hi)
    curve = side_curve(lo, hi, soft)
    return Side(lo, hi, soft, curve_arcs(curve.points, curve.slope, scale))


def curve_arcs(points: NDArray[np.int64], slope: NDArray[np.float64], scale: float) -> Arcs:
    """Arcs for stretches of constant slope: integer costs, equal neighbours merged.

    Rounding may invert two nearly equal neighbouring slopes; a running maximum restores the
    increasing order that makes parallel arcs exact (each cost then stays within half a unit
    of its slope).
    """
    m = points.shape[0]
    length = np.diff(points, axis=1)
    cost = np.rint(slope * scale).astype(np.int64)
    cost = np.where(length > 0, cost, -INF)  # empty stretches are a suffix: they join the last
    cost = np.maximum.accumulate(cost, axis=1)
    cost = np.where(cost == -INF, 0, cost)
    start = np.ones_like(cost, dtype=bool)
    start[:, 1:] = cost[:, 1:] != cost[:, :-1]
    run = np.cumsum(start, axis=1) - 1
    width = cost.shape[1]
    key = (np.arange(m)[:, None] * width + run).ravel()
    caps = np.bincount(key, weights=length.ravel(), minlength=m * width).astype(np.int64)
    rows, cols = np.nonzero(start)
    first = cols == 0
    order = np.concatenate([np.flatnonzero(first), np.flatnonzero(~first)])
    rows, runs = rows[order], run[rows[order], cols[order]]
    return Arcs(rows, caps[rows * width + runs], cost[rows, cols[order]], m)


@dataclass
class Network:
    """The problem in integer form, shared by the dense and sparse solves."""

    n: int
    e: int
    clients: Side
    experts: Side
    total: Side  # one row: the return arc sink -> source
    bounded: bool  # a hard total row: penalised arcs past its bounds
    eligible: NDArray[np.bool_]
    cost: NDArray[np.int64]  # (n, E) scaled desirability D = rint(d * S)
    scale: float
    slots: int
    penalty: np.int64  # cost of a slack unit that stands in for a missing pair
    priced_sides: int = 0  # sides whose count arcs have costs (soft rows)

    @property
    def lo(self) -> NDArray[np.int64]:
        return self.clients.lo

    @property
    def hi(self) -> NDArray[np.int64]:
        return self.clients.hi

    @property
    def elo(self) -> NDArray[np.int64]:
        return self.experts.lo

    @property
    def ehi(self) -> NDArray[np.int64]:
        return self.experts.hi

    @property
    def tolerance(self) -> float:
        """How far the optimum for the scaled costs may be from the true optimum.

        Each pair's cost is within ``0.5 / S`` of ``d * S``, each unit on a priced count arc
        within ``0.5 / S`` of its marginal soft cost (plus float noise, counted as another
        half unit); at most ``slots`` pairs, and as many units per priced side, are used by
        the returned assignment and by an optimal one.
        """
        return self.slots * (1 + 2 * self.priced_sides) / self.scale


def power_of_two_scale(top: float, units: int) -> float:
    """Largest ``S = 2**k`` with ``top * S <= units`` and ``k <= MAX_SCALE_EXP`` (1 if ``top`` is 0).

    A power of two makes ``d * S`` exact for every finite ``d`` (no overflow: ``|d| <= top``),
    so each pair's rounding error is exactly at most ``0.5 / S``; the cap keeps ``S`` finite
    and ``slots / S`` a normal float for any finite, even subnormal, ``top``.
    """
    if not top > 0:
        return 1.0
    k = min(units.bit_length() - 1 - math.frexp(top)[1], MAX_SCALE_EXP)  # top < 2**frexp
    if k < MAX_SCALE_EXP and math.ldexp(top, k + 1) <= units:
        k += 1
    return math.ldexp(1.0, k)


def return_capacity(lo: NDArray[np.int64], hi: NDArray[np.int64], elo: NDArray[np.int64]) -> int:
    """More than any circulation can carry on the return arc: pairs plus slack units."""
    return int(hi.sum() + lo.sum() + elo.sum()) + 1


def network(problem: AlignmentProblem, counts: CountIntervals, soft: dict[str, tuple[SoftCount, ...]]) -> Network:
    """The integer network of ``problem`` with its rows reduced to ``counts`` and ``soft``."""
    n, e = problem.shape
    lo, hi = counts.client.lower, counts.client.upper
    elo, ehi = counts.expert.lower, counts.expert.upper
    bounded = counts.total is not None
    tlo = int(counts.total.lower[0]) if counts.total is not None else 0
    back = return_capacity(lo, hi, elo)
    thi = int(counts.total.upper[0]) if counts.total is not None else tlo + back
    eligible = problem.fits & (hi > 0)[:, None] & (ehi > 0)[None, :]
    slots = int(max(1, min(int(hi.sum()), int(ehi.sum()), thi)))
    nodes = n + e + 2
    # OR-Tools multiplies costs by about the node count inside cost scaling: keep the
    # largest arc cost (the penalty) and the largest total cost well inside int64.
    units = slots + int(lo.sum()) + int(elo.sum()) + tlo + 1
    penalty = min(MAX_COST, 2**62 // (4 * (nodes + 1)), 2**62 // (4 * units))
    # A simple cycle holds at most 2E pair arcs and, visiting the source and the sink once,
    # at most 4 priced count arcs: a penalty above their total makes any cycle that removes
    # penalised flow profitable, so the optimum uses slack only when nothing else is feasible.
    parts = [(lo, hi, soft["client"]), (elo, ehi, soft["expert"]), (np.array([tlo]), np.array([thi]), soft["total"])]
    curves = [side_curve(a, b, s) if s else None for a, b, s in parts]
    priced = [c for c in curves if c is not None and c.top > 0]
    max_cost = (penalty - 1) // (2 * e + 2 + (6 if priced else 0))
    d = problem.desirability
    dmax = float(np.abs(d[eligible]).max()) if eligible.any() else 0.0
    top = max([dmax] + [c.top for c in priced])
    scale = power_of_two_scale(top, int(max_cost))
    sides = [
        plain_side(a, b) if c is None else Side(a, b, s, curve_arcs(c.points, c.slope, scale))
        for (a, b, s), c in zip(parts, curves, strict=True)
    ]
    # Pairs that can never be chosen get cost 0 (their desirability may be out of scale).
    cost = np.rint(np.where(eligible, d, 0.0) * scale).astype(np.int64)
    return Network(
        n, e, sides[0], sides[1], sides[2], bounded, eligible, cost, scale, slots,
        np.int64(penalty), sum(bool((s.arcs.cost != 0).any()) for s in sides),
    )


def sample(net: Network, stride: int) -> Network:
    """Every ``stride``-th client, with the experts' and the round's bounds scaled to its share.

    Costs, scale and penalty are the full network's, so the sample's potentials are in the
    same units and serve as expert prices for the full problem.
    """
    idx = np.arange(0, net.n, stride)
    frac = idx.size / net.n
    lo, hi = net.lo[idx], net.hi[idx]
    elo = np.floor(net.elo * frac).astype(np.int64)
    ehi = np.maximum(elo, np.ceil(net.ehi * frac).astype(np.int64))
    if net.bounded:
        tlo = np.floor(net.total.lo * frac).astype(np.int64)
        thi = np.maximum(tlo, np.ceil(net.total.hi * frac).astype(np.int64))
    else:
        tlo = np.zeros(1, np.int64)
        thi = tlo + return_capacity(lo, hi, elo)

    def shrunk(side: Side) -> tuple[SoftCount, ...]:
        return tuple(s.shrunk(frac) for s in side.soft)

    return Network(
        n=idx.size,
        e=net.e,
        clients=soft_side(lo, hi, tuple(s.take(idx) for s in net.clients.soft), net.scale),
        experts=soft_side(elo, ehi, shrunk(net.experts), net.scale),
        total=soft_side(tlo, thi, shrunk(net.total), net.scale),
        bounded=net.bounded,
        eligible=net.eligible[idx] & (ehi > 0)[None, :],
        cost=net.cost[idx],
        scale=net.scale,
        slots=int(max(1, min(int(hi.sum()), int(ehi.sum()), int(thi[0])))),
        penalty=net.penalty,
        priced_sides=net.priced_sides,
    )


# --------------------------------------------------------------------------- one solve


@dataclass
class FlowResult:
    """A solved circulation restricted to one set of pairs."""

    rows: NDArray[np.intp]
    cols: NDArray[np.intp]
    chosen: NDArray[np.bool_]  # per pair: flow 1
    client_flow: NDArray[np.int64]  # per client arc (net.clients.arcs)
    expert_flow: NDArray[np.int64]  # per expert arc
    total_flow: NDArray[np.int64]  # per return arc
    client_slack: NDArray[np.int64]  # per client: units of its lower bound met by slack
    expert_slack: NDArray[np.int64]  # per expert: units of its lower bound met by slack
    over: int  # units past the total row's upper bound
    under: int  # units short of the total row's lower bound

    @property
    def uses_slack(self) -> bool:
        return bool(self.client_slack.any() or self.expert_slack.any() or self.over or self.under)


def _group(
    tail: int | NDArray[np.intp], head: int | NDArray[np.intp], cap: NDArray[np.int64], cost: Any
) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int64], NDArray[np.int64]]:
    """One group of arcs as arrays of equal length (a scalar end or cost is repeated)."""
    k = cap.size
    return (
        np.broadcast_to(np.asarray(tail, np.int32), k),
        np.broadcast_to(np.asarray(head, np.int32), k),
        cap.astype(np.int64),
        np.broadcast_to(np.asarray(cost, np.int64), k),
    )


def solve_pairs(net: Network, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> FlowResult:
    """Min-cost circulation over the given pairs, plus penalised slack arcs.

    Arc order: every row's first count arc and the pairs (the graph without soft or total
    rows), then the slack arcs, then the further parallel count arcs and the total row's
    slack.
    """
    from ortools.graph.python import min_cost_flow

    n, e = net.n, net.e
    source, sink = 0, n + e + 1
    ca, xa, ta = net.clients.arcs, net.experts.arcs, net.total.arcs
    short_c = np.flatnonzero(net.lo > 0)
    short_e = np.flatnonzero(net.elo > 0)
    tlo = int(net.total.lo[0])
    big = net.penalty
    back = return_capacity(net.lo, net.hi, net.elo)
    over = [back] if net.bounded else []
    under = [tlo] if net.bounded and tlo > 0 else []
    # (tails, heads, caps, costs) per group of arcs, in the order given to OR-Tools.
    groups = [
        _group(source, ca.node[:n] + 1, ca.cap[:n], ca.cost[:n]),
        _group(rows + 1, cols + n + 1, np.ones(rows.size, np.int64), -net.cost[rows, cols]),
        _group(xa.node[:e] + n + 1, sink, xa.cap[:e], xa.cost[:e]),
        _group(sink, source, ta.cap[:1], ta.cost[:1]),
        _group(short_c + 1, sink, net.lo[short_c], big),
        _group(source, short_e + n + 1, net.elo[short_e], big),
        _group(source, ca.node[n:] + 1, ca.cap[n:], ca.cost[n:]),
        _group(xa.node[e:] + n + 1, sink, xa.cap[e:], xa.cost[e:]),
        _group(sink, source, ta.cap[1:], ta.cost[1:]),
        _group(sink, source, np.array(over, np.int64), big),
        _group(source, sink, np.array(under, np.int64), big),
    ]
    tails, heads, caps, costs = (np.concatenate(part) for part in zip(*groups, strict=True))
    sizes = [g[2].size for g in groups]
    supplies = np.zeros(n + e + 2, np.int64)
    supplies[source] += tlo - net.lo.sum()
    supplies[1 : n + 1] += net.lo
    supplies[n + 1 : n + e + 1] -= net.elo
    supplies[sink] += net.elo.sum() - tlo

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
    part = np.split(flows, np.cumsum(sizes)[:-1])
    client_slack = np.zeros(n, np.int64)
    client_slack[short_c] = part[4]
    expert_slack = np.zeros(e, np.int64)
    expert_slack[short_e] = part[5]
    return FlowResult(
        rows=rows,
        cols=cols,
        chosen=part[1] > 0,
        client_flow=np.concatenate([part[0], part[6]]),
        expert_flow=np.concatenate([part[2], part[7]]),
        total_flow=np.concatenate([part[3], part[8]]),
        client_slack=client_slack,
        expert_slack=expert_slack,
        over=int(part[9].sum()),
        under=int(part[10].sum()),
    )


# --------------------------------------------------------------------------- potentials


@dataclass
class Potentials:
    """Node potentials: clients, experts, source, sink."""

    client: NDArray[np.int64]
    expert: NDArray[np.int64]
    source: np.int64
    sink: np.int64


def residual(arcs: Arcs, flow: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per row, the cheapest residual arc forward (cost) and backward (minus cost); INF if none."""
    open_, used = flow < arcs.cap, flow > 0
    if arcs.node.size == arcs.m:
        return np.where(open_, arcs.cost, INF), np.where(used, -arcs.cost, INF)
    fwd = np.full(arcs.m, INF)
    bwd = np.full(arcs.m, INF)
    np.minimum.at(fwd, arcs.node[open_], arcs.cost[open_])
    np.minimum.at(bwd, arcs.node[used], -arcs.cost[used])
    return fwd, bwd


def potentials(net: Network, res: FlowResult) -> Potentials | None:
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
    c_fwd, c_bwd = residual(net.clients.arcs, res.client_flow)  # source -> client, back
    e_fwd, e_bwd = residual(net.experts.arcs, res.expert_flow)  # expert -> sink, back
    t_fwd, t_bwd = (int(v[0]) for v in residual(net.total.arcs, res.total_flow))  # sink -> source
    if net.bounded:  # penalised arcs past the total row's bounds
        t_fwd = min(t_fwd, int(big), -int(big) if res.under else int(INF))
        t_bwd = min(t_bwd, -int(big) if res.over else int(INF))
        if res.under < net.total.lo[0]:
            t_bwd = min(t_bwd, int(big))
    client_to_sink = res.client_slack < net.lo  # slack arcs, cost +penalty forward
    sink_to_client = res.client_slack > 0
    source_to_expert = res.expert_slack < net.elo
    expert_to_source = res.expert_slack > 0

    def lowest(values: NDArray[np.int64], mask: NDArray[np.bool_] | None = None) -> int:
        picked = values if mask is None else values[mask]
        return int(picked.min()) if picked.size else int(INF)

    pc = np.zeros(n, np.int64)
    pe = np.zeros(e, np.int64)
    ps = pt = 0
    for _ in range(2 * e + 16):
        cand = np.full(n, INF, np.int64)
        np.minimum.at(cand, in_rows, pe[in_cols] + in_cost)
        cand = np.minimum(cand, ps + c_fwd)
        cand = np.where(sink_to_client, np.minimum(cand, pt - big), cand)
        new_pc = np.minimum(pc, cand)

        new_ps = min(ps, pt + t_fwd, lowest(new_pc + c_bwd), lowest(pe, expert_to_source) - int(big))

        cand = np.full(e, INF, np.int64)
        np.minimum.at(cand, out_cols, new_pc[out_rows] - out_cost)
        cand = np.minimum(cand, pt + e_bwd)
        cand = np.where(source_to_expert, np.minimum(cand, new_ps + big), cand)
        new_pe = np.minimum(pe, cand)

        new_pt = min(pt, lowest(new_pe + e_fwd), lowest(new_pc, client_to_sink) + int(big), new_ps + t_bwd)
        new_ps = min(new_ps, new_pt + t_fwd)

        changed = (
            new_ps != ps or new_pt != pt or bool((new_pc != pc).any()) or bool((new_pe != pe).any())
        )
        pc, pe, ps, pt = new_pc, new_pe, new_ps, new_pt
        if not changed:
            return Potentials(pc, pe, np.int64(ps), np.int64(pt))
    return None
