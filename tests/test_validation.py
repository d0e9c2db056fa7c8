"""The declarative validation tables (fedalign._validation)."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign._validation import (
    Boolean,
    InstanceOf,
    Interval,
    Options,
    Pair,
    short_repr,
    validate,
)

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


def test_type_error_tells_a_wrong_type_from_a_wrong_value() -> None:
    with pytest.raises(TypeError, match="iters: expected an int >= 1, got 'x'"):
        validate(TABLE, {"iters": "x"}, type_error=TypeError)
    with pytest.raises(ValueError, match="iters: expected an int >= 1, got 0"):
        validate(TABLE, {"iters": 0}, type_error=TypeError)
    with pytest.raises(ValueError, match="iters"):  # a float for an int: a value, not a type
        validate(TABLE, {"iters": 1.5}, type_error=TypeError)


def test_prefix_qualifies_the_name() -> None:
    with pytest.raises(ValueError, match=r"^Thing\.share: expected a float in \[0, 1\]"):
        validate(TABLE, {"share": 2}, prefix="Thing.")


@pytest.mark.parametrize(
    ("value", "ok"),
    [((0, 1), (0.0, 1.0)), ([2.5, 2.5], (2.5, 2.5)), (np.array([0, 3]), (0.0, 3.0)),
     ((2, 1), None), ((-1, 1), None), ((0, float("inf")), None), ((0, 10**400), None),
     (5, None), ("ab", None), ((1, 2, 3), None)],
)
def test_pair_is_an_ordered_range(value: object, ok: tuple | None) -> None:
    table = {"range": [Pair(Interval(float, 0, None))]}
    if ok is None:
        with pytest.raises(ValueError, match=r"range: expected a pair \(low, high\) with low <= high"):
            validate(table, {"range": value})
    else:
        out = validate(table, {"range": value})["range"]
        assert out == ok and all(type(v) is float for v in out)


def test_interval_within_matches_convert() -> None:
    forms = [Interval(float, 0, 1), Interval(int, 0, 5), Interval(float, 0, 100, closed="right"),
             Interval(float, 1, None), Interval(float, None, 0, closed="neither")]
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 5.0, 100.0, np.nan, np.inf])
    for form in forms:
        expected = []
        for v in values.tolist():
            try:
                form.convert(int(v) if form.kind is int and np.isfinite(v) and v == int(v) else v)
                expected.append(True)
            except ValueError:
                expected.append(False)
        np.testing.assert_array_equal(form.within(values), expected, err_msg=form.describe())
