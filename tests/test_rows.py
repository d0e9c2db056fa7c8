"""The row model: Row validation, binding to a problem, usage, violations, soft costs, JSON,
declared solver capabilities and explanations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fedalign as fa
from fedalign import AlignmentProblem, InvalidProblemError, Row
from fedalign.rows import band_cost, band_marginal
from fedalign.solvers import get_solver, registered_solvers

N, E = 3, 4
D = np.arange(N * E, dtype=float).reshape(N, E) / 10


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"name": "", "over": "client"}, ["Row.name", "non-empty"]),
        ({"name": 3, "over": "client"}, ["Row.name", "string"]),
        ({"name": "bw", "over": "clients"}, ["Row 'bw'.over", "'client'"]),
        ({"name": "bw", "over": "client", "weight": np.ones((2, 2, 2))}, ["Row 'bw'.weight", "3-D"]),
        ({"name": "bw", "over": "client", "weight": [[1.0, np.nan]]}, ["Row 'bw'.weight[0, 1]", "finite"]),
        ({"name": "bw", "over": "client", "weight": [1.0, -2.0]}, ["Row 'bw'.weight[1]", ">= 0"]),
        ({"name": "bw", "over": "client", "weight": "heavy"}, ["Row 'bw'.weight", "text"]),
        ({"name": "bw", "over": "client", "weight": [True, False]}, ["Row 'bw'.weight", "booleans"]),
        ({"name": "bw", "over": "client", "weight": 1j}, ["Row 'bw'.weight", "complex"]),
        ({"name": "bw", "over": "client", "weight": [[10**400]]}, ["Row 'bw'.weight", "too large"]),
        ({"name": "bw", "over": "client", "upper": np.inf}, ["Row 'bw'.upper", "finite"]),
        ({"name": "bw", "over": "client", "upper": [[1.0]]}, ["Row 'bw'.upper", "2-D"]),
        ({"name": "bw", "over": "client", "lower": 3.0, "upper": 2.0}, ["Row 'bw'.lower", "above", "upper"]),
        ({"name": "bw", "over": "client", "lower": [0, 3], "upper": [2, 2]}, ["Row 'bw'.lower[1]", "above"]),
        ({"name": "ld", "over": "expert", "upper": 1, "penalty": 0.0}, ["Row 'ld'.penalty[0]", "> 0"]),
        ({"name": "ld", "over": "expert", "upper": 1, "penalty": [1.0, 0.5]}, ["Row 'ld'.penalty[1]", "decrease"]),
        ({"name": "ld", "over": "expert", "upper": 1, "penalty": []}, ["Row 'ld'.penalty", "at least one"]),
        ({"name": "ld", "over": "expert", "penalty": 1.0}, ["Row 'ld'.penalty", "lower or an upper"]),
    ],
)
def test_bad_rows_are_refused_with_a_named_error(kwargs: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(InvalidProblemError) as info:
        Row(**kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("row", "fragments"),
    [
        (Row("bw", "client", np.ones(N), upper=1.0), ["rows[0] ('bw').weight", "(3,)", "(3, 4)"]),
        (Row("bw", "client", np.ones((N, E + 1)), upper=1.0), ["rows[0] ('bw').weight", "(3, 5)"]),
        (Row("bw", "client", upper=[1.0, 2.0]), ["rows[0] ('bw').upper", "3 values", "one per client"]),
        (Row("ld", "expert", lower=[1.0] * N), ["rows[0] ('ld').lower", "4 values", "one per expert"]),
        (Row("bytes", "total", upper=[1.0, 2.0]), ["rows[0] ('bytes').upper", "1 values"]),
        (Row("memory", "client", upper=1.0), ["rows[0]", "'memory'", "already taken"]),
    ],
)
def test_rows_are_checked_against_the_problem(row: Row, fragments: list[str]) -> None:
    with pytest.raises(InvalidProblemError) as info:
        AlignmentProblem(D, rows=[row])
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_rows_argument_must_be_a_list_of_rows() -> None:
    with pytest.raises(InvalidProblemError, match=r"rows: expected a list of fedalign.Row"):
        AlignmentProblem(D, rows=Row("bw", "client", upper=1.0))  # type: ignore[arg-type]
    with pytest.raises(InvalidProblemError, match=r"rows\[1\]: expected a fedalign.Row, got an object"):
        AlignmentProblem(D, rows=[Row("bw", "client", upper=1.0), {"name": "x"}])  # type: ignore[list-item]
    with pytest.raises(InvalidProblemError, match=r"rows\[1\]: the name 'bw' is already taken"):
        AlignmentProblem(D, rows=[Row("bw", "client", upper=1.0), Row("bw", "expert", upper=1.0)])


@pytest.mark.parametrize(
    ("weight", "shape"),
    [(2.0, (1, 1)), (np.ones(E), (1, E)), (np.ones((1, E)), (1, E)), (np.ones((N, 1)), (N, 1)), (np.ones((N, E)), (N, E))],
)
def test_weights_broadcast_like_numpy_and_are_stored_compactly(weight: Any, shape: tuple[int, int]) -> None:
    p = AlignmentProblem(D, rows=[Row("bw", "client", weight, upper=5.0)])
    row = p.row("bw")
    assert row.weight.shape == shape and not row.weight.flags.writeable
    assert row.dense.shape == (N, E)
    assert row.upper is not None and row.upper.tolist() == [5.0] * N


# --------------------------------------------------------------------------- the model


def test_keyword_arguments_are_rows_with_fixed_names() -> None:
    p = AlignmentProblem(
        D, max_experts=2, expert_memory=np.ones(E), client_memory=np.full(N, 2.0),
        train_time=np.ones((N, E)), deadline=3.0, expert_max_clients=2,
        rows=[Row("bytes", "total", 1.0, upper=5)],
    )
    assert [r.name for r in p.rows] == [
        "experts per client", "memory", "deadline", "clients per expert", "bytes",
    ]
    assert [r.over for r in p.rows] == ["client", "client", "client", "expert", "total"]
    assert [r.name for r in p.client_rows] == ["memory", "deadline"]
    assert [r.name for r in p.total_rows] == ["bytes"]
    count = p.row("experts per client")
    assert count.unit and count.upper is not None and count.upper.tolist() == [2.0] * N


def test_usage_and_violations_of_a_bandwidth_row_and_a_byte_budget() -> None:
    bw = Row("bandwidth", "client", [[1.0, 2.0, 4.0, 8.0]], upper=[5.0, 5.0, 1.0])
    budget = Row("server bytes", "total", [[1.0, 1.0, 2.0, 2.0]], upper=4.0)
    p = AlignmentProblem(D, max_experts=2, rows=[bw, budget], client_ids=["a", "b", "c"])
    x = np.zeros((N, E), bool)
    x[0, [0, 2]] = True  # 5 bandwidth, 3 bytes
    x[1, [1]] = True  # 2 bandwidth, 1 byte
    assert fa.check(p, x) == []
    assert p.row("bandwidth").usage(x).tolist() == [5.0, 2.0, 0.0]
    x[2, 0] = True  # c: 1 <= 1 bandwidth; the total reaches 5 > 4
    [v] = fa.check(p, x)
    assert (v.constraint, v.index) == ("server bytes", None)
    assert "the round has 5" in v.message and "upper bound 4" in v.message
    x[2, 0], x[2, 1] = False, True  # c: 2 > 1 bandwidth
    found = [(v.constraint, v.index) for v in fa.check(p, x)]
    assert found == [("bandwidth", 2), ("server bytes", None)]
    assert not p.fits[2, 1:].any() and p.fits[2, 0]  # c's bandwidth holds only expert 0


def test_lower_bounds_of_weighted_rows() -> None:
    floor = Row("samples", "expert", np.array([[10.0], [20.0], [40.0]]), lower=[30, 0, 0, 0])
    p = AlignmentProblem(D, max_experts=4, rows=[floor])
    x = np.zeros((N, E), bool)
    x[[0, 1], 0] = True
    assert fa.check(p, x) == []
    x[1, 0] = False
    [v] = fa.check(p, x)
    assert (v.constraint, v.index) == ("samples", 0) and "below the lower bound 30" in v.message


def test_soft_rows_cost_instead_of_refusing() -> None:
    load = Row("round load", "expert", 1.0, upper=1, penalty=[0.1, 0.3])
    p = AlignmentProblem(np.ones((N, E)), rows=[load])
    x = np.zeros((N, E), bool)
    x[:, 0] = True  # expert 0 holds 3 clients: 2 above its bound, costing 0.1 + 0.3
    assert fa.check(p, x) == []
    assert p.penalty(x) == pytest.approx(0.4)
    assert p.objective(x) == pytest.approx(3.0 - 0.4)
    assert p.soft_rows == (p.row("round load"),) and p.expert_rows == ()
    assert p.fits.all()  # a soft row never forbids a pair


def test_band_cost_is_convex_piecewise_linear() -> None:
    prices = (1.0, 2.0, 5.0)
    excess = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5])
    np.testing.assert_allclose(band_cost(prices, excess), [0, 0.5, 1, 2, 3, 8, 15.5])
    np.testing.assert_allclose(band_cost((2.0,), excess), 2 * excess)
    np.testing.assert_allclose(band_marginal(prices, np.array([0, 1, 2, 7])), [1, 2, 5, 5])


def test_soft_lower_bound_charges_the_shortfall() -> None:
    floor = Row("fair share", "client", 1.0, lower=2, penalty=0.5)
    p = AlignmentProblem(np.ones((2, 3)), max_experts=3, rows=[floor])
    x = np.array([[1, 0, 0], [1, 1, 1]], bool)
    assert p.penalty(x) == pytest.approx(0.5)


# --------------------------------------------------------------------------- infeasibility


def test_infeasibility_reasons_of_rows() -> None:
    need = Row("samples", "client", [[1.0, 2.0, 3.0, 4.0]], lower=[0, 8, 0])
    p = AlignmentProblem(D, max_experts=2, rows=[need])
    reason = p.infeasibility_reason()
    assert reason is not None and "samples" in reason and "client 1 (position 1)" in reason
    budget = Row("bytes", "total", 1.0, upper=2)
    p = AlignmentProblem(D, min_experts=1, rows=[budget])
    reason = p.infeasibility_reason()
    assert reason is not None and "bytes" in reason and "3" in reason
    p = AlignmentProblem(D, min_experts=1, rows=[Row("bytes", "total", 1.0, upper=2, penalty=1.0)])
    assert p.infeasibility_reason() is None  # soft: costs, never blocks


# --------------------------------------------------------------------------- JSON


def test_rows_round_trip_through_json_dicts() -> None:
    rows = [
        Row("bandwidth", "client", [[1.0, 2.0, 4.0, 8.0]], upper=[5.0, 5.0, 1.0]),
        Row("bytes", "total", 3.0, lower=1.0, upper=9.0),
        Row("load", "expert", 1.0, upper=2, penalty=[0.5, 1.0]),
    ]
    p = AlignmentProblem(D, rows=rows)
    data = p.to_dict()
    assert [r["name"] for r in data["rows"]] == ["bandwidth", "bytes", "load"]
    assert data["rows"][1]["weight"] == 3.0 and data["rows"][2]["penalty"] == [0.5, 1.0]
    q = AlignmentProblem.from_dict(data)
    assert q.to_dict() == data
    x = np.eye(N, E, dtype=bool)
    assert q.objective(x) == p.objective(x)


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ({"name": "x"}, "rows: expected an array of objects, got an object"),
        ([3], "rows[0]: expected an object, got a number"),
        ([{"name": "x", "over": "client", "upper": 1, "colour": 2}], "rows[0].'colour': unknown key"),
        ([{"over": "client"}], "rows[0].name: expected a string, got null"),
        ([{"name": "x", "over": "client", "upper": "5"}], "rows[0].upper: expected a number, got a string"),
        ([{"name": "x", "over": "client", "weight": [[1, True, 1, 1]]}], "rows[0].weight[0, 1]: expected a number"),
    ],
)
def test_json_rows_are_checked(rows: Any, fragment: str) -> None:
    with pytest.raises(InvalidProblemError) as info:
        AlignmentProblem.from_dict({"desirability": D.tolist(), "rows": rows})
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- capabilities


def _problem_with(row: Row) -> AlignmentProblem:
    return AlignmentProblem(D, max_experts=2, rows=[row])


CAPABILITY_ROWS = {
    "client-count-upper": Row("slots", "client", 1.0, upper=1),
    "client-weighted-upper": Row("bandwidth", "client", [[1.0, 2.0, 4.0, 8.0]], upper=9.0),
    "client-weighted-lower": Row("work", "client", [[1.0, 2.0, 4.0, 8.0]], lower=1.0),
    "expert-weighted": Row("samples", "expert", np.array([[1.0], [2.0], [3.0]]), upper=4.0),
    "total": Row("bytes", "total", 2.0, upper=6.0),
    "soft-expert": Row("load", "expert", 1.0, upper=1, penalty=0.5),
}


@pytest.mark.parametrize("kind", sorted(CAPABILITY_ROWS))
def test_unsupported_rows_are_refused_before_solving_naming_the_solvers_that_can(kind: str) -> None:
    problem = _problem_with(CAPABILITY_ROWS[kind])
    usable = fa.solvers_for(problem)
    for name in registered_solvers():
        try:
            solver = get_solver(name)
        except fa.SolverUnavailableError:
            continue
        if name in usable:
            assert solver.accepts(problem)
            continue
        assert not solver.accepts(problem)
        with pytest.raises(fa.UnsupportedProblemError) as info:
            fa.solve(problem, name, time_limit=5.0, seed=0)
        message = str(info.value)
        assert repr(name) in message and CAPABILITY_ROWS[kind].name in message
        others = [s for s in usable if s != "auto"]
        assert all(repr(s) in message for s in others) or (not others and "no installed solver" in message)


def test_solvers_for_lists_every_solver_on_keyword_problems() -> None:
    p = AlignmentProblem(D, expert_memory=[1.0, 2.0, 1.0, 1.0], client_memory=np.full(N, 2.0))
    assert fa.solvers_for(p) == [s for s in fa.available_solvers() if s != "flow"]
    q = AlignmentProblem(D)
    assert fa.solvers_for(q) == fa.available_solvers()


# --------------------------------------------------------------------------- explain


def test_plan_explain_names_the_row_that_blocks() -> None:
    from fedalign.plan import why_not

    bw = Row("bandwidth", "client", [[1.0, 2.0, 4.0, 8.0]], upper=[5.0, 5.0, 1.0])
    budget = Row("server bytes", "total", 1.0, upper=2)
    p = AlignmentProblem(np.ones((N, E)), max_experts=2, rows=[bw, budget])
    x = np.zeros((N, E), bool)
    x[0, [0, 1]] = True
    reasons = why_not(p, x, 2)
    assert reasons[3] == "needs 8 bandwidth, client has 1"
    assert reasons[0] == "would exceed the round's server bytes (2 of 2 used)"
    assert why_not(p, x, 0)[:2] == ["chosen", "chosen"]


# --------------------------------------------------------------------------- supported range


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"desirability": [[1e308, 1e308]]}, "desirability: the sum of |desirability|"),
        ({"desirability": [[1e300, 1e300], [0.0, 1.0]]}, "desirability: the sum of |desirability|"),
        ({"desirability": [[1.0, 2.0]], "expert_memory": [1e300, 1e300], "client_memory": [1.0]}, "expert_memory: the row's largest sum"),
        ({"desirability": [[1.0, 2.0]], "train_time": [[1e300, 1e300]], "deadline": 1.0}, "train_time: the row's largest sum"),
        ({"desirability": [[1.0, 2.0]], "rows": [Row("x", "total", [1e299, 1e299], upper=1.0, penalty=1e10)]}, "rows[0] ('x'): the row's largest sum"),
    ],
)
def test_sums_beyond_the_supported_range_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidProblemError) as info:
        AlignmentProblem(**kwargs)
    assert str(info.value).startswith(fragment)


@pytest.mark.parametrize("scale", [1e-300, 5e-324, 1e15, 1e18, 1e300 / 8])
def test_every_solver_handles_huge_and_tiny_row_units(scale: float) -> None:
    """Memory in bytes or time in nanoseconds: solvers scale internally, never answer wrongly."""
    p = AlignmentProblem(
        [[0.5, 0.2, 0.4], [0.3, 0.9, 0.1]], max_experts=2,
        expert_memory=np.array([1.0, 3.0, 2.0]) * scale, client_memory=np.array([3.0, 4.0]) * scale,
    )
    reference = fa.solve(p, "milp", seed=0)
    assert reference.status == "optimal" and reference.objective == pytest.approx(2.1)
    for name in fa.solvers_for(p):
        sol = fa.solve(p, name, seed=0, time_limit=5.0)
        assert fa.check(p, sol.assignment) == []
        if sol.bound is not None:
            assert sol.bound >= reference.objective - 1e-9
        if get_solver(name).exact or sol.status == "optimal":
            assert sol.objective == pytest.approx(reference.objective)


@pytest.mark.parametrize("top", [1e250, 1e-250])
def test_huge_and_tiny_desirability_stay_exact(top: float) -> None:
    d = np.array([[1.0, -3.0], [2.0, 0.1]]) * top
    p = AlignmentProblem(d, max_experts=2, expert_memory=[1.0, 2.0], client_memory=[2.0, 3.0])
    for name in ("lp", "milp", "cpsat", "flow", "lagrangian"):
        if name not in fa.solvers_for(p):
            continue
        sol = fa.solve(p, name, seed=0)
        assert np.isfinite(sol.objective) and sol.objective == pytest.approx(3.1 * top)
        assert sol.bound is None or sol.bound >= sol.objective * (1 - 1e-9)
