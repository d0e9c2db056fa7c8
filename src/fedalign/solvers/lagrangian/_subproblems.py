"""The per-client subproblems of the Lagrangian relaxation, and which method solves each.

At reduced profits ``r = d - P`` (``P`` the priced rows' prices, :mod:`._duals`), client
``i``'s subproblem is::

    v_i(r) = max  sum_j r[i, j] x[i, j]
             s.t. min_experts[i] <= sum_j x[i, j] <= max_experts[i]
                  every hard client row of client i (memory, deadline, yours), forbidden pairs

:class:`Subproblems` holds what every method needs (the client rows, the implied count
limits, the warm start) and :meth:`Subproblems.solve` sends each client to the cheapest
method that is exact for it, or to a valid upper bound (see the package docstring):

1. the count relaxation for every client (exact when its choice fits the knapsack rows);
2. for clients taking at most ``max_enum_experts`` experts: the dominance filter
   (:mod:`._dominance`), enumeration of the top candidates with a certificate
   (:mod:`._enumeration`), then branch and bound (:mod:`._branch_and_bound`);
3. for the others: the integer dynamic programme (:mod:`._knapsack_dp`) where it applies,
   else the relaxation bound and a ratio-greedy choice (:mod:`._relaxation`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ...errors import InfeasibleError
from ...problem import AlignmentProblem
from ...rows import Row
from ._common import DP_MAX_CELLS, NEG, count_fitting, top_sorted
from ._enumeration import enumerate_clients
from ._knapsack_dp import dp_row, dynamic_programme
from ._relaxation import relaxation


class ClientRow:
    """One hard client row of the subproblems (memory, deadline or yours), ready for the methods.

    Attributes
    ----------
    name : str
    weight : (E,) or (n, E) array
        ``(E,)`` when every client has the same weights (a read-only view, no copy),
        else per pair (a broadcast view of the row's weight).
    cap, low : (n,) arrays or None
        Upper and lower bounds with the checker's tolerance (None: no such bound).
    upper : (n,) array or None
        The upper bound as given (the integer DP's capacity).
    integral : bool
        Whether weights and bounds are integers.
    """

    __slots__ = ("name", "weight", "cap", "low", "upper", "integral")

    def __init__(self, row: Row, n: int, e: int) -> None:
        w = row.weight
        self.name = row.name
        self.weight = np.broadcast_to(w[0], (e,)) if w.shape[0] == 1 else np.broadcast_to(w, (n, e))
        self.cap = row.upper_cap
        self.low = row.lower_cap
        self.upper = row.upper
        self.integral = row.integral

    def at(self, rows: NDArray[np.int64], idx: NDArray[np.int64]) -> NDArray[np.float64]:
        """(h, m) weights of the experts ``idx[k]`` of client ``rows[k]``."""
        w = self.weight
        return w[idx] if w.ndim == 1 else np.take_along_axis(w[rows], idx, 1)

    def dense(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """(h, E) weights of the listed clients (a broadcast view when shared)."""
        w = self.weight
        return np.broadcast_to(w, (rows.size, w.shape[-1])) if w.ndim == 1 else w[rows]

    def used(self, rows: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.float64]:
        """(h,) usage of the listed clients' rows ``x``."""
        w = self.weight
        if w.ndim == 1:
            return np.asarray(x.astype(np.float64) @ w)
        return np.where(x, w[rows], 0.0).sum(axis=1)


@dataclass
class SubResult:
    """Solutions of every client's subproblem at one price vector."""

    x: NDArray[np.bool_]  # (n, E) the chosen experts (exact optimum where exact)
    value: float  # sum over clients of the optimum, or of a valid upper bound of it
    estimate: float  # sum over clients of the reduced profit of the chosen experts
    exact: bool  # every client solved exactly (then value == estimate)
    load: NDArray[np.int64]  # (E,) clients per expert in x


class Subproblems:
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
        #: and bounds what is left (see ``_branch_and_bound``).
        self.node_budget = node_budget
        n, e = problem.shape
        fits = problem.fits
        self.dm = np.where(fits, problem.desirability, NEG)
        n_fit = fits.sum(axis=1)
        self.kmax = np.minimum(problem.max_experts, n_fit).astype(np.int64)
        self.kmin = problem.min_experts.astype(np.int64)
        if (self.kmin > self.kmax).any():
            i = int(np.flatnonzero(self.kmin > self.kmax)[0])
            raise InfeasibleError(
                f"min_experts: client {problem.client_ids[i]!r} (position {i}) needs "
                f"{self.kmin[i]} experts but only {n_fit[i]} are allowed and fit it"
            )
        #: The hard client rows besides the count (memory, deadline, yours), in problem order.
        self.krows = [
            ClientRow(row, n, e)
            for row in problem.client_rows
            if row.upper is not None or row.lower is not None
        ]
        #: Whether some client row has a lower bound (a subset is complete only when it holds).
        self.has_low = any(k.low is not None for k in self.krows)
        # Implied count limit: no more experts than the lightest ones that fit together.
        for k in self.krows:
            if k.cap is not None:
                self.kmax = np.minimum(self.kmax, count_fitting(k.weight, k.cap, fits, self.kmax))
        self.candidates = max(1, candidates)
        self.max_enum_experts = max_enum_experts
        self.kmax_all = int(self.kmax.max()) if n else 0
        spread = float(np.ptp(problem.desirability[fits])) if fits.any() else 0.0
        #: Per-client pruning tolerance of the branch and bound (added to its bound).
        self.eps = bb_tol * max(spread, 1e-12)
        self.dp_row = dp_row(self)
        self.weight_order: NDArray[np.int64] | None = None
        self.cap_need: NDArray[np.int8] | None = None
        self.cap_known: NDArray[np.bool_] | None = None  # clients whose cap_need is computed
        self.prev: NDArray[np.bool_] | None = None  # the last choice, a warm start
        self.strict = True  # a client without any feasible subset proves infeasibility
        #: perf_counter time after which the searches stop and bound what is left (None:
        #: never); set per evaluation by the dual ascent under a time limit.
        self.deadline: float | None = None
        #: Per client, the count relaxation's value at the current prices: a valid bound of
        #: its subproblem, what a search stopped by the deadline falls back on.
        self.count_ub = np.full(n, np.inf)
        #: Whether the deadline cut the current (or last) evaluation short: its choices may
        #: miss a minimum, so the next one checks them before using them as incumbents.
        self.partial = False
        self.prev_partial = False

    def single_row(self) -> ClientRow | None:
        """The only client row besides the count, when it has an upper bound and no lower one.

        The dominance filter needs exactly that (a swap for a lighter expert keeps an upper
        bound, not a lower one); the integer DP too.
        """
        if len(self.krows) == 1 and self.krows[0].cap is not None and self.krows[0].low is None:
            return self.krows[0]
        return None

    def knapsack_ok(self, rows: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Whether each listed client's row of ``x`` holds its client rows (count row aside)."""
        ok = np.ones(len(rows), dtype=bool)
        for k in self.krows:
            used = k.used(rows, x)
            if k.cap is not None:
                ok &= used <= k.cap[rows]
            if k.low is not None:
                ok &= used >= k.low[rows]
        return ok

    def complete(self, rows: NDArray[np.int64], x: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Whether each listed client's row of ``x`` holds every client row, count included."""
        count = x.sum(axis=1)
        ok = (count >= self.problem.min_experts[rows]) & (count <= self.problem.max_experts[rows])
        return ok & self.knapsack_ok(rows, x)

    def out_of_time(self) -> bool:
        """Whether the deadline of the current evaluation has passed (then it is partial)."""
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self.partial = True
        return self.partial

    def raise_blocked(self, i: int) -> None:
        """Client ``i`` has no feasible subset: the problem is infeasible (when strict)."""
        if not self.strict:
            return  # best_sets: a client with no feasible subset keeps an empty row
        names = " and ".join(k.name for k in self.krows) or "rows"
        raise InfeasibleError(
            f"client {self.problem.client_ids[i]!r} (position {i}): no set of "
            f"{self.kmin[i]}..{self.kmax[i]} allowed experts fits its {names}"
        )

    # ------------------------------------------------------------------ solve

    def solve(self, price: NDArray[np.float64]) -> SubResult:
        """Every client's subproblem at reduced profits ``d - price``.

        ``price`` is one price per expert ``(E,)``, or one per pair ``(n, E)`` when rows with
        weights that vary over clients are priced.
        """
        n, e = self.problem.shape
        r = self.dm - (price[None, :] if price.ndim == 1 else price)
        x = np.zeros((n, e), dtype=bool)
        # Bounds of this price vector only (the searches fall back on them).
        self.count_ub = np.full(n, np.inf)
        self.prev_partial, self.partial = self.partial, False
        values = np.zeros(n)
        rows_all = np.arange(n)

        # 1. the count relaxation for every client
        k = self.kmax_all
        idx, val = top_sorted(r, k) if self.dp_row is None or k <= 6 else (None, None)
        hard: NDArray[np.int64]
        if idx is not None and val is not None:
            pos = np.arange(idx.shape[1])[None, :]
            take = (pos < self.kmax[:, None]) & np.isfinite(val)
            take &= (val > 0) | (pos < self.kmin[:, None])
            ri, pi = np.nonzero(take)
            x[ri, idx[ri, pi]] = True
            values = np.where(take, val, 0.0).sum(axis=1)
            self.count_ub = values.copy()
            if not self.krows:
                return self._result(x, values, values, True)
            hard = np.flatnonzero(~self.knapsack_ok(rows_all, x))
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
            all_exact &= enumerate_clients(self, r, enum_rows, x, values, chosen)
        if rest.size:
            cells = rest.size * e * (int(self.dp_row[1].max()) + 1) if self.dp_row else 0
            if self.dp_row is not None and cells <= DP_MAX_CELLS:
                dynamic_programme(self, r, rest, x, values)
                chosen[rest] = values[rest]
            else:
                relaxation(self, r, rest, x, values, chosen)
                all_exact = False
        return self._result(x, values, chosen, all_exact)

    def best_sets(
        self, r: NDArray[np.float64], rows: NDArray[np.int64], deadline: float | None = None
    ) -> NDArray[np.bool_]:
        """Each listed client's best subset at reduced profits ``r`` (rows of an (n, E) array).

        Used by the primal heuristic to re-solve a few clients with some experts closed
        (``r = -inf`` there); the warm start of :meth:`solve` is left untouched.
        ``deadline`` (a perf_counter time; None: search to the end) stops the searches: the
        clients not reached by then get an empty row. At 100,000 x 128 with a deadline row
        the first repair re-solved so many clients that it ran 3 s past a 3.5 s limit.
        """
        n, e = self.problem.shape
        if deadline is not None and time.perf_counter() >= deadline:
            return np.zeros((rows.size, e), dtype=bool)  # no client reached (its passes cost too)
        saved, self.prev = self.prev, None
        # The repair's clients are searched to its deadline, and the evaluation's state kept.
        deadline, partial, self.deadline = self.deadline, self.partial, deadline
        self.strict = False
        try:
            x = np.zeros((n, e), dtype=bool)
            values = np.zeros(n)
            chosen = np.zeros(n)
            small = self.kmax[rows] <= self.max_enum_experts
            if small.any():
                enumerate_clients(self, r, rows[small], x, values, chosen)
            rest = rows[~small]
            if rest.size:
                relaxation(self, r, rest, x, values, chosen)
        finally:
            self.prev = saved
            self.deadline, self.partial = deadline, partial
            self.strict = True
        return x[rows]

    def _result(
        self,
        x: NDArray[np.bool_],
        values: NDArray[np.float64],
        chosen: NDArray[np.float64],
        exact: bool,
    ) -> SubResult:
        self.prev = x
        return SubResult(
            x, float(values.sum()), float(chosen.sum()), exact, x.sum(axis=0).astype(np.int64)
        )
