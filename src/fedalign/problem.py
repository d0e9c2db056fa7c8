"""The alignment problem: one round's client–expert assignment, validated once, and its checker.

An :class:`AlignmentProblem` holds everything a solver needs (docs/problem.md): the
desirability of every client–expert pair, forbidden pairs, and its constraints as linear
:class:`~fedalign.Row` s over the pairs ``x[i, j]``. The keyword arguments are shorthands for
rows with fixed names:

=====================  ========  ===========================================================
row                    over      from
=====================  ========  ===========================================================
``experts per client`` client    ``min_experts <= sum_j x[i, j] <= max_experts``
``memory``             client    ``sum_j expert_memory[j] x[i, j] <= client_memory[i]``
``deadline``           client    ``sum_j train_time[i, j] x[i, j] <= deadline[i]``
``clients per expert`` expert    ``expert_min_clients <= sum_i x[i, j] <= expert_max_clients``
=====================  ========  ===========================================================

and ``rows=`` adds any others (a bandwidth budget per client, a server byte budget per round,
a soft load target per expert...). All arguments are validated at construction; the stored
arrays are normalised (full shapes, fixed dtypes) and read-only, so solvers trust them.

:func:`check` lists every constraint an assignment violates; ``fedalign.solve`` runs it on
every result, so a solver bug surfaces as an error and never as an infeasible plan.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._checks import (
    as_float_array,
    as_numbers,
    bool_matrix,
    check_json_ids,
    check_json_numbers,
    check_nonnegative,
    float_vector,
    ids,
    int_vector,
    json_type,
    readonly,
)
from ._validation import short_repr
from .errors import InvalidProblemError
from .rows import CAPACITY_RTOL, MAX_SUM, Counts, Row, Violation, capacity_tolerance

__all__ = [
    "CAPACITY_RTOL",
    "AlignmentProblem",
    "Violation",
    "capacity_tolerance",
    "check",
]

#: The fixed names of the rows the keyword arguments stand for.
COUNT_ROW = "experts per client"
MEMORY_ROW = "memory"
DEADLINE_ROW = "deadline"
SEAT_ROW = "clients per expert"
BUILTIN_ROWS = (COUNT_ROW, MEMORY_ROW, DEADLINE_ROW, SEAT_ROW)

#: The keys :meth:`AlignmentProblem.from_dict` reads: the keyword arguments of the constructor.
_FIELDS = (
    "desirability",
    "max_experts",
    "min_experts",
    "expert_memory",
    "client_memory",
    "train_time",
    "deadline",
    "expert_min_clients",
    "expert_max_clients",
    "allowed",
    "rows",
    "client_ids",
    "expert_ids",
)

_ONE = np.ones((1, 1))
_ONE.flags.writeable = False


# --------------------------------------------------------------------------- validation


def _desirability(desirability: ArrayLike, expert_ids: Any) -> NDArray[np.float64]:
    d = as_numbers("desirability", desirability)
    if d.ndim == 1 and d.size == 0 and expert_ids is not None:
        # No clients this round, experts known by id: the only way JSON can say (0, E).
        try:
            d = d.reshape(0, len(expert_ids))
        except TypeError:
            pass  # ids that have no length: the id check names them
    if d.ndim != 2:
        raise InvalidProblemError(
            f"desirability: expected a 2-D (n_clients, n_experts) array, got {d.ndim}-D"
        )
    if d.shape[1] == 0:
        raise InvalidProblemError("desirability: needs at least one expert (column)")
    d = as_float_array("desirability", d, d.shape)
    with np.errstate(over="ignore"):
        total = float(np.abs(d).sum())
    if not total <= MAX_SUM:
        raise InvalidProblemError(
            f"desirability: the sum of |desirability| over all pairs is {total:.3g}; the "
            f"supported range keeps it at most {MAX_SUM:.0e} (scale the scores down)"
        )
    return d


def _min_max(
    lo_name: str, lo: Any, hi_name: str, hi: Any, m: int, default_hi: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """A pair of integer bound vectors (``hi`` None means ``default_hi``), lo <= hi checked."""
    lo_v = int_vector(lo_name, lo, m)
    check_nonnegative(lo_name, lo_v)
    if hi is None:
        hi_v = np.full(m, default_hi, dtype=np.int64)
    else:
        hi_v = int_vector(hi_name, hi, m)
        check_nonnegative(hi_name, hi_v)
    above = lo_v > hi_v
    if above.any():
        k = int(np.flatnonzero(above)[0])
        raise InvalidProblemError(f"{lo_name}[{k}]: {lo_v[k]} is above {hi_name}[{k}] = {hi_v[k]}")
    return lo_v, hi_v


def _pair(given: str, value: Any, other: str, other_value: Any) -> None:
    """Two arguments that come together: both or neither."""
    if (value is None) != (other_value is None):
        name, missing = (given, other) if value is not None else (other, given)
        raise InvalidProblemError(f"{name}: given without {missing}; give both or neither")


def _memory(
    expert_memory: Any, client_memory: Any, n: int, e: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    _pair("expert_memory", expert_memory, "client_memory", client_memory)
    if expert_memory is None:
        return None
    e_mem = as_float_array("expert_memory", expert_memory, (e,))
    c_mem = as_float_array("client_memory", client_memory, (n,))
    check_nonnegative("expert_memory", e_mem)
    check_nonnegative("client_memory", c_mem)
    return e_mem, c_mem


def _deadline(
    train_time: Any, deadline: Any, n: int, e: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    _pair("train_time", train_time, "deadline", deadline)
    if train_time is None:
        return None
    t = as_float_array("train_time", train_time, (n, e))
    check_nonnegative("train_time", t)
    if isinstance(deadline, (bool, np.bool_)):
        raise InvalidProblemError("deadline: expected seconds > 0, got a bool")
    dl = float_vector("deadline", deadline, n, scalar_ok=True)
    nonpos = dl <= 0
    if nonpos.any():
        k = int(np.flatnonzero(nonpos)[0])
        raise InvalidProblemError(f"deadline[{k}]: must be > 0, got {dl[k].item()!r}")
    return t, dl


def _allowed(allowed: Any, n: int, e: int) -> NDArray[np.bool_]:
    if allowed is None:
        return np.ones((n, e), dtype=bool)
    return bool_matrix("allowed", allowed, (n, e))


def _user_rows(rows: Any, shape: tuple[int, int]) -> list[Row]:
    """The ``rows=`` argument: Row objects bound to the problem's shape, names unique."""
    if rows is None:
        return []
    if isinstance(rows, (Row, str, bytes, Mapping)) or not isinstance(rows, (Sequence, tuple)):
        raise InvalidProblemError(f"rows: expected a list of fedalign.Row, got {json_type(rows)}")
    out: list[Row] = []
    names = {name: None for name in BUILTIN_ROWS}
    for k, row in enumerate(rows):
        if not isinstance(row, Row):
            raise InvalidProblemError(f"rows[{k}]: expected a fedalign.Row, got {json_type(row)}")
        if row.name in names:
            raise InvalidProblemError(
                f"rows[{k}]: the name {short_repr(row.name, 40)} is already taken"
                + (" (a keyword argument's row)" if row.name in BUILTIN_ROWS else "")
            )
        names[row.name] = None
        out.append(row.bind(shape, f"rows[{k}] ({short_repr(row.name, 40)})"))
    return out


# --------------------------------------------------------------------------- the problem


class AlignmentProblem:
    """One round's client–expert alignment problem, validated and read-only.

    Maximise ``sum(desirability[i, j] * x[i, j])`` minus the penalties of soft rows, over
    binary ``x``, subject to every hard row and the forbidden pairs (docs/problem.md).

    Parameters
    ----------
    desirability : (n_clients, n_experts) array of float
        Finite scores; higher is better. Negative scores are allowed (a pair may be worth
        less than leaving it out, but still be forced by a minimum).
    max_experts, min_experts : int or (n_clients,) ints >= 0
        At most / at least this many experts per client (row ``"experts per client"``).
    expert_memory : (n_experts,) floats >= 0, optional
        Memory one expert needs on a client. Give ``client_memory`` with it (row ``"memory"``).
    client_memory : (n_clients,) floats >= 0, optional
        Memory a client has for experts, in the same unit.
    train_time : (n_clients, n_experts) floats >= 0, optional
        Seconds for client ``i`` to fetch, train and return expert ``j``. Give ``deadline``
        with it (row ``"deadline"``).
    deadline : float or (n_clients,) floats > 0, optional
        A client's time budget in the round.
    expert_min_clients, expert_max_clients : int or (n_experts,) ints >= 0
        At least / at most this many clients train each expert (row ``"clients per
        expert"``). ``None`` for the maximum means unbounded.
    allowed : (n_clients, n_experts) bool, optional
        ``False`` forbids the pair.
    rows : list of Row, optional
        Further constraints: any linear row over the pairs (see :class:`~fedalign.Row`),
        hard or soft. Names must be unique and differ from the keyword rows' names.
    client_ids, expert_ids : sequences of hashable, optional
        Unique ids; default ``0..n-1``.

    Raises
    ------
    InvalidProblemError
        Any malformed argument; the message names the argument and first bad position.
    """

    __slots__ = (*(f for f in _FIELDS if f != "rows"), "rows", "_cache", "_client_index", "_expert_index")

    desirability: NDArray[np.float64]
    max_experts: NDArray[np.int64]
    min_experts: NDArray[np.int64]
    expert_memory: NDArray[np.float64] | None
    client_memory: NDArray[np.float64] | None
    train_time: NDArray[np.float64] | None
    deadline: NDArray[np.float64] | None
    expert_min_clients: NDArray[np.int64]
    expert_max_clients: NDArray[np.int64]
    allowed: NDArray[np.bool_]
    rows: tuple[Row, ...]
    client_ids: tuple[Hashable, ...]
    expert_ids: tuple[Hashable, ...]

    def __init__(
        self,
        desirability: ArrayLike,
        *,
        max_experts: int | ArrayLike = 1,
        min_experts: int | ArrayLike = 0,
        expert_memory: ArrayLike | None = None,
        client_memory: ArrayLike | None = None,
        train_time: ArrayLike | None = None,
        deadline: float | ArrayLike | None = None,
        expert_min_clients: int | ArrayLike = 0,
        expert_max_clients: int | ArrayLike | None = None,
        allowed: ArrayLike | None = None,
        rows: Sequence[Row] | None = None,
        client_ids: Sequence[Hashable] | None = None,
        expert_ids: Sequence[Hashable] | None = None,
    ) -> None:
        d = _desirability(desirability, expert_ids)
        n, e = d.shape
        min_e, max_e = _min_max("min_experts", min_experts, "max_experts", max_experts, n, 1)
        memory = _memory(expert_memory, client_memory, n, e)
        time = _deadline(train_time, deadline, n, e)
        e_min, e_max = _min_max(
            "expert_min_clients", expert_min_clients, "expert_max_clients", expert_max_clients, e, n
        )
        allow = _allowed(allowed, n, e)
        extra = _user_rows(rows, (n, e))

        self.desirability = readonly(d)
        self.max_experts = readonly(max_e)
        self.min_experts = readonly(min_e)
        self.expert_memory = self.client_memory = self.train_time = self.deadline = None
        if memory is not None:
            self.expert_memory, self.client_memory = readonly(memory[0]), readonly(memory[1])
        if time is not None:
            self.train_time, self.deadline = readonly(time[0]), readonly(time[1])
        self.expert_min_clients = readonly(e_min)
        # An expert can never take more than n clients; storing min(cap, n) keeps sums finite
        # (never below the minimum, so min <= max holds even when n is too small for it).
        self.expert_max_clients = readonly(np.maximum(np.minimum(e_max, n), e_min))
        self.allowed = readonly(allow)
        self.client_ids = ids("client_ids", client_ids, n)
        self.expert_ids = ids("expert_ids", expert_ids, e)
        keyword = self._keyword_rows()
        arguments = {MEMORY_ROW: "expert_memory", DEADLINE_ROW: "train_time"}
        for row in keyword:
            row.check_sums(arguments.get(row.name, row.name))
        self.rows = (*keyword, *extra)
        self._cache: dict[str, Any] = {}
        self._client_index: dict[Hashable, int] | None = None
        self._expert_index: dict[Hashable, int] | None = None

    def _keyword_rows(self) -> list[Row]:
        """The rows the keyword arguments stand for, with their fixed names."""
        shape = self.shape
        f64 = np.float64
        out = [
            Row._make(COUNT_ROW, "client", _ONE, self.min_experts.astype(f64),
                      self.max_experts.astype(f64), shape)
        ]
        if self.expert_memory is not None:
            out.append(Row._make(MEMORY_ROW, "client", self.expert_memory[None, :], None,
                                 self.client_memory, shape))
        if self.train_time is not None:
            out.append(Row._make(DEADLINE_ROW, "client", self.train_time, None, self.deadline, shape))
        out.append(
            Row._make(SEAT_ROW, "expert", _ONE, self.expert_min_clients.astype(f64),
                      self.expert_max_clients.astype(f64), shape)
        )
        return out

    # ------------------------------------------------------------------ basic facts

    @property
    def n_clients(self) -> int:
        """Number of clients (rows)."""
        return int(self.desirability.shape[0])

    @property
    def n_experts(self) -> int:
        """Number of experts (columns)."""
        return int(self.desirability.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_clients, n_experts)``."""
        return (self.n_clients, self.n_experts)

    def row(self, name: str) -> Row:
        """The row called ``name`` (``KeyError`` if there is none)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"row: no row named {name!r}; the rows are {[r.name for r in self.rows]}")

    def _grouped(self, key: str) -> tuple[Row, ...]:
        if key not in self._cache:
            hard = [r for r in self.rows if not r.soft and r.name not in (COUNT_ROW, SEAT_ROW)]
            self._cache["client"] = tuple(r for r in hard if r.over == "client")
            self._cache["expert"] = tuple(r for r in hard if r.over == "expert")
            self._cache["total"] = tuple(r for r in hard if r.over == "total")
            self._cache["soft"] = tuple(r for r in self.rows if r.soft)
        return self._cache[key]  # type: ignore[no-any-return]

    @property
    def client_rows(self) -> tuple[Row, ...]:
        """Hard client rows besides ``"experts per client"`` (memory, deadline, your own)."""
        return self._grouped("client")

    @property
    def expert_rows(self) -> tuple[Row, ...]:
        """Hard expert rows besides ``"clients per expert"``."""
        return self._grouped("expert")

    @property
    def total_rows(self) -> tuple[Row, ...]:
        """Hard rows over all pairs."""
        return self._grouped("total")

    @property
    def soft_rows(self) -> tuple[Row, ...]:
        """Soft rows (penalised in the objective, never violated)."""
        return self._grouped("soft")

    @property
    def has_memory(self) -> bool:
        """Whether the memory row is present."""
        return self.expert_memory is not None

    @property
    def has_deadline(self) -> bool:
        """Whether the deadline row is present."""
        return self.train_time is not None

    @property
    def has_knapsack(self) -> bool:
        """Whether any hard client row besides the count is present (before reduction to counts)."""
        return bool(self.client_rows)

    @property
    def fits(self) -> NDArray[np.bool_]:
        """(n, E) bool: pairs that are allowed and fit every hard row's upper bound on their own.

        A pair outside this mask can never be part of a feasible assignment. The two count
        rows are left out (a client's ``max_experts`` limits how many experts it trains, not
        which).
        """
        if "fits" not in self._cache:
            ok = self.allowed.copy()
            for r in (*self.client_rows, *self.expert_rows, *self.total_rows):
                alone = r.pair_fits()
                if alone is not None:
                    ok &= alone
            self._cache["fits"] = readonly(ok)
        return self._cache["fits"]  # type: ignore[no-any-return]

    def client_position(self, client_id: Hashable) -> int:
        """Position of a client id in this problem (``KeyError`` if absent)."""
        if self._client_index is None:
            self._client_index = {c: k for k, c in enumerate(self.client_ids)}
        return self._client_index[client_id]

    def expert_position(self, expert_id: Hashable) -> int:
        """Position of an expert id in this problem (``KeyError`` if absent)."""
        if self._expert_index is None:
            self._expert_index = {c: k for k, c in enumerate(self.expert_ids)}
        return self._expert_index[expert_id]

    def penalty(self, assignment: ArrayLike) -> float:
        """What the soft rows charge for ``assignment`` (0 without soft rows)."""
        if not self.soft_rows:
            return 0.0
        x = np.asarray(assignment, dtype=bool)
        return float(sum(r.cost(r.usage(x)).sum() for r in self.soft_rows))

    def objective(self, assignment: ArrayLike) -> float:
        """Sum of desirability over the assigned pairs, minus the soft rows' penalties."""
        x = np.asarray(assignment, dtype=bool)
        return float(self.desirability[x].sum()) - self.penalty(x)

    def infeasibility_reason(self) -> str | None:
        """A quick necessary-condition test; returns why the problem is infeasible, or None.

        ``None`` does not prove feasibility: it means none of these counting arguments
        rules it out. Solvers use it to explain an :class:`InfeasibleError`.
        """
        fits = self.fits
        per_client = fits.sum(axis=1)
        short = per_client < self.min_experts
        if short.any():
            i = int(np.flatnonzero(short)[0])
            return (
                f"min_experts: client {self.client_ids[i]!r} (position {i}) needs "
                f"{self.min_experts[i]} experts but only {per_client[i]} are allowed and fit it"
            )
        per_expert = fits.sum(axis=0)
        short = per_expert < self.expert_min_clients
        if short.any():
            j = int(np.flatnonzero(short)[0])
            return (
                f"expert_min_clients: expert {self.expert_ids[j]!r} (position {j}) needs "
                f"{self.expert_min_clients[j]} clients but only {per_expert[j]} may train it"
            )
        counts = Counts(self.min_experts, self.max_experts, self.expert_min_clients,
                        self.expert_max_clients, self.client_ids, self.expert_ids)
        for row in (*self.client_rows, *self.expert_rows, *self.total_rows):
            reason = row.infeasibility_reason(fits, counts)
            if reason is not None:
                return reason
        slots = np.minimum(self.max_experts, per_client).sum()
        if self.expert_min_clients.sum() > slots:
            return (
                f"expert_min_clients: experts need {int(self.expert_min_clients.sum())} "
                f"trainings in all but clients can take at most {int(slots)}"
            )
        seats = np.minimum(self.expert_max_clients, per_expert).sum()
        if self.min_experts.sum() > seats:
            return (
                f"min_experts: clients need {int(self.min_experts.sum())} trainings in all "
                f"but experts accept at most {int(seats)}"
            )
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlignmentProblem:
        """Build a problem from plain values, such as parsed JSON or :meth:`to_dict`'s output.

        The reader of ``fedalign solve``'s JSON format (docs/problem.md). Keys are the
        constructor's keyword arguments; only ``desirability`` is required and ``None``
        means the default. Values must be of the types JSON produces: numbers (booleans
        too for ``allowed``) alone or nested in arrays, ids that are strings or integers,
        and ``rows`` as a list of objects with ``name``, ``over``, ``weight``, ``lower``,
        ``upper`` and ``penalty`` (see :meth:`Row.to_dict`). Ids are kept as given (``1``
        stays an integer), but their string forms must be unique, since
        :meth:`Solution.to_json_dict` writes them as object keys.

        Raises
        ------
        InvalidProblemError
            Not a mapping, an unknown or missing field, a value of the wrong type, or
            anything the constructor refuses; the message names the field and the first
            bad position.
        """
        if not isinstance(data, Mapping):
            raise InvalidProblemError(
                f"data: expected a mapping of {cls.__name__}'s arguments, got {json_type(data)}"
            )
        unknown = [k for k in data if k not in _FIELDS]
        if unknown:
            raise InvalidProblemError(
                f"{unknown[0]!s:.40}: unknown field; the fields are {', '.join(_FIELDS)}"
            )
        if data.get("desirability") is None:
            raise InvalidProblemError("desirability: missing (an array of arrays of numbers)")
        kwargs = {name: value for name, value in data.items() if value is not None}
        for name, value in kwargs.items():
            if name in ("client_ids", "expert_ids"):
                check_json_ids(name, value)
            elif name != "rows":
                check_json_numbers(name, value, booleans=name == "allowed")
        if "rows" in kwargs:
            if not isinstance(kwargs["rows"], list):
                raise InvalidProblemError(f"rows: expected an array of objects, got {json_type(kwargs['rows'])}")
            kwargs["rows"] = [Row.from_dict(r, f"rows[{k}]") for k, r in enumerate(kwargs["rows"])]
        if "expert_ids" in kwargs:
            # No clients: JSON writes an (0, E) matrix as [], so its width comes from the ids
            # (the constructor does the same for desirability).
            width = len(kwargs["expert_ids"])
            for name, dtype in (("train_time", np.float64), ("allowed", np.bool_)):
                if isinstance(kwargs.get(name), (list, tuple)) and len(kwargs[name]) == 0:
                    kwargs[name] = np.zeros((0, width), dtype=dtype)
        desirability = kwargs.pop("desirability")
        return cls(desirability, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The problem's fields as plain Python values (JSON-ready; ids kept as given)."""
        out: dict[str, Any] = {
            "desirability": self.desirability.tolist(),
            "max_experts": self.max_experts.tolist(),
            "min_experts": self.min_experts.tolist(),
            "expert_min_clients": self.expert_min_clients.tolist(),
            "expert_max_clients": self.expert_max_clients.tolist(),
            "client_ids": list(self.client_ids),
            "expert_ids": list(self.expert_ids),
        }
        if self.expert_memory is not None and self.client_memory is not None:
            out["expert_memory"] = self.expert_memory.tolist()
            out["client_memory"] = self.client_memory.tolist()
        if self.train_time is not None and self.deadline is not None:
            out["train_time"] = self.train_time.tolist()
            out["deadline"] = self.deadline.tolist()
        if not self.allowed.all():
            out["allowed"] = self.allowed.tolist()
        extra = [r.to_dict() for r in self.rows if r.name not in BUILTIN_ROWS]
        if extra:
            out["rows"] = extra
        return out

    def __repr__(self) -> str:
        names = [r.name for r in self.rows if r.name not in (COUNT_ROW, SEAT_ROW)]
        extra = f", rows={names}" if names else ""
        return f"AlignmentProblem(n_clients={self.n_clients}, n_experts={self.n_experts}{extra})"


# --------------------------------------------------------------------------- checking


def check(problem: AlignmentProblem, assignment: ArrayLike) -> list[Violation]:
    """Every constraint of ``problem`` that ``assignment`` violates.

    Parameters
    ----------
    problem : AlignmentProblem
    assignment : (n_clients, n_experts) array of bool or 0/1

    Returns
    -------
    list of Violation
        Empty when the assignment is feasible: every hard row holds and no forbidden pair
        is used (soft rows are never violated; they cost). A wrong shape or non-binary
        entries give a single ``"shape"`` violation.

    Raises
    ------
    TypeError
        ``problem`` is not an :class:`AlignmentProblem`.
    """
    if not isinstance(problem, AlignmentProblem):
        raise TypeError(f"problem: expected an AlignmentProblem, got {type(problem).__name__}")
    try:
        raw = np.asarray(assignment)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return [Violation("shape", None, "assignment cannot be read as an array")]
    if raw.shape != problem.shape:
        return [Violation("shape", None, f"assignment has shape {raw.shape}, expected {problem.shape}")]
    if raw.dtype != bool:
        if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
            return [Violation("shape", None, "assignment entries must be booleans or 0/1")]
    x = raw.astype(bool)
    cid, eid = problem.client_ids, problem.expert_ids
    out = [
        Violation("allowed", (int(i), int(j)), f"client {cid[i]!r} may not train expert {eid[j]!r}")
        for i, j in np.argwhere(x & ~problem.allowed)
    ]
    for row in problem.rows:
        out.extend(row.violations(x, cid, eid))
    return out
