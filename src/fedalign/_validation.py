"""Declarative validation of settings and options, once, at the boundary.

Modelled on scikit-learn's ``_parameter_constraints``
(``sklearn/utils/_param_validation.py``): a class states, in one table, what each of its
parameters may be, and :func:`validate` checks a call against the table and returns the
values converted to plain Python types. Past the boundary, code trusts them.

A table maps a parameter name to a list of allowed forms; a value is accepted when any form
accepts it. ``None`` in the list allows ``None``. The forms:

:class:`Interval`
    An ``int`` or ``float`` in a range (booleans, text, complex numbers and non-finite
    floats are refused; integers of any size are compared exactly, and a float that does
    not fit float64 is refused rather than overflowing).
:class:`Options`
    One of a fixed set of values (strings, usually).
:class:`Boolean`
    ``True`` or ``False`` (numpy booleans too).
:class:`InstanceOf`
    An instance of a class.
:class:`Pair`
    A ``(low, high)`` pair of numbers with ``low <= high`` (a range).

Every error names the parameter and shows the value (shortened), e.g.
``time_limit: expected a float > 0 or None, got -1``. A caller may raise another class for a
value of the wrong type than for a value out of range (``type_error``), as
:class:`fedalign.ClientProfile` does (``TypeError`` / ``ValueError``), and may qualify the
names (``prefix="ClientProfile."``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Boolean",
    "Constraint",
    "InstanceOf",
    "Interval",
    "Options",
    "Pair",
    "short_repr",
    "validate",
    "validate_one",
]

#: Longest repr of a bad value shown in an error message.
_REPR_LIMIT = 80


def short_repr(value: Any, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)``, shortened to about ``limit`` characters (huge or hostile values)."""
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
            try:
                return f"an integer of {len(str(abs(value)))} digits"
            except ValueError:  # beyond Python's int -> str limit (4,300 digits by default)
                return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still reported
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Constraint:
    """One allowed form of a parameter."""

    def convert(self, value: Any) -> Any:
        """The value in its plain form; raises ``ValueError`` if this form does not accept it."""
        raise NotImplementedError

    def describe(self) -> str:
        """How the form reads in an error message ("an int >= 1")."""
        raise NotImplementedError

    def accepts_type(self, value: Any) -> bool:
        """Whether ``value`` is of a type this form takes, its range aside.

        Lets :func:`validate_one` tell a value of the wrong type (``type_error``) from one out
        of range. A form that cannot tell says True.
        """
        return True


def _is_real(value: Any) -> bool:
    if type(value) in (float, int):  # the common case, without the slower ABC check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Interval(Constraint):
    """A number of ``kind`` (``int`` or ``float``) between ``left`` and ``right``.

    ``None`` for a side means unbounded. ``closed`` is ``"both"``, ``"left"``, ``"right"``
    or ``"neither"``. A float interval accepts integers (converted to float); an int
    interval accepts floats with an integral value only when ``integral_floats`` is True
    (JSON writes ``2`` as ``2.0`` in some tools).
    """

    kind: type
    left: float | None = None
    right: float | None = None
    closed: str = "both"
    integral_floats: bool = False

    def convert(self, value: Any) -> Any:
        if not _is_real(value):
            raise ValueError
        if self.kind is int:
            if isinstance(value, (int, np.integer)):
                v: Any = int(value)
            elif self.integral_floats and math.isfinite(float(value)) and float(value).is_integer():
                v = int(value)
            else:
                raise ValueError
        else:
            try:
                v = float(value)
            except OverflowError:
                raise ValueError from None
            if not math.isfinite(v):
                raise ValueError
        lo_ok = self.left is None or (
            v >= self.left if self.closed in ("both", "left") else v > self.left
        )
        hi_ok = self.right is None or (
            v <= self.right if self.closed in ("both", "right") else v < self.right
        )
        if not (lo_ok and hi_ok):
            raise ValueError
        return v

    def accepts_type(self, value: Any) -> bool:
        return _is_real(value)

    def within(self, values: NDArray[np.floating[Any]]) -> NDArray[np.bool_]:
        """Elementwise :meth:`convert` for a float array: which values it accepts.

        An array does not say whether a value was written as an int, so an int interval
        accepts the integral values here (as ``integral_floats`` does for scalars).
        """
        ok = np.isfinite(values)
        if self.kind is int:
            ok &= values == np.round(values)
        if self.left is not None:
            ok &= values >= self.left if self.closed in ("both", "left") else values > self.left
        if self.right is not None:
            ok &= values <= self.right if self.closed in ("both", "right") else values < self.right
        return ok

    def describe(self) -> str:
        what = "an int" if self.kind is int else "a float"
        lo_op = ">=" if self.closed in ("both", "left") else ">"
        hi_op = "<=" if self.closed in ("both", "right") else "<"
        if self.left is not None and self.right is not None:
            lb = "[" if self.closed in ("both", "left") else "("
            rb = "]" if self.closed in ("both", "right") else ")"
            return f"{what} in {lb}{_num(self.left)}, {_num(self.right)}{rb}"
        if self.left is not None:
            return f"{what} {lo_op} {_num(self.left)}"
        if self.right is not None:
            return f"{what} {hi_op} {_num(self.right)}"
        return f"a finite {what[2:] if self.kind is float else 'int'}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of values."""

    values: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]) -> None:
        object.__setattr__(self, "values", tuple(values))

    def convert(self, value: Any) -> Any:
        try:
            if value in self.values and not isinstance(value, (bool, np.bool_)):
                return value
        except TypeError:  # unhashable or uncomparable
            pass
        raise ValueError

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Boolean(Constraint):
    """``True`` or ``False``."""

    def convert(self, value: Any) -> Any:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise ValueError

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def describe(self) -> str:
        return "a bool"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``cls`` (returned as it is)."""

    cls: type
    name: str | None = None

    def convert(self, value: Any) -> Any:
        if isinstance(value, self.cls):
            return value
        raise ValueError

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, self.cls)

    def describe(self) -> str:
        return f"a {self.name or self.cls.__name__}"


@dataclass(frozen=True)
class Pair(Constraint):
    """A ``(low, high)`` pair (tuple, list or array of two), each accepted by ``element``,
    with ``low <= high``; returned as a tuple."""

    element: Interval

    def convert(self, value: Any) -> Any:
        if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
            raise ValueError
        low, high = (self.element.convert(v) for v in value)
        if low > high:
            raise ValueError
        return (low, high)

    def accepts_type(self, value: Any) -> bool:
        return isinstance(value, (tuple, list, np.ndarray))

    def describe(self) -> str:
        return f"a pair (low, high) with low <= high, each {self.element.describe()}"


Table = Mapping[str, Sequence[Constraint | None]]


def _describe(forms: Sequence[Constraint | None]) -> str:
    parts = [f.describe() for f in forms if f is not None]
    if None in forms:
        parts.append("None")
    return " or ".join(parts)


def validate_one(
    name: str,
    value: Any,
    forms: Sequence[Constraint | None],
    *,
    error: type[Exception] = ValueError,
    type_error: type[Exception] | None = None,
) -> Any:
    """``value`` converted by the first form of ``forms`` that accepts it.

    Raises
    ------
    type_error
        Given, and no form takes a value of this type (text where a number is expected).
    error
        No form accepts it; the message names ``name`` and shows the value.
    """
    if value is None and None in forms:
        return None
    for form in forms:
        if form is None:
            continue
        try:
            return form.convert(value)
        except (ValueError, TypeError, OverflowError):
            continue
    cls = error
    if type_error is not None and not any(f.accepts_type(value) for f in forms if f is not None):
        cls = type_error
    raise cls(f"{name}: expected {_describe(forms)}, got {short_repr(value)}")


def validate(
    table: Table,
    values: Mapping[str, Any],
    *,
    error: type[Exception] = ValueError,
    type_error: type[Exception] | None = None,
    owner: str | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Check every value against its entry of ``table``; return them converted.

    Parameters
    ----------
    table : mapping of name to allowed forms
    values : mapping of name to value
        Names missing from ``table`` are an error (a misspelt option).
    error : exception class
        Raised for a bad value (``ValueError`` by default; a fedalign error class where the
        API names one).
    type_error : exception class, optional
        Raised instead of ``error`` for a value of a type no form takes.
    owner : str, optional
        Who owns the parameters, for the unknown-name message ("solver 'flow'").
    prefix : str
        Put before each name in error messages (``"ClientProfile."``).

    Returns
    -------
    dict
        The values, converted (ints as ``int``, floats as ``float``, booleans as ``bool``).

    Raises
    ------
    TypeError
        A name that is not in the table.
    type_error, error
        A value no form of its entry accepts.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in table:
            who = f"{owner} has" if owner else "there is"
            raise TypeError(f"{who} no option {name!r}; the options are {sorted(table)}")
        out[name] = validate_one(
            prefix + name, value, table[name], error=error, type_error=type_error
        )
    return out
