"""``lagrangian``: prices on the rows that span clients, an exact small knapsack per client.

Client rows (the count ``"experts per client"``, memory, deadline, your own) only involve
one client each; every other row -- the expert count row ``"clients per expert"``, weighted
expert rows, total rows, soft expert and total rows -- is relaxed with prices (``lam >= 0``
on an upper bound, ``mu >= 0`` on a lower one; :mod:`._duals`). That splits the problem into
one independent subproblem per client::

    v_i(r) = max  sum_j r[i, j] x[i, j]          r[i, j] = d[i, j] - sum_rows (lam - mu) w[i, j]
             s.t. min_experts[i] <= sum_j x[i, j] <= max_experts[i]
                  every hard client row of client i, forbidden pairs

and the dual function ``L = sum_i v_i(r) + sum_rows (lam . upper - mu . lower) + soft
terms`` is an upper bound on the optimum (desirability minus penalties) for *every*
admissible price vector, provided each ``v_i`` is solved exactly or replaced by a valid
upper bound of it. A soft row's price is capped at its last band price and adds the convex
term ``sum_{c<k} (lam - p_c)^+`` (the exact relaxation of its band cost). The solver reports
the smallest ``L`` it saw as :attr:`Solution.bound`.

How each client's subproblem is solved (vectorised over clients; loops run over the small
dimensions only: candidate positions, experts, search levels, or chunks of clients):

1. **Count relaxation.** Drop the other client rows: the optimum takes the
   ``min_experts[i]`` best experts plus every further positive one up to ``max_experts[i]``.
   When that choice also satisfies the client's rows it is optimal for the full subproblem
   (it is optimal for a relaxation and feasible). Without other client rows this is all
   there is. ``max_experts`` is first tightened to how many of the client's lightest experts
   fit together under each upper bound (an implied limit, so nothing is lost).
2. **Dominance filter** (one client row besides the count, with an upper bound and no lower
   one, :mod:`._dominance`): an expert with ``c`` lighter experts of at least its reduced
   profit can be dropped, where ``c`` is ``max_experts`` (``min_experts`` for a non-positive
   profit), lowered to how many experts can sit beside it in the capacity. What is left are
   the *candidates*.
3. **Enumeration over the top-m candidates** (:mod:`._enumeration`; clients whose count
   choice breaks a client row and ``max_experts[i] <= max_enum_experts``; first call
   only), with a certificate of exactness.
4. **Branch and bound** (:mod:`._branch_and_bound`) for the other clients, breadth first,
   all clients of a chunk at once, with an LP (weak-duality) bound per upper bound; a subset
   counts only when every lower bound holds (bounds drop lower bounds, so stay valid). A
   client whose search is cut short (``node_budget``) or pruned within ``bb_tol`` adds a
   *valid upper bound* of its subproblem, so ``L`` stays a proven bound;
   ``info["exact_subproblems"]`` says whether every search completed.
5. **Integer dynamic programme** (:mod:`._knapsack_dp`; one client row, an upper bound
   with integer weights and capacities, e.g. OR-Library GAP, where a client may take many
   experts).
6. **Otherwise** (many experts per client with real weights, :mod:`._relaxation`): a
   ratio-greedy choice, and as bound the smallest of the count relaxation and the LP
   (Dantzig) relaxation of each upper bound on its own -- each a relaxation, so a valid
   bound.

Prices follow the box-step cutting-plane method (:mod:`._prices`). From 1,000 clients up,
prices are first found on random samples of the clients (:mod:`._sampling`; every row
carried, bounds of expert and total rows scaled to the sample's share), each phase
warm-starting the next; only the last phase works on every client.

Primal side (:mod:`._primal`): each subproblem choice satisfies every client row but may
overfill experts and ignores the other priced rows. A price-guided repair first lets every
over-full expert keep the holders that value it most while the others re-solve their own
knapsack with the full experts closed; then :func:`fedalign.solvers.repair.repair` (reduced
profit, which carries every row's price, as priority) settles what is left, including
minimums and the other rows, and :func:`~fedalign.solvers.repair.local_search` polishes each
new best assignment and the final one. On problems with your own rows a plan is kept only
when it passes :func:`fedalign.check`. The method is anytime: it stops at
``time_limit`` (before an evaluation that would not finish in time), after ``max_iter``
evaluations, or when the gap falls to ``gap_tol``.

Modules
-------
:mod:`._solver`
    :class:`LagrangianSolver`: options, the sample phases, the full phase, the polish.
:mod:`._subproblems`
    The per-client subproblems and which method solves each.
:mod:`._dominance`, :mod:`._enumeration`, :mod:`._branch_and_bound`
    The methods for clients that take few experts.
:mod:`._knapsack_dp`, :mod:`._relaxation`
    The methods for clients that take many.
:mod:`._duals`
    The priced rows and the dual function's terms (value, subgradient, soft rows).
:mod:`._prices`
    The box-step cutting-plane dual ascent.
:mod:`._primal`
    Price repair, minimum cover, polish.
:mod:`._sampling`
    The sample problems of the price phases.
"""

from __future__ import annotations

from ._solver import LagrangianSolver

__all__ = ["LagrangianSolver"]
