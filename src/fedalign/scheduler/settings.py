"""The scheduler's settings as one frozen, validated object: :class:`SchedulerSettings`.

:class:`~fedalign.Scheduler` builds one from its keyword arguments, once, and reads it
everywhere after; a saved state carries it as the JSON dict of :meth:`SchedulerSettings.to_dict`.
Validation follows :mod:`fedalign._validation`: one table, ``_parameter_constraints``, states
what each setting may be, and :meth:`SchedulerSettings.__post_init__` adds what a table cannot
say: per-expert values must have E entries, ``deadline`` excludes ``deadline_percentile``,
``time_weight`` needs one of them, ``expert_min_clients <= expert_max_clients``, the expert
ids must be E distinct hashables, and the solver must exist and take the options given.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from .._arrays import MAX_N_EXPERTS, PerExpert, validate_table
from .._validation import Constraint, InstanceOf, Interval, Options, Table, short_repr, validate_one
from ..plan import MAX_SAMPLES
from ..profiles import ProfileBounds
from ..scores import USAGE_NORMS
from ..solvers import get_solver

__all__ = ["MAX_COUNT", "SchedulerSettings", "USAGE_MEASURES"]

#: What a report's load is counted in (setting ``usage_measure``).
USAGE_MEASURES = ("samples", "compute")

#: Largest count a setting may hold (experts, experts per client, clients per expert):
#: per-expert values pass through float64, exact up to 2**53, and an integer of 400 digits
#: must be a named error, not an OverflowError half-way through a round.
MAX_COUNT = 2**53

_AT_LEAST_0 = Interval(float, 0, None)
_ABOVE_0 = Interval(float, 0, None, closed="neither")
_RATE = [Interval(float, 0, 1)]
_WEIGHT = [_AT_LEAST_0]
_COUNT = Interval(int, 0, MAX_COUNT)


class _Ids(Constraint):
    """A sequence of ids (not text), as a tuple; length, hashing and repeats are checked
    afterwards, where the number of experts is known."""

    def convert(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return tuple(value.tolist())
        if isinstance(value, (str, bytes, Mapping)):
            raise ValueError
        return tuple(value)  # TypeError when not iterable

    def describe(self) -> str:
        return "a sequence of E distinct hashable ids"


def _every_expert(value: Any) -> Any:
    """A per-expert default written as one value for every expert.

    Typed ``Any`` because the field holds the E values once the settings are built:
    :meth:`SchedulerSettings.__post_init__` expands it.
    """
    return value


@dataclass(frozen=True)
class SchedulerSettings:
    """The validated settings of a :class:`~fedalign.Scheduler` (immutable).

    The constructor takes what :class:`~fedalign.Scheduler` takes, with the same meaning and
    defaults (see its docstring), and stores each value in one canonical form:

    - per-expert settings (``expert_memory``, ``expert_bytes``, ``expert_cost``,
      ``expert_min_clients``, ``expert_max_clients``) as tuples of E floats or ints (a single
      number is repeated for every expert), or None where allowed;
    - ``expert_ids`` as a tuple of E ids (default ``0..E-1``);
    - ``profile_bounds`` as a :class:`~fedalign.ProfileBounds` (None gives the defaults);
    - ``solver_options`` as a read-only mapping (None gives an empty one);
    - every other number as a plain ``int`` or ``float``.

    :func:`dataclasses.replace` builds a changed copy, validated again.

    Raises
    ------
    ValueError
        A setting of the wrong type or out of range (the message names it, and the position
        for per-expert values), an unknown solver name, or a solver option the solver does
        not have.
    SolverUnavailableError
        The solver's optional dependency is missing.
    """

    _parameter_constraints: ClassVar[Table] = {
        "n_experts": [Interval(int, 1, MAX_N_EXPERTS)],
        "solver": [InstanceOf(str, "solver name")],
        "expert_memory": [PerExpert(_AT_LEAST_0), None],
        "seed": [Interval(int, 0, None), None],
        "fitness_weight": _WEIGHT,
        "usage_weight": _WEIGHT,
        "fitness_ema": _RATE,
        "fitness_decay": _RATE,
        "fitness_prior": _RATE,
        "usage_decay": _RATE,
        "time_limit": [_ABOVE_0, None],
        "usage_norm": [Options(USAGE_NORMS)],
        "usage_measure": [Options(USAGE_MEASURES)],
        "time_weight": _WEIGHT,
        "exploration_weight": _WEIGHT,
        "min_experts": [_COUNT],
        "max_experts": [_COUNT, None],
        "expert_min_clients": [PerExpert(_COUNT)],
        "expert_max_clients": [PerExpert(_COUNT), None],
        "expert_ids": [_Ids(), None],
        "expert_bytes": [PerExpert(_AT_LEAST_0), None],
        "expert_cost": [PerExpert(_AT_LEAST_0)],
        "samples_per_round": [_AT_LEAST_0, None],
        "deadline": [_ABOVE_0, None],
        "deadline_percentile": [Interval(float, 0, 100, closed="right"), None],
        "profile_bounds": [InstanceOf(ProfileBounds), None],
        "profile_window": [Interval(int, 1, 255)],  # the profiler's window cursor is a uint8
        "dropout_inflation": [Interval(float, 1, None)],
        "max_report_factor": [Interval(float, 1, None), None],
        "max_report_samples": [Interval(float, 0, MAX_SAMPLES, closed="right")],
        "solver_options": [InstanceOf(Mapping, "mapping of option names to values"), None],
        "round_bytes": [_ABOVE_0, None],
        "shared_bytes": [_AT_LEAST_0],
        "balance_weight": _WEIGHT,
    }

    n_experts: int
    solver: str = "auto"
    expert_memory: tuple[float, ...] | None = None
    seed: int | None = None
    fitness_weight: float = 1.0
    usage_weight: float = 0.5
    fitness_ema: float = 0.3
    fitness_decay: float = 0.02
    fitness_prior: float = 0.5
    usage_decay: float = 0.8
    time_limit: float | None = None
    usage_norm: str = "max"
    usage_measure: str = "samples"
    time_weight: float = 0.0
    exploration_weight: float = 0.0
    min_experts: int = 1
    max_experts: int | None = 1
    expert_min_clients: tuple[int, ...] = _every_expert(0)
    expert_max_clients: tuple[int, ...] | None = None
    expert_ids: tuple[Hashable, ...] = _every_expert(None)
    expert_bytes: tuple[float, ...] | None = None
    expert_cost: tuple[float, ...] = _every_expert(1.0)
    samples_per_round: float | None = None
    deadline: float | None = None
    deadline_percentile: float | None = None
    profile_bounds: ProfileBounds = field(default_factory=ProfileBounds)
    profile_window: int = 8
    dropout_inflation: float = 1.25
    max_report_factor: float | None = 10.0
    max_report_samples: float = 1e9
    # excluded from the hash: a mapping is not hashable, and equal settings still hash equal
    solver_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    round_bytes: float | None = None
    shared_bytes: float = 0.0
    balance_weight: float = 0.25

    def __post_init__(self) -> None:
        table = self._parameter_constraints
        e = validate_one("n_experts", self.n_experts, table["n_experts"])
        values = validate_table(table, {f.name: getattr(self, f.name) for f in fields(self)}, n_experts=e)
        for name, value in values.items():
            if isinstance(value, np.ndarray):  # per-expert: plain, immutable Python values
                value = tuple(value.tolist())
            object.__setattr__(self, name, value)
        object.__setattr__(self, "expert_ids", _expert_ids(values["expert_ids"], e))
        if values["profile_bounds"] is None:
            object.__setattr__(self, "profile_bounds", ProfileBounds())
        options = _solver_options(self.solver, values["solver_options"])
        object.__setattr__(self, "solver_options", MappingProxyType(options))
        self._check_deadline_policy()
        self._check_expert_load_bounds()
        if self.round_bytes is not None and self.expert_bytes is None:
            raise ValueError("round_bytes: needs expert_bytes (the bytes each expert moves)")

    def _check_deadline_policy(self) -> None:
        if self.deadline is not None and self.deadline_percentile is not None:
            raise ValueError("deadline: give either deadline or deadline_percentile, not both")
        if self.time_weight > 0 and not self.has_deadline:
            raise ValueError("time_weight: needs a deadline policy (deadline or deadline_percentile)")

    def _check_expert_load_bounds(self) -> None:
        if self.expert_max_clients is None:
            return
        above = np.asarray(self.expert_min_clients) > np.asarray(self.expert_max_clients)
        if above.any():
            k = int(np.flatnonzero(above)[0])
            raise ValueError(
                f"expert_min_clients[{k}]: {self.expert_min_clients[k]} is above "
                f"expert_max_clients[{k}] = {self.expert_max_clients[k]}"
            )

    @property
    def has_deadline(self) -> bool:
        """Whether a deadline policy (``deadline`` or ``deadline_percentile``) is set."""
        return self.deadline is not None or self.deadline_percentile is not None

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (a fresh copy), in constructor order.

        Tuples become lists, ``profile_bounds`` a dict of ``[low, high]`` lists,
        ``solver_options`` a dict. :meth:`from_dict` reads it back.

        Raises
        ------
        TypeError
            An expert id or a solver option value that JSON cannot hold.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, ProfileBounds):
                value = value.to_dict()
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return json.loads(json.dumps(out))  # deep copy, and JSON's own types (tuples as lists)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SchedulerSettings:
        """Settings from :meth:`to_dict`'s output (or any mapping of constructor arguments).

        ``profile_bounds`` may be a mapping of ``[low, high]`` pairs. Validated as the
        constructor validates; an unknown name is a ``TypeError``.
        """
        kwargs = dict(values)
        bounds = kwargs.get("profile_bounds")
        if isinstance(bounds, Mapping):
            kwargs["profile_bounds"] = ProfileBounds(**{k: tuple(v) for k, v in bounds.items()})
        return cls(**kwargs)


def _expert_ids(ids: tuple[Hashable, ...] | None, e: int) -> tuple[Hashable, ...]:
    """``expert_ids`` checked: ``e`` distinct hashable ids (default ``0..e-1``)."""
    if ids is None:
        return tuple(range(e))
    if len(ids) != e:
        raise ValueError(f"expert_ids: expected {e} unique ids, got {len(ids)}: {short_repr(list(ids))}")
    seen: dict[Hashable, int] = {}
    for k, x in enumerate(ids):  # E ids, once per scheduler
        try:
            first = seen.setdefault(x, k)
        except TypeError:
            raise ValueError(f"expert_ids[{k}]: id {short_repr(x)} is not hashable") from None
        if first != k:
            raise ValueError(f"expert_ids[{k}]: duplicate id {short_repr(x)} (first at position {first})")
    return ids


def _solver_options(solver: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``solver_options`` checked against the named solver's options (the solver must exist)."""
    names = get_solver(solver).option_names()  # ValueError / SolverUnavailableError
    out: dict[str, Any] = {}
    for k, v in (options or {}).items():
        if not isinstance(k, str):
            raise ValueError(f"solver_options: option names must be strings, got {k!r}")
        if names is not None and k not in names:
            raise ValueError(
                f"solver_options[{k!r}]: solver {short_repr(solver)} has no option {k!r}; "
                f"its options are {sorted(names)}"
            )
        out[k] = v
    return out
