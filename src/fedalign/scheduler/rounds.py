"""The open round: its cohort, what each client was given, and the reports received so far.

:class:`OpenRound` holds one array per field, indexed by cohort position, so that closing a
round (:meth:`OpenRound.outcome`) is a handful of vectorised operations whatever the
cohort's size. :meth:`OpenRound.arrays` and :meth:`OpenRound.from_arrays` are its saved form
(the ``open.*`` arrays of a state file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._arrays import checked_array
from ..errors import InvalidStateError
from ..plan import MAX_SAMPLES

__all__ = ["ARRAYS", "MAX_ROUND", "OPTIONAL_ARRAYS", "OpenRound"]

#: Largest round number: rounds are counted in int64 and float64 arrays elsewhere, exact up
#: to 2**53; an integer of 400 digits must be a named error, not a number carried for ever.
MAX_ROUND = 2**53

#: The saved arrays, in file order: dtype, and whether they have an expert axis.
ARRAYS: dict[str, tuple[Any, bool]] = {
    "rows": (np.int64, False),
    "assigned": (bool, True),
    "deadline": (np.float64, False),
    "reported": (bool, False),
    "completed": (bool, False),
    "samples": (np.float64, False),
    "duration": (np.float64, False),
    "trained": (bool, True),
    "rewards": (np.float64, True),
}

#: Saved only when they hold something: the server's verdicts on the round's reports
#: (:meth:`fedalign.Scheduler.judge`; NaN: none) and the noise variance of each noisy reward
#: (NaN: an exact one). A round without them is the format-1 layout.
OPTIONAL_ARRAYS: dict[str, tuple[Any, bool]] = {
    "verdict": (np.float64, True),
    "noise": (np.float64, True),
    "survey": (np.float64, True),
}

#: What each saved array may hold, beyond its dtype (see :func:`fedalign._arrays.checked_array`):
#: a deadline is positive seconds (NaN: none), samples what a Feedback accepts, a duration
#: seconds >= 0, a reward in [0, 1]; NaN marks "no report".
_VALUES: dict[str, dict[str, Any]] = {
    "rows": {"kind": "int", "low": 0},
    "assigned": {"kind": "bool"},
    "deadline": {"kind": "float", "above": 0.0, "nan": True},
    "reported": {"kind": "bool"},
    "completed": {"kind": "bool"},
    "samples": {"kind": "float", "low": 0.0, "high": MAX_SAMPLES, "nan": True},
    "duration": {"kind": "float", "low": 0.0, "nan": True},
    "trained": {"kind": "bool"},
    "rewards": {"kind": "float", "low": 0.0, "high": 1.0},
    "verdict": {"kind": "float", "low": 0.0, "high": 1.0, "nan": True},
    "noise": {"kind": "float", "above": 0.0, "nan": True},
    "survey": {"kind": "float", "low": 0.0, "high": 1.0, "nan": True},
}


@dataclass(eq=False)
class OpenRound:
    """One planned round that has not been closed yet (cohort position ``k`` throughout).

    Attributes
    ----------
    round : int
        The round's number.
    rows : (m,) int64
        Registry rows of the cohort.
    assigned : (m, E) bool
        The plan.
    deadline : (m,) float64
        The round's deadline per client (NaN: none).
    reported, completed : (m,) bool
        Who reported, and who finished (False for a dropout).
    samples, duration : (m,) float64
        What each report said (NaN: no report, or no duration given).
    trained : (m, E) bool
        Experts each report gave a reward for.
    rewards : (m, E) float64
        Those rewards (0 elsewhere).
    verdict : (m, E) float64
        The server's plausibility verdict on each (client, expert) of the round, in [0, 1]
        (NaN: none given).
    noise : (m, E) float64 or None
        Variance of the privacy noise of each reward (NaN: an exact reward); None until the
        round's first noisy report.
    survey : (m, E) float64 or None
        Survey rewards (``Feedback.survey``): experts a client evaluated without training
        them (NaN: none); None until the round's first survey.
    """

    round: int
    rows: NDArray[np.int64]
    assigned: NDArray[np.bool_]
    deadline: NDArray[np.float64]
    reported: NDArray[np.bool_]
    completed: NDArray[np.bool_]
    samples: NDArray[np.float64]
    duration: NDArray[np.float64]
    trained: NDArray[np.bool_]
    rewards: NDArray[np.float64]
    verdict: NDArray[np.float64] | None = None
    noise: NDArray[np.float64] | None = None
    survey: NDArray[np.float64] | None = None
    _positions: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # registry row -> cohort position: one dict lookup per report
        self._positions = {int(r): k for k, r in enumerate(self.rows.tolist())}
        if self.verdict is None:
            self.verdict = np.full(self.assigned.shape, np.nan)

    @classmethod
    def start(
        cls,
        number: int,
        rows: NDArray[np.int64],
        assigned: NDArray[np.bool_],
        deadline: NDArray[np.float64] | None,
    ) -> OpenRound:
        """A round just planned: nobody has reported yet."""
        m, e = assigned.shape
        return cls(
            round=number,
            rows=rows,
            assigned=np.array(assigned, dtype=bool),
            deadline=np.full(m, np.nan) if deadline is None else deadline.copy(),
            reported=np.zeros(m, dtype=bool),
            completed=np.zeros(m, dtype=bool),
            samples=np.full(m, np.nan),
            duration=np.full(m, np.nan),
            trained=np.zeros((m, e), dtype=bool),
            rewards=np.zeros((m, e)),
        )

    def position(self, row: int) -> int | None:
        """Cohort position of registry ``row``, or None when it is not in the cohort."""
        return self._positions.get(row)

    def record(
        self,
        pos: int,
        *,
        trained: NDArray[np.bool_],
        rewards: NDArray[np.float64],
        samples: int,
        duration: float | None,
        completed: bool,
        noise: float | None = None,
        survey: NDArray[np.float64] | None = None,
    ) -> None:
        """Store one validated report at cohort position ``pos`` (``noise``: the variance of
        its rewards' privacy noise, None for exact rewards; ``survey``: (E,) survey rewards,
        NaN where none, or None)."""
        self.trained[pos] = trained
        self.rewards[pos] = rewards
        if survey is not None:
            if self.survey is None:  # allocated at the round's first survey only
                self.survey = np.full(self.assigned.shape, np.nan)
            self.survey[pos] = survey
        elif self.survey is not None:
            self.survey[pos] = np.nan
        rewarded = trained if survey is None else trained | ~np.isnan(survey)
        if noise is not None:
            if self.noise is None:  # allocated at the round's first noisy report only
                self.noise = np.full(self.assigned.shape, np.nan)
            self.noise[pos] = np.where(rewarded, noise, np.nan)
        elif self.noise is not None:
            self.noise[pos] = np.nan
        self.samples[pos] = samples
        self.duration[pos] = np.nan if duration is None else duration
        self.completed[pos] = completed
        self.reported[pos] = True

    def judge(self, pos: int, verdict: NDArray[np.float64]) -> None:
        """Store the server's verdict (E,) on the report at cohort position ``pos``; where
        one was given before, the lower of the two stays (NaN: no verdict for the expert)."""
        assert self.verdict is not None
        self.verdict[pos] = np.fmin(self.verdict[pos], verdict)

    def outcome(self) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
        """What the round did, per cohort position: ``(done, trained, worked)``.

        ``done`` (m,): reported and completed (silent clients are dropouts). ``trained``
        (m, E): rewarded pairs of the clients that are done. ``worked`` (m, E): the experts
        each client spent time on, for the profiler: those it trained, or every expert it
        was given when it names none (a dropout, or a report without rewards).
        """
        done = self.completed & self.reported
        trained = self.trained & done[:, None]
        named_some = np.asarray(trained.any(axis=1))
        worked = np.where(named_some[:, None], trained, self.assigned)
        return done, trained, worked

    def arrays(self) -> dict[str, NDArray[Any]]:
        """The saved form: copies of the arrays, named as in :data:`ARRAYS` (and those of
        :data:`OPTIONAL_ARRAYS` that hold something)."""
        out = {k: np.array(getattr(self, k)) for k in ARRAYS}
        for k in OPTIONAL_ARRAYS:
            a = getattr(self, k)
            if a is not None and not np.isnan(a).all():
                out[k] = np.array(a)
        return out

    @classmethod
    def from_arrays(
        cls,
        number: int,
        arrays: dict[str, Any],
        *,
        n_clients: int,
        n_experts: int,
        reward_bounds: tuple[float, float] = (0.0, 1.0),
    ) -> OpenRound:
        """Rebuild from :meth:`arrays` (copied), checking shapes, kinds and values.

        ``reward_bounds`` is the range a stored reward may hold (wider for a scheduler that
        takes noisy rewards); an optional array that is absent starts empty (NaN).

        Raises
        ------
        InvalidStateError
            An array of the wrong shape or kind, a value no round could hold (a negative
            deadline, a reward outside [0, 1]...), a row outside the registry or repeated,
            or a reward for an expert the client was not given.
        KeyError
            An array is missing.
        """
        rows = np.asarray(arrays["rows"])
        m = int(rows.shape[0]) if rows.ndim == 1 else -1
        out: dict[str, Any] = {}
        wanted = {**ARRAYS, **{k: v for k, v in OPTIONAL_ARRAYS.items() if k in arrays}}
        for k, (dtype, per_expert) in wanted.items():
            shape = (m, n_experts) if per_expert else (m,)
            values = dict(_VALUES[k])
            if k in ("rewards", "survey"):
                values["low"], values["high"] = reward_bounds
            try:
                a = checked_array(f"open.{k}", arrays[k], shape=shape, **values)
            except ValueError as exc:
                raise InvalidStateError(str(exc)) from None
            out[k] = a.astype(dtype, copy=True)
        if m and out["rows"].max() >= n_clients:
            raise InvalidStateError("open.rows: a row is outside the registry")
        if np.unique(out["rows"]).size != m:
            raise InvalidStateError("open.rows: a client appears twice in the cohort")
        if (out["trained"] & ~out["assigned"]).any():
            raise InvalidStateError("open.trained: a reward for an expert the client was not given")
        if "survey" in out and (out["trained"] & ~np.isnan(out["survey"])).any():
            raise InvalidStateError("open.survey: a survey reward for an expert the client trained")
        return cls(round=int(number), **out)
