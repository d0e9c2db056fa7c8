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
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ._validation import (
    Boolean,
    InstanceOf,
    Interval,
    Table,
    short_repr,
    validate,
    validate_one,
)
from .errors import InvalidFeedbackError
from .problem import AlignmentProblem, capacity_tolerance
from .solvers import Solution

__all__ = ["Feedback", "Plan"]


# --------------------------------------------------------------------------- feedback

#: Most samples a report may claim: counts are stored as float64, exact up to 2**53, and an
#: integer of 400 digits must be refused by name rather than overflow when the round closes.
MAX_SAMPLES = 2**53

#: What one reward may be.
_REWARD = Interval(float, 0, 1)


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
        A field of the wrong type or out of range; the message names the field (the expert
        for a reward) and shows the value.
    """

    _parameter_constraints: ClassVar[Table] = {
        "samples": [Interval(int, 0, MAX_SAMPLES, integral_floats=True)],
        "rewards": [InstanceOf(Mapping, "mapping expert_id -> reward")],
        "duration": [Interval(float, 0, None), None],
        "completed": [Boolean()],
    }

    samples: int
    rewards: Mapping[Hashable, float] = field(default_factory=dict)
    duration: float | None = None
    completed: bool = True

    def __post_init__(self) -> None:
        table = self._parameter_constraints
        checked = validate(
            table,
            {name: getattr(self, name) for name in table},
            error=InvalidFeedbackError,
            prefix="Feedback.",
        )
        checked["rewards"] = {k: _reward(k, v) for k, v in checked["rewards"].items()}
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def _reward(expert_id: Hashable, value: Any) -> float:
    """One reward as a float in [0, 1]; the error names the expert."""
    try:
        return float(_REWARD.convert(value))
    except (ValueError, TypeError, OverflowError):
        # the message (and the expert id's repr) only when it is needed: reports are many
        return float(
            validate_one(
                f"Feedback.rewards[{short_repr(expert_id)}]",
                value,
                [_REWARD],
                error=InvalidFeedbackError,
            )
        )


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
