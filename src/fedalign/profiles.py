"""Client capacity: self-reported profiles, plausible bounds, and a profiler that learns from
observed round durations.

A :class:`ClientProfile` is what a client says about itself (memory, compute speed, up and
down bandwidth, latency, availability, how many experts it will train). Every field may be
``None``: unknown, which the scheduler reads as unlimited. Reports are validated, then clipped
to :class:`ProfileBounds` so that one client cannot claim, say, 10^9 GB of memory.

:class:`CapacityProfiler` turns profiles and expert sizes into the alignment problem's
``client_memory`` and ``train_time`` rows. For client ``i`` and expert ``j``::

    t[i, j] = s_i · (latency_i + bytes_j / bandwidth_down_i          # fetch the expert
                     + samples_i · cost_j / compute_i                 # train it
                     + bytes_j / bandwidth_up_i)                      # return the update

where unknown fields contribute nothing (unlimited), and ``s_i`` is the client's *slowdown*.

Learning from observed durations, over a window of the client's last ``window`` rounds
(the median shrugs off outliers such as one stalled round):

* a client that declares ``compute``: ``s_i`` is the median of observed/predicted duration
  (1 before any). One slowdown scales compute and bandwidth together, since a single duration
  cannot separate them; the effective speeds are ``compute_i / s_i`` and ``bandwidth_i / s_i``;
* a client that declares no ``compute``: its speed is learned instead, as the median of
  ``samples · cost / (duration − predicted transfer and latency)``; until its first report
  its training time counts as zero.

A dropout is a censored observation: the client needed *more* than it had (its duration, or
the deadline), so the profiler records a slowdown at least that large (or a speed at most
that small), made worse by ``dropout_inflation``; it also lowers the client's reliability,
an exponential average of completed rounds.

Every class checks its arguments once, against its ``_parameter_constraints`` table (see
:mod:`fedalign._validation`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import PerExpert, checked_array, grow_rows, validate_table
from ._validation import InstanceOf, Interval, Pair, Table, validate

__all__ = ["CapacityProfiler", "ClientProfile", "ProfileBounds", "PROFILE_FIELDS", "MAX_EXPERTS"]

#: The float columns a profile is stored as (None becomes NaN).
PROFILE_FIELDS = (
    "memory",
    "compute",
    "bandwidth_up",
    "bandwidth_down",
    "latency",
    "availability",
    "samples",
)
_POSITIVE = {"compute", "bandwidth_up", "bandwidth_down"}

#: Largest ``max_experts`` a profile may declare: the profiler stores it as an int32 per
#: client, and an integer of 400 digits must be a named error, not an OverflowError later.
MAX_EXPERTS = 2**31 - 1

_AT_LEAST_0 = Interval(float, 0, None)
_ABOVE_0 = Interval(float, 0, None, closed="neither")


@dataclass(frozen=True)
class ClientProfile:
    """What a client reports about its capacity; ``None`` means unknown (unlimited).

    Parameters
    ----------
    memory : float >= 0, optional
        Memory the client has for experts, in the unit of the scheduler's ``expert_memory``.
    compute : float > 0, optional
        Training speed in samples per second (for an expert of cost 1).
    bandwidth_up, bandwidth_down : float > 0, optional
        Bytes per second to and from the server.
    latency : float >= 0, optional
        Fixed seconds per expert exchanged (connection setup, round trip).
    max_experts : int >= 0, optional
        At most this many experts per round; None uses the scheduler's ``max_experts``.
    availability : float in [0, 1], optional
        Self-reported chance of finishing a round (shown by ``explain``; the profiler's
        reliability starts from it).
    samples : int >= 0, optional
        Samples the client trains each expert on per round (its local data), used for time
        estimates until it reports real counts.

    Raises
    ------
    TypeError
        A field of the wrong type (text, a bool, a complex number, an array).
    ValueError
        A field out of range (negative, not finite, too large for a float); the message
        names the field and shows the value.
    """

    _parameter_constraints: ClassVar[Table] = {
        "memory": [_AT_LEAST_0, None],
        "compute": [_ABOVE_0, None],
        "bandwidth_up": [_ABOVE_0, None],
        "bandwidth_down": [_ABOVE_0, None],
        "latency": [_AT_LEAST_0, None],
        "max_experts": [Interval(int, 0, MAX_EXPERTS), None],
        "availability": [Interval(float, 0, 1), None],
        "samples": [_AT_LEAST_0, None],
    }

    memory: float | None = None
    compute: float | None = None
    bandwidth_up: float | None = None
    bandwidth_down: float | None = None
    latency: float | None = None
    max_experts: int | None = None
    availability: float | None = None
    samples: float | None = None

    def __post_init__(self) -> None:
        table = self._parameter_constraints
        checked = validate(
            table,
            {name: getattr(self, name) for name in table},
            type_error=TypeError,
            prefix="ClientProfile.",
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class ProfileBounds:
    """Plausible ranges that self-reported profile fields are clipped to.

    Each field is a ``(low, high)`` pair of finite numbers, ``0 <= low <= high``. Defaults
    assume bytes, seconds and samples per second; change them when ``expert_memory`` uses
    another unit.

    Raises
    ------
    ValueError
        A field that is not such a pair; the message names the field.
    """

    _parameter_constraints: ClassVar[Table] = {
        name: [Pair(_AT_LEAST_0)]
        for name in ("memory", "compute", "bandwidth_up", "bandwidth_down", "latency", "samples")
    }

    memory: tuple[float, float] = (0.0, 1e12)
    compute: tuple[float, float] = (1e-3, 1e9)
    bandwidth_up: tuple[float, float] = (1.0, 1e11)
    bandwidth_down: tuple[float, float] = (1.0, 1e11)
    latency: tuple[float, float] = (0.0, 600.0)
    samples: tuple[float, float] = (0.0, 1e9)

    def __post_init__(self) -> None:
        table = self._parameter_constraints
        checked = validate(
            table, {name: getattr(self, name) for name in table}, prefix="ProfileBounds."
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def clip(self, profile: ClientProfile) -> ClientProfile:
        """``profile`` with each known field clipped into its range."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(profile, f.name)
            if v is not None:
                lo, hi = getattr(self, f.name)
                c = min(max(v, lo), hi)
                if f.name in _POSITIVE and c <= 0:
                    c = hi if hi > 0 else 1.0
                if c != v:
                    changes[f.name] = c
        return replace(profile, **changes) if changes else profile

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready form."""
        return {k: list(v) for k, v in asdict(self).items()}


#: The smallest deadline a client is given (seconds): problems need positive deadlines.
_MIN_DEADLINE = 1e-6


def _inverse(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """``1 / v``, with 0 where ``v`` is unknown (NaN): an unknown speed costs no time."""
    return np.where(np.isnan(v), 0.0, 1.0 / np.where(np.isnan(v), 1.0, v))


class CapacityProfiler:
    """Per-client capacity: stored profiles, learned slowdown, reliability; builds time rows.

    Parameters
    ----------
    expert_bytes : (E,) floats >= 0
        Bytes moved to fetch one expert and again to return its update.
    expert_cost : (E,) floats >= 0
        Relative training cost of one sample on each expert (1 = the unit ``compute`` is in).
    samples_per_round : float, optional
        Samples assumed for a client that has neither reported nor declared any.
    bounds : ProfileBounds, optional
        Clip ranges for self-reports.
    window : int >= 1
        Completed rounds remembered per client for the median slowdown.
    dropout_inflation : float >= 1
        Factor by which a dropout's censored ratio exceeds what was known.
    reliability_rate : float in [0, 1]
        Weight of the latest round in the reliability average.
    ratio_bounds : (low, high)
        Observed ratios are clipped into this range before entering the window.
    shared_bytes : float >= 0
        Bytes of the shared parameters a client fetches and returns once per round, whatever
        number of experts it trains (default 0). Their transfer time is part of every
        observed duration, so :meth:`observe` predicts it too, and :meth:`shared_time` gives
        it to the deadline row.

    Raises
    ------
    ValueError
        An argument of the wrong type or out of range (the message names it, and the
        position for per-expert values), or ``expert_cost`` of another length than
        ``expert_bytes``.
    """

    _parameter_constraints: ClassVar[Table] = {
        "expert_bytes": [PerExpert(_AT_LEAST_0)],
        "expert_cost": [PerExpert(_AT_LEAST_0)],
        "samples_per_round": [_AT_LEAST_0, None],
        "bounds": [InstanceOf(ProfileBounds), None],
        "window": [Interval(int, 1, 255)],  # the window's cursor is a uint8
        "dropout_inflation": [Interval(float, 1, None)],
        "reliability_rate": [Interval(float, 0, 1)],
        "ratio_bounds": [Pair(_ABOVE_0)],
        "shared_bytes": [_AT_LEAST_0],
    }

    def __init__(
        self,
        expert_bytes: ArrayLike,
        expert_cost: ArrayLike,
        *,
        samples_per_round: float | None = None,
        bounds: ProfileBounds | None = None,
        window: int = 8,
        dropout_inflation: float = 1.25,
        reliability_rate: float = 0.2,
        ratio_bounds: tuple[float, float] = (0.01, 100.0),
        shared_bytes: float = 0.0,
    ) -> None:
        a = validate_table(
            self._parameter_constraints,
            {
                "expert_bytes": expert_bytes,
                "expert_cost": expert_cost,  # E comes from expert_bytes
                "samples_per_round": samples_per_round,
                "bounds": bounds,
                "window": window,
                "dropout_inflation": dropout_inflation,
                "reliability_rate": reliability_rate,
                "ratio_bounds": ratio_bounds,
                "shared_bytes": shared_bytes,
            },
        )
        self.expert_bytes: NDArray[np.float64] = a["expert_bytes"]
        self.expert_cost: NDArray[np.float64] = a["expert_cost"]
        self.n_experts = int(self.expert_bytes.shape[0])
        self.samples_per_round: float | None = a["samples_per_round"]
        self.bounds: ProfileBounds = a["bounds"] if a["bounds"] is not None else ProfileBounds()
        self.window: int = a["window"]
        self.dropout_inflation: float = a["dropout_inflation"]
        self.reliability_rate: float = a["reliability_rate"]
        self.ratio_bounds: tuple[float, float] = a["ratio_bounds"]
        self.shared_bytes: float = a["shared_bytes"]
        self._n = 0
        self._prof = np.empty((0, len(PROFILE_FIELDS)), dtype=np.float64)
        self._max_experts = np.empty(0, dtype=np.int32)
        self._ratios = np.empty((0, window), dtype=np.float32)
        self._next = np.empty(0, dtype=np.uint8)
        self._reliability = np.empty(0, dtype=np.float32)
        self._seen_samples = np.empty(0, dtype=np.float32)

    # ------------------------------------------------------------------ profiles

    @property
    def n_clients(self) -> int:
        """Number of rows (registered clients)."""
        return self._n

    def add(self, k: int) -> NDArray[np.int64]:
        """Append ``k`` rows with empty profiles; return their indices."""
        s = self._n
        self._prof = grow_rows(self._prof, s, s + k)
        self._max_experts = grow_rows(self._max_experts, s, s + k)
        self._ratios = grow_rows(self._ratios, s, s + k)
        self._next = grow_rows(self._next, s, s + k)
        self._reliability = grow_rows(self._reliability, s, s + k)
        self._seen_samples = grow_rows(self._seen_samples, s, s + k)
        self._prof[s : s + k] = np.nan
        self._max_experts[s : s + k] = -1
        self._ratios[s : s + k] = np.nan
        self._next[s : s + k] = 0
        self._reliability[s : s + k] = 1.0
        self._seen_samples[s : s + k] = np.nan
        self._n = s + k
        return np.arange(s, s + k, dtype=np.int64)

    def set_profile(self, row: int, profile: ClientProfile) -> ClientProfile:
        """Store ``profile`` (clipped to the bounds) for ``row``; return the stored profile.

        The reliability restarts from the profile's availability when one is given.
        """
        return self.set_profiles([row], profile)

    def set_profiles(self, rows: ArrayLike, profile: ClientProfile) -> ClientProfile:
        """Store one ``profile`` (clipped) for many ``rows`` at once; return the stored profile."""
        r = np.asarray(rows, dtype=np.int64)
        p = self.bounds.clip(profile)
        # the window holds slowdowns or learned speeds: forget it when that changes
        switched = self._declares_compute(r) != (p.compute is not None)
        self._ratios[r[switched]] = np.nan
        self._prof[r] = [np.nan if getattr(p, f) is None else getattr(p, f) for f in PROFILE_FIELDS]
        self._max_experts[r] = -1 if p.max_experts is None else p.max_experts
        if p.availability is not None:
            self._reliability[r] = p.availability
        return p

    @contextmanager
    def overlay(self, measured: Mapping[int, ClientProfile]) -> Iterator[None]:
        """Within the block, each row's profile has the fields set in ``measured`` instead.

        For one round's conditions measured at check-in (e.g. a faded bandwidth): the
        measured fields are clipped like any profile; what the profiler learned (slowdowns,
        reliability) is left alone, and the stored profiles are restored on exit.
        """
        rows = np.fromiter(measured, dtype=np.int64, count=len(measured))
        saved_prof, saved_k = self._prof[rows].copy(), self._max_experts[rows].copy()
        try:
            for row, profile in measured.items():
                p = self.bounds.clip(profile)
                for k, name in enumerate(PROFILE_FIELDS):
                    value = getattr(p, name)
                    if value is not None:
                        self._prof[row, k] = value
                if p.max_experts is not None:
                    self._max_experts[row] = p.max_experts
            yield
        finally:
            self._prof[rows] = saved_prof
            self._max_experts[rows] = saved_k

    def profile(self, row: int) -> ClientProfile:
        """The stored (clipped) profile of ``row``."""
        vals = {f: (None if np.isnan(v) else float(v)) for f, v in zip(PROFILE_FIELDS, self._prof[row], strict=True)}
        k = int(self._max_experts[row])
        return ClientProfile(max_experts=None if k < 0 else k, **vals)

    def column(self, name: str, rows: ArrayLike) -> NDArray[np.float64]:
        """One profile field for ``rows`` (NaN where unknown)."""
        return self._prof[np.asarray(rows, dtype=np.int64), PROFILE_FIELDS.index(name)]

    def max_experts(self, rows: ArrayLike) -> NDArray[np.int64]:
        """Declared ``max_experts`` per row (-1 where unknown)."""
        return self._max_experts[np.asarray(rows, dtype=np.int64)].astype(np.int64)

    def reliability(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Exponential average of completed rounds (1 = always finished)."""
        return self._reliability[np.asarray(rows, dtype=np.int64)].astype(np.float64)

    # ------------------------------------------------------------------ estimates

    def samples(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Samples expected per expert: last reported, else declared, else the default, else 0."""
        r = np.asarray(rows, dtype=np.int64)
        out = self._seen_samples[r].astype(np.float64)
        declared = self.column("samples", r)
        out = np.where(np.isnan(out), declared, out)
        default = 0.0 if self.samples_per_round is None else float(self.samples_per_round)
        return np.where(np.isnan(out), default, out)

    def _window_median(self, r: NDArray[np.int64]) -> NDArray[np.float64]:
        """Median of each row's window, NaN where it is empty."""
        win = np.sort(self._ratios[r].astype(np.float64), axis=1)
        k = (~np.isnan(win)).sum(axis=1)  # NaNs (empty slots) sort last
        lo = np.maximum(k - 1, 0) // 2
        hi = np.maximum(k // 2, lo)
        idx = np.stack([lo, hi], axis=1)
        med = np.take_along_axis(win, idx, axis=1).mean(axis=1)
        return np.where(k == 0, np.nan, med)

    def _declares_compute(self, r: NDArray[np.int64]) -> NDArray[np.bool_]:
        return ~np.isnan(self._prof[r, PROFILE_FIELDS.index("compute")])

    def slowdown(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Median observed/predicted ratio over each row's window (1 with no observation).

        Only for clients that declare ``compute``; for the others it is 1 and the profiler
        learns their compute speed instead (:meth:`learned_compute`).
        """
        r = np.asarray(rows, dtype=np.int64)
        med = self._window_median(r)
        return np.where(self._declares_compute(r) & ~np.isnan(med), med, 1.0)

    def learned_compute(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Compute speed learned for clients that declare none (NaN: not declared, not seen).

        The median, over the window, of ``samples · cost / (duration − predicted transfer
        and latency)`` of completed rounds.
        """
        r = np.asarray(rows, dtype=np.int64)
        return np.where(self._declares_compute(r), np.nan, self._window_median(r))

    def base_time(
        self, rows: ArrayLike, samples: ArrayLike | None = None, *, learned: bool = True
    ) -> NDArray[np.float64]:
        """Predicted seconds per (row, expert) from the profiles (slowdown 1), (m, E).

        ``learned=True`` uses the learned compute speed of clients that declare none;
        ``False`` leaves their training time out (what the declaration alone predicts).
        """
        r = np.asarray(rows, dtype=np.int64)
        s = self.samples(r) if samples is None else np.asarray(samples, dtype=np.float64)
        p = self._prof[r]

        def col(name: str) -> NDArray[np.float64]:
            return p[:, PROFILE_FIELDS.index(name)]

        lat = np.nan_to_num(col("latency"), nan=0.0)
        per_byte = self._seconds_per_byte(r)
        compute = col("compute")
        if learned:
            compute = np.where(np.isnan(compute), self.learned_compute(r), compute)
        per_work = s * _inverse(compute)
        return (
            lat[:, None]
            + per_byte[:, None] * self.expert_bytes[None, :]
            + per_work[:, None] * self.expert_cost[None, :]
        )

    def _seconds_per_byte(self, r: NDArray[np.int64]) -> NDArray[np.float64]:
        """Seconds to fetch and to return one byte, per row (0 where bandwidths are unknown)."""
        p = self._prof[r]
        down = p[:, PROFILE_FIELDS.index("bandwidth_down")]
        up = p[:, PROFILE_FIELDS.index("bandwidth_up")]
        return _inverse(down) + _inverse(up)

    def shared_time(self, rows: ArrayLike, *, learned: bool = True) -> NDArray[np.float64]:
        """Seconds each row needs to fetch and return the shared part, ``(m,)``.

        Paid once per round by a client that trains any expert; scaled by the learned
        slowdown (``learned=False``: the declaration alone, slowdown 1).
        """
        r = np.asarray(rows, dtype=np.int64)
        t = self.shared_bytes * self._seconds_per_byte(r)
        return self.slowdown(r) * t if learned else t

    def train_time(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Expected seconds for each row to fetch, train and return each expert, (m, E)."""
        r = np.asarray(rows, dtype=np.int64)
        return self.slowdown(r)[:, None] * self.base_time(r)

    def client_memory(self, rows: ArrayLike, expert_memory: ArrayLike) -> NDArray[np.float64]:
        """Memory per row for the problem; unknown memory becomes room for every expert."""
        mem = self.column("memory", rows)
        unlimited = float(np.sum(expert_memory)) + 1.0
        return np.where(np.isnan(mem), unlimited, mem)

    @staticmethod
    def deadline(
        train_time: ArrayLike,
        max_experts: ArrayLike,
        *,
        fixed: float | None = None,
        percentile: float | None = None,
        overhead: ArrayLike | None = None,
    ) -> NDArray[np.float64]:
        """The round's deadline per cohort client: ``fixed`` seconds, or Oort-style.

        With ``percentile=q`` it is the q-th percentile, over the cohort, of the time each
        client needs for its ``max_experts`` fastest experts (at least one) plus its
        ``overhead``, so about q % of the cohort can take a full load in time.

        ``overhead`` (m,) is time a client spends once per round whatever it trains (the
        shared part's transfer, :meth:`shared_time`); it comes off that client's deadline,
        so the per-expert times of the deadline row (linear in the pairs) must fit in the
        rest. Deadlines never go below 1 µs (a problem's deadlines are positive): nothing
        that takes time fits then.
        """
        t = np.asarray(train_time, dtype=np.float64)
        n = t.shape[0]
        extra = np.zeros(n) if overhead is None else np.asarray(overhead, dtype=np.float64)
        if fixed is not None:
            return np.maximum(float(fixed) - extra, _MIN_DEADLINE)
        if percentile is None:
            raise ValueError("deadline: give fixed seconds or a percentile")
        k = np.clip(np.asarray(max_experts, dtype=np.int64), 1, t.shape[1])
        need = np.take_along_axis(np.cumsum(np.sort(t, axis=1), axis=1), k[:, None] - 1, axis=1)[:, 0]
        cut = max(float(np.percentile(need + extra, percentile)), _MIN_DEADLINE)
        return np.maximum(cut - extra, _MIN_DEADLINE)

    def estimates(self, row: int) -> dict[str, float | None]:
        """Effective capacity of ``row``: declared speeds divided by the learned slowdown."""
        s = float(self.slowdown([row])[0])
        p = self.profile(row)
        out: dict[str, float | None] = {"slowdown": s, "reliability": float(self._reliability[row])}
        for f in ("compute", "bandwidth_up", "bandwidth_down"):
            v = getattr(p, f)
            out[f] = None if v is None else v / s
        if p.compute is None:
            c = float(self.learned_compute([row])[0])
            out["compute"] = None if np.isnan(c) else c
        out["latency"] = None if p.latency is None else p.latency * s
        out["samples"] = float(self.samples([row])[0])
        return out

    # ------------------------------------------------------------------ learning

    def observe(
        self,
        rows: ArrayLike,
        trained: ArrayLike,
        samples: ArrayLike,
        duration: ArrayLike,
        completed: ArrayLike,
        deadline: ArrayLike,
    ) -> None:
        """Learn from one round's outcome for distinct ``rows``.

        Parameters
        ----------
        rows : (m,) ints
        trained : (m, E) bool
            Experts each client worked on (what it was given, for a dropout).
        samples : (m,) floats
            Samples reported (NaN: unknown, e.g. a silent dropout).
        duration : (m,) floats
            Seconds the client took, or until it gave up (NaN: unknown).
        completed : (m,) bool
        deadline : (m,) floats
            The round's deadline per client (NaN: none).
        """
        r = np.asarray(rows, dtype=np.int64)
        if r.size == 0:
            return
        t = np.asarray(trained, dtype=bool)
        smp = np.asarray(samples, dtype=np.float64)
        dur = np.asarray(duration, dtype=np.float64)
        done = np.asarray(completed, dtype=bool)
        dl = np.asarray(deadline, dtype=np.float64)

        # a dropout's sample count (often 0: it never said) is what it was expected to train
        used = np.where(np.isnan(smp) | (~done & (smp <= 0)), self.samples(r), smp)
        # what the declaration predicts (no learned speeds), and the work done
        pred = np.where(t, self.base_time(r, used, learned=False), 0.0).sum(axis=1)
        worked = t.any(axis=1)
        # the shared part moved once for every client that worked: part of its duration
        pred = pred + np.where(worked, self.shared_time(r, learned=False), 0.0)
        work = used * np.where(t, self.expert_cost[None, :], 0.0).sum(axis=1)
        declared = self._declares_compute(r)
        ratio, ok_ratio = self._observed_slowdown(r, pred, dur, done, dl)
        speed, ok_speed = self._observed_speed(r, pred, work, dur, done, dl)
        with np.errstate(over="ignore", under="ignore"):
            value = np.where(declared, ratio, speed).astype(np.float32)  # as the window stores it
        # what the window keeps must stay usable (and pass the checks at load): positive and
        # finite in float32, whatever bounds were set
        learn = np.where(declared, ok_ratio, ok_speed) & np.isfinite(value) & (value > 0)

        lr = r[learn]
        slot = self._next[lr].astype(np.int64)
        self._ratios[lr, slot] = value[learn]
        self._next[lr] = ((slot + 1) % self.window).astype(np.uint8)
        a = self.reliability_rate
        self._reliability[r] = ((1 - a) * self._reliability[r] + a * done).astype(np.float32)
        # an idle client (given nothing) reports 0 samples: not its data size, so not kept
        fresh = done & np.isfinite(smp) & worked
        self._seen_samples[r[fresh]] = smp[fresh]

    def _observed_slowdown(
        self,
        r: NDArray[np.int64],
        pred: NDArray[np.float64],
        dur: NDArray[np.float64],
        done: NDArray[np.bool_],
        dl: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Slowdown seen this round (clients that declare compute), and where it is usable.

        Observed / predicted duration; for a dropout, at least what it had (its duration or
        the deadline) over the prediction and at least the current slowdown, inflated.
        """
        with np.errstate(all="ignore"):  # clipped and checked finite below
            seen = dur / pred
            censored = np.fmax(np.fmax(seen, dl / pred), self.slowdown(r)) * self.dropout_inflation
            ratio = np.clip(np.where(done, seen, censored), *self.ratio_bounds)
        return ratio, (pred > 0) & np.isfinite(ratio)

    def _observed_speed(
        self,
        r: NDArray[np.int64],
        pred: NDArray[np.float64],
        work: NDArray[np.float64],
        dur: NDArray[np.float64],
        done: NDArray[np.bool_],
        dl: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Compute speed seen this round (clients that declare none), and where it is usable.

        ``pred`` is then transfer and latency only: the speed is the work over the rest of
        the duration. A dropout needed more than its duration or the deadline, so it is at
        most that slow (and no faster than known), deflated.
        """
        inf = self.dropout_inflation
        with np.errstate(all="ignore"):  # clipped and checked finite below
            speed = work / np.fmax(dur - pred, 0.05 * dur)
            limit = np.fmax(dur, dl)
            slower = work / np.fmax(limit - pred, 0.05 * limit)
            speed = np.where(done, speed, np.fmin(slower, self.learned_compute(r)) / inf)
            lo, hi = self.bounds.compute
            speed = np.clip(speed, lo, hi)
        return speed, (work > 0) & np.isfinite(speed) & (speed > 0)

    # ------------------------------------------------------------------ undo

    def snapshot(self, rows: ArrayLike) -> dict[str, Any]:
        """What :meth:`restore` needs to undo a later :meth:`observe` of ``rows``.

        Costs O(len(rows) · window). Valid while only ``rows`` are observed (profiles
        unchanged) and no rows are added in between.
        """
        r = np.array(rows, dtype=np.int64)
        return {
            "rows": r,
            "ratios": self._ratios[r],
            "ratio_next": self._next[r],
            "reliability": self._reliability[r],
            "seen_samples": self._seen_samples[r],
            "n": self._n,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Undo every :meth:`observe` since :meth:`snapshot` (see its conditions)."""
        if snap["n"] != self._n:
            raise ValueError("snapshot: rows were added since it was taken")
        r = snap["rows"]
        self._ratios[r] = snap["ratios"]
        self._next[r] = snap["ratio_next"]
        self._reliability[r] = snap["reliability"]
        self._seen_samples[r] = snap["seen_samples"]

    # ------------------------------------------------------------------ persistence

    def state_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """Arrays that reproduce the per-client state exactly (views if ``copy=False``)."""
        n = self._n
        out: dict[str, NDArray[Any]] = {
            "profile": self._prof[:n],
            "max_experts": self._max_experts[:n],
            "ratios": self._ratios[:n],
            "ratio_next": self._next[:n],
            "reliability": self._reliability[:n],
            "seen_samples": self._seen_samples[:n],
        }
        return {k: v.copy() for k, v in out.items()} if copy else out

    def load_state_dict(self, state: dict[str, Any], *, copy: bool = True) -> None:
        """Replace the per-client state (validated first; nothing changes on error).

        ``copy=False`` adopts the given arrays where their dtype already matches.

        Raises
        ------
        ValueError
            An array of the wrong shape or kind, or a value no profiler could hold: a
            profile field outside its :class:`ProfileBounds` range (availability outside
            [0, 1]), a reliability outside [0, 1], a ratio that is not positive, a negative
            sample count, a window cursor past the window.
        """
        raw = np.asarray(state["profile"])
        if raw.ndim != 2:
            raise ValueError(f"profile: expected shape (n, {len(PROFILE_FIELDS)}), got {raw.shape}")
        n = raw.shape[0]
        prof = checked_array("profile", raw, shape=(n, len(PROFILE_FIELDS)), kind="float", nan=True)
        for k, field in enumerate(PROFILE_FIELDS):  # seven columns, each against its range
            lo, hi = (0.0, 1.0) if field == "availability" else getattr(self.bounds, field)
            if field in _POSITIVE and hi <= 0:
                lo = hi = 1.0  # what ProfileBounds.clip stores when the range has no positive value
            checked_array(f"profile[:, {k}] ({field})", prof[:, k], shape=(n,), kind="float",
                          low=lo, high=hi, above=0.0 if field in _POSITIVE else None, nan=True)
        arrs = {
            "max_experts": checked_array("max_experts", state["max_experts"], shape=(n,), kind="int",
                                         low=-1, high=MAX_EXPERTS),
            # slowdowns or learned speeds: positive (NaN: an empty slot)
            "ratios": checked_array("ratios", state["ratios"], shape=(n, self.window), kind="float",
                                    above=0.0, nan=True),
            "ratio_next": checked_array("ratio_next", state["ratio_next"], shape=(n,), kind="int",
                                        low=0, high=self.window - 1),
            "reliability": checked_array("reliability", state["reliability"], shape=(n,), kind="float",
                                         low=0.0, high=1.0),
            "seen_samples": checked_array("seen_samples", state["seen_samples"], shape=(n,),
                                          kind="float", low=0.0, nan=True),
        }
        prof = prof.astype(np.float64, copy=False)
        self._prof = prof.copy() if copy else prof
        self._max_experts = arrs["max_experts"].astype(np.int32, copy=copy)
        self._ratios = arrs["ratios"].astype(np.float32, copy=copy)
        self._next = arrs["ratio_next"].astype(np.uint8, copy=copy)
        self._reliability = arrs["reliability"].astype(np.float32, copy=copy)
        self._seen_samples = arrs["seen_samples"].astype(np.float32, copy=copy)
        self._n = n
