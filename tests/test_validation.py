"""The declarative validation tables (fedalign._validation)."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign._validation import Boolean, InstanceOf, Interval, Options, short_repr, validate

TABLE = {
    "iters": [Interval(int, 1, None)],
    "share": [Interval(float, 0, 1)],
    "limit": [Interval(float, 0, None, closed="neither"), None],
    "mode": [Options({"max", "mean"})],
    "flag": [Boolean()],
    "obj": [InstanceOf(dict, "mapping")],
}


def test_converts_to_plain_types() -> None:
    out = validate(
        TABLE,
        {"iters": np.int64(3), "share": 1, "limit": None, "mode": "max", "flag": np.bool_(True)},
    )
    assert out == {"iters": 3, "share": 1.0, "limit": None, "mode": "max", "flag": True}
    assert type(out["iters"]) is int and type(out["share"]) is float and type(out["flag"]) is bool


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("iters", 0, "iters: expected an int >= 1, got 0"),
        ("iters", True, "iters: expected an int >= 1, got True"),
        ("iters", 2.0, "iters: expected an int >= 1, got 2.0"),
        ("share", 1.5, "share: expected a float in [0, 1], got 1.5"),
        ("share", float("nan"), "share: expected a float in [0, 1], got nan"),
        ("share", 10**400, "share: expected a float in [0, 1], got an integer of 401 digits"),
        ("share", 1j, "share: expected a float in [0, 1], got 1j"),
        ("share", "0.5", "share: expected a float in [0, 1], got '0.5'"),
        ("limit", 0, "limit: expected a float > 0 or None, got 0"),
        ("mode", "median", "mode: expected one of "),
        ("mode", [], "mode: expected one of "),
        ("flag", 1, "flag: expected a bool, got 1"),
        ("obj", [], "obj: expected a mapping, got []"),
    ],
)
def test_bad_values_name_the_parameter(name: str, value: object, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        validate(TABLE, {name: value})
    assert str(info.value).startswith(expected)


def test_unknown_name_is_a_type_error_listing_the_options() -> None:
    with pytest.raises(TypeError, match="solver 'x' has no option 'iter'; the options are"):
        validate(TABLE, {"iter": 1}, owner="solver 'x'")


def test_error_class_is_chosen_by_the_caller() -> None:
    class Mine(ValueError):
        pass

    with pytest.raises(Mine):
        validate(TABLE, {"iters": -1}, error=Mine)


def test_short_repr_bounds_hostile_values() -> None:
    assert len(short_repr("x" * 10_000)) <= 80
    assert short_repr(10**1000).startswith("an integer of 1001 digits")
