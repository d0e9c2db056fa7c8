"""The shared toolkit of the heuristic solvers: residual capacities, ordered greedy insertion,
repair of any 0/1 matrix into a feasible assignment, and a feasibility-keeping local search.

Every function here works on a plain ``(n_clients, n_experts)`` bool matrix and an
:class:`~fedalign.AlignmentProblem`, generically over its rows (the two count rows, on which
alternating paths are built, and any number of client, expert and total rows); nothing is
solver-specific. The code is vectorised over
clients. Where a loop is needed it runs over experts or pairs of experts (the small
dimension), over rounds in which many clients move at once, over breadth-first layers, or
over the few clients still violating a constraint -- never over all client-expert pairs.

Main entry points
-----------------
:func:`repair`
    Any ``x`` (a rounded LP, a per-client top-k that ignored expert caps, random bits) to a
    feasible assignment close to it, preferring high desirability. Upper bounds are met by
    trimming (per client, per expert, then over all pairs for total rows); the count
    minimums by direct additions, then by alternating paths (the augmenting paths of
    bipartite b-matching, searched from all short clients or experts at once), then by
    repacking a client's row around its client rows; lower bounds of weighted rows by
    additions and swaps. With the count rows alone this finds a feasible assignment
    whenever one exists; with other rows it is a heuristic and may raise
    :class:`~fedalign.InfeasibleError` on a feasible but tight problem (the message names
    the row and says so). Soft rows never constrain it.
:func:`add_in_order`, :func:`add_best_first`
    Add candidate pairs in a given order, each one only if it still fits every upper bound:
    the exact result of the sequential greedy, computed in vectorised chunks (see their
    docstrings).
:func:`fill`
    Greedy addition of every positive pair that still fits, best first; with soft rows, only
    while a pair's desirability exceeds the penalty it adds.
:func:`local_search`
    Improving drop / replace / seat-shift / two-client-trade moves that keep feasibility
    (every hard row) and never lower the objective (penalties included).
:func:`residual`, :func:`addable`
    What each client, expert and total row can still take.

Modules
-------
:mod:`.capacity`
    :class:`Residual` (one :class:`RowRoom` per hard row with an upper bound),
    :func:`residual`, :func:`floors`, :func:`addable`, :func:`order_key`,
    :func:`group_cumsum` (the running sums that test a batch of changes against the rooms)
    and :class:`Guard` (the rows a move's local tests do not see).
:mod:`.insertion`
    :func:`add_in_order`, :func:`add_best_first`, :func:`fill`, :func:`fill_priced`.
:mod:`.soft`
    Windows and prices that make an insertion pay for the soft rows' penalties.
:mod:`.augment`
    Alternating paths from short clients or short experts, and row repacking.
:mod:`.lower`
    Lower bounds of weighted rows: additions, then guarded swaps.
:mod:`.feasibility`
    :func:`repair` and its phases (trim, meet the minimums).
:mod:`.polish`
    :func:`local_search` and its moves.

Import from this package, not from the modules: the split into modules is internal.
"""

from __future__ import annotations

from ..base import RowSupport
from .capacity import Guard, Residual, RowRoom, addable, floors, group_cumsum, order_key, residual
from .feasibility import FILL_SECONDS_PER_PAIR, repair
from .insertion import add_best_first, add_in_order, fill, fill_priced
from .polish import local_search

__all__ = [
    "FILL_SECONDS_PER_PAIR",
    "ROW_SUPPORT",
    "Guard",
    "Residual",
    "RowRoom",
    "add_best_first",
    "add_in_order",
    "addable",
    "fill",
    "fill_priced",
    "floors",
    "group_cumsum",
    "local_search",
    "order_key",
    "repair",
    "residual",
]

#: What the toolkit, and the heuristics built on it (topk, greedy, random), handle: hard
#: client, expert and total rows with any weights and lower and/or upper bounds, and soft
#: rows of every kind (which never constrain feasibility).
ROW_SUPPORT = tuple(
    RowSupport(over, "any", soft=soft) for soft in (False, True) for over in ("client", "expert", "total")
)
