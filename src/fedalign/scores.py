"""Fitness and usage: the scheduler's learned state (docs/scheduler.md), in plain numpy.

:class:`FitnessTracker` keeps ``F[i, j]`` ∈ [0, 1], how well expert ``j`` suits client ``i``.
After every round, pairs that trained move toward their reward,
``F ← (1 - a)·F + a·reward``, and every other pair drifts back toward the prior,
``F ← F - d·(F - prior)``. The drift is applied *lazily*: each client row remembers the
round up to which it is current, and ``k`` missed rounds are applied at once as
``F ← prior + (1 - d)^k·(F - prior)`` when the row is next read or updated. Closing a round
therefore costs nothing per registered client, and a registry of a million clients by 64
experts is one float32 array (256 MB) plus a per-row round stamp.

Rewards that carry zero-mean privacy noise of a known variance (docs/trust.md, "Privacy")
are averaged with a Kalman-style gain instead of the fixed rate ``a``: the tracker keeps a
variance ``P[i, j]`` of each pair's estimate, and a report of noise variance ``V`` moves the
pair by ``K = P / (P + R0 + V)``, ``R0`` the exact rewards' own scatter that ``a`` implies
(:meth:`FitnessTracker.record`), so that the gain tends to ``a`` as the noise vanishes. The gain depends on the counts
and the stated noise, never on the reported values, so the estimate stays an unbiased
weighted average of the exact rewards. Exact rewards keep the fixed rate, and a tracker that
never sees a noisy reward holds no variance array.

:class:`UsageTracker` keeps ``U[j]``, the recent training load of expert ``j``:
``U ← ρ·U + (1 - ρ)·load`` once per round, and normalises it for the desirability.

Both are owned by :class:`fedalign.Scheduler`; they are public so that other systems can
reuse the arithmetic.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._arrays import MAX_N_EXPERTS, check_unit_interval, checked_array, float_array, grow_rows
from ._validation import Interval, Options, Table, short_repr, validate, validate_one

__all__ = ["FitnessTracker", "PRIOR_VARIANCE", "UsageTracker", "USAGE_MAX", "USAGE_NORMS"]

#: Ways to normalise usage across experts before it enters the desirability.
USAGE_NORMS = ("max", "mean", "share")

#: Ceiling of every usage value (and of a round's pending load): usage stays finite whatever
#: loads are added, so its normalisation and everything after it stay defined.
USAGE_MAX = 1e300

_COUNT_MAX = np.iinfo(np.uint16).max
#: Variance of a pair's fitness before anything is known: 1/4, the largest variance any
#: value in [0, 1] can have (a fair coin), so the first reports are not under-weighted.
PRIOR_VARIANCE = 0.25
#: Largest ``rounds_closed`` a saved state may hold (rounds are numbered below 2**53).
_ROUNDS_MAX = 2**53
_N_EXPERTS = [Interval(int, 1, MAX_N_EXPERTS)]
_RATE = [Interval(float, 0, 1)]
_ROWS = [Interval(int, 0, 2**40)]  # rows added at once: a number, not an allocation of 10**12


def _float_dtype(value: Any) -> np.dtype[Any]:
    """``dtype`` checked: a numpy floating-point type (float32 or float64, usually)."""
    try:
        dtype = np.dtype(value)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise ValueError(f"FitnessTracker.dtype: expected a numpy float dtype, got {short_repr(value)}")
    return dtype


def _noise(name: str, value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """``noise`` checked: ``shape`` variances >= 0 (NaN: none), as float64 with NaN as 0."""
    v = np.asarray(value, dtype=np.float64)
    if v.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {v.shape}")
    bad = np.isinf(v) | (v < 0)
    if bad.any():
        k = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}{list(k)}: expected a variance >= 0 or NaN, got {v[k]!r}")
    return np.nan_to_num(v, nan=0.0)


class FitnessTracker:
    """Fitness ``F[i, j]`` of every registered client for every expert, with lazy drift.

    Parameters
    ----------
    n_experts : int
        Number of experts (columns).
    ema : float in [0, 1]
        ``a``: weight of a new reward, ``F ← (1 - a)·F + a·reward``.
    decay : float in [0, 1]
        ``d``: per-round drift of untrained pairs toward ``prior``.
    prior : float in [0, 1]
        Fitness of a pair nothing is known about.
    dtype : numpy float dtype
        Storage type of ``F`` (float32 halves the memory of a large registry; arithmetic is
        done in float64 on the rows involved).
    bounds : (low, high), default (0, 1)
        The range a saved fitness may hold (checked at :meth:`load_state_dict`). Rewards in
        [0, 1] keep ``F`` in [0, 1]; rewards carrying zero-mean privacy noise are averaged
        unclipped (so the average stays unbiased) and need a wider range.

    Notes
    -----
    Rows are clients in the order they were added. ``rounds_closed`` counts closed rounds;
    ``record`` applies one round's update to some rows before the round closes (each row at
    most once per round), and those rows are then current as of the end of that round.

    Noisy rewards (``record(..., noise=V)``) are averaged as a Kalman filter of the model the
    settings already state, with no new setting:

    * a pair's fitness reverts to ``prior`` by ``d`` per round, so its estimate's variance
      grows back toward :data:`PRIOR_VARIANCE` ``P0`` as ``P ← P0 + (1 - d)²·(P - P0)`` per
      round;
    * an exact reward scatters around the pair's fitness with the variance ``R0``
      (:attr:`intrinsic_variance`) for which the fixed rate ``a`` is this filter's gain in
      steady state, a pair reported every round; a noisy one adds its ``V``.

    A report predicts one round ahead, then moves by ``K = w·P / (P + R0 + V)`` (``w`` the
    pair's ``weight``) and keeps ``P ← (1 - K)²·P + K²·(R0 + V)``. As ``V`` goes to 0 the
    gain goes to the fixed rate's. The variances are a second ``(n_clients, n_experts)``
    float32 array, allocated at the first noisy reward.
    """

    _parameter_constraints: ClassVar[Table] = {
        "n_experts": _N_EXPERTS,
        "ema": _RATE,
        "decay": _RATE,
        "prior": _RATE,
    }

    def __init__(
        self,
        n_experts: int,
        *,
        ema: float = 0.3,
        decay: float = 0.02,
        prior: float = 0.5,
        dtype: Any = np.float32,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        a = validate(
            self._parameter_constraints,
            {"n_experts": n_experts, "ema": ema, "decay": decay, "prior": prior},
            prefix="FitnessTracker.",
        )
        self.dtype = _float_dtype(dtype)
        self.n_experts: int = a["n_experts"]
        self.ema: float = a["ema"]
        self.decay: float = a["decay"]
        self.prior: float = a["prior"]
        self.bounds: tuple[float, float] = (float(bounds[0]), float(bounds[1]))
        self.rounds_closed = 0
        self._n = 0
        self._f = np.empty((0, self.n_experts), dtype=self.dtype)
        self._synced = np.empty(0, dtype=np.int64)
        self._count = np.empty((0, self.n_experts), dtype=np.uint16)
        # variance of each pair's estimate: allocated at the first noisy report
        self._var: NDArray[np.float32] | None = None

    @property
    def intrinsic_variance(self) -> float:
        """``R0``: the variance of an exact reward around its pair's fitness that ``ema``
        implies (class notes); ``inf`` for ``ema = 0``, 0 for ``decay = 0`` or ``ema = 1``.

        In steady state (a pair reported every round) the filter's predicted variance is
        ``Pp = q / (1 - (1 - d)²·(1 - a))`` with ``q = P0·(1 - (1 - d)²)``, and its gain
        ``Pp / (Pp + R0)`` equals ``a`` for ``R0 = Pp·(1 - a) / a``.
        """
        a, phi = self.ema, (1.0 - self.decay) ** 2
        if a == 0:
            return math.inf
        predicted = PRIOR_VARIANCE * (1.0 - phi) / (1.0 - phi * (1.0 - a))
        return predicted * (1.0 - a) / a

    # ------------------------------------------------------------------ rows

    @property
    def n_clients(self) -> int:
        """Number of rows (registered clients)."""
        return self._n

    def add(self, k: int, initial: ArrayLike | None = None) -> NDArray[np.int64]:
        """Append ``k`` rows at the prior, or at ``initial`` (a cold start); return their indices.

        Parameters
        ----------
        k : int
            Number of new rows.
        initial : (k, n_experts) or (n_experts,) floats in [0, 1], optional
            Starting fitness, e.g. the share of a client's samples its gate routes to each
            expert from one cheap forward pass. A single row is used for all ``k``.

        Raises
        ------
        ValueError
            ``k`` is not an int >= 0, or ``initial`` has the wrong shape, or a value that is
            not a number in [0, 1] (positions are given in the ``(k, n_experts)`` shape).
        """
        k = validate_one("k", k, _ROWS)
        start = self._n
        if initial is not None:
            init = float_array("initial", initial)
            if init.shape == (self.n_experts,):
                init = np.broadcast_to(init, (k, self.n_experts))
            if init.shape != (k, self.n_experts):
                raise ValueError(
                    f"initial: expected shape ({k}, {self.n_experts}), got {init.shape}"
                )
            check_unit_interval("initial", init)
        self._f = grow_rows(self._f, start, start + k)
        self._synced = grow_rows(self._synced, start, start + k)
        self._count = grow_rows(self._count, start, start + k)
        self._f[start : start + k] = self.prior if initial is None else init
        self._synced[start : start + k] = self.rounds_closed
        self._count[start : start + k] = 0
        if self._var is not None:
            self._var = grow_rows(self._var, start, start + k)
            self._var[start : start + k] = PRIOR_VARIANCE
        self._n = start + k
        return np.arange(start, start + k, dtype=np.int64)

    def get(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Current fitness of the given rows, (m, n_experts) float64, drift applied."""
        return self._current(np.asarray(rows, dtype=np.int64))

    def _current(self, r: NDArray[np.int64] | slice) -> NDArray[np.float64]:
        lag = np.maximum(0, self.rounds_closed - self._synced[r])
        factor = (1.0 - self.decay) ** lag.astype(np.float64)
        out = self._f[r].astype(np.float64)
        out -= self.prior
        out *= factor[..., None]
        out += self.prior
        return out

    def variance(self, rows: ArrayLike) -> NDArray[np.float64]:
        """Variance of the given rows' estimates, (m, n_experts), drift applied.

        :data:`PRIOR_VARIANCE` everywhere until the tracker records a noisy reward.
        """
        r = np.asarray(rows, dtype=np.int64)
        if self._var is None:
            return np.full((r.size, self.n_experts), PRIOR_VARIANCE)
        return self._current_var(r)

    def _current_var(self, r: NDArray[np.int64]) -> NDArray[np.float64]:
        assert self._var is not None
        lag = np.maximum(0, self.rounds_closed - self._synced[r])
        factor = (1.0 - self.decay) ** (2.0 * lag.astype(np.float64))
        return PRIOR_VARIANCE + factor[:, None] * (self._var[r].astype(np.float64) - PRIOR_VARIANCE)

    def values(self, chunk: int = 65536) -> NDArray[np.floating[Any]]:
        """Current fitness of every row, (n_clients, n_experts) in the storage dtype (a copy)."""
        out = np.empty((self._n, self.n_experts), dtype=self.dtype)
        for s in range(0, self._n, chunk):
            e = min(self._n, s + chunk)
            out[s:e] = self._current(slice(s, e))
        return out

    def times_trained(self, rows: ArrayLike) -> NDArray[np.uint16]:
        """How often each pair trained (saturates at 65535), (m, n_experts)."""
        return self._count[np.asarray(rows, dtype=np.int64)]

    # ------------------------------------------------------------------ updates

    def record(
        self,
        rows: ArrayLike,
        trained: ArrayLike,
        rewards: ArrayLike,
        weight: ArrayLike | None = None,
        noise: ArrayLike | None = None,
        surveyed: ArrayLike | None = None,
    ) -> None:
        """Apply this round's update to ``rows`` (each at most once per round).

        Parameters
        ----------
        rows : (m,) ints
            Distinct row indices.
        trained : (m, n_experts) bool
            Pairs that trained this round and get their reward.
        rewards : (m, n_experts) floats
            Rewards (in [0, 1], or noisy around it); read only where ``trained``.
        weight : (m, n_experts) or (m,) floats in [0, 1], optional
            How much each pair's reward counts: the pair moves at ``ema · weight`` toward
            its reward (a trust score, a plausibility verdict). A trained pair of weight 0
            is not credited: it drifts like an untrained one. Default 1 everywhere.
        noise : (m, n_experts) floats >= 0, optional
            Variance of the zero-mean noise each reward carries (NaN or 0: an exact reward).
            A noisy pair moves by the Kalman gain ``weight · P / (P + R0 + V)`` instead of
            ``ema · weight`` (class notes). Default: every reward exact.
        surveyed : (m, n_experts) bool, optional
            Pairs that get their reward without having trained (the client evaluated the
            expert only): fitness moves as for a trained pair, :meth:`times_trained` does
            not count them. Default: none.

        Raises
        ------
        ValueError
            ``noise`` of the wrong shape, or a negative or infinite variance (named).
        """
        r = np.asarray(rows, dtype=np.int64)
        t = np.asarray(trained, dtype=bool)
        counted = t
        if surveyed is not None:
            t = t | np.asarray(surveyed, dtype=bool)
        rw = np.asarray(rewards, dtype=np.float64)
        cur = self.get(r)
        drift = cur - self.decay * (cur - self.prior)
        # no (m, n_experts) array of ones when there is no weight: 100 MB at 10^5 x 128
        w = None if weight is None else np.broadcast_to(
            np.asarray(weight, dtype=np.float64).reshape(len(r), -1), t.shape
        )
        if w is not None:
            t = t & (w > 0)
            counted = counted & (w > 0)
        v = None if noise is None else _noise("noise", noise, t.shape)
        if v is not None and (noisy := t & (v > 0)).any():
            w = np.ones(t.shape) if w is None else w
            self._record_noisy(r, t, noisy, rw, w, v, cur, drift, counted)
            return
        rate: float | NDArray[np.float64] = self.ema if w is None else self.ema * w
        new = np.where(t, (1.0 - rate) * cur + rate * rw, drift)
        if self._var is not None:
            self._var[r] = self._next_var(r, t, rate)
        self._store(r, counted, new)

    def _next_var(
        self, r: NDArray[np.int64], t: NDArray[np.bool_], rate: float | NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Variance after a round of exact rewards: one round of drift, and a trained pair's
        variance shrunk by the weight the fixed rate gives its old estimate."""
        predicted = PRIOR_VARIANCE + (1.0 - self.decay) ** 2 * (self._current_var(r) - PRIOR_VARIANCE)
        return np.where(t, (1.0 - rate) * predicted, predicted)

    def _record_noisy(
        self,
        r: NDArray[np.int64],
        t: NDArray[np.bool_],
        noisy: NDArray[np.bool_],
        rw: NDArray[np.float64],
        w: NDArray[np.float64],
        noise: NDArray[np.float64],
        cur: NDArray[np.float64],
        drift: NDArray[np.float64],
        counted: NDArray[np.bool_],
    ) -> None:
        """:meth:`record` for a round with noisy rewards: exact pairs as usual, noisy pairs
        by the Kalman gain, the variance of every recorded pair kept."""
        if self._var is None:  # first noisy report: every estimate so far counts as unknown
            self._var = np.full(self._f.shape, PRIOR_VARIANCE, dtype=np.float32)
        exact = t & ~noisy
        rate = self.ema * w
        var = self._next_var(r, exact, rate)  # drift for all, the fixed rate for exact pairs
        # predict one round (the drift), then update: K = w P / (P + R0 + V), unbiased
        # whatever the reported values, as K does not depend on them
        v = np.where(noisy, noise, 1.0) + self.intrinsic_variance
        gain = np.where(noisy, w * var / (var + v), 0.0)
        new = np.where(noisy, drift + gain * (rw - drift), drift)
        new = np.where(exact, (1.0 - rate) * cur + rate * rw, new)
        with np.errstate(invalid="ignore"):  # ema = 0: R0 and V + R0 infinite, the gain 0
            kept = (1.0 - gain) ** 2 * var + gain**2 * v
        self._var[r] = np.where(noisy & (gain > 0), kept, var)
        self._store(r, counted, new)

    def _store(
        self, r: NDArray[np.int64], counted: NDArray[np.bool_], new: NDArray[np.float64]
    ) -> None:
        """Write the rows' new fitness; ``counted`` pairs trained once more."""
        self._f[r] = new
        self._synced[r] = self.rounds_closed + 1
        self._count[r] = np.minimum(self._count[r].astype(np.int64) + counted, _COUNT_MAX)

    def close_round(self) -> None:
        """Close the round: every row not recorded in it drifts one step (lazily)."""
        self.rounds_closed += 1

    # ------------------------------------------------------------------ undo

    def snapshot(self, rows: ArrayLike) -> dict[str, Any]:
        """What :meth:`restore` needs to undo later updates to ``rows`` and closed rounds.

        Costs O(len(rows) · n_experts), not a copy of the registry. Valid while only
        ``rows`` are recorded and no rows are added in between.
        """
        r = np.array(rows, dtype=np.int64)
        return {
            "rows": r,
            "fitness": self._f[r],
            "synced": self._synced[r],
            "count": self._count[r],
            "variance": None if self._var is None else self._var[r],
            "rounds_closed": self.rounds_closed,
            "n": self._n,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Undo everything since :meth:`snapshot` (see its conditions)."""
        if snap["n"] != self._n:
            raise ValueError("snapshot: rows were added since it was taken")
        r = snap["rows"]
        self._f[r] = snap["fitness"]
        self._synced[r] = snap["synced"]
        self._count[r] = snap["count"]
        if snap.get("variance") is None:
            self._var = None  # no noisy report had been recorded
        elif self._var is not None:
            self._var[r] = snap["variance"]
        self.rounds_closed = snap["rounds_closed"]

    # ------------------------------------------------------------------ persistence

    def state_dict(self, *, copy: bool = True) -> dict[str, Any]:
        """Arrays and scalars that reproduce this tracker exactly.

        ``copy=False`` returns views of the live arrays (for writing them out at once).
        ``variance`` is there only once a noisy reward was recorded.
        """
        n = self._n
        out = {"fitness": self._f[:n], "synced": self._synced[:n], "count": self._count[:n]}
        if self._var is not None:
            out["variance"] = self._var[:n]
        if copy:
            out = {k: v.copy() for k, v in out.items()}
        return {**out, "rounds_closed": int(self.rounds_closed)}

    def load_state_dict(self, state: dict[str, Any], *, copy: bool = True) -> None:
        """Replace the state with ``state`` (validated first; nothing changes on error).

        ``copy=False`` adopts the given arrays where their dtype already matches.

        A state without ``variance`` leaves the tracker without one (no noisy reward yet).

        Raises
        ------
        ValueError
            A missing-shaped, non-numeric or out-of-range array (fitness outside ``bounds``,
            a round stamp after ``rounds_closed + 1``, a negative count, a variance outside
            [0, 1]), named.
        """
        closed = state["rounds_closed"]
        if type(closed) is not int or not 0 <= closed <= _ROUNDS_MAX:
            raise ValueError(f"rounds_closed: expected an int in [0, 2**53], got {short_repr(closed)}")
        raw = np.asarray(state["fitness"])
        e = self.n_experts
        if raw.ndim != 2 or raw.shape[1] != e:
            raise ValueError(f"fitness: expected shape (n, {e}), got {raw.shape}")
        n = raw.shape[0]
        low, high = self.bounds
        f = checked_array("fitness", raw, shape=(n, e), kind="float", low=low, high=high)
        synced = checked_array("synced", state["synced"], shape=(n,), kind="int", low=0, high=closed + 1)
        count = checked_array("count", state["count"], shape=(n, e), kind="int", low=0, high=_COUNT_MAX)
        var = state.get("variance")
        if var is not None:
            var = checked_array("variance", var, shape=(n, e), kind="float", low=0.0, high=1.0)
        self._var = None if var is None else var.astype(np.float32, copy=copy)
        self._f = f.astype(self.dtype, copy=copy)
        self._synced = synced.astype(np.int64, copy=copy)
        self._count = count.astype(np.uint16, copy=copy)
        self.rounds_closed = closed
        self._n = n

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (including spare capacity)."""
        var = 0 if self._var is None else self._var.nbytes
        return int(self._f.nbytes + self._synced.nbytes + self._count.nbytes + var)


class UsageTracker:
    """Usage ``U[j]``: exponential moving average of the load each expert trained per round.

    Parameters
    ----------
    n_experts : int
    decay : float in [0, 1]
        ``ρ``: ``U ← ρ·U + (1 - ρ)·load``; the window is about ``1 / (1 - ρ)`` rounds.
    norm : {"max", "mean", "share"}
        How :meth:`normalised` scales usage across experts: ``U / max(U)`` (in [0, 1], the
        default, on the same scale as fitness), ``U / mean(U)`` (1 for an average expert) or
        ``U / sum(U)`` (each expert's share of the load). All give zeros while ``U`` is zero.
    """

    _parameter_constraints: ClassVar[Table] = {
        "n_experts": _N_EXPERTS,
        "decay": _RATE,
        "norm": [Options(USAGE_NORMS)],
    }

    def __init__(self, n_experts: int, *, decay: float = 0.8, norm: str = "max") -> None:
        a = validate(
            self._parameter_constraints,
            {"n_experts": n_experts, "decay": decay, "norm": norm},
            prefix="UsageTracker.",
        )
        self.n_experts: int = a["n_experts"]
        self.decay: float = a["decay"]
        self.norm: str = a["norm"]
        self.usage = np.zeros(self.n_experts, dtype=np.float64)
        self.pending = np.zeros(self.n_experts, dtype=np.float64)

    def add_load(self, load: ArrayLike) -> None:
        """Add load (samples or compute) trained on each expert in the open round.

        The round's pending load is kept at most :data:`USAGE_MAX` per expert, so usage
        stays finite whatever is added.

        Raises
        ------
        ValueError
            ``load`` is not ``n_experts`` finite numbers >= 0 (the message names the
            position); nothing is added.
        """
        arr = float_array("load", load)
        if arr.shape != (self.n_experts,):
            raise ValueError(f"load: expected {self.n_experts} values, got shape {arr.shape}")
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ValueError(f"load[{k}]: expected a finite value >= 0, got {arr[k].item()!r}")
        # both terms are at most USAGE_MAX, so the sum cannot overflow
        self.pending = np.minimum(self.pending + np.minimum(arr, USAGE_MAX), USAGE_MAX)

    def close_round(self) -> None:
        """Fold the round's load into the average and start a new round."""
        self.usage = self.decay * self.usage + (1.0 - self.decay) * self.pending
        self.pending = np.zeros(self.n_experts, dtype=np.float64)

    def snapshot(self) -> dict[str, Any]:
        """What :meth:`restore` needs to undo later loads and closed rounds."""
        return {"usage": self.usage.copy(), "pending": self.pending.copy()}

    def restore(self, snap: dict[str, Any]) -> None:
        """Undo everything since :meth:`snapshot`."""
        self.usage, self.pending = snap["usage"].copy(), snap["pending"].copy()

    def normalised(self) -> NDArray[np.float64]:
        """``Ũ``: usage scaled across experts as ``norm`` says (zeros while nothing trained)."""
        u = self.usage
        scale = {"max": u.max(), "mean": u.mean(), "share": u.sum()}[self.norm]
        if not scale > 0:
            return np.zeros_like(u)
        return u / scale

    def state_dict(self) -> dict[str, Any]:
        """Arrays that reproduce this tracker exactly."""
        return {"usage": self.usage.copy(), "pending": self.pending.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state with ``state`` (validated first; nothing changes on error).

        Raises
        ------
        ValueError
            ``usage`` or ``pending`` is not ``n_experts`` finite numbers in
            ``[0, USAGE_MAX]``.
        """
        u, p = (
            checked_array(name, state[name], shape=(self.n_experts,), kind="float", low=0.0, high=USAGE_MAX)
            for name in ("usage", "pending")
        )
        self.usage, self.pending = u.astype(np.float64), p.astype(np.float64)
