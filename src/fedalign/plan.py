"""What a round hands out and what comes back: :class:`Plan` and :class:`Feedback`.

:meth:`fedalign.Scheduler.plan` returns a :class:`Plan` (the assignment, the solver's
:class:`~fedalign.Solution`, the problem and the desirability's terms, with
:meth:`Plan.explain`, whose :class:`Explanation` prints as a table); each client answers with a :class:`Feedback`, validated on
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
from .problem import COUNT_ROW, DEADLINE_ROW, SEAT_ROW, AlignmentProblem
from .rows import Row
from .solvers import Solution

__all__ = ["MAX_NOISY_REWARD", "Explanation", "Feedback", "Plan", "why_not"]


# --------------------------------------------------------------------------- feedback

#: Most samples a report may claim: counts are stored as float64, exact up to 2**53, and an
#: integer of 400 digits must be refused by name rather than overflow when the round closes.
MAX_SAMPLES = 2**53

#: What one reward may be.
_REWARD = Interval(float, 0, 1)

#: Largest magnitude of a reward that carries local-differential-privacy noise
#: (``Feedback.epsilon`` set): the noise is zero-mean, so such rewards leave [0, 1], but a
#: value beyond this is not noise, it is a lie or a bug (Laplace noise of scale 1/ε exceeds
#: it with probability exp(-1e6·ε)).
MAX_NOISY_REWARD = 1e6

_NOISY_REWARD = Interval(float, -MAX_NOISY_REWARD, MAX_NOISY_REWARD)


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
    epsilon : float > 0, optional
        The rewards carry local-differential-privacy noise for this ε (see
        :func:`fedalign.privacy.privatize_rewards`): each may then be any finite number of
        magnitude at most :data:`MAX_NOISY_REWARD` (the noise is zero-mean, so a noisy
        reward leaves [0, 1]). A scheduler accepts rewards outside [0, 1] only when built
        with ``noisy_rewards=True``. None (default): exact rewards in [0, 1].
    reward_variance : float > 0, optional
        Variance of the zero-mean noise each reward carries (the mechanism's largest; see
        :func:`fedalign.privacy.noise_variance`); needs ``epsilon``.
        :func:`fedalign.privacy.privatize` sets it. A scheduler built with
        ``noisy_rewards=True`` weighs each noisy reward by it (docs/trust.md, "Privacy");
        None: the variance of the Laplace mechanism for ``epsilon`` and this many rewards.
    survey : mapping expert_id -> float, optional
        Rewards of experts the client evaluated but did not train: it held them (e.g. it
        downloaded every expert to report privately which one suits its data best,
        :func:`fedalign.privacy.privatize` with ``mechanism="best-expert"``). They move
        fitness like ``rewards`` (same range, same noise), but give no usage credit and do
        not count as trained. Any expert of the scheduler, given or not; none may appear in
        ``rewards`` too. Default: none.

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
        "epsilon": [Interval(float, 0, None, closed="neither"), None],
        "reward_variance": [Interval(float, 0, None, closed="neither"), None],
        "survey": [InstanceOf(Mapping, "mapping expert_id -> reward")],
    }

    samples: int
    rewards: Mapping[Hashable, float] = field(default_factory=dict)
    duration: float | None = None
    completed: bool = True
    epsilon: float | None = None
    reward_variance: float | None = None
    survey: Mapping[Any, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table = self._parameter_constraints
        checked = validate(
            table,
            {name: getattr(self, name) for name in table},
            error=InvalidFeedbackError,
            prefix="Feedback.",
        )
        if checked["reward_variance"] is not None and checked["epsilon"] is None:
            raise InvalidFeedbackError(
                f"Feedback.reward_variance: {checked['reward_variance']:g} given without epsilon "
                "(only privatized rewards carry noise)"
            )
        form = _REWARD if checked["epsilon"] is None else _NOISY_REWARD
        checked["rewards"] = {k: _reward(k, v, form) for k, v in checked["rewards"].items()}
        checked["survey"] = {
            k: _reward(k, v, form, "survey") for k, v in checked["survey"].items()
        }
        both = [k for k in checked["survey"] if k in checked["rewards"]]
        if both:
            raise InvalidFeedbackError(
                f"Feedback.survey[{short_repr(both[0])}]: the expert is in rewards too "
                "(survey holds experts the client did not train)"
            )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def noisy(self) -> bool:
        """Whether a reward (or survey reward) lies outside [0, 1] (possible only with
        ``epsilon`` set)."""
        return any(
            not 0.0 <= r <= 1.0 for part in (self.rewards, self.survey) for r in part.values()
        )


def _reward(
    expert_id: Hashable, value: Any, form: Interval = _REWARD, field_name: str = "rewards"
) -> float:
    """One reward as a float in ``form``'s range; the error names the field and the expert."""
    try:
        return float(form.convert(value))
    except (ValueError, TypeError, OverflowError):
        # the message (and the expert id's repr) only when it is needed: reports are many
        return float(
            validate_one(
                f"Feedback.{field_name}[{short_repr(expert_id)}]",
                value,
                [form],
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
        per expert), ``usage_norm`` (per expert), ``time`` (seconds, or NaN), ``exploration``;
        and, with a trust setting on, ``trust`` (per cohort client).
    floored : list of client ids
        Clients given a minimum of one expert this round because they had been idle for
        ``max_idle_rounds`` offered rounds (setting ``max_idle_rounds``).
    idle_violations : list of client ids
        Clients due the floor that still got no expert (the round could not take the floor).
    """

    round: int
    assignment: dict[Hashable, list[Hashable]]
    solution: Solution
    problem: AlignmentProblem = field(repr=False)
    terms: dict[str, NDArray[np.float64]] = field(repr=False, default_factory=dict)
    floored: list[Hashable] = field(default_factory=list)
    idle_violations: list[Hashable] = field(default_factory=list)

    def explain(self, client_id: Hashable) -> Explanation:
        """Per expert, why the client got it or not.

        Returns
        -------
        Explanation
            A list with one dict per expert, in expert order, with ``expert``, ``fitness``,
            ``usage`` (the expert's raw usage: an EMA of the samples trained on it),
            ``usage_norm``, ``train_time`` and ``deadline`` (seconds, or None without a
            deadline policy), ``exploration``, ``desirability``, ``chosen`` (bool) and
            ``reason`` (a sentence; for chosen experts, ``"chosen"``); with a trust setting
            on, also ``trust`` (the client's trust score in [0, 1], which weights its
            fitness updates). ``print()`` shows it as a table with units;
            :meth:`Explanation.to_rows` gives the table's cells.

        Raises
        ------
        KeyError
            The client is not in this plan's cohort.

        Examples
        --------
        >>> import fedalign as fa
        >>> sched = fa.Scheduler(2, solver="flow", seed=0)
        >>> for c in ("a", "b"):
        ...     _ = sched.register(c, fa.ClientProfile(max_experts=1))
        >>> why = sched.plan(["a", "b"]).explain("a")
        >>> why[0]["expert"], type(why[0]["chosen"]).__name__
        (0, 'bool')
        >>> print(why.to_rows()[0][:3])
        ['expert', 'chosen', 'desirability']
        """
        p = self.problem
        try:
            i = p.client_position(client_id)
        except (KeyError, TypeError):  # absent, or not even hashable
            raise KeyError(f"client_id: {short_repr(client_id)} is not in round {self.round}'s cohort") from None
        reasons = why_not(p, self.solution.assignment, i)
        chosen = self.solution.assignment[i]
        d = p.desirability[i]
        t_i = None if p.train_time is None else p.train_time[i]
        dl_i = None if p.deadline is None else float(p.deadline[i])
        terms = self.terms
        out = Explanation(client=client_id, round=self.round)
        for j, eid in enumerate(p.expert_ids):
            t = None if t_i is None else float(t_i[j])
            row = {
                "expert": eid,
                "fitness": float(terms["fitness"][i, j]) if "fitness" in terms else None,
                "usage": float(terms["usage"][j]) if "usage" in terms else None,
                "usage_norm": float(terms["usage_norm"][j]) if "usage_norm" in terms else None,
                "train_time": t,
                "deadline": dl_i,
                "exploration": float(terms["exploration"][i, j]) if "exploration" in terms else None,
                "desirability": float(d[j]),
                "chosen": bool(chosen[j]),
                "reason": reasons[j],
            }
            if "trust" in terms:
                row["trust"] = float(terms["trust"][i])
            out.append(row)
        return out


# --------------------------------------------------------------------------- explanations


class Explanation(list):  # type: ignore[type-arg]
    """:meth:`Plan.explain`'s answer: a list of dicts, one per expert, that prints as a table.

    It is a plain ``list`` of dicts (index it, iterate it, compare it, ``json.dump`` it);
    ``str()`` renders it as a text table with units and :meth:`to_rows` gives the table's
    cells for any other renderer (CSV, Markdown, a notebook).

    Attributes
    ----------
    client : hashable
        The client explained.
    round : int or None
        The plan's round.
    """

    #: (key, header with unit, format) of each column, in table order.
    COLUMNS: tuple[tuple[str, str, str], ...] = (
        ("expert", "expert", "{}"),
        ("chosen", "chosen", "{}"),
        ("desirability", "desirability", "{:.3f}"),
        ("fitness", "fitness", "{:.3f}"),
        ("usage", "usage (samples)", "{:,.1f}"),
        ("usage_norm", "usage (norm.)", "{:.3f}"),
        ("exploration", "exploration", "{:.3f}"),
        ("trust", "trust", "{:.2f}"),
        ("train_time", "train time (s)", "{:.3g}"),
        ("deadline", "deadline (s)", "{:.3g}"),
        ("reason", "reason", "{}"),
    )

    def __init__(self, rows: Any = (), *, client: Hashable = None, round: int | None = None):
        super().__init__(rows)
        self.client = client
        self.round = round

    def to_rows(self, *, header: bool = True) -> list[list[str]]:
        """The table's cells as strings: a header row (with units), then one row per expert.

        Columns no row has a value for (e.g. the train time without a deadline policy) are
        left out; a missing value is ``"-"``; ``chosen`` reads ``yes`` / ``no``.

        Parameters
        ----------
        header : bool, default True
            Start with the header row.
        """
        columns = [c for c in self.COLUMNS if any(r.get(c[0]) is not None for r in self)]
        rows = [[name for _, name, _ in columns]] if header else []
        for r in self:
            cells = []
            for key, _, fmt in columns:
                value = r.get(key)
                if value is None:
                    cells.append("-")
                elif key == "chosen":
                    cells.append("yes" if value else "no")
                else:
                    cells.append(fmt.format(value))
            rows.append(cells)
        return rows

    def __str__(self) -> str:
        rows = self.to_rows()
        if not self:
            return f"client {self.client!r}: no experts"
        widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
        last = len(widths) - 1  # the reason: left-aligned, not padded
        lines = [f"client {self.client!r}, round {self.round}"]
        for row in rows:
            cells = [
                cell if k == last else (cell.ljust(widths[k]) if k == 1 else cell.rjust(widths[k]))
                for k, cell in enumerate(row)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Explanation({list.__repr__(self)}, client={self.client!r}, round={self.round!r})"



def why_not(problem: AlignmentProblem, x: NDArray[np.bool_], i: int) -> list[str]:
    """Per expert, why client ``i`` got it (``"chosen"``) or a sentence saying why not.

    The reasons are checked from the plainest to the most global: the pair is forbidden; it
    breaks a row on its own; an expert row is full; the client's count is full; it would
    break a client or total row on top of what the client has; its desirability is not
    positive; a soft row's penalty outweighs it; else the solver's global trade-off.
    """
    e = problem.n_experts
    out: list[str | None] = ["chosen" if c else None for c in x[i]]

    def mark(mask: NDArray[np.bool_], text: Any) -> None:
        for j in np.flatnonzero(mask):
            if out[j] is None:
                out[j] = text(int(j)) if callable(text) else text

    mark(~problem.allowed[i], "pair not allowed")
    hard = [r for r in problem.rows if not r.soft]
    for row in hard:
        if row.name != COUNT_ROW and row.upper_cap is not None:
            cap = row.upper_cap
            limit = cap if row.over == "expert" else cap[i if row.over == "client" else 0]
            mark(row.dense[i] > limit, lambda j, r=row: _too_big(r, i, j))
    for row in (r for r in hard if r.over == "expert" and r.upper_cap is not None):
        used = row.usage(x)
        mark(used + row.dense[i] > row.upper_cap, lambda j, r=row, u=used: _expert_full(r, j, u))
    n_chosen, k = int(x[i].sum()), int(problem.max_experts[i])
    if n_chosen >= k:
        worst = float(problem.desirability[i][x[i]].min()) if n_chosen else math.inf
        mark(
            np.ones(e, dtype=bool),
            lambda j: f"client at max_experts ({k}); "
            + ("not ranked above its chosen experts" if problem.desirability[i, j] <= worst
               else "its slot served the round better elsewhere"),
        )
    for row in hard:
        top = row.upper_cap
        if row.over == "expert" or row.name == COUNT_ROW or top is None:
            continue
        k_row = i if row.over == "client" else 0
        used_k = float(row.usage(x)[k_row])
        mark(used_k + row.dense[i] > top[k_row], lambda j, r=row, u=used_k: _would_exceed(r, u))
    mark(problem.desirability[i] <= 0, "desirability not positive")
    for row in problem.soft_rows:
        extra = _soft_extra(row, x, i)
        mark(extra >= problem.desirability[i], lambda j, r=row, c=extra: f"its {r.name} penalty ({c[j]:.3g}) outweighs its desirability")
    mark(np.ones(e, dtype=bool), "the solver's assignment left it out (global trade-off)")
    return [str(r) for r in out]


def _too_big(row: Row, i: int, j: int) -> str:
    w = float(row.dense[i, j])
    if row.over == "client":
        if row.name == DEADLINE_ROW:
            return f"needs {w:.3g} s, deadline is {float(row.upper[i]):.3g} s"  # type: ignore[index]
        return f"needs {w:g} {row.name}, client has {float(row.upper[i]):g}"  # type: ignore[index]
    where = "the expert's" if row.over == "expert" else "the round's"
    bound = float(row.upper[j if row.over == "expert" else 0])  # type: ignore[index]
    return f"needs {w:g} {row.name}, above {where} upper bound {bound:g}"


def _expert_full(row: Row, j: int, used: NDArray[np.float64]) -> str:
    if row.name == SEAT_ROW:
        return f"expert full: expert_max_clients is {float(row.upper[j]):g}"  # type: ignore[index]
    return f"expert full: its {row.name} is at {used[j]:g} of {float(row.upper[j]):g}"  # type: ignore[index]


def _would_exceed(row: Row, used: float) -> str:
    if row.over == "total":
        return f"would exceed the round's {row.name} ({used:g} of {float(row.upper[0]):g} used)"  # type: ignore[index]
    if row.name == DEADLINE_ROW:
        return "would exceed the client's remaining time before the deadline"
    return f"would exceed the client's remaining {row.name}"


def _soft_extra(row: Row, x: NDArray[np.bool_], i: int) -> NDArray[np.float64]:
    """Per expert, how much more ``row`` would charge if client ``i`` also took it."""
    used = row.usage(x)
    w = row.dense[i]
    if row.over == "expert":
        return row.cost(used + w) - row.cost(used)
    k = i if row.over == "client" else 0
    base = row.cost(used[k : k + 1])[0]
    return row.cost(used[k] + w) - base
