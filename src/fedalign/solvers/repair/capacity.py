"""Residual capacity: what each client, expert and total row can still take on top of an assignment.

:class:`Residual` and :func:`residual` give the per-client slots and per-expert seats left
(the two count rows) and, for every other hard row with an upper bound, one
:class:`RowRoom`: the room left under the bound for each of the row's members (a client,
an expert, or the single total). :func:`floors` gives the same for lower bounds: how much
each row can still lose; :func:`slacks` both sides of every row at once (:class:`Slack`,
for moves that raise some members and lower others). :func:`addable` turns a residual into the pairs that fit now;
:func:`order_key` breaks ties in a priority at random; :class:`Guard` watches the rows that
the local tests of a move do not see (weighted expert rows, total rows, lower bounds of
client rows).

:func:`group_cumsum` (running sums within groups of equal client or expert) is how every
batch of additions or swaps elsewhere in the package is tested against these rooms at once:
for a client row the group is the client, for an expert row the expert, and for a total
row the whole batch (a plain running sum).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...problem import AlignmentProblem
from ...rows import Row

__all__ = [
    "Guard",
    "Residual",
    "RowRoom",
    "Slack",
    "addable",
    "assigned",
    "block_of",
    "column_of",
    "floors",
    "group_cumsum",
    "order_key",
    "residual",
    "rooms_of",
    "slacks",
    "usage",
]

#: Index of a set of clients: an index array, or every client.
Rows = NDArray[np.intp] | slice
#: Pairs as a (rows, cols) pair of index arrays.
Pairs = tuple[NDArray[np.intp], NDArray[np.intp]]


def assigned(x: NDArray[np.bool_]) -> Pairs:
    """The assigned pairs of ``x`` (``np.nonzero``, row-major)."""
    rows, cols = np.nonzero(x)
    return rows, cols


@dataclass
class RowRoom:
    """What one row can still take (or lose) per member, tolerance included.

    Attributes
    ----------
    row : Row
        The row; its weights say what each pair uses.
    left : (row.size,) float64
        Room per member: ``(n,)`` for a client row, ``(E,)`` for an expert row, ``(1,)`` for
        a total row. Negative where the bound is already broken.
    """

    row: Row
    left: NDArray[np.float64]

    @property
    def over(self) -> str:
        """``"client"``, ``"expert"`` or ``"total"``."""
        return self.row.over

    def weights(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        """What the pairs ``(rows[k], cols[k])`` use of this row."""
        return self.row.at(rows, cols)

    def owner(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.intp]:
        """The member of the row each pair belongs to."""
        return self.row.owner(rows, cols)

    def admits(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which pairs fit this row on their own."""
        return np.asarray(self.weights(rows, cols) <= self.left[self.owner(rows, cols)])

    def running(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which pairs fit this row together with every earlier pair of the batch on the same member."""
        w = self.weights(rows, cols)
        if self.over == "total":
            return np.asarray(np.cumsum(w) <= self.left[0])
        owner = self.owner(rows, cols)
        return np.asarray(group_cumsum(owner, w) <= self.left[owner])

    def take(self, rows: NDArray[np.intp], cols: NDArray[np.intp], sign: float = 1.0) -> None:
        """Use (``sign=1``) or free (``sign=-1``) the pairs' weights."""
        used = np.bincount(self.owner(rows, cols), weights=self.weights(rows, cols), minlength=self.left.size)
        if sign > 0:
            self.left -= used
        else:
            self.left += used

    def block(self, rows: Rows = slice(None), cols: Rows = slice(None)) -> NDArray[np.bool_]:
        """Bool broadcastable to ``(len(rows), len(cols))``: the pairs that fit alone."""
        w = self.row.weight
        wb = w if w.shape[0] == 1 else w[rows]
        wb = wb if w.shape[1] == 1 else wb[:, cols]
        if self.over == "client":
            return np.asarray(wb <= self.left[rows][:, None])
        if self.over == "expert":
            return np.asarray(wb <= self.left[cols][None, :])
        return np.asarray(wb <= self.left[0])

    def column(self, j: int, rows: Rows = slice(None)) -> NDArray[np.bool_]:
        """Bool per client of ``rows``: whether the pair (client, ``j``) fits alone."""
        w = self.row.weight
        wc = w[:, j if w.shape[1] != 1 else 0]
        wc = wc if w.shape[0] == 1 else wc[rows]
        if self.over == "client":
            return np.asarray(wc <= self.left[rows])
        if self.over == "expert":
            return np.asarray(wc <= self.left[j])
        return np.asarray(wc <= self.left[0])


def block_of(row: Row, rows: Rows) -> NDArray[np.float64]:
    """The weights of the pairs of clients ``rows`` with every expert, broadcastable to
    ``(len(rows), E)`` (no copy for weights that do not vary by client)."""
    w = row.weight
    return w if w.shape[0] == 1 else w[rows]


def column_of(row: Row, rows: Rows, j: int) -> NDArray[np.float64]:
    """The weights of the pairs ``(rows[k], j)``, broadcastable to ``(len(rows),)``."""
    w = row.weight
    col = w[:, j if w.shape[1] != 1 else 0]
    return col if w.shape[0] == 1 else col[rows]


def usage(row: Row, pairs: Pairs) -> NDArray[np.float64]:
    """``row.usage(x)`` from the assigned pairs ``assigned(x)`` (found once for many rows)."""
    rows, cols = pairs
    used = np.bincount(row.owner(rows, cols), weights=row.at(rows, cols), minlength=row.size)
    return used.astype(np.float64, copy=False)


def rooms_of(
    rows: tuple[Row, ...], pairs: Pairs, side: str = "upper"
) -> list[RowRoom]:
    """One room per row of ``rows`` with a bound on ``side``: under its upper bound
    (``side="upper"``) or above its lower bound (``"lower"``), for the assigned ``pairs``."""
    out = []
    for row in rows:
        if side == "upper" and row.upper_cap is not None:
            out.append(RowRoom(row, row.upper_cap - usage(row, pairs)))
        elif side == "lower" and row.lower_cap is not None:
            out.append(RowRoom(row, usage(row, pairs) - row.lower_cap))
    return out


@dataclass
class Residual:
    """What each client, expert and total row can still take on top of an assignment.

    Attributes
    ----------
    count : (n,) int64
        Experts each client may still add (``max_experts - assigned``; negative if over).
    seats : (E,) int64
        Clients each expert may still take (``expert_max_clients - load``).
    client, expert, total : list of RowRoom
        One room per hard client / expert / total row with an upper bound, besides the two
        count rows, in the order of ``problem.client_rows`` (memory, deadline, your own...),
        ``problem.expert_rows`` and ``problem.total_rows``.
    """

    count: NDArray[np.int64]
    seats: NDArray[np.int64]
    client: list[RowRoom] = field(default_factory=list)
    expert: list[RowRoom] = field(default_factory=list)
    total: list[RowRoom] = field(default_factory=list)

    @property
    def rooms(self) -> list[RowRoom]:
        """Every room: client rows, then expert rows, then total rows."""
        return [*self.client, *self.expert, *self.total]

    @property
    def shared(self) -> list[RowRoom]:
        """The rooms that pairs of different clients share: expert and total rows."""
        return [*self.expert, *self.total]

    def admits(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which pairs fit every upper bound on their own (allowed and unassigned not checked)."""
        ok = (self.count[rows] > 0) & (self.seats[cols] > 0)
        for room in self.rooms:
            ok &= room.admits(rows, cols)
        return ok

    def running(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.bool_]:
        """Which pairs fit every upper bound even if every earlier pair of the batch is added.

        Running sums per client (client rows), per expert (expert rows) and over the whole
        batch (total rows). A pair that passes fits whatever happens to the earlier pairs,
        since every row is a packing row.
        """
        acc = group_cumsum(rows, np.ones(rows.size, dtype=np.int64)) <= self.count[rows]
        acc &= group_cumsum(cols, np.ones(cols.size, dtype=np.int64)) <= self.seats[cols]
        for room in self.rooms:
            acc &= room.running(rows, cols)
        return np.asarray(acc)

    def take(self, rows: NDArray[np.intp], cols: NDArray[np.intp], sign: int = 1) -> None:
        """Record the pairs as added (``sign=1``) or removed (``sign=-1``)."""
        per_client = np.bincount(rows, minlength=self.count.size)
        per_expert = np.bincount(cols, minlength=self.seats.size)
        if sign > 0:
            self.count -= per_client
            self.seats -= per_expert
        else:
            self.count += per_client
            self.seats += per_expert
        for room in self.rooms:
            room.take(rows, cols, float(sign))

    def block(self, rows: Rows = slice(None)) -> NDArray[np.bool_]:
        """``(len(rows), E)`` bool: pairs of these clients that every upper bound admits alone."""
        ok = (self.count[rows] > 0)[:, None] & (self.seats > 0)[None, :]
        for room in self.rooms:
            ok &= room.block(rows)
        return ok


def residual(problem: AlignmentProblem, x: NDArray[np.bool_], *, pairs: Pairs | None = None) -> Residual:
    """Residual capacity of assignment ``x`` under every hard row's upper bound.

    Parameters
    ----------
    problem : AlignmentProblem
    x : (n, E) bool array
    pairs : (rows, cols), optional
        ``assigned(x)``, if the caller has it.

    Returns
    -------
    Residual
    """
    n, e = problem.shape
    # Assignments are sparse: sums over the assigned pairs beat dense (n, E) float passes.
    if pairs is None:
        pairs = assigned(x)
    count = problem.max_experts - np.bincount(pairs[0], minlength=n)
    seats = problem.expert_max_clients - np.bincount(pairs[1], minlength=e)
    return Residual(
        count=count.astype(np.int64),
        seats=seats.astype(np.int64),
        client=rooms_of(problem.client_rows, pairs),
        expert=rooms_of(problem.expert_rows, pairs),
        total=rooms_of(problem.total_rows, pairs),
    )


def floors(problem: AlignmentProblem, x: NDArray[np.bool_]) -> list[RowRoom]:
    """Per hard row with a lower bound (besides the count rows): how much each member can lose.

    ``left = usage - lower`` (tolerance included): a batch of removals is safe when its
    running sums stay within it.
    """
    pairs = assigned(x)
    return [
        *rooms_of(problem.client_rows, pairs, "lower"),
        *rooms_of(problem.expert_rows, pairs, "lower"),
        *rooms_of(problem.total_rows, pairs, "lower"),
    ]


def addable(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    res: Residual | None = None,
    rows: NDArray[np.intp] | None = None,
) -> NDArray[np.bool_]:
    """(n, E) bool: pairs that can be added to ``x`` now without breaking any upper bound.

    A pair is addable when it is allowed, not yet assigned, its client has a free expert
    slot and room in every client row, its expert a free seat and room in every expert
    row, and every total row has room for it. With ``rows``, only those clients' rows are
    computed and returned, shape ``(len(rows), E)``.
    """
    if res is None:
        res = residual(problem, x)
    r: Rows = slice(None) if rows is None else rows
    ok = problem.fits[r] & ~x[r]
    ok &= res.block(r)
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


def group_cumsum(keys: NDArray[np.intp], values: NDArray[Any]) -> NDArray[Any]:
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


@dataclass
class Slack:
    """How far one hard row's members may move: up to the upper bound, down to the lower.

    Attributes
    ----------
    row : Row
    up : (row.size,) float or None
        Room under the upper bound (``upper - usage``, tolerance included); None without one.
    lo : (row.size,) float or None
        Room above the lower bound (``usage - lower``); None without one.
    """

    row: Row
    up: NDArray[np.float64] | None
    lo: NDArray[np.float64] | None

    def alone(self, owner: NDArray[np.intp], delta: NDArray[np.float64]) -> NDArray[np.bool_] | bool:
        """Whether each change ``delta`` of the member ``owner`` (broadcast together) fits alone."""
        ok: NDArray[np.bool_] | bool = True
        if self.up is not None:
            ok = delta <= self.up[owner]
        if self.lo is not None:
            ok = ok & (-delta <= self.lo[owner])
        return ok

    def running(self, owner: NDArray[np.intp], delta: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Which changes of a batch fit with every earlier one of the same member (pessimistic)."""

        def run(v: NDArray[np.float64]) -> NDArray[np.float64]:
            return np.cumsum(v) if self.row.over == "total" else group_cumsum(owner, v)

        ok = np.ones(delta.size, dtype=bool)
        if self.up is not None:
            ok &= run(np.maximum(delta, 0.0)) <= self.up[owner]
        if self.lo is not None:
            ok &= run(np.maximum(-delta, 0.0)) <= self.lo[owner]
        return ok

    def apply(self, owner: NDArray[np.intp], delta: NDArray[np.float64], *, unique: bool = False) -> None:
        """Record applied changes (a few members at a time: no pass over every member).

        ``unique``: no member appears twice in ``owner`` (plain indexing then suffices).
        """
        if unique:
            if self.up is not None:
                self.up[owner] -= delta
            if self.lo is not None:
                self.lo[owner] += delta
            return
        if self.up is not None:
            np.subtract.at(self.up, owner, delta)
        if self.lo is not None:
            np.add.at(self.lo, owner, delta)


def slacks(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    *,
    hold: bool = False,
    pairs: Pairs | None = None,
    res: Residual | None = None,
) -> tuple[list[Slack], list[Slack], list[Slack]]:
    """The :class:`Slack` of every hard client, expert and total row of ``x`` (the count rows aside).

    With ``hold``, a member already outside a bound gets no room on that side (0, not a
    negative room): changes may not take it further out, but may leave it where it is.
    ``pairs`` is ``assigned(x)`` and ``res`` the residual of ``x``, if the caller has them;
    without ``hold``, each slack's room under the upper bound then *is* the residual's room
    (the same array: updating one updates the other).
    """
    if pairs is None:
        pairs = assigned(x)
    shared = {} if res is None or hold else {id(room.row): room.left for room in res.rooms}

    def of(rows: tuple[Row, ...]) -> list[Slack]:
        out = []
        for row in rows:
            if row.upper_cap is None and row.lower_cap is None:
                continue
            if id(row) in shared and row.lower_cap is None:
                out.append(Slack(row, shared[id(row)], None))
                continue
            used = usage(row, pairs)
            up = shared.get(id(row), None if row.upper_cap is None else row.upper_cap - used)
            lo = None if row.lower_cap is None else used - row.lower_cap
            if hold:
                up = None if up is None else np.maximum(up, 0.0)
                lo = None if lo is None else np.maximum(lo, 0.0)
            out.append(Slack(row, up, lo))
        return out

    return of(problem.client_rows), of(problem.expert_rows), of(problem.total_rows)


class Guard:
    """Keeps the rows that a move's local tests do not see from getting worse.

    Alternating paths, swaps and repacking test each client's rows (upper bounds) and the
    count rows as they build a move; a move also changes weighted expert rows, total rows
    and the lower bounds of client rows. The guard holds the usage of those rows and admits
    a move only when no member it touches ends above an upper bound or below a lower bound
    that it was within (a member already outside may not move further out). Without such
    rows (every keyword-only problem) the guard is empty and admits everything.
    """

    def __init__(self, problem: AlignmentProblem, x: NDArray[np.bool_], *, every: bool = False) -> None:
        if every:  # every hard row, the count rows and client upper bounds included
            watched = [r for r in problem.rows if not r.soft]
        else:
            watched = [*problem.expert_rows, *problem.total_rows]
            watched += [r for r in problem.client_rows if r.lower is not None]
        self.rows = [r for r in watched if r.lower is not None or r.upper is not None]
        pairs = assigned(x) if self.rows else (np.zeros(0, np.intp), np.zeros(0, np.intp))
        self.usage = [usage(r, pairs) for r in self.rows]

    def __bool__(self) -> bool:
        return bool(self.rows)

    def _changes(self, row: Row, adds: Pairs, drops: Pairs) -> dict[int, float]:
        """Per member of ``row`` the move touches, the change of its usage.

        A move is a handful of pairs, so plain Python beats array calls here.
        """
        w, over = row.weight, row.over
        by_row, by_col = w.shape[0] != 1, w.shape[1] != 1
        out: dict[int, float] = {}
        for (rows, cols), sign in ((adds, 1.0), (drops, -1.0)):
            for r, c in zip(np.asarray(rows).tolist(), np.asarray(cols).tolist(), strict=True):
                m = r if over == "client" else c if over == "expert" else 0
                out[m] = out.get(m, 0.0) + sign * float(w[r if by_row else 0, c if by_col else 0])
        return out

    def admits(self, adds: Pairs, drops: Pairs) -> bool:
        """Whether adding the pairs ``adds`` and removing ``drops`` keeps every watched row."""
        for row, used in zip(self.rows, self.usage, strict=True):
            upper, lower = row.upper_cap, row.lower_cap
            for m, delta in self._changes(row, adds, drops).items():
                old = float(used[m])
                new = old + delta
                if upper is not None and new > upper[m] and new > old:
                    return False
                if lower is not None and new < lower[m] and new < old:
                    return False
        return True

    def commit(self, adds: Pairs, drops: Pairs) -> None:
        """Record an admitted move."""
        for row, used in zip(self.rows, self.usage, strict=True):
            for m, delta in self._changes(row, adds, drops).items():
                used[m] += delta

    def apply(self, x: NDArray[np.bool_], adds: Pairs, drops: Pairs) -> bool:
        """Apply the move to ``x`` if :meth:`admits` it; returns whether it was applied."""
        if self.rows:
            if not self.admits(adds, drops):
                return False
            self.commit(adds, drops)
        x[drops] = False
        x[adds] = True
        return True

    def accepts(self, x: NDArray[np.bool_]) -> bool:
        """Whether ``x`` as a whole keeps every watched row; if so it becomes the reference."""
        if not self.rows:
            return True
        pairs = assigned(x)
        new = [usage(r, pairs) for r in self.rows]
        for row, old, now in zip(self.rows, self.usage, new, strict=True):
            if row.upper_cap is not None and ((now > row.upper_cap) & (now > old)).any():
                return False
            if row.lower_cap is not None and ((now < row.lower_cap) & (now < old)).any():
                return False
        self.usage = new
        return True
