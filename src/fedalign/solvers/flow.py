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

OR-Tools' min-cost flow has no clock. Under a time limit, a graph of :data:`ISOLATE_PAIRS`
allowed pairs or more (or any graph when the time left is short) is solved in a forked
worker process killed at the deadline (:mod:`fedalign.solvers._worker`), and only when the
solve may end in time at all (:data:`FAST_SECONDS_PER_PAIR`). Meanwhile this process makes
a *quick plan* (:func:`_quick_plan`): expert prices from the optimal flow on a sample of
the clients (:func:`sample_potentials`, at most :data:`QUICK_SAMPLE_CLIENTS` of them), each client's best experts at those prices
(:func:`priced_choice`), repaired and filled. When the worker is stopped the quick plan is
returned (status ``feasible``, ``info["exact"]`` saying why) with the Lagrangian bound those
prices prove; when neither can end in time, :class:`~fedalign.TimeLimitError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from .._validation import Boolean, Constraint, Interval
from ..errors import AlignmentError, InfeasibleError, TimeLimitError
from ..problem import SEAT_ROW, AlignmentProblem
from . import _worker
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
from .repair import add_best_first, repair
from .warm import WarmStart, price_info

__all__ = ["CountIntervals", "FlowSolver", "count_intervals", "priced_choice", "sample_potentials"]

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


def _sparse(net: Network, extra: int, prices: NDArray[np.float64] | None = None) -> _Certified | None:
    """Certified optimum of ``net`` from sparse candidate graphs; None: solve it densely.

    On large cohorts, expert prices come first from the same method on a systematic sample
    of the clients (``1/_SAMPLE_STRIDE`` of them, experts' bounds scaled alike): ranking
    each client's experts by desirability plus price picks nearly the final pairs, so the
    first solve of :func:`_certify` is usually certified at once or after one small repair.
    ``prices`` (per expert, in desirability units: a warm start's) replace that sample.
    """
    if prices is not None:
        charge = np.rint(prices * net.scale).astype(np.int64)
        if _helps(net, charge):
            mask = _top_per_row(net.cost - charge[None, :], net.eligible, net.hi + extra)
            return _certify(net, mask, extra)
    if net.n >= _SAMPLE_MIN:
        pot = sample_potentials(net, extra)
        if pot is not None:
            mask = _top_per_row(net.cost + pot.expert[None, :], net.eligible, net.hi + extra)
            return _certify(net, mask, extra)
    return _certify(net, _candidates(net, extra), extra)


def sample_potentials(net: Network, extra: int, stride: int | None = None) -> Potentials | None:
    """Potentials of the optimal flow on every ``stride``-th client (:func:`sample`; default
    ``_SAMPLE_STRIDE``).

    Their expert part prices the experts for the whole cohort, in ``net``'s units. None when
    the sample needs slack (its scaled bounds cannot all be met).
    """
    sub_net = sample(net, _SAMPLE_STRIDE if stride is None else stride)
    sub = _sparse(sub_net, extra)
    if sub is None:
        rows, cols = np.nonzero(sub_net.eligible)
        res = solve_pairs(sub_net, rows, cols)
        pot = potentials(sub_net, res)
        sub = None if pot is None else _Certified(res, pot, 1, rows.size)
    return None if sub is None or sub.res.uses_slack else sub.pot


# --------------------------------------------------------------------------- warm starts


def _helps(net: Network, charge: NDArray[np.int64]) -> bool:
    """Whether warm prices overfill the experts at most half as much as no prices do.

    Measured on every 8th client, each taking its best experts by desirability minus price.
    Prices from an unrelated problem rank candidates about as badly as no prices at all,
    and then the candidate rounds grow long (still exact, only slower): such prices are
    dropped in favour of the sampled ones.
    """
    idx = np.arange(0, net.n, _SAMPLE_STRIDE)
    if idx.size == 0:
        return True
    cap = np.ceil(net.ehi * idx.size / net.n)

    def overfill(cost: NDArray[np.int64]) -> float:
        top = _top_per_row(cost, net.eligible[idx], net.hi[idx])
        return float(np.maximum(top.sum(axis=0) - cap, 0).sum())

    warm = overfill(net.cost[idx] - charge[None, :])
    return warm == 0.0 or warm <= 0.5 * overfill(net.cost[idx])


def warm_expert_prices(problem: AlignmentProblem, warm: WarmStart) -> NDArray[np.float64] | None:
    """What an earlier solution charged each expert, in desirability units; None if unknown.

    The sum, over this problem's expert rows (by name), of the earlier upper-side minus
    lower-side prices (a Lagrangian solution's prices, or a flow solution's potentials);
    experts without any price get 0. Only the ranking of candidates uses it: the
    certificate makes the result exact whatever the prices are.
    """
    total = np.zeros(problem.n_experts)
    known = False
    for row in problem.rows:
        if row.over != "expert":
            continue
        up = warm.prices(row.name, "expert", "upper")
        lo = warm.prices(row.name, "expert", "lower")
        known = known or bool(np.isfinite(up).any() or np.isfinite(lo).any())
        total += np.nan_to_num(up) - np.nan_to_num(lo)
    return total if known else None


def _potential_prices(problem: AlignmentProblem, pot: Potentials, scale: float) -> dict[str, Any]:
    """``info["prices"]`` from the expert potentials: a price per expert on the count row.

    A pair's reduced cost is ``-D_ij + pi_i - pe_j``, so ``-pe_j`` is what expert ``j``
    charges each of its pairs (up to a constant, chosen so the cheapest expert costs 0).
    """
    pe = pot.expert.astype(np.float64)
    price = (pe.max(initial=0.0) - pe) / scale if pe.size else pe
    return price_info(problem.expert_ids, [(SEAT_ROW, "expert", "upper", price)])


# --------------------------------------------------------------------------- the exact solve


#: Under a time limit, graphs with at least this many allowed pairs are solved in a worker
#: process stopped at the deadline (OR-Tools' min-cost flow has no clock), while this process
#: makes a quick plan to fall back on.
ISOLATE_PAIRS = 300_000
#: Seconds per allowed pair of the exact solve on a quiet machine (2.8e-7 measured at
#: 100,000 x 128 under a load of 2 on 2 cores, docs/benchmarks.md): when even this rate does
#: not fit the time left, the worker is not started.
FAST_SECONDS_PER_PAIR = 2e-7
#: A rate no solve of a small graph exceeds, loaded: below :data:`ISOLATE_PAIRS` a graph is
#: solved in this process only when this rate fits the time left.
SLOW_SECONDS_PER_PAIR = 1e-6
#: Seconds per client-expert pair of the quick plan besides its sample's flow (the priced
#: choice, the repair and the fill: 0.9 s at 100,000 x 128 under a load of 2): when it does
#: not fit the time left, it is not started.
FALLBACK_SECONDS_PER_PAIR = 7e-8
#: Seconds per client-expert pair of the quick plan's final fill (one segment of
#: :func:`~fedalign.solvers.repair.add_best_first`, which looks at the clock only between
#: segments; 0.15 s at 100,000 x 128, loaded): skipped when it does not fit.
FILL_SECONDS_PER_PAIR = 2e-8


#: Clients the quick plan's sample holds at most (every 8th client at least): at 100,000 x
#: 128 every 16th took 0.2 s where every 8th took 1.0 s (it samples again inside), and its
#: prices bounded the optimum within 1.1e-4 instead of 6.4e-5.
QUICK_SAMPLE_CLIENTS = 6000
#: From this many client-expert pairs on, timings are long enough to tell the machine's
#: load (:func:`_slowdown`, and the quick plan's check after its sample).
SLOWDOWN_PAIRS = 1_000_000
#: Seconds per client-expert pair of building the network (0.17 s at 100,000 x 128 under a
#: load of 2 on 2 cores).
NETWORK_SECONDS_PER_PAIR = 1.3e-8


def _slowdown(seconds: float, problem: AlignmentProblem) -> float:
    """How many times slower than :data:`NETWORK_SECONDS_PER_PAIR` the network was built
    (at least 1; 1 below :data:`SLOWDOWN_PAIRS`, where the timing says little)."""
    pairs = float(problem.n_clients) * problem.n_experts
    if pairs < SLOWDOWN_PAIRS:
        return 1.0
    return max(1.0, seconds / (NETWORK_SECONDS_PER_PAIR * pairs))


@dataclass
class _Exact:
    """The optimal flow of the whole network (its chosen pairs only), potentials if known."""

    res: FlowResult
    pot: Potentials | None
    info: dict[str, Any]


def _exact(net: Network, extra: int, prices: NDArray[np.float64] | None, dense: bool) -> _Exact:
    """The exact solve: certified sparse rounds, else (or with ``dense``) the whole graph.

    It may run in a worker process, so it returns only what the caller reads (the chosen
    pairs, not every arc of the graph) to keep the pickled answer small.
    """
    res: FlowResult | None = None
    pot: Potentials | None = None
    info: dict[str, Any] = {"rounds": 1}
    if not dense:
        cert = _sparse(net, extra, prices)
        if cert is not None:
            res, pot = cert.res, cert.pot
            info.update(rounds=cert.rounds, candidate_pairs=cert.pairs)
    info["dense"] = res is None
    if res is None:
        rows, cols = np.nonzero(net.eligible)
        res = solve_pairs(net, rows, cols)
        info["candidate_pairs"] = int(rows.size)
    k = int(res.chosen.sum())
    res = replace(res, rows=res.rows[res.chosen], cols=res.cols[res.chosen], chosen=np.ones(k, bool))
    return _Exact(res, pot, info)


#: Experts per client, beyond the most it may take, that the quick plan's final fill considers.
_FILL_EXTRA = 3


def priced_choice(
    problem: AlignmentProblem, net: Network, prices: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], float]:
    """Each client's best experts at expert ``prices``, its next ones, and the Lagrangian bound.

    Client ``i`` takes, among the pairs it may have, its ``lo[i]`` best by ``d - price`` and
    then every further one of positive ``d - price`` up to ``hi[i]``: its best choice when
    the expert rows are priced instead of enforced. For any prices, the sum of these values
    plus ``price_j * hi_j`` per expert (``price_j * lo_j`` where the price is negative,
    i.e. pays for a lower bound) is at least the objective of any feasible assignment:
    each expert's count lies within its bounds, total rows only remove assignments and
    soft rows' penalties are never negative. A relative ``1e-9`` covers the float sums'
    rounding.

    Returns
    -------
    x : (n, E) bool array
        The choice; expert and total rows are not enforced (a repair does that).
    near : (n, E) bool array
        Each client's next :data:`_FILL_EXTRA` experts by ``d - price`` that it may have and
        did not take: where a final fill looks for pairs of positive desirability.
    bound : float
    """
    n, e = net.n, net.e
    x = np.zeros((n, e), dtype=bool)
    near = np.zeros((n, e), dtype=bool)
    value = float(np.where(prices >= 0, prices * net.ehi, prices * net.elo).sum())
    k = int(min(e, net.hi.max(initial=0)))
    if k > 0:
        r = problem.desirability - prices[None, :]  # one (n, E) array, then changed in place
        r[~net.eligible] = -np.inf
        idx, val = _best(r, min(e, k + _FILL_EXTRA))
        pos = np.arange(idx.shape[1])[None, :]
        take = (pos < net.hi[:, None]) & np.isfinite(val) & ((val > 0) | (pos < net.lo[:, None]))
        rows = np.broadcast_to(np.arange(n)[:, None], idx.shape)
        x[rows[take], idx[take]] = True
        rest = ~take & np.isfinite(val)
        near[rows[rest], idx[rest]] = True
        value += float(val[take].sum())
    return x, near, value + 1e-9 * max(1.0, abs(value))


def _best(r: NDArray[np.float64], k: int) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Per row, the positions and values of its ``k`` largest entries, largest first.

    Up to 8 of them by repeated ``argmax`` (each taken one set to -inf: ``r`` is consumed),
    several times faster than a partial sort of the whole matrix; more by ``argpartition``.
    """
    n, e = r.shape
    if k <= 8:
        rows = np.arange(n)
        idx = np.empty((n, k), dtype=np.intp)
        val = np.empty((n, k))
        for t in range(k):  # k <= 8 passes over the matrix, never a loop over pairs
            idx[:, t] = r.argmax(axis=1)
            val[:, t] = r[rows, idx[:, t]]
            r[rows, idx[:, t]] = -np.inf
        return idx, val
    part = np.argpartition(r, e - k, axis=1)[:, e - k :] if k < e else np.broadcast_to(np.arange(e), (n, e))
    vals = np.take_along_axis(r, part, axis=1)
    order = np.argsort(-vals, axis=1)
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _quick_plan(
    problem: AlignmentProblem, net: Network, extra: int, budget: Budget, rng: np.random.Generator
) -> tuple[NDArray[np.bool_], float, str, Potentials | None] | str:
    """A repaired plan, its bound, where its prices came from and the sample's potentials
    (None without a sample); or why there is none.

    Prices are the expert potentials of the optimal flow on a sample of the clients
    (:func:`sample_potentials` on every 8th client, or fewer: at most
    :data:`QUICK_SAMPLE_CLIENTS`; none below 2 sampled clients or when the sample needs
    slack, then 0); :func:`priced_choice` gives each client's choice and the bound, and
    :func:`~fedalign.solvers.repair.repair` makes the choice feasible.
    """
    pairs = float(problem.n_clients) * problem.n_experts
    eligible = int(net.eligible.sum())
    stride = max(_SAMPLE_STRIDE, -(-net.n // QUICK_SAMPLE_CLIENTS))
    sample_guess = FAST_SECONDS_PER_PAIR * eligible / stride
    guess = FALLBACK_SECONDS_PER_PAIR * pairs + sample_guess
    left = budget.remaining()
    if guess > left:
        return f"a quick plan (about {guess:.1f} s) could not end in the {left:.1f} s left either"
    t0 = time.perf_counter()
    pot = sample_potentials(net, extra, stride) if net.n >= 2 * stride else None
    if pairs >= SLOWDOWN_PAIRS:
        # The sample's flow ran as slowly as the machine is now: the rest (the choice has no
        # clock) will too; give up now rather than end past the limit.
        slowdown = max(1.0, (time.perf_counter() - t0) / sample_guess)
        rest, left = slowdown * FALLBACK_SECONDS_PER_PAIR * pairs, budget.remaining()
        if rest > left:
            return f"the rest of a quick plan (about {rest:.1f} s here now) could not end in the {left:.1f} s left"
    if pot is None:
        prices, source = np.zeros(net.e), "none (the bound drops the expert rows)"
    else:
        prices = (float(pot.sink) - pot.expert.astype(np.float64)) / net.scale
        source = f"the optimal flow on every {stride}th client"
    first, near, bound = priced_choice(problem, net, prices)
    try:
        # The repair's own fill would sort every positive pair; the clients' next few experts
        # hold nearly all it adds (a full fill closed 1.8 % of gap at 100,000 x 128 against
        # 0.006 % left) at a fraction of the cost. Soft rows need the priced fill.
        soft = bool(problem.soft_rows)
        x = repair(problem, first, fill=soft, budget=budget, rng=rng)
        if not soft and FILL_SECONDS_PER_PAIR * pairs <= budget.remaining():  # no clock inside
            cand = near & ~x & (problem.desirability > 0)
            x = add_best_first(problem, x, cand, problem.desirability, rng=rng, budget=budget)
    except TimeLimitError:
        return "the quick plan's repair ran out of time too"
    except InfeasibleError as exc:
        return f"the quick plan's repair found no feasible assignment ({exc})"
    return x, bound, source, pot


def _bounded(
    problem: AlignmentProblem,
    task: tuple[Network, int, NDArray[np.float64] | None, bool],
    budget: Budget,
    rng: np.random.Generator,
    slowdown: float = 1.0,
) -> _Exact | Result:
    """The exact solve under a time limit: the optimum if it ends in time, else a quick plan.

    The exact solve runs in a forked worker (:mod:`._worker`) killed at the deadline, and
    only when :data:`FAST_SECONDS_PER_PAIR` times ``slowdown`` (how much slower than
    expected the network was built, :func:`_slowdown`) says it may end in time; meanwhile
    this process makes the quick plan (:func:`_quick_plan`). Without the optimum the quick
    plan is returned as ``feasible`` with the Lagrangian bound of :func:`priced_choice`,
    ``info["exact"]`` saying why; without either, :class:`~fedalign.TimeLimitError`.
    """
    net = task[0]
    pairs = int(net.eligible.sum())
    guess, left = FAST_SECONDS_PER_PAIR * pairs * slowdown, budget.remaining()
    # On a loaded machine (2 cores) a worker that cannot end in time only slows the quick plan.
    pending = _worker.start(_exact, task) if guess <= left else None
    try:
        plan = _quick_plan(problem, net, task[1], budget, rng)
        if pending is not None:
            assert budget.deadline is not None  # a time limit is set
            outcome = pending.wait(budget.deadline)
            if outcome.finished:
                done: _Exact = outcome.value
                done.info.update(isolated=outcome.isolated, exact_seconds=outcome.seconds)
                return done
    finally:
        if pending is not None:
            pending.cancel()
    why = (
        "the exact min-cost flow was stopped at the time limit"
        if pending is not None
        else f"the exact min-cost flow (about {guess:.1f} s for {pairs:,} pairs) could not end in the {left:.1f} s left"
    )
    if isinstance(plan, str):
        raise TimeLimitError(budget.message(f"solving exactly ({why}; {plan})"))
    x, bound, source, pot = plan
    info: dict[str, Any] = {
        "scale": net.scale,
        "exact": why,
        "fallback": "each client's best experts at sampled expert prices, repaired",
        "prices_from": source,
        "bound": "Lagrangian: the expert rows priced instead of enforced",
    }
    if pot is not None:  # a next round's warm start ranks its candidates with them
        info["prices"] = _potential_prices(problem, pot, net.scale)
    return Result(assignment=x, bound=bound, optimal=False, info=info)


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
    warm_start = "expert prices to rank the first candidate graph (large, sparse solves)"
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
        warm: WarmStart | None = None,
    ) -> Result:
        counts = count_intervals(problem)  # raises InfeasibleError on an empty interval
        soft = soft_counts(problem)
        if counts is None or soft is None:  # pragma: no cover - Solver.solve refuses first
            raise AlignmentError(f"solver 'flow': {self.refusal(problem)}")
        reason = problem.infeasibility_reason()
        if reason is not None:
            raise InfeasibleError(reason)
        t0 = time.perf_counter()
        net = network(problem, counts, soft)
        slowdown = _slowdown(time.perf_counter() - t0, problem)
        info: dict[str, Any] = {"scale": net.scale, "tolerance": net.tolerance}
        n_eligible = int(net.eligible.sum())
        if dense is None:
            dense = n_eligible < _DENSE_BELOW
        prices = None if warm is None else warm_expert_prices(problem, warm)
        if warm is not None:
            reused = "expert prices" if prices is not None and not dense else "nothing"
            info["warm_start"] = {"reused": reused}
        task = (net, 4 if candidates is None else int(candidates), prices, dense)
        if budget.time_limit is None or (
            n_eligible < ISOLATE_PAIRS and SLOW_SECONDS_PER_PAIR * n_eligible <= budget.remaining()
        ):
            exact = _exact(*task)
        else:
            bounded = _bounded(problem, task, budget, rng, slowdown)
            if isinstance(bounded, Result):  # the quick plan: the exact solve did not end in time
                return bounded
            exact = bounded
        if exact.res.uses_slack:
            raise InfeasibleError(_slack_reason(exact.res, counts, problem))
        info.update(exact.info)
        if exact.pot is not None:
            info["prices"] = _potential_prices(problem, exact.pot, net.scale)
        x = np.zeros(problem.shape, dtype=bool)
        x[exact.res.rows[exact.res.chosen], exact.res.cols[exact.res.chosen]] = True
        return Result(assignment=x, optimal=True, info=info)
