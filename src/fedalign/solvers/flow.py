"""Exact min-cost flow solver (``flow``) for problems whose rows reduce to counts.

When every row counts pairs, the constraint matrix is the incidence matrix of a bipartite
graph, so the problem is a min-cost circulation::

    source --[client count interval]--> client i --[0, 1], cost -D_ij--> expert j
    expert j --[expert count interval]--> sink --[total count interval]--> source

A row *reduces to counts* when, within each of its rows, every pair that fits has the same
weight ``w`` (:meth:`fedalign.Row.reduced_counts`): a memory row when all experts a client may
train are equally large, a deadline row when it trains each in the same time, any row with
unit weights. Hard rows then bound the counts (:func:`count_intervals`: a client's interval
is ``[max ceil(lower / w), min floor(upper / w)]`` over its rows, within the checker's
tolerance), likewise per expert and, for total rows, on the return arc sink -> source. Soft
rows make a count cost ``band_cost(prices, excess(w * c))``, convex in ``c``: the count arc
becomes parallel arcs of increasing marginal cost (one for the free stretch, one per band or
fractional kink, one for the rest at the last price), exact for min-cost flow. Other rows
are refused before solving (:meth:`FlowSolver.refusal` names the solvers that can).
:mod:`fedalign.solvers._flow_rows` does the reduction, :mod:`fedalign.solvers._flow_network`
builds and solves the network and computes node potentials.

Every arc cost is an integer (OR-Tools' min-cost flow works in int64 and truncates floats),
so desirability and soft marginals are scaled: ``D = rint(d * S)``. Each pair's (and each
priced unit's) rounding error is at most ``0.5 / S``, so the assignment returned is optimal
for the scaled costs and within ``Solution.info["tolerance"]`` (``slots / S`` without soft
rows, ``slots * (1 + 2 * priced sides) / S`` with them, ``slots`` bounding how many pairs any
feasible assignment holds) of the true optimum. ``S`` is the largest power of two that int64
allows for the graph's size (OR-Tools multiplies costs by the node count internally, and the
slack penalty below must exceed any simple cycle of other arcs): ``max|D|`` is about
``2e12`` to ``4e12`` for small cohorts and ``1e10`` at ``10^5 x 128``, i.e. a relative error
per pair of ``1e-12`` to ``1e-10``. A power of two makes ``d * S`` exact, so the bound is
exact too; ``S`` is capped at ``2**1020`` so that it stays finite for any finite
desirability (when every ``|d|`` is below about ``1e-295`` the pairs are resolved to an
absolute ``2**-1021`` instead, down to all-zero costs for subnormal values).

Lower bounds never make a graph infeasible: penalised slack arcs (client -> sink for a
client's lower bound, source -> expert for an expert's, and with a hard total row arcs
around the return arc, each at a cost above any simple cycle of other arcs) keep every graph
feasible, and an optimum of the full graph that uses them proves the problem infeasible.

At scale the graph over every allowed pair is large (``10^5 x 128`` pairs = 11.5 million
arcs). The solver therefore first solves on a sparse *candidate* set, then certifies the
result from node potentials: shortest-path distances in the residual graph (an exact,
vectorised Bellman-Ford in int64; a bundle of parallel count arcs is residual forward at the
cost of its cheapest open arc and backward at minus the cost of its dearest used one) are a
feasible dual, and a left-out pair ``(i, j)`` whose reduced cost ``-D_ij + pi_i - pi_j`` is
negative would close a negative cycle. Such pairs are added and the sparse graph is solved
again; once no left-out pair has a negative reduced cost, the potentials are dual feasible
for the full graph, which proves the sparse optimum optimal for the full problem. The
candidates are each client's best experts by desirability (plus the best clients of each
expert whose cap, or soft cost, can bind); on large cohorts (8,000 clients and more) they are
ranked by desirability plus *expert prices*, the expert potentials of the same method run on
every 8th client (experts' and the round's bounds scaled to the sample), which usually
certifies at the first solve. If the candidate set grows to half the full graph or the loop
does not settle, the solver falls back to the dense graph. Graphs under a million allowed
pairs are solved densely by default (one solve is faster there). ``Solution.info`` records
``rounds``, ``candidate_pairs`` and whether the dense graph was solved (``dense``).
``benchmarks/flow_scale.py`` measures sparse against dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._validation import Boolean, Constraint, Interval
from ..errors import AlignmentError, InfeasibleError
from ..problem import AlignmentProblem
from ._flow_network import (
    INF,
    FlowResult,
    Network,
    Potentials,
    network,
    potentials,
    sample,
    solve_pairs,
)
from ._flow_rows import CountIntervals, count_intervals, soft_counts
from .base import Budget, Result, RowSupport, Solver, register

__all__ = ["CountIntervals", "FlowSolver", "count_intervals"]

#: Sparse re-solves before falling back to the dense graph.
_MAX_ROUNDS = 12
#: Cohorts at least this large get expert prices from a sample first (see :func:`_sparse`).
_SAMPLE_MIN = 8000
#: Below this many allowed pairs one dense solve beats the candidate rounds (``dense=None``).
_DENSE_BELOW = 1_000_000
_SAMPLE_STRIDE = 8


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
    masked = np.where(eligible, values, -INF)
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


def _soft_caps(net: Network) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per expert, the count where its cost starts to rise and the count where it stops falling.

    Without soft expert rows these are its maximum and minimum.
    """
    arcs = net.experts.arcs
    if arcs.node.size == arcs.m and not arcs.cost.any():
        return net.ehi, net.elo
    free = np.bincount(arcs.node, weights=np.where(arcs.cost <= 0, arcs.cap, 0), minlength=arcs.m)
    falling = np.bincount(arcs.node, weights=np.where(arcs.cost < 0, arcs.cap, 0), minlength=arcs.m)
    return net.elo + free.astype(np.int64), net.elo + falling.astype(np.int64)


def _candidates(net: Network, extra: int) -> NDArray[np.bool_]:
    """First sparse pair set.

    Each client's best ``hi + extra`` experts, and each expert's best ``cap + extra``
    clients, where ``cap`` is its maximum (or where its soft cost starts) when that can bind,
    else its minimum (or where its soft cost stops falling): when the experts' caps bind,
    clients move down their lists, and the column lists hold the clients each expert is
    likely to end up with.
    """
    mask = _top_per_row(net.cost, net.eligible, net.hi + extra)
    per_expert = net.eligible.sum(axis=0)
    cap, floor = _soft_caps(net)
    want = np.where(cap < per_expert, cap, floor)
    for j in np.flatnonzero(want > 0):
        k = int(min(per_expert[j], want[j] + extra))
        col = np.where(net.eligible[:, j], net.cost[:, j], -INF)
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


@dataclass
class _Certified:
    """An optimal flow of a whole network, with the potentials that prove it."""

    res: FlowResult
    pot: Potentials
    rounds: int
    pairs: int


def _certify(net: Network, mask: NDArray[np.bool_], extra: int) -> _Certified | None:
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
        res = solve_pairs(net, rows, cols)
        pot = potentials(net, res)
        if pot is None:  # pragma: no cover - an optimal flow has no negative cycle
            return None
        # Left-out pair (i, j) has reduced cost -D_ij + pc_i - pe_j; negative violates.
        reduced = pot.client[:, None] - pot.expert[None, :] - net.cost
        violated = net.eligible & ~mask & (reduced < 0)
        if not violated.any():
            return _Certified(res, pot, rounds, n_pairs)
        mask |= _most_violated(reduced, violated, 2 * (net.hi + extra))
    return None


def _sparse(net: Network, extra: int) -> _Certified | None:
    """Certified optimum of ``net`` from sparse candidate graphs; None: solve it densely.

    On large cohorts, expert prices come first from the same method on a systematic sample
    of the clients (``1/_SAMPLE_STRIDE`` of them, experts' bounds scaled alike): ranking
    each client's experts by desirability plus price picks nearly the final pairs, so the
    first solve of :func:`_certify` is usually certified at once or after one small repair.
    """
    if net.n >= _SAMPLE_MIN:
        sub_net = sample(net, _SAMPLE_STRIDE)
        sub = _sparse(sub_net, extra)
        if sub is None:
            rows, cols = np.nonzero(sub_net.eligible)
            res = solve_pairs(sub_net, rows, cols)
            pot = potentials(sub_net, res)
            sub = None if pot is None else _Certified(res, pot, 1, rows.size)
        if sub is not None and not sub.res.uses_slack:
            mask = _top_per_row(net.cost + sub.pot.expert[None, :], net.eligible, net.hi + extra)
            return _certify(net, mask, extra)
    return _certify(net, _candidates(net, extra), extra)


# --------------------------------------------------------------------------- the solver


def _slack_reason(res: FlowResult, counts: CountIntervals, problem: AlignmentProblem) -> str:
    """Which lower (or total) bound the optimum of the full graph could meet only with slack."""
    if res.client_slack.any():
        i = int(np.flatnonzero(res.client_slack)[0])
        k = counts.client.lower_row[i]
        what = "min_experts" if k < 0 else counts.client.rows[k]
        where = f" of client {problem.client_ids[i]!r} (position {i})"
    elif res.expert_slack.any():
        j = int(np.flatnonzero(res.expert_slack)[0])
        k = counts.expert.lower_row[j]
        what = "expert_min_clients" if k < 0 else counts.expert.rows[k]
        where = f" of expert {problem.expert_ids[j]!r} (position {j})"
    else:
        assert counts.total is not None
        side = counts.total
        k = int(side.upper_row[0] if res.over and side.upper_row[0] >= 0 else side.lower_row[0])
        what, where = (side.rows[k], " (a total row)") if k >= 0 else ("the total rows", "")
    return (
        "no assignment meets every per-client, per-expert and total count at once "
        f"(the min-cost flow needs slack to meet {what}{where})"
    )


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
        RowSupport("client", "count"),
        RowSupport("expert", "count"),
        RowSupport("total", "count"),
        RowSupport("client", "count", soft=True),
        RowSupport("expert", "count", soft=True),
        RowSupport("total", "count", soft=True),
    )
    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]] | None] = {
        "candidates": [Interval(int, 0, None), None],
        "dense": [Boolean(), None],
    }

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        candidates: int | None = None,
        dense: bool | None = None,
    ) -> Result:
        counts = count_intervals(problem)  # raises InfeasibleError on an empty interval
        soft = soft_counts(problem)
        if counts is None or soft is None:  # pragma: no cover - Solver.solve refuses first
            raise AlignmentError(f"solver 'flow': {self.refusal(problem)}")
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)
        net = network(problem, counts, soft)
        extra = 4 if candidates is None else int(candidates)
        info: dict[str, Any] = {"scale": net.scale, "tolerance": net.tolerance}

        res: FlowResult | None = None
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
            res = solve_pairs(net, rows, cols)
            info["candidate_pairs"] = n_eligible
        if res.uses_slack:
            raise InfeasibleError(_slack_reason(res, counts, problem))
        x = np.zeros(problem.shape, dtype=bool)
        x[res.rows[res.chosen], res.cols[res.chosen]] = True
        return Result(assignment=x, optimal=True, info=info)
