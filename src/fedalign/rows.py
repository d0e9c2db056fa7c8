"""The constraint model: every constraint of an alignment problem is a linear row over ``x[i, j]``.

A :class:`Row` bounds a weighted sum of the 0/1 pairs ``x[i, j]`` (client ``i`` trains expert
``j``)::

    over="client":  lower[i] <= sum_j weight[i, j] * x[i, j] <= upper[i]    one row per client
    over="expert":  lower[j] <= sum_i weight[i, j] * x[i, j] <= upper[j]    one row per expert
    over="total":   lower    <= sum_ij weight[i, j] * x[i, j] <= upper       one row

``weight`` is a float or any array that broadcasts to ``(n_clients, n_experts)`` (a row of
per-expert sizes ``(E,)``, a column of per-client factors ``(n, 1)``, or a full matrix), finite
and ``>= 0``. A bound is ``None`` (absent), one float, or one value per row.

A row is *hard* by default: an assignment outside its bounds is infeasible. With ``penalty``
it is *soft*: the amount by which the sum leaves its bounds (its *excess*) is paid in the
objective instead of being refused. ``penalty`` is a price per unit of excess, or a sequence
of non-decreasing prices, one per unit (the ``k``-th unit of excess costs ``penalty[k-1]``;
the last price goes on for every further unit) -- a convex piecewise-linear cost, which
min-cost flow models exactly with parallel arcs and the Lagrangian with capped prices.

The problem's keyword arguments are rows with fixed names (see
:class:`~fedalign.AlignmentProblem`): ``"experts per client"``, ``"memory"``, ``"deadline"``
and ``"clients per expert"``. A row knows how to validate itself, compute its usage of an
assignment, list its violations, explain a client's choice and give the plainest reason it can
prove for infeasibility; every other part of fedalign (the checker, the solvers, the repair
toolkit, ``Plan.explain``) loops over rows. docs/problem.md describes the model with examples;
docs/architecture.md says how to add a new kind of row.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import (
    as_numbers,
    check_finite,
    check_json_numbers,
    check_nonnegative,
    json_type,
    position,
)
from ._validation import short_repr
from .errors import InvalidProblemError

__all__ = [
    "CAPACITY_RTOL",
    "MAX_SUM",
    "OVERS",
    "Counts",
    "Row",
    "Violation",
    "band_cost",
    "band_marginal",
    "capacity_tolerance",
]

#: What a row can range over.
OVERS = ("client", "expert", "total")
#: Relative slack allowed on every bound, to absorb float rounding in sums.
CAPACITY_RTOL = 1e-9
#: Most prices a soft row's penalty may list.
MAX_BANDS = 10_000
#: Largest sum fedalign keeps finite: desirability over all pairs, a row's weights, a soft
#: row's largest penalty. Inputs whose sums would pass it are refused (they overflow float64).
MAX_SUM = 1e300


def capacity_tolerance(capacity: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """Absolute slack allowed on a bound of the given size (float rounding only)."""
    return CAPACITY_RTOL * np.maximum(1.0, np.abs(capacity))


@dataclass(frozen=True)
class Violation:
    """One violated constraint of an assignment.

    Attributes
    ----------
    constraint : str
        The row's name (``"experts per client"``, ``"memory"``, ``"deadline"``,
        ``"clients per expert"`` or a name you gave a :class:`Row`), or ``"shape"`` /
        ``"allowed"`` for a malformed assignment or a forbidden pair.
    index : int or tuple of int or None
        Client position (client rows), expert position (expert rows), ``(client, expert)``
        for a forbidden pair, None for a total row or a shape error.
    message : str
        Human-readable explanation.
    """

    constraint: str
    index: int | tuple[int, int] | None
    message: str


class Counts(NamedTuple):
    """The count rows of a problem, which bound how many pairs each row can hold."""

    min_experts: NDArray[np.int64]
    max_experts: NDArray[np.int64]
    expert_min_clients: NDArray[np.int64]
    expert_max_clients: NDArray[np.int64]
    client_ids: Sequence[Hashable]
    expert_ids: Sequence[Hashable]


# --------------------------------------------------------------------------- the row


class Row:
    """A linear row over the pairs ``x[i, j]``: hard bounds, or a soft penalty.

    Parameters
    ----------
    name : str
        Unique within a problem; ``Violation.constraint`` and error messages use it.
    over : {"client", "expert", "total"}
        One row per client, one per expert, or one row over all pairs.
    weight : float or array broadcastable to (n_clients, n_experts), default 1.0
        Finite, ``>= 0``. ``1.0`` counts pairs.
    lower, upper : None, float, or one value per row (n or E values), optional
        Bounds on the weighted sum; finite, ``lower <= upper`` where both are given.
    penalty : None, float > 0, or sequence of non-decreasing floats > 0, optional
        ``None``: a hard row. Otherwise a soft row: the excess beyond the bounds costs
        ``penalty`` per unit (or ``penalty[k-1]`` for the ``k``-th unit, the last price for
        every further unit) and is subtracted from the objective.

    Raises
    ------
    InvalidProblemError
        A malformed argument; the message names the row, the argument and the first bad
        position. Shapes are checked against the problem when the row is given to
        :class:`~fedalign.AlignmentProblem`.

    Examples
    --------
    >>> import fedalign as fa
    >>> fa.Row("bandwidth", "client", [[1.0, 2.0, 4.0]], upper=5.0)
    Row('bandwidth', over='client', upper)
    >>> fa.Row("load", "expert", 1.0, upper=3, penalty=[0.1, 0.2, 0.4])
    Row('load', over='expert', upper, soft)
    """

    __slots__ = ("name", "over", "weight", "lower", "upper", "penalty", "_shape", "_cache")

    name: str
    over: str
    weight: NDArray[np.float64]
    lower: NDArray[np.float64] | None
    upper: NDArray[np.float64] | None
    penalty: tuple[float, ...] | None

    def __init__(
        self,
        name: str,
        over: str,
        weight: float | ArrayLike = 1.0,
        lower: float | ArrayLike | None = None,
        upper: float | ArrayLike | None = None,
        penalty: float | Sequence[float] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidProblemError(f"Row.name: expected a non-empty string, got {short_repr(name)}")
        label = f"Row {short_repr(name, 40)}"
        if not isinstance(over, str) or over not in OVERS:
            raise InvalidProblemError(
                f"{label}.over: expected one of {', '.join(map(repr, OVERS))}, got {short_repr(over)}"
            )
        w = as_numbers(f"{label}.weight", weight)
        if w.ndim > 2:
            raise InvalidProblemError(
                f"{label}.weight: expected a float or an array of at most 2 dimensions, got {w.ndim}-D"
            )
        check_finite(f"{label}.weight", w)
        check_nonnegative(f"{label}.weight", w)
        lo = None if lower is None else _bound(f"{label}.lower", lower)
        hi = None if upper is None else _bound(f"{label}.upper", upper)
        if lo is not None and hi is not None and (lo.size == 1 or hi.size == 1 or lo.size == hi.size):
            _check_order(label, lo, hi)
        pen = None if penalty is None else _penalty(f"{label}.penalty", penalty)
        if pen is not None and lo is None and hi is None:
            raise InvalidProblemError(f"{label}.penalty: a soft row needs a lower or an upper bound")
        self._set(name, over, w, lo, hi, pen, None)

    def _set(
        self,
        name: str,
        over: str,
        weight: NDArray[np.float64],
        lower: NDArray[np.float64] | None,
        upper: NDArray[np.float64] | None,
        penalty: tuple[float, ...] | None,
        shape: tuple[int, int] | None,
    ) -> None:
        for arr in (weight, lower, upper):
            if arr is not None:
                arr.flags.writeable = False
        self.name, self.over, self.weight = name, over, weight
        self.lower, self.upper, self.penalty = lower, upper, penalty
        self._shape = shape
        self._cache: dict[str, Any] = {}

    @classmethod
    def _make(
        cls,
        name: str,
        over: str,
        weight: NDArray[np.float64],
        lower: NDArray[np.float64] | None,
        upper: NDArray[np.float64] | None,
        shape: tuple[int, int],
        penalty: tuple[float, ...] | None = None,
    ) -> Row:
        """A row bound to ``shape`` from arrays already validated (the keyword shorthands)."""
        row = cls.__new__(cls)
        row._set(name, over, weight, lower, upper, penalty, shape)
        return row

    # ------------------------------------------------------------------ binding

    def bind(self, shape: tuple[int, int], label: str) -> Row:
        """This row with its weight and bounds checked against, and shaped for, ``shape``.

        The weight becomes a 2-D array of shape ``(1 or n, 1 or E)``; bounds become one
        value per row (``n``, ``E`` or 1 values). ``label`` names the row in errors
        (``"rows[2] ('bandwidth')"``).
        """
        w = self.weight
        try:
            target = np.broadcast_shapes(w.shape, shape)
        except ValueError:
            target = None
        if target != shape:
            raise InvalidProblemError(
                f"{label}.weight: shape {w.shape} does not broadcast to (n_clients, n_experts) = {shape}"
            )
        w2 = w.reshape((1,) * (2 - w.ndim) + w.shape)  # broadcasting pads on the left
        m = self.size_for(shape)
        what = {"client": "one per client", "expert": "one per expert", "total": "one"}[self.over]
        lo = None if self.lower is None else _per_row(f"{label}.lower", self.lower, m, what)
        hi = None if self.upper is None else _per_row(f"{label}.upper", self.upper, m, what)
        if lo is not None and hi is not None:
            _check_order(label, lo, hi)
        row = Row.__new__(Row)
        row._set(self.name, self.over, np.array(w2, dtype=np.float64), lo, hi, self.penalty, shape)
        row.check_sums(label)
        return row

    def check_sums(self, label: str) -> None:
        """Refuse a row whose largest usage or largest penalty would pass :data:`MAX_SUM`."""
        with np.errstate(over="ignore"):
            axis = {"client": 1, "expert": 0, "total": None}[self.over]
            most = float(np.max(self.dense.sum(axis=axis), initial=0.0))
            reach = most + max(
                (float(np.abs(b).max(initial=0.0)) for b in (self.lower, self.upper) if b is not None),
                default=0.0,
            )
            penalty = reach * (self.penalty[-1] if self.penalty else 0.0)
        if not (most <= MAX_SUM and penalty <= MAX_SUM):
            raise InvalidProblemError(
                f"{label}: the row's largest sum of weights ({most:.3g}) or its largest "
                f"penalty ({penalty:.3g}) is above the supported {MAX_SUM:.0e} (use a larger unit)"
            )

    def size_for(self, shape: tuple[int, int]) -> int:
        """How many rows this row stands for in a problem of ``shape``."""
        return {"client": shape[0], "expert": shape[1], "total": 1}[self.over]

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_clients, n_experts)`` of the problem the row is bound to."""
        if self._shape is None:
            raise ValueError(f"row {self.name!r} is not part of a problem yet")
        return self._shape

    @property
    def size(self) -> int:
        """Number of rows: ``n_clients``, ``n_experts`` or 1."""
        return self.size_for(self.shape)

    # ------------------------------------------------------------------ kinds

    @property
    def soft(self) -> bool:
        """Whether the row is soft (has a penalty)."""
        return self.penalty is not None

    @property
    def unit(self) -> bool:
        """Whether every weight is 1 (the row counts pairs)."""
        if "unit" not in self._cache:
            self._cache["unit"] = bool(np.all(self.weight == 1.0))
        return bool(self._cache["unit"])

    @property
    def integral(self) -> bool:
        """Whether every weight and bound is an integer (exact in integer solvers)."""
        if "integral" not in self._cache:
            parts = [self.weight] + [b for b in (self.lower, self.upper) if b is not None]
            self._cache["integral"] = all(bool(np.all(p == np.round(p))) for p in parts)
        return bool(self._cache["integral"])

    def describe(self) -> str:
        """A short description: ``"client row 'bandwidth' (weighted, upper bound)"``."""
        weights = "unit weights" if self.unit else "weighted"
        sides = [s for s, b in (("lower", self.lower), ("upper", self.upper)) if b is not None]
        kind = "soft" if self.soft else "hard"
        return f"{self.over} row {self.name!r} ({kind}, {weights}, {' and '.join(sides)} bound)"

    def __repr__(self) -> str:
        flags = [s for s, b in (("lower", self.lower), ("upper", self.upper)) if b is not None]
        if self.soft:
            flags.append("soft")
        return f"Row({self.name!r}, over={self.over!r}{''.join(', ' + f for f in flags)})"

    # ------------------------------------------------------------------ weights

    @property
    def dense(self) -> NDArray[np.float64]:
        """The weight broadcast to ``(n_clients, n_experts)`` (a read-only view, no copy)."""
        return np.broadcast_to(self.weight, self.shape)

    def at(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.float64]:
        """Weights of the pairs ``(rows[k], cols[k])``."""
        w = self.weight
        r = rows if w.shape[0] != 1 else 0
        c = cols if w.shape[1] != 1 else 0
        return np.broadcast_to(w[r, c], np.broadcast(rows, cols).shape)

    def owner(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.intp]:
        """Which of this row's rows each pair ``(rows[k], cols[k])`` belongs to."""
        if self.over == "client":
            return np.asarray(rows, dtype=np.intp)
        if self.over == "expert":
            return np.asarray(cols, dtype=np.intp)
        return np.zeros(np.broadcast(rows, cols).shape, dtype=np.intp)

    @property
    def upper_cap(self) -> NDArray[np.float64] | None:
        """``upper`` plus the checker's float tolerance (None without an upper bound)."""
        return self._with_tolerance("upper", self.upper, +1.0)

    @property
    def lower_cap(self) -> NDArray[np.float64] | None:
        """``lower`` minus the checker's float tolerance (None without a lower bound)."""
        return self._with_tolerance("lower", self.lower, -1.0)

    def _with_tolerance(
        self, key: str, bound: NDArray[np.float64] | None, side: float
    ) -> NDArray[np.float64] | None:
        if bound is None:
            return None
        if key not in self._cache:
            cap = bound + side * capacity_tolerance(bound)
            cap.flags.writeable = False
            self._cache[key] = cap
        return self._cache[key]  # type: ignore[no-any-return]

    def pair_fits(self) -> NDArray[np.bool_] | None:
        """``(n, E)`` bool: pairs whose weight alone stays within the upper bound (None: all)."""
        cap = self.upper_cap
        if cap is None or self.soft:
            return None
        w = self.weight
        if self.over == "client":
            return np.asarray(w <= cap[:, None])
        if self.over == "expert":
            return np.asarray(w <= cap[None, :])
        return np.asarray(w <= cap[0])

    def reduced_counts(self, fits: NDArray[np.bool_]) -> NDArray[np.float64] | None:
        """Per row, the one weight every pair that fits shares (the row then counts pairs).

        Returns None when some row's pairs that fit have different weights (see
        :meth:`first_uneven`). A row with no pair that fits gets weight 0.
        """
        lo, hi = self._weight_range(fits)
        some = np.isfinite(lo)
        if (some & (lo != hi)).any():
            return None
        return np.where(some, lo, 0.0)

    def first_uneven(self, fits: NDArray[np.bool_]) -> int | None:
        """The first row whose pairs that fit have different weights (None: it reduces to counts)."""
        lo, hi = self._weight_range(fits)
        bad = np.flatnonzero(np.isfinite(lo) & (lo != hi))
        return int(bad[0]) if bad.size else None

    def _weight_range(self, fits: NDArray[np.bool_]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self.unit:
            ones = np.ones(self.size)
            return ones, ones
        dense = self.dense
        axis = {"client": 1, "expert": 0, "total": None}[self.over]
        lo = np.atleast_1d(np.where(fits, dense, np.inf).min(axis=axis))
        hi = np.atleast_1d(np.where(fits, dense, -np.inf).max(axis=axis))
        return lo, hi

    def who(self, k: int, client_ids: Sequence[Hashable], expert_ids: Sequence[Hashable]) -> str:
        """How messages name row ``k``: ``client 'a' (position 0)``, ``expert 3 (position 3)``."""
        if self.over == "client":
            return f"client {client_ids[k]!r} (position {k})"
        if self.over == "expert":
            return f"expert {expert_ids[k]!r} (position {k})"
        return "the round"

    # ------------------------------------------------------------------ usage and checks

    def usage(self, x: NDArray[np.bool_]) -> NDArray[np.float64]:
        """The weighted sum of each row for assignment ``x`` (``size`` values)."""
        rows, cols = np.nonzero(x)
        used = np.bincount(self.owner(rows, cols), weights=self.at(rows, cols), minlength=self.size)
        return used.astype(np.float64, copy=False)

    def excess(self, usage: NDArray[np.float64]) -> NDArray[np.float64]:
        """How far each row's usage lies outside its bounds (0 inside)."""
        out = np.zeros_like(usage, dtype=np.float64)
        if self.upper is not None:
            out += np.maximum(usage - self.upper, 0.0)
        if self.lower is not None:
            out += np.maximum(self.lower - usage, 0.0)
        return out

    def cost(self, usage: NDArray[np.float64]) -> NDArray[np.float64]:
        """The penalty each row pays for ``usage`` (zeros for a hard row)."""
        if self.penalty is None:
            return np.zeros_like(usage, dtype=np.float64)
        return band_cost(self.penalty, self.excess(usage))

    def violations(
        self,
        x: NDArray[np.bool_],
        client_ids: Sequence[Hashable],
        expert_ids: Sequence[Hashable],
    ) -> list[Violation]:
        """Every row a hard row's bounds are broken on (a soft row is never violated)."""
        if self.soft:
            return []
        used = self.usage(x)
        out: list[Violation] = []
        for side, cap, broken in (
            ("upper", self.upper, None if self.upper_cap is None else used > self.upper_cap),
            ("lower", self.lower, None if self.lower_cap is None else used < self.lower_cap),
        ):
            if broken is None or cap is None:
                continue
            for k in np.flatnonzero(broken):
                word = "above" if side == "upper" else "below"
                out.append(
                    Violation(
                        self.name,
                        None if self.over == "total" else int(k),
                        f"{self.name}: {self._who(int(k), client_ids, expert_ids)} has "
                        f"{used[k]:g}, {word} the {side} bound {cap[k]:g}",
                    )
                )
        return out

    def _who(self, k: int, client_ids: Sequence[Hashable], expert_ids: Sequence[Hashable]) -> str:
        if self.over == "client":
            return f"client {client_ids[k]!r}"
        if self.over == "expert":
            return f"expert {expert_ids[k]!r}"
        return "the round"

    # ------------------------------------------------------------------ infeasibility

    def infeasibility_reason(self, fits: NDArray[np.bool_], counts: Counts) -> str | None:
        """The plainest proof this hard row cannot hold, or None when none is found.

        Counting arguments only: a client (expert) row whose bound cannot be met by any
        choice of as many of its fitting pairs as the count rows allow; a total row that
        the sum of those per-client extremes cannot meet.
        """
        if self.soft:
            return None
        dense = self.dense
        if self.over == "total":
            return self._total_reason(dense, fits, counts)
        if self.over == "client":
            w, f, lo, hi, ids = dense, fits, counts.min_experts, counts.max_experts, counts.client_ids
            what, pairs = "client", "experts"
        else:
            w, f, lo, hi, ids = dense.T, fits.T, counts.expert_min_clients, counts.expert_max_clients, counts.expert_ids
            what, pairs = "expert", "clients"
        if self.upper_cap is not None:
            need = smallest_sum(np.where(f, w, np.inf), lo)
            bad = np.flatnonzero(need > self.upper_cap)
            if bad.size:
                k = int(bad[0])
                return (
                    f"{self.name}: {what} {ids[k]!r} (position {k}) needs at least {lo[k]} "
                    f"{pairs} but even its {lo[k]} lightest allowed {pairs} use {need[k]:g}, "
                    f"above its upper bound {self.upper[k]:g}"  # type: ignore[index]
                )
        if self.lower_cap is not None:
            most = largest_sum(np.where(f, w, 0.0), hi)
            bad = np.flatnonzero(most < self.lower_cap)
            if bad.size:
                k = int(bad[0])
                return (
                    f"{self.name}: {what} {ids[k]!r} (position {k}) takes at most {hi[k]} "
                    f"{pairs}, and its {hi[k]} heaviest allowed {pairs} reach only {most[k]:g}, "
                    f"below its lower bound {self.lower[k]:g}"  # type: ignore[index]
                )
        return None

    def _total_reason(self, dense: NDArray[np.float64], fits: NDArray[np.bool_], counts: Counts) -> str | None:
        if self.upper_cap is not None:
            need = float(smallest_sum(np.where(fits, dense, np.inf), counts.min_experts).sum())
            if need > self.upper_cap[0]:
                return (
                    f"{self.name}: every client's minimum of experts uses at least {need:g} "
                    f"in all, above the upper bound {self.upper[0]:g}"  # type: ignore[index]
                )
        if self.lower_cap is not None:
            most = float(largest_sum(np.where(fits, dense, 0.0), counts.max_experts).sum())
            if most < self.lower_cap[0]:
                return (
                    f"{self.name}: all clients together reach at most {most:g}, below the "
                    f"lower bound {self.lower[0]:g}"  # type: ignore[index]
                )
        return None

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The row as plain values (``weight`` a number when uniform, else nested lists)."""
        w: Any = float(self.weight.ravel()[0]) if self.weight.size == 1 else self.weight.tolist()
        out: dict[str, Any] = {
            "name": self.name,
            "over": self.over,
            "weight": w,
            "lower": None if self.lower is None else self.lower.tolist(),
            "upper": None if self.upper is None else self.upper.tolist(),
        }
        if self.penalty is not None:
            out["penalty"] = list(self.penalty)
        return out

    @classmethod
    def from_dict(cls, data: Any, label: str = "row") -> Row:
        """A row from plain values, as :meth:`to_dict` writes them (JSON types only).

        Raises
        ------
        InvalidProblemError
            Not an object, an unknown or missing key, a value of the wrong type.
        """
        if not isinstance(data, Mapping):
            raise InvalidProblemError(f"{label}: expected an object, got {json_type(data)}")
        known = ("name", "over", "weight", "lower", "upper", "penalty")
        unknown = [k for k in data if k not in known]
        if unknown:
            raise InvalidProblemError(
                f"{label}.{short_repr(unknown[0])}: unknown key; a row has {', '.join(known)}"
            )
        for key in ("name", "over"):
            if not isinstance(data.get(key), str):
                raise InvalidProblemError(
                    f"{label}.{key}: expected a string, got {json_type(data.get(key))}"
                )
        for key in ("weight", "lower", "upper", "penalty"):
            if data.get(key) is not None:
                check_json_numbers(f"{label}.{key}", data[key], booleans=False)
        return cls(
            data["name"],
            data["over"],
            1.0 if data.get("weight") is None else data["weight"],
            lower=data.get("lower"),
            upper=data.get("upper"),
            penalty=data.get("penalty"),
        )


# --------------------------------------------------------------------------- helpers


def _bound(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = as_numbers(name, value)
    if arr.ndim > 1:
        raise InvalidProblemError(f"{name}: expected a float or one value per row, got {arr.ndim}-D")
    check_finite(name, arr)
    return np.atleast_1d(arr)


def _per_row(name: str, arr: NDArray[np.float64], m: int, what: str) -> NDArray[np.float64]:
    if arr.shape == (1,):
        return np.full(m, float(arr[0]))
    if arr.shape != (m,):
        raise InvalidProblemError(f"{name}: expected a float or {m} values ({what}), got {arr.shape[0]}")
    return np.array(arr, dtype=np.float64)


def _check_order(label: str, lo: NDArray[np.float64], hi: NDArray[np.float64]) -> None:
    bad = np.broadcast_to(lo > hi, np.broadcast_shapes(lo.shape, hi.shape))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        lo_k = float(np.broadcast_to(lo, bad.shape)[k])
        hi_k = float(np.broadcast_to(hi, bad.shape)[k])
        where = position(k, bad.shape) if bad.size > 1 else ""
        raise InvalidProblemError(
            f"{label}.lower{where}: {lo_k:g} is above {label}.upper{where} = {hi_k:g}"
        )


def _penalty(name: str, value: Any) -> tuple[float, ...]:
    arr = as_numbers(name, value)
    if arr.ndim > 1:
        raise InvalidProblemError(f"{name}: expected a price or a list of prices, got {arr.ndim}-D")
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        raise InvalidProblemError(f"{name}: expected at least one price")
    if arr.size > MAX_BANDS:
        raise InvalidProblemError(f"{name}: at most {MAX_BANDS} prices, got {arr.size}")
    check_finite(name, arr)
    bad = arr <= 0
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InvalidProblemError(f"{name}[{k}]: a price must be > 0, got {arr[k]:g}")
    down = np.flatnonzero(np.diff(arr) < 0)
    if down.size:
        k = int(down[0]) + 1
        raise InvalidProblemError(
            f"{name}[{k}]: prices must not decrease (a convex cost), got {arr[k]:g} after {arr[k - 1]:g}"
        )
    return tuple(float(v) for v in arr)


def band_cost(prices: Sequence[float], excess: NDArray[np.float64]) -> NDArray[np.float64]:
    """The convex piecewise-linear cost of ``excess`` units under per-unit ``prices``.

    Unit ``k`` (the excess between ``k - 1`` and ``k``) costs ``prices[k - 1]``; the last
    price goes on for every unit after the listed ones.
    """
    e = np.asarray(excess, dtype=np.float64)
    total = np.zeros_like(e)
    k = len(prices)
    for b, p in enumerate(prices[:-1]):  # a handful of bands, never a loop over pairs
        total += p * np.clip(e - b, 0.0, 1.0)
    total += prices[-1] * np.maximum(e - (k - 1), 0.0)
    return total


def band_marginal(prices: Sequence[float], units: NDArray[np.float64]) -> NDArray[np.float64]:
    """Price of the next unit of excess after ``units`` units (the cost's right slope)."""
    idx = np.clip(np.floor(np.asarray(units, dtype=np.float64)), 0, len(prices) - 1).astype(np.intp)
    return np.asarray(prices, dtype=np.float64)[idx]


def smallest_sum(values: NDArray[np.float64], k: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per row, the sum of its ``k[i]`` smallest values (``inf`` entries count as unusable)."""
    if values.shape[1] == 0:
        return np.where(np.asarray(k) > 0, np.inf, 0.0) * np.ones(values.shape[0])
    srt = np.sort(values, axis=1)
    with np.errstate(invalid="ignore"):
        csum = np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(srt, axis=1)], axis=1)
    kk = np.minimum(k, values.shape[1])
    out = csum[np.arange(values.shape[0]), kk]
    return np.where(np.asarray(k) > values.shape[1], np.inf, out)


def largest_sum(values: NDArray[np.float64], k: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per row, the sum of its ``k[i]`` largest values (at most all of them)."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0])
    srt = -np.sort(-values, axis=1)
    csum = np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(srt, axis=1)], axis=1)
    return csum[np.arange(values.shape[0]), np.minimum(k, values.shape[1])]
