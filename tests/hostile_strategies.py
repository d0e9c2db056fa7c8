"""Hostile inputs: Hypothesis strategies and state-file forgery, for the hostile-input suites.

Strategies (``tests/test_hostile.py`` draws from them)
------------------------------------------------------
``numbers()``
    One value where a number is expected: ints of every size (beyond int64 and float64),
    floats of every magnitude with NaN and infinities, complex numbers, booleans, numpy
    scalars of every dtype, ``Decimal``, ``Fraction``, text, bytes, ``None``, dates.
``arrays()``
    A value where an array is expected: nested lists of ``numbers()`` (ragged or not, up to
    a few levels, sometimes absurdly deep), numpy arrays of odd dtypes and shapes, dicts,
    sets, generators.
``ids()``
    A value where a sequence of ids is expected: lists of hashable and unhashable things,
    repeats, dicts, sets, strings, numpy arrays, huge integers.
``feedbacks()``
    Keyword arguments of a :class:`fedalign.Feedback`, mostly plausible, often hostile.

State-file forgery
------------------
``pack(meta, arrays)`` writes a state file whose checksum is right over whatever it is
given (the documented layout: magic line, ``<IQ32s`` header, ``.npz`` payload): ``meta`` as
a dict or as raw JSON text (deep nesting, huge integers), arrays of any dtype, members
stored or deflated, extra raw members. ``unpack(path)`` reads one back into
``(meta, arrays)``; ``reseal(raw)`` recomputes the header of a damaged file so that only the
payload's contents can be wrong.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

__all__ = [
    "HEADER",
    "MAGIC",
    "arrays",
    "feedbacks",
    "ids",
    "numbers",
    "pack",
    "reseal",
    "unpack",
]

MAGIC = b"FEDALIGN-SCHEDULER\n"
HEADER = struct.Struct("<IQ32s")  # format version, payload length, SHA-256 of the payload


# --------------------------------------------------------------------------- numbers


_NUMPY_SCALARS = st.sampled_from(
    [
        np.int8(-3), np.uint8(200), np.int64(2**62), np.uint64(2**64 - 1), np.float16(0.5),
        np.float32(3.4e38), np.float64(1e308), np.longdouble(1.5), np.complex64(1 + 1j),
        np.bool_(True), np.float64("nan"), np.float32("inf"), np.datetime64("2020-01-01"),
        np.timedelta64(5, "s"), np.str_("1"), np.bytes_(b"1"),
    ]
)


def numbers() -> st.SearchStrategy[Any]:
    """One value where a number is expected, of every kind and magnitude."""
    return st.one_of(
        st.integers(min_value=-5, max_value=10),
        st.integers(),
        st.sampled_from([2**31, 2**53 + 1, 2**62, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -(10**400)]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e15, 1e300, 1.7e308, float("nan"), float("inf")]),
        st.complex_numbers(max_magnitude=1e6),
        st.booleans(),
        _NUMPY_SCALARS,
        st.sampled_from([decimal.Decimal("1.5"), decimal.Decimal("NaN"), fractions.Fraction(1, 3)]),
        st.sampled_from(["1", "", b"1", None, datetime.date(2020, 1, 1), datetime.timedelta(1), object()]),
    )


def _ragged(draw: st.DrawFn, depth: int) -> Any:
    if depth == 0 or draw(st.booleans()):
        return draw(numbers())
    return [_ragged(draw, depth - 1) for _ in range(draw(st.integers(0, 3)))]


@st.composite
def arrays(draw: st.DrawFn, shape: tuple[int, ...] | None = None) -> Any:
    """A value where an array (of ``shape``, if given) is expected: often close to valid."""
    kind = draw(st.sampled_from(["list", "list", "ragged", "ndarray", "deep", "odd"]))
    if kind == "list" and shape is not None:
        size = int(np.prod(shape))
        flat = draw(st.lists(numbers(), min_size=size, max_size=size))
        arr = np.empty(size, dtype=object)
        arr[:] = flat
        return arr.reshape(shape).tolist() if shape else flat[0] if flat else 0
    if kind in ("list", "ragged"):
        return _ragged(draw, draw(st.integers(1, 4)))
    if kind == "ndarray":
        dtype = draw(st.sampled_from(["f8", "f4", "f2", "i8", "u8", "i1", "?", "c16", "U2", "M8[s]", "m8[s]", "O", "g"]))
        dims = shape if shape is not None and draw(st.booleans()) else tuple(
            draw(st.lists(st.integers(0, 3), min_size=0, max_size=3))
        )
        base = np.zeros(dims)
        try:
            return base.astype(dtype)
        except (TypeError, ValueError):
            return base
    if kind == "deep":
        value: Any = draw(numbers())
        for _ in range(draw(st.sampled_from([65, 300, 3000]))):
            value = [value]
        return value
    return draw(
        st.sampled_from(
            [{"a": 1}, {1, 2}, "abc", b"abc", None, (x for x in [1, 2]), range(3), object(), [[1, 2], [3]]]
        )
    )


def ids() -> st.SearchStrategy[Any]:
    """A value where a sequence of ids is expected."""
    leaf = st.one_of(
        st.integers(), st.text(max_size=5), st.sampled_from([10**5000, float("nan"), None, True, (1, 2)]),
        st.just([1]), st.just({"a": 1}), st.just({1}),
    )
    return st.one_of(
        st.lists(leaf, max_size=4),
        st.lists(st.integers(0, 3), max_size=4),
        st.sampled_from([{"a": 1}, {1, 2}, "ab", 5, None, np.array([[1, 2]]), np.array(["a", "a"])]),
    )


@st.composite
def feedbacks(draw: st.DrawFn, experts: list[Any]) -> dict[str, Any]:
    """Keyword arguments of a Feedback: each field plausible, extreme but valid, or hostile
    (``numbers()``), drawn independently."""

    def pick(plausible: st.SearchStrategy[Any], extreme: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(plausible, plausible, extreme, numbers()))

    samples = pick(st.integers(0, 10**4), st.sampled_from([0, 2**53, 2**53 - 1, 10**15, 1e15]))
    keys = st.sampled_from(experts) if experts else st.integers()
    if draw(st.booleans()):
        keys = st.one_of(keys, st.sampled_from([99, "x", None, (1,), 1.5]))
    rewards: Any = draw(st.dictionaries(keys, st.one_of(st.floats(0, 1), st.floats(0, 1), numbers()), max_size=3))
    if draw(st.integers(0, 5)) == 0:
        rewards = draw(st.sampled_from([[0.5], "x", None, 3]))
    out: dict[str, Any] = {"samples": samples, "rewards": rewards}
    if draw(st.booleans()):
        out["duration"] = pick(st.floats(0, 1e4), st.sampled_from([0.0, 5e-324, 1e-300, 1e300, 1.7e308]))
    if draw(st.booleans()):
        out["completed"] = pick(st.booleans(), st.just(False))
    return out


# --------------------------------------------------------------------------- state-file forgery


def _npy(value: Any) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
    return buf.getvalue()


def pack(
    path: Path,
    meta: Mapping[str, Any] | str | bytes,
    arrays: Mapping[str, Any],
    *,
    compress: bool = False,
    raw_members: Mapping[str, bytes] | None = None,
    version: int = 1,
) -> Path:
    """Write a state file at ``path`` with a correct checksum over whatever it is given."""
    if isinstance(meta, Mapping):
        meta = json.dumps(meta)
    meta_bytes = meta.encode("utf-8") if isinstance(meta, str) else meta
    payload = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(payload, "w", compression=method) as z:
        z.writestr("__meta__.npy", _npy(np.frombuffer(meta_bytes, dtype=np.uint8)))
        for name, value in arrays.items():
            z.writestr(f"{name}.npy", _npy(value))
        for name, data in (raw_members or {}).items():
            z.writestr(name, data)
    body = payload.getvalue()
    path.write_bytes(MAGIC + HEADER.pack(version, len(body), hashlib.sha256(body).digest()) + body)
    return path


def unpack(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a state file, read by its documented layout."""
    raw = path.read_bytes()
    body = raw[len(MAGIC) + HEADER.size :]
    with np.load(io.BytesIO(body), allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    meta = json.loads(out.pop("__meta__").tobytes().decode("utf-8"))
    return meta, out


def reseal(raw: bytes) -> bytes:
    """``raw`` with a header that matches its payload (length and checksum recomputed)."""
    head = len(MAGIC) + HEADER.size
    if len(raw) < head or not raw.startswith(MAGIC):
        return raw
    version = HEADER.unpack_from(raw, len(MAGIC))[0]
    body = raw[head:]
    return MAGIC + HEADER.pack(version, len(body), hashlib.sha256(body).digest()) + body
