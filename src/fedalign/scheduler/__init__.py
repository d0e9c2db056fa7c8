"""The paper's system: a stateful :class:`Scheduler` that plans each round and learns from it.

Each round the scheduler turns its state (fitness, usage, client profiles) into one
:class:`~fedalign.AlignmentProblem` for the cohort of participating clients, solves it with
the chosen solver, and hands back a :class:`Plan`. Clients train, then
:meth:`Scheduler.report` their :class:`Feedback`; :meth:`Scheduler.end_round` folds the round
into usage and fitness (or :meth:`Scheduler.plan` does it when the next round starts).

Desirability of client ``i`` for expert ``j`` (each term is shown by :meth:`Plan.explain`)::

    d[i, j] =  fitness_weight     · F[i, j]                      # suits the client's data
             − usage_weight       · Ũ[j]                         # expert already busy
             − time_weight        · t[i, j] / deadline_i          # slow for this client
             + exploration_weight · sqrt(ln(R + 2) / (1 + n[i, j]))   # rarely tried pair

``Ũ`` is usage normalised across experts (``usage_norm``: ``U / max U`` by default), ``t`` the
profiler's expected seconds, ``R`` the number of closed rounds and ``n[i, j]`` how often the
pair trained. The constraints are the client's memory and deadline knapsacks, its
``min_experts``/``max_experts``, and per-expert ``expert_min_clients``/``expert_max_clients``.

The package, by purpose:

- :mod:`.core` — :class:`Scheduler`: registry, ``plan``, ``report``, ``end_round``, undo;
- :mod:`.settings` — :class:`SchedulerSettings`, the frozen, validated settings;
- :mod:`.desirability` — the formula above, ``d`` and its terms;
- :mod:`.capacity` — the cohort's constraint rows (knapsacks, per-client minimum);
- :mod:`.rounds` — the open round's cohort and reports;
- :mod:`.persistence` — ``state_dict`` layout (format :data:`STATE_FORMAT_VERSION`);
- :mod:`.state_file` — the atomic, checksummed file container.
"""

from __future__ import annotations

from ..plan import Feedback, Plan
from .core import Scheduler
from .persistence import STATE_FORMAT_VERSION
from .settings import SchedulerSettings

__all__ = ["Feedback", "Plan", "Scheduler", "SchedulerSettings", "STATE_FORMAT_VERSION"]
