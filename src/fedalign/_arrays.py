"""Array helpers shared by :mod:`fedalign.scores`, :mod:`fedalign.profiles` and
:mod:`fedalign.scheduler`: growable row storage, argument conversion with errors that name the
argument and the offending position, and per-expert settings (:class:`PerExpert`,
:func:`per_expert`, :func:`validate_table`).

Private to fedalign: its names are public so that the modules above can share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validation import Constraint, Interval, Table, short_repr, validate

__all__ = [
    "MAX_N_EXPERTS",
    "PerExpert",
    "check_unit_interval",
    "checked_array",
    "float_array",
    "grow_rows",
    "per_expert",
    "validate_table",
]

#: Most experts a scheduler or a tracker takes. Every per-expert setting and every client's
#: fitness row hold one value per expert, so a mistyped ``10**12`` must be a named error,
#: not an 8 TiB allocation (or a minute building ``range(E)`` ids) half-way through setup.
MAX_N_EXPERTS = 2**20

#: Deepest nesting :func:`float_array` looks into (numpy arrays have at most 64 dimensions);
#: anything deeper is refused by name instead of exhausting Python's recursion limit.
_MAX_DEPTH = 64


def grow_rows(arr: NDArray[Any], used: int, needed: int) -> NDArray[Any]:
    """``arr`` with room for at least ``needed`` rows, its first ``used`` rows kept.

    Capacity doubles, so appends are amortised O(1). Spare rows are left uninitialised
    (callers set rows as they take them), so the operating system maps their pages only
    when they are first written: spare capacity costs address space, not memory.
    """
    if needed <= arr.shape[0]:
        return arr
    cap = max(needed, 2 * arr.shape[0], 16)
    out = np.empty((cap, *arr.shape[1:]), dtype=arr.dtype)
    out[:used] = arr[:used]
    return out


def _is_number(v: Any) -> bool:
    """A real number that fits a float64 (an int of 400 digits does not)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _is_branch(v: Any) -> bool:
    """Whether the walk of :func:`_first_non_number` looks inside ``v``."""
    return isinstance(v, Iterable) and not isinstance(v, (str, bytes, dict))


def _first_non_number(value: Any) -> tuple[tuple[int, ...], Any] | None:
    """Position and item of the first leaf of a nested sequence that is not a number.

    Iterative, and bounded by :data:`_MAX_DEPTH`, so a hostile nesting (or a list that
    contains itself) is reported rather than overflowing the stack.
    """
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if _is_number(value):
        return None
    if not _is_branch(value):
        return (), value
    stack: list[tuple[tuple[int, ...], Iterator[tuple[int, Any]]]] = [((), enumerate(value))]
    while stack:
        pos, items = stack[-1]
        step = next(items, None)
        if step is None:
            stack.pop()
            continue
        k, item = step
        here = (*pos, k)
        if isinstance(item, np.ndarray):
            item = item.tolist()
        if _is_number(item):
            continue
        if not _is_branch(item) or len(here) >= _MAX_DEPTH:
            return here, item
        stack.append((here, enumerate(item)))
    return None


def float_array(name: str, value: Any, what: str = "numbers") -> NDArray[np.float64]:
    """``value`` as a float64 array; anything that is not numbers raises a named ValueError.

    Booleans, text (``"2"``), complex numbers and integers too large for a float64 are
    refused rather than converted. The message names ``name`` and, for nested sequences, the
    first offending position (``name[i, j]``).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raw = None  # ragged or hostile nesting: look for the culprit below
    if raw is not None and raw.dtype.kind in "iuf":
        return raw.astype(np.float64, copy=False)
    found = _first_non_number(value)  # only bad input takes this Python-level walk
    if found is not None:
        pos, item = found
        where = "[" + ", ".join(map(str, pos)) + "]" if pos else ""
        raise ValueError(f"{name}{where}: expected {what}, got {short_repr(item)}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise ValueError(f"{name}: cannot be read as {what} (ragged nesting?)") from None


def check_unit_interval(name: str, arr: NDArray[np.float64]) -> None:
    """Raise a ValueError naming ``name[position]`` at the first value not finite in [0, 1]."""
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), arr.shape)
        where = "[" + ", ".join(str(int(v)) for v in pos) + "]" if arr.ndim else ""
        raise ValueError(f"{name}{where}: expected a value in [0, 1], got {arr[pos].item()!r}")


#: dtype kinds a stored array of each kind may have (floats may be stored as integers).
_STATE_KINDS = {"bool": "b", "int": "iu", "float": "fiu"}


def checked_array(
    name: str,
    value: Any,
    *,
    shape: tuple[int, ...],
    kind: str,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    nan: bool = False,
) -> NDArray[Any]:
    """A stored array (a saved state's) checked before it is trusted; returned as given.

    Parameters
    ----------
    name : str
        Named in errors (``fit.count``).
    value : array
    shape : tuple of int
        The exact shape expected.
    kind : {"bool", "int", "float"}
        What the dtype must hold: booleans, integers, or real numbers (no complex, text,
        objects or dates; floats may come as integers).
    low, high : float, optional
        Inclusive bounds on every value (NaN aside).
    above : float, optional
        Exclusive lower bound.
    nan : bool
        NaN is allowed (meaning unknown); other non-finite values never are.

    Raises
    ------
    ValueError
        The first thing wrong, with the position of the first bad value.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in _STATE_KINDS[kind] or arr.dtype.itemsize > 8:
        raise ValueError(f"{name}: expected {kind} values, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if kind == "bool" or arr.size == 0:
        return arr
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) if arr.dtype.kind == "f" else np.zeros(arr.shape, dtype=bool)
        if nan:
            bad &= ~np.isnan(arr)
        if low is not None:
            bad |= arr < low
        if high is not None:
            bad |= arr > high
        if above is not None:
            bad |= arr <= above
    if bad.any():
        k = int(np.flatnonzero(bad.ravel())[0])
        where = "[" + ", ".join(str(int(i)) for i in np.unravel_index(k, arr.shape)) + "]"
        raise ValueError(f"{name}{where}: invalid value {arr.ravel()[k].item()!r}")
    return arr


# --------------------------------------------------------------------------- per expert


@dataclass(frozen=True)
class PerExpert(Constraint):
    """A validation form: one number for every expert, or one number per expert.

    Each number must be accepted by ``element``. Whether the length is right depends on the
    number of experts, which a table does not know: tables holding this form are checked by
    :func:`validate_table`, which hands such entries to :func:`per_expert`.
    """

    element: Interval

    def convert(self, value: Any) -> Any:
        """The value as a 0-d or 1-d array, any length (see :func:`per_expert`)."""
        arr = float_array("value", value)
        if arr.ndim > 1 or not self.element.within(arr).all():
            raise ValueError
        return arr.astype(np.int64) if self.element.kind is int else arr

    def describe(self) -> str:
        return f"{self.element.describe()}, or one per expert"


def _per_expert_form(forms: Sequence[Constraint | None]) -> PerExpert | None:
    return next((f for f in forms if isinstance(f, PerExpert)), None)


def per_expert(
    name: str,
    value: Any,
    forms: Sequence[Constraint | None],
    n_experts: int | None = None,
    *,
    error: type[Exception] = ValueError,
) -> NDArray[Any] | None:
    """A per-expert setting checked against its table entry ``forms``, as an (E,) array.

    Parameters
    ----------
    name : str
        The setting's name, for error messages.
    value : number, sequence of numbers or None
        One number for every expert, or one per expert (None where ``forms`` allows it).
    forms : list of forms
        The table entry: a :class:`PerExpert`, and ``None`` if the setting is optional.
    n_experts : int, optional
        E. None: ``value`` must be a vector, and its length is E.
    error : exception class

    Returns
    -------
    ndarray or None
        (E,) int64 for an int element, else float64.

    Raises
    ------
    error
        Not numbers, the wrong length, or a number the element refuses; the message names
        the position (``expert_memory[1]: expected a float >= 0, got -1.0``).
    """
    form = _per_expert_form(forms)
    if form is None:
        raise TypeError(f"{name}: the table entry has no PerExpert form")
    if value is None:
        if None in forms:
            return None
        raise error(f"{name}: expected {form.describe()}, got None")
    try:
        arr = float_array(name, value, what=form.element.describe())
    except ValueError as exc:
        raise error(str(exc)) from None
    expected = "one number per expert" if n_experts is None else f"a number or {n_experts} values"
    if arr.ndim == 0 and n_experts is not None:
        arr = np.full(n_experts, float(arr))
    if arr.ndim != 1 or arr.size == 0 or (n_experts is not None and arr.size != n_experts):
        raise error(f"{name}: expected {expected}, got shape {arr.shape}")
    bad = ~form.element.within(arr)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise error(f"{name}[{k}]: expected {form.element.describe()}, got {arr[k].item()!r}")
    return arr.astype(np.int64) if form.element.kind is int else arr


def validate_table(
    table: Table,
    values: Mapping[str, Any],
    *,
    n_experts: int | None = None,
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """:func:`fedalign._validation.validate` for a table with :class:`PerExpert` entries.

    Plain entries go through ``validate``; per-expert entries, in table order, through
    :func:`per_expert`. With ``n_experts=None`` the first per-expert value given sets E
    (it must then be a vector), and the others must match it.
    """
    per = [k for k, forms in table.items() if _per_expert_form(forms) is not None and k in values]
    plain = {k: v for k, v in values.items() if k not in per}
    out = validate({k: f for k, f in table.items() if k not in per}, plain, error=error)
    for k in per:
        arr = per_expert(k, values[k], table[k], n_experts, error=error)
        if arr is not None and n_experts is None:
            n_experts = arr.size
        out[k] = arr
    return out
