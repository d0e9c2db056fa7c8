"""What a round hands out and what comes back: :class:`Plan` and :class:`Feedback`.

:meth:`fedalign.Scheduler.plan` returns a :class:`Plan` (the assignment, the solver's
:class:`~fedalign.Solution`, the problem and the desirability's terms, with
:meth:`Plan.explain`); each client answers with a :class:`Feedback`, validated on
construction, passed to :meth:`fedalign.Scheduler.report`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidFeedbackError
from .problem import AlignmentProblem, capacity_tolerance
from .solvers import Solution

__all__ = ["Feedback", "Plan"]


# --------------------------------------------------------------------------- feedback


@dataclass(frozen=True)
class Feedback:
    """What a client reports after a round.

    Parameters
    ----------
    samples : int >= 0
        Samples it trained on (each expert it trained saw them).
    rewards : mapping expert_id -> float in [0, 1]
        One entry per expert it trained: e.g. the share of its samples its gate routed to
        the expert, or the expert's accuracy on its data as received. Experts it was given
        but left out get no fitness and no usage credit.
    duration : float >= 0, optional
        Seconds the round took on the client (for a dropout: until it gave up).
    completed : bool
        False for a dropout: no fitness and no usage credit; the profiler learns from it.

    Raises
    ------
    InvalidFeedbackError
        A field of the wrong type or out of range.
    """

    samples: int
    rewards: Mapping[Hashable, float] = field(default_factory=dict)
    duration: float | None = None
    completed: bool = True

    def __post_init__(self) -> None:
        s = self.samples
        if isinstance(s, bool) or not isinstance(s, (int, np.integer, float, np.floating)):
            raise InvalidFeedbackError(f"Feedback.samples: expected an int >= 0, got {s!r}")
        if not math.isfinite(float(s)) or s < 0 or float(s) != int(s):
            raise InvalidFeedbackError(f"Feedback.samples: expected an int >= 0, got {s!r}")
        object.__setattr__(self, "samples", int(s))
        if not isinstance(self.rewards, Mapping):
            raise InvalidFeedbackError(
                f"Feedback.rewards: expected a mapping expert_id -> reward, got {type(self.rewards).__name__}"
            )
        clean: dict[Hashable, float] = {}
        for k, v in self.rewards.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise InvalidFeedbackError(f"Feedback.rewards[{k!r}]: expected a number, got {v!r}")
            fv = float(v)
            if not (math.isfinite(fv) and 0.0 <= fv <= 1.0):
                raise InvalidFeedbackError(
                    f"Feedback.rewards[{k!r}]: expected a finite value in [0, 1], got {v!r}"
                )
            clean[k] = fv
        object.__setattr__(self, "rewards", clean)
        d = self.duration
        if d is not None:
            if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)):
                raise InvalidFeedbackError(f"Feedback.duration: expected seconds >= 0, got {d!r}")
            if not (math.isfinite(float(d)) and d >= 0):
                raise InvalidFeedbackError(f"Feedback.duration: expected seconds >= 0, got {d!r}")
            object.__setattr__(self, "duration", float(d))
        if not isinstance(self.completed, (bool, np.bool_)):
            raise InvalidFeedbackError(f"Feedback.completed: expected a bool, got {self.completed!r}")
        object.__setattr__(self, "completed", bool(self.completed))


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    """One round's plan: which experts each client of the cohort trains, and why.

    Attributes
    ----------
    round : int
        The round number; pass it back to :meth:`Scheduler.report`.
    assignment : dict
        ``{client_id: [expert_id, ...]}`` for every client of the cohort.
    solution : Solution
        The solver's result (objective, bound, gap, solver, runtime).
    problem : AlignmentProblem
        The problem that was solved.
    terms : dict of str -> ndarray
        The desirability's parts per (cohort client, expert): ``fitness``, ``usage`` (raw,
        per expert), ``usage_norm`` (per expert), ``time`` (seconds, or NaN), ``exploration``.
    """

    round: int
    assignment: dict[Hashable, list[Hashable]]
    solution: Solution
    problem: AlignmentProblem = field(repr=False)
    terms: dict[str, NDArray[np.float64]] = field(repr=False, default_factory=dict)

    def explain(self, client_id: Hashable) -> list[dict[str, Any]]:
        """Per expert, why the client got it or not.

        Returns
        -------
        list of dict
            One dict per expert, in expert order, with ``expert``, ``fitness``, ``usage``
            (raw EMA), ``usage_norm``, ``train_time`` and ``deadline`` (seconds, or None
            without a deadline policy), ``exploration``,
            ``desirability``, ``chosen`` (bool) and ``reason`` (a sentence; for chosen
            experts, ``"chosen"``).

        Raises
        ------
        KeyError
            The client is not in this plan's cohort.
        """
        p = self.problem
        try:
            i = p.client_position(client_id)
        except KeyError:
            raise KeyError(f"client_id: {client_id!r} is not in round {self.round}'s cohort") from None
        x = self.solution.assignment
        chosen = x[i]
        n_chosen = int(chosen.sum())
        d = p.desirability[i]
        e = p.n_experts
        # per expert: does it fit the client alone, and on top of what it already got?
        mem_alone = mem_left = np.ones(e, dtype=bool)
        if p.expert_memory is not None and p.client_memory is not None:
            cap = float(p.client_memory[i] + capacity_tolerance(p.client_memory[i]))
            mem_alone = p.expert_memory <= cap
            mem_left = float(p.expert_memory @ chosen) + p.expert_memory <= cap
        time_alone = time_left = np.ones(e, dtype=bool)
        t_i = dl_i = None
        if p.train_time is not None and p.deadline is not None:
            t_i, dl_i = p.train_time[i], float(p.deadline[i])
            cap = dl_i + float(capacity_tolerance(p.deadline[i]))
            time_alone = t_i <= cap
            time_left = float(t_i @ chosen) + t_i <= cap
        full = x.sum(axis=0) >= p.expert_max_clients
        worst_chosen = float(d[chosen].min()) if n_chosen else math.inf
        k = int(p.max_experts[i])

        def reason(j: int) -> str:
            if chosen[j]:
                return "chosen"
            if not p.allowed[i, j]:
                return "pair not allowed"
            if not mem_alone[j]:
                return (
                    f"needs {p.expert_memory[j]:g} memory, "  # type: ignore[index]
                    f"client has {p.client_memory[i]:g}"  # type: ignore[index]
                )
            if not time_alone[j]:
                return f"needs {t_i[j]:.3g} s, deadline is {dl_i:.3g} s"  # type: ignore[index]
            if full[j]:
                return f"expert full: expert_max_clients is {p.expert_max_clients[j]}"
            if n_chosen >= k:
                if d[j] <= worst_chosen:
                    return f"client at max_experts ({k}); not ranked above its chosen experts"
                return f"client at max_experts ({k}); its slot served the round better elsewhere"
            if not mem_left[j]:
                return "would exceed the client's remaining memory"
            if not time_left[j]:
                return "would exceed the client's remaining time before the deadline"
            if d[j] <= 0:
                return "desirability not positive"
            return "the solver's assignment left it out (global trade-off)"

        terms = self.terms
        out = []
        for j, eid in enumerate(p.expert_ids):
            t = None if t_i is None else float(t_i[j])
            out.append(
                {
                    "expert": eid,
                    "fitness": float(terms["fitness"][i, j]) if "fitness" in terms else None,
                    "usage": float(terms["usage"][j]) if "usage" in terms else None,
                    "usage_norm": float(terms["usage_norm"][j]) if "usage_norm" in terms else None,
                    "train_time": t,
                    "deadline": dl_i,
                    "exploration": float(terms["exploration"][i, j]) if "exploration" in terms else None,
                    "desirability": float(d[j]),
                    "chosen": bool(chosen[j]),
                    "reason": reason(j),
                }
            )
        return out
