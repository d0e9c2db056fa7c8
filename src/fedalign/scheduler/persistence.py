"""A scheduler's state in its saved form, format version :data:`STATE_FORMAT_VERSION`.

:class:`SchedulerState` is everything a :class:`~fedalign.Scheduler` needs to continue
exactly where it was: settings, client ids, the trackers' and the profiler's arrays, the open
round, round counters and the random generator's state. :meth:`SchedulerState.to_dict`
gives the layout of :meth:`fedalign.Scheduler.state_dict` (and of a state file's contents),
:meth:`SchedulerState.from_dict` reads it back and refuses a malformed or newer one with
:class:`~fedalign.InvalidStateError`. :func:`save_state` / :func:`load_state` put that dict
in the file container of :mod:`fedalign.scheduler.state_file`.

The layout, version 1 (unchanged since fedalign 0.1.0; ``tests/test_state_format.py`` pins it)::

    format_version  1
    settings        SchedulerSettings.to_dict()
    client_ids      [int | str, ...]          registration order = array rows
    scalars         {rounds_closed, last_round, open_round (int or None)}
    rng             numpy bit generator state (JSON)
    arrays          fit.fitness, fit.synced, fit.count      FitnessTracker
                    use.usage, use.pending                   UsageTracker
                    prof.*                                   CapacityProfiler
                    open.*                                   OpenRound (while a round is open)

Compatible additions (version 1 still; a state that does not use them is written exactly as
before, and a file without them loads with their defaults):

    scalars         idle_violations (int)        only with the setting max_idle_rounds
    arrays          trust.score (float32)        only with the setting trust_rate > 0
                    trust.idle (int32)           only with the setting max_idle_rounds
                    open.verdict (float64)       only when the open round holds a verdict
                    open.noise (float64)         only when the open round holds a noisy reward
                    open.survey (float64)        only when the open round holds a survey reward
                    fit.variance (float32)       only once a noisy reward was recorded
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._validation import short_repr
from ..errors import InvalidStateError
from ..plan import MAX_NOISY_REWARD
from .rounds import ARRAYS as OPEN_ARRAYS
from .rounds import MAX_ROUND, OPTIONAL_ARRAYS, OpenRound
from .settings import SchedulerSettings
from .state_file import StateFile, read_state, write_state

#: Settings whose default changed after format version 1 was first written, with the value a
#: state that does not name them was running with.
PRE_BALANCE_SETTINGS: dict[str, Any] = {"balance_weight": 0.0}

__all__ = [
    "STATE_FORMAT_VERSION",
    "SchedulerState",
    "load_state",
    "malformed_state",
    "reward_bounds",
    "save_state",
]

#: Version of the layout written by :meth:`fedalign.Scheduler.save` and ``state_dict``.
STATE_FORMAT_VERSION = 1

_FIT_KEYS = ("fitness", "synced", "count")
_USE_KEYS = ("usage", "pending")


@contextmanager
def malformed_state() -> Iterator[None]:
    """Turn the errors a malformed state dict raises while it is read into
    :class:`~fedalign.InvalidStateError` (a missing key, a wrong type or shape)."""
    try:
        yield
    except InvalidStateError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
            RecursionError) as exc:
        raise InvalidStateError(
            f"scheduler state is malformed: {type(exc).__name__}: {short_repr(str(exc), 300)}"
        ) from None


def ids_to_json(ids: Sequence[Hashable], what: str) -> list[Any]:
    """Client ids as JSON values; only int and str ids can be saved.

    Raises
    ------
    TypeError
        Another kind of id (the message names its position).
    """
    out = []
    for k, c in enumerate(ids):
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, str, np.integer, np.str_)):
            raise TypeError(f"{what}[{k}]: only int and str ids can be saved, got {short_repr(c)}")
        out.append(int(c) if isinstance(c, (int, np.integer)) else str(c))
    return out


@dataclass
class SchedulerState:
    """A scheduler's state, unpacked from (or about to become) the saved layout.

    Attributes
    ----------
    settings : SchedulerSettings
    client_ids : list
        In registration order (the rows of every per-client array).
    rounds_closed, last_round : int
    rng : dict
        The random generator's ``bit_generator.state``.
    fitness : dict
        :meth:`FitnessTracker.state_dict`'s arrays (``fitness``, ``synced``, ``count``, and
        ``variance`` once a noisy reward was recorded).
    usage : dict
        :meth:`UsageTracker.state_dict`'s arrays (``usage``, ``pending``).
    profiler : dict
        :meth:`CapacityProfiler.state_dict`'s arrays.
    open_round : OpenRound or None
    ledger : dict
        :meth:`ClientLedger.state_dict`'s arrays (``score``, ``idle``): only those kept.
    idle_violations : int or None
        Idle violations so far; None when the scheduler keeps no idle streaks.
    """

    settings: SchedulerSettings
    client_ids: list[Hashable]
    rounds_closed: int
    last_round: int
    rng: Mapping[str, Any]
    fitness: dict[str, NDArray[Any]]
    usage: dict[str, NDArray[Any]]
    profiler: dict[str, NDArray[Any]]
    open_round: OpenRound | None
    ledger: dict[str, NDArray[Any]] = field(default_factory=dict)
    idle_violations: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The saved layout: JSON-ready metadata and ``arrays`` (name -> numpy array).

        Raises
        ------
        TypeError
            A client id that is neither int nor str.
        """
        arrays: dict[str, NDArray[Any]] = {}
        arrays.update({f"fit.{k}": self.fitness[k] for k in _FIT_KEYS})
        if "variance" in self.fitness:
            arrays["fit.variance"] = self.fitness["variance"]
        arrays.update({f"use.{k}": self.usage[k] for k in _USE_KEYS})
        arrays.update({f"prof.{k}": v for k, v in self.profiler.items()})
        op = self.open_round
        if op is not None:
            arrays.update({f"open.{k}": v for k, v in op.arrays().items()})
        arrays.update({f"trust.{k}": v for k, v in self.ledger.items()})
        scalars: dict[str, Any] = {
            "rounds_closed": int(self.rounds_closed),
            "last_round": int(self.last_round),
            "open_round": None if op is None else int(op.round),
        }
        if self.idle_violations is not None:
            scalars["idle_violations"] = int(self.idle_violations)
        return {
            "format_version": STATE_FORMAT_VERSION,
            "settings": self.settings.to_dict(),
            "client_ids": ids_to_json(self.client_ids, "client_ids"),
            "scalars": scalars,
            "rng": json.loads(json.dumps(self.rng)),
            "arrays": arrays,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> SchedulerState:
        """Read the saved layout (arrays are used as given; :class:`OpenRound` copies).

        Raises
        ------
        InvalidStateError
            A format version newer than this fedalign reads, or a malformed state (missing
            keys, wrong types or shapes, invalid settings).
        SolverUnavailableError
            The settings name a solver whose optional dependency is missing here.
        """
        with malformed_state():
            if not isinstance(state, Mapping):
                raise InvalidStateError(f"state: expected a mapping, got {type(state).__name__}")
            _check_version(state["format_version"])
            saved = _mapping("settings", state["settings"])
            # A state written before the in-round load row existed ran without it: resume it
            # as it ran, not with today's default.
            settings = SchedulerSettings.from_dict({**PRE_BALANCE_SETTINGS, **saved})
            ids = _client_ids(state["client_ids"])
            arrays = _mapping("arrays", state["arrays"])
            scalars = _mapping("scalars", state["scalars"])
            closed, last, number = _scalars(scalars)
            violations = scalars.get("idle_violations")
            if violations is not None and (type(violations) is not int or violations < 0):
                raise InvalidStateError(
                    f"scalars.idle_violations: expected an int >= 0, got {short_repr(violations)}"
                )
            rng = _rng_state(state["rng"])
            open_round = None
            if number is not None:
                names = [*OPEN_ARRAYS, *(k for k in OPTIONAL_ARRAYS if f"open.{k}" in arrays)]
                open_round = OpenRound.from_arrays(
                    number,
                    {k: arrays[f"open.{k}"] for k in names},
                    n_clients=len(ids),
                    n_experts=settings.n_experts,
                    reward_bounds=reward_bounds(settings),
                )
            return cls(
                settings=settings,
                client_ids=ids,
                rounds_closed=closed,
                last_round=last,
                rng=rng,
                fitness={
                    **{k: arrays[f"fit.{k}"] for k in _FIT_KEYS},
                    **({"variance": arrays["fit.variance"]} if "fit.variance" in arrays else {}),
                },
                usage={k: arrays[f"use.{k}"] for k in _USE_KEYS},
                profiler={k[5:]: v for k, v in arrays.items() if k.startswith("prof.")},
                open_round=open_round,
                ledger={k[6:]: v for k, v in arrays.items() if k.startswith("trust.")},
                idle_violations=violations,
            )


def reward_bounds(settings: SchedulerSettings) -> tuple[float, float]:
    """The range a stored reward or fitness may hold: [0, 1], or the noisy rewards' range."""
    if settings.noisy_rewards:
        return (-MAX_NOISY_REWARD, MAX_NOISY_REWARD)
    return (0.0, 1.0)


def _mapping(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidStateError(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _rng_state(value: Any, name: str = "rng", depth: int = 0) -> Any:
    """The random generator's saved state: objects, lists, ints and strings only (what
    numpy's ``bit_generator.state`` holds); numpy checks the values when it is set."""
    if depth > 4:
        raise InvalidStateError(f"{name}: nested too deeply for a generator state")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidStateError(f"{name}: keys must be strings, got {short_repr(key)}")
            _rng_state(item, f"{name}.{key}", depth + 1)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            if type(item) is not int:
                raise InvalidStateError(f"{name}[{k}]: expected an int, got {type(item).__name__}")
    elif type(value) not in (int, str):
        raise InvalidStateError(f"{name}: expected an int or a string, got {type(value).__name__}")
    if depth == 0 and not isinstance(value, Mapping):
        raise InvalidStateError(f"rng: expected an object, got {type(value).__name__}")
    return value


def _client_ids(value: Any) -> list[Hashable]:
    """Saved client ids: a list of ints and strings (what :func:`ids_to_json` writes)."""
    if not isinstance(value, (list, tuple)):
        raise InvalidStateError(f"client_ids: expected a list, got {type(value).__name__}")
    ids = list(value)
    for k, c in enumerate(ids):  # one per client, as registering them was
        if type(c) not in (int, str):
            raise InvalidStateError(
                f"client_ids[{k}]: expected an int or a str, got {type(c).__name__}"
            )
    return ids


def _round_scalar(name: str, value: Any, low: int) -> int:
    if type(value) is not int or not low <= value <= MAX_ROUND:
        raise InvalidStateError(
            f"scalars.{name}: expected an int in [{low}, 2**53], got {short_repr(value)}"
        )
    return value


def _scalars(scalars: Mapping[str, Any]) -> tuple[int, int, int | None]:
    """``(rounds_closed, last_round, open_round)``, checked against each other.

    Rounds are numbered from 0 upwards and each plan closes the round before it, so at
    most ``last_round + 1`` rounds are closed (``last_round`` while one is open), and an
    open round is the last one planned.
    """
    closed = _round_scalar("rounds_closed", scalars["rounds_closed"], 0)
    last = _round_scalar("last_round", scalars["last_round"], -1)
    number = scalars["open_round"]
    if number is not None:
        number = _round_scalar("open_round", number, 0)
        if number != last:
            raise InvalidStateError(
                f"scalars.open_round: {number} is not the last planned round {last}"
            )
    if closed > last + (0 if number is not None else 1):
        raise InvalidStateError(
            f"scalars.rounds_closed: {closed} rounds cannot be closed when the last planned "
            f"round is {last}" + (" and still open" if number is not None else "")
        )
    return closed, last, number


def _check_version(version: Any) -> None:
    if type(version) is not int or version < 1:
        raise InvalidStateError(f"format_version: invalid value {short_repr(version)}")
    if version > STATE_FORMAT_VERSION:
        raise InvalidStateError(
            f"format_version: {version} is newer than this fedalign reads "
            f"({STATE_FORMAT_VERSION}); upgrade fedalign"
        )


def save_state(
    path: str | os.PathLike[str], state: Mapping[str, Any], *, expected: bytes | str | None
) -> bytes:
    """Write :meth:`SchedulerState.to_dict`'s output to ``path`` atomically; return its digest.

    ``expected`` is what the caller believes is at ``path`` (see
    :func:`fedalign.scheduler.state_file.write_state`): a digest, None, or ``ANY``.
    """
    meta = {k: v for k, v in state.items() if k != "arrays"}
    return write_state(path, meta, state["arrays"], version=STATE_FORMAT_VERSION, expected=expected)


def load_state(path: str | os.PathLike[str]) -> StateFile:
    """The state dict stored at ``path`` (container checked; contents not yet), and the
    file's digest.

    Raises
    ------
    InvalidStateError
        Not a regular file, not a state file, truncated, corrupt, a newer format version,
        or a payload beyond the container's bounds.
    FileNotFoundError
        No file at ``path``.
    """
    return read_state(path, newest=STATE_FORMAT_VERSION)
