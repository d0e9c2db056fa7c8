"""Argument conversion and per-expert settings (fedalign._arrays)."""

from __future__ import annotations

import numpy as np
import pytest

from fedalign._arrays import PerExpert, float_array, per_expert, validate_table
from fedalign._validation import Interval


def _deep(depth: int) -> list:
    value: list = [1.0]
    for _ in range(depth):
        value = [value]
    return value


def _self_containing() -> list:
    value: list = [1.0]
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (10**400, r"^x: expected numbers, got an integer of 401 digits$"),
        ([1.0, 10**400], r"^x\[1\]: expected numbers, got an integer of 401 digits$"),
        ([[1.0, 2.0], [3.0, 1j]], r"^x\[1, 1\]: expected numbers, got 1j$"),
        ([1.0, "2"], r"^x\[1\]: expected numbers, got '2'$"),
        ([True, False], r"^x\[0\]: expected numbers, got True$"),
        ([1.0, None], r"^x\[1\]: expected numbers, got None$"),
        ([[1.0], [2.0, 3.0]], r"^x: cannot be read as numbers"),
        (_deep(5000), r"^x\[0, 0, 0, .*: expected numbers"),
        (_self_containing(), r"^x\[1, 1, 1, .*: expected numbers"),
        ("x" * 10_000, r"^x: expected numbers, got 'xxx.*\.\.\.$"),
    ],
)
def test_float_array_names_hostile_input(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        float_array("x", value)


def test_float_array_passes_numbers_through() -> None:
    np.testing.assert_array_equal(float_array("x", [1, 2.5, np.int8(3)]), [1.0, 2.5, 3.0])
    assert float_array("x", 2).shape == ()


MEMORY = [PerExpert(Interval(float, 0, None)), None]
COUNT = [PerExpert(Interval(int, 0, 10))]


def test_per_expert_broadcasts_and_converts() -> None:
    np.testing.assert_array_equal(per_expert("m", 2, MEMORY, 3), [2.0, 2.0, 2.0])
    counts = per_expert("c", [1, 2.0, np.int64(3)], COUNT, 3)
    assert counts is not None and counts.dtype == np.int64 and counts.tolist() == [1, 2, 3]
    assert per_expert("m", None, MEMORY, 3) is None
    np.testing.assert_array_equal(per_expert("m", [1, 2], MEMORY), [1.0, 2.0])  # E from it


@pytest.mark.parametrize(
    ("name", "value", "forms", "n", "match"),
    [
        ("m", [1.0, -1.0, 1.0], MEMORY, 3, r"^m\[1\]: expected a float >= 0, got -1\.0$"),
        ("m", [1.0, "x", 1.0], MEMORY, 3, r"^m\[1\]: expected a float >= 0, got 'x'$"),
        ("m", [1.0, np.nan], MEMORY, 2, r"^m\[1\]: expected a float >= 0, got nan$"),
        ("m", 10**400, MEMORY, 2, "^m: expected a float >= 0, got an integer of 401 digits$"),
        ("m", 1j, MEMORY, 2, "^m: expected a float >= 0, got 1j$"),
        ("m", [1.0, 2.0], MEMORY, 3, r"^m: expected a number or 3 values, got shape \(2,\)$"),
        ("m", [[1.0]], MEMORY, 1, r"^m: expected a number or 1 values, got shape \(1, 1\)$"),
        ("m", 2.0, MEMORY, None, r"^m: expected one number per expert, got shape \(\)$"),
        ("m", [], MEMORY, None, r"^m: expected one number per expert, got shape \(0,\)$"),
        ("c", None, COUNT, 2, "^c: expected an int in \\[0, 10\\], or one per expert, got None$"),
        ("c", [1, 2.5], COUNT, 2, r"^c\[1\]: expected an int in \[0, 10\], got 2\.5$"),
        ("c", [1, 11], COUNT, 2, r"^c\[1\]: expected an int in \[0, 10\], got 11\.0$"),
    ],
)
def test_per_expert_names_the_position(name: str, value: object, forms: list, n: int | None,
                                       match: str) -> None:
    with pytest.raises(ValueError, match=match):
        per_expert(name, value, forms, n)


def test_validate_table_takes_e_from_the_first_vector() -> None:
    table = {"bytes": [PerExpert(Interval(float, 0, None))],
             "cost": [PerExpert(Interval(float, 0, None))],
             "window": [Interval(int, 1, 255)]}
    out = validate_table(table, {"bytes": [1, 2, 3], "cost": 1, "window": 4})
    assert out["cost"].tolist() == [1.0, 1.0, 1.0] and out["window"] == 4
    with pytest.raises(ValueError, match=r"^cost: expected a number or 3 values"):
        validate_table(table, {"bytes": [1, 2, 3], "cost": [1, 2], "window": 4})
    with pytest.raises(TypeError, match="no PerExpert form"):  # a programming error
        per_expert("x", 1, [Interval(float)], 2)


def test_per_expert_form_on_its_own() -> None:
    form = PerExpert(Interval(float, 0, None))
    np.testing.assert_array_equal(form.convert([1, 2]), [1.0, 2.0])
    assert form.convert(3).shape == ()
    for bad in ([-1.0], [[1.0]], "x", 10**400):
        with pytest.raises(ValueError):
            form.convert(bad)
    assert form.describe() == "a float >= 0, or one per expert"
