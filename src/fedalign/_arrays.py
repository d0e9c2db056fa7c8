"""Private array helpers shared by :mod:`fedalign.scores`, :mod:`fedalign.profiles` and
:mod:`fedalign.scheduler`: growable row storage and argument conversion with errors that
name the argument and the offending position.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["check_unit_interval", "float_array", "grow_rows"]


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
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _first_non_number(value: Any, pos: tuple[int, ...] = ()) -> tuple[tuple[int, ...], Any] | None:
    """Position and item of the first leaf of a nested sequence that is not a number."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if _is_number(value):
        return None
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        return pos, value
    for k, item in enumerate(value):
        found = _first_non_number(item, (*pos, k))
        if found is not None:
            return found
    return None


def float_array(name: str, value: Any, what: str = "numbers") -> NDArray[np.float64]:
    """``value`` as a float64 array; anything that is not numbers raises a named ValueError.

    Booleans and text (``"2"``) are refused rather than converted. The message names
    ``name`` and, for nested sequences, the first offending position (``name[i, j]``).
    """
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting: look for the culprit below
        raw = None
    if raw is not None and raw.dtype.kind in "iuf":
        return raw.astype(np.float64, copy=False)
    found = _first_non_number(value)  # only bad input takes this Python-level walk
    if found is not None:
        pos, item = found
        where = "[" + ", ".join(map(str, pos)) + "]" if pos else ""
        raise ValueError(f"{name}{where}: expected {what}, got {item!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: cannot be read as {what} (ragged nesting?)") from None


def check_unit_interval(name: str, arr: NDArray[np.float64]) -> None:
    """Raise a ValueError naming ``name[position]`` at the first value not finite in [0, 1]."""
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), arr.shape)
        where = "[" + ", ".join(str(int(v)) for v in pos) + "]" if arr.ndim else ""
        raise ValueError(f"{name}{where}: expected a value in [0, 1], got {arr[pos].item()!r}")
