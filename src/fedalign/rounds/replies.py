"""Checks a client's reply against what it was sent, before anything of it is used.

A completed reply must hold exactly the arrays the client received (the shared ones and its
experts'), each with the global shape and dtype and only finite values; its
:class:`fedalign.Feedback` must say it completed and reward only experts it was given; its
averaging weight must be a finite number in ``[0, max_weight]``. Each check raises
:class:`InvalidReply` with a sentence saying what is wrong; the round driver turns that into
a dropout and never averages any part of the reply (a half-returned expert mixed into the
global one would be worse than none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._validation import Interval, validate_one
from ..plan import Feedback
from .naming import ModelLayout

__all__ = ["InvalidReply", "check_arrays", "check_feedback", "check_weight"]

#: How many offending keys an error message lists.
_SHOWN = 3


class InvalidReply(ValueError):
    """A reply that cannot be used; the message says why."""


def check_arrays(
    returned: Any,
    reference: Mapping[str, NDArray[Any]],
    layout: ModelLayout,
    experts: Sequence[int],
) -> dict[str, NDArray[Any]]:
    """The reply's arrays as numpy arrays, if they are exactly what the client was sent.

    Parameters
    ----------
    returned : mapping of str to array-like
        The reply's state.
    reference : mapping of str to ndarray
        The global state the round started from.
    layout : ModelLayout
        ``reference``'s layout.
    experts : sequence of int
        The experts the client was given.

    Raises
    ------
    InvalidReply
        Not a mapping; a key of an expert it was not given, an unknown key, a missing key;
        an array that cannot be read, or of another shape or dtype, or with NaN or inf.
    """
    if not isinstance(returned, Mapping):
        raise InvalidReply(f"expected a mapping of arrays, got {type(returned).__name__}")
    wanted = layout.keys_for(experts)
    got = set(returned)
    extra = got.difference(wanted)
    if extra:
        unknown = sorted(str(k) for k in extra if k not in layout.expert_of)
        if unknown:
            raise InvalidReply(f"unknown arrays {unknown[:_SHOWN]}")
        others = sorted({layout.expert_of[k] for k in extra})  # type: ignore[type-var]
        raise InvalidReply(f"arrays of experts {others[:_SHOWN]} it was not given")
    missing = [k for k in wanted if k not in got]
    if missing:
        raise InvalidReply(f"missing arrays {missing[:_SHOWN]}")
    return {key: _checked_array(key, returned[key], reference[key]) for key in wanted}


def _checked_array(key: str, value: Any, ref: NDArray[Any]) -> NDArray[Any]:
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - whatever a client sent, it is only a dropout
        raise InvalidReply(f"array {key!r} cannot be read: {exc}") from exc
    if array.shape != ref.shape or array.dtype != ref.dtype:
        raise InvalidReply(
            f"array {key!r} is {array.dtype}{list(array.shape)}, "
            f"expected {ref.dtype}{list(ref.shape)}"
        )
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise InvalidReply(f"array {key!r} holds non-finite values")
    return array


def check_feedback(feedback: Any, experts: Sequence[int]) -> Feedback:
    """``feedback`` if it is a completed :class:`~fedalign.Feedback` rewarding only ``experts``.

    Raises
    ------
    InvalidReply
        Not a Feedback, ``completed=False`` (a dropout is reported with ``drop``), or a
        reward for an expert the client was not given.
    """
    if not isinstance(feedback, Feedback):
        raise InvalidReply(f"feedback: expected a Feedback, got {type(feedback).__name__}")
    if not feedback.completed:
        raise InvalidReply("feedback: completed=False in a completed reply")
    given = set(experts)
    foreign = [e for e in feedback.rewards if e not in given]
    if foreign:
        raise InvalidReply(f"feedback: a reward for expert {foreign[0]!r}, which it was not given")
    return feedback


def check_weight(weight: Any, max_weight: float) -> float:
    """The averaging weight as a float, if it is a finite number in ``[0, max_weight]``.

    Raises
    ------
    InvalidReply
        Not a real number (booleans and text included), NaN or inf, negative, or above
        ``max_weight`` (one reply would outweigh a whole federation).
    """
    try:
        return float(validate_one("weight", weight, [Interval(float, 0.0, max_weight)]))
    except ValueError as exc:
        raise InvalidReply(str(exc)) from None
