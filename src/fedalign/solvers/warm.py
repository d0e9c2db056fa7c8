"""Warm starts: what a solver may reuse from an earlier solution of a related problem.

Rounds follow each other: the cohort overlaps, desirability drifts a little, expert loads move
slowly. ``fa.solve(problem, solver, warm_start=previous_solution)`` hands a solver the previous
round's :class:`~fedalign.Solution`; :class:`WarmStart` matches it to the problem at hand **by
id** (client ids, expert ids, row names), since the two problems may differ in every
respect: other clients, other experts, other rows, other bounds. Whatever does not match is
ignored, never an error.

What a solver reuses (its ``Solver.warm_start`` sentence says it too):

* prices (:meth:`WarmStart.prices`): the Lagrangian solver's prices on the expert and total
  rows, stored in ``Solution.info["prices"]`` keyed by row name, side and expert id, and the
  flow solver's expert potentials, stored the same way on the ``"clients per expert"`` row;
* the assignment (:meth:`WarmStart.assignment`): the earlier pairs of the clients and
  experts both problems share, as a hint (CP-SAT) or a MIP start (HiGHS), after repair.

A warm start only ever changes where a search starts: bounds are still proven for the new
problem (a Lagrangian bound holds at *any* admissible prices; a hint or MIP start is a
starting point that the solver checks), and assignments are still checked by
:func:`fedalign.check`.

``info["prices"]`` layout (JSON-ready: names and ids as keys, floats as values)::

    {"expert": {row name: {"upper": {expert id: price}, "lower": {expert id: price}}},
     "total":  {row name: {"upper": price, "lower": price}}}
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..problem import AlignmentProblem

if TYPE_CHECKING:
    from .base import Solution

__all__ = ["SIDES", "WarmStart", "price_info"]

#: The two sides of a row, as ``info["prices"]`` names them.
SIDES = ("upper", "lower")


def price_info(
    expert_ids: Sequence[Hashable],
    entries: Sequence[tuple[str, str, str, NDArray[np.float64]]],
) -> dict[str, Any]:
    """``info["prices"]`` from ``(row name, over, side, values)`` entries (see the module docstring).

    ``over`` is ``"expert"`` (``values`` has one price per expert, in ``expert_ids``' order)
    or ``"total"`` (one value). Prices are stored as plain floats.
    """
    out: dict[str, Any] = {"expert": {}, "total": {}}
    for name, over, side, values in entries:
        if over == "expert":
            per = dict(zip(expert_ids, (float(v) for v in values), strict=True))
            out["expert"].setdefault(name, {})[side] = per
        elif over == "total":
            out["total"].setdefault(name, {})[side] = float(values[0])
    return out


class WarmStart:
    """An earlier :class:`~fedalign.Solution` matched, by id, to the problem being solved.

    Parameters
    ----------
    problem : AlignmentProblem
        The problem being solved now.
    solution : Solution
        A solution of an earlier, related problem (any shape, ids and rows).

    Attributes
    ----------
    solution : Solution
    clients : (n_clients,) intp array
        For each client of ``problem``, its position in the earlier problem (-1: new).
    experts : (n_experts,) intp array
        For each expert of ``problem``, its position in the earlier problem (-1: new).
    """

    def __init__(self, problem: AlignmentProblem, solution: Solution) -> None:
        self.problem = problem
        self.solution = solution
        before = solution.problem
        if before is problem:
            self.clients = np.arange(problem.n_clients, dtype=np.intp)
            self.experts = np.arange(problem.n_experts, dtype=np.intp)
        else:
            self.clients = _match(before.client_ids, problem.client_ids, before.client_positions)
            self.experts = _match(before.expert_ids, problem.expert_ids, before.expert_positions)

    @property
    def n_clients(self) -> int:
        """How many clients of the problem the earlier solution knew."""
        return int((self.clients >= 0).sum())

    @property
    def n_experts(self) -> int:
        """How many experts of the problem the earlier solution knew."""
        return int((self.experts >= 0).sum())

    def summary(self) -> dict[str, Any]:
        """What was matched, for ``Solution.info["warm_start"]``."""
        return {
            "from_solver": self.solution.solver,
            "clients_matched": self.n_clients,
            "experts_matched": self.n_experts,
        }

    def assignment(self) -> NDArray[np.bool_]:
        """``(n, E)`` bool: the earlier pairs of shared clients and experts that fit ``problem``.

        Not feasible in general (other bounds, new clients without experts): a start for a
        repair, a hint or a MIP start, never a plan as it is.
        """
        n, e = self.problem.shape
        x = np.zeros((n, e), dtype=bool)
        ci = np.flatnonzero(self.clients >= 0)
        ej = np.flatnonzero(self.experts >= 0)
        if ci.size and ej.size:
            before = np.asarray(self.solution.assignment, dtype=bool)
            x[np.ix_(ci, ej)] = before[np.ix_(self.clients[ci], self.experts[ej])]
        return x & self.problem.fits

    def prices(self, name: str, over: str, side: str) -> NDArray[np.float64]:
        """The earlier prices of one side of a row, matched to ``problem``.

        Parameters
        ----------
        name : str
            Row name (``"clients per expert"``, ``"round load"``, yours).
        over : {"expert", "total"}
        side : {"upper", "lower"}

        Returns
        -------
        (n_experts,) or (1,) float array
            NaN where nothing usable is known: an expert or row the earlier solution did
            not price, or a value that is not a finite number >= 0.
        """
        table = _table(self.solution.info, over, name, side)
        if over == "total":
            return np.array([_price(table)])
        out = np.full(self.problem.n_experts, np.nan)
        if isinstance(table, Mapping):
            get = table.get
            out[:] = [_price(get(eid)) for eid in self.problem.expert_ids]
        return out


def _match(
    before: tuple[Hashable, ...], now: tuple[Hashable, ...], positions: Any
) -> NDArray[np.intp]:
    """Each id of ``now``'s position in ``before`` (-1 if absent); free when the ids are equal."""
    if before == now:
        return np.arange(len(now), dtype=np.intp)
    return np.asarray(positions(now), dtype=np.intp)


def _table(info: Any, over: str, name: str, side: str) -> Any:
    """``info["prices"][over][name][side]``, or None where any level is missing or malformed."""
    node: Any = info
    for key in ("prices", over, name, side):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _price(value: Any) -> float:
    """A stored price as a float, NaN unless it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return math.nan
    v = float(value)
    return v if math.isfinite(v) and v >= 0 else math.nan
