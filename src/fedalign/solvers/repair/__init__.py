"""The shared toolkit of the heuristic solvers: residual capacities, ordered greedy insertion,
repair of any 0/1 matrix into a feasible assignment, and a feasibility-keeping local search.

Every function here works on a plain ``(n_clients, n_experts)`` bool matrix and an
:class:`~fedalign.AlignmentProblem`; nothing is solver-specific. The code is vectorised over
clients. Where a loop is needed it runs over experts or pairs of experts (the small
dimension), over rounds in which many clients move at once, over breadth-first layers, or
over the few clients still violating a constraint -- never over all client-expert pairs.

Main entry points
-----------------
:func:`repair`
    Any ``x`` (a rounded LP, a per-client top-k that ignored expert caps, random bits) to a
    feasible assignment close to it, preferring high desirability. Minimums are met by
    direct additions, then by alternating paths (the augmenting paths of bipartite
    b-matching, searched from all short clients or experts at once), then by repacking a
    client's row around its knapsacks. Without knapsack rows this finds a feasible
    assignment whenever one exists; with them it is a heuristic and may raise
    :class:`~fedalign.InfeasibleError` on a feasible but tight problem (the message says so).
:func:`add_in_order`, :func:`add_best_first`
    Add candidate pairs in a given order, each one only if it still fits: the exact result
    of the sequential greedy, computed in vectorised chunks (see their docstrings).
:func:`fill`
    Greedy addition of every positive pair that still fits, best first.
:func:`local_search`
    Improving drop / replace / seat-shift / two-client-trade moves that keep feasibility.
:func:`residual`, :func:`addable`
    What each client and expert can still take.

Modules
-------
:mod:`.capacity`
    :class:`Residual`, :func:`residual`, :func:`addable`, :func:`order_key`, and the
    per-group running sums that test a batch of changes against residual capacity.
:mod:`.insertion`
    :func:`add_in_order`, :func:`add_best_first`, :func:`fill`.
:mod:`.augment`
    Alternating paths from short clients or short experts, and row repacking.
:mod:`.feasibility`
    :func:`repair` and its phases (trim, meet the minimums).
:mod:`.polish`
    :func:`local_search` and its moves.

Import from this package, not from the modules: the split into modules is internal.
"""

from __future__ import annotations

from .capacity import Residual, addable, order_key, residual
from .feasibility import repair
from .insertion import add_best_first, add_in_order, fill
from .polish import local_search

__all__ = [
    "Residual",
    "add_best_first",
    "add_in_order",
    "addable",
    "fill",
    "local_search",
    "order_key",
    "repair",
    "residual",
]
