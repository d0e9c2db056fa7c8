"""Solution's plain and JSON views: ``to_dict`` and ``to_json_dict``."""

from __future__ import annotations

import json
from collections.abc import Hashable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedalign as fa
from fedalign import AlignmentProblem
from fedalign.solvers.base import Solution
from strategies import problems


def make(problem: AlignmentProblem, x: np.ndarray, bound: float | None = None) -> Solution:
    """A Solution for any assignment (feasibility does not matter to these views)."""
    return Solution(
        assignment=np.asarray(x, bool),
        objective=problem.objective(x),
        bound=bound,
        status="feasible",
        solver="test",
        runtime=0.25,
        problem=problem,
    )


def reference_to_dict(s: Solution) -> dict[Hashable, list[Hashable]]:
    """The obvious per-pair loop, to compare the vectorised version against."""
    p = s.problem
    return {
        c: [p.expert_ids[j] for j in range(p.n_experts) if s.assignment[i, j]]
        for i, c in enumerate(p.client_ids)
    }


@settings(max_examples=60)
@given(problems(), st.data())
def test_to_dict_matches_the_per_pair_loop(p: AlignmentProblem, data: st.DataObject) -> None:
    flat = data.draw(st.lists(st.booleans(), min_size=p.n_clients * p.n_experts,
                              max_size=p.n_clients * p.n_experts))
    s = make(p, np.array(flat, bool).reshape(p.shape))
    got = s.to_dict()
    assert got == reference_to_dict(s)
    assert list(got) == list(p.client_ids)


def test_to_dict_keeps_tuple_ids_and_empty_rows() -> None:
    p = AlignmentProblem(np.ones((3, 3)), max_experts=3, client_ids=["a", "b", "c"],
                         expert_ids=[(0, 1), (1, 0), "z"])
    s = make(p, np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0]]))
    assert s.to_dict() == {"a": [(1, 0), "z"], "b": [], "c": [(0, 1)]}


def test_to_dict_with_no_clients() -> None:
    p = AlignmentProblem(np.zeros((0, 2)), expert_ids=["x", "y"])
    assert make(p, np.zeros((0, 2))).to_dict() == {}
    assert make(p, np.zeros((0, 2))).to_json_dict()["assignment"] == {}


def test_to_json_dict_fields_and_keys() -> None:
    p = AlignmentProblem([[0.5, 0.25], [0.0, 1.0]], client_ids=[7, "b"], expert_ids=[10, "e"])
    s = make(p, np.array([[1, 0], [0, 1]]), bound=2.0)
    out = s.to_json_dict()
    assert list(out) == ["assignment", "objective", "bound", "gap", "status", "solver", "runtime", "info"]
    assert out["assignment"] == {"7": [10], "b": ["e"]}  # keys are strings, values as given
    assert out["objective"] == 1.5 and out["bound"] == 2.0 and out["gap"] == 0.25
    assert out["status"] == "feasible" and out["solver"] == "test" and out["runtime"] == 0.25
    assert all(type(out[k]) is float for k in ("objective", "bound", "gap", "runtime"))
    assert json.loads(json.dumps(out)) == out


def test_to_json_dict_writes_null_for_missing_or_infinite_numbers() -> None:
    p = AlignmentProblem([[1.0]])
    assert make(p, np.array([[1]])).to_json_dict()["bound"] is None
    out = make(p, np.array([[1]]), bound=float("inf")).to_json_dict()
    assert out["bound"] is None
    json.dumps(out, allow_nan=False)


def test_to_json_dict_refuses_ids_with_the_same_key() -> None:
    p = AlignmentProblem(np.ones((2, 1)), client_ids=[1, "1"])
    with pytest.raises(ValueError, match=r"client_ids\[1\].*same JSON key as position 0"):
        make(p, np.zeros((2, 1))).to_json_dict()


def test_solve_result_round_trips_through_from_dict() -> None:
    p = AlignmentProblem([[0.9, 0.1], [0.2, 0.8]], client_ids=["a", "b"], expert_ids=[1, 2])
    q = AlignmentProblem.from_dict(json.loads(json.dumps(p.to_dict())))
    out = fa.solve(q, "greedy").to_json_dict()
    assert out["assignment"] == {"a": [1], "b": [2]}
