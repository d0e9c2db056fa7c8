"""The standard form: an alignment problem as one sparse linear model, built once from its rows.

``lp``, ``milp`` and ``cpsat`` solve the same model; :func:`standard_form` builds it from
``problem.rows`` with numpy and scipy (loops run over rows and penalty bands, never over
pairs), and each solver only translates it into its library's terms::

    maximise    c . z
    subject to  row_lower <= A z <= row_upper
                col_lower <= z <= col_upper,   z[k] integral where ``integral[k]``

**Columns.** One binary column per pair that is allowed and fits (``problem.fits``), in
row-major order (``rows``, ``cols``), with cost ``desirability[i, j]``; then the *excess*
columns of the soft rows. For each soft row, each side it bounds and each of its matrix
rows, band ``b`` (``b = 0, 1, ...``) is a continuous column of width 1 (one weight unit of
excess) and cost ``-penalty[b]`` (the last price for every band past the list). Only the
bands the row can reach get a column, and the last one's width is the most excess the row
can have (its largest usage minus ``U``, or ``L``), so every column is boxed. Since prices
do not decrease, a maximiser fills the bands in order, and the optimum over the excess
columns for a fixed assignment is exactly ``-row.cost(usage)``: ``c . z`` is the objective
:meth:`AlignmentProblem.objective` (desirability minus penalties).

**Rows.** Blocks of consecutive matrix rows, each from one :class:`~fedalign.Row`: first
the two count rows (``"experts per client"``, ``"clients per expert"``), then every other
row in the problem's order. Within a block, matrix row ``r`` is client (or expert) ``r``; a
total row has one. Coefficients are the row's weights over the pairs that fit, zeros
included (the pattern of a block is its pairs). A hard row is one matrix row per client
(expert) with both its bounds, taken with the checker's tolerance (``row.lower_cap``,
``row.upper_cap``) so that every assignment :func:`fedalign.check` accepts is feasible;
a row that counts pairs (unit weights) against integral bounds has its caps rounded back
to the bounds, which is exact. A lower bound at or below zero is dropped (usage is never negative). A soft
row gives one block per side, without tolerance::

    upper U:  sum_j w_j x_j - sum_b s_b <= U        lower L:  sum_j w_j x_j + sum_b t_b >= L

Provenance: ``row_block[r]`` indexes :attr:`StandardForm.blocks` (the :class:`Row` and,
for a soft row, its side) and ``row_index[r]`` is the client, expert (or 0) it stands for;
``excess_row`` and ``excess_band`` say the same for each excess column.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InfeasibleError, TimeLimitError
from ..problem import COUNT_ROW, SEAT_ROW, AlignmentProblem
from ..rows import OVERS, Row
from .base import Budget, RowSupport

__all__ = [
    "ALL_ROWS",
    "Block",
    "StandardForm",
    "block_order",
    "block_sums",
    "check_build_time",
    "checked_form",
    "standard_form",
]

#: Every kind of row: client, expert and total rows, any weights, either side, hard or soft.
ALL_ROWS = tuple(RowSupport(over, "any", soft=soft) for soft in (False, True) for over in OVERS)

_AXIS = {"client": 1, "expert": 0, "total": None}


@dataclass(frozen=True)
class Block:
    """Consecutive matrix rows that come from one :class:`~fedalign.Row`.

    Attributes
    ----------
    row : Row
    side : {"upper", "lower"} or None
        None for a hard row (both its bounds on each matrix row); for a soft row, the side
        whose excess the block's columns measure.
    start, stop : int
        The block's matrix rows are ``start .. stop - 1``.
    """

    row: Row
    side: str | None
    start: int
    stop: int


def block_order(problem: AlignmentProblem) -> list[tuple[Row, str | None]]:
    """The blocks of the standard form, in order, as ``(row, side)`` (see the module docstring)."""
    first = [problem.row(COUNT_ROW), problem.row(SEAT_ROW)]
    out: list[tuple[Row, str | None]] = []
    for row in (*first, *(r for r in problem.rows if r.name not in (COUNT_ROW, SEAT_ROW))):
        if not row.soft:
            out.append((row, None))
            continue
        out.extend((row, side) for side, b in (("upper", row.upper), ("lower", row.lower)) if b is not None)
    return out


def block_sums(row: Row, fits: NDArray[np.bool_]) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Per matrix row of ``row``: how many pairs fit, and their total weight (its largest usage)."""
    axis = _AXIS[row.over]
    count = np.atleast_1d(fits.sum(axis=axis)).astype(np.int64)
    total = np.atleast_1d(np.where(fits, row.dense, 0.0).sum(axis=axis))
    return count, total


@dataclass(frozen=True)
class StandardForm:
    """One alignment problem as ``max c.z, row_lower <= A z <= row_upper, col bounds``.

    Attributes
    ----------
    shape : (int, int)
        ``(n_clients, n_experts)`` of the problem.
    rows, cols : (n_pairs,) int arrays
        Client and expert of pair column ``k`` (columns ``0 .. n_pairs - 1``).
    c : (n_columns,) float array
        Objective coefficients (maximised).
    A : scipy.sparse.csr_array, shape (n_rows, n_columns)
    row_lower, row_upper : (n_rows,) float arrays
        ``-inf`` / ``+inf`` where a side is absent.
    col_lower, col_upper : (n_columns,) float arrays
        Finite boxes: ``[0, 1]`` for pairs, ``[0, width]`` for excess columns.
    integral : (n_columns,) bool array
        True for the pair columns.
    blocks : tuple of Block
    row_block, row_index : (n_rows,) int arrays
        Block and client / expert position (0 for a total row) of each matrix row.
    excess_row, excess_band : (n_excess,) int arrays
        Matrix row and band (0-based) of each excess column (columns ``n_pairs ..``).
    """

    shape: tuple[int, int]
    rows: NDArray[np.intp]
    cols: NDArray[np.intp]
    c: NDArray[np.float64]
    A: Any
    row_lower: NDArray[np.float64]
    row_upper: NDArray[np.float64]
    col_lower: NDArray[np.float64]
    col_upper: NDArray[np.float64]
    integral: NDArray[np.bool_]
    blocks: tuple[Block, ...]
    row_block: NDArray[np.intp]
    row_index: NDArray[np.intp]
    excess_row: NDArray[np.intp]
    excess_band: NDArray[np.intp]

    @property
    def n_pairs(self) -> int:
        """Number of pair columns."""
        return int(self.rows.size)

    @property
    def n_columns(self) -> int:
        """Number of columns (pairs, then excess)."""
        return int(self.c.size)

    @property
    def n_rows(self) -> int:
        """Number of matrix rows."""
        return int(self.row_lower.size)

    def source(self, r: int) -> tuple[Row, int]:
        """The :class:`Row` matrix row ``r`` comes from, and which of its rows it is."""
        return self.blocks[int(self.row_block[r])].row, int(self.row_index[r])

    def describe(self, r: int, problem: AlignmentProblem) -> str:
        """How messages name matrix row ``r``: ``"memory: client 'a' (position 0)"``."""
        block = self.blocks[int(self.row_block[r])]
        who = block.row.who(int(self.row_index[r]), problem.client_ids, problem.expert_ids)
        side = f" ({block.side} side)" if block.side is not None else ""
        return f"{block.row.name}{side}: {who}"

    def assignment(self, values: NDArray[Any]) -> NDArray[np.bool_]:
        """The (n, E) assignment whose pair columns are above 0.5 in ``values``."""
        x = np.zeros(self.shape, dtype=bool)
        on = np.asarray(values[: self.n_pairs], dtype=np.float64) > 0.5
        x[self.rows[on], self.cols[on]] = True
        return x

    def usage(self, x: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Each matrix row's weighted sum over the pairs of assignment ``x`` (excess left out)."""
        z = np.zeros(self.n_columns)
        z[: self.n_pairs] = x[self.rows, self.cols]
        return np.asarray(self.A @ z, dtype=np.float64)

    def columns(self, x: NDArray[np.bool_]) -> NDArray[np.float64]:
        """The column vector of assignment ``x``: its pairs, and every excess band filled in order.

        A row ``over`` its bound by ``e`` fills band ``b`` with ``clip(e - b, 0, width)``,
        which is the cheapest way to meet the row, so ``c . z = problem.objective(x)``.
        """
        z = np.zeros(self.n_columns)
        z[: self.n_pairs] = x[self.rows, self.cols]
        used = np.asarray(self.A @ z, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            over = np.maximum(used - self.row_upper, self.row_lower - used)
        e = over[self.excess_row]
        width = self.col_upper[self.n_pairs :]
        z[self.n_pairs :] = np.clip(e - self.excess_band, 0.0, width)
        return z

    def inequalities(self) -> tuple[Any, NDArray[np.float64], NDArray[np.intp], NDArray[np.float64]]:
        """The rows as ``A_ub z <= b_ub`` (for :func:`scipy.optimize.linprog`).

        Per block, the finite upper sides, then the finite lower sides negated. Returns
        ``(A_ub, b_ub, source, sign)``: inequality ``q`` is ``sign[q] * (A z)[source[q]] <=
        b_ub[q]``.
        """
        parts: list[NDArray[np.intp]] = []
        signs: list[NDArray[np.float64]] = []
        for block in self.blocks:
            span = np.arange(block.start, block.stop)
            hi = span[np.isfinite(self.row_upper[span])]
            lo = span[np.isfinite(self.row_lower[span])]
            parts += [hi, lo]
            signs += [np.ones(hi.size), -np.ones(lo.size)]
        source = np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)
        sign = np.concatenate(signs) if signs else np.zeros(0)
        a_ub = self.A[source]
        a_ub.data *= np.repeat(sign, np.diff(a_ub.indptr))
        b_ub = np.where(sign > 0, self.row_upper[source], -self.row_lower[source])
        return a_ub, b_ub, source, sign

    def normalised(self) -> tuple[StandardForm, float]:
        """The same model with every row and the objective scaled by powers of two.

        Each matrix row (with its bounds) is multiplied by the power of two that brings its
        largest ``|coefficient|`` into ``[0.5, 1)``, and the objective by the one that does the
        same for ``max |c|``. Powers of two make the scaling exact, so the feasible set and
        the optimal columns are unchanged; what changes is that HiGHS' absolute tolerances
        and its limits (coefficients of 1e15 and more are refused, costs of 1e20 and more read
        as infinite) see numbers near 1, whatever the problem's units (bytes, nanoseconds).
        Returns the scaled model and the objective's factor: divide a bound or an objective
        of the scaled model by it.
        """
        a = self.A.copy()
        nnz = np.diff(a.indptr)
        top = np.zeros(self.n_rows)
        has = nnz > 0
        if a.data.size:
            top[has] = np.maximum.reduceat(np.abs(a.data), a.indptr[:-1][has])
        row_scale = _power_of_two_scale(top)
        a.data = a.data * np.repeat(row_scale, nnz)
        with np.errstate(over="ignore", invalid="ignore"):
            lower = self.row_lower * row_scale
            upper = self.row_upper * row_scale
        obj_scale = float(_power_of_two_scale(np.array([np.abs(self.c).max(initial=0.0)]))[0])
        scaled = dataclasses.replace(
            self, A=a, row_lower=lower, row_upper=upper, c=self.c * obj_scale
        )
        return scaled, obj_scale

    def empty_conflict(self, problem: AlignmentProblem) -> str | None:
        """A matrix row with no column whose bounds exclude 0 (proof of infeasibility), or None."""
        empty = np.diff(self.A.indptr) == 0
        bad = np.flatnonzero(empty & ((self.row_lower > 0) | (self.row_upper < 0)))
        if not bad.size:
            return None
        r = int(bad[0])
        return (
            f"{self.describe(r, problem)} has no pair that fits, but its bounds "
            f"[{self.row_lower[r]:g}, {self.row_upper[r]:g}] exclude 0"
        )


#: Largest exponent a normalising scale may have (2**1000 keeps every scaled value finite
#: or meaningfully infinite, even for subnormal coefficients).
_MAX_EXPONENT = 1000


def _power_of_two_scale(top: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per entry, the power of two that brings ``top`` into ``[0.5, 1)`` (1 where ``top`` is 0)."""
    exponent = np.frexp(top)[1]
    scale = np.ldexp(1.0, np.clip(-exponent, -_MAX_EXPONENT, _MAX_EXPONENT))
    return np.where(top > 0, scale, 1.0)


def _hard_bounds(row: Row) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A hard row's bounds with the checker's tolerance (the bounds themselves for a count row)."""
    m = row.size
    hi = np.full(m, np.inf) if row.upper_cap is None else np.array(row.upper_cap)
    lo = np.full(m, -np.inf) if row.lower_cap is None else np.array(row.lower_cap)
    if row.unit and row.integral:
        # Integral usage and bounds: rounding the caps inward gives the bounds back and
        # keeps the same assignments, and integral right-hand sides keep the vertices of a
        # count-only LP integral (its matrix is totally unimodular).
        hi, lo = np.floor(hi), np.ceil(lo)
    return lo, hi


def _excess_columns(
    prices: tuple[float, ...], most: NDArray[np.float64]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """Band columns for rows whose excess can reach ``most``: ``(row, band, width, cost)``.

    A row gets ``min(K, ceil(most))`` bands (``K`` prices): width 1 each, the last one
    ``most - (bands - 1)`` (the rest of the excess, all of it past the listed prices).
    """
    k = len(prices)
    bands = np.where(most > 0, np.minimum(k, np.ceil(np.maximum(most, 0.0))), 0).astype(np.intp)
    row = np.repeat(np.arange(most.size), bands)
    first = np.repeat(np.cumsum(bands) - bands, bands)
    band = np.arange(row.size) - first
    last = band == bands[row] - 1
    width = np.where(last, most[row] - band, 1.0)
    cost = -np.asarray(prices)[band]
    return row, band, width, cost


#: Seconds per pair and block of rows that building the standard form takes, generously (about
#: 0.3 us were measured on a 2-core machine, 1 us under a load of 3-4): the estimate by which
#: :func:`standard_form` refuses to start a build that cannot end within a budget.
SECONDS_PER_PAIR_BLOCK = 1e-6


def check_build_time(problem: AlignmentProblem, budget: Budget) -> None:
    """Raise :class:`~fedalign.TimeLimitError` when building the standard form would clearly
    outlast the budget (estimated by :data:`SECONDS_PER_PAIR_BLOCK`); cheap, so solvers call
    it before anything else at scale."""
    if budget.time_limit is None:
        return
    blocks = len(block_order(problem))
    cost = SECONDS_PER_PAIR_BLOCK * float(problem.n_clients) * problem.n_experts * blocks
    if cost > budget.remaining():
        raise TimeLimitError(budget.message(
            f"building the model ({problem.n_clients:,} x {problem.n_experts} pairs would take "
            f"about {cost:.1f} s, more than the {budget.remaining():.1f} s left)"
        ))


def checked_form(problem: AlignmentProblem, budget: Budget) -> StandardForm:
    """What every model solver does first: refuse a build that cannot end in time
    (:func:`check_build_time`, before any (n, E) pass), raise
    :class:`~fedalign.InfeasibleError` for a proven reason (the problem's own, then the
    form's empty rows), and build the standard form. ``sf.n_pairs == 0``: nothing fits, the
    empty assignment is the only one."""
    check_build_time(problem, budget)  # before any (n, E) pass: at scale they cost seconds
    reason = problem.infeasibility_reason()
    if reason is not None:
        raise InfeasibleError(reason)
    sf = standard_form(problem, budget)
    reason = sf.empty_conflict(problem)
    if reason is not None:
        raise InfeasibleError(reason)
    return sf


def _side_bounds(
    row: Row, side: str | None, fits: NDArray[np.bool_]
) -> tuple[
    NDArray[np.float64],
    NDArray[np.float64],
    tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]] | None,
]:
    """One block's row bounds, and for a soft side its excess columns (None: a hard row).

    A lower bound of 0 or less is dropped (-inf): usage is never negative.
    """
    if side is None:
        lo, hi = _hard_bounds(row)
        return np.where(lo > 0, lo, -np.inf), hi, None
    bound = row.upper if side == "upper" else row.lower
    assert bound is not None and row.penalty is not None
    inf = np.full(row.size, np.inf)
    if side == "upper":
        lo, hi = -inf, np.array(bound)
        most = block_sums(row, fits)[1] - bound
    else:
        lo, hi = np.where(bound > 0, bound, -np.inf), inf
        most = np.array(bound)
    return lo, hi, _excess_columns(row.penalty, most)


def standard_form(problem: AlignmentProblem, budget: Budget | None = None) -> StandardForm:
    """The standard form of ``problem`` (see the module docstring).

    Parameters
    ----------
    problem : AlignmentProblem
    budget : Budget, optional
        The solver's time budget: a build that would clearly outlast it (by
        :data:`SECONDS_PER_PAIR_BLOCK`) is not started, and the clock is checked between
        blocks of rows; either way :class:`~fedalign.TimeLimitError` is raised.

    Returns
    -------
    StandardForm
    """
    from scipy import sparse

    fits = problem.fits
    order = block_order(problem)
    if budget is not None:
        check_build_time(problem, budget)
    rows, cols = np.nonzero(fits)
    m = rows.size
    k_pair = np.arange(m)
    entries_r: list[NDArray[np.intp]] = []
    entries_c: list[NDArray[np.intp]] = []
    entries_v: list[NDArray[np.float64]] = []
    lowers: list[NDArray[np.float64]] = []
    uppers: list[NDArray[np.float64]] = []
    blocks: list[Block] = []
    excess: list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]] = []
    start = n_excess = 0
    for row, side in order:
        if budget is not None:
            budget.check("building the model")
        size = row.size
        entries_r.append(start + row.owner(rows, cols))
        entries_c.append(k_pair)
        entries_v.append(np.array(row.at(rows, cols), dtype=np.float64))
        lo, hi, soft = _side_bounds(row, side, fits)
        if soft is not None:
            r, band, width, cost = soft
            excess.append((start + r, band, width, cost))
            entries_r.append(start + r)
            entries_c.append(m + n_excess + np.arange(r.size))
            entries_v.append(np.full(r.size, -1.0 if side == "upper" else 1.0))
            n_excess += r.size
        lowers.append(lo)
        uppers.append(hi)
        blocks.append(Block(row, side, start, start + size))
        start += size

    n_cols = m + n_excess
    a = sparse.csr_array(
        (np.concatenate(entries_v), (np.concatenate(entries_r), np.concatenate(entries_c))),
        shape=(start, n_cols),
    )
    ex_row = np.concatenate([e[0] for e in excess]) if excess else np.zeros(0, dtype=np.intp)
    ex_band = np.concatenate([e[1] for e in excess]) if excess else np.zeros(0, dtype=np.intp)
    ex_width = np.concatenate([e[2] for e in excess]) if excess else np.zeros(0)
    ex_cost = np.concatenate([e[3] for e in excess]) if excess else np.zeros(0)
    row_block = np.repeat(np.arange(len(blocks)), [b.stop - b.start for b in blocks])
    row_index = np.arange(start) - np.array([b.start for b in blocks], dtype=np.intp)[row_block]
    return StandardForm(
        shape=problem.shape,
        rows=rows,
        cols=cols,
        c=np.concatenate([problem.desirability[rows, cols], ex_cost]),
        A=a,
        row_lower=np.concatenate(lowers),
        row_upper=np.concatenate(uppers),
        col_lower=np.zeros(n_cols),
        col_upper=np.concatenate([np.ones(m), ex_width]),
        integral=np.concatenate([np.ones(m, dtype=bool), np.zeros(n_excess, dtype=bool)]),
        blocks=tuple(blocks),
        row_block=row_block.astype(np.intp),
        row_index=row_index.astype(np.intp),
        excess_row=ex_row.astype(np.intp),
        excess_band=ex_band.astype(np.intp),
    )
