"""The primal side: feasible assignments from the subproblems' choices.

Each subproblem choice satisfies every client row (except where a relaxed client missed a
lower bound) but may overfill experts or leave them below their minimum, and it ignores the
other priced rows. :func:`price_repair` lets every over-full expert keep the holders that
value it most while the others re-solve their own knapsack with the full experts closed,
and :func:`cover_minimums` pulls clients onto experts below their minimum: both work on the
expert count row. What is left, every other row included, is for
:func:`fedalign.solvers.repair.repair`, with the reduced profit (which carries the prices of
every priced row) as priority; :func:`polish` runs the shared local search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from ...problem import BUILTIN_ROWS, AlignmentProblem, check
from ..base import Budget
from ..repair import add_in_order, addable, group_cumsum, local_search
from ._common import NEG

if TYPE_CHECKING:
    from ._subproblems import Subproblems


def price_repair(
    problem: AlignmentProblem,
    sub: Subproblems,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    rounds: int = 4,
    cap: NDArray[np.float64] | None = None,
    budget: Budget | None = None,
) -> NDArray[np.bool_]:
    """Make the subproblem choice respect the expert maximums by re-solving, not trimming.

    Each round, every over-full expert keeps the holders that value it most (reduced
    profit) and drops the rest; each client that lost an expert re-solves its own knapsack
    with the experts that are now full closed to it, so it moves to its best remaining
    subset instead of merely losing a member. A few rounds settle most conflicts; what is
    left (and every minimum) is for :func:`repair`. ``cap`` replaces the expert maximums
    (:func:`soft_caps`: with the soft count rows' upper bounds as if they were hard).
    Rounds stop when ``budget`` runs out.
    """
    x = x.copy()
    if cap is None:
        cap = problem.expert_max_clients.astype(np.float64)
    else:
        # Soft caps usually bind on many experts at once (clients that prefer experts alike
        # move together, one expert further each round): a full expert stays closed, so at
        # most E rounds.
        rounds = max(rounds, problem.n_experts + 1)
    r = problem.desirability - _on_rows(price, None)
    for _ in range(rounds):
        if budget is not None and budget.expired():
            break
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
        r_rows = np.where(full[None, :] & ~x[rows], NEG, sub.dm[rows] - _on_rows(price, rows))
        r_mod = np.empty_like(sub.dm)  # only the moved rows are read
        r_mod[rows] = r_rows
        new = sub.best_sets(r_mod, rows, None if budget is None else budget.deadline)
        # A client left below its minimum keeps what it had (the final repair settles it).
        short = new.sum(axis=1) < problem.min_experts[rows]
        if sub.has_low:
            short |= ~sub.knapsack_ok(rows, new)
        new[short] = before[rows[short]]
        x[rows] = new
        cover_minimums(problem, sub, x, price, r, None if budget is None else budget.deadline)
    return x


def cover_minimums(
    problem: AlignmentProblem,
    sub: Subproblems,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    r: NDArray[np.float64],
    deadline: float | None = None,
) -> None:
    """Experts below their minimum each pull in the clients that value them most (in place).

    Each such client re-solves its knapsack with the expert forced in (a large profit) and
    the full experts closed; experts it then gives up may fall short in turn, which the
    next round of :func:`price_repair` handles (an ejection chain, one link per round).
    ``deadline`` (perf_counter time) stops the re-solves (:meth:`Subproblems.best_sets`).
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
    r_rows = np.where(full[None, :] & ~x[rows], NEG, sub.dm[rows] - _on_rows(price, rows))
    r_rows = np.where(force[rows], big, r_rows)
    r_mod = np.empty_like(sub.dm)
    r_mod[rows] = r_rows
    new = sub.best_sets(r_mod, rows, deadline)  # a client not reached misses its forced expert
    ok = (new & force[rows]).sum(axis=1) == force[rows].sum(axis=1)
    ok &= new.sum(axis=1) >= problem.min_experts[rows]
    if sub.has_low:
        ok &= sub.knapsack_ok(rows, new)
    x[rows[ok]] = new[ok]


def soft_caps(problem: AlignmentProblem) -> NDArray[np.float64] | None:
    """The expert maximums with every soft unit-weight expert row's upper bound as a cap.

    None when there is no such row. When every client's subproblem prefers the same experts
    (desirabilities that move alike, as in a scheduler's round), the subproblems' choice
    piles the whole cohort onto them and a soft row only charges for it; re-solving with
    these caps spreads the cohort, which the caller keeps where it pays (see
    :func:`._prices._primal_step`).
    """
    caps = problem.expert_max_clients.astype(np.float64)
    found = False
    for row in problem.soft_rows:
        if row.over == "expert" and row.upper is not None and row.unit:
            caps = np.minimum(caps, np.floor(np.broadcast_to(row.upper, caps.shape) + 1e-9))
            found = True
    return caps if found else None


def trim_to_caps(
    x: NDArray[np.bool_], d: NDArray[np.float64], price: NDArray[np.float64], caps: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """``x`` with every expert above its cap cut back to the cap, its best holders kept.

    Each over-full expert keeps the ``cap`` holders with the highest reduced profit
    (``d`` minus ``price``, per expert ``(E,)`` or per pair ``(n, E)``, read for the holders
    only); the others lose it and re-solve nothing (:func:`cover_to_caps` then gives clients
    left below their minimum their best expert with room). One sort of each over-full
    expert's holders: a spread in a fraction of a second where :func:`price_repair` with
    caps re-solves knapsacks for up to E rounds (at 100,000 x 128 it does not finish in 5 s).
    """
    x = x.copy()
    load = x.sum(axis=0)
    for j in np.flatnonzero(load > caps):  # a loop over experts, not pairs
        holders = np.flatnonzero(x[:, j])
        excess = int(load[j] - caps[j])
        reduced = d[holders, j] - (price[j] if price.ndim == 1 else price[holders, j])
        x[holders[np.argsort(reduced, kind="stable")[:excess]], j] = False
    return x


def cover_to_caps(
    problem: AlignmentProblem,
    x: NDArray[np.bool_],
    price: NDArray[np.float64],
    caps: NDArray[np.float64],
    budget: Budget | None = None,
) -> None:
    """Clients below ``min_experts`` take their best addable expert still below its cap (in place).

    Rounds of proposals: each short client proposes its best expert by reduced profit
    (desirability minus ``price``, computed for the short clients only) that fits and
    has room under ``caps``; an expert accepts as many as it has room, best first; the hard
    rows are checked pair by pair (:func:`~fedalign.solvers.repair.add_in_order`). Ends when
    no client is short, none can propose, or ``budget`` runs out; what is left is for
    :func:`~fedalign.solvers.repair.repair`.
    """
    for _ in range(problem.n_experts):
        if budget is not None and budget.expired():
            return
        rows = np.flatnonzero(x.sum(axis=1) < problem.min_experts)
        if rows.size == 0:
            return
        room = caps - x.sum(axis=0)
        ok = addable(problem, x, rows=rows) & (room > 0)[None, :]
        has = ok.any(axis=1)
        if not has.any():
            return
        rows, ok = rows[has], ok[has]
        key = problem.desirability[rows] - _on_rows(price, rows)
        cols = np.argmax(np.where(ok, key, -np.inf), axis=1)
        order = np.argsort(-key[np.arange(rows.size), cols], kind="stable")
        rows, cols = rows[order], cols[order]
        take = group_cumsum(cols, np.ones(cols.size, dtype=np.int64)) <= room[cols]
        add_in_order(problem, x, rows[take], cols[take])


def _on_rows(price: NDArray[np.float64], rows: NDArray[np.int64] | None) -> NDArray[np.float64]:
    """The prices of the listed clients' pairs (all with None), broadcastable to their rows.

    ``price`` is one price per expert ``(E,)`` or one per pair ``(n, E)`` (:mod:`._duals`).
    """
    if price.ndim == 1:
        return price[None, :]
    return price if rows is None else price[rows]


def has_user_rows(problem: AlignmentProblem) -> bool:
    """Whether the problem has rows besides the keyword ones (``rows=``)."""
    return any(r.name not in BUILTIN_ROWS for r in problem.rows)


def polish(problem: AlignmentProblem, x: NDArray[np.bool_], budget: Budget) -> NDArray[np.bool_]:
    """:func:`local_search` on ``x`` with what is left of the budget; ``x`` if it is not better.

    On problems with your own rows the result is also checked (the local search may not
    know every kind of row).
    """
    remaining = budget.remaining(default=float("inf"))
    if remaining <= 0:
        return x
    out = local_search(problem, x, budget=None if remaining == float("inf") else remaining)
    if has_user_rows(problem) and check(problem, out):
        return x
    return out if problem.objective(out) >= problem.objective(x) else x
