"""check(): every Violation kind, its index and message; and agreement with brute force.

The last tests also validate the test strategies themselves: planted assignments pass
``check``, provably infeasible problems have no feasible assignment, and ``check`` agrees
with the vectorised feasibility test of ``brute_force`` on every assignment of tiny problems.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import fedalign as fa
from fedalign import AlignmentProblem, Violation, check
from strategies import (
    INFEASIBLE_REASONS,
    all_assignments,
    brute_force,
    feasible_mask,
    infeasible_problems,
    planted_problems,
    problems,
)


def kinds(violations: list[Violation]) -> list[tuple[str, object]]:
    return [(v.constraint, v.index) for v in violations]


@pytest.fixture
def problem() -> AlignmentProblem:
    """3 clients x 3 experts with every constraint kind present and string ids."""
    return AlignmentProblem(
        np.zeros((3, 3)),
        max_experts=[2, 1, 2],
        min_experts=[1, 0, 0],
        expert_memory=[1.0, 2.0, 4.0],
        client_memory=[3.0, 4.0, 8.0],
        train_time=[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 5.0]],
        deadline=[5.0, 5.0, 6.0],
        expert_min_clients=[1, 0, 0],
        expert_max_clients=[3, 1, 3],
        allowed=[[True, True, True], [True, True, True], [True, True, False]],
        client_ids=["ann", "bo", "cy"],
        expert_ids=["e0", "e1", "e2"],
    )


def test_feasible_assignment_has_no_violation(problem: AlignmentProblem) -> None:
    x = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
    assert check(problem, x) == []
    assert check(problem, x.astype(int)) == []
    assert check(problem, x.astype(float)) == []
    assert check(problem, x.tolist()) == []


@pytest.mark.parametrize(
    "bad",
    [np.zeros((3, 2), bool), np.zeros((2, 3), bool), np.zeros(9, bool), np.zeros((3, 3, 1), bool)],
)
def test_shape(problem: AlignmentProblem, bad: np.ndarray) -> None:
    [v] = check(problem, bad)
    assert (v.constraint, v.index) == ("shape", None)
    assert str(bad.shape) in v.message and "(3, 3)" in v.message


@pytest.mark.parametrize(
    "bad",
    [
        [[1, 2, 0], [0, 0, 0], [1, 0, 0]],
        [[1, 0.5, 0], [0, 0, 0], [1, 0, 0]],
        [[1, -1, 0], [0, 0, 0], [1, 0, 0]],
        [["1", "0", "0"], ["0", "0", "0"], ["1", "0", "0"]],
        [[1, np.nan, 0], [0, 0, 0], [1, 0, 0]],
    ],
)
def test_non_binary_entries_are_a_shape_violation(problem: AlignmentProblem, bad: list) -> None:
    [v] = check(problem, np.array(bad))
    assert v.constraint == "shape" and "0/1" in v.message


def test_allowed(problem: AlignmentProblem) -> None:
    x = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)
    [v] = check(problem, x)
    assert (v.constraint, v.index) == ("allowed", (2, 2))
    assert "'cy'" in v.message and "'e2'" in v.message


def test_max_experts(problem: AlignmentProblem) -> None:
    x = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    violations = check(problem, x)
    assert ("experts per client", 1) in kinds(violations)
    v = next(v for v in violations if v.constraint == "experts per client")
    assert "'bo'" in v.message and "2" in v.message and "1" in v.message and "upper" in v.message


def test_min_experts(problem: AlignmentProblem) -> None:
    x = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    assert kinds(check(problem, x)) == [("experts per client", 0)]
    assert "'ann'" in check(problem, x)[0].message and "lower" in check(problem, x)[0].message


def test_memory(problem: AlignmentProblem) -> None:
    # ann: 1 + 4 = 5 > 3 (deadline 2 <= 5 is fine).
    x = np.array([[1, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    [v] = check(problem, x)
    assert (v.constraint, v.index) == ("memory", 0)
    assert "'ann'" in v.message and "5" in v.message and "3" in v.message


def test_deadline(problem: AlignmentProblem) -> None:
    # cy needs 3 + 3 = 6 s: exactly her deadline, so feasible; at 5.5 s it is not.
    ok = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    assert check(problem, ok) == []
    tighter = AlignmentProblem(
        problem.desirability,
        max_experts=3,
        train_time=problem.train_time,
        deadline=[5.0, 5.0, 5.5],
        client_ids=problem.client_ids,
    )
    [v] = check(tighter, ok)
    assert (v.constraint, v.index) == ("deadline", 2)
    assert "'cy'" in v.message and "6" in v.message and "5.5" in v.message


def test_expert_max_clients(problem: AlignmentProblem) -> None:
    x = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]], dtype=bool)
    [v] = check(problem, x)
    assert (v.constraint, v.index) == ("clients per expert", 1)
    assert "'e1'" in v.message and "upper" in v.message


def test_expert_min_clients(problem: AlignmentProblem) -> None:
    x = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=bool)
    [v] = check(problem, x)
    assert (v.constraint, v.index) == ("clients per expert", 0)
    assert "'e0'" in v.message and "lower" in v.message


def test_every_violation_is_listed(problem: AlignmentProblem) -> None:
    x = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1]], dtype=bool)
    found = kinds(check(problem, x))
    assert ("allowed", (2, 2)) in found
    assert all(("experts per client", i) in found for i in range(3))
    assert ("memory", 0) in found and ("memory", 1) in found
    assert ("deadline", 1) in found and ("deadline", 2) in found
    assert ("deadline", 0) not in found  # ann needs 3 s of her 5 s
    assert ("clients per expert", 1) in found
    assert all(isinstance(v.message, str) and v.message for v in check(problem, x))


def test_violation_is_frozen() -> None:
    v = Violation("memory", 0, "too much")
    with pytest.raises(AttributeError):
        v.constraint = "deadline"  # type: ignore[misc]
    assert v == Violation("memory", 0, "too much")


def test_capacity_has_only_rounding_slack() -> None:
    sizes = [0.1, 0.2, 0.3]
    p = AlignmentProblem(np.zeros((1, 3)), max_experts=3, expert_memory=sizes, client_memory=[0.6])
    x = np.ones((1, 3), bool)
    assert sum(sizes) != 0.6  # 0.6000000000000001: float rounding must not count
    assert check(p, x) == []
    over = AlignmentProblem(
        np.zeros((1, 3)), max_experts=3, expert_memory=sizes, client_memory=[0.6 - 1e-6]
    )
    assert kinds(check(over, x)) == [("memory", 0)]


def test_empty_problem() -> None:
    p = AlignmentProblem(np.zeros((0, 2)), expert_min_clients=0)
    assert check(p, np.zeros((0, 2), bool)) == []
    q = AlignmentProblem(np.zeros((0, 2)), expert_min_clients=[0, 1], expert_max_clients=3)
    assert kinds(check(q, np.zeros((0, 2), bool))) == [("clients per expert", 1)]


def test_solve_never_returns_what_check_rejects() -> None:
    """fedalign.solve runs check: a solver returning an infeasible plan is an error."""
    from fedalign.solvers.base import Result, finish

    p = AlignmentProblem(np.ones((2, 2)), max_experts=1)
    with pytest.raises(fa.AlignmentError, match="infeasible assignment"):
        finish(p, Result(np.ones((2, 2), bool)), solver="buggy", runtime=0.0)


# --------------------------------------------------------------------------- against brute force


@settings(max_examples=60)
@given(problems(max_clients=3, max_experts=3, max_pairs=9))
def test_check_agrees_with_brute_force_on_every_assignment(p: AlignmentProblem) -> None:
    xs = all_assignments(*p.shape)
    vectorised = feasible_mask(p, xs)
    by_check = np.array([check(p, x) == [] for x in xs])
    np.testing.assert_array_equal(by_check, vectorised)


@settings(max_examples=60)
@given(planted_problems(max_clients=4, max_experts=4, max_pairs=12))
def test_planted_assignment_is_feasible(pair: tuple[AlignmentProblem, np.ndarray]) -> None:
    p, planted = pair
    assert check(p, planted) == []
    bf = brute_force(p)
    assert bf.feasible and bf.optimum is not None and bf.assignment is not None
    assert check(p, bf.assignment) == []
    assert bf.optimum >= p.objective(planted) - 1e-12
    assert p.infeasibility_reason() is None


@settings(max_examples=15)
@given(planted_problems(min_clients=30, max_clients=60, min_experts=5, max_experts=10, max_pairs=None))
def test_planted_moderate_assignment_is_feasible(pair: tuple[AlignmentProblem, np.ndarray]) -> None:
    p, planted = pair
    assert check(p, planted) == []


@pytest.mark.parametrize("reason", INFEASIBLE_REASONS)
def test_infeasible_problems_are_infeasible(reason: str) -> None:
    @settings(max_examples=25)
    @given(infeasible_problems(reasons=(reason,), max_clients=4, max_experts=4, max_pairs=12))
    def inner(p: AlignmentProblem) -> None:
        assert not brute_force(p).feasible

    inner()
