"""The alignment problem: one round's client–expert assignment, validated once, and its checker.

An :class:`AlignmentProblem` holds everything a solver needs (DESIGN.md §1): the
desirability of every client–expert pair, per-client bounds on how many experts a client
trains, the memory and deadline knapsack rows, per-expert bounds on how many clients train
an expert, and forbidden pairs. All arguments are validated at construction; the stored
arrays are normalised (full shapes, fixed dtypes) and read-only, so solvers trust them.

:func:`check` lists every constraint an assignment violates; ``fedalign.solve`` runs it on
every result, so a solver bug surfaces as an error and never as an infeasible plan.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InvalidProblemError

__all__ = ["AlignmentProblem", "Violation", "check", "capacity_tolerance"]

#: Relative slack allowed on the knapsack rows, to absorb float rounding in sums.
CAPACITY_RTOL = 1e-9


def capacity_tolerance(capacity: NDArray[np.float64]) -> NDArray[np.float64]:
    """Absolute slack allowed on a knapsack row of the given capacity (float rounding only)."""
    return CAPACITY_RTOL * np.maximum(1.0, np.abs(capacity))


# --------------------------------------------------------------------------- validation


def _position(flat_index: int, shape: tuple[int, ...]) -> str:
    idx = np.unravel_index(flat_index, shape)
    return "[" + ", ".join(str(int(k)) for k in idx) + "]"


def _as_float_array(name: str, value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Broadcast-free conversion to a float64 array of exactly ``shape``; finite values only."""
    arr = _as_numbers(name, value)
    if arr.shape != shape:
        raise InvalidProblemError(f"{name}: expected shape {shape}, got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        k = int(np.flatnonzero(bad.ravel())[0])
        raise InvalidProblemError(
            f"{name}{_position(k, shape)}: must be finite, got {arr.ravel()[k].item()!r}"
        )
    return arr


def _as_numbers(name: str, value: ArrayLike, what: str = "numbers") -> NDArray[np.float64]:
    """``value`` as float64; numbers given as text (``"2"``) are refused, not parsed."""
    try:
        raw = np.asarray(value)
        if raw.dtype.kind in "US":
            raise InvalidProblemError(f"{name}: expected {what}, got text")
        if raw.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in raw.flat):
            raise InvalidProblemError(f"{name}: expected {what}, got text")
        return raw.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidProblemError):
            raise
        raise InvalidProblemError(f"{name}: cannot be read as {what} ({exc})") from None


def _float_vector(
    name: str, value: ArrayLike, n: int, *, scalar_ok: bool
) -> NDArray[np.float64]:
    """A float scalar (if ``scalar_ok``) or length-``n`` vector, as float64 of length ``n``."""
    if scalar_ok and np.ndim(value) == 0:
        return np.full(n, float(_as_float_array(name, value, ())), dtype=np.float64)
    return _as_float_array(name, value, (n,))


def _int_vector(
    name: str, value: ArrayLike, n: int, *, scalar_ok: bool = True
) -> NDArray[np.int64]:
    """An integer (or integer-valued) scalar or length-``n`` vector, as int64 of length ``n``."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidProblemError(f"{name}: expected an integer, got a bool")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:  # pragma: no cover - ragged input
        raise InvalidProblemError(f"{name}: cannot be read as integers ({exc})") from None
    if raw.dtype == bool:
        raise InvalidProblemError(f"{name}: expected integers, got booleans")
    if scalar_ok and raw.ndim == 0:
        raw = np.full(n, raw)
    arr = _as_numbers(name, raw, "integers")
    if arr.shape != (n,):
        raise InvalidProblemError(f"{name}: expected an integer or shape ({n},), got {arr.shape}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InvalidProblemError(f"{name}[{k}]: must be an integer, got {arr[k].item()!r}")
    return arr.astype(np.int64)


def _check_nonnegative(name: str, arr: NDArray[Any]) -> None:
    neg = arr < 0
    if neg.any():
        k = int(np.flatnonzero(neg.ravel())[0])
        raise InvalidProblemError(
            f"{name}{_position(k, arr.shape)}: must be >= 0, got {arr.ravel()[k].item()!r}"
        )


def _ids(name: str, ids: Sequence[Hashable] | None, n: int) -> tuple[Hashable, ...]:
    if ids is None:
        return tuple(range(n))
    if isinstance(ids, (str, bytes)):
        raise InvalidProblemError(f"{name}: expected a sequence of ids, got a string")
    try:
        out = tuple(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    except TypeError:
        raise InvalidProblemError(f"{name}: expected a sequence of ids") from None
    if len(out) != n:
        raise InvalidProblemError(f"{name}: expected {n} ids, got {len(out)}")
    seen: dict[Hashable, int] = {}
    for k, ident in enumerate(out):
        try:
            first = seen.setdefault(ident, k)
        except TypeError:
            raise InvalidProblemError(f"{name}[{k}]: id {ident!r} is not hashable") from None
        if first != k:
            raise InvalidProblemError(
                f"{name}[{k}]: duplicate id {ident!r} (first at position {first})"
            )
    return out


def _readonly(arr: NDArray[Any]) -> NDArray[Any]:
    # A copy: freezing (or aliasing) the caller's own array would be a surprise.
    arr = np.array(arr, order="C", copy=True)
    arr.flags.writeable = False
    return arr


# --------------------------------------------------------------------------- reading dicts

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
    "client_ids",
    "expert_ids",
)


def _json_type(value: Any) -> str:
    """How JSON (or, for other objects, Python) names the type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, (int, float, np.number)):
        return "a number"
    names: dict[type, str] = {dict: "an object", list: "an array", tuple: "an array", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _is_number_type(kind: type, *, booleans: bool) -> bool:
    """Whether values of type ``kind`` are numbers (booleans too when ``booleans``)."""
    if issubclass(kind, (bool, np.bool_)):
        return booleans
    return issubclass(kind, (int, float, np.integer, np.floating))


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _check_json_numbers(name: str, value: Any, *, booleans: bool) -> None:
    """Numbers (booleans too when ``booleans``), alone or nested in arrays; names the first bad one.

    The leaves' types are read with one numpy element-wise call and judged once per distinct
    type, never in a Python loop over entries. Ragged arrays are left to the constructor,
    which refuses them with the argument's name.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in ("iufb" if booleans else "iuf"):
        return
    if _is_nested(value) or isinstance(value, np.ndarray):
        try:
            leaves = np.array(value, dtype=object)
        except ValueError:  # pragma: no cover - ragged in a way numpy refuses outright
            return
    else:
        leaves = np.empty((), dtype=object)
        leaves[()] = value
    types = np.frompyfunc(type, 1, 1)(leaves)
    ok = np.zeros(leaves.shape, dtype=bool)
    for kind in set(np.ravel(types).tolist()):  # a handful of distinct types
        if kind in (list, tuple) or _is_number_type(kind, booleans=booleans):
            ok |= types == kind
    if ok.all():
        return
    k = int(np.flatnonzero(~ok.ravel())[0])
    position = _position(k, leaves.shape) if leaves.ndim else ""
    expected = "a boolean or 0/1" if booleans else "a number"
    raise InvalidProblemError(
        f"{name}{position}: expected {expected}, got {_json_type(leaves.ravel()[k])}"
    )


def _check_json_ids(name: str, value: Any) -> None:
    """Ids are strings or integers whose JSON object keys (their string forms) are unique."""
    if not isinstance(value, (list, tuple)):
        raise InvalidProblemError(
            f"{name}: expected an array of strings or integers, got {_json_type(value)}"
        )
    keys: dict[str, int] = {}
    for k, ident in enumerate(value):  # one per client or expert, never per pair
        if isinstance(ident, (bool, np.bool_)) or not isinstance(ident, (str, int, np.integer)):
            raise InvalidProblemError(
                f"{name}[{k}]: ids must be strings or integers, got {_json_type(ident)}"
            )
        first = keys.setdefault(str(ident), k)
        if first != k:
            what = "duplicate id" if value[first] == ident else "id"
            raise InvalidProblemError(
                f"{name}[{k}]: {what} {ident!r} has the same JSON key as position {first}"
            )


# --------------------------------------------------------------------------- the problem


class AlignmentProblem:
    """One round's client–expert alignment problem (DESIGN.md §1), validated and read-only.

    Maximise ``sum(desirability[i, j] * x[i, j])`` over binary ``x`` subject to per-client
    expert counts, the memory and deadline knapsack rows, per-expert client counts and
    forbidden pairs.

    Parameters
    ----------
    desirability : (n_clients, n_experts) array of float
        Finite scores; higher is better. Negative scores are allowed (a pair may be worth
        less than leaving it out, but still be forced by a minimum).
    max_experts, min_experts : int or (n_clients,) ints >= 0
        At most / at least this many experts per client.
    expert_memory : (n_experts,) floats >= 0, optional
        Memory one expert needs on a client. Give ``client_memory`` with it.
    client_memory : (n_clients,) floats >= 0, optional
        Memory a client has for experts, in the same unit.
    train_time : (n_clients, n_experts) floats >= 0, optional
        Seconds for client ``i`` to fetch, train and return expert ``j``. Give ``deadline``
        with it.
    deadline : float or (n_clients,) floats > 0, optional
        A client's time budget in the round.
    expert_min_clients, expert_max_clients : int or (n_experts,) ints >= 0
        At least / at most this many clients train each expert. ``None`` for the maximum
        means unbounded.
    allowed : (n_clients, n_experts) bool, optional
        ``False`` forbids the pair.
    client_ids, expert_ids : sequences of hashable, optional
        Unique ids; default ``0..n-1``.

    Raises
    ------
    InvalidProblemError
        Any malformed argument; the message names the argument and first bad position.
    """

    __slots__ = (*_FIELDS, "_fits", "_client_index", "_expert_index")

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
        client_ids: Sequence[Hashable] | None = None,
        expert_ids: Sequence[Hashable] | None = None,
    ) -> None:
        d = _as_numbers("desirability", desirability)
        if d.ndim == 1 and d.size == 0 and expert_ids is not None:
            # No clients this round, experts known by id: the only way JSON can say (0, E).
            d = d.reshape(0, len(expert_ids))
        if d.ndim != 2:
            raise InvalidProblemError(
                f"desirability: expected a 2-D (n_clients, n_experts) array, got {d.ndim}-D"
            )
        n, e = d.shape
        if e == 0:
            raise InvalidProblemError("desirability: needs at least one expert (column)")
        d = _as_float_array("desirability", d, (n, e))

        max_e = _int_vector("max_experts", max_experts, n)
        min_e = _int_vector("min_experts", min_experts, n)
        _check_nonnegative("max_experts", max_e)
        _check_nonnegative("min_experts", min_e)
        above = min_e > max_e
        if above.any():
            k = int(np.flatnonzero(above)[0])
            raise InvalidProblemError(
                f"min_experts[{k}]: {min_e[k]} is above max_experts[{k}] = {max_e[k]}"
            )

        if (expert_memory is None) != (client_memory is None):
            given = "expert_memory" if expert_memory is not None else "client_memory"
            missing = "client_memory" if expert_memory is not None else "expert_memory"
            raise InvalidProblemError(f"{given}: given without {missing}; give both or neither")
        e_mem = c_mem = None
        if expert_memory is not None:
            e_mem = _as_float_array("expert_memory", expert_memory, (e,))
            c_mem = _as_float_array("client_memory", client_memory, (n,))  # type: ignore[arg-type]
            _check_nonnegative("expert_memory", e_mem)
            _check_nonnegative("client_memory", c_mem)

        if (train_time is None) != (deadline is None):
            given = "train_time" if train_time is not None else "deadline"
            missing = "deadline" if train_time is not None else "train_time"
            raise InvalidProblemError(f"{given}: given without {missing}; give both or neither")
        t = dl = None
        if train_time is not None:
            t = _as_float_array("train_time", train_time, (n, e))
            _check_nonnegative("train_time", t)
            dl = _float_vector("deadline", deadline, n, scalar_ok=True)  # type: ignore[arg-type]
            nonpos = dl <= 0
            if nonpos.any():
                k = int(np.flatnonzero(nonpos)[0])
                raise InvalidProblemError(f"deadline[{k}]: must be > 0, got {dl[k].item()!r}")

        e_min = _int_vector("expert_min_clients", expert_min_clients, e)
        _check_nonnegative("expert_min_clients", e_min)
        if expert_max_clients is None:
            e_max = np.full(e, n, dtype=np.int64)
        else:
            e_max = _int_vector("expert_max_clients", expert_max_clients, e)
            _check_nonnegative("expert_max_clients", e_max)
        above = e_min > e_max
        if above.any():
            k = int(np.flatnonzero(above)[0])
            raise InvalidProblemError(
                f"expert_min_clients[{k}]: {e_min[k]} is above expert_max_clients[{k}] = {e_max[k]}"
            )

        if allowed is None:
            allow = np.ones((n, e), dtype=bool)
        else:
            raw = np.asarray(allowed)
            if raw.shape != (n, e):
                raise InvalidProblemError(f"allowed: expected shape {(n, e)}, got {raw.shape}")
            if raw.dtype != bool:
                if raw.dtype.kind not in "iuf":
                    raise InvalidProblemError(f"allowed: expected booleans (or 0/1), got {raw.dtype}")
                bad = ~np.isin(raw, (0, 1))
                if bad.any():
                    k = int(np.flatnonzero(bad.ravel())[0])
                    raise InvalidProblemError(
                        f"allowed{_position(k, (n, e))}: expected a boolean (or 0/1), "
                        f"got {raw.ravel()[k].item()!r}"
                    )
            allow = raw.astype(bool)

        self.desirability = _readonly(d)
        self.max_experts = _readonly(max_e)
        self.min_experts = _readonly(min_e)
        self.expert_memory = None if e_mem is None else _readonly(e_mem)
        self.client_memory = None if c_mem is None else _readonly(c_mem)
        self.train_time = None if t is None else _readonly(t)
        self.deadline = None if dl is None else _readonly(dl)
        self.expert_min_clients = _readonly(e_min)
        # An expert can never take more than n clients; storing min(cap, n) keeps sums finite
        # (never below the minimum, so min <= max holds even when n is too small for it).
        self.expert_max_clients = _readonly(np.maximum(np.minimum(e_max, n), e_min))
        self.allowed = _readonly(allow)
        self.client_ids = _ids("client_ids", client_ids, n)
        self.expert_ids = _ids("expert_ids", expert_ids, e)
        self._fits: NDArray[np.bool_] | None = None
        self._client_index: dict[Hashable, int] | None = None
        self._expert_index: dict[Hashable, int] | None = None

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

    @property
    def has_memory(self) -> bool:
        """Whether the memory knapsack row is present."""
        return self.expert_memory is not None

    @property
    def has_deadline(self) -> bool:
        """Whether the deadline knapsack row is present."""
        return self.train_time is not None

    @property
    def has_knapsack(self) -> bool:
        """Whether any knapsack row is present (before reduction to counts)."""
        return self.has_memory or self.has_deadline

    @property
    def fits(self) -> NDArray[np.bool_]:
        """(n, E) bool: pairs that are allowed and fit the client's knapsacks on their own.

        A pair outside this mask can never be part of a feasible assignment.
        """
        if self._fits is None:
            ok = self.allowed.copy()
            if self.expert_memory is not None and self.client_memory is not None:
                cap = self.client_memory + capacity_tolerance(self.client_memory)
                ok &= self.expert_memory[None, :] <= cap[:, None]
            if self.train_time is not None and self.deadline is not None:
                cap = self.deadline + capacity_tolerance(self.deadline)
                ok &= self.train_time <= cap[:, None]
            self._fits = _readonly(ok)
        return self._fits

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

    def objective(self, assignment: ArrayLike) -> float:
        """Sum of desirability over the assigned pairs."""
        x = np.asarray(assignment, dtype=bool)
        return float(self.desirability[x].sum())

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
        if self.expert_memory is not None and self.client_memory is not None:
            need = _smallest_sum(
                np.where(fits, self.expert_memory[None, :], np.inf), self.min_experts
            )
            over = need > self.client_memory + capacity_tolerance(self.client_memory)
            if over.any():
                i = int(np.flatnonzero(over)[0])
                return (
                    f"memory: client {self.client_ids[i]!r} (position {i}) cannot hold its "
                    f"{self.min_experts[i]} smallest allowed experts"
                )
        if self.train_time is not None and self.deadline is not None:
            need = _smallest_sum(np.where(fits, self.train_time, np.inf), self.min_experts)
            over = need > self.deadline + capacity_tolerance(self.deadline)
            if over.any():
                i = int(np.flatnonzero(over)[0])
                return (
                    f"deadline: client {self.client_ids[i]!r} (position {i}) cannot train its "
                    f"{self.min_experts[i]} fastest allowed experts in time"
                )
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
        too for ``allowed``) alone or nested in arrays, and ids that are strings or
        integers. Ids are kept as given (``1`` stays an integer), but their string forms
        must be unique, since :meth:`Solution.to_json_dict` writes them as object keys.

        Parameters
        ----------
        data : mapping of str to value
            The problem's fields.

        Returns
        -------
        AlignmentProblem

        Raises
        ------
        InvalidProblemError
            Not a mapping, an unknown or missing field, a value of the wrong type, or
            anything the constructor refuses; the message names the field and the first
            bad position.
        """
        if not isinstance(data, Mapping):
            raise InvalidProblemError(
                f"data: expected a mapping of {cls.__name__}'s arguments, got {_json_type(data)}"
            )
        unknown = [k for k in data if k not in _FIELDS]
        if unknown:
            raise InvalidProblemError(
                f"{unknown[0]}: unknown field; the fields are {', '.join(_FIELDS)}"
            )
        if data.get("desirability") is None:
            raise InvalidProblemError("desirability: missing (an array of arrays of numbers)")
        kwargs = {name: value for name, value in data.items() if value is not None}
        for name, value in kwargs.items():
            if name in ("client_ids", "expert_ids"):
                _check_json_ids(name, value)
            else:
                _check_json_numbers(name, value, booleans=name == "allowed")
        if "expert_ids" in kwargs:
            # No clients: JSON writes an (0, E) matrix as [], so its width comes from the ids
            # (the constructor does the same for desirability).
            width = len(kwargs["expert_ids"])
            for name, dtype in (("train_time", np.float64), ("allowed", np.bool_)):
                if _is_nested(kwargs.get(name)) and len(kwargs[name]) == 0:
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
        return out

    def __repr__(self) -> str:
        rows = [n for n, flag in (("memory", self.has_memory), ("deadline", self.has_deadline)) if flag]
        extra = f", knapsack={'+'.join(rows)}" if rows else ""
        return f"AlignmentProblem(n_clients={self.n_clients}, n_experts={self.n_experts}{extra})"


def _smallest_sum(values: NDArray[np.float64], k: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per row, the sum of its ``k[i]`` smallest values (``inf`` entries count as unusable)."""
    if values.shape[1] == 0:
        return np.zeros(values.shape[0])
    srt = np.sort(values, axis=1)
    csum = np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(srt, axis=1)], axis=1)
    kk = np.minimum(k, values.shape[1])
    return csum[np.arange(values.shape[0]), kk]


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class Violation:
    """One violated constraint of an assignment.

    Attributes
    ----------
    constraint : str
        One of ``"shape"``, ``"allowed"``, ``"max_experts"``, ``"min_experts"``,
        ``"memory"``, ``"deadline"``, ``"expert_max_clients"``, ``"expert_min_clients"``.
    index : int or tuple of int or None
        Client position, expert position, or ``(client, expert)`` for a forbidden pair.
    message : str
        Human-readable explanation.
    """

    constraint: str
    index: int | tuple[int, int] | None
    message: str


def check(problem: AlignmentProblem, assignment: ArrayLike) -> list[Violation]:
    """Every constraint of ``problem`` that ``assignment`` violates.

    Parameters
    ----------
    problem : AlignmentProblem
    assignment : (n_clients, n_experts) array of bool or 0/1

    Returns
    -------
    list of Violation
        Empty when the assignment is feasible. A wrong shape or non-binary entries give a
        single ``"shape"`` violation.
    """
    raw = np.asarray(assignment)
    if raw.shape != problem.shape:
        return [Violation("shape", None, f"assignment has shape {raw.shape}, expected {problem.shape}")]
    if raw.dtype != bool:
        if raw.dtype.kind not in "iuf" or not np.isin(raw, (0, 1)).all():
            return [Violation("shape", None, "assignment entries must be booleans or 0/1")]
    x = raw.astype(bool)
    out: list[Violation] = []
    cid, eid = problem.client_ids, problem.expert_ids

    for i, j in np.argwhere(x & ~problem.allowed):
        out.append(
            Violation("allowed", (int(i), int(j)), f"client {cid[i]!r} may not train expert {eid[j]!r}")
        )
    count = x.sum(axis=1)
    for i in np.flatnonzero(count > problem.max_experts):
        out.append(
            Violation(
                "max_experts",
                int(i),
                f"client {cid[i]!r} has {count[i]} experts, max_experts is {problem.max_experts[i]}",
            )
        )
    for i in np.flatnonzero(count < problem.min_experts):
        out.append(
            Violation(
                "min_experts",
                int(i),
                f"client {cid[i]!r} has {count[i]} experts, min_experts is {problem.min_experts[i]}",
            )
        )
    if problem.expert_memory is not None and problem.client_memory is not None:
        used = x.astype(np.float64) @ problem.expert_memory
        cap = problem.client_memory
        for i in np.flatnonzero(used > cap + capacity_tolerance(cap)):
            out.append(
                Violation(
                    "memory", int(i), f"client {cid[i]!r} uses {used[i]:g} memory of {cap[i]:g}"
                )
            )
    if problem.train_time is not None and problem.deadline is not None:
        used = np.where(x, problem.train_time, 0.0).sum(axis=1)
        cap = problem.deadline
        for i in np.flatnonzero(used > cap + capacity_tolerance(cap)):
            out.append(
                Violation(
                    "deadline", int(i), f"client {cid[i]!r} needs {used[i]:g} s, deadline is {cap[i]:g} s"
                )
            )
    load = x.sum(axis=0)
    for j in np.flatnonzero(load > problem.expert_max_clients):
        out.append(
            Violation(
                "expert_max_clients",
                int(j),
                f"expert {eid[j]!r} has {load[j]} clients, expert_max_clients is "
                f"{problem.expert_max_clients[j]}",
            )
        )
    for j in np.flatnonzero(load < problem.expert_min_clients):
        out.append(
            Violation(
                "expert_min_clients",
                int(j),
                f"expert {eid[j]!r} has {load[j]} clients, expert_min_clients is "
                f"{problem.expert_min_clients[j]}",
            )
        )
    return out
