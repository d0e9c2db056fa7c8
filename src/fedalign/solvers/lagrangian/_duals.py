"""The priced rows of the Lagrangian dual: which rows carry prices, and the dual function's terms.

Client rows stay in the per-client subproblems; every other row is relaxed with prices.
A row's side is its upper bound (price ``lam >= 0``) or its lower bound (``mu >= 0``):

* the expert count row ``"clients per expert"``: one price per expert and side;
* each hard weighted expert row: one price per expert and side;
* each hard total row: one price per side;
* each soft expert or total row: the same, with *capped* prices (below).

With ``y_s`` the prices of side ``s``, ``sign_s = +1`` for an upper and ``-1`` for a lower
bound, ``W_s`` its weights and ``b_s`` its bounds, the reduced profits and the dual
function are::

    r[i, j] = d[i, j] - sum_s sign_s * y_s[owner_s(i, j)] * W_s[i, j]
    L(y)    = sum_i v_i(r) + sum_s sign_s * y_s . b_s + sum_{soft s} conj_s(y_s)

and ``L(y)`` is an upper bound on the optimum for every admissible ``y`` (weak duality: for
a feasible ``x`` every priced term ``sign_s * y_s * (b_s - usage_s(x))`` is ``>= 0``). A
subgradient is ``sign_s * (b_s - usage_s) + d conj_s`` at the subproblems' choice.

**Soft rows.** A soft upper bound pays ``f(usage - b)`` for its excess, ``f`` the convex
band cost with per-unit prices ``p_1 <= ... <= p_k`` (the last one for every further unit).
Writing the excess as a free variable ``e >= 0`` with ``usage <= b + e`` and relaxing that
row with a price ``lam`` adds ``max_{e >= 0} (lam * e - f(e))`` to the dual function: it is
``+inf`` for ``lam > p_k`` and otherwise ``conj(lam) = sum_{c < k} (lam - p_c)^+`` (each
unit band ``c`` is worth taking exactly when ``lam > p_c``; the unbounded last band never
is). So a soft side is a price in ``[0, p_k]`` with that convex term added, and the
subgradient gains ``#{c < k: lam > p_c}``. A soft lower bound is the same with ``mu``.
A row with both bounds has one excess at a time, so its two sides add up.

Hard weighted rows use their bounds with the checker's tolerance (``Row.upper_cap``,
``Row.lower_cap``), so every assignment :func:`fedalign.check` accepts is covered; soft rows
use their bounds as given (their excess is measured from them).

For the price phases on a sample of the clients (:mod:`._sampling`), :class:`Duals` takes
the sample's clients and share: weights are restricted to them, bounds (and the soft band
widths) scaled by the share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ...problem import SEAT_ROW, AlignmentProblem
from ...rows import Row


@dataclass
class Side:
    """One priced side of a row (an upper bound or a lower bound)."""

    name: str
    over: str  # "expert" or "total"
    sign: float  # +1.0: an upper bound, price lam; -1.0: a lower bound, price mu
    weight: NDArray[np.float64] | None  # (1|h, 1|E); None: unit weights (the count row)
    bound: NDArray[np.float64]  # (m,) one bound per row of the side
    active: NDArray[np.intp]  # the rows that carry a price (others could never bind)
    bands: tuple[float, ...] | None = None  # a soft side's per-unit prices
    share: float = 1.0  # width of a band (the sample's share of the clients)
    scale: float = 1.0  # typical price per unit of the box-step trust region

    @property
    def size(self) -> int:
        """Rows of the side: ``n_experts`` or 1."""
        return int(self.bound.size)

    @property
    def cap(self) -> float:
        """Largest admissible price: the last band price of a soft side, else inf."""
        return np.inf if self.bands is None else self.bands[-1]

    def at(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        """Weights of the pairs ``(rows[k], cols[k])``."""
        if self.weight is None:
            return np.ones(rows.size)
        w = self.weight
        picked = w[rows if w.shape[0] != 1 else 0, cols if w.shape[1] != 1 else 0]
        return np.broadcast_to(picked, rows.shape)

    def conj(self, y: NDArray[np.float64]) -> float:
        """The soft side's term ``share * sum_{c < k} (y - p_c)^+`` (0 for a hard side)."""
        if self.bands is None or len(self.bands) < 2:
            return 0.0
        p = np.asarray(self.bands[:-1])
        return self.share * float(np.maximum(y[:, None] - p[None, :], 0.0).sum())

    def conj_slope(self, y: NDArray[np.float64]) -> NDArray[np.float64]:
        """Its subgradient ``share * #{c < k: y > p_c}`` per row (0 for a hard side)."""
        if self.bands is None or len(self.bands) < 2:
            return np.zeros(y.size)
        p = np.asarray(self.bands[:-1])
        return self.share * (y[:, None] > p[None, :]).sum(axis=1).astype(np.float64)


class Duals:
    """Every priced side of a problem, and the dual function's terms at any prices.

    Parameters
    ----------
    problem : AlignmentProblem
        The full problem (its rows and bounds).
    phase : AlignmentProblem, optional
        The problem the prices are sought on: ``problem`` itself, or a sample of its clients
        (then ``clients`` lists them and ``share`` is their share).
    """

    def __init__(
        self,
        problem: AlignmentProblem,
        phase: AlignmentProblem | None = None,
        clients: NDArray[np.intp] | None = None,
        share: float | None = None,
    ) -> None:
        phase = problem if phase is None else phase
        fits = phase.fits
        fit_count = fits.sum(axis=0)
        if share is None:
            hi = problem.expert_max_clients.astype(np.float64)
            lo = problem.expert_min_clients.astype(np.float64)
        else:
            hi = (problem.expert_max_clients * share).astype(np.float64)
            lo = (problem.expert_min_clients * share).astype(np.float64)
        # Only rows that can bind get a price: lam_j for caps below the clients that fit j,
        # mu_j for positive minimums. The others stay at 0, their optimal value.
        self.sides = [
            Side(SEAT_ROW, "expert", 1.0, None, hi,
                 np.flatnonzero(hi < np.minimum(fit_count, phase.max_experts.sum()))),
            Side(SEAT_ROW, "expert", -1.0, None, lo, np.flatnonzero(lo > 0)),
        ]
        for row in _priced_rows(problem):
            self.sides.extend(_sides(row, fits, clients, 1.0 if share is None else share))
        #: Whether only the count row is priced (prices stay one per expert).
        self.count_only = len(self.sides) == 2
        #: Whether some priced weight varies over clients (prices become one per pair).
        self.per_pair = any(s.weight is not None and s.weight.shape[0] > 1 for s in self.sides)
        self.soft = any(s.bands is not None for s in self.sides)

    # ------------------------------------------------------------------ vectors

    def zeros(self) -> list[NDArray[np.float64]]:
        """All prices 0 (one array per side)."""
        return [np.zeros(s.size) for s in self.sides]

    def pack(self, prices: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        """The active prices as one vector ``z`` (the variables of the cutting-plane model)."""
        return np.concatenate([p[s.active] for s, p in zip(self.sides, prices, strict=True)])

    def unpack(self, z: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        """Prices per side from ``z`` (inactive rows at 0)."""
        out = []
        start = 0
        for s in self.sides:
            p = np.zeros(s.size)
            p[s.active] = z[start : start + s.active.size]
            start += s.active.size
            out.append(p)
        return out

    def box_scale(self) -> NDArray[np.float64]:
        """Per variable of ``z``: the scale of its trust region (1 for the count row)."""
        return np.concatenate([np.full(s.active.size, s.scale) for s in self.sides])

    def caps(self) -> NDArray[np.float64]:
        """Per variable of ``z``: its largest admissible value (inf, or a soft row's last price)."""
        return np.concatenate([np.full(s.active.size, s.cap) for s in self.sides])

    # ------------------------------------------------------------------ the dual function

    def price(self, prices: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        """What the priced rows charge each pair: ``(E,)``, or ``(h, E)`` when per pair."""
        lam, mu = prices[0], prices[1]
        base = lam - mu
        if self.count_only:
            return base
        total: NDArray[np.float64] = base[None, :]
        for s, y in zip(self.sides[2:], prices[2:], strict=True):
            assert s.weight is not None
            per = y[None, :] if s.over == "expert" else y[0]
            total = total + s.sign * per * s.weight
        return total[0] if total.shape[0] == 1 else total

    def value(self, sub_value: float, prices: Sequence[NDArray[np.float64]]) -> float:
        """``L`` at ``prices`` from the subproblems' total ``sub_value``."""
        value = sub_value
        for s, y in zip(self.sides, prices, strict=True):
            term = float(y @ s.bound)
            value = value + term if s.sign > 0 else value - term
        for s, y in zip(self.sides, prices, strict=True):
            if s.bands is not None:
                value += s.conj(y)
        return value

    def gradient(
        self, x: NDArray[np.bool_], load: NDArray[np.int64], prices: Sequence[NDArray[np.float64]]
    ) -> NDArray[np.float64]:
        """A subgradient of ``L`` in ``z`` at the subproblems' choice ``x`` (``load``: counts)."""
        hi, lo = self.sides[0], self.sides[1]
        parts = [(hi.bound - load)[hi.active], (load - lo.bound)[lo.active]]
        if not self.count_only:
            rows, cols = np.nonzero(x)
            for s, y in zip(self.sides[2:], prices[2:], strict=True):
                owner = cols if s.over == "expert" else np.zeros(rows.size, dtype=np.intp)
                used = np.bincount(owner, weights=s.at(rows, cols), minlength=s.size)
                g = s.bound - used if s.sign > 0 else used - s.bound
                if s.bands is not None:
                    g = g + s.conj_slope(y)
                parts.append(g[s.active])
        return np.concatenate(parts)


def _priced_rows(problem: AlignmentProblem) -> list[Row]:
    """Every row besides client rows and the count row: hard expert, total, then soft ones."""
    soft = [r for r in problem.soft_rows if r.over != "client"]
    return [*problem.expert_rows, *problem.total_rows, *soft]


def _sides(
    row: Row, fits: NDArray[np.bool_], clients: NDArray[np.intp] | None, share: float
) -> list[Side]:
    """The priced sides of one expert or total row, for the phase's clients."""
    w = row.weight
    if clients is not None and w.shape[0] > 1:
        w = w[clients]
    dense = np.broadcast_to(w, fits.shape)
    held = np.where(fits, dense, 0.0)
    most = np.atleast_1d(held.sum(axis=0) if row.over == "expert" else held.sum())
    positive = held[held > 0]
    scale = 1.0 / float(positive.mean()) if positive.size else 1.0
    bands = row.penalty
    out = []
    for sign, raw, tol in ((1.0, row.upper, row.upper_cap), (-1.0, row.lower, row.lower_cap)):
        if raw is None or tol is None:
            continue
        bound = (raw if row.soft else tol) * share
        # A side that cannot bind keeps price 0: an upper bound above the most the fitting
        # pairs can use, a lower bound at or below 0.
        active = np.flatnonzero(bound < most) if sign > 0 else np.flatnonzero(bound > 0)
        out.append(Side(row.name, row.over, sign, w, np.asarray(bound, dtype=np.float64),
                        active, bands, share, scale))
    return out
