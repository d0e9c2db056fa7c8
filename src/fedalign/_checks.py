"""Argument checks shared by :mod:`fedalign.rows` and :mod:`fedalign.problem`.

Each function turns one user-given value into a normalised numpy array (or tuple of ids),
or raises :class:`~fedalign.InvalidProblemError` naming the argument and the first offending
position (``train_time[2, 1]: must be >= 0, got -1.0``). Values that only look like numbers
are refused rather than converted: text (``"2"``), booleans where numbers are expected,
complex numbers, dates, and integers too large for float64.

The ``json_*`` checks are the stricter reading of :meth:`AlignmentProblem.from_dict`: values
must have the types JSON produces.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import short_repr
from .errors import InvalidProblemError

__all__ = [
    "as_float_array",
    "as_numbers",
    "bool_matrix",
    "check_json_ids",
    "check_json_numbers",
    "check_nonnegative",
    "float_vector",
    "ids",
    "int_vector",
    "json_type",
    "position",
    "readonly",
]

#: numpy dtype kinds that are never numbers here: text, bytes, complex, dates, raw.
_NOT_NUMBERS = {"U": "text", "S": "text", "c": "complex numbers", "m": "durations", "M": "dates", "V": "raw bytes"}


def position(flat_index: int, shape: tuple[int, ...]) -> str:
    """``[i, j]`` for a flat index into an array of ``shape`` (empty for a scalar)."""
    if not shape:
        return ""
    idx = np.unravel_index(flat_index, shape)
    return "[" + ", ".join(str(int(k)) for k in idx) + "]"


def _leaf_problem(raw: NDArray[Any]) -> tuple[int, str] | None:
    """First leaf of an object array that is not a plain real number, and what it is."""
    for k, v in enumerate(raw.flat):  # only reached for object arrays: bad or unusual input
        if isinstance(v, (bool, np.bool_)):
            return k, "a boolean"
        if isinstance(v, (str, bytes)):
            return k, "text"
        if isinstance(v, (complex, np.complexfloating)):
            return k, "a complex number"
        if not isinstance(v, (int, float, np.integer, np.floating)):
            return k, f"a {type(v).__name__}"
    return None


def _item(value: Any) -> Any:
    """A numpy scalar as the Python number it holds; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _no_bool_leaves(name: str, value: Any, raw: NDArray[Any]) -> None:
    """Refuse booleans nested in a Python sequence of numbers.

    numpy reads ``[1.0, True]`` as the floats ``[1.0, 1.0]``: only the leaves' own types
    tell. Checked for lists and tuples alone (an array's dtype already says), with one
    element-wise call, never a Python loop over entries.
    """
    if not (isinstance(value, (list, tuple)) and raw.dtype.kind in "iuf" and raw.size):
        return
    try:
        leaves = np.array(value, dtype=object)
    except (ValueError, RecursionError):  # numpy read it as numbers: this cannot fail, but
        return  # a leaf that is not a plain number is not this check's business
    found = np.asarray(np.frompyfunc(_is_bool_leaf, 1, 1)(leaves), dtype=bool)
    if found.any():
        k = int(np.flatnonzero(found.ravel())[0])
        raise InvalidProblemError(f"{name}{position(k, leaves.shape)}: expected a number, got a boolean")


def _is_bool_leaf(leaf: Any) -> bool:
    """A boolean, or a numpy array of them (numpy keeps 0-d arrays whole in object arrays)."""
    return isinstance(leaf, (bool, np.bool_)) or (isinstance(leaf, np.ndarray) and leaf.dtype == np.bool_)


def as_numbers(
    name: str, value: ArrayLike, what: str = "numbers", *, booleans: bool = False
) -> NDArray[np.float64]:
    """``value`` as float64; anything that is not real numbers raises a named error.

    ``booleans=True`` accepts boolean arrays (converted to 0/1); otherwise a boolean is
    refused even when it sits among numbers in a list (``[1.0, True]``).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidProblemError(f"{name}: cannot be read as {what} ({_why(exc)})") from None
    if not booleans:
        _no_bool_leaves(name, value, raw)
    kind = raw.dtype.kind
    if kind in _NOT_NUMBERS:
        raise InvalidProblemError(f"{name}: expected {what}, got {_NOT_NUMBERS[kind]}")
    if kind == "b" and not booleans:
        raise InvalidProblemError(f"{name}: expected {what}, got booleans")
    if kind == "O":
        bad = _leaf_problem(raw)
        if bad is not None and not (booleans and bad[1] == "a boolean"):
            k, got = bad
            raise InvalidProblemError(f"{name}{position(k, raw.shape)}: expected {what}, got {got}")
    try:
        return raw.astype(np.float64)
    except OverflowError:
        raise InvalidProblemError(
            f"{name}: a value is too large for a 64-bit float (largest is about 1.8e308)"
        ) from None
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"{name}: cannot be read as {what} ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return short_repr(str(exc), 120).strip("'\"")


def as_float_array(name: str, value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Conversion to a float64 array of exactly ``shape`` (no broadcasting); finite values only."""
    arr = as_numbers(name, value)
    if arr.shape != shape:
        raise InvalidProblemError(f"{name}: expected shape {shape}, got {arr.shape}")
    check_finite(name, arr)
    return arr


def check_finite(name: str, arr: NDArray[np.float64]) -> None:
    """Raise at the first entry of ``arr`` that is NaN or infinite."""
    bad = ~np.isfinite(arr)
    if bad.any():
        k = int(np.flatnonzero(bad.ravel())[0])
        raise InvalidProblemError(
            f"{name}{position(k, arr.shape)}: must be finite, got {arr.ravel()[k].item()!r}"
        )


def float_vector(name: str, value: ArrayLike, n: int, *, scalar_ok: bool) -> NDArray[np.float64]:
    """A float scalar (if ``scalar_ok``) or length-``n`` vector, as float64 of length ``n``."""
    arr = as_numbers(name, value)
    if scalar_ok and arr.ndim == 0:
        check_finite(name, arr)
        return np.full(n, float(arr), dtype=np.float64)
    if arr.shape != (n,):
        raise InvalidProblemError(f"{name}: expected shape {(n,)}, got {arr.shape}")
    check_finite(name, arr)
    return arr


def int_vector(name: str, value: ArrayLike, n: int, *, scalar_ok: bool = True) -> NDArray[np.int64]:
    """An integer (or integer-valued) scalar or length-``n`` vector, as int64 of length ``n``.

    Values beyond int64's range are refused (they would wrap around).
    """
    if isinstance(value, (bool, np.bool_)):
        raise InvalidProblemError(f"{name}: expected an integer, got a bool")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidProblemError(f"{name}: cannot be read as integers ({_why(exc)})") from None
    if raw.dtype == bool:
        raise InvalidProblemError(f"{name}: expected integers, got booleans")
    _no_bool_leaves(name, value, raw)
    if scalar_ok and raw.ndim == 0:
        raw = np.full(n, raw) if raw.dtype != object else np.array([raw.item()] * n, dtype=object)
    arr = as_numbers(name, raw, "integers")
    if arr.shape != (n,):
        raise InvalidProblemError(f"{name}: expected an integer or shape ({n},), got {arr.shape}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InvalidProblemError(f"{name}[{k}]: must be an integer, got {arr[k].item()!r}")
    big = np.abs(arr) >= 2.0**62
    if big.any():
        k = int(np.flatnonzero(big)[0])
        # the value as given (a Python int stays exact), never as a wrapped int64 or the
        # float numpy read a list of large ints as
        leaf = raw.ravel()[k]
        if isinstance(value, (list, tuple)) and raw.dtype.kind == "f":
            leaf = np.array(value, dtype=object).ravel()[k]
        shown = short_repr(_item(leaf))
        raise InvalidProblemError(f"{name}[{k}]: {shown} is out of range (below 2**62)")
    return arr.astype(np.int64)


def check_nonnegative(name: str, arr: NDArray[Any]) -> None:
    """Raise at the first negative entry of ``arr``."""
    neg = arr < 0
    if neg.any():
        k = int(np.flatnonzero(neg.ravel())[0])
        raise InvalidProblemError(
            f"{name}{position(k, arr.shape)}: must be >= 0, got {arr.ravel()[k].item()!r}"
        )


def ids(name: str, value: Sequence[Hashable] | None, n: int) -> tuple[Hashable, ...]:
    """``n`` unique hashable ids (default ``0..n-1``)."""
    if value is None:
        return tuple(range(n))
    if isinstance(value, (str, bytes)):
        raise InvalidProblemError(f"{name}: expected a sequence of ids, got a string")
    if isinstance(value, (dict, set, frozenset)):
        raise InvalidProblemError(
            f"{name}: expected a sequence of ids in order, got a {type(value).__name__}"
        )
    try:
        out = tuple(value.tolist() if isinstance(value, np.ndarray) else value)
    except TypeError:
        raise InvalidProblemError(f"{name}: expected a sequence of ids") from None
    if len(out) != n:
        raise InvalidProblemError(f"{name}: expected {n} ids, got {len(out)}")
    seen: dict[Hashable, int] = {}
    for k, ident in enumerate(out):
        try:
            first = seen.setdefault(ident, k)
        except TypeError:
            raise InvalidProblemError(f"{name}[{k}]: id {short_repr(ident)} is not hashable") from None
        if first != k:
            raise InvalidProblemError(
                f"{name}[{k}]: duplicate id {short_repr(ident)} (first at position {first})"
            )
    return out


def bool_matrix(name: str, value: ArrayLike, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """A boolean (or 0/1) matrix of exactly ``shape``, as bool.

    Numbers other than 0 and 1, NaN, text, complex numbers and ragged nesting are refused
    (``numpy.asarray(x, dtype=bool)`` would read them all as True).
    """
    raw = as_numbers(name, value, "booleans (or 0/1)", booleans=True)
    if raw.shape != shape:
        raise InvalidProblemError(f"{name}: expected shape {shape}, got {raw.shape}")
    bad = (raw != 0.0) & (raw != 1.0)
    if bad.any():
        k = int(np.flatnonzero(bad.ravel())[0])
        raise InvalidProblemError(
            f"{name}{position(k, shape)}: expected a boolean (or 0/1), got {raw.ravel()[k].item()!r}"
        )
    return raw.astype(bool)


def readonly(arr: NDArray[Any]) -> NDArray[Any]:
    """A read-only C-ordered copy (freezing or aliasing the caller's own array would surprise)."""
    arr = np.array(arr, order="C", copy=True)
    arr.flags.writeable = False
    return arr


# --------------------------------------------------------------------------- JSON values


def json_type(value: Any) -> str:
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
    if issubclass(kind, (bool, np.bool_)):
        return booleans
    return issubclass(kind, (int, float, np.integer, np.floating))


def check_json_numbers(name: str, value: Any, *, booleans: bool) -> None:
    """Numbers (booleans too when ``booleans``), alone or nested in arrays; names the first bad one.

    The leaves' types are read with one numpy element-wise call and judged once per distinct
    type, never in a Python loop over entries. Ragged arrays are left to the constructor,
    which refuses them with the argument's name.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in ("iufb" if booleans else "iuf"):
        return
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            leaves = np.array(value, dtype=object)
        except (ValueError, RecursionError):  # ragged or absurdly deep: the constructor says so
            return
    else:
        leaves = np.empty((), dtype=object)
        leaves[()] = value
    judged: dict[type, bool] = {}  # a handful of distinct types, each judged once

    def fits(leaf: Any) -> bool:
        kind = type(leaf)
        if kind not in judged:
            judged[kind] = kind in (list, tuple) or _is_number_type(kind, booleans=booleans)
        return judged[kind]

    # one element-wise call; never ufuncs over the type objects themselves (numpy would
    # call a numpy scalar type's __array_wrap__ on the result)
    ok = np.asarray(np.frompyfunc(fits, 1, 1)(leaves), dtype=bool)
    if ok.all():
        return
    k = int(np.flatnonzero(~ok.ravel())[0])
    expected = "a boolean or 0/1" if booleans else "a number"
    raise InvalidProblemError(
        f"{name}{position(k, leaves.shape)}: expected {expected}, got {json_type(leaves.ravel()[k])}"
    )


def check_json_ids(name: str, value: Any) -> None:
    """Ids are strings or integers whose JSON object keys (their string forms) are unique."""
    if not isinstance(value, (list, tuple)):
        raise InvalidProblemError(
            f"{name}: expected an array of strings or integers, got {json_type(value)}"
        )
    keys: dict[str, int] = {}
    for k, ident in enumerate(value):  # one per client or expert, never per pair
        if isinstance(ident, (bool, np.bool_)) or not isinstance(ident, (str, int, np.integer)):
            raise InvalidProblemError(
                f"{name}[{k}]: ids must be strings or integers, got {json_type(ident)}"
            )
        try:
            key = str(ident)
        except ValueError:  # an integer beyond Python's limit on int -> str conversion
            raise InvalidProblemError(
                f"{name}[{k}]: id {short_repr(ident)} is too long to be a JSON object key"
            ) from None
        first = keys.setdefault(key, k)
        if first != k:
            what = "duplicate id" if value[first] == ident else "id"
            raise InvalidProblemError(
                f"{name}[{k}]: {what} {short_repr(ident)} has the same JSON key as position {first}"
            )
