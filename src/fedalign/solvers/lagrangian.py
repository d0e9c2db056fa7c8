"""``lagrangian``: prices on the per-expert rows, an exact small knapsack per client, repair.

Relaxing the per-expert rows ``expert_min_clients[j] <= sum_i x[i, j] <= expert_max_clients[j]``
with prices ``lam[j] >= 0`` (maximums) and ``mu[j] >= 0`` (minimums) splits the problem into
one independent subproblem per client (DESIGN.md §2)::

    v_i(p) = max  sum_j (d[i, j] - p[j]) x[i, j]        p = lam - mu
             s.t. min_experts[i] <= sum_j x[i, j] <= max_experts[i]
                  memory and deadline rows of client i, forbidden pairs

and the dual function ``L(lam, mu) = sum_i v_i(p) + lam @ expert_max_clients -
mu @ expert_min_clients`` is an upper bound on the optimum for *every* ``lam, mu >= 0``,
provided each ``v_i`` is solved exactly or replaced by a valid upper bound of it. The
solver reports the smallest ``L`` it saw as :attr:`Solution.bound`.

How each client's subproblem is solved (vectorised over clients; loops run over the small
dimensions only: candidate positions, experts, search levels, or chunks of clients):

1. **Count relaxation.** Drop the knapsack rows: the optimum takes the ``min_experts[i]``
   best experts plus every further positive one up to ``max_experts[i]``. When that choice
   also satisfies the client's knapsack rows it is optimal for the full subproblem (it is
   optimal for a relaxation and feasible). Without knapsack rows this is all there is.
   ``max_experts`` is first tightened to how many of the client's lightest experts fit
   together (an implied limit, so nothing is lost).
2. **Dominance filter** (one knapsack row). Order the client's experts by weight; an
   expert with ``c`` earlier experts of at least its reduced profit can be dropped, where
   ``c`` is ``max_experts`` (``min_experts`` for a non-positive profit), lowered to how many
   experts can sit beside it in the capacity: some optimal subset avoids it, by a swap
   argument (see :meth:`_Subproblems._candidates`). What is left are the *candidates*.
3. **Enumeration over the top-m candidates** (clients whose count choice breaks a knapsack
   row and ``max_experts[i] <= max_enum_experts``; first call only). Every subset of size
   ``min_experts..max_experts`` of the best ``m`` candidates by reduced profit ``r`` is
   checked: ``V`` is the best feasible one. *Exactness certificate*: any subset using a
   candidate outside the top ``m`` is worth at most ``r_(m+1) + P_(k-1)`` (the best outside
   profit plus the ``k - 1`` largest positive ones, ``k = max_experts[i]``); if ``V`` reaches
   it, ``V`` is the optimum.
4. **Branch and bound** for the other clients, breadth first over subsets built in
   decreasing ``r`` order, all clients of a chunk at once. A child's bound is its profit plus
   the smallest of (a) the best positive profits that may still follow (no more than the
   remaining slots, nor than the lightest later candidates fitting the remaining capacity)
   and (b) for each knapsack row, the weak-duality (LP) bound ``beta * room + top-s of
   (r - beta w)^+`` with a per-client ``beta`` chosen once by golden-section search. The
   incumbent starts from the previous prices' choice (still feasible: prices do not change
   client rows) or an LP-greedy choice. Nodes within ``bb_tol`` (times the spread of the
   desirability) of the incumbent are pruned and that tolerance is added to the client's
   bound; when a client's open nodes exceed ``node_budget`` its search stops and it
   contributes the largest bound among them. Either way the client adds a *valid upper
   bound* of its subproblem (equal to its optimum when the search completes), so ``L``
   stays a proven bound; ``info["exact_subproblems"]`` says whether every search completed.
5. **Integer dynamic programme** (one knapsack row with integer weights and capacities,
   e.g. OR-Library GAP, where a client may take many experts): the classic 0-1 knapsack DP
   over capacities, exact; used when the count row cannot bind and ``min_experts`` is 0.
6. **Otherwise** (many experts per client with real weights): a ratio-greedy choice, and as
   bound the smallest of the count relaxation and the LP (Dantzig) relaxation of each
   knapsack row on its own — each a relaxation, so a valid bound.

Prices follow the box-step cutting-plane method (a trust-region bundle method): the next
prices minimise the piecewise-linear model built from every evaluated ``L`` and its
subgradient, inside a box around the best prices so far (a small HiGHS LP). From 1,000
clients up, prices are first found on random samples of the clients (250-1,000, then 4,000,
with the expert rows scaled to the sample's share), each phase warm-starting the next; only
the last phase works on every client.

Primal side: each subproblem choice satisfies every client row but may overfill experts.
A price-guided repair first lets every over-full expert keep the holders that value it
most while the others re-solve their own knapsack with the full experts closed; then
:func:`fedalign.solvers.repair.repair` (reduced profit as priority) settles what is left,
including minimums, and :func:`~fedalign.solvers.repair.local_search` polishes each new
best assignment and the final one. The method is anytime: it stops at ``time_limit``
(before an evaluation that would not finish in time), after ``max_iter`` evaluations, or
when the gap falls to ``gap_tol``.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InfeasibleError
from ..problem import AlignmentProblem, capacity_tolerance
from .base import Budget, Result, Solver, register
from .repair import local_search, repair

__all__ = ["LagrangianSolver"]

_NEG = -np.inf
#: Rows x combinations evaluated at once in the enumeration (memory of one chunk).
_CHUNK_CELLS = 2_000_000
#: Largest number of subsets enumerated per client.
_MAX_COMBOS = 20_000
#: Clients searched together by the branch and bound, and its live-node limit (nodes x m).
_BB_CHUNK_CLIENTS = 4096
_BB_MAX_CELLS = 8_000_000
_BB_BUCKETS = np.array([6, 8, 10, 12, 14, 16, 20, 24, 32, 48, 64, 96])
#: From this many clients on, branch-and-bound chunks run on a few threads.
_PARALLEL_CLIENTS = 20_000
_WORKERS = min(2, os.cpu_count() or 1)
#: Largest sample of clients the price phases use by default.
_SAMPLE_MAX = 4000
#: Up to this many pairs, the problem's cheap infeasibility test runs first.
_CHECK_PAIRS = 2_000_000
#: Golden-section steps for a client's knapsack price (any price gives a valid bound).
_PRICE_STEPS = 7
#: Cutting planes kept by the box-step method.
_MAX_CUTS = 100
#: Largest capacity (in weight units) the integer dynamic programme accepts.
_DP_MAX_CAPACITY = 20_000
#: Largest (clients x capacities x experts) table of decisions the DP keeps for backtracking.
_DP_MAX_CELLS = 300_000_000


@lru_cache(maxsize=64)
def _combinations(m: int, k_lo: int, k_hi: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """All subsets of ``range(m)`` of size ``k_lo..k_hi``: (n_combos, m) 0/1 matrix, sizes."""
    rows: list[NDArray[np.float64]] = []
    sizes: list[int] = []
    for size in range(k_lo, k_hi + 1):
        for combo in itertools.combinations(range(m), size):
            row = np.zeros(m)
            row[list(combo)] = 1.0
            rows.append(row)
            sizes.append(size)
    mat = np.array(rows).reshape(len(rows), m)
    mat.flags.writeable = False
    return mat, np.array(sizes, dtype=np.int64)


def _n_combos(m: int, k_lo: int, k_hi: int) -> int:
    from math import comb

    return sum(comb(m, s) for s in range(k_lo, min(k_hi, m) + 1))


def _top_sorted(r: NDArray[np.float64], k: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per row, the indices and values of the ``k`` largest entries, in decreasing order."""
    n, e = r.shape
    k = min(k, e)
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
    if k <= 6:
        # k passes of argmax beat a partition on wide rows.
        work = r.copy()
        rows = np.arange(n)
        idx = np.empty((n, k), dtype=np.int64)
        val = np.empty((n, k))
        for p in range(k):
            j = work.argmax(axis=1)
            idx[:, p] = j
            val[:, p] = work[rows, j]
            work[rows, j] = _NEG
        return idx, val
    if k < e:
        part = np.argpartition(-r, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(e), (n, e))
    pv = np.take_along_axis(r, part, axis=1)
    order = np.argsort(-pv, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(pv, order, axis=1)


@dataclass
class _SubResult:
    """Solutions of every client's subproblem at one price vector."""

    x: NDArray[np.bool_]  # (n, E) the chosen experts (exact optimum where exact)
    value: float  # sum over clients of the optimum, or of a valid upper bound of it
    estimate: float  # sum over clients of the reduced profit of the chosen experts
    exact: bool  # every client solved exactly (then value == estimate)
    load: NDArray[np.int64]  # (E,) clients per expert in x


class _Subproblems:
    """The per-client knapsack subproblems of one problem, solved at any price vector."""

    def __init__(
        self,
        problem: AlignmentProblem,
        *,
        candidates: int,
        max_enum_experts: int,
        bb_tol: float = 1e-6,
        node_budget: int = 1 << 40,
    ) -> None:
        self.problem = problem
        #: Live (node x candidate) cells per client the search may hold before it stops
        #: and bounds what is left (see ``_bb_chunk``).
        self.node_budget = node_budget
        n, e = problem.shape
        fits = problem.fits
        self.dm = np.where(fits, problem.desirability, _NEG)
        n_fit = fits.sum(axis=1)
        self.kmax = np.minimum(problem.max_experts, n_fit).astype(np.int64)
        self.kmin = problem.min_experts.astype(np.int64)
        if (self.kmin > self.kmax).any():
            i = int(np.flatnonzero(self.kmin > self.kmax)[0])
            raise InfeasibleError(
                f"min_experts: client {problem.client_ids[i]!r} (position {i}) needs "
                f"{self.kmin[i]} experts but only {n_fit[i]} are allowed and fit it"
            )
        self.mem: NDArray[np.float64] | None = None
        self.mem_cap: NDArray[np.float64] | None = None
        if problem.expert_memory is not None and problem.client_memory is not None:
            self.mem = problem.expert_memory
            self.mem_cap = problem.client_memory + capacity_tolerance(problem.client_memory)
        self.time: NDArray[np.float64] | None = None
        self.time_cap: NDArray[np.float64] | None = None
        if problem.train_time is not None and problem.deadline is not None:
            self.time = problem.train_time
            self.time_cap = problem.deadline + capacity_tolerance(problem.deadline)
        # Implied count limit: no more experts than the lightest ones that fit together.
        for w, cap in ((self.mem, self.mem_cap), (self.time, self.time_cap)):
            if w is not None and cap is not None:
                self.kmax = np.minimum(self.kmax, _count_fitting(w, cap, fits, self.kmax))
        self.candidates = max(1, candidates)
        self.max_enum_experts = max_enum_experts
        self.kmax_all = int(self.kmax.max()) if n else 0
        spread = float(np.ptp(problem.desirability[fits])) if fits.any() else 0.0
        #: Per-client pruning tolerance of the branch and bound (added to its bound).
        self.eps = bb_tol * max(spread, 1e-12)
        self.dp_row = self._dp_row()
        self._weight_order: NDArray[np.int64] | None = None
        self._cap_need: NDArray[np.int8] | None = None
        self._prev: NDArray[np.bool_] | None = None  # the last choice, a warm start
        self._strict = True  # a client without any feasible subset proves infeasibility

    def _single_row(self) -> NDArray[np.float64] | None:
        """(n, E) or (E,) weights of the only knapsack row, or None (zero or two rows)."""
        if self.mem is not None and self.time is None:
            return self.mem
        if self.time is not None and self.mem is None:
            return self.time
        return None

    def _capacity_need(self) -> NDArray[np.int8]:
        """(E, n) in weight order: 1 + how many lightest experts fit beside each expert.

        Counted over all the client's fitting experts (the expert itself included), which
        can only overcount: a valid, slightly weaker limit. Computed once per problem.
        """
        if self._cap_need is not None:
            return self._cap_need
        w = self._single_row()
        cap = self.mem_cap if w is self.mem else self.time_cap
        assert w is not None and cap is not None and self._weight_order is not None
        fits = self.problem.fits
        n, e = fits.shape
        k = self.kmax_all
        order = self._weight_order
        if w.ndim == 1:
            w_sorted = np.broadcast_to(w[order[0]], (n, e))
            fit_sorted = fits[:, order[0]]
        else:
            w_sorted = np.take_along_axis(w, order, axis=1)
            fit_sorted = np.take_along_axis(fits, order, axis=1)
        # the k lightest fitting experts of each client, and their running sums
        light = np.where(fit_sorted, w_sorted, np.inf)
        if k < e:
            light = np.partition(light, k - 1, axis=1)[:, :k]
        light = np.sort(light, axis=1)
        with np.errstate(invalid="ignore"):
            csum = np.cumsum(light[:, :k], axis=1)
        need = np.empty((e, n), dtype=np.int8)  # small counts (at most max_experts + 1)
        for p in range(e):
            room = cap - w_sorted[:, p]
            need[p] = np.minimum(1 + (csum <= room[:, None]).sum(axis=1), 127)
        self._cap_need = need
        return need

    def _candidates(self, r: NDArray[np.float64], rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """``r[rows]`` with every expert that a k-dominance argument rules out set to -inf.

        With a single knapsack row, order each client's experts by weight (ties by position:
        a strict total order). Expert ``p`` is *dominated* by every earlier expert ``q`` in
        that order with ``r[q] >= r[p]``: swapping ``p`` for ``q`` keeps every client row
        (count equal, weight not larger) and loses nothing. If ``p`` has ``max_experts``
        dominators (``min_experts`` when ``r[p] <= 0``: a non-positive expert is only ever
        taken to reach the minimum, and dropping it otherwise loses nothing), some optimal
        subset avoids it: an optimal subset containing ``p`` misses one of its dominators, and
        swapping moves the subset strictly earlier in the order, so repeated swaps end in an
        optimal subset of undominated experts. Without a single row nothing is ruled out.

        Capacity sharpens this: a subset holding ``p`` has at most ``c_p`` experts, where
        ``c_p - 1`` is how many of the client's lightest experts fit beside ``p``, so ``p``
        needs only ``min(max_experts, c_p)`` dominators (same swap argument).
        """
        rr = r[rows]
        w = self._single_row()
        if w is None:
            return rr
        if self._weight_order is None:
            if w.ndim == 1:
                self._weight_order = np.argsort(w, kind="stable")[None, :]
            else:
                self._weight_order = np.argsort(w, axis=1, kind="stable")
        order = self._weight_order
        kmax = self.kmax[rows]
        kmin = self.kmin[rows]
        k = int(kmax.max()) if rows.size else 0
        if k == 0:
            return rr
        # Work position by position on contiguous (E, h) arrays.
        h = rows.size
        global_order = order.shape[0] == 1
        if global_order:
            r_t = np.ascontiguousarray(rr.T)  # expert-major; visited in weight order below
        else:
            r_t = np.ascontiguousarray(np.take_along_axis(rr, order[rows], axis=1).T)
        top = [np.full(h, _NEG) for _ in range(k)]  # the k largest r of the prefix, decreasing
        keep_t = np.empty(r_t.shape, dtype=bool)
        cap_need = self._capacity_need()
        cap_need = cap_need if h == self.problem.n_clients else cap_need[:, rows]
        kmax8 = kmax.astype(np.int8)
        kmin8 = np.minimum(kmin, 127).astype(np.int8)
        for p in range(r_t.shape[0]):
            col = int(order[0, p]) if global_order else p
            v = r_t[col]
            dominators = np.zeros(h, dtype=np.int8)
            for t in top:
                dominators += t >= v
            need_pos = np.minimum(kmax8, cap_need[p])
            need = np.where(v > 0, need_pos, np.minimum(kmin8, need_pos))
            keep_t[col] = (dominators < need) & (v > _NEG)
            # insert v into the sorted top-k: new[c] = max(top[c], min(top[c-1], v))
            prev = v
            for c in range(k):
                old_c = top[c]
                top[c] = np.maximum(old_c, prev)
                prev = np.minimum(old_c, prev)
        if global_order:
            out = np.where(keep_t.T, rr, _NEG)
        else:
            out = np.empty_like(rr)
            np.put_along_axis(out, order[rows], np.where(keep_t, r_t, _NEG).T, axis=1)
        return out

    # ------------------------------------------------------------------ helpers

    def _dp_row(self) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
        """Integer (n, E) weights and (n,) capacities for the DP, when it applies."""
        p = self.problem
        rows = []
        if self.mem is not None and p.client_memory is not None:
            rows.append((np.broadcast_to(self.mem, p.shape), p.client_memory))
        if self.time is not None and p.deadline is not None:
            rows.append((self.time, p.deadline))
        if len(rows) != 1 or (self.kmin > 0).any():
            return None
        w, cap = rows[0]
        if not (np.all(w == np.round(w)) and np.all(cap == np.round(cap))):
            return None
        if cap.size == 0 or cap.max() > _DP_MAX_CAPACITY:
            return None
        # Only when the count row cannot bind.
        if (self.problem.max_experts < self.problem.fits.sum(axis=1)).any():
            return None
        return np.asarray(w, dtype=np.int64), np.asarray(cap, dtype=np.int64)

    def _knapsack_ok(self, rows: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.bool_]:
        ok = np.ones(len(rows), dtype=bool)
        if self.mem is not None and self.mem_cap is not None:
            ok &= x.astype(np.float64) @ self.mem <= self.mem_cap[rows]
        if self.time is not None and self.time_cap is not None:
            ok &= np.where(x, self.time[rows], 0.0).sum(axis=1) <= self.time_cap[rows]
        return ok

    # ------------------------------------------------------------------ solve

    def solve(self, price: NDArray[np.float64]) -> _SubResult:
        """Every client's subproblem at reduced profits ``d - price``."""
        n, e = self.problem.shape
        r = self.dm - price[None, :]
        x = np.zeros((n, e), dtype=bool)
        values = np.zeros(n)
        rows_all = np.arange(n)

        # 1. the count relaxation for every client
        k = self.kmax_all
        idx, val = _top_sorted(r, k) if self.dp_row is None or k <= 6 else (None, None)
        hard: NDArray[np.int64]
        if idx is not None and val is not None:
            pos = np.arange(idx.shape[1])[None, :]
            take = (pos < self.kmax[:, None]) & np.isfinite(val)
            take &= (val > 0) | (pos < self.kmin[:, None])
            ri, pi = np.nonzero(take)
            x[ri, idx[ri, pi]] = True
            values = np.where(take, val, 0.0).sum(axis=1)
            if self.mem is None and self.time is None:
                return self._result(x, values, values, True)
            hard = np.flatnonzero(~self._knapsack_ok(rows_all, x))
        else:
            hard = rows_all
        if hard.size == 0:
            return self._result(x, values, values, True)
        x[hard] = False
        values[hard] = 0.0
        chosen = values.copy()

        small = self.kmax[hard] <= self.max_enum_experts
        enum_rows = hard[small]
        rest = hard[~small]
        all_exact = True
        if enum_rows.size:
            all_exact &= self._enumerate(r, enum_rows, x, values, chosen)
        if rest.size:
            cells = rest.size * e * (int(self.dp_row[1].max()) + 1) if self.dp_row else 0
            if self.dp_row is not None and cells <= _DP_MAX_CELLS:
                self._dynamic_programme(r, rest, x, values)
                chosen[rest] = values[rest]
            else:
                self._relaxation(r, rest, x, values, chosen)
                all_exact = False
        return self._result(x, values, chosen, all_exact)

    def best_sets(self, r: NDArray[np.float64], rows: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Each listed client's best subset at reduced profits ``r`` (rows of an (n, E) array).

        Used by the primal heuristic to re-solve a few clients with some experts closed
        (``r = -inf`` there); the warm start of :meth:`solve` is left untouched.
        """
        n, e = self.problem.shape
        saved, self._prev = self._prev, None
        self._strict = False
        try:
            x = np.zeros((n, e), dtype=bool)
            values = np.zeros(n)
            chosen = np.zeros(n)
            small = self.kmax[rows] <= self.max_enum_experts
            if small.any():
                self._enumerate(r, rows[small], x, values, chosen)
            rest = rows[~small]
            if rest.size:
                self._relaxation(r, rest, x, values, chosen)
        finally:
            self._prev = saved
            self._strict = True
        return x[rows]

    def _result(
        self,
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
        chosen: NDArray[np.float64],
        exact: bool,
    ) -> _SubResult:
        self._prev = x
        return _SubResult(
            x, float(values.sum()), float(chosen.sum()), exact, x.sum(axis=0).astype(np.int64)
        )

    def _enumerate(
        self,
        r: NDArray[np.float64],
        rows: NDArray[np.int64],
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
        chosen_values: NDArray[np.float64],
    ) -> bool:
        """Subproblems of small-k clients: top-m enumeration, then branch and bound.

        Returns False when some client was bounded rather than solved (node limit hit).
        """
        e = self.problem.n_experts
        cand_r = self._candidates(r, rows)
        if self._prev is not None:
            # Warm start: the previous prices' choice still satisfies the client's rows
            # (prices do not change them) and is usually near-optimal, so it is a strong
            # incumbent for the branch and bound; the enumeration is skipped.
            prev = self._prev[rows]
            x[rows] = prev
            values[rows] = np.where(prev, r[rows], 0.0).sum(axis=1)
            ok = self._branch_and_bound(cand_r, rows, x, values)
            chosen_values[rows] = np.where(x[rows], r[rows], 0.0).sum(axis=1)
            return ok
        m = min(self.candidates, e)
        kmax = self.kmax[rows]
        k_hi = int(kmax.max())
        k_lo = int(self.kmin[rows].min())
        idx, val = _top_sorted(cand_r, min(m + 1, e))
        if m < e:
            r_out = val[:, m]
            idx, val = idx[:, :m], val[:, :m]
        else:
            r_out = np.full(rows.size, _NEG)
        mm = idx.shape[1]
        combos, sizes = _combinations(mm, min(k_lo, mm), min(k_hi, mm))
        best_v = np.full(rows.size, _NEG)
        best_c = np.zeros(rows.size, dtype=np.int64)
        finite = np.isfinite(val)
        val0 = np.where(finite, val, 0.0)
        pad = (~finite).astype(np.float64)
        mem_c = None if self.mem is None else self.mem[idx]
        time_c = None if self.time is None else np.take_along_axis(self.time[rows], idx, 1)
        step = max(1, _CHUNK_CELLS // max(1, len(combos)))
        for s in range(0, rows.size, step):
            sl = slice(s, s + step)
            sub_rows = rows[sl]
            v = val0[sl] @ combos.T
            ok = (pad[sl] @ combos.T) == 0
            ok &= sizes[None, :] <= self.kmax[sub_rows][:, None]
            ok &= sizes[None, :] >= self.kmin[sub_rows][:, None]
            if mem_c is not None and self.mem_cap is not None:
                ok &= (mem_c[sl] @ combos.T) <= self.mem_cap[sub_rows][:, None]
            if time_c is not None and self.time_cap is not None:
                ok &= (time_c[sl] @ combos.T) <= self.time_cap[sub_rows][:, None]
            v = np.where(ok, v, _NEG)
            c = v.argmax(axis=1)
            best_c[sl] = c
            best_v[sl] = v[np.arange(len(c)), c]
        # Certificate: a subset with an expert outside the top m is worth at most
        # r_out + P_(k-1) (its best outside expert plus the k-1 best positive ones).
        pos_cum = np.concatenate(
            [np.zeros((rows.size, 1)), np.cumsum(np.maximum(val0, 0.0), axis=1)], axis=1
        )
        p_k1 = pos_cum[np.arange(rows.size), np.clip(kmax - 1, 0, mm)]
        outside = np.where(kmax > 0, r_out + p_k1, _NEG)
        has = np.isfinite(best_v)
        chosen = (combos[best_c] > 0) & has[:, None]
        ri, pi = np.nonzero(chosen)
        x[rows[ri], idx[ri, pi]] = True
        if self._prev is not None:
            # The previous prices' choice still satisfies the client's rows (prices do not
            # change them): a warm incumbent, usually near-optimal, which prunes hard.
            prev = self._prev[rows]
            prev_v = np.where(prev, r[rows], 0.0).sum(axis=1)
            warm = prev_v > best_v
            x[rows[warm]] = prev[warm]
            best_v = np.where(warm, prev_v, best_v)
            has |= warm
        certified = best_v >= outside
        chosen_values[rows] = np.where(has, best_v, 0.0)
        if certified.all():
            blocked = ~has & ~np.isfinite(outside)
            if blocked.any():
                self._raise_blocked(int(rows[blocked][0]))
            values[rows] = np.maximum(best_v, outside)
            return bool(certified.all())
        values[rows] = best_v
        open_pos = np.flatnonzero(~certified)
        ok = self._branch_and_bound(cand_r[open_pos], rows[open_pos], x, values)
        done = rows[open_pos]
        chosen_values[done] = np.where(x[done], r[done], 0.0).sum(axis=1)
        return ok

    def _raise_blocked(self, i: int) -> None:
        if not self._strict:
            return  # best_sets: a client with no feasible subset keeps an empty row
        raise InfeasibleError(
            f"client {self.problem.client_ids[i]!r} (position {i}): no set of "
            f"{self.kmin[i]}..{self.kmax[i]} allowed experts fits its memory and deadline"
        )

    def _branch_and_bound(
        self,
        cand_r: NDArray[np.float64],
        rows: NDArray[np.int64],
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
    ) -> bool:
        """Best subset of each client's candidates, by breadth-first branch and bound.

        ``x[rows]`` and ``values[rows]`` hold a feasible incumbent on entry (or value
        -inf). A node is a subset built in decreasing order of reduced profit; its bound
        is its profit plus the best positive profits that could still follow, so no
        pruned node hides a better subset. When a chunk's frontier exceeds the node
        limit, the search stops there and the client gets the valid bound
        ``max(incumbent, best live node bound)``; returns False in that case.
        """
        # Clients with similar numbers of candidates are searched together: the dense
        # node x candidate arrays are then sized by their own count, not the largest.
        n_cand = np.isfinite(cand_r).sum(axis=1)
        bucket = np.searchsorted(_BB_BUCKETS, n_cand)
        chunks = []
        for b in np.unique(bucket):
            pos = np.flatnonzero(bucket == b)
            for s in range(0, pos.size, _BB_CHUNK_CLIENTS):
                chunks.append(pos[s : s + _BB_CHUNK_CLIENTS])

        def run(sel: NDArray[np.int64]) -> bool:
            return self._bb_chunk(cand_r[sel], rows[sel], x, values)

        if len(chunks) > 1 and rows.size >= _PARALLEL_CLIENTS and _WORKERS > 1:
            # Chunks write disjoint rows, and numpy releases the GIL inside array
            # operations, so threads use the second core on large cohorts.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
                return all(list(pool.map(run, chunks)))
        return all([run(sel) for sel in chunks])

    @staticmethod
    def _greedy(
        val: NDArray[np.float64],
        w1: NDArray[np.float64] | None,
        c1: NDArray[np.float64] | None,
        w2: NDArray[np.float64] | None,
        c2: NDArray[np.float64] | None,
        kmax: NDArray[np.int64],
        kmin: NDArray[np.int64],
        lp_rows: list[Any],
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Per client, the greedy subset by ``r - beta.w`` (value -inf where none fits)."""
        h, m = val.shape
        key = np.where(np.isfinite(val), val, _NEG)
        for w, _, beta, _ in lp_rows:
            key = key - beta[:, None] * w
        order = np.argsort(-key, axis=1, kind="stable")
        hr = np.arange(h)
        count = np.zeros(h, dtype=np.int64)
        total = np.zeros(h)
        u1 = np.zeros(h)
        u2 = np.zeros(h)
        items = np.full((h, max(1, int(kmax.max()))), -1, dtype=np.int64)
        for p in range(m):
            j = order[:, p]
            v = val[hr, j]
            ok = np.isfinite(v) & (count < kmax) & ((v > 0) | (count < kmin))
            if w1 is not None and c1 is not None:
                ok &= u1 + w1[hr, j] <= c1
            if w2 is not None and c2 is not None:
                ok &= u2 + w2[hr, j] <= c2
            if not ok.any():
                continue
            r_ok = hr[ok]
            items[r_ok, count[ok]] = j[ok]
            total[ok] += v[ok]
            if w1 is not None:
                u1[ok] += w1[r_ok, j[ok]]
            if w2 is not None:
                u2[ok] += w2[r_ok, j[ok]]
            count += ok
        total = np.where(count >= kmin, total, _NEG)
        return total, items

    def _bb_chunk(
        self,
        cand_r: NDArray[np.float64],
        rows: NDArray[np.int64],
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
    ) -> bool:
        h = rows.size
        eps = self.eps
        n_cand = np.isfinite(cand_r).sum(axis=1)
        m = int(n_cand.max())
        idx, val = _top_sorted(cand_r, m)
        kmax = self.kmax[rows]
        kmin = self.kmin[rows]
        k_hi = int(kmax.max())
        w1 = c1 = w2 = c2 = None
        if self.mem is not None and self.mem_cap is not None:
            w1, c1 = self.mem[idx], self.mem_cap[rows]
        if self.time is not None and self.time_cap is not None:
            w2, c2 = np.take_along_axis(self.time[rows], idx, 1), self.time_cap[rows]
        val0 = np.where(np.isfinite(val), val, 0.0)
        cp = np.concatenate([np.zeros((h, 1)), np.cumsum(np.maximum(val0, 0.0), axis=1)], axis=1)
        cols = np.arange(m)
        # wmin[:, j] = lightest candidate after position j (inf past the end)
        wmin1 = None if w1 is None else _suffix_min_after(np.where(np.isfinite(val), w1, np.inf))
        wmin2 = None if w2 is None else _suffix_min_after(np.where(np.isfinite(val), w2, np.inf))
        # LP (weak duality) bounds on what can follow a node, one per knapsack row.
        lp_rows = []
        for w, c in ((w1, c1), (w2, c2)):
            if w is not None and c is not None:
                beta = _knapsack_price(val0, np.where(np.isfinite(val), w, 0.0), c, kmax)
                lp_rows.append((w, c, beta, _suffix_top_sums(val0 - beta[:, None] * w, k_hi)))
        best = values[rows].copy()
        best_items = np.full((h, k_hi), -1, dtype=np.int64)  # candidate positions
        improved = np.zeros(h, dtype=bool)
        # A greedy incumbent: experts by LP-reduced profit r - beta.w, each taken if it fits.
        # A strong incumbent from the start is what keeps the search small.
        g_val, g_items = self._greedy(val, w1, c1, w2, c2, kmax, kmin, lp_rows)
        better = g_val > best
        if better.any():
            best = np.where(better, g_val, best)
            best_items[better] = g_items[better]
            improved |= better
        # the frontier: one root per client
        cl = np.arange(h)
        last = np.full(h, -1)
        cnt = np.zeros(h, dtype=np.int64)
        prof = np.zeros(h)
        u1 = np.zeros(h)
        u2 = np.zeros(h)
        items = np.full((h, k_hi), -1, dtype=np.int64)
        upper = np.full(h, _NEG)  # valid bound of what the search left open
        node_ub = np.full(h, np.inf)  # bound of each live node's descendants
        exact = True
        while cl.size:
            if cl.size * m > min(_BB_MAX_CELLS, self.node_budget * h):
                # Too many live nodes: the clients holding the most stop here, each keeping
                # the largest bound of its open nodes (valid); the others go on.
                live = np.bincount(cl, minlength=h)
                heavy = live * m > self.node_budget
                if not heavy.any() or cl.size * m > _BB_MAX_CELLS:
                    heavy = live > 0
                stop = heavy[cl]
                np.maximum.at(upper, cl[stop], node_ub[stop])
                exact = False
                keep = ~stop
                cl, last, cnt, prof = cl[keep], last[keep], cnt[keep], prof[keep]
                u1, u2, items, node_ub = u1[keep], u2[keep], items[keep], node_ub[keep]
                if not cl.size:
                    break
            vv = val[cl]
            slots = (kmax[cl] - cnt - 1)[:, None]
            # Items that could follow child j: no more than the slots left, nor than the
            # remaining capacity holds of the lightest later candidate.
            if w1 is not None and c1 is not None and wmin1 is not None:
                room = c1[cl][:, None] - u1[:, None] - w1[cl]
                slots = np.minimum(slots, _fit_count(room, wmin1[cl]))
            if w2 is not None and c2 is not None and wmin2 is not None:
                room = c2[cl][:, None] - u2[:, None] - w2[cl]
                slots = np.minimum(slots, _fit_count(room, wmin2[cl]))
            slots = np.maximum(slots, 0)
            after = np.minimum(cols[None, :] + 1 + slots, m)
            cpc = cp[cl]
            completion = np.take_along_axis(cpc, after, 1) - cpc[:, 1 : m + 1]
            slots_b = np.broadcast_to(np.minimum(slots, k_hi), (cl.size, m))
            for w, c, beta, table in lp_rows:
                # for any beta >= 0: completion <= beta * room + top-s of (r - beta w)^+
                room = c[cl][:, None] - (u1 if w is w1 else u2)[:, None] - w[cl]
                lp = beta[cl][:, None] * np.maximum(room, 0.0) + table[
                    cl[:, None], cols[None, :] + 1, slots_b
                ]
                completion = np.minimum(completion, lp)
            child_p = prof[:, None] + vv
            bound = child_p + completion
            ok = (cols[None, :] > last[:, None]) & np.isfinite(vv) & (cnt < kmax[cl])[:, None]
            ok &= (vv > 0) | (cnt < kmin[cl])[:, None]
            ok &= bound > best[cl][:, None] + eps
            if w1 is not None and c1 is not None:
                ok &= u1[:, None] + w1[cl] <= c1[cl][:, None]
            if w2 is not None and c2 is not None:
                ok &= u2[:, None] + w2[cl] <= c2[cl][:, None]
            ni, j = np.nonzero(ok)
            if ni.size == 0:
                break
            c_cl = cl[ni]
            c_cnt = cnt[ni] + 1
            c_prof = child_p[ni, j]
            c_bound = bound[ni, j]
            c_u1 = u1[ni] + (w1[c_cl, j] if w1 is not None else 0.0)
            c_u2 = u2[ni] + (w2[c_cl, j] if w2 is not None else 0.0)
            c_items = items[ni]
            c_items[np.arange(ni.size), cnt[ni]] = j
            complete = c_cnt >= kmin[c_cl]
            if complete.any():
                cand_v = np.where(complete, c_prof, _NEG)
                top = np.full(h, _NEG)
                np.maximum.at(top, c_cl, cand_v)
                better = top > best
                if better.any():
                    winner = complete & better[c_cl] & (cand_v == top[c_cl])
                    wi = np.flatnonzero(winner)
                    # one winner per client (the last written wins; all are equal)
                    best_items[c_cl[wi]] = c_items[wi]
                    best[better] = top[better]
                    improved |= better
            live = (c_cnt < kmax[c_cl]) & (
                c_bound > best[c_cl] + eps
            )
            cl, last, cnt, prof = c_cl[live], j[live], c_cnt[live], c_prof[live]
            u1, u2, items = c_u1[live], c_u2[live], c_items[live]
            node_ub = c_bound[live]
        if improved.any():
            ri = np.flatnonzero(improved)
            x[rows[ri]] = False
            sel = best_items[ri]
            rr, cc = np.nonzero(sel >= 0)
            x[rows[ri[rr]], idx[ri[rr], sel[rr, cc]]] = True
        if not np.isfinite(np.maximum(best, upper)).all():
            self._raise_blocked(int(rows[~np.isfinite(np.maximum(best, upper))][0]))
        # Nodes within eps of the incumbent were pruned: the optimum is at most best + eps.
        values[rows] = np.maximum(best + eps, upper)
        return exact

    def _dynamic_programme(
        self,
        r: NDArray[np.float64],
        rows: NDArray[np.int64],
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
    ) -> None:
        """Exact 0-1 knapsack by DP over integer capacities (loop over experts)."""
        assert self.dp_row is not None
        w_all, cap_all = self.dp_row
        w = w_all[rows]
        cap = cap_all[rows]
        h, e = w.shape
        c_max = int(cap.max())
        grid = np.arange(c_max + 1)[None, :]
        # dp[i, c] = best value of a subset of the experts seen so far with weight <= c.
        dp = np.zeros((h, c_max + 1))
        took = np.zeros((e, h, c_max + 1), dtype=bool)
        rr = r[rows]
        hrange = np.arange(h)[:, None]
        for j in range(e):
            prof = rr[:, j]
            useful = prof > 0
            if not useful.any():
                continue
            src = grid - w[:, j][:, None]
            cand = np.where(src >= 0, dp[hrange, np.maximum(src, 0)], _NEG) + prof[:, None]
            better = (cand > dp) & useful[:, None]
            took[j] = better
            dp = np.where(better, cand, dp)
        c = cap.copy()
        hr = np.arange(h)
        for j in range(e - 1, -1, -1):
            t = took[j, hr, c]
            x[rows[t], j] = True
            c = c - np.where(t, w[:, j], 0)
        values[rows] = dp[hr, cap]

    def _relaxation(
        self,
        r: NDArray[np.float64],
        rows: NDArray[np.int64],
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
        chosen_values: NDArray[np.float64],
    ) -> None:
        """Ratio-greedy choice and a valid bound: min(count bound, Dantzig bound per row)."""
        rr = r[rows]
        h, e = rr.shape
        kmax = self.kmax[rows]
        kmin = self.kmin[rows]
        srt = -np.sort(-rr, axis=1)
        pos = np.arange(e)[None, :]
        take = (pos < kmax[:, None]) & np.isfinite(srt) & ((srt > 0) | (pos < kmin[:, None]))
        bound = np.where(take, srt, 0.0).sum(axis=1)
        caps: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
        if self.mem is not None and self.mem_cap is not None:
            caps.append((np.broadcast_to(self.mem, rr.shape), self.mem_cap[rows]))
        if self.time is not None and self.time_cap is not None:
            caps.append((self.time[rows], self.time_cap[rows]))
        norm_w = np.zeros_like(rr)
        for w, cap in caps:
            bound = np.minimum(bound, _dantzig(rr, w, cap))
            norm_w += w / np.maximum(cap, 1e-12)[:, None]
        values[rows] = bound
        # Primal choice: best profit per unit of (normalised) weight, forced items first.
        prof = np.where(np.isfinite(rr), rr, _NEG)
        unweighted = np.where(prof > 0, np.inf, np.where(prof < 0, _NEG, 0.0))
        ratio = np.where(norm_w > 0, prof / np.maximum(norm_w, 1e-300), unweighted)
        ratio = np.where(np.isfinite(rr), ratio, _NEG)
        order = np.argsort(-ratio, axis=1, kind="stable")
        count = np.zeros(h, dtype=np.int64)
        used = [np.zeros(h) for _ in caps]
        hr = np.arange(h)
        for p in range(e):
            j = order[:, p]
            v = prof[hr, j]
            ok = np.isfinite(v) & (count < kmax) & ((v > 0) | (count < kmin))
            for (w, cap), u in zip(caps, used, strict=True):
                ok &= u + w[hr, j] <= cap
            for (w, _), u in zip(caps, used, strict=True):
                u += np.where(ok, w[hr, j], 0.0)
            count += ok
            x[rows[ok], j[ok]] = True
        chosen_values[rows] = np.where(x[rows], rr, 0.0).sum(axis=1)


def _count_fitting(
    w: NDArray[np.float64],
    cap: NDArray[np.float64],
    fits: NDArray[np.bool_],
    kmax: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Per client, how many of its lightest fitting experts fit together (at most kmax)."""
    n = fits.shape[0]
    k = int(kmax.max()) if n else 0
    if k == 0:
        return np.zeros(n, dtype=np.int64)
    ww = np.where(fits, np.broadcast_to(w, fits.shape), np.inf)
    if k < ww.shape[1]:
        ww = np.partition(ww, k - 1, axis=1)[:, :k]
    ww = np.sort(ww, axis=1)[:, :k]
    with np.errstate(invalid="ignore"):
        csum = np.cumsum(ww, axis=1)
    return (csum <= cap[:, None]).sum(axis=1).astype(np.int64)


def _knapsack_price(
    val: NDArray[np.float64], w: NDArray[np.float64], cap: NDArray[np.float64], k: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Per row, a price ``beta >= 0`` of the knapsack row making its LP bound small.

    Minimises ``f(beta) = beta * cap + (sum of the k largest of (val - beta w)^+)`` (convex)
    by golden-section search. Any ``beta >= 0`` gives a valid bound; a good one prunes more.
    """
    h, m = val.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((w > 0) & (val > 0), val / np.where(w > 0, w, 1.0), 0.0)
    hi = ratio.max(axis=1) if m else np.zeros(h)
    lo = np.zeros(h)
    kk = np.clip(k, 0, m)
    k_hi = int(kk.max()) if h else 0
    take = np.arange(k_hi)[None, :] < kk[:, None]

    def f(beta: NDArray[np.float64]) -> NDArray[np.float64]:
        # sum of the kk largest positive gains, by k_hi passes of max (k is small)
        gain = np.maximum(val - beta[:, None] * w, 0.0)
        total = beta * cap
        rows = np.arange(h)
        for p in range(k_hi):
            j = gain.argmax(axis=1)
            total = total + np.where(take[:, p], gain[rows, j], 0.0)
            gain[rows, j] = 0.0
        return total

    g = 0.381966
    a, b = lo + g * (hi - lo), hi - g * (hi - lo)
    fa_, fb = f(a), f(b)
    for _ in range(_PRICE_STEPS):
        left = fa_ <= fb
        hi = np.where(left, b, hi)
        lo = np.where(left, lo, a)
        a_new = lo + g * (hi - lo)
        b_new = hi - g * (hi - lo)
        a, b = a_new, b_new
        fa_, fb = f(a), f(b)
    return np.where(fa_ <= fb, a, b)


def _suffix_top_sums(gain: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    """``out[i, p, s]`` = sum of the ``s`` largest positive ``gain[i, p:]`` (s = 0..k)."""
    h, m = gain.shape
    out = np.zeros((h, m + 1, k + 1))
    top = np.zeros((h, k))  # the k largest positive values of the suffix, decreasing
    for p in range(m - 1, -1, -1):
        v = np.maximum(gain[:, p], 0.0)[:, None]
        # insert v into the sorted top-k: new[c] = max(top[c], min(top[c-1], v))
        prev = np.concatenate([np.full((h, 1), np.inf), top[:, :-1]], axis=1)
        top = np.maximum(top, np.minimum(prev, v))
        out[:, p, 1:] = np.cumsum(top, axis=1)
    return out


def _suffix_min_after(w: NDArray[np.float64]) -> NDArray[np.float64]:
    """``out[:, j] = min(w[:, j+1:])`` per row (``inf`` for the last column)."""
    rev = np.minimum.accumulate(w[:, ::-1], axis=1)[:, ::-1]
    return np.concatenate([rev[:, 1:], np.full((w.shape[0], 1), np.inf)], axis=1)


def _fit_count(room: NDArray[np.float64], lightest: NDArray[np.float64]) -> NDArray[np.int64]:
    """How many items of weight >= ``lightest`` fit in ``room`` (a large number if weightless)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(lightest > 0, np.floor(np.maximum(room, 0.0) / lightest), 1 << 30)
    return np.minimum(q, 1 << 30).astype(np.int64)


def _dantzig(
    r: NDArray[np.float64], w: NDArray[np.float64], cap: NDArray[np.float64]
) -> NDArray[np.float64]:
    """LP bound of the 0-1 knapsack per row (positive profits only, items sorted by ratio)."""
    prof = np.where(np.isfinite(r) & (r > 0), r, 0.0)
    free = prof > 0
    zero_w = free & (w <= 0)
    base = np.where(zero_w, prof, 0.0).sum(axis=1)
    ratio = np.where(free & ~zero_w, prof / np.where(w > 0, w, 1.0), 0.0)
    order = np.argsort(-ratio, axis=1, kind="stable")
    p_s = np.take_along_axis(np.where(zero_w, 0.0, prof), order, 1)
    w_s = np.take_along_axis(np.where(free & ~zero_w, w, 0.0), order, 1)
    cum_w = np.cumsum(w_s, axis=1)
    prev = cum_w - w_s
    frac = np.clip((cap[:, None] - prev) / np.where(w_s > 0, w_s, 1.0), 0.0, 1.0)
    frac = np.where(w_s > 0, frac, 0.0)
    return base + (p_s * frac).sum(axis=1)


@dataclass
class _State:
    """Where a run of the dual method stands (prices, incumbent, bound, history)."""

    lam: NDArray[np.float64]
    mu: NDArray[np.float64]
    best_x: NDArray[np.bool_] | None = None
    best_obj: float = _NEG
    bound: float = np.inf
    exact: bool = True
    iterations: int = 0
    repair_time: float = 0.0
    last_error: InfeasibleError | None = None
    eval_seconds: float = 0.0  # the latest evaluation of the dual function


def _dual_ascent(
    problem: AlignmentProblem,
    state: _State,
    *,
    budget: Budget,
    stop_at: float,
    rng: np.random.Generator,
    max_iter: int,
    gap_tol: float,
    box: float,
    repair_share: float,
    sub_options: dict[str, Any],
    primal: bool = True,
    caps: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
    bounds: list[float] | None = None,
    objectives: list[float] | None = None,
) -> None:
    """Minimise the dual function by the box-step cutting-plane method; updates ``state``.

    Every evaluation of ``L`` at prices ``(lam, mu)`` solves every client's subproblem
    exactly (or bounds it) and yields a valid bound and a subgradient
    ``(cap_hi - load, load - cap_lo)``. The next prices minimise the cutting-plane model
    ``max_k L_k + g_k . (z - z_k)`` inside a box of half-width ``delta`` around the best
    prices so far (a small LP, HiGHS). A step that achieves at least a tenth of the
    predicted decrease moves the centre (and widens the box when it achieves half);
    otherwise the cut is kept and the box narrows. With ``primal``, each subproblem
    choice is repaired into a feasible assignment (within ``repair_share`` of the time),
    and each new best one polished by a short local search. ``caps`` overrides the
    expert rows (fractional ones, for a sample of the clients; then ``primal`` is False).
    """
    from scipy.optimize import linprog

    n, e = problem.shape
    sub = _Subproblems(problem, **sub_options)
    if caps is None:
        cap_hi = problem.expert_max_clients.astype(np.float64)
        cap_lo = problem.expert_min_clients.astype(np.float64)
    else:
        cap_hi, cap_lo = caps
    fit_count = problem.fits.sum(axis=0)
    # Only rows that can bind get a price: lam_j for caps below the clients that fit j,
    # mu_j for positive minimums. The others stay at 0, their optimal value.
    hi_rows = np.flatnonzero(cap_hi < np.minimum(fit_count, problem.max_experts.sum()))
    lo_rows = np.flatnonzero(cap_lo > 0)
    n_hi = hi_rows.size
    d = problem.desirability
    integral = bool(np.all(d == np.round(d)))
    spread = float(np.ptp(d[problem.fits])) if problem.fits.any() else 1.0
    spread = max(spread, 1e-9)
    delta = box * spread

    def prices(z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lam = np.zeros(e)
        mu = np.zeros(e)
        lam[hi_rows] = z[:n_hi]
        mu[lo_rows] = z[n_hi:]
        return lam, mu

    def evaluate(z: NDArray[np.float64]) -> tuple[float, NDArray[np.float64], _SubResult]:
        lam, mu = prices(z)
        res = sub.solve(lam - mu)
        value = res.value + float(lam @ cap_hi) - float(mu @ cap_lo)
        grad = np.concatenate([(cap_hi - res.load)[hi_rows], (res.load - cap_lo)[lo_rows]])
        return value, grad, res

    center = np.concatenate([state.lam[hi_rows], state.mu[lo_rows]])
    cuts_g: list[NDArray[np.float64]] = []
    cuts_c: list[float] = []  # L_k - g_k . z_k
    value_c = np.inf
    predicted = 0.0
    z = center
    for it in range(max_iter):
        state.iterations += 1
        t_eval = time.perf_counter()
        value, grad, res = evaluate(z)
        eval_seconds = time.perf_counter() - t_eval
        state.eval_seconds = eval_seconds
        lam_z, mu_z = prices(z)
        res_price = lam_z - mu_z
        proven = value
        if integral and res.exact:
            # integer desirability: the optimum is an integer too
            proven = float(np.floor(value + 1e-9 * max(1.0, abs(value))))
        if proven < state.bound:
            state.bound = proven
            state.exact = res.exact
        cuts_g.append(grad)
        cuts_c.append(value - float(grad @ z))
        if len(cuts_g) > _MAX_CUTS:
            cuts_g.pop(0)
            cuts_c.pop(0)
        if it == 0:
            center, value_c = z, value
        else:
            actual = value_c - value
            if actual >= 0.1 * predicted:
                if actual >= 0.5 * predicted:
                    delta = min(2.0 * delta, spread)
                center, value_c = z, value
            else:
                delta *= 0.5

        load = res.load
        feasible_rows = bool(
            (load <= problem.expert_max_clients).all() and (load >= problem.expert_min_clients).all()
        )
        cand: NDArray[np.bool_] | None = None
        if primal and feasible_rows:
            cand = res.x
        elif primal and (
            state.best_x is None or state.repair_time <= repair_share * budget.elapsed()
        ):
            t0 = time.perf_counter()
            try:
                # Reduced profits as priority: congested experts are dropped and filled
                # last, and the fill only adds pairs worth their expert's price.
                guided = _price_repair(problem, sub, res.x, res_price)
                cand = repair(problem, guided, fill=True, priority=d - res_price)
            except InfeasibleError:
                try:  # tight equality rows (e.g. GAP): the plain desirability order may pass
                    cand = repair(problem, res.x, fill=True)
                except InfeasibleError as exc:
                    state.last_error = exc
            state.repair_time += time.perf_counter() - t0
        if cand is not None:
            obj = problem.objective(cand)
            if obj > state.best_obj:
                t0 = time.perf_counter()
                # a short polish: a quarter of what is left before stop_at
                share = 0.25 * max(0.0, stop_at - budget.elapsed())
                cand = local_search(problem, cand, budget=share)
                state.repair_time += time.perf_counter() - t0
                state.best_obj, state.best_x = problem.objective(cand), cand
        if bounds is not None and objectives is not None:
            bounds.append(state.bound)
            objectives.append(state.best_obj)

        tol = max(1.0, abs(state.bound))
        if primal and state.best_x is not None and state.bound - state.best_obj <= gap_tol * tol:
            break
        # Stop when the next evaluation would not finish in time.
        if budget.elapsed() + eval_seconds >= stop_at or center.size == 0:
            break
        # next prices: minimise the cutting-plane model inside the box around the centre
        k = len(cuts_g)
        a_ub = np.hstack([np.array(cuts_g), -np.ones((k, 1))])
        b_ub = -np.array(cuts_c)
        lower = np.append(np.maximum(0.0, center - delta), -np.inf)
        upper = np.append(center + delta, np.inf)
        cost = np.zeros(center.size + 1)
        cost[-1] = 1.0
        lp = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=np.column_stack([lower, upper]), method="highs")
        if lp.status != 0 or lp.x is None:
            break
        z = np.asarray(lp.x[:-1])
        predicted = value_c - float(lp.x[-1])
        if predicted <= 1e-9 * tol or delta <= 1e-9 * spread:
            break  # the model cannot promise a lower bound: converged
    state.lam, state.mu = prices(center)


def _price_repair(
    problem: AlignmentProblem,
    sub: _Subproblems,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    rounds: int = 4,
) -> NDArray[np.bool_]:
    """Make the subproblem choice respect the expert maximums by re-solving, not trimming.

    Each round, every over-full expert keeps the holders that value it most (reduced
    profit) and drops the rest; each client that lost an expert re-solves its own knapsack
    with the experts that are now full closed to it, so it moves to its best remaining
    subset instead of merely losing a member. A few rounds settle most conflicts; what is
    left (and every minimum) is for :func:`repair`.
    """
    x = x.copy()
    cap = problem.expert_max_clients
    r = problem.desirability - price[None, :]
    for _ in range(rounds):
        load = x.sum(axis=0)
        over = np.flatnonzero(load > cap)
        if over.size == 0:
            break
        before = x.copy()
        moved = np.zeros(problem.n_clients, dtype=bool)
        for j in over:
            holders = np.flatnonzero(x[:, j])
            excess = int(load[j] - cap[j])
            drop = holders[np.argsort(r[holders, j], kind="stable")[:excess]]
            x[drop, j] = False
            moved[drop] = True
        rows = np.flatnonzero(moved)
        load = x.sum(axis=0)
        full = load >= cap
        r_rows = np.where(full[None, :] & ~x[rows], _NEG, sub.dm[rows] - price[None, :])
        r_mod = np.empty_like(sub.dm)  # only the moved rows are read
        r_mod[rows] = r_rows
        new = sub.best_sets(r_mod, rows)
        # A client left below its minimum keeps what it had (the final repair settles it).
        short = new.sum(axis=1) < problem.min_experts[rows]
        new[short] = before[rows[short]]
        x[rows] = new
        _cover_minimums(problem, sub, x, price, r)
    return x


def _cover_minimums(
    problem: AlignmentProblem,
    sub: _Subproblems,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    r: NDArray[np.float64],
) -> None:
    """Experts below their minimum each pull in the clients that value them most (in place).

    Each such client re-solves its knapsack with the expert forced in (a large profit) and
    the full experts closed; experts it then gives up may fall short in turn, which the
    next round of :func:`_price_repair` handles (an ejection chain, one link per round).
    """
    emin = problem.expert_min_clients
    load = x.sum(axis=0)
    under = np.flatnonzero(load < emin)
    if under.size == 0:
        return
    cap = problem.expert_max_clients
    force = np.zeros(problem.shape, dtype=bool)
    for j in under:
        cand = np.flatnonzero(problem.fits[:, j] & ~x[:, j] & ~force.any(axis=1))
        if cand.size == 0:
            continue
        need = int(emin[j] - load[j])
        force[cand[np.argsort(-r[cand, j], kind="stable")[:need]], j] = True
    rows = np.flatnonzero(force.any(axis=1))
    if rows.size == 0:
        return
    full = load >= cap
    big = 1e6 * max(1.0, float(np.abs(sub.dm[np.isfinite(sub.dm)]).max(initial=1.0)))
    r_rows = np.where(full[None, :] & ~x[rows], _NEG, sub.dm[rows] - price[None, :])
    r_rows = np.where(force[rows], big, r_rows)
    r_mod = np.empty_like(sub.dm)
    r_mod[rows] = r_rows
    new = sub.best_sets(r_mod, rows)
    ok = (new & force[rows]).sum(axis=1) == force[rows].sum(axis=1)
    ok &= new.sum(axis=1) >= problem.min_experts[rows]
    x[rows[ok]] = new[ok]


def _sample_stages(n: int, largest: int | None) -> list[int]:
    """Sample sizes of the price phases: 250-1,000 clients, then x4 up to ``largest``."""
    if largest is None:
        largest = _SAMPLE_MAX
    if largest <= 0 or n < 1000:
        return []
    size = min(max(250, n // 4), 1000, largest)
    stages = []
    while size <= largest and size <= n // 4:
        stages.append(size)
        size *= 4
    return stages or [min(largest, n // 4)]


def _sample_problem(
    problem: AlignmentProblem, size: int, rng: np.random.Generator
) -> tuple[AlignmentProblem, NDArray[np.float64], NDArray[np.float64]]:
    """The problem restricted to ``size`` random clients, and its expert rows scaled.

    Returns the sample (its own expert rows left loose: only its client rows are used)
    and the fractional expert maximums and minimums that match its share of the clients.
    """
    n = problem.n_clients
    rows = np.sort(rng.choice(n, size=size, replace=False))
    share = size / n
    fields: dict[str, Any] = {
        "max_experts": problem.max_experts[rows],
        "min_experts": problem.min_experts[rows],
        "allowed": problem.allowed[rows],
    }
    if problem.expert_memory is not None and problem.client_memory is not None:
        fields["expert_memory"] = problem.expert_memory
        fields["client_memory"] = problem.client_memory[rows]
    if problem.train_time is not None and problem.deadline is not None:
        fields["train_time"] = problem.train_time[rows]
        fields["deadline"] = problem.deadline[rows]
    sample = AlignmentProblem(problem.desirability[rows], **fields)
    hi = problem.expert_max_clients * share
    lo = problem.expert_min_clients * share
    return sample, hi.astype(np.float64), lo.astype(np.float64)


@register
class LagrangianSolver(Solver):
    """Lagrangian relaxation of the per-expert rows with repair; reports the dual bound.

    Options (keyword arguments of :func:`fedalign.solve`)
    -----------------------------------------------------
    max_iter : int, default 200
        Price updates at most (on the full problem).
    gap_tol : float, default 1e-4
        Stop when ``(bound - objective) / max(1, |bound|)`` falls to this.
    box : float, default 0.1
        Initial half-width of the box-step trust region, as a share of the spread of the
        desirability (prices live on that scale).
    repair_share : float, default 0.5
        Largest share of the elapsed time spent repairing subproblem choices.
    local_search : bool, default True
        Polish the best assignment with :func:`fedalign.solvers.repair.local_search`.
    candidates : int, default 8
        Experts per client enumerated first (``m`` of the module docstring).
    max_enum_experts : int, default 6
        Clients with a larger ``max_experts`` use the DP or the relaxation bound instead.
    sample_clients : int or None, default None
        Largest random sample of clients the price phases use. From 1,000 clients up,
        prices are first found on a sample of a quarter of the clients (250 to 1,000),
        then on samples four times larger up to this size (expert rows scaled by each
        sample's share; each phase warm-starts the next), then refined on all clients.
        ``None``: 4,000; ``0``: no sample phases.
    sample_share : float, default 0.5
        Share of the time limit given to the sample phases together.
    bb_tol : float, default 1e-4
        The branch and bound prunes subsets within ``bb_tol`` times the spread of the
        desirability of a client's incumbent, and adds that much to the client's bound:
        the bound stays valid (at most ``n_clients * bb_tol * spread`` looser) and flat
        subproblems stay cheap. 0 makes every subproblem exact.
    node_budget : int, default 800
        Live search cells (nodes x candidates) per client the branch and bound may hold;
        past it the search stops and each open client is bounded by its best open node's
        LP bound (valid, looser; ``info["exact_subproblems"]`` turns False).

    Notes
    -----
    ``Solution.info`` holds ``iterations``, ``exact_subproblems`` (False when the final
    bound came from bounded rather than solved subproblems: still valid, only looser),
    ``bound_history``, ``objective_history`` and ``repair_seconds``.
    """

    name = "lagrangian"
    exact = False

    def _solve(  # type: ignore[override]  # options are keyword parameters (base.Solver)
        self,
        problem: AlignmentProblem,
        *,
        budget: Budget,
        rng: np.random.Generator,
        max_iter: int = 200,
        gap_tol: float = 1e-4,
        box: float = 0.1,
        repair_share: float = 0.5,
        local_search: bool = True,
        candidates: int = 8,
        max_enum_experts: int = 6,
        sample_clients: int | None = None,
        sample_share: float = 0.5,
        bb_tol: float = 1e-4,
        node_budget: int = 800,
    ) -> Result:
        _check_options(
            max_iter=max_iter,
            gap_tol=gap_tol,
            box=box,
            repair_share=repair_share,
            candidates=candidates,
            max_enum_experts=max_enum_experts,
            sample_clients=sample_clients,
            sample_share=sample_share,
            bb_tol=bb_tol,
            node_budget=node_budget,
        )
        n, e = problem.shape
        if n * e <= _CHECK_PAIRS:
            # Cheap necessary conditions first (at scale they cost a sort of every row, so
            # there they only explain a failure).
            reason = problem.infeasibility_reason()
            if reason is not None:
                raise InfeasibleError(reason)
        sub_options: dict[str, Any] = {
            "candidates": candidates,
            "max_enum_experts": max_enum_experts,
            "bb_tol": bb_tol,
            "node_budget": node_budget,
        }
        common = {
            "rng": rng,
            "gap_tol": gap_tol,
            "repair_share": repair_share,
            "sub_options": sub_options,
        }
        state = _State(lam=np.zeros(e), mu=np.zeros(e))
        full_box = box
        horizon = budget.remaining(default=np.inf)
        stages = _sample_stages(n, sample_clients)
        pre = state
        last_size = 0
        for k, size in enumerate(stages):
            # Prices on growing samples, each stage warm-started from the last.
            share = sample_share * horizon / len(stages)
            if k > 0 and np.isfinite(horizon):
                # Keep room for the work on every client: one evaluation of the dual
                # function (predicted from this sample's cost per client), its repair and
                # a polish take about three and a half evaluations.
                full = 3.5 * pre.eval_seconds * n / last_size
                share = min(share, budget.remaining() - full)
                if share <= 0:
                    break
            sample, hi, lo = _sample_problem(problem, size, rng)
            pre = _State(lam=state.lam, mu=state.mu)
            _dual_ascent(
                sample, pre, budget=budget, stop_at=budget.elapsed() + share,
                max_iter=max_iter, box=full_box, primal=False, caps=(hi, lo),
                **common,  # type: ignore[arg-type]
            )
            state.lam, state.mu = pre.lam, pre.mu
            full_box = box / 4.0
            last_size = size
        bounds: list[float] = []
        objectives: list[float] = []
        # Leave time for the local search at the end.
        stop = budget.elapsed() + 0.85 * budget.remaining(default=np.inf)
        _dual_ascent(
            problem, state, budget=budget, stop_at=stop, max_iter=max_iter, box=full_box,
            bounds=bounds, objectives=objectives, **common,  # type: ignore[arg-type]
        )
        if state.best_x is None:
            reason = problem.infeasibility_reason()
            if reason is not None:
                raise InfeasibleError(reason)
            if state.last_error is not None:
                raise InfeasibleError(
                    f"lagrangian: repair found no feasible assignment ({state.last_error})"
                )
            raise InfeasibleError("lagrangian: no feasible assignment found in the time limit")
        best_x, best_obj = state.best_x, state.best_obj
        if local_search:
            best_x = _polish(problem, best_x, budget)
            best_obj = problem.objective(best_x)
        tol = 1e-9 * max(1.0, abs(state.bound))
        optimal = state.exact and state.bound - best_obj <= tol
        return Result(
            assignment=best_x,
            bound=state.bound,
            optimal=bool(optimal),
            info={
                "iterations": state.iterations,
                "exact_subproblems": state.exact,
                "bound_history": bounds,
                "objective_history": objectives,
                "repair_seconds": state.repair_time,
            },
        )


def _polish(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> NDArray[np.bool_]:
    remaining = budget.remaining(default=float("inf"))
    if remaining <= 0:
        return x
    out = local_search(problem, x, budget=None if remaining == float("inf") else remaining)
    return out if problem.objective(out) >= problem.objective(x) else x


def _check_options(**opts: Any) -> None:
    if opts["sample_clients"] is not None:
        v = opts["sample_clients"]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"sample_clients: expected an int >= 0 or None, got {v!r}")
    for name in ("max_iter", "candidates", "max_enum_experts", "node_budget"):
        v = opts[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    for name in ("gap_tol", "box", "repair_share", "sample_share", "bb_tol"):
        v = opts[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise ValueError(f"{name}: expected a finite float >= 0, got {v!r}")
    if not 0 <= opts["sample_share"] <= 1:
        raise ValueError(f"sample_share: expected a value in [0, 1], got {opts['sample_share']!r}")
    if opts["box"] <= 0:
        raise ValueError(f"box: expected a value > 0, got {opts['box']!r}")
